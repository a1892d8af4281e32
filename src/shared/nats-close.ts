import type { NatsConnection } from '@nats-io/transport-node';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Drains the connection (pending messages out, subscriptions done) and closes it; when the drain does
 * not finish within `timeoutMs` (NATS unreachable: a drain waits for the server), closes it at once so
 * nothing of it keeps the process alive. Resolves true when it drained, false when it had to close.
 */
export async function drainWithin(nc: NatsConnection, timeoutMs: number): Promise<boolean> {
  if (nc.isClosed()) return true;
  const drained = await Promise.race([nc.drain().then(() => true, () => false), sleep(timeoutMs, false, { ref: false })]);
  if (!drained) await nc.close().catch(() => undefined);
  return drained;
}
