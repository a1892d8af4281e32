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
  /**
   * How many actions the page has sent that the API accepted (a triggered checkpoint, a stop, a rescale,
   * …): it grows after each. A panel whose data an action changes without a state event (a checkpoint
   * triggered while Running) reads its data again when it does.
   */
  changes: number;
}
