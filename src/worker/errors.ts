/**
 * Failure classification of a subtask: what the runner reports in `onFailed`, as the job machine
 * expects it (domain + retry hint), with the reason capped at 64 KiB.
 */
import type { ErrorDomain, RetryHint } from '../protocol/index.js';
import { truncateErrorText } from '../protocol/index.js';

/** A mistake of the user: bad operator config, bad restored state for this operator, bad data. Never retried. */
export class UserError extends Error {
  override name = 'UserError';
}

/** The data plane lost its NATS connection or could not publish: records may be lost, the task must fail. */
export class DataplaneError extends Error {
  override name = 'DataplaneError';
}

/** An input buffer (barrier alignment or the inbox) reached its bound. */
export class BufferOverflowError extends Error {
  override name = 'BufferOverflowError';
}

export interface FailureReport {
  reason: string;
  domain: ErrorDomain;
  hint: RetryHint;
}

function isNatsOrIoError(err: Error): boolean {
  if (err instanceof DataplaneError) return true;
  // nats.js error classes are named like `ConnectionError`, `ClosedConnectionError`, `TimeoutError`, `NatsError`.
  if (/Nats|Connection|Timeout|Drain/.test(err.name)) return true;
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && /^E[A-Z]+$/.test(code);
}

export function classifyError(err: unknown): FailureReport {
  const error = err instanceof Error ? err : new Error(String(err));
  const reason = truncateErrorText(`${error.name}: ${error.message}`);
  if (error instanceof UserError || error.name === 'ZodError') return { reason, domain: 'user', hint: 'no_retry' };
  if (isNatsOrIoError(error)) return { reason, domain: 'external', hint: 'with_backoff' };
  return { reason, domain: 'internal', hint: 'with_backoff' };
}
