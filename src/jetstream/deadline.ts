/** Deadlines of JetStream operations: one request's, and a whole operation's with its retries. */

export interface Timeouts {
  /** Deadline of one NATS request (publish ack, direct get, API call). */
  requestTimeoutMs: number;
  /** Deadline of a whole store operation, retries included. */
  operationTimeoutMs: number;
}

/** Raised by `withDeadline`; counts as transient so the retry loop decides what to do with it. */
export class DeadlineError extends Error {
  constructor(what: string, ms: number) {
    super(`${what}: no answer within ${ms} ms`);
    this.name = 'DeadlineError';
  }
}

/** The absolute end of one store operation. */
export class Deadline {
  readonly at: number;
  constructor(ms: number) {
    this.at = Date.now() + ms;
  }
  remaining(): number {
    return Math.max(0, this.at - Date.now());
  }
}

/**
 * Rejects with DeadlineError if `promise` has not settled within `ms`. The losing promise keeps running
 * (nats.js requests cannot be cancelled) but its rejection is swallowed, so nothing is left unhandled.
 */
export async function withDeadline<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  promise.catch(() => undefined);
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new DeadlineError(what, ms)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
