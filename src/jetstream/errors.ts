/**
 * The errors of weir's persistence on JetStream, shared by the job store and the checkpoint store so one
 * `catch` serves both.
 */
/**
 * The wire codes (src/protocol/errors.ts, ERROR_CODES) the persistence errors are reported with; this
 * layer imports nothing of weir's, so it names its subset here (test/protocol/error-catalogue.test.ts
 * checks it against the catalogue).
 */
export type StoreErrorCode = 'internal' | 'conflict' | 'unavailable' | 'bad_schema' | 'unknown_job' | 'unknown_checkpoint' | 'corrupt_checkpoint' | 'stale_owner';

/** Base class of every error the store throws on purpose; anything else is a bug. */
export class StoreError extends Error {
  /** How the controller and the HTTP API report it (src/protocol/errors.ts `errorCodeOf`). */
  readonly code: StoreErrorCode = 'internal';
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
  override readonly code = 'conflict';
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
  override readonly code = 'unavailable';
  readonly operation: string;
  constructor(operation: string, options?: ErrorOptions) {
    const cause = options?.cause instanceof Error ? `: ${options.cause.message}` : '';
    super(`store unavailable during ${operation}${cause}`, options);
    this.operation = operation;
  }
}

/** A caller passed something invalid: a malformed job id, an event or config that fails its schema, a bad limit. */
export class StoreValidationError extends StoreError {
  override readonly code = 'bad_schema';
}

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
