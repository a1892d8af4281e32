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
import { alive, killAll, WeirProcess } from './processes.js';

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
  /** The controllers' WEIR_LOG_LEVEL. Default debug: their logs are what a failed failover test is read from. */
  controllerLogLevel?: string;
}

/** How often a controller or worker that exits before it is ready is started again, as a supervisor would. */
const START_ATTEMPTS = 4;

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
    let client: NatsConnection | undefined;
    try {
      client = await connect({ servers: cluster.urls.split(','), name: 'failover-test-client', maxReconnectAttempts: -1, reconnectTimeWait: 100, waitOnFirstConnect: true });
      // JetStream answers once its meta group has a leader; a stream of `replicas` also needs that many nodes to have joined.
      const replicas = options.replicas ?? 3;
      const jsm = await jetstreamManager(client, { timeout: 2_000 });
      await eventually(
        async () => {
          await jsm.streams.add({ name: 'PLACEMENT_PROBE', subjects: ['placement.probe'], num_replicas: replicas });
          await jsm.streams.delete('PLACEMENT_PROBE');
        },
        { timeoutMs: 20_000, intervalMs: 250 },
      );
      return new ClusterDeployment(cluster, client, options);
    } catch (err) {
      await client?.close().catch(() => undefined);
      await cluster.dispose();
      throw err;
    }
  }

  private spawn(id: string, args: readonly string[], env: Record<string, string> = {}): WeirProcess {
    const incarnation = this.history.filter((p) => p.name.split('#')[0] === id).length + 1;
    const p = new WeirProcess(`${id}#${incarnation}`, [...args, '--nats', this.cluster.urls, '--replicas', String(this.options.replicas ?? 3)], { ...this.options.env, ...env });
    this.history.push(p);
    return p;
  }

  /**
   * Processes that exited before they were ready and were started again, as a supervisor (Compose's
   * `restart: unless-stopped`) would: their names and last log line.
   */
  readonly failedStarts: string[] = [];

  /** Spawns `id` until an incarnation logs `ready` (a supervisor's restarts), at most START_ATTEMPTS times. */
  private async startUntilReady(id: string, spawn: () => WeirProcess, ready: string, withinMs: number, registry: Map<string, WeirProcess>): Promise<WeirProcess> {
    for (let attempt = 1; ; attempt++) {
      const p = spawn();
      registry.set(id, p);
      const exited = p.exited.then(() => 'exited' as const);
      const readied = p.waitForLog(ready, {}, withinMs).then(
        () => 'ready' as const,
        (err: unknown) => ({ err }),
      );
      const outcome = await Promise.race([readied, exited]);
      if (outcome === 'ready') return p;
      if (outcome !== 'exited') throw outcome.err;
      const last = p.output().trim().split('\n').at(-1) ?? '';
      this.failedStarts.push(`[${elapsed()}] ${p.name} exited before it was ready: ${last.slice(0, 400)}`);
      if (attempt >= START_ATTEMPTS) throw new Error(`${id} did not start in ${START_ATTEMPTS} attempts; the last: ${last}`);
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }

  /** Starts the controller `id` (or starts it again, once its previous incarnation is dead) and waits until it logs that it started. */
  async controller(id: string, startedWithinMs = 30_000): Promise<WeirProcess> {
    const previous = this.controllers.get(id);
    if (previous?.running) throw new Error(`controller ${id} still runs: kill it first`);
    const args = [
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
    ];
    const env = { WEIR_LOG_LEVEL: this.options.controllerLogLevel ?? 'debug' };
    return this.startUntilReady(id, () => this.spawn(id, args, env), 'controller started', startedWithinMs, this.controllers);
  }

  /** Starts the worker `id` (or starts it again under the same id) and waits until a controller registered it. */
  async worker(id: string, slots = 4, registeredWithinMs = 30_000): Promise<WeirProcess> {
    const previous = this.workers.get(id);
    if (previous?.running) throw new Error(`worker ${id} still runs: kill it first`);
    return this.startUntilReady(id, () => this.spawn(id, ['worker', '--id', id, '--slots', String(slots)]), 'registered with the controller', registeredWithinMs, this.workers);
  }

  request(subject: string, body: unknown, timeoutMs = 5_000): Promise<Reply> {
    return requestJson(this.client, subject, body, timeoutMs);
  }

  /**
   * A request to one controller, outside the queue group, on the subject on which it takes the requests
   * other controllers forward to it (`weir.ctl.controllers.<id>.api.<subject>`): who answers what.
   */
  askController(id: string, subject: string, body: unknown, timeoutMs = 3_000): Promise<Reply> {
    return this.request(`weir.ctl.controllers.${id}.api.${subject}`, body, timeoutMs);
  }

  /**
   * For diagnosis: what each controller answers, itself, about the fleet and about each job. A controller
   * that does not own a job holds a request forwarded to it until the job has an owner, so only owners answer
   * a job's get within the 3 s allowed here.
   */
  async diagnose(jobs: readonly string[]): Promise<string[]> {
    const lines: string[] = [];
    const noReply = (err: unknown): Reply => ({ error: { code: 'no reply', message: String(err) } });
    const short = (r: Reply) =>
      r.error !== undefined ? `error ${r.error.code}: ${r.error.message}` : `${JSON.stringify(r['state'])} gen ${JSON.stringify(r['generation'])} owner ${JSON.stringify(r['owner'])}`;
    await Promise.all(
      [...this.controllers.keys()].map(async (id) => {
        const list = await this.askController(id, subjects.apiControllersList(), { v: 1 }).catch(noReply);
        const fleet = list.error !== undefined ? `error ${list.error.code}` : (list['data'] as { controller_id: string; shards: number; live: boolean; presence_age_ms: number | null }[]).map((c) => `${c.controller_id}: ${c.shards} shards, ${c.live ? 'live' : 'not live'}, presence ${c.presence_age_ms} ms old`).join('; ');
        lines.push(`${id} sees the fleet as: ${fleet}`);
        await Promise.all(
          jobs.map(async (job) => {
            const t = Date.now();
            const reply = await this.askController(id, subjects.apiJobGet(job), { v: 1 }).catch(noReply);
            lines.push(`${id} on ${job}: ${short(reply)} (${Date.now() - t} ms)`);
          }),
        );
      }),
    );
    return lines.sort();
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

  /** Asks the leader of `stream` to step down, so that its Raft group elects another (JetStream API). */
  async stepDown(stream: string): Promise<void> {
    const reply = await this.client.request(`$JS.API.STREAM.LEADER.STEPDOWN.${stream}`, undefined, { timeout: 5_000 });
    const body = reply.json<{ success?: boolean; error?: unknown }>();
    if (body.success !== true) throw new Error(`step down of ${stream}: ${JSON.stringify(body)}`);
  }

  /**
   * Samples, every `intervalMs`, who leads each of `streams` and which node each process is connected to,
   * and keeps a line whenever that changes: a timeline to read when a test fails.
   */
  timeline(streams: readonly string[], intervalMs = 500): { lines: string[]; stop: () => Promise<void> } {
    const lines: string[] = [];
    let stopped = false;
    // Worker heartbeats as this client sees them: a silence of more than 2 s is noted.
    const lastBeat = new Map<string, number>();
    const beats = this.client.subscribe('weir.ctl.workers.*.heartbeat', {
      callback: (_err, msg) => {
        const worker = msg.subject.split('.')[3] ?? '?';
        const now = Date.now();
        const last = lastBeat.get(worker);
        if (last !== undefined && now - last > 2_000) lines.push(`[${elapsed()}] the test client heard no heartbeat of ${worker} for ${now - last} ms`);
        lastBeat.set(worker, now);
      },
    });
    const done = (async () => {
      let last = '';
      while (!stopped) {
        const leaders = await Promise.all(streams.map((s) => this.streamInfo(s, 1_000).then((i) => `${s}@${i.cluster?.leader ?? 'none'}`, () => `${s}@?`)));
        const conns = [...this.connections()].map(([p, n]) => `${p}→${n ?? '-'}`);
        const down = this.cluster.nodes.flatMap((n, i) => (n.pid === 0 || !alive(n.pid) ? [this.cluster.names[i]!] : []));
        const client = this.cluster.names[this.cluster.nodes.findIndex((n) => this.client.getServer().endsWith(`:${n.port}`))] ?? '?';
        const line = `leaders ${leaders.join(' ')} | down [${down.join(' ')}] | ${conns.join(' ')} test-client→${client}`;
        if (line !== last) lines.push(`[${elapsed()}] ${line}`);
        last = line;
        await new Promise((resolve) => setTimeout(resolve, intervalMs));
      }
    })();
    return {
      lines,
      stop: async () => {
        stopped = true;
        beats.unsubscribe();
        await done;
      },
    };
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
