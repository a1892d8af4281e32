/**
 * One job's checkpoints, beside its actor (the reference's JobController): the periodic schedule, the
 * epoch counter, at most one checkpoint in flight, per-subtask and per-operator progress with the job
 * spans, the checkpoint timeout, the durable metadata record, and the final (then-stop) checkpoint that
 * Rescaling, Restarting(safe) and CheckpointStopping ask for.
 *
 * The actor never sees a periodic checkpoint: at 10,000 jobs each event sent to an actor costs tens of
 * µs, and a checkpoint every 10 s would be two of them (docs/design-notes.md). A checkpoint failure or
 * timeout costs its epoch, not the job; the coordinator reports it through `onOutcome`.
 *
 * Times: epoch ms inside; the record (`CheckpointRecord`) is in µs like the wire.
 */
import { CHECKPOINT_FORMAT_VERSION, STATE_SCHEMA_VERSION, uuidv7, type CheckpointCompleted, type CheckpointProgressEvent, type CommitData, type RecordStatus } from '../protocol/index.js';
import type { TimerHandle, TimerQueue } from './timer-queue.js';
import { microsFromMs } from '../shared/micros.js';

/** `manual`: started by a client's trigger request (`CheckpointCoordinator.manual`). */
export type CheckpointKind = 'periodic' | 'final' | 'manual';
export type CheckpointStatus = 'inprogress' | 'committing' | 'ready' | 'failed';
export type JobSpanName = 'Checkpointing' | 'CheckpointingOperators' | 'Compacting' | 'WritingMetadata' | 'Committing';

/** µs since the epoch; `finish` is null while the span is open. */
export interface JobSpan {
  span: JobSpanName;
  start: number;
  finish: number | null;
}

/** What a subtask reported when it completed an epoch (times in µs, as on the wire). */
export type SubtaskCheckpoint = Omit<CheckpointCompleted, 'v' | 'job_id' | 'generation' | 'event' | 'epoch' | 'at'>;

export interface SubtaskProgress {
  node_id: string;
  subtask_index: number;
  /** Progress events in arrival order, each with the worker's time (µs). */
  events: { event: CheckpointProgressEvent['event']; at: number }[];
  completed: SubtaskCheckpoint | null;
}

export interface OperatorCheckpoint {
  node_id: string;
  subtasks: number;
  completed_subtasks: number;
  bytes: number;
  /** µs: the first subtask's start and the last one's finish. */
  start_time: number | null;
  finish_time: number | null;
}

/** A subtask's completion as recorded, with the progress events that led to it (worker times, µs). */
export type RecordedSubtask = SubtaskCheckpoint & { progress?: SubtaskProgress['events'] };

/** A subtask's completion less its state and commit data, for what is kept in memory after the record is written. */
export function withoutState<T extends SubtaskCheckpoint>(subtask: T): T {
  const { commit_data: _commit, ...rest } = subtask;
  return { ...rest, table_metadata: {} } as T;
}

/** The durable record of a completed epoch (key `<job>.<epoch>` of the checkpoint bucket). */
export interface CheckpointRecord {
  /** Format version (`CHECKPOINT_FORMAT_VERSION`). */
  v: number;
  /** Time-ordered unique id (UUID v7). */
  id: string;
  /** `committing` until every sink has committed the subtasks' `commit_data`; restorable either way. */
  status: RecordStatus;
  /** Version of the operators' state layout (`STATE_SCHEMA_VERSION`). */
  schema_version: number;
  /** µs. */
  created_at: number;
  job_id: string;
  generation: number;
  epoch: number;
  min_epoch: number;
  kind: CheckpointKind;
  /** µs. */
  start_time: number;
  completed_at: number;
  operators: OperatorCheckpoint[];
  subtasks: RecordedSubtask[];
  spans: JobSpan[];
}

/** A checkpoint as the coordinator remembers it (the recent history, in memory). */
export interface CheckpointSummary {
  epoch: number;
  generation: number;
  kind: CheckpointKind;
  status: CheckpointStatus;
  /** µs. */
  start_time: number;
  finish_time: number | null;
  bytes: number;
  spans: JobSpan[];
  operators: OperatorCheckpoint[];
  /** Per-subtask progress: what a checkpoint that never completed got to. */
  subtasks: SubtaskProgress[];
  failure: string | null;
}

export interface CheckpointTrigger {
  generation: number;
  epoch: number;
  minEpoch: number;
  thenStop: boolean;
}

/** The second phase of a two-phase commit: each listed subtask makes its `commit_data` visible. */
export interface CommitTrigger {
  generation: number;
  epoch: number;
  commits: { node_id: string; subtask_index: number; commit_data: CommitData }[];
}

export type CheckpointOutcome =
  | { kind: 'completed'; record: CheckpointRecord }
  /** The epoch is durable (a restore sends its commit again) but its sinks did not all confirm the commit. */
  | { kind: 'commit_failed'; generation: number; epoch: number; checkpoint: CheckpointKind; message: string }
  | { kind: 'failed'; generation: number; epoch: number; checkpoint: CheckpointKind; message: string };

export interface CoordinatorStats {
  started: number;
  completed: number;
  failed: number;
  /** Durable epochs whose commit was not confirmed in time or was refused. */
  commitFailed: number;
  /** Events for another generation or epoch than the one in flight. */
  stale: number;
  /** Events naming a subtask the generation does not have. */
  unknownSubtask: number;
}

export interface CheckpointCoordinatorOptions {
  jobId: string;
  timers: TimerQueue;
  /** A checkpoint not complete after this long fails (its epoch is lost, the job runs on). */
  timeoutMs: number;
  /** The newest epoch started or completed before (a controller restart); the next one is this + 1. */
  epoch?: number;
  lastCompletedEpoch?: number;
  /** How many settled checkpoints `history()` keeps (failed ones and the newest completed one). */
  historySize?: number;
  /** Periodic due times are rounded up to a multiple of this (ms); 1 keeps them exact. Default 10. */
  scheduleGridMs?: number;
  now?: () => number;
  /** [0, 1): the first checkpoint of a generation is jittered over one interval. */
  random?: () => number;
  /** Sends the barriers; rejects when a source worker does not accept them. */
  trigger(request: CheckpointTrigger): Promise<void>;
  /** Makes the record durable; the epoch is complete only once this resolves. */
  persist(record: CheckpointRecord): Promise<void>;
  /** Sends the commits of a durable epoch; resolves once every subtask confirmed. Needed by two-phase sinks. */
  commit?(request: CommitTrigger): Promise<void>;
  onOutcome?(outcome: CheckpointOutcome): void;
}

/**
 * Why a manual checkpoint was not started. `not_armed`: the generation is not running (no periodic
 * schedule is armed). `in_flight`: another checkpoint is in flight.
 * `uncommitted`: a durable epoch of this generation failed its commit, so no later one may start.
 */
export class ManualCheckpointRefused extends Error {
  constructor(
    readonly reason: 'not_armed' | 'in_flight' | 'uncommitted',
    message: string,
    /** The epoch in flight (`in_flight`) or not committed (`uncommitted`). */
    readonly epoch: number | null = null,
  ) {
    super(message);
    this.name = 'ManualCheckpointRefused';
  }
}

/** The subtasks of a generation, by node. */
export interface GenerationPlan {
  generation: number;
  /** node id → parallelism. */
  subtasks: ReadonlyMap<string, number>;
}

interface InFlight {
  summary: CheckpointSummary;
  dueAt: number | null;
  minEpoch: number;
  subtasks: Map<string, SubtaskProgress>;
  operators: Map<string, OperatorCheckpoint>;
  timeout: TimerHandle;
  settled: Promise<void>;
  resolve: () => void;
  reject: (err: Error) => void;
}

/**
 * Jobs whose checkpoints fall due within the same 10 ms start them together: one wake-up, one burst of
 * requests and replies, instead of one each (a spread-out message costs several times a batched one).
 * bench:controller at 2,000 jobs: 18.6 % of a core exact, 13.4 % on a 20 ms grid, 12.1 % on 50 ms. A
 * coarser grid makes longer bursts to wait behind: at 10,000 jobs a 16-subtask checkpoint took 3.3–4.9×
 * its floor on 20 ms and 2.4–2.7× on 10 ms, for about 2 points more CPU (34.5 % against 32.4 % of a core,
 * five runs each, within their spread).
 */
const DEFAULT_SCHEDULE_GRID_MS = 10;
/** After a takeover, overdue first checkpoints start within this window (or an interval, if shorter). */
const TAKEOVER_OVERDUE_SPREAD_MS = 1_000;

/** As many as the reference keeps checkpoints; older ones are in the store. */
const DEFAULT_HISTORY = 10;
const subtaskKey = (nodeId: string, index: number): string => `${nodeId}\u0000${index}`;

function copySummary(s: CheckpointSummary): CheckpointSummary {
  return {
    ...s,
    spans: s.spans.map((span) => ({ ...span })),
    operators: s.operators.map((o) => ({ ...o })),
    subtasks: s.subtasks.map((p) => ({ ...p, events: p.events.map((e) => ({ ...e })), completed: p.completed === null ? null : { ...p.completed } })),
  };
}

/**
 * The Compacting span: from the first subtask that rewrote a delta chain as a full snapshot to the last
 * one done (the workers report it in `table_metadata.compaction`); null when none did.
 */
function compactionOf(subtasks: Iterable<SubtaskProgress>): JobSpan | null {
  let start = Infinity;
  let finish = -Infinity;
  for (const s of subtasks) {
    const span = s.completed?.table_metadata['compaction'];
    if (typeof span !== 'object' || span === null) continue;
    const { start_time: from, finish_time: to } = span as Record<string, unknown>;
    if (typeof from !== 'number' || typeof to !== 'number') continue;
    start = Math.min(start, from);
    finish = Math.max(finish, to);
  }
  return start <= finish ? { span: 'Compacting', start, finish } : null;
}

export class CheckpointCoordinator {
  private readonly options: CheckpointCoordinatorOptions;
  private readonly now: () => number;
  private readonly random: () => number;
  private plan: GenerationPlan | null = null;
  private epochCounter: number;
  private lastCompleted: number;
  /** Wall ms the earlier owner's newest checkpoint started, until the first arming after a takeover uses it. */
  private earlierOwnerStartedAt: number | null = null;
  private minEpoch = 0;
  private intervalMs = 0;
  /** The generation periodic checkpoints run for; null while disarmed. */
  private armedFor: number | null = null;
  private nextDueAt: number | null = null;
  private due: TimerHandle | null = null;
  private inFlight: InFlight | null = null;
  /**
   * A durable epoch of this generation whose commit failed. No later epoch may start: a restore sends
   * the commits of the epoch it restores only, so a newer record would leave this one's output unsent.
   */
  private uncommitted: number | null = null;
  private readonly recent: CheckpointSummary[] = [];
  private readonly counters: CoordinatorStats = { started: 0, completed: 0, failed: 0, commitFailed: 0, stale: 0, unknownSubtask: 0 };
  private closed = false;

  constructor(options: CheckpointCoordinatorOptions) {
    this.options = options;
    this.now = options.now ?? Date.now;
    this.random = options.random ?? Math.random;
    this.lastCompleted = options.lastCompletedEpoch ?? 0;
    this.epochCounter = Math.max(options.epoch ?? 0, this.lastCompleted);
  }

  /** The newest epoch started; a generation's tasks start at it and their next checkpoint is the one after. */
  get epoch(): number {
    return this.epochCounter;
  }

  get lastCompletedEpoch(): number {
    return this.lastCompleted;
  }

  /** When the next periodic checkpoint is due (epoch ms); null when none is scheduled. */
  get nextDue(): number | null {
    return this.nextDueAt;
  }

  /** The subtasks of the newest generation begun; null before any. */
  get generationPlan(): GenerationPlan | null {
    return this.plan;
  }

  /** The generation periodic (and manual) checkpoints are armed for; null while disarmed. */
  get armedGeneration(): number | null {
    return this.armedFor;
  }

  inFlightEpoch(): number | null {
    return this.inFlight?.summary.epoch ?? null;
  }

  stats(): CoordinatorStats {
    return { ...this.counters };
  }

  /** The checkpoints that failed, the newest completed one and the one in flight, oldest first. */
  history(): CheckpointSummary[] {
    const current = this.inFlight === null ? [] : [this.summaryOf(this.inFlight)];
    return [...this.recent.map(copySummary), ...current.map(copySummary)];
  }

  /**
   * A new generation is scheduled with these subtasks. Its epochs continue from `startEpoch` when that is
   * later (a restart that ignores state). A checkpoint of an older generation still in flight cannot
   * complete any more and fails.
   */
  beginGeneration(plan: GenerationPlan, startEpoch = this.epochCounter): void {
    if (this.inFlight !== null && this.inFlight.summary.generation !== plan.generation) {
      this.abandon(this.inFlight, `generation ${this.inFlight.summary.generation} ended`);
    }
    this.plan = plan;
    this.uncommitted = null;
    this.epochCounter = Math.max(this.epochCounter, startEpoch);
    if (this.armedFor !== null && this.armedFor !== plan.generation) this.disarm(this.armedFor);
  }

  /**
   * An earlier owner of the job completed checkpoints up to `newestEpoch` (its newest record), and may have
   * begun `beganEpoch` after it: the next epoch follows both, so no epoch is taken twice. `newestStartedAt`
   * (ms, the newest record's start time) keeps the job's cadence: the next arming makes the first checkpoint
   * due an interval after it, not one to two intervals after the takeover. It is the earlier owner's wall
   * clock, so a skew between the two only moves that one checkpoint, within [now, now + interval].
   */
  followEarlierOwner(newestEpoch: number, beganEpoch: number, newestStartedAt: number | null = null): void {
    this.lastCompleted = Math.max(this.lastCompleted, newestEpoch);
    this.epochCounter = Math.max(this.epochCounter, newestEpoch, beganEpoch);
    this.earlierOwnerStartedAt = newestStartedAt;
  }

  /**
   * Periodic checkpoints for a running generation. The first is due between one and two intervals from
   * now, so that jobs started together do not checkpoint together; arming again (a live interval change)
   * re-bases the next one on the new interval.
   */
  arm(generation: number, intervalMs: number, minEpoch: number): void {
    if (this.closed || this.plan?.generation !== generation) return;
    const rearm = this.armedFor === generation;
    this.armedFor = generation;
    this.intervalMs = intervalMs;
    this.minEpoch = Math.max(this.minEpoch, minEpoch);
    if (this.inFlight !== null) return; // its completion schedules the next one
    const now = this.now();
    if (intervalMs <= 0) {
      this.scheduleDue(null);
    } else if (rearm && this.nextDueAt !== null) {
      this.scheduleDue(Math.min(this.nextDueAt, now + intervalMs));
    } else if (this.earlierOwnerStartedAt !== null) {
      // Taken over: the cadence goes on. One overdue (the takeover took longer than what was left of the
      // interval) starts soon, spread over a short window so that the jobs of a takeover do not start together.
      const dueAt = this.earlierOwnerStartedAt + intervalMs;
      this.earlierOwnerStartedAt = null;
      const spreadMs = Math.min(intervalMs, TAKEOVER_OVERDUE_SPREAD_MS);
      this.scheduleDue(dueAt > now ? Math.min(dueAt, now + intervalMs) : now + Math.floor(this.random() * spreadMs));
    } else {
      this.scheduleDue(now + intervalMs + Math.floor(this.random() * intervalMs));
    }
  }

  /** Retention deleted everything older than `epoch`: later checkpoints record it as their minimum. */
  advanceMinEpoch(epoch: number): void {
    this.minEpoch = Math.max(this.minEpoch, epoch);
  }

  /** No new periodic checkpoints for this generation; one in flight may still complete. */
  disarm(generation: number): void {
    if (this.armedFor !== generation) return;
    this.armedFor = null;
    this.scheduleDue(null);
  }

  /**
   * The final checkpoint of a run: stops the periodic schedule, lets a checkpoint in flight end (it
   * completes, fails or times out), then takes epoch n+1 with then-stop. Resolves once that epoch is
   * complete and durable; rejects when it fails.
   */
  async final(generation: number): Promise<{ epoch: number }> {
    this.disarm(generation);
    if (this.inFlight !== null) await this.inFlight.settled.catch(() => {});
    if (this.closed) throw new Error('the job is shutting down');
    if (this.plan?.generation !== generation) throw new Error(`generation ${generation} is not the current one`);
    // Another caller may have started a checkpoint while this one waited.
    while (this.inFlight !== null) await this.inFlight.settled.catch(() => {});
    if (this.uncommitted !== null) throw new Error(`epoch ${this.uncommitted} is not committed: no checkpoint can follow it in generation ${generation}`);
    const flight = this.start(generation, 'final', null);
    await flight.settled;
    return { epoch: flight.summary.epoch };
  }

  /**
   * A checkpoint now, for the running generation (the one periodic checkpoints are armed for, whether
   * or not an interval is set); returns its epoch at once (its outcome comes through `onOutcome` like a
   * periodic one's). The periodic schedule goes on from its completion, as from any other's. Throws
   * `ManualCheckpointRefused`: a caller that will wait for a checkpoint in flight does so with
   * `settleInFlight` first.
   */
  manual(): { generation: number; epoch: number } {
    const generation = this.armedFor;
    if (this.closed || generation === null) throw new ManualCheckpointRefused('not_armed', 'no running generation takes checkpoints');
    if (this.inFlight !== null) {
      const epoch = this.inFlight.summary.epoch;
      throw new ManualCheckpointRefused('in_flight', `checkpoint ${epoch} is in flight`, epoch);
    }
    if (this.uncommitted !== null) {
      throw new ManualCheckpointRefused('uncommitted', `epoch ${this.uncommitted} is not committed: no checkpoint can follow it in generation ${generation}`, this.uncommitted);
    }
    // The pending periodic one is superseded: the next is scheduled from this one's completion.
    this.due?.cancel();
    this.due = null;
    this.nextDueAt = null;
    const flight = this.start(generation, 'manual', null);
    return { generation, epoch: flight.summary.epoch };
  }

  /**
   * Waits until no checkpoint is in flight (true), for at most `waitMs` (false when one still is). Does
   * not wait, or gives up early, when no generation takes checkpoints or the one that did stops: a stop
   * took over, and its final checkpoint may be the one in flight.
   */
  async settleInFlight(waitMs: number): Promise<boolean> {
    const generation = this.armedFor;
    if (this.closed || generation === null) return this.inFlight === null;
    const deadline = this.now() + waitMs;
    while (this.inFlight !== null) {
      const flight: InFlight = this.inFlight;
      let timer: TimerHandle | undefined;
      const expired = await Promise.race([
        flight.settled.then(
          () => false,
          () => false,
        ),
        new Promise<boolean>((resolve) => (timer = this.options.timers.schedule(deadline, () => resolve(true)))),
      ]);
      timer?.cancel();
      if (this.closed || this.armedFor !== generation) break;
      if (expired && this.inFlight === flight) return false;
    }
    return this.inFlight === null;
  }

  /** The generation ended without a final checkpoint (killed, lost a worker): its checkpoint in flight fails. */
  endGeneration(generation: number, reason = `generation ${generation} ended`): void {
    this.disarm(generation);
    if (this.inFlight?.summary.generation === generation) this.abandon(this.inFlight, reason);
  }

  onProgress(event: CheckpointProgressEvent): void {
    const found = this.subtaskOf(event);
    if (found === undefined) return;
    found.progress.events.push({ event: event.event, at: event.at });
  }

  onCompleted(event: CheckpointCompleted): void {
    const found = this.subtaskOf(event);
    if (found === undefined) return;
    const { flight, progress } = found;
    if (progress.completed !== null) return; // a duplicate
    const { v: _v, job_id: _j, generation: _g, event: _e, epoch: _ep, at: _at, ...meta } = event;
    progress.completed = meta;
    const operator = flight.operators.get(event.node_id)!;
    operator.completed_subtasks++;
    operator.bytes += meta.bytes;
    operator.start_time = operator.start_time === null ? meta.start_time : Math.min(operator.start_time, meta.start_time);
    operator.finish_time = operator.finish_time === null ? meta.finish_time : Math.max(operator.finish_time, meta.finish_time);
    flight.summary.bytes += meta.bytes;
    for (const op of flight.operators.values()) if (op.completed_subtasks < op.subtasks) return;
    this.writeMetadata(flight);
  }

  /** Stops timers and fails what is in flight; the coordinator does nothing afterwards. */
  close(): void {
    if (this.closed) return;
    if (this.inFlight !== null) this.abandon(this.inFlight, 'the job is shutting down');
    this.closed = true;
    this.armedFor = null;
    this.scheduleDue(null);
  }

  // ─── Internals ──────────────────────────────────────────────────────────────────────────────────

  private scheduleDue(requested: number | null): void {
    this.due?.cancel();
    this.due = null;
    // Due times sit on a grid shared by every job, so the checkpoints due together start in one batch.
    const grid = this.options.scheduleGridMs ?? DEFAULT_SCHEDULE_GRID_MS;
    const at = requested === null || grid <= 1 ? requested : Math.ceil(requested / grid) * grid;
    this.nextDueAt = at;
    if (at === null || this.closed) return;
    const generation = this.armedFor;
    this.due = this.options.timers.schedule(at, () => {
      this.due = null;
      if (this.armedFor !== generation || generation === null || this.inFlight !== null || this.uncommitted !== null) return;
      this.start(generation, 'periodic', at);
    });
  }

  private start(generation: number, kind: CheckpointKind, dueAt: number | null): InFlight {
    const plan = this.plan!;
    const now = this.now();
    const epoch = ++this.epochCounter;
    const subtasks = new Map<string, SubtaskProgress>();
    const operators = new Map<string, OperatorCheckpoint>();
    for (const [nodeId, parallelism] of plan.subtasks) {
      operators.set(nodeId, { node_id: nodeId, subtasks: parallelism, completed_subtasks: 0, bytes: 0, start_time: null, finish_time: null });
      for (let i = 0; i < parallelism; i++) subtasks.set(subtaskKey(nodeId, i), { node_id: nodeId, subtask_index: i, events: [], completed: null });
    }
    let resolve!: () => void;
    let reject!: (err: Error) => void;
    const settled = new Promise<void>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    // Nobody may await a periodic checkpoint; its failure is reported through onOutcome.
    settled.catch(() => {});
    const flight: InFlight = {
      summary: {
        epoch,
        generation,
        kind,
        status: 'inprogress',
        start_time: microsFromMs(now),
        finish_time: null,
        bytes: 0,
        spans: [
          { span: 'Checkpointing', start: microsFromMs(now), finish: null },
          { span: 'CheckpointingOperators', start: microsFromMs(now), finish: null },
        ],
        operators: [],
        subtasks: [],
        failure: null,
      },
      dueAt,
      minEpoch: this.minEpoch,
      subtasks,
      operators,
      timeout: this.options.timers.schedule(now + this.options.timeoutMs, () => {
        if (this.inFlight !== flight) return;
        this.abandon(flight, `checkpoint ${epoch} timed out after ${this.options.timeoutMs} ms`);
      }),
      settled,
      resolve,
      reject,
    };
    this.inFlight = flight;
    this.counters.started++;
    this.options
      .trigger({ generation, epoch, minEpoch: this.minEpoch, thenStop: kind === 'final' })
      .catch((err: unknown) => {
        if (this.inFlight === flight) this.fail(flight, `checkpoint ${epoch} could not start: ${err instanceof Error ? err.message : String(err)}`);
      });
    return flight;
  }

  private subtaskOf(event: { generation: number; epoch: number; node_id: string; subtask_index: number }): { flight: InFlight; progress: SubtaskProgress } | undefined {
    const flight = this.inFlight;
    if (flight === null || flight.summary.generation !== event.generation || flight.summary.epoch !== event.epoch || flight.summary.status !== 'inprogress') {
      this.counters.stale++;
      return undefined;
    }
    const progress = flight.subtasks.get(subtaskKey(event.node_id, event.subtask_index));
    if (progress === undefined) {
      this.counters.unknownSubtask++;
      return undefined;
    }
    return { flight, progress };
  }

  private closeSpan(flight: InFlight, span: JobSpanName, at: number): void {
    const open = flight.summary.spans.find((s) => s.span === span && s.finish === null);
    if (open !== undefined) open.finish = microsFromMs(at);
  }

  private writeMetadata(flight: InFlight): void {
    const now = this.now();
    this.closeSpan(flight, 'CheckpointingOperators', now);
    const compacting = compactionOf(flight.subtasks.values());
    if (compacting !== null) flight.summary.spans.push(compacting);
    flight.summary.spans.push({ span: 'WritingMetadata', start: microsFromMs(now), finish: null });
    const summary = flight.summary;
    const commits = [...flight.subtasks.values()].flatMap((s) =>
      s.completed?.commit_data === undefined ? [] : [{ node_id: s.node_id, subtask_index: s.subtask_index, commit_data: s.completed.commit_data }],
    );
    const record: CheckpointRecord = {
      v: CHECKPOINT_FORMAT_VERSION,
      id: uuidv7(now),
      status: commits.length > 0 ? 'committing' : 'ready',
      schema_version: STATE_SCHEMA_VERSION,
      created_at: microsFromMs(now),
      job_id: this.options.jobId,
      generation: summary.generation,
      epoch: summary.epoch,
      min_epoch: flight.minEpoch,
      kind: summary.kind,
      start_time: summary.start_time,
      completed_at: microsFromMs(now),
      operators: [...flight.operators.values()].map((o) => ({ ...o })),
      subtasks: [...flight.subtasks.values()].map((s) => ({ ...s.completed!, progress: s.events.map((e) => ({ ...e })) })),
      spans: [],
    };
    this.options.persist({ ...record, spans: summary.spans.map((span) => ({ ...span })) }).then(
      () => {
        if (this.inFlight !== flight) return; // timed out while writing
        const done = this.now();
        this.closeSpan(flight, 'WritingMetadata', done);
        if (commits.length > 0) return this.commitPhase(flight, record, commits);
        this.closeSpan(flight, 'Checkpointing', done);
        record.spans = summary.spans.map((span) => ({ ...span }));
        this.succeed(flight, record, done);
      },
      (err: unknown) => {
        if (this.inFlight === flight) this.fail(flight, `checkpoint ${summary.epoch}: could not write its metadata: ${err instanceof Error ? err.message : String(err)}`);
      },
    );
  }

  /**
   * The record is durable as `committing`, so the epoch is restorable from here on (a restore sends the
   * commits again). Once every sink confirmed, the record is rewritten as `ready`; should that write fail,
   * the record stays `committing` and a restore merely repeats a commit the sinks tolerate.
   */
  private commitPhase(flight: InFlight, record: CheckpointRecord, commits: CommitTrigger['commits']): void {
    const summary = flight.summary;
    this.lastCompleted = Math.max(this.lastCompleted, summary.epoch);
    summary.status = 'committing';
    summary.spans.push({ span: 'Committing', start: microsFromMs(this.now()), finish: null });
    const request = { generation: summary.generation, epoch: summary.epoch, commits };
    const sent = this.options.commit === undefined ? Promise.reject(new Error('this coordinator cannot send commits')) : this.options.commit(request);
    sent.then(
      async () => {
        if (this.inFlight !== flight) return; // timed out while committing
        const done = this.now();
        this.closeSpan(flight, 'Committing', done);
        this.closeSpan(flight, 'Checkpointing', done);
        const ready: CheckpointRecord = { ...record, status: 'ready', spans: summary.spans.map((span) => ({ ...span })) };
        await this.options.persist(ready).catch(() => {});
        if (this.inFlight === flight) this.succeed(flight, ready, done);
      },
      (err: unknown) => {
        if (this.inFlight === flight) this.commitFailed(flight, `checkpoint ${summary.epoch}: the commit failed: ${err instanceof Error ? err.message : String(err)}`);
      },
    );
  }

  /** A checkpoint that cannot go on: failed, unless it is durable and only its commit is left. */
  private abandon(flight: InFlight, reason: string): void {
    if (flight.summary.status === 'committing') this.commitFailed(flight, `${reason} while its sinks committed`);
    else this.fail(flight, reason);
  }

  /** The epoch stays restorable as `committing`; the caller decides how the job recovers. */
  private commitFailed(flight: InFlight, message: string): void {
    this.counters.commitFailed++;
    if (flight.summary.generation === this.plan?.generation) this.uncommitted = flight.summary.epoch;
    this.settle(flight, message, { kind: 'commit_failed', generation: flight.summary.generation, epoch: flight.summary.epoch, checkpoint: flight.summary.kind, message });
  }

  private succeed(flight: InFlight, record: CheckpointRecord, now: number): void {
    flight.timeout.cancel();
    this.inFlight = null;
    this.lastCompleted = Math.max(this.lastCompleted, flight.summary.epoch);
    this.counters.completed++;
    flight.summary.status = 'ready';
    flight.summary.finish_time = microsFromMs(now);
    this.remember(flight);
    this.options.onOutcome?.({ kind: 'completed', record });
    flight.resolve();
    // Fixed rate from the due time, so a slow checkpoint or a pause does not shift the job's schedule for good.
    if (flight.dueAt !== null) this.scheduleNextPeriodic(Math.max(now, flight.dueAt + this.intervalMs));
    else this.scheduleNextPeriodic(now + this.intervalMs);
  }

  private fail(flight: InFlight, message: string): void {
    this.counters.failed++;
    flight.summary.status = 'failed';
    this.settle(flight, message, { kind: 'failed', generation: flight.summary.generation, epoch: flight.summary.epoch, checkpoint: flight.summary.kind, message });
  }

  private settle(flight: InFlight, message: string, outcome: CheckpointOutcome): void {
    flight.timeout.cancel();
    if (this.inFlight === flight) this.inFlight = null;
    const now = this.now();
    flight.summary.failure = message;
    flight.summary.finish_time = microsFromMs(now);
    for (const span of flight.summary.spans) if (span.finish === null) span.finish = microsFromMs(now);
    this.remember(flight);
    this.options.onOutcome?.(outcome);
    flight.reject(new Error(message));
    // A failed checkpoint costs the epoch; the next one follows a full interval later.
    this.scheduleNextPeriodic(now + this.intervalMs);
  }

  private scheduleNextPeriodic(at: number): void {
    if (this.armedFor === null || this.intervalMs <= 0 || this.closed) this.scheduleDue(null);
    else this.scheduleDue(at);
  }

  private summaryOf(flight: InFlight): CheckpointSummary {
    return { ...flight.summary, operators: [...flight.operators.values()], subtasks: [...flight.subtasks.values()] };
  }

  /**
   * A settled checkpoint's summary is never written again, so the history can hold it as it is, less the
   * subtasks' state and commit data: the record has those. Of the completed ones only the newest is kept:
   * the others are durable records the store serves, and ten per job were a third of a job's heap.
   */
  private remember(flight: InFlight): void {
    const summary = this.summaryOf(flight);
    summary.subtasks = summary.subtasks.map((s) => (s.completed === null ? s : { ...s, completed: withoutState(s.completed) }));
    if (summary.status === 'ready') {
      const previous = this.recent.findIndex((s) => s.status === 'ready');
      if (previous >= 0) this.recent.splice(previous, 1);
    }
    this.recent.push(summary);
    const keep = this.options.historySize ?? DEFAULT_HISTORY;
    if (this.recent.length > keep) this.recent.splice(0, this.recent.length - keep);
  }
}
