/**
 * Every NATS subject of weir. Ids are validated before they become tokens, so no id can add a
 * token (`.`) or a wildcard (`*`, `>`). Request subjects are disjoint from JetStream stream
 * subjects: a stream that captured a request subject would answer it with a PubAck.
 */
import type { ErrorCode } from './errors.js';
import type { SchemaName } from './messages.js';
import { isValidId } from './primitives.js';

/** `request`: core request/reply. `publish`: core fire-and-forget. `stream`: JetStream publish, kept in a stream. */
export type SubjectKind = 'request' | 'publish' | 'stream';
export type Party = 'client' | 'controller' | 'worker' | 'any';

export interface SubjectSpec {
  /** With `<placeholders>` for tokens, e.g. `weir.api.jobs.<job>.get`. */
  pattern: string;
  /** The pattern as a subscription: placeholders become `*`. */
  wildcard: string;
  kind: SubjectKind;
  from: Party;
  to: Party;
  /** Names in `SCHEMAS`. */
  payload: SchemaName;
  reply: SchemaName | null;
  /** Codes of the error replies (requests only; bad publishes are logged and dropped). */
  errors: readonly ErrorCode[];
  summary: string;
}

// ─── JetStream (never request subjects) ──────────────────────────────────────────────────────────

export const JOB_LOG_STREAM = 'WEIR_JOB_LOG';
export const JOB_LOG_SUBJECTS: readonly string[] = ['weir.log.*'];
export const JOBS_KV_BUCKET = 'weir_jobs';
/** The stream behind the KV bucket and its subjects, as nats.js creates them. */
export const JOBS_KV_STREAM = `KV_${JOBS_KV_BUCKET}`;
export const JOBS_KV_SUBJECTS: readonly string[] = [`$KV.${JOBS_KV_BUCKET}.>`];
/**
 * The KV bucket of completed epochs: the controller writes one record per epoch, workers read the
 * record a start's `restore_epoch` names.
 */
export const CHECKPOINTS_KV_BUCKET = 'weir_checkpoints';
export const CHECKPOINTS_KV_SUBJECTS: readonly string[] = [`$KV.${CHECKPOINTS_KV_BUCKET}.>`];
/**
 * Retention of checkpoint records: each job's records live in this many slots, so the bucket (history 1)
 * keeps the newest this-many epochs, and writing an epoch replaces the record of the one this-many
 * before it. Nothing is ever deleted: JetStream purges cost the server milliseconds each, a replaced
 * value nothing.
 */
export const CHECKPOINT_SLOTS = 10;
/** The key of the slot an epoch's record is written to; the record names its epoch. */
export const checkpointKey = (job: string, epoch: number): string => `${job}.${epoch % CHECKPOINT_SLOTS}`;
/** Every subject a weir JetStream stream captures. */
/**
 * The checkpoint store's event stream, metadata bucket and state object store at its default prefix
 * (src/checkpoint builds them with `checkpointStoreSubjects`; a test keeps the two equal).
 */
export const CHECKPOINT_STORE_SUBJECTS: readonly string[] = ['weir.cp.events.*', '$KV.weir_cp_meta.>', '$O.weir_cp_state.>'];
export const STREAM_SUBJECTS: readonly string[] = [...JOB_LOG_SUBJECTS, ...JOBS_KV_SUBJECTS, ...CHECKPOINTS_KV_SUBJECTS, ...CHECKPOINT_STORE_SUBJECTS];

// ─── The table ───────────────────────────────────────────────────────────────────────────────────

const DECODE: readonly ErrorCode[] = ['too_large', 'bad_json', 'unsupported_version', 'bad_schema'];

function spec(pattern: string, rest: Omit<SubjectSpec, 'pattern' | 'wildcard'>): SubjectSpec {
  return { pattern, wildcard: pattern.replace(/<[a-z_]+>/g, '*'), ...rest };
}

export const SUBJECTS = {
  apiJobsCreate: spec('weir.api.jobs.create', {
    kind: 'request', from: 'client', to: 'controller', payload: 'pipelineSchema', reply: 'jobRevisionReplySchema',
    errors: [...DECODE, 'invalid_pipeline', 'unavailable', 'internal'],
    summary: 'Create a job from a pipeline; it starts in Created.',
  }),
  apiJobsList: spec('weir.api.jobs.list', {
    kind: 'request', from: 'client', to: 'controller', payload: 'listJobsRequestSchema', reply: 'listJobsReplySchema',
    errors: [...DECODE, 'unavailable', 'internal'],
    summary: 'One page of jobs, newest first.',
  }),
  apiJobsViews: spec('weir.api.jobs.views', {
    kind: 'request', from: 'client', to: 'controller', payload: 'listJobsRequestSchema', reply: 'listJobViewsReplySchema',
    errors: [...DECODE, 'unavailable', 'internal'],
    summary: 'One page of whole job views (graph, config, state), newest first; short of `limit`, with `has_more`, rather than pass the reply size limit.',
  }),
  apiJobConfig: spec('weir.api.jobs.<job>.config', {
    kind: 'request', from: 'client', to: 'controller', payload: 'configUpdateSchema', reply: 'jobRevisionReplySchema',
    errors: [...DECODE, 'unknown_job', 'invalid_pipeline', 'conflict', 'unavailable', 'internal'],
    summary: 'Change the desired config: stop/start, restart, parallelism, checkpoint interval, TTL.',
  }),
  apiJobDelete: spec('weir.api.jobs.<job>.delete', {
    kind: 'request', from: 'client', to: 'controller', payload: 'jobRequestSchema', reply: 'deleteJobReplySchema',
    errors: [...DECODE, 'unknown_job', 'not_terminal', 'unavailable', 'internal'],
    summary: 'Delete a job in Stopped, Finished or Failed.',
  }),
  apiJobGet: spec('weir.api.jobs.<job>.get', {
    kind: 'request', from: 'client', to: 'controller', payload: 'jobRequestSchema', reply: 'jobViewSchema',
    errors: [...DECODE, 'unknown_job', 'unavailable', 'internal'],
    summary: 'The job: graph, desired config, state, generation, failure.',
  }),
  apiJobCheckpoints: spec('weir.api.jobs.<job>.checkpoints', {
    kind: 'request', from: 'client', to: 'controller', payload: 'jobCheckpointsRequestSchema', reply: 'jobCheckpointsReplySchema',
    errors: [...DECODE, 'unknown_job', 'unavailable', 'internal'],
    summary: "The job's checkpoints, newest first, with their job-level spans.",
  }),
  apiJobCheckpoint: spec('weir.api.jobs.<job>.checkpoint', {
    kind: 'request', from: 'client', to: 'controller', payload: 'checkpointDetailsRequestSchema', reply: 'checkpointDetailsReplySchema',
    errors: [...DECODE, 'unknown_job', 'unknown_checkpoint', 'unavailable', 'internal'],
    summary: 'One checkpoint: per-operator and per-subtask bytes and spans.',
  }),
  apiJobTriggerCheckpoint: spec('weir.api.jobs.<job>.trigger_checkpoint', {
    kind: 'request', from: 'client', to: 'controller', payload: 'triggerCheckpointRequestSchema', reply: 'triggerCheckpointReplySchema',
    errors: [...DECODE, 'unknown_job', 'not_running', 'conflict', 'unavailable', 'internal'],
    summary: 'Start a checkpoint now (after the one in flight); idempotent on trigger_id.',
  }),
  apiJobMetrics: spec('weir.api.jobs.<job>.metrics', {
    kind: 'request', from: 'client', to: 'controller', payload: 'jobMetricsRequestSchema', reply: 'jobMetricsReplySchema',
    errors: [...DECODE, 'unknown_job', 'internal'],
    summary: 'Records in and out per operator and subtask, with rates, from the collected worker metrics.',
  }),
  apiMetrics: spec('weir.api.metrics', {
    kind: 'request', from: 'client', to: 'controller', payload: 'controllerMetricsRequestSchema', reply: 'controllerMetricsReplySchema',
    errors: [...DECODE, 'internal'],
    summary: "The controller's Prometheus metrics (jobs by state, transitions, checkpoints, workers) as exposition text.",
  }),
  apiWorkersList: spec('weir.api.workers.list', {
    kind: 'request', from: 'client', to: 'controller', payload: 'listWorkersRequestSchema', reply: 'listWorkersReplySchema',
    errors: [...DECODE, 'internal'],
    summary: "The workers the controller knows: slots, free slots, the slots it booked per generation, and what each worker's heartbeat says runs there.",
  }),
  apiControllersList: spec('weir.api.controllers.list', {
    kind: 'request', from: 'client', to: 'controller', payload: 'listControllersRequestSchema', reply: 'listControllersReplySchema',
    errors: [...DECODE, 'internal'],
    summary: 'The controllers the shard leases name: shards and jobs each owns, lease and presence ages, liveness; any controller answers for the whole fleet.',
  }),
  workerRegister: spec('weir.ctl.workers.register', {
    kind: 'request', from: 'worker', to: 'controller', payload: 'registerWorkerSchema', reply: 'registerWorkerReplySchema',
    errors: [...DECODE, 'conflict', 'unavailable', 'internal'],
    summary: 'A worker offers its slots and operators; again after `unknown_worker`.',
  }),
  workerHeartbeat: spec('weir.ctl.workers.<worker>.heartbeat', {
    kind: 'request', from: 'worker', to: 'controller', payload: 'heartbeatSchema', reply: 'ackSchema',
    errors: [...DECODE, 'unknown_worker', 'internal'],
    summary: 'Liveness plus what runs here and its record counts; `unknown_worker` means register again.',
  }),
  workerMetrics: spec('weir.ctl.workers.<worker>.metrics', {
    kind: 'publish', from: 'worker', to: 'controller', payload: 'workerMetricsSchema', reply: null, errors: [],
    summary: 'Per-subtask record counts every metrics interval (2 s); a lost message only delays the figures.',
  }),
  workerDeregister: spec('weir.ctl.workers.<worker>.deregister', {
    kind: 'publish', from: 'worker', to: 'controller', payload: 'deregisterWorkerSchema', reply: null, errors: [],
    summary: 'Clean shutdown: the worker leaves without waiting for the heartbeat timeout.',
  }),
  jobTasks: spec('weir.ctl.jobs.<job>.tasks', {
    kind: 'publish', from: 'worker', to: 'controller', payload: 'taskEventSchema', reply: null, errors: [],
    summary: 'A subtask started, finished or failed.',
  }),
  jobCheckpoints: spec('weir.ctl.jobs.<job>.checkpoints', {
    kind: 'publish', from: 'worker', to: 'controller', payload: 'checkpointEventSchema', reply: null, errors: [],
    summary: 'Checkpoint progress of a subtask, and its completion with metadata.',
  }),
  workerStart: spec('weir.worker.<worker>.start', {
    kind: 'request', from: 'controller', to: 'worker', payload: 'startExecutionSchema', reply: 'ackSchema',
    errors: [...DECODE, 'stale_generation', 'conflict', 'corrupt_checkpoint', 'unavailable', 'internal'],
    summary: 'Run these subtasks of a generation.',
  }),
  workerStop: spec('weir.worker.<worker>.stop', {
    kind: 'request', from: 'controller', to: 'worker', payload: 'stopExecutionSchema', reply: 'ackSchema',
    errors: [...DECODE, 'unknown_job', 'stale_generation', 'internal'],
    summary: 'Stop a generation: graceful (like a barrier), immediate, or kill.',
  }),
  workerCheckpoint: spec('weir.worker.<worker>.checkpoint', {
    kind: 'request', from: 'controller', to: 'worker', payload: 'checkpointRequestSchema', reply: 'ackSchema',
    errors: [...DECODE, 'unknown_job', 'stale_generation', 'conflict', 'internal'],
    summary: 'Inject the barrier of an epoch at the sources this worker runs.',
  }),
  workerCommit: spec('weir.worker.<worker>.commit', {
    kind: 'request', from: 'controller', to: 'worker', payload: 'commitRequestSchema', reply: 'ackSchema',
    errors: [...DECODE, 'unknown_job', 'stale_generation', 'unavailable', 'internal'],
    summary: 'Second phase of a two-phase commit for an epoch: answered once the listed subtasks have committed.',
  }),
  jobState: spec('weir.jobs.<job>.state', {
    kind: 'publish', from: 'controller', to: 'any', payload: 'jobStateEventSchema', reply: null, errors: [],
    summary: 'Every state transition of a job: any NATS client can follow a job live.',
  }),
  jobOutput: spec('weir.jobs.<job>.output', {
    kind: 'publish', from: 'worker', to: 'any', payload: 'previewOutputSchema', reply: null, errors: [],
    summary: 'Rows of a preview sink.',
  }),
  data: spec('weir.data.<job>.<generation>.<from>.<to>.<subtask>', {
    kind: 'publish', from: 'worker', to: 'worker', payload: 'dataMessageSchema', reply: null, errors: [],
    summary: 'Records, barriers and end-of-stream on the edge from → to, for subtask <subtask> of node <to>.',
  }),
  jobLog: spec('weir.log.<job>', {
    kind: 'stream', from: 'controller', to: 'any', payload: 'jobLogEntrySchema', reply: null, errors: [],
    summary: `The job's event log, kept in the ${JOB_LOG_STREAM} stream.`,
  }),
} as const satisfies Record<string, SubjectSpec>;

export type SubjectName = keyof typeof SUBJECTS;

// ─── Builders ────────────────────────────────────────────────────────────────────────────────────

export class InvalidTokenError extends TypeError {
  override name = 'InvalidTokenError';
}

function id(value: string, what: string): string {
  if (!isValidId(value)) throw new InvalidTokenError(`invalid ${what} id ${JSON.stringify(value)}: expected 1–64 of A-Z a-z 0-9 _ -`);
  return value;
}

function index(value: number, what: string): string {
  if (!Number.isSafeInteger(value) || value < 0) throw new InvalidTokenError(`invalid ${what} ${value}: expected a non-negative integer`);
  return String(value);
}

/** One builder per entry of `SUBJECTS`; each throws `InvalidTokenError` on a bad id. */
export const subjects = {
  apiJobsCreate: () => 'weir.api.jobs.create',
  apiJobsList: () => 'weir.api.jobs.list',
  apiJobsViews: () => 'weir.api.jobs.views',
  apiJobConfig: (job: string) => `weir.api.jobs.${id(job, 'job')}.config`,
  apiJobDelete: (job: string) => `weir.api.jobs.${id(job, 'job')}.delete`,
  apiJobGet: (job: string) => `weir.api.jobs.${id(job, 'job')}.get`,
  apiJobCheckpoints: (job: string) => `weir.api.jobs.${id(job, 'job')}.checkpoints`,
  apiJobCheckpoint: (job: string) => `weir.api.jobs.${id(job, 'job')}.checkpoint`,
  apiJobTriggerCheckpoint: (job: string) => `weir.api.jobs.${id(job, 'job')}.trigger_checkpoint`,
  apiJobMetrics: (job: string) => `weir.api.jobs.${id(job, 'job')}.metrics`,
  apiMetrics: () => 'weir.api.metrics',
  apiWorkersList: () => 'weir.api.workers.list',
  apiControllersList: () => 'weir.api.controllers.list',
  workerRegister: () => 'weir.ctl.workers.register',
  workerHeartbeat: (worker: string) => `weir.ctl.workers.${id(worker, 'worker')}.heartbeat`,
  workerDeregister: (worker: string) => `weir.ctl.workers.${id(worker, 'worker')}.deregister`,
  workerMetrics: (worker: string) => `weir.ctl.workers.${id(worker, 'worker')}.metrics`,
  jobTasks: (job: string) => `weir.ctl.jobs.${id(job, 'job')}.tasks`,
  jobCheckpoints: (job: string) => `weir.ctl.jobs.${id(job, 'job')}.checkpoints`,
  workerStart: (worker: string) => `weir.worker.${id(worker, 'worker')}.start`,
  workerStop: (worker: string) => `weir.worker.${id(worker, 'worker')}.stop`,
  workerCheckpoint: (worker: string) => `weir.worker.${id(worker, 'worker')}.checkpoint`,
  workerCommit: (worker: string) => `weir.worker.${id(worker, 'worker')}.commit`,
  jobState: (job: string) => `weir.jobs.${id(job, 'job')}.state`,
  jobOutput: (job: string) => `weir.jobs.${id(job, 'job')}.output`,
  data: (job: string, generation: number, from: string, to: string, subtask: number) =>
    `weir.data.${id(job, 'job')}.${index(generation, 'generation')}.${id(from, 'node')}.${id(to, 'node')}.${index(subtask, 'subtask')}`,
  jobLog: (job: string) => `weir.log.${id(job, 'job')}`,
} as const satisfies Record<SubjectName, (...args: never) => string>;

/** A concrete subject → the entry it belongs to and its placeholder values; `null` if none. */
export function parseSubject(subject: string): { name: SubjectName; params: Record<string, string> } | null {
  const tokens = subject.split('.');
  for (const [name, entry] of Object.entries(SUBJECTS) as Array<[SubjectName, SubjectSpec]>) {
    const pattern = entry.pattern.split('.');
    if (pattern.length !== tokens.length) continue;
    const params: Record<string, string> = {};
    const matches = pattern.every((part, i) => {
      const token = tokens[i] ?? '';
      const placeholder = /^<([a-z_]+)>$/.exec(part)?.[1];
      if (placeholder === undefined) return part === token;
      params[placeholder] = token;
      return placeholder === 'generation' || placeholder === 'subtask' ? /^(0|[1-9][0-9]{0,15})$/.test(token) : isValidId(token);
    });
    if (matches) return { name, params };
  }
  return null;
}

/**
 * Whether some subject matches both patterns, with NATS wildcard semantics: `*` is exactly one
 * token, `>` (last token only) one or more tokens.
 */
export function subjectsOverlap(a: string, b: string): boolean {
  const x = a.split('.');
  const y = b.split('.');
  for (let i = 0; ; i++) {
    const s = x[i];
    const t = y[i];
    if (s === undefined || t === undefined) return s === t;
    if (s === '>') return true;
    if (t === '>') return true;
    if (s !== '*' && t !== '*' && s !== t) return false;
  }
}
