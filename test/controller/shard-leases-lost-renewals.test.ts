/**
 * Shard leases when a holder's renewals stop landing while its reads still work: what a controller meets
 * on a NATS cluster when the leases stream has no leader it can reach (publishes get "no responders" or
 * time out) but a `get` is still answered. The holder must step down within its TTL (less the margin), as
 * it does when it is paused or dead: another controller judges the lease expired from the revision it last
 * saw, so a holder that went on acting past that point would share the shard with the taker.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import { pino } from 'pino';
import { afterEach, describe, expect } from 'vitest';
import { ShardLeases } from '../../src/controller/shard-leases.js';
import { testWithNatsServer } from '../support/nats-fixtures.js';

const it = testWithNatsServer();
const log = pino({ level: 'silent' });
const SHARDS = 8;
const TTL_MS = 1_500;

/** `nc`, except that while `dropping()` a publish to a shard key of `bucket` fails, as with no stream leader. */
function withLostRenewals(nc: NatsConnection, bucket: string, dropping: () => boolean): NatsConnection {
  const prefix = `$KV.${bucket}.shard.`;
  return new Proxy(nc, {
    get(target, prop, receiver) {
      if (prop === 'request') {
        return (subject: string, ...rest: unknown[]) => {
          if (dropping() && subject.startsWith(prefix)) return Promise.reject(new Error(`503 no responders: '${subject}'`));
          return (target.request as (...args: unknown[]) => unknown).call(target, subject, ...rest);
        };
      }
      const value: unknown = Reflect.get(target, prop, receiver);
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
}

describe('shard leases whose renewals do not land', () => {
  let bucketCounter = 0;
  const started: ShardLeases[] = [];

  afterEach(async () => {
    await Promise.all(started.splice(0).map((l) => l.stop().catch(() => undefined)));
  });

  it('the holder stops counting on them within the TTL, before a contender takes them, even though reads still answer', async ({ connect }) => {
    const bucket = `weir_leases_lost_${process.pid}_${++bucketCounter}`;
    let dropping = false;
    const a = new ShardLeases(withLostRenewals(await connect('a'), bucket, () => dropping), { controllerId: 'a', log, shards: SHARDS, ttlMs: TTL_MS, bucket });
    started.push(a);
    await a.start();
    expect(a.owned()).toHaveLength(SHARDS);

    dropping = true;
    const since = performance.now();
    const b = new ShardLeases(await connect('b'), { controllerId: 'b', log, shards: SHARDS, ttlMs: TTL_MS, bucket });
    started.push(b);
    await b.start();

    // Sampled every 20 ms for 4 TTLs: b takes its fair share (half) from a's stale leases, and no shard is
    // ever owned by both; a, whose renewals never land, owns none of b's.
    const shared: string[] = [];
    while (performance.now() - since < 4 * TTL_MS) {
      const both = a.owned().filter((shard) => b.owned().includes(shard));
      if (both.length > 0) shared.push(`${Math.round(performance.now() - since)} ms: shards ${both.join(',')} owned by a and by b`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(b.owned()).toHaveLength(SHARDS / 2);
    expect(shared.slice(0, 3), 'moments when a and b both owned a shard').toEqual([]);
    expect(a.owned().filter((shard) => b.owned().includes(shard))).toEqual([]);
  });
});
