/**
 * The controller's job views as the HTTP API shows them (reference §6's Pipeline, Job and JobLogMessage).
 * A pipeline and its job are one record in weir, so both are read from the same view.
 */
import { jobSummary, nodeParallelism, type AvailableAction, type JobSummary, type JobView } from '../protocol/index.js';
import type { LogRow } from '../store/index.js';
import type { ErrorRow, Job, PipelineResponse } from './schemas.js';
import { derivedOnce } from './serialize.js';
import { microsFromMs } from '../shared/micros.js';

const actionOf = (action: AvailableAction) => ({ action: action.stop, action_text: action.text, action_in_progress: action.in_progress });


export function toJob(job: JobSummary): Job {
  return {
    id: job.job_id,
    pipeline_id: job.job_id,
    running_desired: job.stop === 'none',
    state: job.state,
    run_id: job.generation,
    start_time: job.start_time,
    finish_time: job.finish_time,
    restarts: job.restarts,
    failure: job.failure === null ? null : { message: job.failure.message, domain: job.failure.domain },
    created_at: job.created_at,
    ...actionOf(job.available_action),
    waiting: job.waiting,
    owner: job.owner ?? null,
  };
}

/** The parallelism every node runs with (overrides, else the pipeline's, else the node's own); null when they differ. */
function sharedParallelism(view: JobView): number | null {
  const values = view.graph.nodes.map((node) => nodeParallelism(view, node));
  const first = values[0];
  return first !== undefined && values.every((value) => value === first) ? first : null;
}

/** Once per job view: a cached read serves the same view to many requests. */
export const toPipeline = derivedOnce((view: JobView): PipelineResponse => ({
    id: view.job_id,
    name: view.name,
    graph: view.graph,
    parallelism: sharedParallelism(view),
    parallelism_overrides: view.config.parallelism_overrides,
    checkpoint_interval_micros: view.config.checkpoint_interval_micros,
    ttl_micros: view.config.ttl_micros,
    stop: view.config.stop,
    created_at: view.created_at,
    ...actionOf(view.available_action),
    job: toJob(jobSummary(view)),
  }));

/** `null` for rows of other kinds: the log's error filter makes them rare, not impossible to ask for. */
export function toErrorRow(row: LogRow): ErrorRow | null {
  if (row.kind !== 'error') return null;
  return {
    id: row.seq,
    // The log keeps ms; the API speaks µs like every other time it shows.
    created_at: microsFromMs(row.at),
    operator_id: row.operator_id ?? null,
    task_index: row.subtask_index ?? null,
    level: 'error',
    message: row.message,
    error_domain: row.domain,
    hint: row.hint,
  };
}
