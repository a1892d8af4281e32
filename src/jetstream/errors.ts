/**
 * The errors of weir's persistence on JetStream, shared by the job store and the checkpoint store so one
 * `catch` serves both.
 */
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
