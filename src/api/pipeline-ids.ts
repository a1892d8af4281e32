/**
 * weir's pipelines and jobs are one to one: creating a pipeline creates its job, and the job's id is the
 * pipeline's id. The routes keep the reference's shape (`/pipelines/:id/jobs/:job_id/…`) so a client
 * written for it works; a `job_id` other than the pipeline's own names nothing.
 */
import { isValidId } from '../protocol/index.js';
import { ApiError } from './errors.js';

/** A malformed id is the client's mistake (400); a well-formed one that names nothing is not found (404). */
function wellFormed(id: string, what: string): string {
  if (!isValidId(id)) throw new ApiError(400, `${what}: invalid id ${JSON.stringify(id)}: expected 1–64 of A-Z a-z 0-9 _ -`);
  return id;
}

/** The job a `/pipelines/:id/jobs/:job_id/…` path names: 400 for a malformed id, 404 for a job the pipeline does not have. */
export function jobIdOf(params: { id: string; job_id: string }): string {
  const id = wellFormed(params.id, 'id');
  if (wellFormed(params.job_id, 'job_id') !== id) throw new ApiError(404, `pipeline ${id} has no job ${JSON.stringify(params.job_id)}`);
  return id;
}

/** The pipeline a `/pipelines/:id` path names; 400 for a malformed id. */
export function pipelineIdOf(params: { id: string }): string {
  return wellFormed(params.id, 'id');
}
