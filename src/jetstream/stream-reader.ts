/**
 * Reading part of a stream through a consumer of one's own: one request creates it, and its reply says
 * how many messages match (so an empty read costs nothing more), then pulls fetch what is there. The
 * job event log pages and tails this way, and the checkpoint store lists records and events.
 */
import { AckPolicy, type ConsumerConfig, type ConsumerInfo, type JetStreamClient, type JetStreamManager, type JsMsg } from '@nats-io/jetstream';
import { nanos, nuid, type NatsConnection } from '@nats-io/transport-node';
import { DeadlineError } from './deadline.js';

export interface StreamReaderOptions {
  /** Consumers are named `<namePrefix>_<nuid>`. */
  namePrefix: string;
  /** The server drops a reader's consumer after this long unused; it only bounds what a crashed reader leaves. */
  inactiveMs: number;
  /** A fetch waits at most this long (at least 1 s) for the messages it asked for. */
  requestTimeoutMs: number;
}

/** A consumer opened at some point of a stream, and how many messages matched from there when it was opened. */
export interface StreamCursor {
  readonly stream: string;
  readonly info: ConsumerInfo;
  readonly pending: number;
}

/** What a read does with one message: count it towards `max`, pass over it, or end before it. */
export type Visit = 'kept' | 'skipped' | 'stop';

export interface ReadOptions {
  /** What the read is for, to name it in errors. */
  what: string;
  /** The read ends once this many messages were kept. */
  max: number;
  /** The size of the next fetch, given how many were kept so far and how many still match. */
  batch(kept: number, pending: number): number;
  /**
   * - `ends`: a fetch that brings fewer than it asked for ends the read (the caller sizes its fetches to
   *   what it expects, so a short one means messages went away meanwhile, e.g. to retention);
   * - `fails-when-empty`: a fetch that brings nothing while messages still match fails the read with a
   *   DeadlineError, so that a partial read never passes for a whole one.
   */
  shortFetch: 'ends' | 'fails-when-empty';
}

export class StreamReader {
  constructor(
    private readonly nc: NatsConnection,
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    private readonly options: StreamReaderOptions,
  ) {}

  async open(stream: string, config: Partial<ConsumerConfig>): Promise<StreamCursor> {
    const info = await this.jsm.consumers.add(stream, {
      name: `${this.options.namePrefix}_${nuid.next()}`,
      ack_policy: AckPolicy.None,
      mem_storage: true,
      num_replicas: 1,
      inactive_threshold: nanos(this.options.inactiveMs),
      ...config,
    });
    return { stream, info, pending: info.num_pending };
  }

  /** Deleting is a courtesy: the server drops the consumer after `inactiveMs` anyway. */
  close(cursor: StreamCursor): void {
    if (this.nc.isClosed()) return;
    this.jsm.consumers.delete(cursor.stream, cursor.info.name).catch(() => undefined);
  }

  /** Hands the cursor's messages to `visit`, oldest first, until `options.max` are kept; resolves with how many still match. */
  async read(cursor: StreamCursor, options: ReadOptions, visit: (message: JsMsg) => Visit): Promise<{ pending: number }> {
    const consumer = this.js.consumers.getConsumerFromInfo(cursor.info);
    const expires = Math.max(1_000, this.options.requestTimeoutMs);
    let pending = cursor.pending;
    let kept = 0;
    while (kept < options.max && pending > 0) {
      const batch = options.batch(kept, pending);
      const fetched = await consumer.fetch({ max_messages: batch, expires });
      let received = 0;
      let stopped = false;
      try {
        for await (const m of fetched) {
          received++;
          const visited = visit(m);
          if (visited === 'stop') {
            stopped = true;
            break;
          }
          if (visited === 'kept') kept++;
          pending = m.info.pending;
          if (received === batch || kept >= options.max || pending === 0) break;
        }
      } finally {
        fetched.stop();
      }
      if (stopped) return { pending };
      if (options.shortFetch === 'ends' && received < batch) return { pending };
      if (options.shortFetch === 'fails-when-empty' && received === 0) throw new DeadlineError(`${options.what}: reading ${cursor.stream}`, expires);
    }
    return { pending };
  }
}
