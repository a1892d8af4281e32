/**
 * What the job page (pages/job/index.tsx) gives each of its data panels (checkpoints, errors, output,
 * metrics): the job's id and the latest pipeline response, fetched again on every state event.
 */
import type { PipelineResponse } from '../../types.js';

export interface JobPanelProps {
  /** The pipeline's id, which is its job's (src/api/pipeline-ids.ts). */
  id: string;
  /** The latest `GET /pipelines/:id`, refreshed on every state or transition event. */
  job: PipelineResponse;
}
