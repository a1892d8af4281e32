/** The job store's own errors; the generic ones (outages, conflicts, bad input) are the JetStream layer's. */
import { StoreError } from '../jetstream/errors.js';

export class UnknownJobError extends StoreError {
  override readonly code = 'unknown_job';
  readonly jobId: string;
  constructor(jobId: string, detail = '') {
    super(`unknown job ${jobId}${detail === '' ? '' : `: ${detail}`}`);
    this.jobId = jobId;
  }
}

/**
 * `get` of a job that has a spec but not all three keys: see ConflictReason `partial`.
 * `delete(id)` removes what is there, after which the id can be created again.
 */
export class PartialJobError extends StoreError {
  override readonly code = 'conflict';
  readonly jobId: string;
  readonly present: readonly string[];
  readonly missing: readonly string[];
  constructor(jobId: string, present: readonly string[], missing: readonly string[]) {
    super(`job ${jobId} is partial: has ${present.join(', ') || 'nothing'}, lacks ${missing.join(', ')}`);
    this.jobId = jobId;
    this.present = present;
    this.missing = missing;
  }
}
