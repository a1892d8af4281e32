/**
 * Every message of weir, by who sends it. Wire names are snake_case (the HTTP API accepts the same
 * JSON); times are µs since the Unix epoch; every message has `v: 1` except the error reply.
 * Graph nodes are named `node_id` everywhere (`operator` is the operator's name).
 */
import { z } from 'zod';
import { checkpointDetailsReplySchema, checkpointDetailsRequestSchema, jobCheckpointsReplySchema, jobCheckpointsRequestSchema } from './checkpoints.js';
import { JOB_STATES, STOP_MODES, WAIT_KINDS } from '../../machines/job/types.js';
import { errorReplySchema } from './errors.js';
import { graphSchema, pipelineSchema } from './pipeline.js';
import {
  MAX_LIST_LIMIT,
  checkpointIntervalSchema,
  commitDataSchema,
  countSchema,
  errorDomainSchema,
  errorTextSchema,
  idSchema,
  jsonObjectSchema,
  jsonValueSchema,
  microsSchema,
  operatorNameSchema,
  parallelismSchema,
  retryHintSchema,
  ttlSchema,
  versionField as v,
} from './primitives.js';

export const jobStateSchema = z.enum(JOB_STATES);
export const stopModeSchema = z.enum(STOP_MODES);
export const restartModeSchema = z.enum(['safe', 'force']);
export const stopKindSchema = z.enum(['graceful', 'immediate', 'kill']);

/** KV revision of the job's record; `expected_revision` compares against it. */
const revision = z.int().nonnegative();

export const failureSchema = z.strictObject({
  message: errorTextSchema,
  domain: errorDomainSchema,
  hint: retryHintSchema,
  at: microsSchema,
});

// ─── Client/API → controller (requests) ──────────────────────────────────────────────────────────

/** Reply to create and config: the job and the revision of its record after the change. */
/**
 * The job's config revision after a create or a config update. A config update also says whether it
 * changed anything (`changed: false`: the job already had that config, or rests in a state where a
 * stop means nothing more, and nothing was written) and the job's state.
 */
export const jobRevisionReplySchema = z.strictObject({ v, job_id: idSchema, revision, changed: z.boolean().optional(), state: jobStateSchema.optional() });

/** Body of get and delete: the job is named by the subject. */
export const jobRequestSchema = z.strictObject({ v });

export const configUpdateSchema = z
  .strictObject({
    v,
    stop: stopModeSchema.optional(),
    /** `true` bumps the restart nonce. */
    restart: z.boolean().optional(),
    /** Alone, escalates a safe restart in progress to force. */
    restart_mode: restartModeSchema.optional(),
    /** With `restart: true`: the new run starts from no state (once); the restart is a force restart, as a final checkpoint would be ignored. */
    ignore_state: z.boolean().optional(),
    /** Every node. Exclusive with `parallelism_overrides`. */
    parallelism: parallelismSchema.optional(),
    parallelism_overrides: z.record(idSchema, parallelismSchema).optional(),
    checkpoint_interval_micros: checkpointIntervalSchema.optional(),
    /** `null` removes the TTL. */
    ttl_micros: ttlSchema.nullable().optional(),
    /** Compare-and-set: fails with `conflict` unless the job's record is at this revision. */
    expected_revision: revision.optional(),
  })
  .superRefine((update, ctx) => {
    if (update.parallelism !== undefined && update.parallelism_overrides !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['parallelism_overrides'], message: 'cannot be combined with parallelism' });
    }
    if (update.ignore_state === true && update.restart !== true) {
      ctx.addIssue({ code: 'custom', path: ['ignore_state'], message: 'needs restart: true' });
    }
    if (update.ignore_state === true && update.restart_mode === 'safe') {
      ctx.addIssue({ code: 'custom', path: ['restart_mode'], message: 'ignore_state restarts without a final checkpoint: use force or leave it out' });
    }
    const { v: _v, expected_revision: _rev, ...changes } = update;
    if (Object.values(changes).every((value) => value === undefined)) {
      ctx.addIssue({ code: 'custom', path: [], message: 'nothing to change' });
    }
  });

export const deleteJobReplySchema = z.strictObject({ v, job_id: idSchema });

/** The one action a UI may offer now (the reference's state → action table): button text, the `stop` value to send (null: none), busy. */
export const availableActionSchema = z.strictObject({ text: z.string(), stop: stopModeSchema.nullable(), in_progress: z.boolean() });

/** The desired config as the controller holds it. */
export const jobConfigViewSchema = z.strictObject({
  stop: stopModeSchema,
  restart_nonce: countSchema,
  restart_mode: restartModeSchema,
  parallelism_overrides: z.record(idSchema, parallelismSchema),
  /** 0: periodic checkpoints off. */
  checkpoint_interval_micros: countSchema,
  ttl_micros: ttlSchema.nullable(),
});

/**
 * Why a job waits and until when: the state it is in waits for this, and when `until` passes, the state's
 * fallback happens (a retry, a kill, a failure). Null for Running and the states a job rests in.
 */
export const jobWaitSchema = z.strictObject({
  kind: z.enum(WAIT_KINDS),
  reason: z.string(),
  /** Null only for a wait without a deadline, which would be a bug. */
  until: microsSchema.nullable(),
});

/** Where a job is in its lifecycle: shared by the job view and the list summary. */
const jobProgressShape = {
  state: jobStateSchema,
  generation: countSchema,
  restarts: countSchema,
  failure: failureSchema.nullable(),
  created_at: microsSchema,
  start_time: microsSchema.nullable(),
  finish_time: microsSchema.nullable(),
  available_action: availableActionSchema,
  waiting: jobWaitSchema.nullable(),
};

export const jobViewSchema = z.strictObject({
  v,
  job_id: idSchema,
  name: z.string(),
  revision,
  graph: graphSchema,
  /** The pipeline's `parallelism` for every node as created; null: each node's own. */
  parallelism: parallelismSchema.nullable(),
  config: jobConfigViewSchema,
  ...jobProgressShape,
  /** The controller that owns the job now; null while a takeover is under way. Absent from older controllers. */
  owner: z.string().nullable().optional(),
});

export const listJobsRequestSchema = z.strictObject({
  v,
  /** Cursor: the last job id of the previous page (newest first). */
  starting_after: idSchema.optional(),
  limit: z.int().min(1).max(MAX_LIST_LIMIT).optional(),
});

/** A job as lists show it: the job view without its graph and config, plus the desired stop mode. */
export const jobSummarySchema = z.strictObject({
  job_id: idSchema,
  name: z.string(),
  /** The desired stop mode; `none` means the job should run. */
  stop: stopModeSchema,
  ...jobProgressShape,
  /** As in the job view. */
  owner: z.string().nullable().optional(),
});

export const listJobsReplySchema = z.strictObject({ v, data: z.array(jobSummarySchema), has_more: z.boolean() });

/**
 * A page of whole job views, each as a get answers it, for clients that show graphs and configs: one
 * request per page instead of one per job. A page may hold fewer than `limit` jobs, with `has_more`,
 * rather than pass the reply size NATS allows.
 */
export const listJobViewsReplySchema = z.strictObject({ v, data: z.array(jobViewSchema), has_more: z.boolean() });

/** Printable ASCII without spaces: a client's idempotency key. */
const triggerIdSchema = z.string().regex(/^[\x21-\x7e]{1,128}$/, { error: 'expected 1–128 printable ASCII characters without spaces' });

/**
 * Take a checkpoint now. With a `trigger_id`, a repeat of the request (a client retrying after a
 * timeout) answers with the epoch the first one started instead of starting another.
 */
export const triggerCheckpointRequestSchema = z.strictObject({ v, trigger_id: triggerIdSchema.optional() });

export const triggerCheckpointReplySchema = z.strictObject({
  v,
  job_id: idSchema,
  /** The epoch of the checkpoint this trigger started; its progress is in the job's checkpoints. */
  epoch: z.int().min(1),
  trigger_id: triggerIdSchema.optional(),
  /** False when a repeated `trigger_id` was answered with the epoch it started before. */
  started: z.boolean(),
});

export const jobMetricsRequestSchema = z.strictObject({ v });

const rateSchema = z.number().nonnegative();

/** One sample of a subtask's counters, as a worker reported it. */
export const metricSampleSchema = z.strictObject({ at: microsSchema, records_in: countSchema, records_out: countSchema });

export const subtaskMetricGroupSchema = z.strictObject({
  subtask_index: countSchema,
  records_in: countSchema,
  records_out: countSchema,
  /** Per second, over the newest samples (0 until two samples exist). */
  records_in_rate: rateSchema,
  records_out_rate: rateSchema,
  /** Oldest first: the samples kept for the current generation. */
  samples: z.array(metricSampleSchema),
});

export const operatorMetricGroupSchema = z.strictObject({
  node_id: idSchema,
  operator: operatorNameSchema,
  parallelism: z.int().min(1),
  records_in: countSchema,
  records_out: countSchema,
  records_in_rate: rateSchema,
  records_out_rate: rateSchema,
  subtasks: z.array(subtaskMetricGroupSchema),
});

/** The record counters of the job's current generation, per operator and subtask. */
export const jobMetricsReplySchema = z.strictObject({
  v,
  job_id: idSchema,
  generation: countSchema,
  /** When the newest sample was reported; null before any. */
  collected_at: microsSchema.nullable(),
  data: z.array(operatorMetricGroupSchema),
});

export const controllerMetricsRequestSchema = z.strictObject({ v });

/** The controller's metrics in the Prometheus text exposition format (version 0.0.4). */
export const controllerMetricsReplySchema = z.strictObject({ v, text: z.string() });

export const listWorkersRequestSchema = z.strictObject({ v });

const slotsHeldSchema = z.strictObject({ job_id: idSchema, generation: countSchema, slots: countSchema });

/** A worker as the controller's registry knows it: its slots, whose they are, and what it says runs there. */
export const workerViewSchema = z.strictObject({
  worker_id: idSchema,
  slots: z.int().min(1),
  /** Neither allocated nor reported taken. */
  free_slots: z.int(),
  operators: z.array(operatorNameSchema),
  hostname: z.string().nullable(),
  pid: z.int().positive().nullable(),
  registered_at: microsSchema,
  last_seen_at: microsSchema,
  /** Heard from within the heartbeat timeout. */
  live: z.boolean(),
  /** Slots the controller booked here, per generation. */
  allocations: z.array(slotsHeldSchema),
  /** What the worker's latest heartbeat said runs here. */
  reported: z.array(slotsHeldSchema),
});

export const listWorkersReplySchema = z.strictObject({ v, data: z.array(workerViewSchema) });

export const listControllersRequestSchema = z.strictObject({ v });

/** A controller as the leases bucket shows it to the controller that answers. */
export const controllerViewSchema = z.strictObject({
  controller_id: z.string().min(1),
  /** Jobs in the jobs bucket whose shard's lease names it. */
  jobs: countSchema,
  /** Shards whose lease names it (released and expired leases count for nobody). */
  shards: countSchema,
  /** Milliseconds since the answering controller saw the oldest of those leases renewed; null when it holds none. */
  oldest_lease_age_ms: z.number().nonnegative().nullable(),
  /** Milliseconds since the answering controller saw its presence renewed; null when it has none. */
  presence_age_ms: z.number().nonnegative().nullable(),
  /** Its presence was renewed within a lease TTL. */
  live: z.boolean(),
});

export const listControllersReplySchema = z.strictObject({
  v,
  /** The shard count of the deployment. */
  shards: z.int().min(1),
  lease_ttl_ms: z.int().positive(),
  /** The controller that answered: every controller answers for the whole fleet. */
  answered_by: z.string().min(1),
  data: z.array(controllerViewSchema),
});

// ─── Worker → controller ─────────────────────────────────────────────────────────────────────────

export const subtaskMetricsSchema = z.strictObject({
  node_id: idSchema,
  subtask_index: countSchema,
  /** Totals since the subtask started. */
  records_in: countSchema,
  records_out: countSchema,
  /** A source that ran out of input and waits for the final checkpoint (it reported `exhausted`). */
  exhausted: z.literal(true).optional(),
});

const runningJobsSchema = z.array(
  z.strictObject({
    job_id: idSchema,
    generation: countSchema,
    /** Slots the generation takes here until its tasks are gone (absent from older workers: its subtasks' distinct indexes). */
    slots: countSchema.optional(),
    subtasks: z.array(subtaskMetricsSchema),
  }),
);

export const registerWorkerSchema = z.strictObject({
  v,
  worker_id: idSchema,
  slots: z.int().min(1),
  /** Operator names this worker can run. */
  operators: z.array(operatorNameSchema),
  hostname: z.string().max(255).optional(),
  pid: z.int().positive().optional(),
  /**
   * What already runs here (a worker that registers again after the controller restarted or forgot it):
   * the controller counts those slots as taken at once, and stops what it no longer wants.
   */
  jobs: runningJobsSchema.optional(),
});

export const registerWorkerReplySchema = z.strictObject({
  v,
  heartbeat_interval_ms: z.int().positive(),
  /** How often to send `workerMetricsSchema`; absent: the worker's default (2 s). */
  metrics_interval_ms: z.int().positive().optional(),
});

export const heartbeatSchema = z.strictObject({
  v,
  worker_id: idSchema,
  at: microsSchema,
  /** Everything running here, so the controller can reconcile missed task events. */
  jobs: runningJobsSchema,
});

/** The record counts of everything running here, more often than heartbeats and without a reply. */
export const workerMetricsSchema = z.strictObject({ v, worker_id: idSchema, at: microsSchema, jobs: runningJobsSchema });

export const deregisterWorkerSchema = z.strictObject({ v, worker_id: idSchema, reason: z.string().max(1024).optional() });

const subtaskRef = {
  v,
  job_id: idSchema,
  generation: countSchema,
  worker_id: idSchema,
  node_id: idSchema,
  subtask_index: countSchema,
  at: microsSchema,
};

export const taskStartedSchema = z.strictObject({ ...subtaskRef, event: z.literal('started') });
export const taskFinishedSchema = z.strictObject({ ...subtaskRef, event: z.literal('finished') });
/**
 * A source of a job with a two-phase-commit sink has no more input. It does not end its stream: it waits
 * for the final checkpoint, so the sinks' last output is committed like any other epoch's.
 */
export const taskExhaustedSchema = z.strictObject({ ...subtaskRef, event: z.literal('exhausted') });
export const taskFailedSchema = z.strictObject({
  ...subtaskRef,
  event: z.literal('failed'),
  domain: errorDomainSchema,
  hint: retryHintSchema,
  /** ≤ 64 KiB UTF-8; see `truncateErrorText`. */
  reason: errorTextSchema,
  details: errorTextSchema.optional(),
});
export const taskEventSchema = z.discriminatedUnion('event', [taskStartedSchema, taskFinishedSchema, taskExhaustedSchema, taskFailedSchema]);

export const CHECKPOINT_PROGRESS_EVENTS = [
  'started_alignment',
  'started_checkpointing',
  'finished_operator_setup',
  'finished_sync',
  'finished_commit',
] as const;

export const checkpointProgressSchema = z.strictObject({
  ...subtaskRef,
  event: z.enum(CHECKPOINT_PROGRESS_EVENTS),
  epoch: countSchema,
});

export const checkpointCompletedSchema = z.strictObject({
  ...subtaskRef,
  event: z.literal('completed'),
  epoch: countSchema,
  bytes: countSchema,
  start_time: microsSchema,
  finish_time: microsSchema,
  watermark: microsSchema.optional(),
  table_metadata: jsonObjectSchema,
  commit_data: commitDataSchema.optional(),
});

export const checkpointEventSchema = z.discriminatedUnion('event', [checkpointProgressSchema, checkpointCompletedSchema]);

// ─── Controller → worker (requests, answered by an ack or an error reply) ───────────────────────

export const ackSchema = z.strictObject({ v, ok: z.literal(true) });

export const assignmentSchema = z.strictObject({
  node_id: idSchema,
  /** The subtask indexes of this node that this worker runs. */
  subtasks: z.array(countSchema).min(1),
});

/**
 * The sending controller's lease epoch of the job's shard (docs/high-availability.md). A worker refuses a
 * command with an epoch older than one it has seen for the job (`stale_owner`): a controller that lost the
 * job cannot command its tasks after the new owner did. Absent: no owner fencing (a lone controller).
 */
const ownerEpochSchema = countSchema.optional();

export const startExecutionSchema = z.strictObject({
  v,
  job_id: idSchema,
  generation: countSchema,
  owner_epoch: ownerEpochSchema,
  program: z.strictObject({
    /** Node parallelism already resolved (overrides applied). */
    graph: graphSchema,
    assignments: z.array(assignmentSchema).min(1),
  }),
  restore_epoch: countSchema.optional(),
  start_epoch: countSchema,
  min_epoch: countSchema,
  /** 0: periodic checkpoints off. */
  checkpoint_interval_micros: countSchema,
  /**
   * The job has a two-phase-commit sink: a source that runs out of input reports `exhausted` and keeps
   * its stream open until the final checkpoint's barrier, so the last output is committed like the rest.
   */
  final_checkpoint: z.boolean().optional(),
});

export const stopExecutionSchema = z.strictObject({ v, job_id: idSchema, generation: countSchema, owner_epoch: ownerEpochSchema, mode: stopKindSchema });

export const checkpointRequestSchema = z.strictObject({
  v,
  job_id: idSchema,
  generation: countSchema,
  owner_epoch: ownerEpochSchema,
  epoch: z.int().min(1),
  min_epoch: countSchema,
  then_stop: z.boolean(),
  timestamp: microsSchema,
});

export const commitRequestSchema = z.strictObject({
  v,
  job_id: idSchema,
  generation: countSchema,
  owner_epoch: ownerEpochSchema,
  epoch: z.int().min(1),
  commits: z.array(z.strictObject({ node_id: idSchema, subtask_index: countSchema, commit_data: commitDataSchema })),
});

// ─── Controller → anyone (publish) ───────────────────────────────────────────────────────────────

export const jobStateEventSchema = z.strictObject({
  v,
  job_id: idSchema,
  state: jobStateSchema,
  previous: jobStateSchema.nullable(),
  generation: countSchema,
  restarts: countSchema,
  failure: failureSchema.optional(),
  at: microsSchema,
  /** Per job, +1 on every transition: a follower sees a gap as a jump. */
  seq: z.int().min(1),
  /** The job was deleted: the last event of the job, in the state it was deleted in (`previous` the same). */
  deleted: z.literal(true).optional(),
});

export const previewOutputSchema = z.strictObject({
  v,
  job_id: idSchema,
  generation: countSchema,
  node_id: idSchema,
  subtask_index: countSchema,
  rows: z.array(jsonValueSchema),
  /** The last batch of this subtask. */
  done: z.boolean().optional(),
});

export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;

/** Entries of the `WEIR_JOB_LOG` stream (JetStream publish by the controller). */
export const jobLogEntrySchema = z.strictObject({
  v,
  job_id: idSchema,
  at: microsSchema,
  level: z.enum(LOG_LEVELS),
  message: z.string().max(1024),
  details: errorTextSchema.optional(),
  generation: countSchema.optional(),
  node_id: idSchema.optional(),
  subtask_index: countSchema.optional(),
  domain: errorDomainSchema.optional(),
  hint: retryHintSchema.optional(),
});

// ─── Data plane (worker → worker) ────────────────────────────────────────────────────────────────

export const recordSchema = z.strictObject({
  /** Partitioning key of shuffle edges. */
  key: z.string().optional(),
  value: jsonValueSchema,
  /** Event time, µs. */
  ts: z.int(),
});

/** `from_subtask`: the sending subtask, so a receiver aligns barriers per input channel. */
export const recordBatchSchema = z.strictObject({ v, kind: z.literal('records'), from_subtask: countSchema, records: z.array(recordSchema).min(1) });
export const barrierSchema = z.strictObject({ v, kind: z.literal('barrier'), from_subtask: countSchema, epoch: z.int().min(1), then_stop: z.boolean() });
export const endOfStreamSchema = z.strictObject({ v, kind: z.literal('end'), from_subtask: countSchema });
export const dataMessageSchema = z.discriminatedUnion('kind', [recordBatchSchema, barrierSchema, endOfStreamSchema]);

// ─── Types ───────────────────────────────────────────────────────────────────────────────────────

export type JobFailureView = z.infer<typeof failureSchema>;
export type JobRevisionReply = z.infer<typeof jobRevisionReplySchema>;
export type JobRequest = z.infer<typeof jobRequestSchema>;
export type ConfigUpdate = z.infer<typeof configUpdateSchema>;
export type DeleteJobReply = z.infer<typeof deleteJobReplySchema>;
export type JobConfigView = z.infer<typeof jobConfigViewSchema>;
export type JobView = z.infer<typeof jobViewSchema>;
export type ListJobsRequest = z.infer<typeof listJobsRequestSchema>;
export type JobSummary = z.infer<typeof jobSummarySchema>;
export type ListJobsReply = z.infer<typeof listJobsReplySchema>;
export type ListJobViewsReply = z.infer<typeof listJobViewsReplySchema>;

/** A job view as lists show it (jobSummarySchema). */
export function jobSummary(view: JobView): JobSummary {
  const { job_id, name, state, config, generation, restarts, failure, created_at, start_time, finish_time, available_action, waiting, owner } = view;
  return { job_id, name, state, stop: config.stop, generation, restarts, failure, created_at, start_time, finish_time, available_action, waiting, ...(owner === undefined ? {} : { owner }) };
}
export type AvailableAction = z.infer<typeof availableActionSchema>;
export type TriggerCheckpointRequest = z.infer<typeof triggerCheckpointRequestSchema>;
export type TriggerCheckpointReply = z.infer<typeof triggerCheckpointReplySchema>;
export type JobMetricsReply = z.infer<typeof jobMetricsReplySchema>;
export type OperatorMetricGroup = z.infer<typeof operatorMetricGroupSchema>;
export type SubtaskMetricGroup = z.infer<typeof subtaskMetricGroupSchema>;
export type MetricSample = z.infer<typeof metricSampleSchema>;
export type ControllerMetricsReply = z.infer<typeof controllerMetricsReplySchema>;
export type WorkerViewMessage = z.infer<typeof workerViewSchema>;
export type ListWorkersReply = z.infer<typeof listWorkersReplySchema>;
export type ListControllersRequest = z.infer<typeof listControllersRequestSchema>;
export type ControllerViewMessage = z.infer<typeof controllerViewSchema>;
export type ListControllersReply = z.infer<typeof listControllersReplySchema>;
export type JobWaitMessage = z.infer<typeof jobWaitSchema>;
export type RegisterWorker = z.infer<typeof registerWorkerSchema>;
export type RegisterWorkerReply = z.infer<typeof registerWorkerReplySchema>;
export type SubtaskMetrics = z.infer<typeof subtaskMetricsSchema>;
export type WorkerMetrics = z.infer<typeof workerMetricsSchema>;
export type Heartbeat = z.infer<typeof heartbeatSchema>;
export type DeregisterWorker = z.infer<typeof deregisterWorkerSchema>;
export type TaskEvent = z.infer<typeof taskEventSchema>;
export type TaskFailed = z.infer<typeof taskFailedSchema>;
export type CheckpointProgressEvent = z.infer<typeof checkpointProgressSchema>;
export type CheckpointCompleted = z.infer<typeof checkpointCompletedSchema>;
export type CheckpointEvent = z.infer<typeof checkpointEventSchema>;
export type CommitData = z.infer<typeof commitDataSchema>;
export type Ack = z.infer<typeof ackSchema>;
export type Assignment = z.infer<typeof assignmentSchema>;
export type StartExecution = z.infer<typeof startExecutionSchema>;
export type StopExecution = z.infer<typeof stopExecutionSchema>;
export type CheckpointRequest = z.infer<typeof checkpointRequestSchema>;
export type CommitRequest = z.infer<typeof commitRequestSchema>;
export type JobStateEvent = z.infer<typeof jobStateEventSchema>;
export type PreviewOutput = z.infer<typeof previewOutputSchema>;
export type JobLogEntry = z.infer<typeof jobLogEntrySchema>;
export type DataRecord = z.infer<typeof recordSchema>;
export type DataMessage = z.infer<typeof dataMessageSchema>;

/** Every schema by its exported name: `SUBJECTS` refers to payloads and replies by these names. */
export const SCHEMAS = {
  pipelineSchema,
  jobRevisionReplySchema,
  jobRequestSchema,
  configUpdateSchema,
  deleteJobReplySchema,
  jobViewSchema,
  listJobsRequestSchema,
  listJobsReplySchema,
  listJobViewsReplySchema,
  triggerCheckpointRequestSchema,
  triggerCheckpointReplySchema,
  jobMetricsRequestSchema,
  jobMetricsReplySchema,
  controllerMetricsRequestSchema,
  controllerMetricsReplySchema,
  listWorkersRequestSchema,
  listWorkersReplySchema,
  listControllersRequestSchema,
  listControllersReplySchema,
  registerWorkerSchema,
  registerWorkerReplySchema,
  heartbeatSchema,
  workerMetricsSchema,
  deregisterWorkerSchema,
  taskEventSchema,
  checkpointEventSchema,
  ackSchema,
  startExecutionSchema,
  stopExecutionSchema,
  checkpointRequestSchema,
  commitRequestSchema,
  jobStateEventSchema,
  previewOutputSchema,
  jobLogEntrySchema,
  dataMessageSchema,
  jobCheckpointsRequestSchema,
  jobCheckpointsReplySchema,
  checkpointDetailsRequestSchema,
  checkpointDetailsReplySchema,
  errorReplySchema,
} as const;
export type SchemaName = keyof typeof SCHEMAS;
