import { JetStreamApiError, JetStreamError } from '@nats-io/jetstream';
import { errors as natsErrors, type NatsConnection } from '@nats-io/transport-node';
import { DeadlineError, withDeadline, type Deadline, type Timeouts } from './deadline.js';
import { StoreUnavailableError } from './errors.js';
import { backoffMs } from '../shared/backoff.js';
import { retry } from '../shared/retry.js';

/** Errors that mean "NATS did not answer (yet)": worth retrying until the operation's deadline. */
export function isTransient(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  if (err instanceof DeadlineError) return true;
  if (err instanceof natsErrors.TimeoutError || err instanceof natsErrors.RequestError) return true;
  if (err instanceof natsErrors.ConnectionError) return true;
  // No responders on a JetStream API subject: JetStream is (re)starting or the stream is being recovered.
  if (err.name === 'JetStreamNotEnabled') return true;
  // 503 "JetStream system temporarily unavailable", e.g. just after a restart or during a leader election.
  if (err instanceof JetStreamApiError && err.status === 503) return true;
  // A pull that lost its heartbeats or got a 503 status (consumer fetches while the server restarts).
  if (err instanceof JetStreamError && err.message.includes('heartbeats missed')) return true;
  if (err.name === 'JetStreamStatusError' && (err as { code?: number }).code === 503) return true;
  return false;
}

function isClosed(err: unknown): boolean {
  return err instanceof natsErrors.ClosedConnectionError || err instanceof natsErrors.DrainingConnectionError;
}

const BACKOFF_INITIAL_MS = 25;
const BACKOFF_MAX_MS = 500;

/**
 * Runs `fn` until it succeeds, fails with a non-transient error, or the deadline passes; the last two
 * surface as the error itself and as StoreUnavailableError. `fn` gets the time it may use for one request.
 * Callers make `fn` safe to repeat (every write carries a Nats-Msg-Id, so a repeat is deduplicated).
 */
export async function retrying<T>(
  nc: NatsConnection,
  operation: string,
  deadline: Deadline,
  timeouts: Timeouts,
  fn: (requestTimeoutMs: number) => Promise<T>,
  /** Deadline of one attempt; defaults to one request's. Operations made of several requests pass more. */
  attemptMs?: number,
): Promise<T> {
  let lastError: unknown;
  let nextPause = 0;
  const unavailable = (cause: unknown) => new StoreUnavailableError(operation, { cause });
  const attempt = async (): Promise<T> => {
    if (nc.isClosed()) throw unavailable(lastError ?? new natsErrors.ClosedConnectionError());
    const remaining = deadline.remaining();
    if (remaining <= 0) throw unavailable(lastError ?? new DeadlineError(operation, 0));
    const requestTimeoutMs = Math.max(1, Math.min(timeouts.requestTimeoutMs, remaining));
    // A little slack over the request's own timeout so nats.js reports its own error first.
    const attemptDeadline = Math.min(remaining, attemptMs ?? requestTimeoutMs + 250);
    try {
      return await withDeadline(fn(requestTimeoutMs), attemptDeadline, operation);
    } catch (err) {
      if (isClosed(err)) throw unavailable(err);
      if (isTransient(err)) lastError = err;
      throw err;
    }
  };
  try {
    return await retry(attempt, {
      // Transient failures are retried while the pause before the next attempt ends within the deadline.
      retryable: (err, n) => {
        if (err !== lastError) return false;
        nextPause = backoffMs(n - 1, BACKOFF_INITIAL_MS, BACKOFF_MAX_MS) * (0.5 + Math.random() / 2);
        return deadline.remaining() > nextPause;
      },
      pauseMs: () => nextPause,
    });
  } catch (err) {
    throw err === lastError ? unavailable(err) : err;
  }
}
