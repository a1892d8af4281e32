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

/**
 * A status write of a controller that no longer owns the job: the stored status names a newer owner (a
 * higher lease epoch). The write is not made; the writer steps down from the job.
 */
export class StaleOwnerError extends StoreError {
  override readonly code = 'stale_owner';
  readonly jobId: string;
  /** This controller's own lease lapsed (it may come back); not a newer owner's write. */
  readonly leaseGone: boolean;
  /** `stored` null: this controller's own lease on the job's shard is gone, whoever holds it now. */
  constructor(jobId: string, mine: { id: string; epoch: number } | null, stored: { id: string; epoch: number } | null) {
    super(
      mine === null || stored === null
        ? `job ${jobId}: this controller's lease on its shard is gone`
        : `job ${jobId} is owned by ${stored.id} at epoch ${stored.epoch}, not by ${mine.id} at epoch ${mine.epoch}`,
    );
    this.jobId = jobId;
    this.leaseGone = mine === null || stored === null;
  }
}
