/**
 * The API's shapes, as the server declares them (src/api/schemas.ts): imported as types only, so the
 * console and the API cannot drift apart and no server code reaches the bundle (eslint.config.js allows
 * nothing but type imports from src/ here). The Server-Sent Events' data, which the routes describe in
 * prose, are written out below.
 */
import type { JobState, StopMode } from '../../machines/job/types.js';
import type { TransitionEventData } from '../../src/api/routes/streams.js';

export type { JobState, StopMode, TransitionEventData };
export type {
  CheckpointList,
  ControllerList,
  CreatePipelineBody,
  ErrorPage,
  ErrorRow,
  Job,
  JobList,
  OperatorCheckpointGroupList,
  OperatorMetricGroupList,
  PatchPipelineBody,
  PipelinePage,
  PipelineResponse,
  RestartPipelineBody,
  TriggerCheckpointResponse,
} from '../../src/api/schemas.js';

/** GET …/events: `state` first (a new client), then every `transition`; `dropped` and `end` close the stream, and it resumes by itself. */
export type JobEvent =
  | { type: 'state'; data: { job_id: string; state: JobState; generation: number } }
  | { type: 'transition'; data: TransitionEventData }
  | { type: 'dropped'; data: { count: number } }
  | { type: 'end'; data: { reason: string } };

/**
 * GET /jobs/events (every job): `ready` first (its id the log position after which every transition
 * follows: load the list after it), then `transition`s in log order and `deleted` (not replayed on
 * resume: reload the list on reconnect).
 */
export type JobsEvent =
  | { type: 'ready'; data: { seq: number } }
  | { type: 'transition'; data: TransitionEventData }
  | { type: 'deleted'; data: { job_id: string } }
  | { type: 'dropped'; data: { count: number } }
  | { type: 'end'; data: { reason: string } };

/** One batch of a preview sink's rows. */
export interface OutputRows {
  operator_id: string;
  subtask_idx: number;
  rows: unknown[];
  generation: number;
}

/** GET …/output: `output` batches; `done` (every preview subtask finished) and `end` (the job left Running) are the last. */
export type OutputEvent =
  | { type: 'output'; data: OutputRows }
  | { type: 'dropped'; data: { count: number } }
  | { type: 'done'; data: { generation: number } }
  | { type: 'end'; data: { reason: string } };
