/** The 14 lifecycle states of a job, named as in the reference design. */
export const JOB_STATES = [
  'Created',
  'Compiling',
  'Scheduling',
  'Running',
  'Rescaling',
  'CheckpointStopping',
  'Recovering',
  'Restarting',
  'Stopping',
  'Stopped',
  'Finishing',
  'Finished',
  'Failing',
  'Failed',
] as const;
export type JobState = (typeof JOB_STATES)[number];

/** States a job rests in until a user acts; no timers run there. */
export const TERMINAL_STATES: readonly JobState[] = ['Stopped', 'Finished', 'Failed'];

/** `none` means "keep running"; the others say how to stop. */
export const STOP_MODES = ['none', 'checkpoint', 'graceful', 'immediate', 'force'] as const;
export type StopMode = (typeof STOP_MODES)[number];

export type RestartMode = 'safe' | 'force';
export type ErrorDomain = 'user' | 'external' | 'internal';
export type RetryHint = 'no_retry' | 'with_backoff';

/** How the tasks of a generation are told to stop. */
export type StopKind = 'graceful' | 'immediate' | 'kill';

export interface JobFailure {
  message: string;
  domain: ErrorDomain;
  hint: RetryHint;
  /** Epoch ms. */
  at: number;
}

/** What the user wants; changed by config updates, never by the machine. */
export interface DesiredConfig {
  stop: StopMode;
  restartNonce: number;
  restartMode: RestartMode;
  /** Node id → parallelism. Nodes not listed keep the graph's parallelism. */
  parallelismOverrides: Record<string, number>;
  /** 0 disables periodic checkpoints. */
  checkpointIntervalMs: number;
  /** Previews only: the job is stopped this long after it first started. */
  ttlMs: number | null;
  /** Environment handed to the tasks; a change needs a (safe) restart to take effect. */
  env: Record<string, string>;
}

export interface BackoffPolicy {
  initialMs: number;
  maxMs: number;
  multiplier: number;
  /** Fraction of the exponential delay that is randomised: the wait is drawn from [exp·(1−jitter), exp). */
  jitter: number;
}

/** Timeouts, budgets and cadences; every wait in the machine reads its deadline from here. */
export interface JobPolicy {
  /** -1 = unlimited. The number of consecutive unhealthy restarts allowed before the job fails. */
  allowedRestarts: number;
  /** Backoff between restarts (Recovering). */
  restartBackoff: BackoffPolicy;
  /** Backoff between retries inside one state. */
  stateBackoff: BackoffPolicy;
  healthyDurationMs: number;
  heartbeatTimeoutMs: number;
  checkpointTimeoutMs: number;
  /** How long a graceful or immediate stop may take before the workers are killed. */
  stopTimeoutMs: number;
  /** How long killing a generation's tasks may take before the attempt counts as failed. */
  killTimeoutMs: number;
  /** Deadline for one cleanup attempt (Recovering, Restarting(force), Failing). */
  cleanupTimeoutMs: number;
  compileTimeoutMs: number;
  workerStartupTimeoutMs: number;
  taskStartupTimeoutMs: number;
  notEnoughSlotsRetryMs: number;
  /** How long Finishing waits for the remaining tasks after the sources finished. */
  finishTimeoutMs: number;
  /** Minimum spacing of progress polls when something is due but cannot proceed. */
  progressPollMs: number;
  logIntervalMs: number;
}

/** Epoch ms. */
export interface JobTimes {
  /** The first start, or the first start after the job last finished; the TTL counts from here. */
  start: number | null;
  finish: number | null;
  /** When the current Running began; the healthy duration counts from here. */
  runningSince: number | null;
}

/**
 * What the machine knows of checkpoints. Periodic checkpoints are not its business: a coordinator beside
 * the actor runs them (as the reference's JobController does), so that they cost the actor no events.
 * The machine only asks for the final checkpoint of a state that ends the run.
 */
export interface CheckpointProgress {
  /** The oldest epoch still referenced; a new generation restores from a checkpoint at or after it. */
  minEpoch: number;
  /** The epoch of the final checkpoint completed by the current state; null until it completes. */
  finalEpoch: number | null;
}

/** Deadlines of the waits that are armed now (epoch ms); kept in context so a restored actor re-arms them. */
export interface Deadlines {
  /** The current state's wait: startup, stop, kill, cleanup, compile or finish timeout. */
  wait: number | null;
  /** Scheduling's outer bound for finding enough slots. */
  workerStartup: number | null;
  /** End of the current backoff. */
  backoff: number | null;
  heartbeat: number | null;
  nextLog: number | null;
}

export interface RetryState {
  attempts: number;
  /** The current state's latest problem (a failed attempt, too few slots): what its retry or wait is about. */
  problem: string | null;
}

/**
 * What a waiting state waits for. Every state a job can rest in, other than Running and the terminal
 * states, declares one in its meta (`JobStateMeta`); `waitOf` turns it into the reason and the deadline
 * a job's view shows.
 */
export const WAIT_KINDS = [
  'compile',
  'start_generation',
  'slots',
  'tasks_start',
  'retry',
  'final_checkpoint',
  'tasks_stop_after_checkpoint',
  'cleanup',
  'restart_backoff',
  'stop',
  'kill',
  'finish',
  'reconcile',
] as const;
export type WaitKind = (typeof WAIT_KINDS)[number];

export interface JobStateMeta {
  wait?: WaitKind;
}

/**
 * Why a job waits, and until when (epoch ms): when the wait runs out, its state's fallback happens. A
 * null `until` would be a wait without a deadline: a bug the tests look for.
 */
export interface JobWait {
  kind: WaitKind;
  reason: string;
  until: number | null;
}

/**
 * Keep this under 20 top-level keys: V8 stores larger objects built by XState's assign (Object.assign
 * onto a fresh object) in dictionary mode, which makes every assign several times slower.
 */
export interface JobContext {
  jobId: string;
  config: DesiredConfig;
  policy: JobPolicy;
  /** Run id: incremented each time the job is scheduled. */
  generation: number;
  restarts: number;
  /** The restart nonce the machine has acted on. */
  appliedRestartNonce: number;
  /** The restart mode of the restart in progress. */
  restartMode: RestartMode | null;
  /** How the tasks are being stopped, while Stopping. */
  stopKind: StopKind | null;
  /** The environment the current generation was started with. */
  appliedEnv: Record<string, string>;
  /** The parallelism the current generation runs with (node id → subtasks). */
  parallelism: Record<string, number>;
  failure: JobFailure | null;
  /** The latest non-fatal problem (a failed checkpoint, an escalated stop). */
  warning: { message: string; at: number } | null;
  times: JobTimes;
  tasksFinished: boolean;
  retry: RetryState;
  checkpoint: CheckpointProgress;
  deadlines: Deadlines;
  /** PRNG state (mulberry32) for jitter, so that replays of the same events are deterministic. */
  rng: number;
  /**
   * When the actor's clock last ticked (epoch ms), or the actor was created before the first tick: the time
   * of XState's own timer events, the only events that carry none (see `timeOf` in time.ts).
   */
  tickedAt: number;
}

export interface JobInput {
  jobId: string;
  /** When the actor is created (epoch ms): the machine reads no clock, so its first deadlines count from here. */
  createdAt: number;
  config?: Partial<DesiredConfig>;
  policy?: Partial<JobPolicy>;
  /** Status carried over from a previous incarnation (a controller restart). */
  status?: Partial<Pick<JobContext, 'generation' | 'restarts' | 'appliedRestartNonce' | 'failure'>> & {
    startTime?: number | null;
    finishTime?: number | null;
    minEpoch?: number;
  };
  seed?: number;
}

/** Events that carry a generation are dropped unless it is the current one. */
export interface Generational {
  generation: number;
}

/**
 * When an event happened (epoch ms). The machine reads no clock: it dates everything it decides (deadlines,
 * failures, start and finish times) by the events it gets, so that a replay of the same events takes the
 * same decisions. The runtime stamps each event at its single send point.
 */
export interface Timed {
  at: number;
}

export type JobEvent = (
  | { type: 'config.update'; config: DesiredConfig }
  | ({ type: 'tasks.started' } & Generational)
  | ({ type: 'tasks.finished' } & Generational)
  | ({ type: 'source.finished' } & Generational)
  | ({ type: 'task.failed'; message: string; domain: ErrorDomain; hint: RetryHint } & Generational)
  /** `message`: why, when it is not that the worker itself is gone. */
  | ({ type: 'worker.lost'; workerId: string; message?: string } & Generational)
  | ({ type: 'workers.heartbeat' } & Generational)
  /**
   * Sent by the actor's XState clock just before it delivers one of XState's timer events (`after`), which
   * carry no time of their own: `at` is when the timer fired, and the time of the timer event that follows.
   */
  | { type: 'clock.tick' }
  /** Sent once after restoring a persisted snapshot: re-arms the timers of the active states at their original deadlines. */
  | { type: 'job.resume' }
  /**
   * Sent once to a job restored as Running after a takeover (another controller's, or this one's restart):
   * re-attaches to the tasks of its generation instead of restarting them.
   */
  | { type: 'job.adopt' }
  /** Internal: raised on entering Running to act on config that changed while the job was starting. */
  | { type: 'job.reconcile' }
  /** Internal: raised by a config change that applies live, to re-arm the TTL timer with the new TTL. */
  | { type: 'ttl.rearm' }
) &
  Timed;

/** `E` without its time, member by member of a union. */
type Unstamped<E> = E extends Timed ? Omit<E, 'at'> : never;

/** An event as its sender builds it, before the send point stamps it with the time (`Timed`). */
export type UnstampedJobEvent = Unstamped<JobEvent>;

export type JobEventType = JobEvent['type'];

/**
 * What an invoked actor rejects with to steer the machine. Anything else thrown counts as a retryable
 * internal error with the state's default budget.
 */
export interface JobErrorData {
  /** `tasks_gone`: a generation being taken over has no task left anywhere (everything stopped meanwhile). */
  kind: 'fatal' | 'retryable' | 'not_enough_slots' | 'tasks_gone';
  message: string;
  domain?: ErrorDomain;
  /** Retry budget for this call site; the reference uses 3, 5, 10 or 20. */
  retries?: number;
}

export class JobError extends Error implements JobErrorData {
  readonly kind: JobErrorData['kind'];
  readonly domain: ErrorDomain;
  readonly retries: number | undefined;
  constructor(data: JobErrorData) {
    super(data.message);
    this.name = 'JobError';
    this.kind = data.kind;
    this.domain = data.domain ?? 'internal';
    this.retries = data.retries;
  }
}

/**
 * What an invoked actor resolves with: its result, and when it settled (epoch ms). The machine reads no
 * clock, so it dates what follows (the next state's deadlines) by this.
 */
export interface Settled<T> {
  value: T;
  at: number;
}

/** What an invoked actor rejects with: why (a `JobError`, or anything else thrown), and when (epoch ms). */
export class Rejection extends Error {
  readonly reason: unknown;
  readonly at: number;
  constructor(reason: unknown, at: number) {
    super(reason instanceof Error ? reason.message : String(reason));
    this.name = 'Rejection';
    this.reason = reason;
    this.at = at;
  }
}

/** What the scheduler actor resolves with: the generation's actual parallelism. */
export interface ScheduleResult {
  parallelism: Record<string, number>;
}

export interface GenerationInput {
  jobId: string;
  generation: number;
}

export interface ScheduleInput extends GenerationInput {
  parallelismOverrides: Record<string, number>;
  /** Restore from the newest usable checkpoint at or after this epoch (see the checkpoint store). */
  minEpoch: number;
}

export interface StopInput extends GenerationInput {
  mode: 'graceful' | 'immediate';
}

/** A generation started by an earlier owner of the job, whose tasks are to be re-attached to. */
export interface AdoptInput extends GenerationInput {
  minEpoch: number;
}

/** Periodic checkpoints of a running generation, at this interval (0: none). */
export interface CheckpointSchedule extends GenerationInput {
  intervalMs: number;
  minEpoch: number;
}

/** What the final-checkpoint actor resolves with once the checkpoint is complete and durable. */
export interface FinalCheckpointResult {
  epoch: number;
}
