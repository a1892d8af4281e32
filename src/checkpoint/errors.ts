/**
 * The checkpoint store's own errors. Outages (StoreUnavailableError), bad input (StoreValidationError)
 * and undecodable records (CorruptRecordError) are the job store's classes, so one `catch` serves both
 * stores; `isTransientStoreError` also covers RunContentionError.
 */
import { ConflictError, StoreError } from '../jetstream/errors.js';

/** `createRun` of an id that is taken. */
export class RunExistsError extends ConflictError {
  readonly runId: string;
  constructor(runId: string) {
    super(runId, 'exists', `run ${runId} already exists`);
    this.runId = runId;
  }
}

/** A compare-and-set on the run record lost to other writers on every attempt; worth retrying. */
export class RunContentionError extends ConflictError {
  readonly runId: string;
  constructor(runId: string, operation: string, attempts: number) {
    super(runId, 'contention', `${operation} ${runId}: lost the compare-and-set ${attempts} times`);
    this.runId = runId;
  }
}

/** A write (save, status update, event) for a run that does not exist, or was deleted meanwhile. */
export class UnknownRunError extends StoreError {
  override readonly code = 'unknown_checkpoint';
  readonly runId: string;
  constructor(runId: string, detail = '') {
    super(`unknown run ${runId}${detail === '' ? '' : `: ${detail}`}`);
    this.runId = runId;
  }
}

/**
 * A checkpoint whose record exists but whose state cannot be trusted: the blob is missing, or its
 * size or SHA-256 differs from the record's.
 */
export class CorruptCheckpointError extends StoreError {
  override readonly code = 'corrupt_checkpoint';
  readonly runId: string;
  readonly nodeId: string;
  readonly seq: number;
  readonly reason: 'missing' | 'digest';
  constructor(runId: string, nodeId: string, seq: number, reason: 'missing' | 'digest', detail: string, options?: ErrorOptions) {
    super(`checkpoint ${seq} of node ${nodeId} in run ${runId} is corrupt: ${detail}`, options);
    this.runId = runId;
    this.nodeId = nodeId;
    this.seq = seq;
    this.reason = reason;
  }
}
