import { jetstream } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { setTimeout as sleep } from 'node:timers/promises';
import { it } from 'vitest';
import { ClusterDeployment, elapsed } from '../support/cluster-deployment.js';

const note = (l: string) => console.log(`[${elapsed()}] ${l}`);

it('diag', async () => {
  const d = await ClusterDeployment.start();
  try {
    await Promise.all([d.controller('c1'), d.controller('c2')]);
    await Promise.all([d.worker('w1', 3), d.worker('w2', 3)]);
    await d.sharesSettled(['c1', 'c2']);
    const pinned: NatsConnection[] = [];
    for (const n of d.cluster.nodes) pinned.push(await connect({ servers: [n.url], maxReconnectAttempts: -1, reconnectTimeWait: 100 }));
    const { Kvm } = await import('@nats-io/kv');
    const kv = await new Kvm(d.client).open('weir_leases');
    const lastSeen = new Map<string, number>();
    const w = await kv.watch({ key: 'controller.*' });
    void (async () => { for await (const e of w) lastSeen.set(e.key, Date.now()); })();
    let stop = false;
    const monitor = (async () => {
      let last = '';
      while (!stop) {
        const parts: string[] = [];
        for (const s of ['KV_weir_jobs', 'KV_weir_leases']) parts.push(`${s}:${await d.streamInfo(s, 1000).then((i) => i.cluster?.leader ?? 'none', (e) => 'ERR ' + String(e).slice(0, 40))}`);
        for (const [i, nc] of pinned.entries()) {
          const r = await jetstream(nc, { timeout: 1000 }).publish('$KV.weir_leases.probe', 'x').then(() => 'ok', (e) => String(e).slice(0, 60));
          parts.push(`pub@n${i + 1}:${r}`);
        }
        parts.push(JSON.stringify(Object.fromEntries(d.connections())));
        const list = await d.controllerList().catch(() => null);
        if (list) parts.push(`list by ${list.answered_by}: ` + list.data.map((c) => `${c.controller_id} sh${c.shards} ${c.live ? 'live' : 'dead'}`).join(','));
        parts.push('mywatch ' + [...lastSeen].map(([k, t]) => `${k}:${Math.round((Date.now() - t) / 1000)}s`).join(','));
        const line = parts.join(' | ');
        if (line.replace(/\d+s/g,'') !== last.replace(/\d+s/g,'') ) note(line);
        last = line;
        await sleep(500);
      }
    })();
    await sleep(2000);
    const leader = await d.leaderOf('KV_weir_jobs');
    const f = (leader + 1) % 3;
    note(`kill follower ${d.cluster.names[f]}`);
    await d.cluster.nodes[f]!.kill();
    await sleep(4000);
    note('restart');
    await d.cluster.nodes[f]!.restart();
    await d.allStreamsCurrent(45_000);
    note('current');
    const l2 = await d.leaderOf('KV_weir_jobs');
    note(`kill leader ${d.cluster.names[l2]}`);
    await d.cluster.nodes[l2]!.kill();
    await sleep(20_000);
    stop = true;
    await monitor;
    note(JSON.stringify((await d.controllerList()).data));
    for (const nc of pinned) await nc.close().catch(() => undefined);
  } finally {
    note('logs ' + d.dumpLogs('diag'));
    await d.stop();
  }
}, 110_000);
