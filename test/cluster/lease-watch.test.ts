/**
 * Shard leases on a 3-node cluster when the node that hosts a controller's lease watch dies, the
 * controllers' own nodes staying up. Each controller learns that the others' leases are alive from the
 * bucket watch alone (a renewal it sees restarts the TTL on its clock), so the watch must keep delivering:
 * otherwise, a TTL later, it judges every other controller dead (its fleet view says so, requests for their
 * jobs find no owner, and it tries to take their shards).
 *
 * A KV watch is an ordered push consumer with one replica, placed on some node of the stream's group;
 * nats.js notices a silent one only after two missed idle heartbeats of 30 s each.
 */
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { pino } from 'pino';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ShardLeases } from '../../src/controller/shard-leases.js';
import { eventually } from '../support/nats.js';
import { startNatsCluster, type NatsClusterHandle } from '../support/nats-cluster.js';

const log = pino({ level: 'silent' });
const SHARDS = 8;
/** Above a Raft election, as on any cluster. */
const TTL_MS = 8_000;

describe('shard leases when the node hosting a lease watch dies', () => {
  let cluster: NatsClusterHandle;
  const connections: NatsConnection[] = [];
  const leases: ShardLeases[] = [];

  beforeAll(async () => {
    cluster = await startNatsCluster(3);
    // JetStream answers once its meta group has a leader; an R3 stream also needs every node to have joined.
    const nc = await pinned(0);
    const jsm = await jetstreamManager(nc);
    await eventually(async () => {
      await jsm.streams.add({ name: 'PLACEMENT_PROBE', subjects: ['placement.probe'], num_replicas: 3 });
      await jsm.streams.delete('PLACEMENT_PROBE');
    }, { timeoutMs: 20_000, intervalMs: 250 });
  }, 60_000);

  afterAll(async () => {
    await Promise.all(leases.map((l) => l.stop().catch(() => undefined)));
    await Promise.all(connections.map((nc) => nc.close().catch(() => undefined)));
    await cluster?.dispose();
  });

  /** A client of node `i` only: it never moves to another node, so only the watch's own node is lost. */
  async function pinned(i: number): Promise<NatsConnection> {
    const nc = await connect({ servers: [cluster.nodes[i]!.url], ignoreClusterUpdates: true, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
    connections.push(nc);
    return nc;
  }

  it("each controller keeps seeing the other's leases renewed", async () => {
    // a on node 1, b on node 2; the watches' consumers land where JetStream places them. Node 3 is killed
    // once it hosts at least one of them; until then the bucket is made again (a new placement).
    let a!: ShardLeases;
    let b!: ShardLeases;
    let bucket = '';
    let onThird: string[] = [];
    for (let attempt = 1; attempt <= 6 && onThird.length === 0; attempt++) {
      await Promise.all(leases.splice(0).map((l) => l.stop().catch(() => undefined)));
      bucket = `weir_leases_watch_${attempt}`;
      a = new ShardLeases(await pinned(0), { controllerId: 'a', log, shards: SHARDS, ttlMs: TTL_MS, bucket, replicas: 3 });
      leases.push(a);
      await a.start();
      b = new ShardLeases(await pinned(1), { controllerId: 'b', log, shards: SHARDS, ttlMs: TTL_MS, bucket, replicas: 3 });
      leases.push(b);
      await b.start();
      const jsm = await jetstreamManager(connections[0]!);
      onThird = [];
      // The watches' consumers (kv.keys() leaves consumers behind too: those are headers-only).
      for await (const c of jsm.consumers.list(`KV_${bucket}`)) if (c.config.headers_only !== true && c.cluster?.leader === cluster.names[2]) onThird.push(c.name);
    }
    expect(onThird.length, 'a watch consumer placed on the third node').toBeGreaterThan(0);
    await eventually(() => expect([a.owned().length, b.owned().length]).toEqual([SHARDS / 2, SHARDS / 2]), { timeoutMs: 3 * TTL_MS, intervalMs: 100 });
    const ofA = a.owned();
    const ofB = b.owned();

    await cluster.nodes[2]!.kill();
    const killedAt = performance.now();
    // For two TTLs and more: each still sees the other as the owner of its shards, and as live.
    const wrong: string[] = [];
    while (performance.now() - killedAt < 2 * TTL_MS + 2_000) {
      const t = Math.round(performance.now() - killedAt);
      for (const [me, other, theirs] of [[a, 'b', ofB], [b, 'a', ofA]] as const) {
        const seen = theirs.map((s) => me.ownerOf(s));
        if (seen.some((o) => o !== other)) wrong.push(`${t} ms: ${other === 'b' ? 'a' : 'b'} sees ${other}'s shards owned by ${JSON.stringify(seen)}`);
        const live = me.fleet().find((c) => c.controllerId === other)?.live;
        if (live !== true) wrong.push(`${t} ms: ${other === 'b' ? 'a' : 'b'} sees ${other} as not live`);
      }
      await sleep(250);
    }
    expect(wrong.slice(0, 4), `consumers on the killed node: ${onThird.join(', ')}`).toEqual([]);
    // And the leases themselves did not move: each renewed its own throughout.
    expect([a.owned(), b.owned()]).toEqual([ofA, ofB]);
  }, 110_000);
});
