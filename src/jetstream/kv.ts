/**
 * Compare-and-set on a KV bucket, written as what nats.js's KV does on the wire (a publish to
 * `$KV.<bucket>.<key>` with an expected last subject sequence) so that every write carries a
 * Nats-Msg-Id: a write retried after a lost ack is then recognised as a repeat instead of failing the
 * compare-and-set it already passed. nats.js's own `kv.update` has no message id.
 */
import { JetStreamApiError, type JetStreamClient } from '@nats-io/jetstream';
import type { KV } from '@nats-io/kv';
import { headers, type NatsConnection } from '@nats-io/transport-node';
import type { z } from 'zod';
import type { Deadline, Timeouts } from './deadline.js';
import { CorruptRecordError } from './errors.js';
import { retrying } from './retry.js';
import { retry } from '../shared/retry.js';

/** Header of a KV entry that says what it is: absent for a put, `DEL` or `PURGE` for markers. */
export const KV_OPERATION = 'KV-Operation';
const ROLLUP = 'Nats-Rollup';

/**
 * A compare-and-set write (`Nats-Expected-Last-Subject-Sequence`) that lost: the key moved on since it
 * was read. 10071 "wrong last sequence: N"; 10164 "wrong last sequence: unknown" (newer servers).
 */
export function isWrongLastSequence(err: unknown): boolean {
  return err instanceof JetStreamApiError && (err.code === 10071 || err.code === 10164);
}

/** An attempt that lost its compare-and-set; it never leaves `untilWritten`. */
class LostRace extends Error {}
const LOST = new LostRace('lost the compare-and-set');

export interface CasLoopOptions {
  /** Compare-and-set attempts in all. */
  attempts: number;
  /** The pause after losing attempt `n` (1-based): some jitter spreads the retries of many contenders. */
  pauseMs?: (attempt: number) => number;
  /** The error once every attempt lost. */
  exhausted: () => Error;
}

/**
 * Read, compute, compare-and-set, until a write lands: `attempt(n)` resolves with what its write produced,
 * or 'conflict' when another writer got there first (then it reads again in the next attempt). The job
 * store's config and status updates and the checkpoint store's run and pointer updates are all this loop.
 */
export async function untilWritten<T>(options: CasLoopOptions, attempt: (n: number) => Promise<T | 'conflict'>): Promise<T> {
  try {
    return await retry(
      async (n) => {
        const result = await attempt(n);
        if (result === 'conflict') throw LOST;
        return result;
      },
      { attempts: options.attempts, retryable: (err) => err === LOST, ...(options.pauseMs === undefined ? {} : { pauseMs: options.pauseMs }) },
    );
  } catch (err) {
    throw err === LOST ? options.exhausted() : err;
  }
}

/** Contenders' jitter: up to 2 ms per attempt lost so far, at most 50 ms. */
export function casJitterMs(attempt: number): number {
  return Math.random() * Math.min(50, 2 * attempt);
}

/** A key's newest entry. */
export interface KvRead {
  revision: number;
  /** False for a delete or purge marker: the key is free, but a create must expect the marker's revision. */
  live: boolean;
  value: Uint8Array;
}

/** Parses a stored JSON record with its schema; anything else is a CorruptRecordError naming the key. */
export function decodeRecord<S extends z.ZodType>(schema: S, key: string, data: Uint8Array): z.output<S> {
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder().decode(data));
  } catch (err) {
    throw new CorruptRecordError(key, { cause: err });
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) throw new CorruptRecordError(key, { cause: parsed.error });
  return parsed.data;
}

/** Reads and compare-and-set writes of one bucket, each retried on timeouts within its operation's deadline. */
export class CasBucket {
  /** The bucket's stream, `KV_<bucket>`. */
  readonly stream: string;
  /** Subjects of its keys start with this, `$KV.<bucket>.`. */
  readonly subjectPrefix: string;

  constructor(
    private readonly nc: NatsConnection,
    private readonly js: JetStreamClient,
    private readonly kv: KV,
    bucket: string,
    private readonly timeouts: Timeouts,
  ) {
    this.stream = `KV_${bucket}`;
    this.subjectPrefix = `$KV.${bucket}.`;
  }

  subject(key: string): string {
    return `${this.subjectPrefix}${key}`;
  }

  async read(op: string, dl: Deadline, key: string): Promise<KvRead | null> {
    const entry = await retrying(this.nc, op, dl, this.timeouts, () => this.kv.get(key));
    if (entry === null) return null;
    return { revision: entry.revision, live: entry.operation === 'PUT', value: entry.value };
  }

  /**
   * One compare-and-set write: `expect` is the revision the key must be at (0: never written).
   * Retried on timeouts with the same msgID, so a write that landed is acknowledged, not repeated.
   */
  async write(op: string, dl: Deadline, key: string, data: string, expect: number, msgID: string): Promise<number | 'conflict'> {
    try {
      const ack = await retrying(this.nc, op, dl, this.timeouts, (timeout) =>
        this.js.publish(this.subject(key), data, { msgID, timeout, expect: { lastSubjectSequence: expect, streamName: this.stream } }),
      );
      return ack.seq;
    } catch (err) {
      if (isWrongLastSequence(err)) return 'conflict';
      throw err;
    }
  }

  /** kv.create semantics (free if never written, deleted or purged), with message ids `<msgBase>.<expected revision>`. */
  async create(op: string, dl: Deadline, key: string, data: string, msgBase: string): Promise<number | 'exists'> {
    let expect = 0;
    for (let attempt = 0; attempt < 3; attempt++) {
      const written = await this.write(op, dl, key, data, expect, `${msgBase}.${expect}`);
      if (written !== 'conflict') return written;
      const current = await this.read(op, dl, key);
      if (current?.live === true) return 'exists';
      expect = current?.revision ?? 0;
    }
    return 'exists';
  }

  /** A KV purge (rollup marker), optionally only if the key is still at `expect`. */
  async purge(op: string, dl: Deadline, key: string, expect: number | undefined, msgID: string): Promise<'ok' | 'conflict'> {
    try {
      await retrying(this.nc, op, dl, this.timeouts, (timeout) => {
        const h = headers();
        h.set(KV_OPERATION, 'PURGE');
        h.set(ROLLUP, 'sub');
        return this.js.publish(this.subject(key), undefined, {
          msgID,
          timeout,
          headers: h,
          expect: { streamName: this.stream, ...(expect === undefined ? {} : { lastSubjectSequence: expect }) },
        });
      });
      return 'ok';
    } catch (err) {
      if (isWrongLastSequence(err)) return 'conflict';
      throw err;
    }
  }
}
