/**
 * The API's only way to the controller: typed requests on the `weir.api.*` subjects. Every call has a
 * deadline; a controller that does not answer in time, or NATS being away, is `ApiError(503)`, never a
 * hang. An error reply becomes the `ApiError` of its code (`STATUS_OF_CODE`).
 */
import { errors as natsErrors, type NatsConnection } from '@nats-io/transport-node';
import type { z } from 'zod';
import {
  PROTOCOL_VERSION,
  checkpointDetailsReplySchema,
  controllerMetricsReplySchema,
  decodeReply,
  deleteJobReplySchema,
  encode,
  jobCheckpointsReplySchema,
  jobMetricsReplySchema,
  jobRevisionReplySchema,
  jobViewSchema,
  listJobsReplySchema,
  listControllersReplySchema,
  listJobViewsReplySchema,
  subjects,
  triggerCheckpointReplySchema,
  type CheckpointDetailsReply,
  type ConfigUpdate,
  type ControllerMetricsReply,
  type DeleteJobReply,
  type JobCheckpointsReply,
  type JobMetricsReply,
  type JobRevisionReply,
  type JobView,
  type ListControllersReply,
  type ListJobsReply,
  type ListJobViewsReply,
  type PipelineInput,
  type TriggerCheckpointReply,
} from '../protocol/index.js';
import { ApiError, apiErrorOf } from './errors.js';
import { isNoResponders } from '../shared/no-responders.js';

export const DEFAULT_CONTROLLER_TIMEOUT_MS = 5_000;

/** Request bodies without `v`: the client adds it. */
type Body<T> = Omit<T, 'v'>;

export interface ControllerClient {
  create(pipeline: Body<PipelineInput>): Promise<JobRevisionReply>;
  list(request: { starting_after?: string; limit?: number }): Promise<ListJobsReply>;
  /** A page of whole job views: may hold fewer than `limit`, with `has_more`. */
  views(request: { starting_after?: string; limit?: number }): Promise<ListJobViewsReply>;
  get(jobId: string): Promise<JobView>;
  config(jobId: string, update: Body<ConfigUpdate>): Promise<JobRevisionReply>;
  delete(jobId: string): Promise<DeleteJobReply>;
  checkpoints(jobId: string, request?: { include_failed?: boolean }): Promise<JobCheckpointsReply>;
  checkpoint(jobId: string, epoch: number): Promise<CheckpointDetailsReply>;
  triggerCheckpoint(jobId: string, triggerId?: string): Promise<TriggerCheckpointReply>;
  metrics(jobId: string): Promise<JobMetricsReply>;
  controllerMetrics(): Promise<ControllerMetricsReply>;
  /** The controllers sharing the jobs, as the one that answers sees them. */
  controllers(): Promise<ListControllersReply>;
}

export interface ControllerClientOptions {
  /** Deadline of one request. Default 5 s. */
  timeoutMs?: number;
}

export function controllerClient(nc: NatsConnection, options: ControllerClientOptions = {}): ControllerClient {
  const timeout = options.timeoutMs ?? DEFAULT_CONTROLLER_TIMEOUT_MS;

  async function request<S extends z.ZodType>(subject: string, body: object, schema: S): Promise<z.output<S>> {
    let data: Uint8Array;
    try {
      const reply = await nc.request(subject, encode({ v: PROTOCOL_VERSION, ...body }), { timeout });
      data = reply.data;
    } catch (err) {
      throw unreachable(err);
    }
    const result = decodeReply(schema, data);
    if (result.ok) return result.value;
    if (result.remote) throw apiErrorOf(result.error.code, result.error.message);
    throw new ApiError(502, `the controller's reply to ${subject} does not decode: ${result.error.message}`);
  }

  return {
    create: (pipeline) => request(subjects.apiJobsCreate(), pipeline, jobRevisionReplySchema),
    list: (req) => request(subjects.apiJobsList(), req, listJobsReplySchema),
    views: (req) => request(subjects.apiJobsViews(), req, listJobViewsReplySchema),
    get: (jobId) => request(subjects.apiJobGet(jobId), {}, jobViewSchema),
    config: (jobId, update) => request(subjects.apiJobConfig(jobId), update, jobRevisionReplySchema),
    delete: (jobId) => request(subjects.apiJobDelete(jobId), {}, deleteJobReplySchema),
    checkpoints: (jobId, req = {}) => request(subjects.apiJobCheckpoints(jobId), req, jobCheckpointsReplySchema),
    checkpoint: (jobId, epoch) => request(subjects.apiJobCheckpoint(jobId), { epoch }, checkpointDetailsReplySchema),
    triggerCheckpoint: (jobId, triggerId) =>
      request(subjects.apiJobTriggerCheckpoint(jobId), triggerId === undefined ? {} : { trigger_id: triggerId }, triggerCheckpointReplySchema),
    metrics: (jobId) => request(subjects.apiJobMetrics(jobId), {}, jobMetricsReplySchema),
    controllerMetrics: () => request(subjects.apiMetrics(), {}, controllerMetricsReplySchema),
    controllers: () => request(subjects.apiControllersList(), {}, listControllersReplySchema),
  };
}

/** No responders, a timeout or a closed connection: the controller cannot be asked now. */
function unreachable(err: unknown): ApiError {
  if (isNoResponders(err)) return new ApiError(503, 'the controller is not running (no responders)');
  if (err instanceof natsErrors.TimeoutError) return new ApiError(503, 'the controller did not answer in time');
  return new ApiError(503, `NATS is unreachable: ${err instanceof Error ? err.message : String(err)}`);
}
