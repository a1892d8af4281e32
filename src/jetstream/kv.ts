import { JetStreamApiError } from '@nats-io/jetstream';

/**
 * A compare-and-set write (`Nats-Expected-Last-Subject-Sequence`) that lost: the key moved on since it
 * was read. 10071 "wrong last sequence: N"; 10164 "wrong last sequence: unknown" (newer servers).
 */
export function isWrongLastSequence(err: unknown): boolean {
  return err instanceof JetStreamApiError && (err.code === 10071 || err.code === 10164);
}
