/**
 * Overrides of the job policy (machines/job/policy.ts: timeouts, retry budgets, backoffs, cadences) as an
 * operator writes them in a JSON file (`weir controller --policy-file F`): every field optional, every
 * duration in ms, unknown fields refused so that a typo is not silently ignored.
 */
import { z } from 'zod';
import { DEFAULT_POLICY } from '../../machines/job/policy.js';
import type { BackoffPolicy, JobPolicy } from '../../machines/job/types.js';

const ms = z.int().min(0);
const positiveMs = z.int().min(1);

const backoffSchema = z.strictObject({
  initialMs: positiveMs.optional(),
  maxMs: positiveMs.optional(),
  multiplier: z.number().min(1).optional(),
  jitter: z.number().min(0).max(1).optional(),
}) satisfies z.ZodType<Partial<BackoffPolicy>>;

export const jobPolicyOverridesSchema = z.strictObject({
  allowedRestarts: z.int().min(-1).optional(),
  restartBackoff: backoffSchema.optional(),
  stateBackoff: backoffSchema.optional(),
  healthyDurationMs: ms.optional(),
  heartbeatTimeoutMs: ms.optional(),
  checkpointTimeoutMs: positiveMs.optional(),
  stopTimeoutMs: positiveMs.optional(),
  killTimeoutMs: positiveMs.optional(),
  cleanupTimeoutMs: positiveMs.optional(),
  compileTimeoutMs: positiveMs.optional(),
  workerStartupTimeoutMs: positiveMs.optional(),
  taskStartupTimeoutMs: positiveMs.optional(),
  notEnoughSlotsRetryMs: positiveMs.optional(),
  finishTimeoutMs: positiveMs.optional(),
  progressPollMs: positiveMs.optional(),
  logIntervalMs: positiveMs.optional(),
});

/**
 * The policy overrides a file holds, validated, as `ControllerOptions.policy` takes them: a backoff given
 * in part keeps the default's other fields. Throws with every problem, each naming its field.
 */
export function jobPolicyOverrides(json: unknown): Partial<JobPolicy> {
  const parsed = jobPolicyOverridesSchema.safeParse(json);
  if (!parsed.success) throw new Error(parsed.error.issues.map((issue) => `${issue.path.join('.') || '(the policy)'}: ${issue.message}`).join('; '));
  const { restartBackoff, stateBackoff, ...rest } = parsed.data;
  const overrides: Partial<JobPolicy> = Object.fromEntries(Object.entries(rest).filter(([, value]) => value !== undefined));
  if (restartBackoff !== undefined) overrides.restartBackoff = { ...DEFAULT_POLICY.restartBackoff, ...restartBackoff };
  if (stateBackoff !== undefined) overrides.stateBackoff = { ...DEFAULT_POLICY.stateBackoff, ...stateBackoff };
  return overrides;
}
