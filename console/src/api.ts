/**
 * The weir API as the console's pages use it: one typed function per route (src/api/routes/), and the
 * event streams as typed events. Pages import from here only; http.ts, sse.ts and token.ts are the
 * machinery underneath.
 */
import { apiJson } from './http.js';
import { openStream, type EventStream, type StreamHandlers } from './sse.js';
import type {
  CheckpointList,
  ControllerList,
  CreatePipelineBody,
  ErrorPage,
  JobEvent,
  JobList,
  JobsEvent,
  OperatorCheckpointGroupList,
  OperatorMetricGroupList,
  OutputEvent,
  PatchPipelineBody,
  PipelinePage,
  PipelineResponse,
  RestartPipelineBody,
  StopMode,
  TriggerCheckpointResponse,
} from './types.js';

export { ApiError, API_BASE } from './http.js';
export type { EventStream } from './sse.js';

const enc = encodeURIComponent;
const pipelinePath = (id: string) => `/pipelines/${enc(id)}`;
/** A pipeline's job has the pipeline's id (src/api/pipeline-ids.ts). */
const jobPath = (id: string) => `${pipelinePath(id)}/jobs/${enc(id)}`;

// ─── Pipelines ───────────────────────────────────────────────────────────────────────────────────

/** Newest first; pass the last id as `startingAfter` for the next page while `has_more`. */
export function listPipelines(page: { limit?: number; startingAfter?: string } = {}, signal?: AbortSignal): Promise<PipelinePage> {
  return apiJson('GET', '/pipelines', { query: { limit: page.limit, starting_after: page.startingAfter }, signal });
}

export function getPipeline(id: string, signal?: AbortSignal): Promise<PipelineResponse> {
  return apiJson('GET', pipelinePath(id), { signal });
}

/** 201 with the new pipeline (its id is its job's). */
export function createPipeline(body: CreatePipelineBody): Promise<PipelineResponse> {
  return apiJson('POST', '/pipelines', { body });
}

/** Stop, start (`stop: 'none'`), rescale or change the checkpoint interval; answers the pipeline after. */
export function patchPipeline(id: string, body: PatchPipelineBody): Promise<PipelineResponse> {
  return apiJson('PATCH', pipelinePath(id), { body });
}

export function stopPipeline(id: string, mode: Exclude<StopMode, 'none'> = 'checkpoint'): Promise<PipelineResponse> {
  return patchPipeline(id, { stop: mode });
}

export function startPipeline(id: string): Promise<PipelineResponse> {
  return patchPipeline(id, { stop: 'none' });
}

/** A final checkpoint first unless `force`. */
export function restartPipeline(id: string, body: RestartPipelineBody = {}): Promise<PipelineResponse> {
  return apiJson('POST', `${pipelinePath(id)}/restart`, { body });
}

/** Only a Stopped, Finished or Failed pipeline (else a 409 `ApiError`). */
export async function deletePipeline(id: string): Promise<void> {
  await apiJson<undefined>('DELETE', pipelinePath(id));
}

// ─── Jobs ────────────────────────────────────────────────────────────────────────────────────────

/** Every job, newest first, up to `limit` (no cursor: the pipelines list pages). */
export function listJobs(limit?: number, signal?: AbortSignal): Promise<JobList> {
  return apiJson('GET', '/jobs', { query: { limit }, signal });
}

/** Newest first; the cursor is the last row's `id`. */
export function listErrors(id: string, page: { limit?: number; startingAfter?: number } = {}, signal?: AbortSignal): Promise<ErrorPage> {
  return apiJson('GET', `${jobPath(id)}/errors`, { query: { limit: page.limit, starting_after: page.startingAfter }, signal });
}

/** Record counts and rates of the current run, per operator and subtask. */
export function getMetrics(id: string, signal?: AbortSignal): Promise<OperatorMetricGroupList> {
  return apiJson('GET', `${jobPath(id)}/operator_metric_groups`, { signal });
}

// ─── Checkpoints ─────────────────────────────────────────────────────────────────────────────────

export function listCheckpoints(id: string, options: { includeFailed?: boolean } = {}, signal?: AbortSignal): Promise<CheckpointList> {
  return apiJson('GET', `${jobPath(id)}/checkpoints`, { query: { include_failed: options.includeFailed }, signal });
}

/** One checkpoint's spans per operator and subtask (for a timeline). */
export function getCheckpointDetails(id: string, epoch: number, signal?: AbortSignal): Promise<OperatorCheckpointGroupList> {
  return apiJson('GET', `${jobPath(id)}/checkpoints/${epoch}/operator_checkpoint_groups`, { signal });
}

/** Takes a checkpoint now; the same `triggerId` again answers the same epoch (a safe retry). */
export function triggerCheckpoint(id: string, triggerId?: string): Promise<TriggerCheckpointResponse> {
  return apiJson('POST', `${jobPath(id)}/checkpoints`, { body: triggerId === undefined ? {} : { trigger_id: triggerId } });
}

// ─── The fleet ───────────────────────────────────────────────────────────────────────────────────

export function listControllers(signal?: AbortSignal): Promise<ControllerList> {
  return apiJson('GET', '/controllers', { signal });
}

// ─── Live streams ────────────────────────────────────────────────────────────────────────────────

export interface FollowHandlers<E> {
  event(event: E): void;
  /** Each (re)connection: reload what a gap may have hidden. */
  open?(): void;
  /** `retrying`: the stream connects again by itself. */
  error?(error: Error, retrying: boolean): void;
}

/** The stream's messages as typed events (`types` lists the ones the route sends; others are skipped). */
function follow<E extends { type: string; data: unknown }>(path: string, types: readonly E['type'][], handlers: FollowHandlers<E>, lastEventId?: string): EventStream {
  const stream: StreamHandlers = {
    message(message) {
      if (!types.includes(message.event)) return;
      let data: unknown;
      try {
        data = JSON.parse(message.data);
      } catch {
        handlers.error?.(new Error(`the API sent an ${message.event} event that is not JSON`), true);
        return;
      }
      handlers.event({ type: message.event, data } as E);
    },
    ...(handlers.open === undefined ? {} : { open: () => handlers.open?.() }),
    ...(handlers.error === undefined ? {} : { error: (err, retrying) => handlers.error?.(err, retrying) }),
  };
  return openStream(path, stream, lastEventId === undefined ? {} : { lastEventId });
}

/** A job's current state, then its transitions as they happen; resumes after a drop without losing any. */
export function followJobEvents(id: string, handlers: FollowHandlers<JobEvent>, lastEventId?: string): EventStream {
  return follow(`${jobPath(id)}/events`, ['state', 'transition', 'dropped', 'end'], handlers, lastEventId);
}

/**
 * Every job's transitions and deletions (the jobs list): `ready` on each (re)connection, after which
 * load what the page shows; transitions missed while disconnected are replayed, deletions are not.
 */
export function followAllJobEvents(handlers: FollowHandlers<JobsEvent>): EventStream {
  return follow('/jobs/events', ['ready', 'transition', 'deleted', 'dropped', 'end'], handlers);
}

/** The rows of a Running job's preview sinks; the stream closes itself after `done` or `end`. */
export function followJobOutput(id: string, handlers: FollowHandlers<OutputEvent>): EventStream {
  const stream = follow<OutputEvent>(`${jobPath(id)}/output`, ['output', 'dropped', 'done', 'end'], {
    ...handlers,
    event(event) {
      handlers.event(event);
      if (event.type === 'done' || event.type === 'end') stream.close();
    },
  });
  return stream;
}
