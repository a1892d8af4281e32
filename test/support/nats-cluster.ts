/**
 * A 3-node nats-server cluster with JetStream on loopback ports: each node its own client port, cluster
 * port and store directory, routes to the other two. Resolves once JetStream can place a stream on
 * every node. `urls` is the comma-separated list a weir process takes as `--nats`.
 */
import { StorageType, jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort } from '../../src/shared/free-port.js';
import { startNatsServer, type NatsServerHandle } from './nats-server.js';

const READY_WITHIN_MS = 20_000;

export interface NatsClusterHandle extends AsyncDisposable {
  readonly nodes: readonly NatsServerHandle[];
  /** Each node's server name (`<name>-n<i>`), as JetStream's cluster info names leaders and peers; in the order of `nodes`. */
  readonly names: readonly string[];
  /** Every node's client URL, comma-separated. */
  readonly urls: string;
  dispose(): Promise<void>;
}

export async function startNatsCluster(size = 3, name = 'weir'): Promise<NatsClusterHandle> {
  const clusterPorts = await Promise.all(Array.from({ length: size }, () => freePort()));
  const routes = clusterPorts.map((port) => `nats://127.0.0.1:${port}`).join(',');
  const nodes: NatsServerHandle[] = [];
  const names = clusterPorts.map((_, i) => `${name}-n${i + 1}`);
  const dispose = async () => {
    await Promise.all(nodes.map((node) => node.dispose()));
  };
  try {
    for (const [i, clusterPort] of clusterPorts.entries()) {
      nodes.push(
        await startNatsServer({
          args: ['--server_name', names[i]!, '--cluster_name', name, '--cluster', `nats://127.0.0.1:${clusterPort}`, '--routes', routes],
        }),
      );
    }
    const urls = nodes.map((node) => node.url).join(',');
    await untilJetStreamPlaces(urls, size);
    return { nodes, names, urls, dispose, [Symbol.asyncDispose]: dispose };
  } catch (err) {
    await dispose();
    throw err;
  }
}

/**
 * The cluster is ready once it can place a stream on every node: a meta leader alone is not enough, since
 * a peer that has not yet reported to it makes a replicated stream fail with "no suitable peers for placement".
 */
async function untilJetStreamPlaces(urls: string, replicas: number): Promise<void> {
  const nc = await connect({ servers: urls.split(','), timeout: 2_000 });
  const probe = `cluster_ready_probe_${process.pid}`;
  try {
    const deadline = Date.now() + READY_WITHIN_MS;
    for (;;) {
      try {
        const jsm = await jetstreamManager(nc, { timeout: 2_000 });
        await jsm.streams.add({ name: probe, subjects: [`${probe}.>`], num_replicas: replicas, storage: StorageType.Memory });
        await jsm.streams.delete(probe);
        return;
      } catch (err) {
        if (Date.now() > deadline) throw new Error(`the cluster's JetStream could not place an R${replicas} stream within ${READY_WITHIN_MS} ms`, { cause: err });
        await sleep(200);
      }
    }
  } finally {
    await nc.close();
  }
}
