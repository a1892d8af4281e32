import { afterEach, beforeEach, describe, expect, test, vi } from 'vitest';
import { activeTimers } from '../../machines/introspect.js';
import { JobError } from '../../machines/index.js';
import type { JobInput } from '../../machines/index.js';
import { JobDriver } from '../support/job-driver.js';
import type { DriverImpl } from '../support/job-driver.js';

/* One describe block per row group of the reference transition table (arroyo-controller.md §1.2). */

const T0 = 1_700_000_000_000;
let drivers: JobDriver[] = [];

beforeEach(() => {
  vi.useFakeTimers({ now: T0 });
});
afterEach(() => {
  for (const d of drivers) d.stop();
  drivers = [];
  vi.useRealTimers();
});

function job(input: Partial<JobInput> = {}, impl: Partial<DriverImpl> = {}): JobDriver {
  const d = new JobDriver(input, impl);
  drivers.push(d);
  return d;
}

async function running(input: Partial<JobInput> = {}, impl: Partial<DriverImpl> = {}): Promise<JobDriver> {
  const d = job(input, impl);
  await d.toRunning();
  expect(d.state).toBe('Running');
  return d;
}

/** A promise that never settles: the actor waits on it until a deadline fires. */
const never = () => new Promise<never>(() => {});

describe('Created and Compiling', () => {
  test('Created → Compiling → Scheduling without a trigger', async () => {
    const d = job();
    await d.settle();
    expect(d.states).toEqual(['Compiling', 'Scheduling']);
    expect(d.callsOf('compileJob')).toHaveLength(1);
  });

  test('a fatal compile error (bad graph) → Failing → Failed with the user-domain message kept', async () => {
    const d = job({}, { compileJob: () => Promise.reject(new JobError({ kind: 'fatal', message: 'unknown operator "nope"', domain: 'user' })) });
    await d.settle();
    expect(d.states).toEqual(['Compiling', 'Failing', 'Failed']);
    expect(d.context.failure).toMatchObject({ message: 'unknown operator "nope"', domain: 'user', hint: 'no_retry' });
    expect(d.context.times.finish).toBe(T0);
  });

  test('a retryable compile error is retried in Compiling after a backoff, from scratch', async () => {
    let calls = 0;
    const d = job({}, { compileJob: () => (++calls < 3 ? Promise.reject(new Error('registry unavailable')) : Promise.resolve()) });
    await d.settle();
    expect(d.matches('Compiling.backoff')).toBe(true);
    expect(d.context.retry.attempts).toBe(1);
    // attempt 1 waits [500, 1000) ms, attempt 2 [1000, 2000).
    await d.advance(999);
    expect(d.context.retry.attempts).toBe(2);
    await d.advance(1999);
    expect(d.state).toBe('Scheduling');
    expect(calls).toBe(3);
  });

  test('a compile that hangs times out and counts as a failed attempt', async () => {
    const d = job({ policy: { compileTimeoutMs: 5_000 } }, { compileJob: never });
    await d.settle();
    await d.advance(5_000);
    expect(d.matches('Compiling.backoff')).toBe(true);
    expect(d.context.warning?.message).toBe('compiling timed out');
  });

  test('the budget-th consecutive failure in a state escalates to Recovering', async () => {
    const d = job({ policy: { stateBackoff: { initialMs: 10, maxMs: 10, multiplier: 1, jitter: 0 } } }, {
      compileJob: () => Promise.reject(new JobError({ kind: 'retryable', message: 'flaky', retries: 3 })),
    });
    await d.settle();
    await d.advance(10);
    await d.advance(10);
    expect(d.state).toBe('Recovering');
    expect(d.context.restarts).toBe(1);
    expect(d.context.failure?.message).toBe('flaky');
    expect(d.callsOf('compileJob')).toHaveLength(3);
  });
});

describe('Scheduling', () => {
  test('all tasks started → Running; each schedule is a new generation; start time set on first start', async () => {
    const d = await running();
    expect(d.states).toEqual(['Compiling', 'Scheduling', 'Running']);
    expect(d.context.generation).toBe(1);
    expect(d.context.times.start).toBe(T0);
    expect(d.callsOf('scheduleJob')[0]?.input).toMatchObject({ jobId: 'job-1', generation: 1 });
  });

  test('tasks.started from another generation is ignored', async () => {
    const d = job();
    await d.settle();
    d.send({ type: 'tasks.started', generation: 99 });
    expect(d.matches('Scheduling.attempt.starting')).toBe(true);
  });

  for (const stop of ['checkpoint', 'graceful', 'immediate'] as const) {
    test(`stop=${stop} set on entry → Stopping(immediate) (StopN)`, async () => {
      const d = job({ config: { stop } });
      await d.settle();
      expect(d.states.slice(0, 3)).toEqual(['Compiling', 'Scheduling', 'Stopping']);
      expect(d.context.stopKind).toBe('immediate');
    });
  }

  test('stop=force via a config update → Stopping(kill) → Stopped', async () => {
    const d = job({}, { scheduleJob: never });
    await d.settle();
    d.update({ stop: 'force' });
    await d.settle();
    expect(d.states).toEqual(['Compiling', 'Scheduling', 'Stopping', 'Stopped']);
    expect(d.callsOf('killJob')).toHaveLength(1);
  });

  test('a task failure during startup: with_backoff → Recovering, no_retry → Failing', async () => {
    const a = job();
    await a.settle();
    a.sendCurrent({ type: 'task.failed', message: 'connection refused', domain: 'external', hint: 'with_backoff' });
    expect(a.state).toBe('Recovering');
    const b = job();
    await b.settle();
    b.sendCurrent({ type: 'task.failed', message: 'bad config', domain: 'user', hint: 'no_retry' });
    await b.settle();
    expect(b.states.slice(-2)).toEqual(['Failing', 'Failed']);
    expect(b.context.failure).toMatchObject({ message: 'bad config', domain: 'user' });
  });

  test('NotEnoughSlots is retried every second in the same generation, then Failing at the worker-startup timeout', async () => {
    const d = job({ policy: { workerStartupTimeoutMs: 10_000 } }, {
      scheduleJob: () => Promise.reject(new JobError({ kind: 'not_enough_slots', message: 'need 4 slots, 2 free' })),
    });
    await d.settle();
    expect(d.matches('Scheduling.attempt.waitingForSlots')).toBe(true);
    await d.advance(9_999);
    expect(d.state).toBe('Scheduling');
    expect(d.callsOf('scheduleJob').length).toBeGreaterThanOrEqual(9);
    expect(new Set(d.callsOf('scheduleJob').map((c) => c.input.generation))).toEqual(new Set([1]));
    await d.advance(1);
    await d.settle();
    expect(d.states.slice(-2)).toEqual(['Failing', 'Failed']);
    expect(d.context.failure?.message).toMatch(/not enough slots/);
  });

  test('a task-startup timeout is retried with a new generation, the third escalates to Recovering', async () => {
    const d = job({ policy: { taskStartupTimeoutMs: 1_000, stateBackoff: { initialMs: 1, maxMs: 1, multiplier: 1, jitter: 0 } } });
    await d.settle();
    await d.advance(1_000);
    await d.advance(1);
    expect(d.context.generation).toBe(2);
    await d.advance(1_000);
    await d.advance(1);
    expect(d.context.generation).toBe(3);
    await d.advance(1_000);
    expect(d.state).toBe('Recovering');
    expect(d.context.failure?.message).toBe('tasks did not start in time');
  });
});

describe('Running', () => {
  test.each([
    ['checkpoint', 'CheckpointStopping'],
    ['graceful', 'Stopping.graceful'],
    ['immediate', 'Stopping.immediate'],
    ['force', 'Stopping.kill'],
  ] as const)('stop=%s → %s (StopR)', async (stop, target) => {
    const d = await running({}, { killJob: never });
    d.update({ stop });
    expect(d.matches(target)).toBe(true);
  });

  test('graceful and immediate stops send StopExecution with their mode', async () => {
    const d = await running();
    d.update({ stop: 'graceful' });
    await d.settle();
    expect(d.callsOf('stopJob')[0]?.input).toEqual({ jobId: 'job-1', generation: 1, mode: 'graceful' });
  });

  test('a changed restart nonce → Restarting(safe) and the nonce is synced', async () => {
    const d = await running();
    d.update({ restartNonce: 1 });
    expect(d.matches('Restarting.safe')).toBe(true);
    expect(d.context.appliedRestartNonce).toBe(1);
  });

  test('a restart or rescale asked for while the job was starting is acted on when it reaches Running', async () => {
    const a = job();
    await a.settle();
    a.update({ restartNonce: 1 });
    a.sendCurrent({ type: 'tasks.started' });
    expect(a.matches('Restarting.safe')).toBe(true);
    const b = job();
    await b.settle();
    b.update({ parallelismOverrides: { source: 5 } });
    b.sendCurrent({ type: 'tasks.started' });
    expect(b.state).toBe('Rescaling');
  });

  test('a changed restart nonce with mode force → Restarting(force)', async () => {
    const d = await running({}, { cleanupJob: never });
    d.update({ restartNonce: 1, restartMode: 'force' });
    expect(d.matches('Restarting.force')).toBe(true);
  });

  test('changed env vars → Restarting(safe), applied at the next schedule', async () => {
    const d = await running();
    d.update({ env: { LOG_LEVEL: 'debug' } });
    expect(d.matches('Restarting.safe')).toBe(true);
  });

  test('a parallelism override that differs from the running parallelism → Rescaling', async () => {
    const d = await running();
    d.update({ parallelismOverrides: { source: 1 } });
    expect(d.state).toBe('Running');
    d.update({ parallelismOverrides: { source: 4 } });
    expect(d.state).toBe('Rescaling');
  });

  test('other config changes apply live: a new checkpoint interval re-arms the coordinator for the generation', async () => {
    const d = await running({ config: { checkpointIntervalMs: 600_000 } });
    d.update({ checkpointIntervalMs: 2_000 });
    expect(d.state).toBe('Running');
    expect(d.callsOf('armCheckpoints').map((c) => c.input)).toEqual([
      { jobId: 'job-1', generation: 1, intervalMs: 600_000, minEpoch: 0 },
      { jobId: 'job-1', generation: 1, intervalMs: 2_000, minEpoch: 0 },
    ]);
  });

  test('TTL since the first start → Stopping(immediate)', async () => {
    const d = await running({ config: { ttlMs: 60_000 }, policy: { heartbeatTimeoutMs: 0 } });
    await d.advance(59_999);
    expect(d.state).toBe('Running');
    await d.advance(1);
    expect(d.matches('Stopping.immediate')).toBe(true);
    expect(d.context.warning?.message).toMatch(/TTL/);
  });

  test('a TTL set, changed or removed while running applies live', async () => {
    const d = await running({ policy: { heartbeatTimeoutMs: 0 } });
    await d.advance(10_000);
    d.update({ ttlMs: 60_000 });
    expect(d.state).toBe('Running');
    await d.advance(40_000);
    d.update({ ttlMs: 120_000 });
    await d.advance(60_000);
    expect(d.state).toBe('Running');
    d.update({ ttlMs: null });
    await d.advance(600_000);
    expect(d.state).toBe('Running');
    d.update({ ttlMs: 30_000 });
    expect(d.matches('Stopping.immediate')).toBe(false);
    await d.advance(1);
    expect(d.matches('Stopping.immediate')).toBe(true);
  });

  test('a source finishing → Finishing → Finished once all tasks finished', async () => {
    const d = await running();
    d.sendCurrent({ type: 'source.finished' });
    expect(d.state).toBe('Finishing');
    d.sendCurrent({ type: 'tasks.finished' });
    expect(d.state).toBe('Finished');
    expect(d.snapshot.status).toBe('done');
    expect(d.callsOf('releaseGeneration')).toHaveLength(1);
  });

  test('a task failure: with_backoff → Recovering, no_retry → Failing; other generations are ignored', async () => {
    const a = await running();
    a.send({ type: 'task.failed', generation: 0, message: 'old', domain: 'internal', hint: 'no_retry' });
    expect(a.state).toBe('Running');
    a.sendCurrent({ type: 'task.failed', message: 'disk full', domain: 'external', hint: 'with_backoff' });
    expect(a.state).toBe('Recovering');
    expect(a.context.failure).toMatchObject({ message: 'disk full', domain: 'external', hint: 'with_backoff' });
    const b = await running();
    b.sendCurrent({ type: 'task.failed', message: 'division by zero', domain: 'user', hint: 'no_retry' });
    expect(b.state).toBe('Failing');
  });

  test('no heartbeat within the timeout → Recovering; heartbeats keep it running', async () => {
    const d = await running({ policy: { heartbeatTimeoutMs: 30_000 }, config: { checkpointIntervalMs: 0 } });
    for (let i = 0; i < 10; i++) {
      await d.advance(5_000);
      d.sendCurrent({ type: 'workers.heartbeat' });
    }
    expect(d.state).toBe('Running');
    await d.advance(30_000);
    expect(d.state).toBe('Recovering');
    expect(d.context.failure?.message).toMatch(/no heartbeat/);
  });

  test('a lost worker → Recovering', async () => {
    const d = await running();
    d.sendCurrent({ type: 'worker.lost', workerId: 'w-2' });
    expect(d.state).toBe('Recovering');
    expect(d.context.failure?.message).toBe('worker w-2 was lost');
  });

  test('periodic checkpoints belong to the coordinator: armed on entering Running, disarmed on leaving it', async () => {
    const d = await running({ config: { checkpointIntervalMs: 10_000 } });
    expect(d.callsOf('armCheckpoints').map((c) => c.input.generation)).toEqual([1]);
    expect(d.callsOf('disarmCheckpoints')).toHaveLength(0);
    // A Running job sends no checkpoint work through the actor: an hour passes with no poll doing anything.
    await d.advance(3_600_000);
    expect(d.callsOf('armCheckpoints')).toHaveLength(1);
    d.sendCurrent({ type: 'worker.lost', workerId: 'w' });
    expect(d.callsOf('disarmCheckpoints').map((c) => c.input)).toEqual([{ jobId: 'job-1', generation: 1 }]);
  });

  test('healthy for the healthy duration → restarts reset to 0', async () => {
    const d = job({ status: { restarts: 3 }, policy: { healthyDurationMs: 120_000 }, config: { checkpointIntervalMs: 0 } });
    await d.toRunning();
    for (let i = 0; i < 24; i++) {
      await d.advance(5_000);
      d.sendCurrent({ type: 'workers.heartbeat' });
    }
    expect(d.context.restarts).toBe(0);
    expect(d.state).toBe('Running');
  });

  test('the logging timer fires every 60 s', async () => {
    const d = await running({ policy: { heartbeatTimeoutMs: 0 } });
    await d.advance(180_000);
    expect(d.callsOf('logStatus')).toHaveLength(3);
  });
});

describe('Rescaling, Restarting and CheckpointStopping end with a final checkpoint', () => {
  test('Rescaling: final checkpoint completes and all tasks finish → Scheduling with the new overrides', async () => {
    const d = await running();
    d.update({ parallelismOverrides: { source: 4 } });
    expect(d.callsOf('disarmCheckpoints')).toHaveLength(1);
    d.sendCurrent({ type: 'tasks.finished' });
    expect(d.state).toBe('Rescaling');
    await d.settle();
    expect(d.callsOf('finalCheckpoint').map((c) => c.input)).toEqual([{ jobId: 'job-1', generation: 1 }]);
    expect(d.states.slice(-2)).toEqual(['Rescaling', 'Scheduling']);
    expect(d.callsOf('scheduleJob').at(-1)?.input.parallelismOverrides).toEqual({ source: 4 });
    d.sendCurrent({ type: 'tasks.started' });
    expect(d.context.parallelism).toEqual({ source: 4, sink: 1 });
    expect(d.context.generation).toBe(2);
  });

  test('Restarting(safe): same condition → Scheduling at generation + 1', async () => {
    const d = await running();
    d.update({ restartNonce: 1 });
    await d.settle();
    expect(d.matches('Restarting.safe.awaitingTasks')).toBe(true);
    d.sendCurrent({ type: 'tasks.finished' });
    await d.settle();
    d.sendCurrent({ type: 'tasks.started' });
    expect(d.state).toBe('Running');
    expect(d.context.generation).toBe(2);
  });

  test('Restarting(safe) → Restarting(force) when a config update asks for force; force cleans up → Scheduling', async () => {
    const d = await running({}, { finalCheckpoint: never });
    d.update({ restartNonce: 1 });
    d.update({ restartMode: 'force' });
    expect(d.matches('Restarting.force')).toBe(true);
    await d.settle();
    expect(d.callsOf('cleanupJob')).toHaveLength(1);
    expect(d.state).toBe('Scheduling');
  });

  test.each(['Rescaling', 'Restarting'] as const)('%s: a stop request → StopN', async (state) => {
    const d = await running({}, { finalCheckpoint: never });
    if (state === 'Rescaling') d.update({ parallelismOverrides: { source: 2 } });
    else d.update({ restartNonce: 1 });
    expect(d.state).toBe(state);
    d.update({ stop: 'checkpoint' });
    expect(d.matches('Stopping.immediate')).toBe(true);
  });

  test('CheckpointStopping: the final checkpoint completes and tasks finish → Stopped', async () => {
    const d = await running({}, { finalCheckpoint: () => ({ epoch: 7 }) });
    d.update({ stop: 'checkpoint' });
    expect(d.matches('CheckpointStopping.checkpointing')).toBe(true);
    await d.settle();
    expect(d.matches('CheckpointStopping.awaitingTasks')).toBe(true);
    expect(d.context.checkpoint.finalEpoch).toBe(7);
    d.sendCurrent({ type: 'tasks.finished' });
    expect(d.state).toBe('Stopped');
    expect(d.context.times.finish).toBe(T0);
  });

  test('tasks that finish before the final checkpoint completes do not end the state early', async () => {
    let complete!: (r: { epoch: number }) => void;
    const d = await running({}, { finalCheckpoint: () => new Promise((resolve) => (complete = resolve)) });
    d.update({ stop: 'checkpoint' });
    d.sendCurrent({ type: 'tasks.finished' });
    await d.settle();
    expect(d.matches('CheckpointStopping.checkpointing')).toBe(true);
    complete({ epoch: 3 });
    await d.settle();
    expect(d.state).toBe('Stopped');
  });

  test('CheckpointStopping: stop → immediate → Stopping(immediate); stop → force → Stopping(kill) (the reference panicked)', async () => {
    const a = await running({}, { finalCheckpoint: never });
    a.update({ stop: 'checkpoint' });
    a.update({ stop: 'immediate' });
    expect(a.matches('Stopping.immediate')).toBe(true);
    const b = await running({}, { killJob: never, finalCheckpoint: never });
    b.update({ stop: 'checkpoint' });
    b.update({ stop: 'force' });
    expect(b.matches('Stopping.kill')).toBe(true);
  });

  test('a final checkpoint that fails: stop falls back to an immediate stop, restart/rescale go to Recovering', async () => {
    const refuse = () => Promise.reject(new JobError({ kind: 'retryable', domain: 'external', message: 'sink refused' }));
    const a = await running({}, { finalCheckpoint: refuse, stopJob: never });
    a.update({ stop: 'checkpoint' });
    await a.settle();
    expect(a.matches('Stopping.immediate')).toBe(true);
    expect(a.context.failure).toMatchObject({ message: 'final checkpoint of the stop failed: sink refused', domain: 'external' });
    const b = await running({}, { finalCheckpoint: refuse });
    b.update({ restartNonce: 1 });
    await b.settle();
    expect(b.state).toBe('Recovering');
  });

  test('a final checkpoint gets two checkpoint timeouts (one may be spent waiting for a periodic one), then falls back', async () => {
    const a = await running({ policy: { checkpointTimeoutMs: 5_000 } }, { finalCheckpoint: never, stopJob: never });
    a.update({ stop: 'checkpoint' });
    await a.advance(9_999);
    expect(a.matches('CheckpointStopping.checkpointing')).toBe(true);
    await a.advance(1);
    expect(a.matches('Stopping.immediate')).toBe(true);
    expect(a.context.failure?.message).toBe('final checkpoint of the stop timed out');
  });

  test('tasks that do not stop after the final checkpoint are killed', async () => {
    const b = await running({ policy: { stopTimeoutMs: 5_000 } });
    b.update({ stop: 'checkpoint' });
    await b.settle();
    await b.advance(5_000);
    expect(b.states.slice(-2)).toEqual(['Stopping', 'Stopped']);
    expect(b.callsOf('killJob')).toHaveLength(1);
  });
});

describe('Stopping', () => {
  test('StopExecution then all tasks finished within the timeout → Stopped', async () => {
    const d = await running();
    d.update({ stop: 'immediate' });
    await d.settle();
    d.sendCurrent({ type: 'tasks.finished' });
    expect(d.state).toBe('Stopped');
    expect(d.callsOf('killJob')).toHaveLength(0);
  });

  test('no tasks running: the stop completes at once', async () => {
    const d = await running({}, { stopJob: () => ({ finished: true }) });
    d.update({ stop: 'graceful' });
    await d.settle();
    expect(d.state).toBe('Stopped');
  });

  test('on timeout the stop escalates to killing the workers', async () => {
    const d = await running({ policy: { stopTimeoutMs: 60_000 } });
    d.update({ stop: 'graceful' });
    await d.advance(60_000);
    expect(d.callsOf('killJob')).toHaveLength(1);
    expect(d.state).toBe('Stopped');
    expect(d.context.warning?.message).toBe('graceful stop timed out: killing');
  });

  test('an error sending the stop escalates to kill; graceful can be upgraded to immediate and force', async () => {
    const a = await running({}, { stopJob: () => Promise.reject(new Error('no responders')) });
    a.update({ stop: 'immediate' });
    await a.settle();
    expect(a.callsOf('killJob')).toHaveLength(1);
    const b = await running({}, { killJob: never });
    b.update({ stop: 'graceful' });
    b.update({ stop: 'immediate' });
    expect(b.matches('Stopping.immediate')).toBe(true);
    b.update({ stop: 'force' });
    expect(b.matches('Stopping.kill')).toBe(true);
  });

  test('a kill that keeps failing is retried with backoff; a stop still ends, with the generation abandoned', async () => {
    const d = await running({ policy: { stateBackoff: { initialMs: 5, maxMs: 5, multiplier: 1, jitter: 0 } } }, {
      killJob: () => Promise.reject(new Error('worker unreachable')),
    });
    d.update({ stop: 'force' });
    for (let i = 0; i < 25; i++) await d.advance(5);
    expect(d.callsOf('killJob')).toHaveLength(20);
    expect(d.state).toBe('Stopped');
    expect(d.context.warning?.message).toMatch(/generation 1 were killed: abandoned/);
  });

  test('a kill that hangs times out each attempt', async () => {
    const d = await running({ policy: { killTimeoutMs: 1_000, stateBackoff: { initialMs: 5, maxMs: 5, multiplier: 1, jitter: 0 } } }, {
      killJob: never,
    });
    d.update({ stop: 'force' });
    await d.advance(1_000);
    expect(d.matches('Stopping.killBackoff')).toBe(true);
    expect(d.context.warning?.message).toBe('killing the tasks timed out');
    for (let i = 0; i < 20; i++) await d.advance(1_005);
    expect(d.state).toBe('Stopped');
  });
});

describe('Recovering and Failing', () => {
  test('Recovering: restarts + 1, jittered backoff, cleanup → Compiling → Scheduling', async () => {
    const d = await running();
    d.sendCurrent({ type: 'worker.lost', workerId: 'w-1' });
    expect(d.context.restarts).toBe(1);
    const wait = d.context.deadlines.backoff! - Date.now();
    expect(wait).toBeGreaterThanOrEqual(500);
    expect(wait).toBeLessThan(1_000);
    await d.advance(wait);
    expect(d.callsOf('cleanupJob')).toHaveLength(1);
    await d.settle();
    expect(d.states.slice(-3)).toEqual(['Recovering', 'Compiling', 'Scheduling']);
    expect(d.context.generation).toBe(2);
  });

  test('jobs with a TTL (previews) are not restarted → Failing', async () => {
    const d = await running({ config: { ttlMs: 60_000 } });
    d.sendCurrent({ type: 'task.failed', message: 'oops', domain: 'internal', hint: 'with_backoff' });
    await d.settle();
    expect(d.states.slice(-3)).toEqual(['Recovering', 'Failing', 'Failed']);
    expect(d.context.failure?.message).toMatch(/not restarted: oops/);
  });

  test('exhausted restarts → Failing with "Exhausted retries" and the original domain', async () => {
    const d = await running({ policy: { allowedRestarts: 2 } });
    for (let i = 0; i < 3; i++) {
      d.sendCurrent({ type: 'task.failed', message: 'upstream 503', domain: 'external', hint: 'with_backoff' });
      await d.advance(60_000);
      if (d.state === 'Scheduling') d.sendCurrent({ type: 'tasks.started' });
    }
    expect(d.state).toBe('Failed');
    expect(d.context.failure).toMatchObject({ message: 'Exhausted retries: upstream 503', domain: 'external' });
    expect(d.context.restarts).toBe(3);
  });

  test('allowedRestarts = -1 means unlimited', async () => {
    const d = await running({ policy: { allowedRestarts: -1, restartBackoff: { initialMs: 1, maxMs: 1, multiplier: 1, jitter: 0 } } });
    for (let i = 0; i < 30; i++) {
      d.sendCurrent({ type: 'worker.lost', workerId: 'w' });
      await d.advance(1);
      d.sendCurrent({ type: 'tasks.started' });
    }
    expect(d.state).toBe('Running');
    expect(d.context.restarts).toBe(30);
  });

  test('a stop during Recovering is honoured without waiting for the backoff', async () => {
    const d = await running();
    d.sendCurrent({ type: 'worker.lost', workerId: 'w' });
    d.update({ stop: 'checkpoint' });
    expect(d.matches('Stopping.immediate')).toBe(true);
  });

  test('Failing: best-effort cleanup → Failed, even when the cleanup fails or hangs', async () => {
    const a = await running({}, { cleanupJob: () => Promise.reject(new Error('nope')) });
    a.sendCurrent({ type: 'task.failed', message: 'x', domain: 'user', hint: 'no_retry' });
    await a.settle();
    expect(a.state).toBe('Failed');
    const b = await running({ policy: { cleanupTimeoutMs: 3_000 } }, { cleanupJob: never });
    b.sendCurrent({ type: 'task.failed', message: 'x', domain: 'user', hint: 'no_retry' });
    await b.advance(3_000);
    expect(b.state).toBe('Failed');
    expect(b.context.warning?.message).toBe('cleanup of the failed job timed out');
  });
});

describe('terminal states', () => {
  test('Failed + changed nonce → Compiling with restarts 0, failure cleared, nonce synced', async () => {
    const d = await running({ status: { restarts: 2 } });
    d.sendCurrent({ type: 'task.failed', message: 'x', domain: 'user', hint: 'no_retry' });
    await d.settle();
    expect(d.state).toBe('Failed');
    d.update({ stop: 'none' });
    expect(d.state).toBe('Failed');
    d.update({ restartNonce: 1 });
    expect(d.states.slice(-2)).toEqual(['Failed', 'Compiling']);
    expect(d.context).toMatchObject({ restarts: 0, failure: null, appliedRestartNonce: 1 });
  });

  test('Stopped + stop=none → Compiling (start); a TTL job stays Stopped', async () => {
    const a = await running();
    a.update({ stop: 'immediate' });
    a.sendCurrent({ type: 'tasks.finished' });
    expect(a.state).toBe('Stopped');
    a.update({ restartNonce: 5 });
    expect(a.state).toBe('Stopped');
    a.update({ stop: 'none' });
    await a.settle();
    a.sendCurrent({ type: 'tasks.started' });
    expect(a.state).toBe('Running');
    expect(a.context.times.start).toBe(T0);
    // The nonce bumped while stopped is satisfied by the start: no second restart.
    expect(a.context.appliedRestartNonce).toBe(5);
    const b = await running({ config: { ttlMs: 1_000 } });
    await b.advance(1_000);
    b.sendCurrent({ type: 'tasks.finished' });
    expect(b.state).toBe('Stopped');
    b.update({ stop: 'none' });
    expect(b.state).toBe('Stopped');
  });

  test('start time is reset only after a finish', async () => {
    const d = await running();
    d.update({ stop: 'immediate' });
    d.sendCurrent({ type: 'tasks.finished' });
    await d.advance(10_000);
    d.update({ stop: 'none' });
    await d.settle();
    d.sendCurrent({ type: 'tasks.started' });
    expect(d.context.times.start).toBe(T0 + 10_000);
    d.sendCurrent({ type: 'worker.lost', workerId: 'w' });
    await d.advance(1_000);
    d.sendCurrent({ type: 'tasks.started' });
    expect(d.state).toBe('Running');
    expect(d.context.times.start).toBe(T0 + 10_000);
  });

  test('Finished is final: no event leaves it, and the generation was released', async () => {
    const d = await running();
    d.sendCurrent({ type: 'tasks.finished' });
    expect(d.state).toBe('Finished');
    d.update({ restartNonce: 1, stop: 'none' });
    expect(d.state).toBe('Finished');
    expect(d.callsOf('releaseGeneration')).toEqual([{ type: 'releaseGeneration', input: { jobId: 'job-1', generation: 1 } }]);
  });
});

describe('a takeover reconciling with the workers', () => {
  test('a config change that applies live keeps the job reconciling: the adoption goes on, the TTL re-arms with the new value', async () => {
    let adopted!: () => void;
    const d = await running({ config: { ttlMs: null, checkpointIntervalMs: 10_000 } }, { adoptGeneration: () => new Promise<void>((resolve) => (adopted = resolve)) });
    d.send({ type: 'job.adopt' });
    await d.settle();
    expect(d.matches('Running.progress.reconciling')).toBe(true);
    // A live change: a new checkpoint interval and a TTL. Before, it re-entered every region of Running and
    // sent the job back to polling, its tasks never adopted.
    d.update({ checkpointIntervalMs: 5_000, ttlMs: 30_000 });
    await d.settle();
    expect(d.matches('Running.progress.reconciling')).toBe(true);
    expect(d.callsOf('adoptGeneration')).toHaveLength(1);
    adopted();
    await d.settle();
    expect(d.matches('Running.progress.polling')).toBe(true);
    expect(d.callsOf('armCheckpoints').at(-1)?.input).toMatchObject({ intervalMs: 5_000 });
    // The TTL timer, asleep while there was no TTL, was re-armed: the job stops once its TTL has passed.
    await d.advance(30_000);
    expect(d.matches('Stopping.immediate')).toBe(true);
  });
});

describe('timers survive persistence', () => {
  function restore(from: JobDriver, impl: Partial<DriverImpl> = {}): JobDriver {
    const snapshot = from.actor.getPersistedSnapshot();
    from.stop();
    const d = new JobDriver({}, impl, JSON.parse(JSON.stringify(snapshot)));
    drivers.push(d);
    d.send({ type: 'job.resume' });
    return d;
  }

  test('a restored Running job stops at its original TTL deadline', async () => {
    const a = await running({ config: { ttlMs: 60_000, checkpointIntervalMs: 0 }, policy: { heartbeatTimeoutMs: 0 } });
    await a.advance(40_000);
    const b = restore(a);
    expect(b.state).toBe('Running');
    await b.advance(19_999);
    expect(b.state).toBe('Running');
    await b.advance(1);
    expect(b.matches('Stopping.immediate')).toBe(true);
  });

  test('a restored Recovering job ends its backoff at the original deadline', async () => {
    const a = await running({ policy: { restartBackoff: { initialMs: 5_000, maxMs: 60_000, multiplier: 2, jitter: 0 } } });
    a.sendCurrent({ type: 'worker.lost', workerId: 'w' });
    await a.advance(4_000);
    const b = restore(a);
    await b.advance(5_999);
    expect(b.matches('Recovering.backingOff')).toBe(true);
    await b.advance(1);
    await b.settle();
    expect(b.state).toBe('Scheduling');
  });

  test('without job.resume a restored actor has no timers (why the event exists)', async () => {
    const a = await running({ config: { ttlMs: 10_000 } });
    const snapshot = a.actor.getPersistedSnapshot();
    a.stop();
    const b = new JobDriver({}, {}, JSON.parse(JSON.stringify(snapshot)));
    drivers.push(b);
    await b.advance(20_000);
    expect(b.state).toBe('Running');
  });

  test('job.resume on a live actor does not double its timers', async () => {
    const d = await running({ policy: { heartbeatTimeoutMs: 0 } });
    const armed = vi.getTimerCount();
    d.send({ type: 'job.resume' });
    d.send({ type: 'job.resume' });
    expect(vi.getTimerCount()).toBe(armed);
    await d.advance(60_000);
    expect(d.callsOf('logStatus')).toHaveLength(1);
  });

  test("a re-armed timer is cancelled by its state's exit, as the original would be", async () => {
    const a = await running({ config: { ttlMs: 60_000 } });
    const b = restore(a);
    // Running's three timers: progress, logging, TTL.
    expect(vi.getTimerCount()).toBe(3);
    b.update({ stop: 'immediate' });
    expect(b.matches('Stopping.immediate')).toBe(true);
    // Only Stopping's own wait is left.
    expect(vi.getTimerCount()).toBe(1);
    await b.advance(60_000);
    expect(b.context.warning?.message).toBe('immediate stop timed out: killing');
  });
});

describe('context shape', () => {
  test('the context stays under 20 top-level keys (V8 dictionary mode makes every assign slower)', async () => {
    const d = await running();
    expect(Object.keys(d.context).length).toBeLessThan(20);
  });

  test('a poll timer that fires a millisecond early still finds its deadline due', async () => {
    const d = await running({ status: { restarts: 2 }, policy: { heartbeatTimeoutMs: 0, healthyDurationMs: 10_000 } });
    const poll = activeTimers(d.snapshot).find((t) => t.delay === 'PROGRESS')!;
    // As the clock delivers a timer: the tick with the time it fired, then the timer's own event.
    vi.setSystemTime(d.context.times.runningSince! + 10_000 - 1);
    d.send({ type: 'clock.tick' });
    d.actor.send({ type: poll.eventType } as never);
    expect(d.context.restarts).toBe(0);
  });
});
