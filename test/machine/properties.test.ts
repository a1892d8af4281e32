import fc from 'fast-check';
import { afterEach, beforeEach, expect, test, vi } from 'vitest';
import { createActor } from 'xstate';
import type { TransitionDefinition } from 'xstate';
import { JOB_STATES, JobError, TERMINAL_STATES, jobMachine, waitOf } from '../../machines/index.js';
import type { DesiredConfig, GenerationInput, JobState, ScheduleInput, ScheduleResult, StopInput, StopResult, UnstampedJobEvent } from '../../machines/index.js';
import { settledActor, stamp, tickingClock } from '../../src/controller/job-time.js';
import { topState } from '../support/job-driver.js';


/*
 * Random event sequences against one job actor, on fake timers. After every step:
 * - the actor has not errored and its top-level state is one of the 14;
 * - any transition out of a terminal state is a documented one: none from Finished, Stopped → Compiling
 *   on a start (stop = none, no TTL), Failed → Compiling on a restart (a new nonce);
 * - no job hangs silently: a state that is not terminal has a timer armed, and every state but Running
 *   and the terminal ones says what it waits for and until when (`waitOf`).
 */

type Outcome = 'ok' | 'retryable' | 'fatal' | 'hang' | 'no_slots';

type Step =
  | { kind: 'config'; patch: Partial<DesiredConfig> & { bumpNonce?: boolean } }
  | { kind: 'worker'; type: 'tasks.started' | 'tasks.finished' | 'source.finished' | 'workers.heartbeat'; stale: boolean }
  | { kind: 'failed'; hint: 'no_retry' | 'with_backoff'; stale: boolean }
  | { kind: 'lost'; stale: boolean }
  | { kind: 'advance'; ms: number }
  | { kind: 'resume' };

const configPatch = fc.record(
  {
    stop: fc.constantFrom('none', 'checkpoint', 'graceful', 'immediate', 'force'),
    bumpNonce: fc.boolean(),
    restartMode: fc.constantFrom('safe', 'force'),
    parallelismOverrides: fc.constantFrom<Record<string, number>>({}, { source: 2 }, { source: 3, sink: 2 }),
    checkpointIntervalMs: fc.constantFrom(0, 1_000, 10_000),
    ttlMs: fc.constantFrom(null, 30_000),
    env: fc.constantFrom<Record<string, string>>({}, { MODE: 'debug' }),
  },
  { requiredKeys: [] },
);

const step: fc.Arbitrary<Step> = fc.oneof(
  { weight: 3, arbitrary: configPatch.map((patch) => ({ kind: 'config' as const, patch })) },
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('worker' as const),
      type: fc.constantFrom('tasks.started' as const, 'tasks.finished' as const, 'source.finished' as const, 'workers.heartbeat' as const),
      stale: fc.boolean(),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('failed' as const), hint: fc.constantFrom('no_retry' as const, 'with_backoff' as const), stale: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('lost' as const), stale: fc.boolean() }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('advance' as const), ms: fc.integer({ min: 0, max: 200_000 }) }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'resume' as const }) },
);

const outcomes = fc.array(fc.constantFrom<Outcome>('ok', 'ok', 'ok', 'retryable', 'fatal', 'hang', 'no_slots'), { minLength: 1, maxLength: 30 });

function settle<T>(outcome: Outcome, value: T): Promise<T> {
  switch (outcome) {
    case 'ok':
      return Promise.resolve(value);
    case 'retryable':
      return Promise.reject(new Error('transient'));
    case 'fatal':
      return Promise.reject(new JobError({ kind: 'fatal', message: 'bad job', domain: 'user' }));
    case 'no_slots':
      return Promise.reject(new JobError({ kind: 'not_enough_slots', message: 'no slots' }));
    case 'hang':
      return new Promise<T>(() => {});
  }
}

const T0 = 1_700_000_000_000;

beforeEach(() => {
  vi.useFakeTimers({ now: T0 });
});
afterEach(() => {
  vi.useRealTimers();
});

test('random event sequences keep the job in its 14 states, leave terminal states only as documented, and never hang', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(step, { maxLength: 40 }), outcomes, async (steps, plan) => {
      vi.clearAllTimers();
      vi.setSystemTime(T0);
      let call = 0;
      const next = (): Outcome => plan[call++ % plan.length]!;
      const machine = jobMachine.provide({
        actors: {
          compileJob: settledActor<void, GenerationInput>(() => settle(next(), undefined)),
          scheduleJob: settledActor<ScheduleResult, ScheduleInput>((input) =>
            settle(next(), { parallelism: { source: 1, sink: 1, ...input.parallelismOverrides } }),
          ),
          stopJob: settledActor<StopResult, StopInput>(() => settle(next(), { finished: call % 2 === 0 })),
          killJob: settledActor<void, GenerationInput>(() => settle(next(), undefined)),
          cleanupJob: settledActor<void, GenerationInput>(() => settle(next(), undefined)),
          finalCheckpoint: settledActor<{ epoch: number }, GenerationInput>(() => settle(next(), { epoch: call })),
        },
      });
      const exits: { from: JobState; to: string; guard: string }[] = [];
      const send = (event: UnstampedJobEvent) => actor.send(stamp(event));
      const actor = createActor(machine, {
        input: { jobId: 'prop', seed: 11, createdAt: Date.now(), policy: { allowedRestarts: 3 } },
        clock: tickingClock(() => send({ type: 'clock.tick' })),
        inspect: (ev) => {
          if (ev.type !== '@xstate.microstep') return;
          for (const t of (ev as unknown as { _transitions: TransitionDefinition<never, never>[] })._transitions) {
            const from = t.source.id.split('.')[1] as JobState;
            const to = t.target?.[0]?.id.split('.')[1];
            if (TERMINAL_STATES.includes(from) && to !== undefined && to !== from) {
              const guard = typeof t.guard === 'string' ? t.guard : ((t.guard as { type?: string } | undefined)?.type ?? '');
              exits.push({ from, to, guard });
            }
          }
        },
      });
      actor.start();
      try {
        for (const s of steps) {
          const snapshot = actor.getSnapshot();
          const ctx = snapshot.context;
          const generation = ctx.generation;
          const gen = (stale: boolean) => (stale ? generation - 1 : generation);
          switch (s.kind) {
            case 'config': {
              const { bumpNonce, ...patch } = s.patch;
              const config = { ...ctx.config, ...patch, restartNonce: ctx.config.restartNonce + (bumpNonce ? 1 : 0) };
              send({ type: 'config.update', config });
              break;
            }
            case 'worker':
              send({ type: s.type, generation: gen(s.stale) });
              break;
            case 'failed':
              send({ type: 'task.failed', generation: gen(s.stale), message: 'boom', domain: 'internal', hint: s.hint });
              break;
            case 'lost':
              send({ type: 'worker.lost', generation: gen(s.stale), workerId: 'w' });
              break;
            case 'advance':
              await vi.advanceTimersByTimeAsync(s.ms);
              break;
            case 'resume':
              send({ type: 'job.resume' });
              break;
          }
          await vi.advanceTimersByTimeAsync(0);

          const after = actor.getSnapshot();
          expect(after.status).not.toBe('error');
          const state = topState(after);
          expect(JOB_STATES).toContain(state);
          expect(after.status === 'done').toBe(state === 'Finished');
          if (!TERMINAL_STATES.includes(state)) {
            expect(vi.getTimerCount(), `${JSON.stringify(after.value)} has no deadline`).toBeGreaterThan(0);
          }
          // A job that waits says why, with the deadline it waits until; Running and the resting states do not wait.
          const wait = waitOf(after);
          if (state === 'Running' || TERMINAL_STATES.includes(state)) {
            expect(wait, `${JSON.stringify(after.value)} waits`).toBeNull();
          } else {
            expect(wait, `${JSON.stringify(after.value)} waits without saying why`).not.toBeNull();
            expect(wait!.until, `${JSON.stringify(after.value)} waits without a deadline`).not.toBeNull();
            expect(wait!.until!).toBeGreaterThanOrEqual(Date.now() - 1);
            expect(wait!.reason).not.toMatch(/undefined|null/);
          }
        }
        for (const exit of exits) {
          expect(exit.from).not.toBe('Finished');
          expect(exit.to).toBe('Compiling');
          expect(exit.guard).toBe(exit.from === 'Stopped' ? 'startRequested' : 'restartRequested');
        }
      } finally {
        actor.stop();
      }
    }),
    { numRuns: 300 },
  );
}, 120_000);
