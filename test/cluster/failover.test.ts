/**
 * Failover on a real 3-node JetStream cluster with several controllers (issue 16): `weir controller` and
 * `weir worker` processes, all given the three servers' URLs and `--replicas 3`, while NATS nodes,
 * controllers and workers are killed.
 *
 * - Losing a NATS node, even the one that leads the jobs bucket, is not a failure of any job: the lease TTL
 *   (10 s) outlasts the Raft election, so every job runs on at its generation and checkpoints go on.
 * - The exactly-once pipeline survives controllers, workers and NATS nodes killed at random (a seeded
 *   schedule; WEIR_FAULT_SEED=<n> replays one) and its output is exact.
 *
 * Every process's output is written under the temp dir after each test (the path is printed).
 */
import { jetstreamManager } from '@nats-io/jetstream';
import type { Subscription } from '@nats-io/transport-node';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { decode, jobStateEventSchema, type JobStateEvent, type JobView } from '../../src/protocol/index.js';
import { nowMicros } from '../../src/shared/micros.js';
import { JOBS_BUCKET } from '../../src/store/index.js';
import { ClusterDeployment, elapsed, seededRandom } from '../support/cluster-deployment.js';
import { countDefects, expectExactCounts, exactlyOncePipeline, streamRows } from '../support/exactly-once.js';
import { eventually } from '../support/nats.js';
import { impulseCountPipeline } from '../support/pipelines.js';

const JOBS_STREAM = `KV_${JOBS_BUCKET}`;
const note = (line: string) => console.log(`[${elapsed()}] ${line}`);

describe('several controllers on a 3-node NATS cluster', () => {
  let d: ClusterDeployment | undefined;
  let stateSub: Subscription | undefined;
  let states: JobStateEvent[] = [];

  afterEach(async (ctx) => {
    stateSub?.unsubscribe();
    if (d !== undefined) {
      note(`${ctx.task.name.slice(0, 40)}…: process logs in ${d.dumpLogs(ctx.task.result?.state === 'fail' ? 'failed' : 'passed')}`);
      await d.stop();
    }
    d = undefined;
  }, 30_000);

  /** Every job state event published from now on. */
  function recordStates(dep: ClusterDeployment): void {
    states = [];
    stateSub = dep.client.subscribe('weir.jobs.*.state', {
      callback: (_err, msg) => {
        const event = decode(jobStateEventSchema, msg.data);
        if (event.ok) states.push(event.value);
      },
    });
  }

  it('kill one NATS node, then the node that leads the jobs bucket: everything carries on after the Raft election', async () => {
    const dep = (d = await ClusterDeployment.start({ leaseTtlMs: 10_000 }));
    await Promise.all([dep.controller('c1'), dep.controller('c2')]);
    await Promise.all([dep.worker('w1', 8), dep.worker('w2', 8)]);
    const shares = await dep.sharesSettled(['c1', 'c2']);
    note(`controllers settled: ${shares.data.map((c) => `${c.controller_id} ${c.shards} shards`).join(', ')}`);
    recordStates(dep);

    const jobs: string[] = [];
    for (let i = 0; i < 4; i++) jobs.push(await dep.create(impulseCountPipeline({ name: `failover-${i}`, rate: 50, checkpointIntervalMs: 1_000 })));
    const before = new Map<string, JobView>();
    for (const job of jobs) before.set(job, await dep.reach(job, 'Running'));
    note(`jobs Running: ${jobs.map((j) => `${j} owner ${before.get(j)!.owner} gen ${before.get(j)!.generation}`).join('; ')}`);
    for (const job of jobs) expect(['c1', 'c2']).toContain(before.get(job)!.owner);

    /** Waits until every job has completed a checkpoint begun after `sinceMicros`. */
    const checkpointsAfter = (sinceMicros: number, timeoutMs: number) =>
      Promise.all(
        jobs.map((job) =>
          eventually(
            async () => {
              const fresh = (await dep.checkpoints(job)).filter((c) => c.status === 'ready' && c.start_time > sinceMicros);
              expect(fresh.length, `${job}: a ready checkpoint begun after the kill`).toBeGreaterThan(0);
              return fresh[0]!;
            },
            { timeoutMs, intervalMs: 500 },
          ),
        ),
      );
    /** Every job Running at the generation and restart count it had at first. */
    const expectUnchanged = async () => {
      for (const job of jobs) {
        const v = await eventually(() => dep.view(job), { timeoutMs: 15_000, intervalMs: 250 });
        const b = before.get(job)!;
        expect({ job, state: v.state, generation: v.generation, restarts: v.restarts }).toEqual({ job, state: 'Running', generation: b.generation, restarts: b.restarts });
        if (v.owner !== b.owner) note(`${job}: owner ${b.owner} → ${v.owner}`);
      }
    };
    await checkpointsAfter(0, 20_000);

    // 1. A node that does not lead the jobs bucket.
    const firstLeader = await dep.leaderOf(JOBS_STREAM);
    const follower = (firstLeader + 1) % dep.cluster.nodes.length;
    note(`${JOBS_STREAM} led by ${dep.cluster.names[firstLeader]}; killing ${dep.cluster.names[follower]}`);
    const firstKillAt = nowMicros();
    await dep.cluster.nodes[follower]!.kill();
    await sleep(3_000);
    await checkpointsAfter(firstKillAt, 30_000);
    await expectUnchanged();
    note('one node down: jobs Running, checkpoints go on; restarting it');
    await dep.cluster.nodes[follower]!.restart();
    await dep.allStreamsCurrent(45_000);
    note('every stream current on all three nodes again');

    // 2. The node that leads the jobs bucket now: its Raft group elects another leader.
    const leader = await dep.leaderOf(JOBS_STREAM);
    note(`${JOBS_STREAM} led by ${dep.cluster.names[leader]}; killing it`);
    const secondKillAt = nowMicros();
    await dep.cluster.nodes[leader]!.kill();
    const newLeader = await dep.leaderOf(JOBS_STREAM, 30_000);
    expect(newLeader).not.toBe(leader);
    note(`${JOBS_STREAM} now led by ${dep.cluster.names[newLeader]}`);

    const fresh = await checkpointsAfter(secondKillAt, 45_000);
    note(`checkpoints after the leader's loss: ${fresh.map((c, i) => `${jobs[i]} epoch ${c.epoch} gen ${c.generation}`).join('; ')}`);
    await expectUnchanged();
    for (const [i, c] of fresh.entries()) expect(c.generation, jobs[i]).toBe(before.get(jobs[i]!)!.generation);

    const created = await dep.create(impulseCountPipeline({ name: 'after-failover', rate: 50, checkpointIntervalMs: 1_000 }), 15_000);
    const createdView = await dep.reach(created, 'Running', 30_000);
    note(`a job created after the failover is Running, owner ${createdView.owner}`);
    expect(['c1', 'c2']).toContain(createdView.owner);

    // No job of the first four left Running at any time (events seen by this client).
    const changes = states.filter((s) => jobs.includes(s.job_id) && s.state !== 'Running');
    expect(changes.map((s) => `${s.job_id} ${s.state}`)).toEqual([]);
    for (const p of [...dep.controllers.values(), ...dep.workers.values()]) expect(p.running, `${p.name} still runs`).toBe(true);
  }, 110_000);

  it('the exactly-once pipeline runs with 2 controllers while controllers, workers and NATS nodes are killed at random, and its output is exact', async () => {
    const seed = Number(process.env['WEIR_FAULT_SEED'] ?? Math.floor(Math.random() * 2 ** 31));
    note(`fault seed ${seed} (WEIR_FAULT_SEED=${seed} replays this schedule)`);
    const random = seededRandom(seed);
    const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
    const between = (lo: number, hi: number) => Math.round(lo + random() * (hi - lo));

    const dep = (d = await ClusterDeployment.start({ leaseTtlMs: 10_000 }));
    // The sink's stream, replicated like everything else (the sink would create it with one replica).
    const jsm = await jetstreamManager(dep.client);
    await jsm.streams.add({ name: 'EXACT', subjects: ['exact.counts'], num_replicas: 3, duplicate_window: 600_000_000_000 });
    await Promise.all([dep.controller('c1'), dep.controller('c2')]);
    await Promise.all([dep.worker('w1'), dep.worker('w2'), dep.worker('w3')]);
    await dep.sharesSettled(['c1', 'c2']);
    recordStates(dep);

    const events = 3_000;
    const jobId = await dep.create(exactlyOncePipeline({ events, subject: 'exact.counts', stream: 'EXACT', rate: 150, checkpointIntervalMs: 500 }));
    const first = await dep.reach(jobId, 'Running');
    note(`job ${jobId} Running, owner ${first.owner}`);

    // Each kind once, in a random order, then two more of any kind.
    const kinds: ('controller' | 'worker' | 'nats')[] = ['controller', 'worker', 'nats'];
    for (let i = kinds.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [kinds[i], kinds[j]] = [kinds[j]!, kinds[i]!];
    }
    kinds.push(pick(['controller', 'worker', 'nats'] as const), pick(['controller', 'worker', 'nats'] as const));

    let nodeDown: Promise<void> = Promise.resolve();
    const done: string[] = [];
    for (const kind of kinds) {
      await sleep(between(1_000, 2_000));
      const now = await dep.view(jobId).catch(() => null);
      if (now?.state === 'Finished') {
        note('the job finished before every fault was made');
        break;
      }
      if (kind === 'controller') {
        const id = pick(['c1', 'c2']);
        note(`fault: SIGKILL controller ${id}${now?.owner === id ? ' (the owner)' : ''}; job ${now?.state ?? '?'} gen ${now?.generation ?? '?'}`);
        await dep.controllers.get(id)!.kill('SIGKILL');
        await dep.controller(id);
        done.push(`controller ${id}`);
      } else if (kind === 'worker') {
        const id = pick(['w1', 'w2', 'w3']);
        note(`fault: SIGKILL worker ${id}; job ${now?.state ?? '?'} gen ${now?.generation ?? '?'}`);
        await dep.workers.get(id)!.kill('SIGKILL');
        await dep.worker(id);
        done.push(`worker ${id}`);
      } else {
        // At most one node down: the previous one is back and caught up first.
        await nodeDown;
        await dep.allStreamsCurrent(45_000);
        const node = between(0, dep.cluster.nodes.length - 1);
        const downMs = between(1_500, 3_000);
        note(`fault: kill NATS node ${dep.cluster.names[node]} for ${downMs} ms; job ${now?.state ?? '?'} gen ${now?.generation ?? '?'}`);
        await dep.cluster.nodes[node]!.kill();
        nodeDown = sleep(downMs).then(() => dep.cluster.nodes[node]!.restart());
        done.push(`NATS node ${dep.cluster.names[node]}`);
      }
    }
    await nodeDown;
    note(`faults made: ${done.join(', ')}`);

    const finished = await dep.reach(jobId, 'Finished', 90_000);
    note(`job Finished at generation ${finished.generation} after ${finished.restarts} restarts; owner ${finished.owner}`);
    note(`states seen: ${states.filter((s) => s.job_id === jobId).map((s) => s.state).join(' → ')}`);
    const rows = await streamRows(dep.client, 'EXACT');
    const defects = countDefects(rows, events);
    if (defects.length > 0) note(`output defects: ${JSON.stringify(defects).slice(0, 2_000)}`);
    expectExactCounts(rows, events);
  }, 115_000);
});
