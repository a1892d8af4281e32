/**
 * weir on real processes against a real 3-node JetStream cluster, for failover tests: `weir controller`
 * processes with stable ids and `weir worker` processes, every one given all the servers' URLs and
 * `--replicas 3`, killed (SIGKILL) and started again under the same id at will; the cluster's nodes killed
 * and restarted; a client on every server that talks to weir over NATS only, and that can ask JetStream
 * which node leads a stream.
 */
import { jetstreamManager, type StreamInfo } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'vitest';
import type { JobState } from '../../machines/job/types.js';
import {
  jobCheckpointsReplySchema,
  jobViewSchema,
  listControllersReplySchema,
  subjects,
  type Checkpoint,
  type JobView,
  type ListControllersReply,
} from '../../src/protocol/index.js';
import { requestJson, untilState, type Reply } from './cluster.js';
import { eventually } from './nats.js';
import { startNatsCluster, type NatsClusterHandle } from './nats-cluster.js';
import { killAll, WeirProcess } from './processes.js';

export interface ClusterDeploymentOptions {
  /** Default 3. */
  nodes?: number;
  /** Replicas of every bucket and stream weir creates. Default 3. */
  replicas?: number;
  /** The controllers' shard lease TTL. Default 10,000 ms: more than a Raft election on NATS 2.9. */
  leaseTtlMs?: number;
  /** A worker silent this long is lost. Default 4,000 ms: more than a client's reconnect to another node. */
  heartbeatTimeoutMs?: number;
  /** Default 500 ms. */
  heartbeatIntervalMs?: number;
  /** Extra `weir controller` flags. */
  controllerArgs?: string[];
  /** Environment of every weir process. */
  env?: Record<string, string>;
}

/** Milliseconds since the test began, for progress lines. */
const t0 = Date.now();
export const elapsed = (): string => `${((Date.now() - t0) / 1_000).toFixed(1)}s`;

export class ClusterDeployment {
  /** Every weir process started, dead or alive, in order of start. */
  readonly history: WeirProcess[] = [];
  /** The live incarnation of each controller and worker, by id. */
  readonly controllers = new Map<string, WeirProcess>();
  readonly workers = new Map<string, WeirProcess>();

  private constructor(
    readonly cluster: NatsClusterHandle,
    readonly client: NatsConnection,
    private readonly options: ClusterDeploymentOptions,
  ) {}

  static async start(options: ClusterDeploymentOptions = {}): Promise<ClusterDeployment> {
    const cluster = await startNatsCluster(options.nodes ?? 3);
    try {
      const client = await connect({ servers: cluster.urls.split(','), name: 'failover-test-client', maxReconnectAttempts: -1, reconnectTimeWait: 100, waitOnFirstConnect: true });
      return new ClusterDeployment(cluster, client, options);
    } catch (err) {
      await cluster.dispose();
      throw err;
    }
  }

  private spawn(id: string, args: readonly string[]): WeirProcess {
    const incarnation = this.history.filter((p) => p.name.split('#')[0] === id).length + 1;
    const p = new WeirProcess(`${id}#${incarnation}`, [...args, '--nats', this.cluster.urls, '--replicas', String(this.options.replicas ?? 3)], this.options.env);
    this.history.push(p);
    return p;
  }

  /** Starts the controller `id` (or starts it again, once its previous incarnation is dead) and waits until it logs that it started. */
  async controller(id: string, startedWithinMs = 30_000): Promise<WeirProcess> {
    const previous = this.controllers.get(id);
    if (previous?.running) throw new Error(`controller ${id} still runs: kill it first`);
    const p = this.spawn(id, [
      'controller',
      '--id',
      id,
      '--lease-ttl',
      String(this.options.leaseTtlMs ?? 10_000),
      '--heartbeat-timeout',
      String(this.options.heartbeatTimeoutMs ?? 4_000),
      '--heartbeat-interval',
      String(this.options.heartbeatIntervalMs ?? 500),
      ...(this.options.controllerArgs ?? []),
    ]);
    this.controllers.set(id, p);
    await p.waitForLog('controller started', {}, startedWithinMs);
    return p;
  }

  /** Starts the worker `id` (or starts it again under the same id) and waits until a controller registered it. */
  async worker(id: string, slots = 4, registeredWithinMs = 30_000): Promise<WeirProcess> {
    const previous = this.workers.get(id);
    if (previous?.running) throw new Error(`worker ${id} still runs: kill it first`);
    const p = this.spawn(id, ['worker', '--id', id, '--slots', String(slots)]);
    this.workers.set(id, p);
    await p.waitForLog('registered with the controller', {}, registeredWithinMs);
    return p;
  }

  request(subject: string, body: unknown, timeoutMs = 5_000): Promise<Reply> {
    return requestJson(this.client, subject, body, timeoutMs);
  }

  /** Creates a job; fails the test on an error reply. */
  async create(pipeline: unknown, timeoutMs = 10_000): Promise<string> {
    const reply = await this.request(subjects.apiJobsCreate(), pipeline, timeoutMs);
    expect(reply.error, JSON.stringify(reply.error)).toBeUndefined();
    return reply['job_id'] as string;
  }

  async view(jobId: string): Promise<JobView> {
    const reply = await this.request(subjects.apiJobGet(jobId), { v: 1 });
    if (reply.error !== undefined) throw new Error(`get ${jobId}: ${JSON.stringify(reply.error)}`);
    return jobViewSchema.parse(reply);
  }

  /** Polls the job (the owner may be failing over) until it is in `state` and `extra` holds. */
  reach(jobId: string, state: JobState, timeoutMs = 30_000, extra: (v: JobView) => boolean = () => true): Promise<JobView> {
    return untilState(() => this.view(jobId), state, { timeoutMs, intervalMs: 200 }, (v) => expect(extra(v), JSON.stringify(v)).toBe(true));
  }

  /** The job's checkpoints as `weir.api.jobs.<id>.checkpoints` answers, newest first. */
  async checkpoints(jobId: string): Promise<Checkpoint[]> {
    const reply = await this.request(subjects.apiJobCheckpoints(jobId), { v: 1 });
    if (reply.error !== undefined) throw new Error(`checkpoints of ${jobId}: ${JSON.stringify(reply.error)}`);
    return jobCheckpointsReplySchema.parse(reply).data;
  }

  /** The newest `ready` checkpoint's epoch, 0 when none. */
  async lastReadyEpoch(jobId: string): Promise<number> {
    return Math.max(0, ...(await this.checkpoints(jobId)).filter((c) => c.status === 'ready').map((c) => c.epoch));
  }

  async controllerList(): Promise<ListControllersReply> {
    const reply = await this.request(subjects.apiControllersList(), { v: 1 });
    if (reply.error !== undefined) throw new Error(`controllers list: ${JSON.stringify(reply.error)}`);
    return listControllersReplySchema.parse(reply);
  }

  /** Waits until every controller named holds shards (the fair share is reached within one lease period). */
  sharesSettled(ids: readonly string[], timeoutMs = 30_000): Promise<ListControllersReply> {
    return eventually(
      async () => {
        const list = await this.controllerList();
        for (const id of ids) expect(list.data.find((c) => c.controller_id === id)?.shards ?? 0, `${id}'s shards: ${JSON.stringify(list.data)}`).toBeGreaterThan(0);
        expect(list.data.reduce((n, c) => n + (c.live ? c.shards : 0), 0), JSON.stringify(list.data)).toBe(list.shards);
        return list;
      },
      { timeoutMs, intervalMs: 500 },
    );
  }

  // ─── The cluster ─────────────────────────────────────────────────────────────────────────────

  async streamInfo(stream: string, timeoutMs = 2_000): Promise<StreamInfo> {
    const jsm = await jetstreamManager(this.client, { timeout: timeoutMs });
    return jsm.streams.info(stream);
  }

  /** The index in `cluster.nodes` of the node that leads `stream` now (retried while an election runs). */
  leaderOf(stream: string, timeoutMs = 20_000): Promise<number> {
    return eventually(
      async () => {
        const leader = (await this.streamInfo(stream)).cluster?.leader;
        const index = this.cluster.names.indexOf(leader ?? '');
        expect(index, `leader of ${stream}: ${leader}`).toBeGreaterThanOrEqual(0);
        return index;
      },
      { timeoutMs, intervalMs: 250 },
    );
  }

  /**
   * Waits until every stream has a leader and every replica of it is current and online, so that losing
   * any one node leaves a quorum that holds every acknowledged write (after a node's restart it must catch up first).
   */
  allStreamsCurrent(timeoutMs = 30_000): Promise<string[]> {
    return eventually(
      async () => {
        const jsm = await jetstreamManager(this.client, { timeout: 2_000 });
        const names: string[] = [];
        for await (const info of jsm.streams.list()) {
          const { name } = info.config;
          const cluster = info.cluster;
          expect(cluster?.leader, `${name} has no leader`).toBeTruthy();
          const replicas = cluster?.replicas ?? [];
          expect(replicas.length, `${name}: ${JSON.stringify(cluster)}`).toBe((info.config.num_replicas ?? 1) - 1);
          for (const r of replicas) expect(r.current && !r.offline, `${name}: replica ${r.name} ${JSON.stringify(r)}`).toBe(true);
          names.push(name);
        }
        return names;
      },
      { timeoutMs, intervalMs: 250 },
    );
  }

  /**
   * Which node each live weir process is connected to now (by its client connection's peer port, from
   * `ss`), by process name; null for a process with no connection to any node.
   */
  connections(): Map<string, string | null> {
    const portToNode = new Map(this.cluster.nodes.map((n, i) => [String(n.port), this.cluster.names[i]!]));
    let table = '';
    try {
      table = execFileSync('ss', ['-tnpH', 'state', 'established'], { encoding: 'utf8' });
    } catch {
      return new Map();
    }
    const byPid = new Map<number, string>();
    for (const line of table.split('\n')) {
      const pid = /pid=(\d+)/.exec(line)?.[1];
      const peer = line.trim().split(/\s+/)[3]?.split(':').at(-1);
      const node = peer === undefined ? undefined : portToNode.get(peer);
      if (pid !== undefined && node !== undefined) byPid.set(Number(pid), node);
    }
    const out = new Map<string, string | null>();
    for (const p of this.history) if (p.running && p.pid !== undefined) out.set(p.name, byPid.get(p.pid) ?? null);
    return out;
  }

  /** The live processes connected to the node `index` now. */
  connectedTo(index: number): string[] {
    const name = this.cluster.names[index];
    return [...this.connections()].filter(([, node]) => node === name).map(([p]) => p);
  }

  // ─── Diagnostics and teardown ────────────────────────────────────────────────────────────────

  /** Writes every process's output to a directory under the temp dir; returns it. */
  dumpLogs(label: string): string {
    const dir = join(tmpdir(), `weir-failover-${label}-${Date.now()}`);
    mkdirSync(dir, { recursive: true });
    for (const p of this.history) writeFileSync(join(dir, `${p.name.replace('#', '.')}.log`), p.output());
    return dir;
  }

  async stop(): Promise<void> {
    await killAll(this.history);
    await this.client.close().catch(() => undefined);
    await this.cluster.dispose();
  }
}

/** mulberry32: a small seeded generator, so a failing fault schedule can be run again from its seed. */
export function seededRandom(seed: number): () => number {
  let state = seed | 0;
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}
