/**
 * What the store keeps, as zod schemas. Times are epoch milliseconds like everywhere in the job machine,
 * except the spec's `created_at`, which is in microseconds like the rest of the pipeline body.
 *
 * The objects are strict: a field this version does not know is rejected (CorruptRecordError on read,
 * StoreValidationError on write) rather than silently dropped by a read-modify-write.
 */
import { z } from 'zod';
import { JOB_STATES, STOP_MODES, WAIT_KINDS, type DesiredConfig, type JobFailure, type JobState, type WaitKind } from '../protocol/job-types.js';

/** Job ids are subject tokens (`weir.log.<id>`) and KV key tokens (`<id>.spec`). */
export const JOB_ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

/** JSON as it comes out of JSON.parse. */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };
export type JsonRecord = { [key: string]: JsonValue };

const count = z.int().nonnegative();
const epochMs = z.number().nonnegative();
const errorDomain = z.enum(['user', 'external', 'internal']);
const retryHint = z.enum(['no_retry', 'with_backoff']);
const jobState = z.enum(JOB_STATES);

/** The pipeline body as given (name, graph, parallelism, checkpoint_interval_micros, ttl_micros, …). */
export type JobSpec = JsonRecord & { created_at: number };

const jsonValue: z.ZodType<JsonValue> = z.lazy(() =>
  z.union([z.string(), z.number(), z.boolean(), z.null(), z.array(jsonValue), z.record(z.string(), jsonValue)]),
);
export const specSchema = z.record(z.string(), jsonValue).and(z.object({ created_at: count }));

/** The desired config: DesiredConfig as the machine takes it, plus what the checkpoint restore must skip. */
export interface JobConfigRecord extends DesiredConfig {
  /** Restore ignores checkpoints older than this epoch (null: use the newest usable one). */
  ignoreStateBeforeEpoch: number | null;
}

export const configSchema = z.strictObject({
  stop: z.enum(STOP_MODES),
  restartNonce: count,
  restartMode: z.enum(['safe', 'force']),
  parallelismOverrides: z.record(z.string(), z.int().positive()),
  checkpointIntervalMs: count,
  ttlMs: z.int().positive().nullable(),
  env: z.record(z.string(), z.string()),
  ignoreStateBeforeEpoch: count.nullable(),
}) satisfies z.ZodType<JobConfigRecord>;

/** What the controller persists after every transition; enough to rebuild the actor (JobInput.status). */
export interface JobStatusRecord {
  state: JobState;
  generation: number;
  restarts: number;
  appliedRestartNonce: number;
  failure: JobFailure | null;
  startTime: number | null;
  finishTime: number | null;
  epoch: number;
  minEpoch: number;
  updatedAt: number;
  /**
   * The change that brought the job into `state`: the state it left and when (the `at` of its transition
   * row in the event log). A controller that resumes the job appends that row should it be missing (the
   * previous one stopped between the status write and the row). Absent in records of older versions.
   */
  transition?: { from: JobState; at: number };
  /**
   * The controller that wrote this status and the fencing epoch of its lease on the job's shard. A writer
   * whose epoch is older has lost the job: its compare-and-set re-reads, finds this, and writes nothing.
   * Absent in records written before several controllers.
   */
  owner?: JobOwner;
  /** Node id → subtasks of the current generation, as scheduled: what a new owner expects to find running. */
  parallelism?: Record<string, number>;
  /**
   * Why the job waited, and until when (epoch ms), as of this write: written whenever the kind of wait
   * changes, so a controller that does not own the job can show it (its owner shows it live).
   */
  waiting?: { kind: WaitKind; reason: string; until: number | null } | null;
}

/** A controller and its lease epoch on a job's shard (docs/high-availability.md). */
export interface JobOwner {
  id: string;
  epoch: number;
}

export const failureSchema = z.strictObject({ message: z.string(), domain: errorDomain, hint: retryHint, at: epochMs });

export const statusSchema = z.strictObject({
  state: jobState,
  generation: count,
  restarts: count,
  appliedRestartNonce: count,
  failure: failureSchema.nullable(),
  startTime: epochMs.nullable(),
  finishTime: epochMs.nullable(),
  epoch: count,
  minEpoch: count,
  updatedAt: epochMs,
  transition: z.strictObject({ from: jobState, at: epochMs }).optional(),
  owner: z.strictObject({ id: z.string().min(1).max(128), epoch: count }).optional(),
  parallelism: z.record(z.string(), z.int().positive()).optional(),
  waiting: z.strictObject({ kind: z.enum(WAIT_KINDS), reason: z.string(), until: epochMs.nullable() }).nullable().optional(),
}) satisfies z.ZodType<JobStatusRecord>;

export const transitionEventSchema = z.strictObject({
  kind: z.literal('transition'),
  from: jobState,
  to: jobState,
  generation: count,
  at: epochMs,
});

export const errorEventSchema = z.strictObject({
  kind: z.literal('error'),
  message: z.string(),
  domain: errorDomain,
  hint: retryHint,
  operator_id: z.string().min(1).max(128).optional(),
  subtask_index: count.optional(),
  at: epochMs,
});

export const warningEventSchema = z.strictObject({ kind: z.literal('warning'), message: z.string(), at: epochMs });

export const logEventSchema = z.discriminatedUnion('kind', [transitionEventSchema, errorEventSchema, warningEventSchema]);

export type TransitionLogEvent = z.infer<typeof transitionEventSchema>;
export type ErrorLogEvent = z.infer<typeof errorEventSchema>;
export type WarningLogEvent = z.infer<typeof warningEventSchema>;
export type LogEvent = z.infer<typeof logEventSchema>;
export type LogEventKind = LogEvent['kind'];
export const LOG_EVENT_KINDS = ['transition', 'error', 'warning'] as const satisfies readonly LogEventKind[];

/** A stored event: its stream sequence is its id and the pagination cursor. */
export type LogRow = LogEvent & { seq: number };
