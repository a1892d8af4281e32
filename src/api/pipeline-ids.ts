/**
 * weir's pipelines and jobs are one to one: creating a pipeline creates its job, and the job's id is the
 * pipeline's id. The routes keep the reference's shape (`/pipelines/:id/jobs/:job_id/…`) so a client
 * written for it works; a `job_id` other than the pipeline's own names nothing.
 */
import { isValidId } from '../protocol/index.js';
import { ApiError } from './errors.js';

/** The job a `/pipelines/:id/jobs/:job_id/…` path names; 404 when it cannot exist. */
export function jobIdOf(params: { id: string; job_id: string }): string {
  if (!isValidId(params.id)) throw new ApiError(404, `no pipeline ${JSON.stringify(params.id)}`);
  if (params.job_id !== params.id) throw new ApiError(404, `pipeline ${params.id} has no job ${JSON.stringify(params.job_id)}`);
  return params.id;
}

/** The pipeline a `/pipelines/:id` path names; 404 when the id cannot exist. */
export function pipelineIdOf(params: { id: string }): string {
  if (!isValidId(params.id)) throw new ApiError(404, `no pipeline ${JSON.stringify(params.id)}`);
  return params.id;
}
