/**
 * Shard leases on a real nats-server: a lone controller takes every shard, a newcomer gets a fair share
 * within one lease period, a controller that stops hands its shards over at once, and one that dies (stops
 * renewing) loses them after the TTL, not before; a holder that cannot renew stops counting on its lease
 * by itself. Every shard has one owner at a time throughout.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import { pino } from 'pino';
import { afterEach, describe, expect } from 'vitest';
import { ShardLeases } from '../../src/controller/shard-leases.js';
import { testWithNatsServer } from '../support/nats-fixtures.js';
import { eventually } from '../support/nats.js';

const it = testWithNatsServer();
const log = pino({ level: 'silent' });
const SHARDS = 16;
const TTL_MS = 1_500;

describe('shard leases', () => {
  let bucketCounter = 0;
  let bucket = '';
  const started: ShardLeases[] = [];

  async function controller(nc: NatsConnection, id: string): Promise<ShardLeases> {
    const leases = new ShardLeases(nc, { controllerId: id, log, shards: SHARDS, ttlMs: TTL_MS, bucket });
    started.push(leases);
    await leases.start();
    return leases;
  }

  function expectDisjoint(...all: ShardLeases[]): void {
    const owners = new Map<number, number>();
    all.forEach((leases) => leases.owned().forEach((shard) => owners.set(shard, (owners.get(shard) ?? 0) + 1)));
    expect([...owners.values()].every((count) => count === 1)).toBe(true);
  }

  afterEach(async () => {
    await Promise.all(started.splice(0).map((l) => l.stop()));
    bucket = `weir_leases_${process.pid}_${++bucketCounter}`;
  });

  it('a lone controller owns every shard, each with its fencing epoch', async ({ connect }) => {
    bucket = `weir_leases_${process.pid}_${++bucketCounter}`;
    const a = await controller(await connect('a'), 'a');
    expect(a.owned()).toHaveLength(SHARDS);
    expect(a.epochOf(0)).toBe(1);
  });

  it('a newcomer gets a fair share within one lease period, never sharing a shard', async ({ connect }) => {
    bucket = `weir_leases_${process.pid}_${++bucketCounter}`;
    const a = await controller(await connect('a'), 'a');
    const joined = performance.now();
    const b = await controller(await connect('b'), 'b');
    await eventually(() => {
      expectDisjoint(a, b);
      expect([a.owned().length, b.owned().length]).toEqual([SHARDS / 2, SHARDS / 2]);
    }, { timeoutMs: 3 * TTL_MS, intervalMs: 20 });
    expect(performance.now() - joined).toBeLessThan(TTL_MS + 500);
    // A shard that changed hands has a higher epoch: the old owner's writes are fenced off.
    const moved = b.owned()[0]!;
    expect(b.epochOf(moved)).toBe(2);
  });

  it('a controller that stops hands its shards over at once, not after the TTL', async ({ connect }) => {
    bucket = `weir_leases_${process.pid}_${++bucketCounter}`;
    const a = await controller(await connect('a'), 'a');
    const b = await controller(await connect('b'), 'b');
    await eventually(() => expect(b.owned()).toHaveLength(SHARDS / 2), { timeoutMs: 3 * TTL_MS, intervalMs: 20 });
    const stoppedAt = performance.now();
    await a.stop();
    await eventually(() => expect(b.owned()).toHaveLength(SHARDS), { timeoutMs: 3 * TTL_MS, intervalMs: 20 });
    expect(performance.now() - stoppedAt).toBeLessThan(TTL_MS);
  });

  it('a controller that dies loses its shards after the TTL, not before, and stops counting on them by itself', async ({ connect }) => {
    bucket = `weir_leases_${process.pid}_${++bucketCounter}`;
    const a = await controller(await connect('a'), 'a');
    const b = await controller(await connect('b'), 'b');
    await eventually(() => expect(a.owned()).toHaveLength(SHARDS / 2), { timeoutMs: 3 * TTL_MS, intervalMs: 20 });
    const mine = a.owned();
    const diedAt = performance.now();
    a.halt(); // no more renewals, nothing given back
    // The dead one's view: its leases go stale on its own clock, before anyone may take them.
    await eventually(() => expect(a.owned()).toEqual([]), { timeoutMs: 2 * TTL_MS, intervalMs: 20 });
    const selfStepDown = performance.now() - diedAt;
    await eventually(() => expect(b.owned()).toHaveLength(SHARDS), { timeoutMs: 4 * TTL_MS, intervalMs: 20 });
    const takenAfter = performance.now() - diedAt;
    expect(selfStepDown).toBeLessThan(takenAfter);
    expect(takenAfter).toBeGreaterThanOrEqual(TTL_MS - TTL_MS / 3);
    for (const shard of mine) expect(b.epochOf(shard)).toBeGreaterThan(1);
  });
});
