/**
 * weir on a 3-node NATS cluster: with `replicas: 3` every bucket and stream it creates is replicated on
 * all three nodes, so an acknowledged write survives the loss of one; and the controller keeps serving
 * through a node's loss, its clients reconnecting to the others through the server list.
 */
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { natsOptions } from '../../src/cli/nats-options.js';
import { openCheckpointKv, openCheckpointStore } from '../../src/checkpoint/index.js';
import type { Controller } from '../../src/controller/controller.js';
import { CHECKPOINTS_KV_BUCKET, subjects } from '../../src/protocol/index.js';
import { JOBS_BUCKET, LOG_STREAM } from '../../src/store/index.js';
import { requestJson, startTestController } from '../support/cluster.js';
import { startNatsCluster, type NatsClusterHandle } from '../support/nats-cluster.js';

describe('weir on a 3-node NATS cluster', () => {
  let cluster: NatsClusterHandle;
  let nc: NatsConnection;
  let controller: Controller;

  beforeAll(async () => {
    cluster = await startNatsCluster(3);
    nc = await connect({ ...natsOptions(cluster.urls, {}), reconnectTimeWait: 100 });
    controller = await startTestController(nc, { replicas: 3 });
  }, 60_000);

  afterAll(async () => {
    await controller?.stop();
    await nc?.close();
    await cluster?.dispose();
  });

  it('creates every bucket and stream with three replicas', async () => {
    // The state store and the records' bucket open on a job's first checkpoint: open them as the controller does.
    const { names } = await openCheckpointStore(nc, { replicas: 3 });
    await openCheckpointKv(nc, CHECKPOINTS_KV_BUCKET, 2_000, 3)();
    const jsm = await jetstreamManager(nc);
    const streams = [`KV_${JOBS_BUCKET}`, LOG_STREAM, `KV_${CHECKPOINTS_KV_BUCKET}`, `KV_${names.metaBucket}`, `OBJ_${names.stateBucket}`, names.eventStream];
    for (const name of streams) expect([name, (await jsm.streams.info(name)).config.num_replicas]).toEqual([name, 3]);
  }, 60_000);

  it('answers requests after the node it was connected to is killed', async () => {
    const before = nc.getServer();
    const node = cluster.nodes.find((n) => new URL(n.url).host === before)!;
    await node.kill();
    await expect.poll(async () => (await requestJson(nc, subjects.apiJobsList(), { v: 1 }, 2_000).catch(() => null)) !== null, { timeout: 30_000, interval: 500 }).toBe(true);
    expect(nc.getServer()).not.toBe(before);
  }, 60_000);
});
