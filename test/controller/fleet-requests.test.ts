/**
 * `weir.api.controllers.list` on a real nats-server: two real ShardLeases share 16 shards of a private
 * leases bucket, a real store holds job records, and the handler answers over NATS as the request server
 * would. Each controller answers for the whole fleet; jobs are counted for the owner of their shard; a
 * controller that dies shows as not live and its jobs move to the survivor.
 */
import type { Msg, NatsConnection } from '@nats-io/transport-node';
import { pino } from 'pino';
import { afterEach, describe, expect } from 'vitest';
import { fleetRequests, type FleetRequestsOptions } from '../../src/controller/fleet-requests.js';
import { ShardLeases } from '../../src/controller/shard-leases.js';
import { shardOf } from '../../src/controller/shards.js';
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
import { openStore, type Store } from '../../src/store/index.js';
import { testWithNatsServer } from '../support/nats-fixtures.js';
import { eventually } from '../support/nats.js';
import { config, FAST, spec } from '../store/helpers.js';

const it = testWithNatsServer();
const log = pino({ level: 'silent' });
const SHARDS = 16;
const TTL_MS = 1_500;
const JOBS = Array.from({ length: 24 }, (_, i) => `fleet-job-${i}`);

/** Serves the handler on a subject of its own, answering a throw with its error reply as the request server does. */
function serve(nc: NatsConnection, subject: string, handler: (msg: Msg) => Promise<ListControllersReply>): void {
  nc.subscribe(subject, {
    callback: (_err, msg) => {
      void handler(msg).then(
        (reply) => msg.respond(encode(reply)),
        (err: unknown) => msg.respond(encode(errorReply(errorCodeOf(err), err instanceof Error ? err.message : String(err)))),
      );
    },
  });
}

describe('the fleet request', () => {
  let store: Store;
  let bucketCounter = 0;
  const started: ShardLeases[] = [];

  it.beforeAll(async ({ connect }) => {
    const nc = await connect('store');
    store = await openStore(nc, { ...FAST, bucket: `weir_jobs_fleet_${process.pid}`, logStream: `FLEET_LOG_${process.pid}`, logSubjectPrefix: `fleet.log.${process.pid}` });
    for (const id of JOBS) await store.jobs.create(id, spec(id), config());
  });

  afterEach(async () => {
    await Promise.all(started.splice(0).map((l) => l.stop()));
  });

  async function leasesFor(nc: NatsConnection, bucket: string, id: string): Promise<ShardLeases> {
    const leases = new ShardLeases(nc, { controllerId: id, log, shards: SHARDS, ttlMs: TTL_MS, bucket });
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

  const expectedJobs = (leases: ShardLeases) => JOBS.filter((id) => leases.owned().includes(shardOf(id, SHARDS))).length;

  it('every controller answers for the whole fleet: two live controllers, shards summing to 16, jobs counted per owner', async ({ connect }) => {
    const bucket = `weir_leases_fleet_${process.pid}_${++bucketCounter}`;
    const ncA = await connect('a');
    const ncB = await connect('b');
    const a = await leasesFor(ncA, bucket, 'a');
    const b = await leasesFor(ncB, bucket, 'b');
    await eventually(() => expect([a.owned().length, b.owned().length]).toEqual([SHARDS / 2, SHARDS / 2]), { timeoutMs: 3 * TTL_MS, intervalMs: 20 });
    const options = (leases: ShardLeases, controllerId: string): FleetRequestsOptions => ({ leases, controllerId, store, maxMessageBytes: MAX_MESSAGE_BYTES });
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
      expect(reply.data.map((row) => row.controller_id)).toEqual(['a', 'b']);
      expect(reply.data.every((row) => row.live)).toBe(true);
      expect(reply.data.reduce((sum, row) => sum + row.shards, 0)).toBe(SHARDS);
      expect(reply.data.map((row) => row.jobs)).toEqual([expectedJobs(a), expectedJobs(b)]);
      expect(reply.data.reduce((sum, row) => sum + row.jobs, 0)).toBe(JOBS.length);
      for (const row of reply.data) {
        expect(row.oldest_lease_age_ms).not.toBeNull();
        expect(row.oldest_lease_age_ms!).toBeGreaterThanOrEqual(0);
        expect(row.oldest_lease_age_ms!).toBeLessThan(TTL_MS);
        expect(row.presence_age_ms).not.toBeNull();
        expect(row.presence_age_ms!).toBeGreaterThanOrEqual(0);
        expect(row.presence_age_ms!).toBeLessThan(TTL_MS);
      }
    }

    // A request that does not fit the schema is rejected like any other.
    const bad = decodeReply(listControllersReplySchema, (await client.request('test.fleet.a', encode({ v: 1, surprise: true }), { timeout: 5_000 })).data);
    expect(bad.ok ? null : bad.error.code).toBe('bad_schema');
    // The real subject is the protocol's: served here by nobody, so NoResponders.
    await expect(client.request(subjects.apiControllersList(), encode({ v: 1 }), { timeout: 1_000 })).rejects.toThrow();
  });

  it('a controller that dies shows as not live, and its jobs count for the one that takes its shards', async ({ connect }) => {
    const bucket = `weir_leases_fleet_${process.pid}_${++bucketCounter}`;
    const ncA = await connect('a2');
    const a = await leasesFor(ncA, bucket, 'a');
    const b = await leasesFor(await connect('b2'), bucket, 'b');
    await eventually(() => expect(b.owned()).toHaveLength(SHARDS / 2), { timeoutMs: 3 * TTL_MS, intervalMs: 20 });
    serve(ncA, 'test.fleet.a2', fleetRequests({ leases: a, controllerId: 'a', store, maxMessageBytes: MAX_MESSAGE_BYTES }).controllers);
    await ncA.flush();
    b.halt(); // stops renewing, gives nothing back: its presence key stays, and goes stale

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
      expect.objectContaining({ controller_id: 'a', live: true, shards: SHARDS, jobs: JOBS.length }),
      expect.objectContaining({ controller_id: 'b', live: false, shards: 0, jobs: 0, oldest_lease_age_ms: null }),
    ]);
    expect(reply.data[1]!.presence_age_ms!).toBeGreaterThan(TTL_MS);
  });

  it('an owner the fleet view lacks still gets a row with its jobs, and jobs of unowned shards count for nobody', async () => {
    // The two reads are not atomic: a lease seen between fleet() and ownerOf() names a controller fleet() did not list.
    const owners = (shard: number) => (shard < 4 ? 'a' : shard < 8 ? 'late' : null);
    const leases: FleetRequestsOptions['leases'] = {
      shards: SHARDS,
      ttlMs: TTL_MS,
      ownerOf: owners,
      fleet: () => [{ controllerId: 'a', shards: 4, oldestLeaseAgeMs: 10, presenceAgeMs: 5, live: true }],
    };
    const { controllers } = fleetRequests({ leases, controllerId: 'a', store, maxMessageBytes: MAX_MESSAGE_BYTES });
    const reply = await controllers({ data: encode({ v: 1 }) } as Msg);
    const jobsOf = (owner: string) => JOBS.filter((id) => owners(shardOf(id, SHARDS)) === owner).length;
    expect(jobsOf('late')).toBeGreaterThan(0);
    expect(reply).toEqual({
      v: 1,
      shards: SHARDS,
      lease_ttl_ms: TTL_MS,
      answered_by: 'a',
      data: [
        { controller_id: 'a', jobs: jobsOf('a'), shards: 4, oldest_lease_age_ms: 10, presence_age_ms: 5, live: true },
        { controller_id: 'late', jobs: jobsOf('late'), shards: 4, oldest_lease_age_ms: null, presence_age_ms: null, live: false },
      ],
    });
  });
});
