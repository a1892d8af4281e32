/**
 * The one retry loop: the JetStream layer's deadline-bound requests, the job runtime's persistence and
 * final checkpoint, and the controller's config reload all run their attempts through it, each with its
 * own budget, pauses and idea of what is worth retrying.
 */
import { setTimeout as sleep } from 'node:timers/promises';

export interface RetryOptions {
  /** Attempts in all, the first included. Default: until `retryable` says no or `signal` aborts. */
  attempts?: number;
  /** The pause after failed attempt `attempt` (1-based) before the next one. Default: none. */
  pauseMs?: (attempt: number) => number;
  /** Whether this failure is worth another attempt. Default: every failure is. */
  retryable?: (err: unknown, attempt: number) => boolean;
  /** Told of each failure that will be retried, and the pause before the retry. */
  onRetry?: (err: unknown, attempt: number, pauseMs: number) => void;
  /** Ends the retries: a pause in progress ends, and the last failure is thrown. */
  signal?: AbortSignal;
  /** Whether a pause holds the process open (a Node timer's `ref`). Default true. */
  pausesHoldProcess?: boolean;
}

/** Runs `attempt` (given its 1-based number) until it succeeds; the failure that ends the retries is thrown. */
export async function retry<T>(attempt: (n: number) => Promise<T>, options: RetryOptions = {}): Promise<T> {
  const attempts = options.attempts ?? Number.POSITIVE_INFINITY;
  for (let n = 1; ; n++) {
    try {
      return await attempt(n);
    } catch (err) {
      // `retryable` hears of every failure, the last one included.
      const again = options.retryable?.(err, n) ?? true;
      if (!again || n >= attempts || options.signal?.aborted === true) throw err;
      const pause = options.pauseMs?.(n) ?? 0;
      options.onRetry?.(err, n, pause);
      if (pause > 0) {
        try {
          await sleep(pause, undefined, { ref: options.pausesHoldProcess ?? true, ...(options.signal === undefined ? {} : { signal: options.signal }) });
        } catch {
          throw err; // aborted while pausing
        }
      }
    }
  }
}
