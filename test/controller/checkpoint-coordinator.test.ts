import { afterEach, beforeEach, describe, expect, test, vi } from 'vitest';
import {
  CheckpointCoordinator,
  type CheckpointCoordinatorOptions,
  type CheckpointOutcome,
  type CheckpointRecord,
  type CheckpointTrigger,
  type CommitTrigger,
} from '../../src/controller/checkpoint-coordinator.js';
import { checkpointFromRecord, checkpointFromSummary, operatorGroupsFromRecord, operatorGroupsFromSummary } from '../../src/controller/checkpoint-views.js';
import { TimerQueue } from '../../src/controller/timer-queue.js';
import type { CheckpointCompleted, CheckpointProgressEvent } from '../../src/protocol/index.js';

const T0 = 1_700_000_000_000;
const JOB = 'job-1';
/** Two operators: `src` with 2 subtasks, `out` with 1. */
const PLAN = new Map([
  ['src', 2],
  ['out', 1],
]);

interface Harness {
  coordinator: CheckpointCoordinator;
  triggers: CheckpointTrigger[];
  persisted: CheckpointRecord[];
  outcomes: CheckpointOutcome[];
  /** Every subtask of the plan reports `epoch` completed. */
  completeAll(epoch: number, generation?: number): void;
  /** Lets the persistence promise and its callbacks run. */
  flush(): Promise<void>;
}

let queues: TimerQueue[] = [];

function harness(options: Partial<CheckpointCoordinatorOptions> = {}, random = 0.5): Harness {
  const timers = new TimerQueue();
  queues.push(timers);
  const triggers: CheckpointTrigger[] = [];
  const persisted: CheckpointRecord[] = [];
  const outcomes: CheckpointOutcome[] = [];
  const coordinator = new CheckpointCoordinator({
    jobId: JOB,
    timers,
    timeoutMs: 60_000,
    random: () => random,
    trigger: (request) => {
      triggers.push(request);
      return Promise.resolve();
    },
    persist: (record) => {
      persisted.push(record);
      return Promise.resolve();
    },
    onOutcome: (outcome) => outcomes.push(outcome),
    ...options,
  });
  const completeAll = (epoch: number, generation = 1) => {
    for (const [node_id, parallelism] of PLAN) {
      for (let i = 0; i < parallelism; i++) coordinator.onCompleted(completed(node_id, i, epoch, generation));
    }
  };
  return { coordinator, triggers, persisted, outcomes, completeAll, flush: async () => void (await vi.advanceTimersByTimeAsync(0)) };
}

function completed(node_id: string, subtask_index: number, epoch: number, generation = 1, bytes = 100): CheckpointCompleted {
  const at = Date.now() * 1000;
  return {
    v: 1,
    job_id: JOB,
    generation,
    worker_id: 'w-1',
    node_id,
    subtask_index,
    event: 'completed',
    epoch,
    bytes,
    start_time: at - 5_000,
    finish_time: at,
    table_metadata: { state: { count: subtask_index } },
    at,
  };
}

function progress(node_id: string, subtask_index: number, epoch: number, event: CheckpointProgressEvent['event']): CheckpointProgressEvent {
  return { v: 1, job_id: JOB, generation: 1, worker_id: 'w-1', node_id, subtask_index, event, epoch, at: Date.now() * 1000 };
}

/** A coordinator running generation 1 with periodic checkpoints every `interval` ms. */
function running(interval = 10_000, options: Partial<CheckpointCoordinatorOptions> = {}): Harness {
  const h = harness(options);
  h.coordinator.beginGeneration({ generation: 1, subtasks: PLAN });
  h.coordinator.arm(1, interval, 0);
  return h;
}

beforeEach(() => {
  vi.useFakeTimers({ now: T0 });
});
afterEach(() => {
  for (const q of queues) q.close();
  queues = [];
  vi.useRealTimers();
});

describe('periodic checkpoints', () => {
  test('the first is jittered within [1, 2) intervals; completion writes the record and keeps a fixed rate', async () => {
    const h = running(10_000);
    expect(h.coordinator.nextDue).toBe(T0 + 15_000);
    await vi.advanceTimersByTimeAsync(14_999);
    expect(h.triggers).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(h.triggers).toEqual([{ generation: 1, epoch: 1, minEpoch: 0, thenStop: false }]);
    expect(h.coordinator.inFlightEpoch()).toBe(1);

    await vi.advanceTimersByTimeAsync(3_000);
    h.completeAll(1);
    await h.flush();
    expect(h.coordinator.lastCompletedEpoch).toBe(1);
    expect(h.persisted).toHaveLength(1);
    const record = h.persisted[0]!;
    expect(record).toMatchObject({ job_id: JOB, generation: 1, epoch: 1, min_epoch: 0, kind: 'periodic', start_time: (T0 + 15_000) * 1000 });
    expect(record.subtasks.map((s) => `${s.node_id}[${s.subtask_index}]`)).toEqual(['src[0]', 'src[1]', 'out[0]']);
    expect(record.operators).toEqual([
      { node_id: 'src', subtasks: 2, completed_subtasks: 2, bytes: 200, start_time: (T0 + 18_000) * 1000 - 5_000, finish_time: (T0 + 18_000) * 1000 },
      { node_id: 'out', subtasks: 1, completed_subtasks: 1, bytes: 100, start_time: (T0 + 18_000) * 1000 - 5_000, finish_time: (T0 + 18_000) * 1000 },
    ]);
    expect(h.outcomes).toMatchObject([{ kind: 'completed', record: { epoch: 1 } }]);
    // Due 10 s after the previous due time, not after the completion.
    expect(h.coordinator.nextDue).toBe(T0 + 25_000);
    await vi.advanceTimersByTimeAsync(7_000);
    expect(h.triggers.map((t) => t.epoch)).toEqual([1, 2]);
  });

  test('records the job spans and the subtasks’ progress events', async () => {
    const h = running(1_000);
    await vi.advanceTimersByTimeAsync(1_500);
    h.coordinator.onProgress(progress('src', 0, 1, 'started_checkpointing'));
    h.coordinator.onProgress(progress('src', 0, 1, 'finished_sync'));
    await vi.advanceTimersByTimeAsync(40);
    h.completeAll(1);
    await h.flush();
    const [summary] = h.coordinator.history();
    expect(summary).toMatchObject({ epoch: 1, status: 'ready', bytes: 300, failure: null });
    const spans = Object.fromEntries(summary!.spans.map((s) => [s.span, [s.start, s.finish]]));
    const start = (T0 + 1_500) * 1000;
    expect(spans).toEqual({
      Checkpointing: [start, start + 40_000],
      CheckpointingOperators: [start, start + 40_000],
      WritingMetadata: [start + 40_000, start + 40_000],
    });
    expect(h.persisted[0]!.spans.find((s) => s.span === 'CheckpointingOperators')?.finish).toBe(start + 40_000);
  });

  test('at most one in flight: a checkpoint slower than the interval delays the next until it completes', async () => {
    const h = running(1_000);
    await vi.advanceTimersByTimeAsync(1_500);
    await vi.advanceTimersByTimeAsync(5_000);
    expect(h.triggers).toHaveLength(1);
    h.completeAll(1);
    await h.flush();
    expect(h.coordinator.nextDue).toBe(Date.now());
    await vi.advanceTimersByTimeAsync(0);
    expect(h.triggers.map((t) => t.epoch)).toEqual([1, 2]);
  });

  test('a timeout fails the checkpoint, not the job: the epoch is lost and the next follows an interval later', async () => {
    const h = running(1_000, { timeoutMs: 5_000 });
    await vi.advanceTimersByTimeAsync(1_500);
    await vi.advanceTimersByTimeAsync(4_999);
    expect(h.outcomes).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(h.outcomes).toEqual([{ kind: 'failed', generation: 1, epoch: 1, checkpoint: 'periodic', message: 'checkpoint 1 timed out after 5000 ms' }]);
    expect(h.coordinator.history()[0]).toMatchObject({ epoch: 1, status: 'failed' });
    // Late completions of the failed epoch change nothing.
    h.completeAll(1);
    await h.flush();
    expect(h.persisted).toEqual([]);
    expect(h.coordinator.stats().stale).toBe(3);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(h.triggers.map((t) => t.epoch)).toEqual([1, 2]);
  });

  test('a barrier a worker refuses, or metadata that cannot be written, fails the checkpoint', async () => {
    const a = running(1_000, { trigger: () => Promise.reject(new Error('w-2 did not answer')) });
    await vi.advanceTimersByTimeAsync(1_500);
    expect(a.outcomes).toMatchObject([{ kind: 'failed', epoch: 1, message: 'checkpoint 1 could not start: w-2 did not answer' }]);

    const b = running(1_000, { persist: () => Promise.reject(new Error('KV unavailable')) });
    await vi.advanceTimersByTimeAsync(1_500);
    b.completeAll(1);
    await b.flush();
    expect(b.outcomes).toMatchObject([{ kind: 'failed', epoch: 1, message: 'checkpoint 1: could not write its metadata: KV unavailable' }]);
    expect(b.coordinator.lastCompletedEpoch).toBe(0);
  });

  test('events of another generation, epoch or subtask are counted and ignored; a duplicate completion counts once', async () => {
    const h = running(1_000);
    await vi.advanceTimersByTimeAsync(1_500);
    h.coordinator.onCompleted(completed('src', 0, 1, 0));
    h.coordinator.onCompleted(completed('src', 0, 2));
    h.coordinator.onCompleted(completed('nope', 0, 1));
    h.coordinator.onCompleted(completed('src', 5, 1));
    h.coordinator.onCompleted(completed('src', 0, 1));
    h.coordinator.onCompleted(completed('src', 0, 1));
    expect(h.coordinator.stats()).toMatchObject({ stale: 2, unknownSubtask: 2 });
    expect(h.coordinator.history()[0]).toMatchObject({ status: 'inprogress', bytes: 100 });
  });

  test('a live interval change re-bases the next checkpoint; interval 0 turns periodic checkpoints off', async () => {
    const h = running(600_000);
    expect(h.coordinator.nextDue).toBe(T0 + 900_000);
    h.coordinator.arm(1, 2_000, 0);
    expect(h.coordinator.nextDue).toBe(T0 + 2_000);
    h.coordinator.arm(1, 0, 0);
    expect(h.coordinator.nextDue).toBeNull();
    await vi.advanceTimersByTimeAsync(3_600_000);
    expect(h.triggers).toEqual([]);
  });

  test('due times sit on a grid shared by every job, so checkpoints due together start in one batch', async () => {
    vi.setSystemTime(T0 + 7);
    const a = running(10_000);
    const b = running(10_000, { random: () => 0.5003 });
    expect(a.coordinator.nextDue).toBe(T0 + 15_010);
    expect(b.coordinator.nextDue).toBe(T0 + 15_010);
    const exact = running(10_000, { scheduleGridMs: 1 });
    expect(exact.coordinator.nextDue).toBe(T0 + 15_007);
    await vi.advanceTimersByTimeAsync(15_013);
    expect([a.triggers.length, b.triggers.length, exact.triggers.length]).toEqual([1, 1, 1]);
  });

  test('arming for a generation that is not the current one does nothing', async () => {
    const h = harness();
    h.coordinator.arm(1, 1_000, 0);
    h.coordinator.beginGeneration({ generation: 2, subtasks: PLAN });
    h.coordinator.arm(1, 1_000, 0);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(h.triggers).toEqual([]);
  });
});

describe('final checkpoints', () => {
  test('settleInFlight does not wait for a final checkpoint (nothing is armed): a trigger meeting a stop is answered at once', async () => {
    const h = running(10_000);
    void h.coordinator.final(1);
    await h.flush();
    expect(h.coordinator.inFlightEpoch()).toBe(1);
    let settled: boolean | undefined;
    void h.coordinator.settleInFlight(3_000).then((idle) => (settled = idle));
    await h.flush();
    expect(settled).toBe(false);
  });

  test('stops the periodic schedule, takes epoch n+1 with then_stop and resolves once it is durable', async () => {
    const h = running(10_000);
    const final = h.coordinator.final(1);
    await h.flush();
    expect(h.triggers).toEqual([{ generation: 1, epoch: 1, minEpoch: 0, thenStop: true }]);
    expect(h.coordinator.nextDue).toBeNull();
    h.completeAll(1);
    await expect(final).resolves.toEqual({ epoch: 1 });
    expect(h.persisted[0]).toMatchObject({ epoch: 1, kind: 'final' });
    await vi.advanceTimersByTimeAsync(60_000);
    expect(h.triggers).toHaveLength(1);
  });

  test('meeting a periodic checkpoint in flight, it waits for it and then takes its own', async () => {
    const h = running(1_000);
    await vi.advanceTimersByTimeAsync(1_500);
    expect(h.triggers).toMatchObject([{ epoch: 1, thenStop: false }]);
    let result: { epoch: number } | undefined;
    void h.coordinator.final(1).then((r) => (result = r));
    await h.flush();
    expect(h.triggers).toHaveLength(1);
    h.completeAll(1);
    await h.flush();
    expect(h.triggers).toMatchObject([{ epoch: 1 }, { epoch: 2, thenStop: true }]);
    h.completeAll(2);
    await h.flush();
    expect(result).toEqual({ epoch: 2 });
  });

  test('a periodic checkpoint that never completes times out first, then the final one is taken', async () => {
    const h = running(1_000, { timeoutMs: 10_000 });
    await vi.advanceTimersByTimeAsync(1_500);
    const final = h.coordinator.final(1);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(h.triggers).toMatchObject([{ epoch: 1, thenStop: false }, { epoch: 2, thenStop: true }]);
    h.completeAll(2);
    await expect(final).resolves.toEqual({ epoch: 2 });
  });

  test('a final checkpoint that fails or times out rejects', async () => {
    const h = running(0, { timeoutMs: 5_000 });
    const final = h.coordinator.final(1);
    const outcome = expect(final).rejects.toThrow('checkpoint 1 timed out after 5000 ms');
    await vi.advanceTimersByTimeAsync(5_000);
    await outcome;
    await expect(h.coordinator.final(7)).rejects.toThrow('generation 7 is not the current one');
  });
});

describe('generations', () => {
  test('epochs continue across generations; a new generation fails the old one’s checkpoint in flight', async () => {
    const h = running(1_000);
    await vi.advanceTimersByTimeAsync(1_500);
    h.completeAll(1);
    await h.flush();
    await vi.advanceTimersByTimeAsync(1_000);
    expect(h.coordinator.inFlightEpoch()).toBe(2);
    h.coordinator.beginGeneration({ generation: 2, subtasks: PLAN });
    expect(h.outcomes.at(-1)).toMatchObject({ kind: 'failed', epoch: 2, message: 'generation 1 ended' });
    h.coordinator.arm(2, 1_000, 0);
    await vi.advanceTimersByTimeAsync(1_500);
    expect(h.triggers.at(-1)).toEqual({ generation: 2, epoch: 3, minEpoch: 0, thenStop: false });
    expect(h.coordinator.epoch).toBe(3);
  });

  test('a restarted controller continues from the epochs it is given; a restart that ignores state skips ahead', async () => {
    const h = harness({ epoch: 12, lastCompletedEpoch: 11 });
    h.coordinator.beginGeneration({ generation: 4, subtasks: PLAN });
    expect(h.coordinator.epoch).toBe(12);
    h.coordinator.beginGeneration({ generation: 5, subtasks: PLAN }, 20);
    h.coordinator.arm(5, 1_000, 3);
    await vi.advanceTimersByTimeAsync(1_500);
    expect(h.triggers).toEqual([{ generation: 5, epoch: 21, minEpoch: 3, thenStop: false }]);
  });

  test('taken over, the job keeps its cadence: the first checkpoint is due an interval after the earlier owner began its newest, an overdue one within a second', async () => {
    // The earlier owner began epoch 7 (the newest record) 4 s ago, and may have begun epoch 8: the next is 9.
    const onTime = harness();
    onTime.coordinator.followEarlierOwner(7, 8, T0 - 4_000);
    onTime.coordinator.beginGeneration({ generation: 3, subtasks: PLAN });
    onTime.coordinator.arm(3, 10_000, 0);
    expect(onTime.coordinator.nextDue).toBe(T0 + 6_000);
    await vi.advanceTimersByTimeAsync(6_000);
    expect(onTime.triggers).toEqual([{ generation: 3, epoch: 9, minEpoch: 0, thenStop: false }]);

    // Begun 25 s ago at a 10 s interval: overdue, so due within the spread of 1 s (random 0.5 → 500 ms).
    const now = Date.now();
    const overdue = harness();
    overdue.coordinator.followEarlierOwner(7, 8, now - 25_000);
    overdue.coordinator.beginGeneration({ generation: 3, subtasks: PLAN });
    overdue.coordinator.arm(3, 10_000, 0);
    expect(overdue.coordinator.nextDue).toBe(now + 500);

    // The earlier owner's clock ahead of this one's by far: never later than an interval from now.
    const skewed = harness();
    skewed.coordinator.followEarlierOwner(7, 8, now + 60_000);
    skewed.coordinator.beginGeneration({ generation: 3, subtasks: PLAN });
    skewed.coordinator.arm(3, 10_000, 0);
    expect(skewed.coordinator.nextDue).toBe(now + 10_000);

    // Only the first arming after the takeover: a later generation is jittered as any other.
    onTime.completeAll(9, 3);
    await onTime.flush();
    onTime.coordinator.beginGeneration({ generation: 4, subtasks: PLAN });
    onTime.coordinator.arm(4, 10_000, 0);
    expect(onTime.coordinator.nextDue).toBe(Date.now() + 15_000);
  });

  test('endGeneration fails the checkpoint in flight and stops the schedule; close stops everything', async () => {
    const h = running(1_000);
    await vi.advanceTimersByTimeAsync(1_500);
    h.coordinator.endGeneration(1);
    expect(h.outcomes).toMatchObject([{ kind: 'failed', epoch: 1, message: 'generation 1 ended' }]);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(h.triggers).toHaveLength(1);

    const g = running(1_000);
    await vi.advanceTimersByTimeAsync(1_500);
    g.coordinator.close();
    expect(g.outcomes).toMatchObject([{ kind: 'failed', message: 'the job is shutting down' }]);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(g.triggers).toHaveLength(1);
  });

  test('the history keeps the checkpoints that failed and the newest completed one, at most historySize', async () => {
    const h = running(1_000, { historySize: 3, timeoutMs: 500 });
    const timesOut = new Set([2, 4, 5]);
    for (let epoch = 1; epoch <= 6; epoch++) {
      while (h.triggers.length < epoch) await vi.advanceTimersByTimeAsync(50);
      if (!timesOut.has(epoch)) h.completeAll(epoch);
      while (h.outcomes.length < epoch) await vi.advanceTimersByTimeAsync(50);
    }
    while (h.triggers.length < 7) await vi.advanceTimersByTimeAsync(50);
    // Completed epochs 1 and 3 are durable records: the store has them.
    expect(h.coordinator.history().map((s) => [s.epoch, s.status])).toEqual([
      [4, 'failed'],
      [5, 'failed'],
      [6, 'ready'],
      [7, 'inprogress'],
    ]);
    expect(h.persisted.map((r) => r.epoch)).toEqual([1, 3, 6]);
  });
});

describe('checkpoint views', () => {
  test('an in-flight checkpoint shows what each subtask got to; the record of a completed one keeps its progress', async () => {
    const h = running(1_000);
    await vi.advanceTimersByTimeAsync(1_500);
    h.coordinator.onProgress(progress('src', 0, 1, 'started_checkpointing'));
    await vi.advanceTimersByTimeAsync(10);
    h.coordinator.onProgress(progress('src', 0, 1, 'finished_sync'));
    h.coordinator.onCompleted(completed('src', 0, 1));
    h.coordinator.onProgress(progress('out', 0, 1, 'started_alignment'));
    const inFlight = h.coordinator.history().at(-1)!;
    expect(checkpointFromSummary(inFlight)).toMatchObject({ epoch: 1, status: 'inprogress', checkpoint_type: 'scheduled', finish_time: null, bytes: 100 });
    const groups = operatorGroupsFromSummary(inFlight);
    expect(groups.map((g) => [g.operator_id, g.subtasks.length, g.finish_time])).toEqual([
      ['src', 2, null],
      ['out', 1, null],
    ]);
    const src0 = groups[0]!.subtasks[0]!;
    expect(src0).toMatchObject({ index: 0, worker_id: 'w-1', bytes: 100 });
    expect(src0.event_spans.map((s) => s.event)).toEqual(['Sync', 'Async']);
    expect(groups[0]!.subtasks[1]).toMatchObject({ index: 1, worker_id: null, bytes: 0 });
    // Still aligning: the alignment span is open.
    expect(groups[1]!.subtasks[0]!.event_spans[0]).toMatchObject({ event: 'Alignment', finish_time: null });

    h.coordinator.onCompleted(completed('src', 1, 1));
    h.coordinator.onCompleted(completed('out', 0, 1));
    await h.flush();
    const record = h.persisted[0]!;
    expect(record.subtasks[0]!.progress?.map((e) => e.event)).toEqual(['started_checkpointing', 'finished_sync']);
    expect(checkpointFromRecord(record)).toMatchObject({ epoch: 1, status: 'ready', bytes: 300 });
    const done = operatorGroupsFromRecord(record);
    expect(done.map((g) => [g.operator_id, g.bytes, g.finish_time])).toEqual([
      ['src', 200, record.completed_at],
      ['out', 100, record.completed_at],
    ]);
    expect(done[1]!.subtasks[0]!.event_spans.map((s) => s.event)).toEqual(['Alignment', 'Sync']);
    // The history keeps progress and sizes, not the state: the record has that.
    const remembered = h.coordinator.history().find((c) => c.epoch === 1)!;
    expect(remembered.subtasks.map((p) => p.completed?.table_metadata)).toEqual([{}, {}, {}]);
    expect(record.subtasks[0]!.table_metadata).toEqual({ state: { count: 0 } });
  });

  test('a final checkpoint is of type stopping', async () => {
    const h = running(60_000);
    void h.coordinator.final(1);
    await h.flush();
    expect(checkpointFromSummary(h.coordinator.history().at(-1)!).checkpoint_type).toBe('stopping');
  });
});

describe('two-phase commit', () => {
  /** `out[0]` is a two-phase sink: its completion carries what epoch `epoch` must commit. */
  function completeWithCommit(h: Harness, epoch: number): void {
    h.coordinator.onCompleted(completed('src', 0, epoch));
    h.coordinator.onCompleted(completed('src', 1, epoch));
    h.coordinator.onCompleted({ ...completed('out', 0, epoch), commit_data: { rows: [epoch] } });
  }

  function committing(commit: (request: CommitTrigger) => Promise<void>) {
    const commits: CommitTrigger[] = [];
    const h = running(1_000, {
      commit: (request) => {
        commits.push(request);
        return commit(request);
      },
    });
    return { h, commits };
  }

  test('a checkpoint with commit data is written committing, committed by its sinks, then written ready', async () => {
    let confirm!: () => void;
    const { h, commits } = committing(() => new Promise<void>((resolve) => (confirm = resolve)));
    await vi.advanceTimersByTimeAsync(1_500);
    completeWithCommit(h, 1);
    await h.flush();
    expect(h.persisted.map((r) => r.status)).toEqual(['committing']);
    expect(commits).toEqual([{ generation: 1, epoch: 1, commits: [{ node_id: 'out', subtask_index: 0, commit_data: { rows: [1] } }] }]);
    // Restorable from here on, but not complete: no next checkpoint while its sinks commit.
    expect(h.coordinator.lastCompletedEpoch).toBe(1);
    expect(h.coordinator.inFlightEpoch()).toBe(1);
    expect(h.coordinator.history().at(-1)).toMatchObject({ epoch: 1, status: 'committing' });
    expect(h.outcomes).toEqual([]);

    await vi.advanceTimersByTimeAsync(30);
    confirm();
    await h.flush();
    expect(h.persisted.map((r) => r.status)).toEqual(['committing', 'ready']);
    const ready = h.persisted[1]!;
    expect(ready.spans.map((s) => s.span)).toEqual(['Checkpointing', 'CheckpointingOperators', 'WritingMetadata', 'Committing']);
    expect(ready.spans.every((s) => s.finish !== null)).toBe(true);
    const committingSpan = ready.spans.find((s) => s.span === 'Committing')!;
    expect(committingSpan.finish! - committingSpan.start).toBe(30_000);
    expect(h.outcomes).toMatchObject([{ kind: 'completed', record: { epoch: 1, status: 'ready' } }]);
    expect(h.coordinator.inFlightEpoch()).toBeNull();
    const view = checkpointFromRecord(ready);
    expect(view.status).toBe('ready');
    expect(view.events.map((e) => e.event)).toContain('Committing');
  });

  test('a checkpoint without commit data is ready at once and sends no commit', async () => {
    const { h, commits } = committing(() => Promise.resolve());
    await vi.advanceTimersByTimeAsync(1_500);
    h.completeAll(1);
    await h.flush();
    expect(h.persisted.map((r) => r.status)).toEqual(['ready']);
    expect(commits).toEqual([]);
  });

  test('a refused commit leaves the epoch restorable as committing and reports commit_failed, not a failed checkpoint', async () => {
    const { h } = committing(() => Promise.reject(new Error('w-1: no stream')));
    await vi.advanceTimersByTimeAsync(1_500);
    completeWithCommit(h, 1);
    await h.flush();
    expect(h.persisted.map((r) => r.status)).toEqual(['committing']);
    expect(h.outcomes).toEqual([{ kind: 'commit_failed', generation: 1, epoch: 1, checkpoint: 'periodic', message: 'checkpoint 1: the commit failed: w-1: no stream' }]);
    expect(h.coordinator.lastCompletedEpoch).toBe(1);
    expect(h.coordinator.stats()).toMatchObject({ completed: 0, failed: 0, commitFailed: 1 });
    expect(h.coordinator.history().at(-1)).toMatchObject({ epoch: 1, status: 'committing', failure: 'checkpoint 1: the commit failed: w-1: no stream' });
  });

  test('a commit that outlasts the checkpoint timeout, or a generation that ends meanwhile, is a commit failure', async () => {
    const { h } = committing(() => new Promise<void>(() => {}));
    await vi.advanceTimersByTimeAsync(1_500);
    completeWithCommit(h, 1);
    await h.flush();
    await vi.advanceTimersByTimeAsync(60_000);
    expect(h.outcomes).toMatchObject([{ kind: 'commit_failed', epoch: 1, message: 'checkpoint 1 timed out after 60000 ms while its sinks committed' }]);

    const { h: other } = committing(() => new Promise<void>(() => {}));
    await vi.advanceTimersByTimeAsync(1_500);
    completeWithCommit(other, 1);
    await other.flush();
    other.coordinator.endGeneration(1);
    expect(other.outcomes.at(-1)).toMatchObject({ kind: 'commit_failed', epoch: 1, message: 'generation 1 ended while its sinks committed' });
  });

  test('a final checkpoint resolves only once its commit is confirmed', async () => {
    let confirm!: () => void;
    const { h } = committing(() => new Promise<void>((resolve) => (confirm = resolve)));
    let settled = false;
    const final = h.coordinator.final(1).then((r) => ((settled = true), r));
    await h.flush();
    completeWithCommit(h, 1);
    await h.flush();
    expect(settled).toBe(false);
    confirm();
    await expect(final).resolves.toEqual({ epoch: 1 });
  });
});

describe('the Compacting span', () => {
  test('spans the subtasks that rewrote a delta chain as a full snapshot, from the first start to the last finish', async () => {
    const h = running(1_000);
    await vi.advanceTimersByTimeAsync(1_500);
    const compacted = (node: string, index: number, start: number, finish: number): CheckpointCompleted => {
      const event = completed(node, index, 1);
      return { ...event, table_metadata: { ...event.table_metadata, compaction: { start_time: start, finish_time: finish } } };
    };
    h.coordinator.onCompleted(compacted('src', 0, 2_000, 5_000));
    h.coordinator.onCompleted(completed('src', 1, 1));
    h.coordinator.onCompleted(compacted('out', 0, 1_000, 3_000));
    await h.flush();
    const record = h.persisted[0]!;
    expect(record.spans.map((s) => s.span)).toEqual(['Checkpointing', 'CheckpointingOperators', 'Compacting', 'WritingMetadata']);
    expect(record.spans.find((s) => s.span === 'Compacting')).toEqual({ span: 'Compacting', start: 1_000, finish: 5_000 });
    expect(checkpointFromRecord(record).events.map((e) => e.event)).toContain('Compacting');
  });

  test('is absent when no subtask compacted', async () => {
    const h = running(1_000);
    await vi.advanceTimersByTimeAsync(1_500);
    h.completeAll(1);
    await h.flush();
    expect(h.persisted[0]!.spans.map((s) => s.span)).not.toContain('Compacting');
  });
});

describe('after a failed commit', () => {
  test('no later epoch starts in the generation (its restore would not send the failed one again); a new generation may', async () => {
    const h = running(1_000, { commit: () => Promise.reject(new Error('no stream')) });
    await vi.advanceTimersByTimeAsync(1_500);
    h.coordinator.onCompleted(completed('src', 0, 1));
    h.coordinator.onCompleted(completed('src', 1, 1));
    h.coordinator.onCompleted({ ...completed('out', 0, 1), commit_data: { rows: [1] } });
    await h.flush();
    expect(h.outcomes).toMatchObject([{ kind: 'commit_failed', epoch: 1 }]);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(h.triggers.map((t) => t.epoch)).toEqual([1]);
    await expect(h.coordinator.final(1)).rejects.toThrow('epoch 1 is not committed: no checkpoint can follow it in generation 1');

    h.coordinator.beginGeneration({ generation: 2, subtasks: PLAN });
    h.coordinator.arm(2, 1_000, 0);
    await vi.advanceTimersByTimeAsync(2_000);
    expect(h.triggers.map((t) => `${t.generation}:${t.epoch}`)).toEqual(['1:1', '2:2']);
  });
});

describe('manual checkpoints', () => {
  /** Why `manual()` refused, or undefined when it started one. */
  function refusal(h: Harness): unknown {
    try {
      h.coordinator.manual();
      return undefined;
    } catch (err) {
      return err;
    }
  }

  test('start at once while armed, resolve with the started epoch, show as manual, and the periodic schedule follows from their completion', async () => {
    const h = running(10_000);
    expect(h.coordinator.nextDue).toBe(T0 + 15_000);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(h.coordinator.manual()).toEqual({ generation: 1, epoch: 1 });
    expect(h.triggers).toEqual([{ generation: 1, epoch: 1, minEpoch: 0, thenStop: false }]);
    expect(h.coordinator.inFlightEpoch()).toBe(1);
    // The pending periodic one is superseded.
    expect(h.coordinator.nextDue).toBeNull();
    expect(checkpointFromSummary(h.coordinator.history()[0]!).checkpoint_type).toBe('manual');

    await vi.advanceTimersByTimeAsync(500);
    h.completeAll(1);
    await h.flush();
    expect(h.persisted[0]).toMatchObject({ epoch: 1, kind: 'manual', status: 'ready' });
    expect(checkpointFromRecord(h.persisted[0]!).checkpoint_type).toBe('manual');
    expect(h.outcomes).toMatchObject([{ kind: 'completed', record: { epoch: 1, kind: 'manual' } }]);
    expect(h.coordinator.nextDue).toBe(T0 + 1_500 + 10_000);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(h.triggers.map((t) => t.epoch)).toEqual([1, 2]);
    expect(h.coordinator.history()[1]).toMatchObject({ epoch: 2, kind: 'periodic' });
  });

  test('work with periodic checkpoints off (interval 0) while the generation runs', async () => {
    const h = running(0);
    expect(h.coordinator.manual()).toEqual({ generation: 1, epoch: 1 });
    h.completeAll(1);
    await h.flush();
    expect(h.coordinator.nextDue).toBeNull();
    expect(h.coordinator.manual()).toEqual({ generation: 1, epoch: 2 });
  });

  test('are refused when no generation is armed: before Running, after a disarm, after close', () => {
    const h = harness();
    expect(refusal(h)).toMatchObject({ name: 'ManualCheckpointRefused', reason: 'not_armed' });
    h.coordinator.beginGeneration({ generation: 1, subtasks: PLAN });
    expect(refusal(h)).toMatchObject({ reason: 'not_armed' });
    h.coordinator.arm(1, 10_000, 0);
    h.coordinator.disarm(1);
    expect(refusal(h)).toMatchObject({ reason: 'not_armed' });
    h.coordinator.arm(1, 10_000, 0);
    h.coordinator.close();
    expect(refusal(h)).toMatchObject({ reason: 'not_armed' });
    expect(h.triggers).toEqual([]);
  });

  test('are refused while another is in flight, naming its epoch; nothing starts', async () => {
    const h = running(1_000);
    await vi.advanceTimersByTimeAsync(1_500);
    expect(refusal(h)).toMatchObject({ reason: 'in_flight', epoch: 1, message: 'checkpoint 1 is in flight' });
    expect(h.triggers).toHaveLength(1);
  });

  test('after settleInFlight: the one in flight completes, then the manual one takes the next epoch', async () => {
    const h = running(1_000);
    await vi.advanceTimersByTimeAsync(1_500);
    expect(h.coordinator.inFlightEpoch()).toBe(1);
    let result: { epoch: number } | undefined;
    void h.coordinator.settleInFlight(3_000).then((settled) => (result = settled ? h.coordinator.manual() : undefined));
    await vi.advanceTimersByTimeAsync(1_000);
    expect(result).toBeUndefined();
    expect(h.triggers).toHaveLength(1);
    h.completeAll(1);
    await h.flush();
    expect(result).toEqual({ epoch: 2, generation: 1 });
    expect(h.triggers).toMatchObject([{ epoch: 1 }, { epoch: 2, thenStop: false }]);
    expect(h.coordinator.history().map((s) => s.kind)).toEqual(['periodic', 'manual']);
  });

  test('a checkpoint in flight that does not settle within the wait: settleInFlight gives up at its deadline', async () => {
    const h = running(1_000);
    await vi.advanceTimersByTimeAsync(1_500);
    let settled: boolean | undefined;
    void h.coordinator.settleInFlight(3_000).then((s) => (settled = s));
    await vi.advanceTimersByTimeAsync(2_999);
    expect(settled).toBeUndefined();
    await vi.advanceTimersByTimeAsync(1);
    expect(settled).toBe(false);
    expect(refusal(h)).toMatchObject({ reason: 'in_flight', epoch: 1 });
    expect(h.triggers).toHaveLength(1);
    expect(h.coordinator.inFlightEpoch()).toBe(1);
  });

  test('a checkpoint in flight that fails within the wait: the manual one starts after it', async () => {
    const h = running(1_000, { timeoutMs: 2_000 });
    await vi.advanceTimersByTimeAsync(1_500);
    const settled = h.coordinator.settleInFlight(3_000);
    await vi.advanceTimersByTimeAsync(2_000);
    await expect(settled).resolves.toBe(true);
    expect(h.coordinator.manual()).toEqual({ generation: 1, epoch: 2 });
    expect(h.outcomes).toMatchObject([{ kind: 'failed', epoch: 1, checkpoint: 'periodic' }]);
  });

  test('a stop (final checkpoint) asked for while a manual one waits wins: the manual one is refused', async () => {
    const h = running(1_000);
    await vi.advanceTimersByTimeAsync(1_500);
    const waited = h.coordinator.settleInFlight(3_000);
    const final = h.coordinator.final(1);
    h.completeAll(1);
    await h.flush();
    await waited;
    // The stop took over: the manual one is refused.
    expect(refusal(h)).toMatchObject({ reason: 'not_armed' });
    expect(h.triggers).toMatchObject([{ epoch: 1, thenStop: false }, { epoch: 2, thenStop: true }]);
    h.completeAll(2);
    await expect(final).resolves.toEqual({ epoch: 2 });
  });

  test('a manual checkpoint in flight is waited for by a final one', async () => {
    const h = running(10_000);
    h.coordinator.manual();
    const final = h.coordinator.final(1);
    await h.flush();
    expect(h.triggers).toHaveLength(1);
    h.completeAll(1);
    await h.flush();
    expect(h.triggers).toMatchObject([{ epoch: 1, thenStop: false }, { epoch: 2, thenStop: true }]);
    h.completeAll(2);
    await expect(final).resolves.toEqual({ epoch: 2 });
  });

  test('after a failed commit in the generation: refused as uncommitted', async () => {
    const h = running(1_000, { commit: () => Promise.reject(new Error('no stream')) });
    await vi.advanceTimersByTimeAsync(1_500);
    h.coordinator.onCompleted(completed('src', 0, 1));
    h.coordinator.onCompleted(completed('src', 1, 1));
    h.coordinator.onCompleted({ ...completed('out', 0, 1), commit_data: { rows: [1] } });
    await h.flush();
    expect(refusal(h)).toMatchObject({ reason: 'uncommitted', epoch: 1 });
    expect(h.triggers).toHaveLength(1);
  });
});
