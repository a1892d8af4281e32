import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, test, vi } from 'vitest';
import { createActor, type Actor } from 'xstate';
import { jobMachine } from '../../machines/index.js';
import type { GenerationInput, JobInput, ScheduleInput, ScheduleResult, StopInput, StopResult, UnstampedJobEvent } from '../../machines/index.js';
import { settledActor, stamp, tickingClock, type Now } from '../../src/controller/job-time.js';
import { topState } from '../support/job-driver.js';

/*
 * The machine is pure in time: it reads no clock, and decides by the times its events carry. Here the
 * events carry the times of the test's own clock while the system time (what Date.now() returns) is set
 * far in the past or the future and jumps between steps: the decisions must follow the events' times
 * only, and be the same whatever the system time.
 */

const MACHINES_DIR = fileURLToPath(new URL('../../machines/', import.meta.url));
const T0 = 1_700_000_000_000;
const SYSTEM_TIMES = { past: 0, present: T0, future: 9_000_000_000_000 } as const;

function sourcesOf(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourcesOf(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}

/**
 * The time as the runtime would read it: it runs with the fake timers, from T0, but ignores jumps of the
 * system time (a jump re-bases it).
 */
class EventClock {
  private base = Date.now();
  readonly now: Now = () => T0 + (Date.now() - this.base);

  setSystemTime(to: number): void {
    const now = this.now();
    vi.setSystemTime(to);
    this.base = to - (now - T0);
  }
}

/** A job actor whose events, actor results and timer ticks all carry `clock`'s time, never the system's. */
function jobActor(clock: EventClock, input: Partial<JobInput>) {
  const logs: number[] = [];
  const machine = jobMachine.provide({
    actors: {
      compileJob: settledActor<void, GenerationInput>(() => Promise.resolve(), clock.now),
      scheduleJob: settledActor<ScheduleResult, ScheduleInput>(() => Promise.resolve({ parallelism: { source: 1, sink: 1 } }), clock.now),
      stopJob: settledActor<StopResult, StopInput>(() => Promise.resolve({ finished: false }), clock.now),
      killJob: settledActor<void, GenerationInput>(() => Promise.resolve(), clock.now),
      cleanupJob: settledActor<void, GenerationInput>(() => Promise.resolve(), clock.now),
      finalCheckpoint: settledActor<{ epoch: number }, GenerationInput>(() => Promise.resolve({ epoch: 1 }), clock.now),
    },
    actions: { logStatus: () => logs.push(clock.now()) },
  });
  const send = (event: UnstampedJobEvent) => actor.send(stamp(event, clock.now));
  const actor: Actor<typeof machine> = createActor(machine, {
    input: { jobId: 'timeless', seed: 5, createdAt: clock.now(), ...input },
    clock: tickingClock(() => send({ type: 'clock.tick' })),
  });
  actor.start();
  return { actor, send, logs };
}

/**
 * A job's life, with the system time jumping to one of `systemTimes` before each step: started at 1 s, a
 * restart (Recovering's backoff, cleanup, a new generation), Running again, given a TTL, its status
 * logged, its TTL running out, and the stop that follows.
 */
async function lifeOfAJob(systemTimes: readonly number[]) {
  let jump = 0;
  const clock = new EventClock();
  const step = async (ms: number) => {
    clock.setSystemTime(systemTimes[jump++ % systemTimes.length]!);
    await vi.advanceTimersByTimeAsync(ms);
  };
  const { actor, send, logs } = jobActor(clock, {
    config: { checkpointIntervalMs: 0 },
    policy: { heartbeatTimeoutMs: 0, restartBackoff: { initialMs: 1_000, maxMs: 1_000, multiplier: 1, jitter: 0.5 } },
  });
  const current = () => actor.getSnapshot().context.generation;
  const seen: Record<string, unknown> = {};
  await step(1_000);
  send({ type: 'tasks.started', generation: current() });
  seen.running = structuredClone(actor.getSnapshot().context);
  await step(5_000);
  send({ type: 'worker.lost', generation: current(), workerId: 'w-1' });
  seen.recovering = structuredClone(actor.getSnapshot().context);
  await step(2_000);
  send({ type: 'tasks.started', generation: current() });
  await step(2_000);
  send({ type: 'config.update', config: { ...actor.getSnapshot().context.config, ttlMs: 90_000 } });
  await step(81_000);
  seen.ttlExpired = structuredClone(actor.getSnapshot().context);
  seen.state = topState(actor.getSnapshot());
  await step(1_000);
  send({ type: 'tasks.finished', generation: current() });
  seen.stopped = structuredClone(actor.getSnapshot().context);
  seen.logs = logs;
  actor.stop();
  return seen;
}

describe('the job machine is pure in time', () => {
  beforeEach(() => {
    vi.useFakeTimers({ now: SYSTEM_TIMES.present });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  test('no module of machines/ reads a clock or sets a timer', () => {
    const clockRead = /\bDate\.now\s*\(|\bnew Date\b|\bDate\s*\(|\bperformance\.now\s*\(|\bprocess\.hrtime\b|\bset(Timeout|Interval|Immediate)\s*\(/;
    const offenders = sourcesOf(MACHINES_DIR).filter((path) => clockRead.test(readFileSync(path, 'utf8')));
    expect(offenders).toEqual([]);
  });

  test('its decisions follow the times the events carry, whatever the system time', async () => {
    const seen = await lifeOfAJob([SYSTEM_TIMES.future, SYSTEM_TIMES.past]);
    const running = seen.running as { times: { start: number; runningSince: number }; deadlines: { nextLog: number } };
    expect(running.times).toMatchObject({ start: T0 + 1_000, runningSince: T0 + 1_000 });
    expect(running.deadlines.nextLog).toBe(T0 + 61_000);

    // Lost at 6 s: the failure is dated then, and the restart backoff (jittered within [500, 1000) ms) counts from there.
    const recovering = seen.recovering as { failure: { at: number }; deadlines: { backoff: number } };
    expect(recovering.failure.at).toBe(T0 + 6_000);
    expect(recovering.deadlines.backoff).toBeGreaterThanOrEqual(T0 + 6_500);
    expect(recovering.deadlines.backoff).toBeLessThan(T0 + 7_000);

    // Running again at 8 s, a TTL from 10 s; it counts from the first start: it runs out at 91 s, and the stop must end within a minute.
    expect(seen.state).toBe('Stopping');
    const expired = seen.ttlExpired as { warning: { message: string; at: number }; deadlines: { wait: number }; times: { start: number } };
    expect(expired.times.start).toBe(T0 + 1_000);
    expect(expired.warning).toEqual({ message: 'TTL expired: stopping', at: T0 + 91_000 });
    expect(expired.deadlines.wait).toBe(T0 + 91_000 + 60_000);
    // The status line is logged every 60 s of Running: once, at 68 s.
    expect(seen.logs).toEqual([T0 + 68_000]);

    const stopped = seen.stopped as { times: { finish: number } };
    expect(stopped.times.finish).toBe(T0 + 92_000);
  });

  test('the same events at the same times lead to the same job, in the past, the present or the future', async () => {
    const past = await lifeOfAJob([SYSTEM_TIMES.past]);
    const present = await lifeOfAJob([SYSTEM_TIMES.present]);
    const future = await lifeOfAJob([SYSTEM_TIMES.future]);
    const jumping = await lifeOfAJob([SYSTEM_TIMES.future, SYSTEM_TIMES.past, SYSTEM_TIMES.present]);
    expect(past).toEqual(present);
    expect(future).toEqual(present);
    expect(jumping).toEqual(present);
  });

  test('a jump of the system time fires no timer and moves no deadline', async () => {
    const clock = new EventClock();
    const { actor, send } = jobActor(clock, { config: { ttlMs: 60_000, checkpointIntervalMs: 0 }, policy: { heartbeatTimeoutMs: 0 } });
    await vi.advanceTimersByTimeAsync(0);
    send({ type: 'tasks.started', generation: actor.getSnapshot().context.generation });
    const before = structuredClone(actor.getSnapshot().context);
    clock.setSystemTime(SYSTEM_TIMES.future);
    await vi.advanceTimersByTimeAsync(0);
    send({ type: 'workers.heartbeat', generation: actor.getSnapshot().context.generation });
    expect(topState(actor.getSnapshot())).toBe('Running');
    expect(actor.getSnapshot().context.deadlines).toEqual(before.deadlines);
    clock.setSystemTime(SYSTEM_TIMES.past);
    await vi.advanceTimersByTimeAsync(59_999);
    expect(topState(actor.getSnapshot())).toBe('Running');
    await vi.advanceTimersByTimeAsync(1);
    expect(actor.getSnapshot().matches({ Stopping: 'immediate' })).toBe(true);
    expect(actor.getSnapshot().context.warning?.at).toBe(T0 + 60_000);
    actor.stop();
  });
});
