import { Kvm } from '@nats-io/kv';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { setTimeout as sleep } from 'node:timers/promises';
import { it } from 'vitest';
import { startNatsCluster } from '../support/nats-cluster.js';

it('kv watcher after the node hosting its consumer dies', async () => {
  const cluster = await startNatsCluster(3);
  const t0 = Date.now();
  const log = (s: string) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1)}s] ${s}`);
  try {
    const writer = await connect({ servers: cluster.urls.split(','), maxReconnectAttempts: -1, reconnectTimeWait: 100 });
    const kvw = await new Kvm(writer).create('probe', { history: 1, replicas: 3 });
    const jsmw = await jetstreamManager(writer);
    // One watcher per node, each client pinned to its node.
    const seen: number[] = [0, 0, 0];
    const consumers: string[] = [];
    for (const [i, n] of cluster.nodes.entries()) {
      const nc = await connect({ servers: [n.url], maxReconnectAttempts: -1, reconnectTimeWait: 100 });
      const kv = await new Kvm(nc).open('probe');
      const w = await kv.watch({ key: '>' });
      void (async () => { for await (const e of w) seen[i] = Math.max(seen[i]!, e.revision); })();
    }
    await sleep(500);
    for await (const c of jsmw.consumers.list('KV_probe')) consumers.push(`${c.name}@${c.cluster?.leader} hb=${(c.config.idle_heartbeat ?? 0) / 1e9}s`);
    log('consumers: ' + consumers.join(', '));
    const leader = (await jsmw.streams.info('KV_probe')).cluster?.leader;
    // kill a node that is neither the stream leader nor... just pick one hosting a consumer of a watcher not connected to it
    const victim = cluster.names.findIndex((n) => n !== leader);
    log(`stream leader ${leader}; killing ${cluster.names[victim]}`);
    await cluster.nodes[victim]!.kill();
    for (let s = 0; s < 75; s++) {
      const rev = await kvw.put('k', String(s)).catch(() => -1);
      if (s % 5 === 0) log(`put rev ${rev}; watchers (pinned to n1,n2,n3) last saw ${seen.join(',')}`);
      await sleep(1000);
    }
  } finally {
    await cluster.dispose();
  }
}, 110_000);
