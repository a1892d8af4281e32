/**
 * The HTTP API's shapes (reference §6): request bodies, query strings, path parameters and responses,
 * snake_case JSON. Where the wire protocol already has the shape (pipelines, graphs, checkpoints, metric
 * groups) it is reused, so the API and the controller cannot drift apart. Every object is strict: an
 * unknown field or query parameter is a 400, never silently ignored.
 */
import { z } from 'zod';
import {
  DEFAULT_LIST_LIMIT,
  MAX_LIST_LIMIT,
  checkpointSchema,
  failureSchema,
  jobWaitSchema,
  graphSchema,
  idSchema,
  jobStateSchema,
  listControllersReplySchema,
  operatorCheckpointGroupSchema,
  operatorMetricGroupSchema,
  pipelineSchema,
  stopModeSchema,
  triggerCheckpointReplySchema,
  triggerCheckpointRequestSchema,
} from '../protocol/index.js';
import { checkpointIntervalSchema, errorDomainSchema, parallelismSchema, retryHintSchema, ttlSchema, versionField } from '../protocol/primitives.js';
import { MAX_PAGE_LIMIT } from '../store/index.js';

export const errorBodySchema = z.strictObject({ error: z.string() }).meta({ description: 'Every failure: what went wrong, naming the offending field' });

/**
 * Query values arrive as strings. Only plain decimal digits are integers here: `z.coerce` would take
 * `1e3`, ` 5` or an empty string.
 */
function integerParam(min: number, max: number) {
  return z
    .string()
    .regex(/^[0-9]{1,16}$/, { error: 'expected an integer' })
    .transform(Number)
    .pipe(z.int().min(min).max(max));
}

const booleanParam = z.enum(['true', 'false']).transform((value) => value === 'true');

const micros = z.int().nonnegative();

// ─── Path parameters ─────────────────────────────────────────────────────────────────────────────
// Ids are checked by pipelineIdOf/jobIdOf, not here: an id that cannot exist names nothing (404), it is not bad input.

export const pipelineParamsSchema = z.strictObject({ id: z.string() });
export const jobParamsSchema = z.strictObject({ id: z.string(), job_id: z.string() });
export const checkpointParamsSchema = z.strictObject({ id: z.string(), job_id: z.string(), epoch: integerParam(0, Number.MAX_SAFE_INTEGER) });

// ─── Query strings ───────────────────────────────────────────────────────────────────────────────

/** Routes without query parameters still reject unknown ones. */
export const noQuerySchema = z.strictObject({});

export const listPipelinesQuerySchema = z.strictObject({
  starting_after: idSchema.optional().meta({ description: 'Cursor: the last pipeline id of the previous page' }),
  limit: integerParam(1, MAX_LIST_LIMIT)
    .optional()
    .meta({ description: `1–${MAX_LIST_LIMIT}, default ${DEFAULT_LIST_LIMIT}` }),
});

export const DEFAULT_JOBS_LIMIT = 100;
export const MAX_JOBS_LIMIT = 1000;

export const listJobsQuerySchema = z.strictObject({
  limit: integerParam(1, MAX_JOBS_LIMIT)
    .optional()
    .meta({ description: `At most this many jobs, newest first: 1–${MAX_JOBS_LIMIT}, default ${DEFAULT_JOBS_LIMIT}` }),
});

export const DEFAULT_ERRORS_LIMIT = 20;

export const listErrorsQuerySchema = z.strictObject({
  starting_after: integerParam(1, Number.MAX_SAFE_INTEGER)
    .optional()
    .meta({ description: 'Cursor: the id of the last row of the previous page; rows older than it follow' }),
  limit: integerParam(1, MAX_PAGE_LIMIT)
    .optional()
    .meta({ description: `1–${MAX_PAGE_LIMIT}, default ${DEFAULT_ERRORS_LIMIT}` }),
});

export const listCheckpointsQuerySchema = z.strictObject({
  include_failed: booleanParam.optional().meta({ description: 'Also list failed checkpoints (default false, as in the reference)' }),
});

// ─── Request bodies ──────────────────────────────────────────────────────────────────────────────

/**
 * The protocol's pipeline. `v` may be left out; it is accepted (as 1 only) so a pipeline file written for
 * `weir submit`, such as examples/counter.json, can be POSTed as it is.
 */
export const createPipelineBodySchema = pipelineSchema.extend({ v: versionField.optional() });

export const patchPipelineBodySchema = z
  .strictObject({
    stop: stopModeSchema.nullish().meta({ description: '`none` starts the job; the others stop it that way' }),
    parallelism: parallelismSchema.nullish().meta({ description: 'Every node' }),
    checkpoint_interval_micros: checkpointIntervalSchema.nullish(),
  })
  .meta({ description: 'Null or absent fields are left unchanged; at least one must be set' });

/** An absent body arrives as null: these bodies are optional. */
export const restartPipelineBodySchema = z
  .strictObject({
    force: z.boolean().nullish().meta({ description: 'Skip the final checkpoint' }),
    ignore_state: z.boolean().nullish().meta({ description: 'The new run starts from no state (a force restart)' }),
  })
  .nullish();

export const triggerCheckpointBodySchema = triggerCheckpointRequestSchema.omit({ v: true }).nullish();

export const triggerCheckpointHeadersSchema = z.looseObject({
  'idempotency-key': triggerCheckpointRequestSchema.shape.trigger_id.meta({ description: 'The trigger id, when the body has none' }),
});

// ─── Responses ───────────────────────────────────────────────────────────────────────────────────

const actionFields = {
  action: stopModeSchema.nullable().meta({ description: 'The `stop` value to PATCH for the one action a UI offers now; null: none' }),
  action_text: z.string(),
  action_in_progress: z.boolean(),
};

export const jobSchema = z.strictObject({
  id: z.string(),
  pipeline_id: z.string(),
  running_desired: z.boolean(),
  state: jobStateSchema,
  run_id: z.int().nonnegative().meta({ description: 'The generation: +1 on every (re)start' }),
  start_time: micros.nullable(),
  finish_time: micros.nullable(),
  restarts: z.int().nonnegative(),
  failure: failureSchema.pick({ message: true, domain: true }).nullable(),
  created_at: micros,
  ...actionFields,
  waiting: jobWaitSchema.nullable().meta({ description: 'What the job waits for now and until when (µs), after which its state falls back (a retry, a kill, a failure); null while Running and in the states a job rests in' }),
  owner: z.string().nullable().meta({ description: 'The controller that owns the job now; null while a takeover is under way' }),
});

export const pipelineResponseSchema = z.strictObject({
  id: z.string(),
  name: z.string(),
  graph: graphSchema,
  parallelism: parallelismSchema.nullable().meta({ description: 'The parallelism every node runs with (PATCH, else the pipeline, else the node); null when nodes differ' }),
  parallelism_overrides: z.record(z.string(), parallelismSchema),
  checkpoint_interval_micros: z.int().nonnegative().meta({ description: '0: periodic checkpoints off' }),
  ttl_micros: ttlSchema.nullable(),
  stop: stopModeSchema,
  created_at: micros,
  ...actionFields,
  job: jobSchema,
});

export const pipelinePageSchema = z.strictObject({ data: z.array(pipelineResponseSchema), has_more: z.boolean() });
export const jobListSchema = z.strictObject({ data: z.array(jobSchema) });

export const errorRowSchema = z.strictObject({
  id: z.int().positive().meta({ description: 'The row id, also the pagination cursor' }),
  created_at: micros,
  operator_id: z.string().nullable(),
  task_index: z.int().nonnegative().nullable(),
  level: z.literal('error'),
  message: z.string(),
  error_domain: errorDomainSchema,
  hint: retryHintSchema,
});
export const errorPageSchema = z.strictObject({ data: z.array(errorRowSchema), has_more: z.boolean() });

export const checkpointListSchema = z.strictObject({ data: z.array(checkpointSchema) });
export const operatorCheckpointGroupListSchema = z.strictObject({ data: z.array(operatorCheckpointGroupSchema) });
export const triggerCheckpointResponseSchema = triggerCheckpointReplySchema.omit({ v: true, job_id: true });
export const operatorMetricGroupListSchema = z.strictObject({ data: z.array(operatorMetricGroupSchema) });
/** The fleet as the controller that answered sees it in the leases bucket (`weir.api.controllers.list` without `v`). */
export const controllerListSchema = listControllersReplySchema.omit({ v: true });

export const pongSchema = z.strictObject({ pong: z.literal(true) });

// The shapes as clients see them; the web console (console/src/types.ts) imports these, types only.
export type Job = z.infer<typeof jobSchema>;
export type JobList = z.infer<typeof jobListSchema>;
export type PipelineResponse = z.infer<typeof pipelineResponseSchema>;
export type PipelinePage = z.infer<typeof pipelinePageSchema>;
export type ErrorRow = z.infer<typeof errorRowSchema>;
export type ErrorPage = z.infer<typeof errorPageSchema>;
export type CheckpointList = z.infer<typeof checkpointListSchema>;
export type OperatorCheckpointGroupList = z.infer<typeof operatorCheckpointGroupListSchema>;
export type TriggerCheckpointResponse = z.infer<typeof triggerCheckpointResponseSchema>;
export type OperatorMetricGroupList = z.infer<typeof operatorMetricGroupListSchema>;
export type ControllerList = z.infer<typeof controllerListSchema>;
/** What a client sends: `z.input`, so fields with defaults may be left out. */
export type CreatePipelineBody = z.input<typeof createPipelineBodySchema>;
export type PatchPipelineBody = z.input<typeof patchPipelineBodySchema>;
export type RestartPipelineBody = NonNullable<z.input<typeof restartPipelineBodySchema>>;

/** The failures every route can answer with, besides its own. */
export const COMMON_ERRORS = { 400: errorBodySchema, 401: errorBodySchema, 404: errorBodySchema, 503: errorBodySchema } as const;
/** Routes with a body add these. */
export const BODY_ERRORS = { 413: errorBodySchema, 415: errorBodySchema } as const;
