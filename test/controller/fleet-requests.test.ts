/**
 * `weir.api.controllers.list` on a real nats-server: two real ShardLeases share 16 shards of a private
 * leases bucket, each publishing how many jobs it runs with its presence, and the handler answers over
 * NATS as the request server would. Each controller answers for the whole fleet from memory; a change in
 * another controller's job count shows within a renewal; a controller that dies shows as not live, with
 * no shards and no jobs.
 */
import type { Msg, NatsConnection } from '@nats-io/transport-node';
import { pino } from 'pino';
import { afterEach, describe, expect } from 'vitest';
import { fleetRequests, type FleetRequestsOptions } from '../../src/controller/fleet-requests.js';
import { ShardLeases } from '../../src/controller/shard-leases.js';
import {
  MAX_MESSAGE_BYTES,
  decodeReply,
  encode,
  errorCodeOf,
  errorReply,
  listControllersReplySchema,
  subjects,
  type ListControllersReply,
} from '../../src/protocol/index.js';
import { testWithNatsServer } from '../support/nats-fixtures.js';
import { eventually } from '../support/nats.js';

const it = testWithNatsServer();
const log = pino({ level: 'silent' });
const SHARDS = 16;
const TTL_MS = 1_500;

/** Serves the handler on a subject of its own, answering a throw with its error reply as the request server does. */
function serve(nc: NatsConnection, subject: string, handler: (msg: Msg) => ListControllersReply): void {
  nc.subscribe(subject, {
    callback: (_err, msg) => {
      try {
        msg.respond(encode(handler(msg)));
      } catch (err) {
        msg.respond(encode(errorReply(errorCodeOf(err), err instanceof Error ? err.message : String(err))));
      }
    },
  });
}

describe('the fleet request', () => {
  let bucketCounter = 0;
  const started: ShardLeases[] = [];
  /** Per controller id: how many jobs its table holds (what a controller's `jobsRun` reads). */
  const jobsRun = new Map<string, number>();

  afterEach(async () => {
    await Promise.all(started.splice(0).map((l) => l.stop()));
    jobsRun.clear();
  });

  async function leasesFor(nc: NatsConnection, bucket: string, id: string, jobs: number): Promise<ShardLeases> {
    jobsRun.set(id, jobs);
    const leases = new ShardLeases(nc, { controllerId: id, log, shards: SHARDS, ttlMs: TTL_MS, bucket, jobsRun: () => jobsRun.get(id) ?? 0 });
    started.push(leases);
    await leases.start();
    return leases;
  }

  /** Asks `subject` and decodes the reply (the test fails on an error reply). */
  async function ask(nc: NatsConnection, subject: string, body: unknown = { v: 1 }): Promise<ListControllersReply> {
    const reply = decodeReply(listControllersReplySchema, (await nc.request(subject, encode(body), { timeout: 5_000 })).data);
    if (!reply.ok) throw new Error(`${reply.error.code}: ${reply.error.message}`);
    return reply.value;
  }

  it('every controller answers for the whole fleet: two live controllers, shards summing to 16, the jobs each runs', async ({ connect }) => {
    const bucket = `weir_leases_fleet_${process.pid}_${++bucketCounter}`;
    const ncA = await connect('a');
    const ncB = await connect('b');
    const a = await leasesFor(ncA, bucket, 'a', 7);
    const b = await leasesFor(ncB, bucket, 'b', 3);
    await eventually(() => expect([a.owned().length, b.owned().length]).toEqual([SHARDS / 2, SHARDS / 2]), { timeoutMs: 3 * TTL_MS, intervalMs: 20 });
    const options = (leases: ShardLeases, controllerId: string): FleetRequestsOptions => ({ leases, controllerId, maxMessageBytes: MAX_MESSAGE_BYTES });
    serve(ncA, 'test.fleet.a', fleetRequests(options(a, 'a')).controllers);
    serve(ncB, 'test.fleet.b', fleetRequests(options(b, 'b')).controllers);
    await Promise.all([ncA.flush(), ncB.flush()]);

    const client = await connect('client');
    for (const [subject, answeredBy] of [['test.fleet.a', 'a'], ['test.fleet.b', 'b']] as const) {
      // Each one's view of the other follows the watch: wait until both leases are seen everywhere.
      const reply = await eventually(
        async () => {
          const r = await ask(client, subject);
          expect(r.data.map((row) => row.shards)).toEqual([SHARDS / 2, SHARDS / 2]);
          return r;
        },
        { timeoutMs: 3 * TTL_MS, intervalMs: 50 },
      );
      expect(reply).toMatchObject({ v: 1, shards: SHARDS, lease_ttl_ms: TTL_MS, answered_by: answeredBy });
      expect(reply.data.map((row) => [row.controller_id, row.live, row.jobs])).toEqual([['a', true, 7], ['b', true, 3]]);
      for (const row of reply.data) {
        expect(row.oldest_lease_age_ms).not.toBeNull();
        expect(row.oldest_lease_age_ms!).toBeGreaterThanOrEqual(0);
        expect(row.oldest_lease_age_ms!).toBeLessThan(TTL_MS);
        expect(row.presence_age_ms).not.toBeNull();
        expect(row.presence_age_ms!).toBeGreaterThanOrEqual(0);
        expect(row.presence_age_ms!).toBeLessThan(TTL_MS);
      }
    }

    // b takes on two more jobs: a shows it after b's next presence renewal (every tenth of a TTL), a's own count at once.
    jobsRun.set('b', 5);
    jobsRun.set('a', 6);
    const seenAt = performance.now();
    await eventually(async () => expect((await ask(client, 'test.fleet.a')).data.map((row) => row.jobs)).toEqual([6, 5]), { timeoutMs: TTL_MS, intervalMs: 20 });
    expect(performance.now() - seenAt).toBeLessThan(TTL_MS);

    // A request that does not fit the schema is rejected like any other.
    const bad = decodeReply(listControllersReplySchema, (await client.request('test.fleet.a', encode({ v: 1, surprise: true }), { timeout: 5_000 })).data);
    expect(bad.ok ? null : bad.error.code).toBe('bad_schema');
    // The real subject is the protocol's: served here by nobody, so NoResponders.
    await expect(client.request(subjects.apiControllersList(), encode({ v: 1 }), { timeout: 1_000 })).rejects.toThrow();
  });

  it('a controller that dies shows as not live, with no shards and no jobs, once the survivor takes its shards', async ({ connect }) => {
    const bucket = `weir_leases_fleet_${process.pid}_${++bucketCounter}`;
    const ncA = await connect('a2');
    const a = await leasesFor(ncA, bucket, 'a', 4);
    const b = await leasesFor(await connect('b2'), bucket, 'b', 9);
    await eventually(() => expect(b.owned()).toHaveLength(SHARDS / 2), { timeoutMs: 3 * TTL_MS, intervalMs: 20 });
    serve(ncA, 'test.fleet.a2', fleetRequests({ leases: a, controllerId: 'a', maxMessageBytes: MAX_MESSAGE_BYTES }).controllers);
    await ncA.flush();
    b.halt(); // stops renewing, gives nothing back: its presence key stays, and goes stale
    jobsRun.set('a', 13); // a adopts b's jobs

    const client = await connect('client2');
    const reply = await eventually(
      async () => {
        const r = await ask(client, 'test.fleet.a2');
        expect(r.data.find((row) => row.controller_id === 'a')?.shards).toBe(SHARDS);
        return r;
      },
      { timeoutMs: 4 * TTL_MS, intervalMs: 50 },
    );
    expect(reply.data).toEqual([
      expect.objectContaining({ controller_id: 'a', live: true, shards: SHARDS, jobs: 13 }),
      expect.objectContaining({ controller_id: 'b', live: false, shards: 0, jobs: 0, oldest_lease_age_ms: null }),
    ]);
    expect(reply.data[1]!.presence_age_ms!).toBeGreaterThan(TTL_MS);
  });

  it('rows come from the leases view alone: a controller without a live presence counts no jobs', () => {
    const leases: FleetRequestsOptions['leases'] = {
      shards: SHARDS,
      ttlMs: TTL_MS,
      fleet: () => [
        { controllerId: 'a', shards: 4, oldestLeaseAgeMs: 10, presenceAgeMs: 5, live: true, jobs: 11 },
        { controllerId: 'late', shards: 4, oldestLeaseAgeMs: 20, presenceAgeMs: null, live: false, jobs: null },
      ],
    };
    const { controllers } = fleetRequests({ leases, controllerId: 'a', maxMessageBytes: MAX_MESSAGE_BYTES });
    expect(controllers({ data: encode({ v: 1 }) } as Msg)).toEqual({
      v: 1,
      shards: SHARDS,
      lease_ttl_ms: TTL_MS,
      answered_by: 'a',
      data: [
        { controller_id: 'a', jobs: 11, shards: 4, oldest_lease_age_ms: 10, presence_age_ms: 5, live: true },
        { controller_id: 'late', jobs: 0, shards: 4, oldest_lease_age_ms: 20, presence_age_ms: null, live: false },
      ],
    });
  });
});
