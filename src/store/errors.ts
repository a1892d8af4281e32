/** Base class of every error the store throws on purpose; anything else is a bug. */
export class StoreError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

/**
 * Why a write lost:
 * - `exists`: `create` of a job id that is fully there (its status key, written last, exists);
 * - `partial`: `create` of a job id that has some keys but no status: a create that crashed half-way,
 *   a create still in progress in another process, or a delete that crashed half-way (see `delete`);
 * - `contention`: `updateConfig`/`updateStatus` lost the compare-and-set race on every attempt.
 */
export type ConflictReason = 'exists' | 'partial' | 'contention';

export class ConflictError extends StoreError {
  readonly jobId: string;
  readonly reason: ConflictReason;
  /** For `partial`: the keys that exist (`spec`, `config`, `status`). */
  readonly present: readonly string[];
  constructor(jobId: string, reason: ConflictReason, message: string, present: readonly string[] = []) {
    super(message);
    this.jobId = jobId;
    this.reason = reason;
    this.present = present;
  }
}

export class UnknownJobError extends StoreError {
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
 * NATS did not answer within the operation's deadline (timeouts, no responders, a closed connection),
 * after bounded retries. For a write the outcome is unknown: it may have been stored.
 */
export class StoreUnavailableError extends StoreError {
  readonly operation: string;
  constructor(operation: string, options?: ErrorOptions) {
    const cause = options?.cause instanceof Error ? `: ${options.cause.message}` : '';
    super(`store unavailable during ${operation}${cause}`, options);
    this.operation = operation;
  }
}

/** A caller passed something invalid: a malformed job id, an event or config that fails its schema, a bad limit. */
export class StoreValidationError extends StoreError {}

/** A stored value does not parse or fails its schema (written by something other than this store). */
export class CorruptRecordError extends StoreError {
  readonly key: string;
  constructor(key: string, options?: ErrorOptions) {
    const cause = options?.cause instanceof Error ? `: ${options.cause.message}` : '';
    super(`corrupt record ${key}${cause}`, options);
    this.key = key;
  }
}

/** A failure worth retrying as is: NATS unreachable, or compare-and-set races lost to other writers. */
export function isTransientStoreError(err: unknown): boolean {
  return err instanceof StoreUnavailableError || (err instanceof ConflictError && err.reason === 'contention');
}
