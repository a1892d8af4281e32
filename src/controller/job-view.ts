/** The job view of `weir.api.jobs.get` (jobViewSchema), from the stored record and the runtime's progress. Pure mapping. */
import { availableActions } from '../../machines/job/actions-ui.js';
import { PROTOCOL_VERSION, truncateErrorText, type JobView } from '../protocol/index.js';
import type { JobRecord, JobStatusRecord } from '../store/index.js';
import { microsFromMs } from '../shared/micros.js';
import type { JobProgress } from './job-runtime.js';
import { specOf } from './job-config.js';

const storedProgress = ({ state, generation, restarts, failure, startTime, finishTime, waiting }: JobStatusRecord): JobProgress => ({
  state,
  generation,
  restarts,
  failure,
  startTime,
  finishTime,
  waiting: waiting ?? null,
});

/**
 * The job view of `get` (jobViewSchema): the stored spec and config, and the job's progress, by default as
 * stored; a controller that runs the job passes its runtime's, which is ahead by at most the writes queued.
 */
export function jobView(jobId: string, record: JobRecord, progress: JobProgress = storedProgress(record.status), owner?: string | null): JobView {
  const { state, failure } = progress;
  const action = availableActions(state, record.config.stop === 'none');
  const { pipeline } = specOf(record);
  const { config } = record;
  return {
    v: PROTOCOL_VERSION,
    job_id: jobId,
    name: pipeline.name,
    revision: record.revisions.config,
    graph: pipeline.graph,
    parallelism: pipeline.parallelism ?? null,
    config: {
      stop: config.stop,
      restart_nonce: config.restartNonce,
      restart_mode: config.restartMode,
      parallelism_overrides: config.parallelismOverrides,
      checkpoint_interval_micros: microsFromMs(config.checkpointIntervalMs),
      ttl_micros: config.ttlMs === null ? null : microsFromMs(config.ttlMs),
    },
    state,
    generation: progress.generation,
    restarts: progress.restarts,
    failure: failure === null ? null : { message: truncateErrorText(failure.message), domain: failure.domain, hint: failure.hint, at: microsFromMs(failure.at) },
    created_at: record.spec.created_at,
    start_time: progress.startTime === null ? null : microsFromMs(progress.startTime),
    finish_time: progress.finishTime === null ? null : microsFromMs(progress.finishTime),
    available_action: { text: action.text, stop: action.stop, in_progress: action.inProgress },
    waiting: progress.waiting === null ? null : { kind: progress.waiting.kind, reason: truncateErrorText(progress.waiting.reason), until: progress.waiting.until === null ? null : microsFromMs(progress.waiting.until) },
    ...(owner === undefined ? {} : { owner }),
  };
}
