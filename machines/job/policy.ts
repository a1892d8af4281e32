import type { BackoffPolicy, DesiredConfig, JobContext, JobInput, JobPolicy } from './types.js';

/** The reference system's defaults, with a checkpoint timeout (Flink's 10 min) where it had none. */
export const DEFAULT_POLICY: JobPolicy = {
  allowedRestarts: 20,
  restartBackoff: { initialMs: 500, maxMs: 60_000, multiplier: 2, jitter: 0.5 },
  stateBackoff: { initialMs: 500, maxMs: 60_000, multiplier: 2, jitter: 0.5 },
  healthyDurationMs: 120_000,
  heartbeatTimeoutMs: 30_000,
  checkpointTimeoutMs: 600_000,
  stopTimeoutMs: 60_000,
  killTimeoutMs: 30_000,
  cleanupTimeoutMs: 30_000,
  compileTimeoutMs: 60_000,
  workerStartupTimeoutMs: 600_000,
  taskStartupTimeoutMs: 120_000,
  notEnoughSlotsRetryMs: 1_000,
  finishTimeoutMs: 60_000,
  progressPollMs: 200,
  logIntervalMs: 60_000,
};

export const DEFAULT_CONFIG: DesiredConfig = {
  stop: 'none',
  restartNonce: 0,
  restartMode: 'safe',
  parallelismOverrides: {},
  checkpointIntervalMs: 10_000,
  ttlMs: null,
  env: {},
};

/** Retry budgets per call site, as in the reference. */
export const RETRY_BUDGET = {
  default: 10,
  scheduler: 20,
  teardown: 20,
  workerInit: 5,
  startupTimeout: 3,
} as const;

/** mulberry32: one 32-bit state word, so the generator lives in (serialisable) context. */
export function nextRandom(state: number): [value: number, nextState: number] {
  const next = (state + 0x6d2b79f5) | 0;
  let t = next;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return [((t ^ (t >>> 14)) >>> 0) / 4_294_967_296, next];
}

/** exp = min(max, initial·multiplierᵏ); the wait is drawn from [exp·(1−jitter), exp). */
export function backoffDelay(policy: BackoffPolicy, attempt: number, random: number): number {
  const exp = Math.min(policy.maxMs, policy.initialMs * Math.pow(policy.multiplier, Math.max(0, attempt)));
  return Math.round(exp * (1 - policy.jitter * random));
}

export function initialContext(input: JobInput): JobContext {
  const status = input.status ?? {};
  return {
    jobId: input.jobId,
    config: { ...DEFAULT_CONFIG, ...input.config },
    policy: {
      ...DEFAULT_POLICY,
      ...input.policy,
      restartBackoff: { ...DEFAULT_POLICY.restartBackoff, ...input.policy?.restartBackoff },
      stateBackoff: { ...DEFAULT_POLICY.stateBackoff, ...input.policy?.stateBackoff },
    },
    generation: status.generation ?? 0,
    restarts: status.restarts ?? 0,
    appliedRestartNonce: status.appliedRestartNonce ?? input.config?.restartNonce ?? 0,
    restartMode: null,
    stopKind: null,
    appliedEnv: { ...(input.config?.env ?? {}) },
    parallelism: {},
    failure: status.failure ?? null,
    warning: null,
    times: { start: status.startTime ?? null, finish: status.finishTime ?? null, runningSince: null },
    tasksFinished: false,
    retry: { attempts: 0, problem: null },
    checkpoint: { minEpoch: status.minEpoch ?? 0, finalEpoch: null },
    deadlines: { wait: null, workerStartup: null, backoff: null, heartbeat: null, nextLog: null },
    rng: (input.seed ?? hashSeed(input.jobId)) | 0,
    tickedAt: input.createdAt,
  };
}

function hashSeed(text: string): number {
  let h = 2166136261;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 16777619);
  return h;
}

/**
 * The next moment a Running job has something to check: its heartbeat deadline (when the machine keeps
 * one) and the end of the healthy duration that resets the restart count. Null when nothing is scheduled,
 * which is the usual case: liveness comes from the worker registry and checkpoints from the coordinator.
 */
export function nextProgressDeadline(ctx: JobContext): number | null {
  const heartbeat = ctx.deadlines.heartbeat;
  const healthy = ctx.restarts > 0 && ctx.times.runningSince !== null ? ctx.times.runningSince + ctx.policy.healthyDurationMs : null;
  if (heartbeat === null) return healthy;
  return healthy === null ? heartbeat : Math.min(heartbeat, healthy);
}

/** ms until `deadline`, never negative; `Infinity`-free so that timers stay valid. */
export function msUntil(deadline: number | null, now: number): number {
  return deadline === null ? 0 : Math.max(0, deadline - now);
}
