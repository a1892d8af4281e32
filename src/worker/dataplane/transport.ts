/**
 * The little the data plane needs from NATS, so the channels and gates can be tested without a
 * server. `natsTransport` adapts a `NatsConnection`; it reports a disconnect as an error because
 * nats.js silently drops what is published while disconnected.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import { DataplaneError } from '../errors.js';

export interface Subscription {
  unsubscribe(): void;
}

export interface DataTransport {
  publish(subject: string, data: Uint8Array): void;
  subscribe(subject: string, handler: (subject: string, data: Uint8Array) => void): Subscription;
  /** Resolves once the server has seen everything published so far. */
  flush(): Promise<void>;
  /** Listens for the transport becoming unusable (records may have been lost); returns an unsubscribe. */
  onError(listener: (err: Error) => void): () => void;
}

export function natsTransport(nc: NatsConnection): DataTransport & { close(): void } {
  const listeners = new Set<(err: Error) => void>();
  let failure: Error | undefined;
  let stopped = false;
  const fail = (err: Error) => {
    if (failure !== undefined || stopped) return;
    failure = err;
    for (const listener of [...listeners]) listener(err);
  };
  void (async () => {
    for await (const status of nc.status()) {
      if (stopped) break;
      if (status.type === 'disconnect' || status.type === 'close' || status.type === 'staleConnection') {
        fail(new DataplaneError(`NATS connection ${status.type}: data-plane messages may have been lost`));
      }
    }
  })().catch((err: unknown) => fail(new DataplaneError(`NATS status watch failed: ${String(err)}`)));
  void nc.closed().then(() => fail(new DataplaneError('NATS connection closed')));
  return {
    publish(subject, data) {
      if (failure !== undefined) throw failure;
      nc.publish(subject, data);
    },
    subscribe(subject, handler) {
      const sub = nc.subscribe(subject, {
        callback: (err, msg) => {
          if (err !== null) fail(new DataplaneError(`subscription ${subject}: ${err.message}`));
          else handler(msg.subject, msg.data);
        },
      });
      return { unsubscribe: () => sub.unsubscribe() };
    },
    async flush() {
      if (failure !== undefined) throw failure;
      await nc.flush();
      // Re-read: a disconnect may have been reported while the flush was pending.
      const after = failure as Error | undefined;
      if (after !== undefined) throw after;
    },
    onError(listener) {
      if (failure !== undefined) {
        const err = failure;
        queueMicrotask(() => listener(err));
      }
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    close() {
      stopped = true;
      listeners.clear();
    },
  };
}
