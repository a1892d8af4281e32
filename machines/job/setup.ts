import { assign, enqueueActions, fromPromise, isMachineSnapshot, setup } from 'xstate';
import { activeTimers } from '../introspect.js';
import { backoffDelay, initialContext, msUntil, nextProgressDeadline, nextRandom } from './policy.js';
import { isDue, timeOf } from './time.js';
import type {
  BackoffPolicy,
  CheckpointSchedule,
  DesiredConfig,
  ErrorDomain,
  AdoptInput,
  FinalCheckpointResult,
  GenerationInput,
  JobContext,
  JobEvent,
  JobFailure,
  JobInput,
  JobStateMeta,
  RetryHint,
  ScheduleInput,
  ScheduleResult,
  Settled,
  StopInput,
  StopKind,
} from './types.js';
import { JobError, Rejection } from './types.js';

/** setTimeout overflows to 1 ms above this; a longer wait re-arms when it fires. */
const MAX_TIMER_MS = 2_147_483_647;

/** The names of the machine's delays (`delays` below). */
type JobDelay = 'PROGRESS' | 'LOG' | 'TTL' | 'WAIT' | 'WORKER_STARTUP' | 'BACKOFF';

function notProvided(name: string): () => Promise<never> {
  return () => Promise.reject(new JobError({ kind: 'fatal', message: `${name} is not provided: inject it with machine.provide()` }));
}

export interface StopResult {
  /** True when nothing was running, so there is nothing to wait for. */
  finished: boolean;
}

/** What went wrong in an invoked actor, normalised. */
export function errorOf(error: unknown): { kind: JobError['kind']; message: string; domain: ErrorDomain; retries: number | undefined } {
  if (error instanceof JobError) return { kind: error.kind, message: error.message, domain: error.domain, retries: error.retries };
  if (typeof error === 'object' && error !== null && 'kind' in error && 'message' in error) {
    const e = error as { kind: JobError['kind']; message: string; domain?: ErrorDomain; retries?: number };
    return { kind: e.kind, message: String(e.message), domain: e.domain ?? 'internal', retries: e.retries };
  }
  return { kind: 'retryable', message: error instanceof Error ? error.message : String(error), domain: 'internal', retries: undefined };
}

/** The error of an invoked actor's rejection, as the actor threw it (the provided actors wrap it in a `Rejection`). */
function errorFrom(event: JobEvent | { type: string; error?: unknown }) {
  const error = 'error' in event ? event.error : undefined;
  return errorOf(error instanceof Rejection ? error.reason : error);
}

/** The result of an invoked actor, from its done event. */
function outputOf<T>(event: JobEvent | { type: string; output?: unknown }): T | undefined {
  return 'output' in event ? (event.output as Settled<T> | undefined)?.value : undefined;
}

function sameEnv(a: Record<string, string>, b: Record<string, string>): boolean {
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((k) => a[k] === b[k]);
}

function draw(ctx: JobContext): [number, number] {
  return nextRandom(ctx.rng);
}

function failure(message: string, domain: ErrorDomain, hint: RetryHint, at: number): JobFailure {
  return { message, domain, hint, at };
}

function generationOf(context: JobContext): GenerationInput {
  return { jobId: context.jobId, generation: context.generation };
}

/**
 * The desired config a guard should judge: a config update is judged before it is applied, so that
 * Running can react to it in the same transition instead of re-checking eventless transitions on
 * every event.
 */
function desired(context: JobContext, event: JobEvent): DesiredConfig {
  return event.type === 'config.update' ? event.config : context.config;
}

function parallelismDiffers(context: JobContext, config: DesiredConfig): boolean {
  return Object.entries(config.parallelismOverrides).some(
    ([node, p]) => context.parallelism[node] !== undefined && context.parallelism[node] !== p,
  );
}

function withBackoff(context: JobContext, policy: BackoffPolicy, attempt: number, now: number): Partial<JobContext> {
  const [random, rng] = draw(context);
  return { rng, deadlines: { ...context.deadlines, backoff: now + backoffDelay(policy, attempt, random) } };
}

export const jobSetup = setup({
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-assertion -- setup() reads the machine's types from this phantom value
  types: {} as {
    context: JobContext;
    events: JobEvent;
    input: JobInput;
    meta: JobStateMeta;
  },
  /**
   * Stubs that fix the actors' types; src/controller/job-machines.ts provides them. Each resolves with its
   * result stamped with the time it settled (`Settled`) and rejects with a `Rejection`.
   */
  actors: {
    /** Validates the job's graph against the operators workers offer. */
    compileJob: fromPromise<Settled<void>, GenerationInput>(notProvided('compileJob')),
    /** Allocates slots for a new generation and sends the start commands; rejects `not_enough_slots` to be retried. */
    scheduleJob: fromPromise<Settled<ScheduleResult>, ScheduleInput>(notProvided('scheduleJob')),
    /** Asks the tasks of a generation to stop; resolves once the command is out. */
    stopJob: fromPromise<Settled<StopResult>, StopInput>(notProvided('stopJob')),
    /** Kills the tasks of a generation; resolves once they are gone. */
    killJob: fromPromise<Settled<void>, GenerationInput>(notProvided('killJob')),
    /** Best-effort teardown of a failed generation (immediate stop, then kill). */
    cleanupJob: fromPromise<Settled<void>, GenerationInput>(notProvided('cleanupJob')),
    /**
     * The final checkpoint of a run (then stop): waits for a periodic checkpoint still in flight, takes
     * its own, and resolves once it is complete and durable; rejects when it fails.
     */
    finalCheckpoint: fromPromise<Settled<FinalCheckpointResult>, GenerationInput>(notProvided('finalCheckpoint')),
    /**
     * Re-attaches to a generation an earlier owner started: resolves once every subtask of it is reported
     * running by a live worker and the checkpoint coordinator follows the newest record; rejects when
     * tasks are missing.
     */
    adoptGeneration: fromPromise<Settled<void>, AdoptInput>(notProvided('adoptGeneration')),
  },
  delays: {
    /**
     * The poll sleeps until the next deadline. A deadline already past (one poll handles one thing) is
     * revisited at the poll resolution.
     */
    PROGRESS: ({ context, event }) => {
      const now = timeOf(context, event);
      const next = nextProgressDeadline(context);
      if (next === null) return MAX_TIMER_MS;
      return Math.min(MAX_TIMER_MS, next > now ? next - now : context.policy.progressPollMs);
    },
    LOG: ({ context, event }) => Math.min(MAX_TIMER_MS, msUntil(context.deadlines.nextLog, timeOf(context, event))),
    TTL: ({ context, event }) => {
      const at = ttlDeadline(context);
      return at === null ? MAX_TIMER_MS : Math.min(MAX_TIMER_MS, msUntil(at, timeOf(context, event)));
    },
    WAIT: ({ context, event }) => Math.min(MAX_TIMER_MS, msUntil(context.deadlines.wait, timeOf(context, event))),
    WORKER_STARTUP: ({ context, event }) => Math.min(MAX_TIMER_MS, msUntil(context.deadlines.workerStartup, timeOf(context, event))),
    BACKOFF: ({ context, event }) => Math.min(MAX_TIMER_MS, msUntil(context.deadlines.backoff, timeOf(context, event))),
  },
  guards: {
    isCurrent: ({ context, event }) => 'generation' in event && event.generation === context.generation,
    stopIs: ({ context, event }, params: { mode: DesiredConfig['stop'] }) => desired(context, event).stop === params.mode,
    stopRequested: ({ context, event }) => desired(context, event).stop !== 'none',
    restartRequested: ({ context, event }) => desired(context, event).restartNonce !== context.appliedRestartNonce,
    forceRestartRequested: ({ context }) => context.restartMode === 'force',
    redeployRequested: ({ context, event }) => !sameEnv(desired(context, event).env, context.appliedEnv),
    rescaleRequested: ({ context, event }) => parallelismDiffers(context, desired(context, event)),
    startRequested: ({ context, event }) => desired(context, event).stop === 'none' && desired(context, event).ttlMs === null,
    hasTtl: ({ context, event }) => desired(context, event).ttlMs !== null,
    ttlExpired: ({ context, event }) => isDue(ttlDeadline(context), timeOf(context, event)),
    restartsExhausted: ({ context }) => context.policy.allowedRestarts !== -1 && context.restarts > context.policy.allowedRestarts,
    errorIsFatal: ({ event }) => errorFrom(event).kind === 'fatal',
    errorIsNotEnoughSlots: ({ event }) => errorFrom(event).kind === 'not_enough_slots',
    errorIsTasksGone: ({ event }) => errorFrom(event).kind === 'tasks_gone',
    /** The budget-th consecutive failure inside one state escalates. */
    errorExhaustsRetries: ({ context, event }, params: { budget: number }) =>
      context.retry.attempts + 1 >= (errorFrom(event).retries ?? params.budget),
    retriesExhausted: ({ context }, params: { budget: number }) => context.retry.attempts + 1 >= params.budget,
    failureIsFinal: ({ event }) => event.type === 'task.failed' && event.hint === 'no_retry',
    heartbeatExpired: ({ context, event }) => isDue(context.deadlines.heartbeat, timeOf(context, event)),
    healthyLongEnough: ({ context, event }) =>
      context.restarts > 0 &&
      context.times.runningSince !== null &&
      isDue(context.times.runningSince + context.policy.healthyDurationMs, timeOf(context, event)),
    tasksFinished: ({ context }) => context.tasksFinished,
    nothingLeftRunning: ({ event }) => outputOf<StopResult>(event)?.finished === true,
  },
  actions: {
    /** Side effect: start (or re-base) the periodic checkpoints of a running generation. */
    armCheckpoints: (_, _params: CheckpointSchedule) => {},
    /** Side effect: no new periodic checkpoints for this generation; one in flight may still complete. */
    disarmCheckpoints: (_, _params: GenerationInput) => {},
    /** Side effect: the 60 s status line. */
    logStatus: (_, _params: { jobId: string; generation: number; restarts: number }) => {},
    /** Side effect: best-effort kill of whatever a finished generation left behind. */
    releaseGeneration: (_, _params: GenerationInput) => {},

    /** The actor's clock announced a timer: its time is the time of the timer event that follows. */
    advanceClock: assign(({ context, event }) => ({ tickedAt: event.type === 'clock.tick' ? event.at : context.tickedAt })),
    applyConfig: assign(({ event, context }) => (event.type === 'config.update' ? { config: event.config } : { config: context.config })),
    resetRetry: assign({ retry: { attempts: 0, problem: null } }),
    /** Why the state is about to wait (too few slots), without counting an attempt. */
    noteProblem: assign(({ context, event }) => ({ retry: { attempts: context.retry.attempts, problem: errorFrom(event).message } })),
    setWait: assign(({ context, event }, params: { ms: number }) => ({ deadlines: { ...context.deadlines, wait: timeOf(context, event) + params.ms } })),
    clearWaits: assign(({ context }) => ({ deadlines: { ...context.deadlines, wait: null, backoff: null, workerStartup: null } })),
    setWorkerStartupDeadline: assign(({ context, event }) => ({
      deadlines: { ...context.deadlines, workerStartup: timeOf(context, event) + context.policy.workerStartupTimeoutMs },
    })),
    setSlotRetry: assign(({ context, event }) => ({
      deadlines: { ...context.deadlines, backoff: timeOf(context, event) + context.policy.notEnoughSlotsRetryMs },
    })),
    /**
     * One more failed attempt in this state, for the actor's error or, when the wait ran out, `message`;
     * the wait before the next grows exponentially.
     */
    countAttempt: assign(({ context, event }, params: { message?: string } | undefined) => {
      const attempts = context.retry.attempts + 1;
      const problem = params?.message ?? errorFrom(event).message;
      return { retry: { attempts, problem }, ...withBackoff(context, context.policy.stateBackoff, attempts, timeOf(context, event)) };
    }),
    setRestartBackoff: assign(({ context, event }) => withBackoff(context, context.policy.restartBackoff, context.restarts, timeOf(context, event))),
    failFromError: assign(({ context, event }) => {
      const e = errorFrom(event);
      return { failure: failure(e.message, e.domain, e.kind === 'fatal' ? 'no_retry' : 'with_backoff', timeOf(context, event)) };
    }),
    failFromTask: assign(({ event, context }) =>
      event.type === 'task.failed' ? { failure: failure(event.message, event.domain, event.hint, event.at) } : { failure: context.failure },
    ),
    failWorkerLost: assign(({ event, context }) =>
      event.type === 'worker.lost'
        ? { failure: failure(event.message ?? `worker ${event.workerId} was lost`, 'internal', 'with_backoff', event.at) }
        : { failure: context.failure },
    ),
    failWith: assign(({ context, event }, params: { message: string; domain?: ErrorDomain; hint?: RetryHint }) => ({
      failure: failure(params.message, params.domain ?? 'internal', params.hint ?? 'with_backoff', timeOf(context, event)),
    })),
    failHeartbeat: assign(({ context, event }) => ({
      failure: failure(`worker failed: no heartbeat within ${context.policy.heartbeatTimeoutMs} ms`, 'internal', 'with_backoff', timeOf(context, event)),
    })),
    failNoRestartsForTtl: assign(({ context, event }) => ({
      failure: failure(
        `jobs with a TTL are not restarted: ${context.failure?.message ?? 'failure'}`,
        context.failure?.domain ?? 'internal',
        'no_retry',
        timeOf(context, event),
      ),
    })),
    failRestartsExhausted: assign(({ context, event }) => ({
      failure: failure(`Exhausted retries: ${context.failure?.message ?? 'failure'}`, context.failure?.domain ?? 'internal', 'no_retry', timeOf(context, event)),
    })),
    clearFailure: assign({ failure: null }),
    warn: assign(({ context, event }, params: { message: string }) => ({ warning: { message: params.message, at: timeOf(context, event) } })),
    /**
     * A stop must end. When the tasks cannot be confirmed dead, the job stops anyway: the generation is
     * fenced (its messages are ignored from now on) and released when the job leaves Stopping.
     */
    abandonGeneration: assign(({ context, event }) => ({
      warning: { message: `could not confirm that the tasks of generation ${context.generation} were killed: abandoned`, at: timeOf(context, event) },
    })),
    countRestart: assign(({ context }) => ({ restarts: context.restarts + 1 })),
    resetRestarts: assign({ restarts: 0 }),
    acceptRestart: assign(({ context }) => ({ appliedRestartNonce: context.config.restartNonce, restartMode: context.config.restartMode })),
    acceptRedeploy: assign({ restartMode: 'safe' as const }),
    /** A fresh start satisfies any restart requested before it, so Running will not restart again for it. */
    syncRestartNonce: assign(({ context }) => ({ appliedRestartNonce: context.config.restartNonce })),
    adoptForceRestart: assign(({ context }) => ({ restartMode: context.config.restartMode === 'force' ? 'force' : context.restartMode })),
    newGeneration: assign(({ context }) => ({
      generation: context.generation + 1,
      tasksFinished: false,
      appliedEnv: context.config.env,
      checkpoint: { ...context.checkpoint, finalEpoch: null },
    })),
    assignParallelism: assign(({ event, context }) => ({ parallelism: outputOf<ScheduleResult>(event)?.parallelism ?? context.parallelism })),
    enterRunning: assign(({ context, event }) => {
      const now = timeOf(context, event);
      const { start, finish } = context.times;
      return {
        times: { start: start === null || finish !== null ? now : start, finish: null, runningSince: now },
        tasksFinished: false,
        deadlines: {
          ...context.deadlines,
          wait: null,
          backoff: null,
          workerStartup: null,
          heartbeat: context.policy.heartbeatTimeoutMs > 0 ? now + context.policy.heartbeatTimeoutMs : null,
          nextLog: now + context.policy.logIntervalMs,
        },
      };
    }),
    leaveRunning: assign(({ context }) => ({
      times: { ...context.times, runningSince: null },
      deadlines: { ...context.deadlines, heartbeat: null, nextLog: null },
    })),
    extendHeartbeat: assign(({ context, event }) => ({
      deadlines: {
        ...context.deadlines,
        heartbeat: context.policy.heartbeatTimeoutMs > 0 ? timeOf(context, event) + context.policy.heartbeatTimeoutMs : null,
      },
    })),
    scheduleNextLog: assign(({ context, event }) => ({
      deadlines: { ...context.deadlines, nextLog: timeOf(context, event) + context.policy.logIntervalMs },
    })),
    resetFinalCheckpoint: assign(({ context }) => ({ tasksFinished: false, checkpoint: { ...context.checkpoint, finalEpoch: null } })),
    recordFinalCheckpoint: assign(({ context, event }) => {
      const result = outputOf<FinalCheckpointResult>(event);
      return result ? { checkpoint: { ...context.checkpoint, finalEpoch: result.epoch } } : {};
    }),
    failFinalCheckpoint: assign(({ context, event }, params: { label: string }) => {
      const e = errorFrom(event);
      return { failure: failure(`final checkpoint of ${params.label} failed: ${e.message}`, e.domain, 'with_backoff', timeOf(context, event)) };
    }),
    markTasksFinished: assign({ tasksFinished: true }),
    setStopKind: assign((_, params: { kind: StopKind }) => ({ stopKind: params.kind })),
    markFinished: assign(({ context, event }) => ({
      times: { ...context.times, finish: timeOf(context, event), runningSince: null },
      stopKind: null,
      restartMode: null,
      deadlines: { ...context.deadlines, wait: null, backoff: null, workerStartup: null, heartbeat: null, nextLog: null },
    })),
    /**
     * XState 5 (up to 5.33 at least) neither persists nor restores scheduled events: a restored actor's
     * `after` timers are gone (statelyai/xstate#5331). Each active state's timers are raised again, with
     * their delays computed from the deadlines kept in context and the time of `job.resume`, so they resume
     * at their original deadlines. Active states and their timers come from XState's public API
     * (introspect.ts). XState schedules a state's timer under its event type as the id, and the state's
     * exit cancels that id: raised under the same id, a re-armed timer is cancelled by the exit like the
     * original, and replaces rather than doubles a timer that is still armed (a live actor).
     * test/machine/transitions.test.ts holds XState to that.
     */
    rearmTimers: enqueueActions(({ enqueue, self }) => {
      const snapshot: unknown = self.getSnapshot();
      // XState's pure `transition()` (and xstate/graph's traversals) run without an actor: nothing is armed there.
      if (!isMachineSnapshot(snapshot)) return;
      for (const timer of activeTimers(snapshot)) {
        enqueue.cancel(timer.eventType);
        // A timer event carries only its type; the machine reads its time from the clock tick before it.
        enqueue.raise({ type: timer.eventType } as unknown as JobEvent, { id: timer.eventType, delay: timer.delay as JobDelay });
      }
    }),
  },
});

export function ttlDeadline(context: JobContext): number | null {
  return context.config.ttlMs !== null && context.times.start !== null ? context.times.start + context.config.ttlMs : null;
}

export { generationOf, initialContext };
