/**
 * Controller failover at scale: `npm run bench:failover [-- --jobs N --lease-ttl MS]`.
 *
 * Real nats-servers (the test harness's, on free ports with their own stores), `weir controller` processes
 * (built, as bench:controller runs them) and simulated workers in this process (the test kit's SimWorker):
 * they register (again, listing what runs on them, when a heartbeat is answered `unknown_worker`), heartbeat
 * every subtask they host (a new owner re-attaches to a job's tasks from those heartbeats), acknowledge
 * requests, report every subtask started and complete every checkpoint (empty state) as soon as its barrier
 * request arrives: as real workers do. Jobs are one source and one sink subtask, checkpointing periodically.
 * Three phases, each on a fresh nats-server:
 *
 * 1. Failover. Controllers c1 and c2 share N jobs. Once every job runs and both own jobs, the one owning
 *    more is SIGKILLed. For each job it owned, from the kill until:
 *    - the survivor holds the job's shard lease (what the `owner` of a job view reads; from the leases bucket);
 *    - the survivor has claimed the job's status (its first write as the job's owner; from the jobs bucket);
 *    - the survivor stored the job Running with no wait: re-attached to its tasks, checkpoints armed (the goal:
 *      every job within TTL + 1 s);
 *    - the job is owned by the survivor AND has a durable checkpoint record at an epoch after the kill (above
 *      every epoch whose barrier a worker received before it): the takeover time, p50/p99/max beside the TTL.
 *    Tasks restarted: start requests the workers received after the kill for those jobs, beside stop
 *    requests and changed generations; all must be 0. The survivor's CPU (/proc/<pid>/stat, % of one core)
 *    over a window before the kill, over the takeover (the kill → the last job taken over; a takeover that
 *    makes no progress for 30 s and two checkpoint intervals is reported as stalled) and over a window once
 *    it settled with all N jobs; beside it, the nats-server's and this process's CPU, and how late the
 *    controllers' lease renewals landed. Last, one pass over `weir.api.jobs.list` checks that every job
 *    names the survivor as owner and is Running at its generation.
 * 2. One controller with N jobs: its CPU at steady state.
 * 3. Two controllers with N jobs each (2N): each one's CPU at steady state. Reported as the ratio of the
 *    mean per-controller CPU at 2N to the single controller's at N (goal ≤ 1.1×).
 *
 *   --jobs N                 jobs of the failover phase, and per controller in the scale phases (env BENCH_JOBS, default 1000)
 *   --lease-ttl MS           the controllers' shard lease TTL (default 2000)
 *   --heartbeat-interval MS  how often workers heartbeat (default 5000, the controller's default). Every controller
 *                            hears every worker, so each one's heartbeat work grows with the whole fleet: at 1 s it
 *                            is five times what it is in production. A takeover reads the reports already heard,
 *                            so it does not wait for the next heartbeat.
 *   --checkpoint-interval MS each job's checkpoint interval (default 5000, or 2N ms above 2,500 jobs, so that the
 *                            largest phase, 2N jobs, starts at most 1,000 checkpoints a second: 20 s at 10,000 jobs,
 *                            the load of bench:controller at 10,000 jobs, which one controller alone takes a third
 *                            of a core for; a re-attached job's first checkpoint is due an interval after the earlier
 *                            owner began its newest, so the time to a checkpoint grows with the interval)
 *   --window S               length of each steady-state CPU window (default 15)
 *   --workers W              simulated workers (default: 4, or one per 1,000 jobs of the largest phase, so that
 *                            a heartbeat stays far below NATS's 1 MiB message limit)
 *   --skip-scale             the failover phase alone
 *   --skip-failover          the scale phases alone
 *
 * The controllers inherit the environment; BENCH_CONTROLLER_NODE_OPTIONS adds Node flags to them, and
 * BENCH_CONTROLLER_LOG_LEVEL sets their log level (default warn). Their output goes to files in a temporary
 * directory (printed); their warnings and errors are counted.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, openSync, closeSync, readFileSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { jetstream } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { CHECKPOINTS_KV_BUCKET, JOBS_KV_BUCKET, RESTORABLE_STATUSES, subjects, type ListControllersReply, type ListJobsReply, type RecordStatus } from '../src/protocol/index.js';
import { LEASES_BUCKET } from '../src/controller/shard-leases.js';
import { DEFAULT_HEARTBEAT_INTERVAL_MS } from '../src/controller/worker-service.js';
import { forwardPrefix } from '../src/controller/request-router.js';
import { shardOf } from '../src/controller/shards.js';
import { startNatsServer, type NatsServerHandle } from '#test-kit/nats-server.js';
import { impulseToSinkPipeline } from '#test-kit/pipelines.js';
import { SimWorker } from '#test-kit/sim-worker.js';
import { cpuSeconds, positiveIntArg, quantiles, round, rssMiB, type Quantiles } from './support.js';

const GOALS = { scaleRatio: 1.1 } as const;
const SHARDS = 128;
/** Jobs created at once. */
const CREATE_CONCURRENCY = 32;
/** How long the takeover may take before the bench gives up on it and reports what it saw. */
const TAKEOVER_DEADLINE_MS = 240_000;
/** A takeover that has not progressed for this long (beside two checkpoint intervals) is given up on too. */
const TAKEOVER_STALL_MS = 30_000;
const enc = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));
const dec = (d: Uint8Array) => JSON.parse(new TextDecoder().decode(d)) as Record<string, unknown>;

interface Options {
  jobs: number;
  leaseTtlMs: number;
  heartbeatIntervalMs: number;
  checkpointIntervalMs: number;
  windowS: number;
  workers: number;
  skipScale: boolean;
  skipFailover: boolean;
}

function options(argv: string[]): Options {
  const value = (name: string, fallback: number) => positiveIntArg(argv, name, fallback);
  const jobs = value('--jobs', Number(process.env['BENCH_JOBS'] ?? 1000));
  return {
    jobs,
    leaseTtlMs: value('--lease-ttl', 2_000),
    heartbeatIntervalMs: value('--heartbeat-interval', DEFAULT_HEARTBEAT_INTERVAL_MS),
    checkpointIntervalMs: value('--checkpoint-interval', Math.max(5_000, 2 * jobs)),
    windowS: value('--window', 15),
    workers: value('--workers', Math.max(4, Math.ceil((2 * jobs) / 1_000))),
    skipScale: argv.includes('--skip-scale'),
    skipFailover: argv.includes('--skip-failover'),
  };
}

const fmtQ = (q: Quantiles) => (q.n === 0 ? 'none' : `p50 ${round(q.p50, 0)} ms, p99 ${round(q.p99, 0)} ms, max ${round(q.max, 0)} ms`);
const pct = (n: number) => `${round(n)} %`;

// ─── A controller process ───────────────────────────────────────────────────────────────────────────

/** `weir controller` (built) in a process of its own, its output in a file. */
class ControllerProcess {
  readonly child: ChildProcess;
  readonly exited: Promise<void>;

  constructor(
    readonly id: string,
    readonly logFile: string,
    url: string,
    opts: Options,
  ) {
    const extra = (process.env['BENCH_CONTROLLER_NODE_OPTIONS'] ?? '').split(' ').filter((a) => a !== '');
    const out = openSync(logFile, 'a');
    const args = ['controller', '--id', id, '--lease-ttl', String(opts.leaseTtlMs), '--heartbeat-interval', String(opts.heartbeatIntervalMs), '--nats', url];
    // The built controller, as `npm start` runs it: under tsx, esbuild's keepNames wrappers add heap per job.
    const env = { ...process.env, WEIR_LOG_LEVEL: process.env['BENCH_CONTROLLER_LOG_LEVEL'] ?? 'warn', WEIR_INSPECT: '' };
    this.child = spawn(process.execPath, [...extra, 'bin/weir.js', ...args], { env, stdio: ['ignore', out, out] });
    closeSync(out);
    this.exited = new Promise((resolve) => (this.child.exitCode !== null ? resolve() : this.child.once('exit', () => resolve())));
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** Warnings and errors it logged (pino levels 40 and up), by message with its numbers as N. */
  problems(): Map<string, number> {
    const counts = new Map<string, number>();
    for (const line of readFileSync(this.logFile, 'utf8').split('\n')) {
      if (!line.startsWith('{')) continue;
      try {
        const { level, msg } = JSON.parse(line) as { level?: number; msg?: string };
        if ((level ?? 0) < 40) continue;
        const key = `${level === 40 ? 'warn' : 'error'}: ${(msg ?? '').replace(/\d+/g, 'N')}`;
        counts.set(key, (counts.get(key) ?? 0) + 1);
      } catch {
        // not a log line
      }
    }
    return counts;
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    const killLater = setTimeout(() => this.child.kill('SIGKILL'), 15_000);
    await this.exited;
    clearTimeout(killLater);
  }
}

// ─── One phase: a nats-server, its controllers, simulated workers and what this process watches ─────

interface JobStatus {
  state: string;
  generation: number;
  restarts: number;
  owner: string | undefined;
  /** The status names a wait (reconciling with the workers, say). */
  waiting: boolean;
}

interface PhaseHooks {
  /** A barrier request reached a worker. */
  onBarrier?: (jobId: string, epoch: number) => void;
  /** A job's stored status changed (every PUT of `<job>.status`). */
  onStatus?: (jobId: string, status: JobStatus) => void;
}

interface Window {
  /** By controller id, % of one core. */
  cpuPct: Map<string, number>;
  /** The nats-server's CPU, and this process's (the simulated workers, the watches), % of one core. */
  serverPct: number;
  benchPct: number;
  checkpointsPerSec: number;
}

/** Renewals of one controller's shard leases as this process saw them land. */
interface RenewalGaps {
  renewals: number;
  /** The longest time between two consecutive writes of one lease by its holder. */
  maxGapMs: number;
  /**
   * Gaps longer than the TTL less the holder's margin: for part of each, the holder did not count on the lease
   * (ShardLeases.owns was false), though it held it (approximate: writes as seen land, not as sent).
   */
  lapses: number;
}

class Phase {
  readonly status = new Map<string, JobStatus>();
  readonly controllers = new Map<string, ControllerProcess>();
  /** The jobs of the phase: every job in the store once `createJobs` returns. */
  jobIds: string[] = [];
  /** Create requests answered `unavailable` (each tried again), and jobs in the store no create reply named. */
  createsUnavailable = 0;
  unansweredJobs = 0;
  /** Barrier requests received by the workers so far. */
  barriers = 0;
  /** Every renewal of a shard lease by the controller that held it: when it landed and how long after the previous one. */
  private readonly renewalGaps: { controller: string; at: number; gapMs: number }[] = [];
  private readonly workers: SimWorker[] = [];
  private readonly connections: NatsConnection[] = [];
  private readonly trimmer: NodeJS.Timeout;

  private constructor(
    readonly name: string,
    readonly server: NatsServerHandle,
    readonly nc: NatsConnection,
    private readonly opts: Options,
    private readonly hooks: PhaseHooks,
  ) {
    // The workers keep every request they answered; nothing here reads them.
    this.trimmer = setInterval(() => {
      for (const w of this.workers) {
        w.checkpointRequests.length = 0;
        w.stopRequests.length = 0;
      }
    }, 1_000);
  }

  /** A fresh nats-server, the controllers (each holding its fair share of the shards), then the workers. */
  static async start(name: string, ids: string[], opts: Options, logDir: string, hooks: PhaseHooks = {}, slotsNeeded = opts.jobs): Promise<Phase> {
    const server = await startNatsServer({ jetstream: true });
    const nc = await connect({ servers: server.url, name: `bench-${name}` });
    const phase = new Phase(name, server, nc, opts, hooks);
    try {
      for (const id of ids) phase.controllers.set(id, new ControllerProcess(id, join(logDir, `${name}-${id}.log`), server.url, opts));
      await phase.untilFairShares();
      await phase.watchLeases();
      const slots = Math.ceil((slotsNeeded * 2) / opts.workers) + 16;
      for (let w = 0; w < opts.workers; w++) await phase.addWorker(`sim-${w + 1}`, slots);
      await phase.watchStatuses();
    } catch (err) {
      await phase.close();
      throw err;
    }
    return phase;
  }

  /** Each controller answers on its own subject, and each holds its fair share of the shards. */
  private async untilFairShares(): Promise<void> {
    const fair = SHARDS / this.controllers.size;
    const deadline = performance.now() + 60_000;
    for (;;) {
      try {
        for (const c of this.controllers.values()) {
          if (c.child.exitCode !== null) throw new Error(`controller ${c.id} exited with ${c.child.exitCode}; see ${c.logFile}`);
          await this.nc.request(forwardPrefix(c.id) + subjects.apiControllersList(), enc({ v: 1 }), { timeout: 1_000 });
        }
        const fleet = await this.fleet();
        const live = fleet.data.filter((c) => c.live && this.controllers.has(c.controller_id));
        if (live.length === this.controllers.size && live.every((c) => c.shards === fair)) return;
      } catch (err) {
        if (err instanceof Error && err.message.startsWith('controller ')) throw err;
      }
      if (performance.now() > deadline) throw new Error(`${this.name}: the controllers did not come up with fair shares within 60 s`);
      await sleep(200);
    }
  }

  private async watchLeases(): Promise<void> {
    const kv = await new Kvm(jetstream(this.nc)).open(LEASES_BUCKET);
    const watch = await kv.watch({ key: 'shard.*', include: 'updates' });
    const last = new Map<string, { owner: string | null; at: number }>();
    void (async () => {
      for await (const e of watch) {
        if (e.operation !== 'PUT') continue;
        const owner = e.json<{ owner: string | null }>().owner;
        const at = performance.now();
        const previous = last.get(e.key);
        if (owner !== null && previous?.owner === owner) this.renewalGaps.push({ controller: owner, at, gapMs: at - previous.at });
        last.set(e.key, { owner, at });
      }
    })();
  }

  /** The renewals of `controller`'s leases that landed between `from` and `to` (performance.now()). */
  renewals(controller: string, from = 0, to = Infinity): RenewalGaps {
    const lapseMs = this.opts.leaseTtlMs - Math.min(1_000, Math.floor(this.opts.leaseTtlMs / 10));
    const gaps = this.renewalGaps.filter((g) => g.controller === controller && g.at >= from && g.at <= to);
    return { renewals: gaps.length, maxGapMs: gaps.reduce((m, g) => Math.max(m, g.gapMs), 0), lapses: gaps.filter((g) => g.gapMs > lapseMs).length };
  }

  private async addWorker(workerId: string, slots: number): Promise<void> {
    const nc = await connect({ servers: this.server.url, name: `sim-${workerId}` });
    this.connections.push(nc);
    const worker = new SimWorker(nc, workerId, slots, {
      heartbeats: true,
      heartbeatSubtasks: true,
      reregister: true,
      onCheckpointRequest: ({ job_id, epoch }) => {
        this.barriers++;
        this.hooks.onBarrier?.(job_id, epoch);
      },
    });
    this.workers.push(worker);
    await worker.start();
  }

  private async watchStatuses(): Promise<void> {
    const kv = await new Kvm(jetstream(this.nc)).open(JOBS_KV_BUCKET);
    const watch = await kv.watch({ key: '*.status' });
    void (async () => {
      for await (const e of watch) {
        if (e.operation !== 'PUT') continue;
        const jobId = e.key.slice(0, -'.status'.length);
        const s = e.json<{ state: string; generation: number; restarts: number; owner?: { id: string }; waiting?: unknown }>();
        const status = { state: s.state, generation: s.generation, restarts: s.restarts, owner: s.owner?.id, waiting: s.waiting !== undefined && s.waiting !== null };
        this.status.set(jobId, status);
        this.hooks.onStatus?.(jobId, status);
      }
    })();
  }

  async fleet(): Promise<ListControllersReply> {
    return dec((await this.nc.request(subjects.apiControllersList(), enc({ v: 1 }), { timeout: 5_000 })).data) as unknown as ListControllersReply;
  }

  /**
   * `n` jobs, `CREATE_CONCURRENCY` at a time (a create answered `unavailable` is tried again, as the reply
   * asks), then until every job in the store is Running; returns the seconds taken.
   */
  async createJobs(n: number): Promise<number> {
    const t0 = performance.now();
    let next = 0;
    const answered: string[] = [];
    await Promise.all(
      Array.from({ length: CREATE_CONCURRENCY }, async () => {
        while (next < n) {
          const i = next++;
          const pipeline = impulseToSinkPipeline({ name: `job-${i}`, nodeParallelism: 1, rate: 'max', checkpointIntervalMs: this.opts.checkpointIntervalMs });
          for (let attempt = 1; ; attempt++) {
            const reply = dec((await this.nc.request(subjects.apiJobsCreate(), enc(pipeline), { timeout: 30_000 })).data);
            if (typeof reply['job_id'] === 'string') {
              answered.push(reply['job_id']);
              break;
            }
            const code = (reply['error'] as { code?: string } | undefined)?.code;
            if (code !== 'unavailable' || attempt === 20) throw new Error(`create failed: ${JSON.stringify(reply)}`);
            this.createsUnavailable++;
            await sleep(100);
          }
        }
      }),
    );
    // A create answered `unavailable` may have made its job all the same: the store decides what the phase's jobs are.
    await this.nc.flush();
    await sleep(1_000);
    this.jobIds = [...new Set([...answered, ...this.status.keys()])];
    this.unansweredJobs = this.jobIds.length - answered.length;
    const deadline = performance.now() + 300_000;
    while (this.jobIds.some((id) => this.status.get(id)?.state !== 'Running')) {
      if (performance.now() > deadline) {
        const running = this.jobIds.filter((id) => this.status.get(id)?.state === 'Running').length;
        throw new Error(`${this.name}: only ${running} of ${this.jobIds.length} jobs reached Running`);
      }
      await sleep(100);
    }
    return (performance.now() - t0) / 1000;
  }

  /** Every job has had time for its first checkpoint: from then on every one is cycling. */
  warmUp(): Promise<void> {
    return sleep(2 * this.opts.checkpointIntervalMs + 1_000);
  }

  /**
   * CPU of each of `controllers` over a window of `seconds`, as % of one core, beside the nats-server's and
   * this process's (the simulated workers and the watches), and the checkpoints started meanwhile per second.
   */
  async cpuWindow(controllers: ControllerProcess[], seconds: number): Promise<Window> {
    const usage = () => ({ controllers: controllers.map((c) => cpuSeconds(c.pid)), server: cpuSeconds(this.server.pid), bench: cpuSeconds(process.pid) });
    const before = usage();
    const barriers0 = this.barriers;
    const t0 = performance.now();
    await sleep(seconds * 1000);
    const elapsedS = (performance.now() - t0) / 1000;
    const after = usage();
    const pctOf = (s0: number, s1: number) => ((s1 - s0) / elapsedS) * 100;
    return {
      cpuPct: new Map(controllers.map((c, i) => [c.id, pctOf(before.controllers[i]!, after.controllers[i]!)])),
      serverPct: pctOf(before.server, after.server),
      benchPct: pctOf(before.bench, after.bench),
      checkpointsPerSec: (this.barriers - barriers0) / elapsedS,
    };
  }

  /** Every job as `weir.api.jobs.list` shows it, page by page. */
  async listAll(): Promise<ListJobsReply['data']> {
    const all: ListJobsReply['data'] = [];
    let after: string | undefined;
    for (;;) {
      const reply = dec((await this.nc.request(subjects.apiJobsList(), enc({ v: 1, limit: 100, ...(after === undefined ? {} : { starting_after: after }) }), { timeout: 10_000 })).data) as unknown as ListJobsReply;
      if ((reply as { error?: unknown }).error !== undefined) throw new Error(`list failed: ${JSON.stringify(reply)}`);
      all.push(...reply.data);
      if (!reply.has_more || reply.data.length === 0) return all;
      after = reply.data.at(-1)!.job_id;
    }
  }

  /** Times a worker registered again after a heartbeat was answered `unknown_worker`. */
  reregistrations(): number {
    return this.workers.reduce((n, w) => n + w.reregistrations, 0);
  }

  problems(): Record<string, Record<string, number>> {
    return Object.fromEntries([...this.controllers].map(([id, c]) => [id, Object.fromEntries(c.problems())]));
  }

  async close(): Promise<void> {
    clearInterval(this.trimmer);
    // The controllers first: the workers answer them until they are gone.
    await Promise.all([...this.controllers.values()].map((c) => c.stop()));
    for (const w of this.workers) w.stop();
    await Promise.all(this.connections.map((nc) => nc.close().catch(() => {})));
    await this.nc.close().catch(() => {});
    await this.server.dispose();
  }
}

// ─── Phase 1: failover ──────────────────────────────────────────────────────────────────────────────

interface FailoverResult {
  startupS: number;
  /** Jobs in the store (more than asked for when a create answered `unavailable` made its job anyway). */
  jobs: number;
  createsUnavailable: number;
  unansweredJobs: number;
  jobsBefore: Record<string, number>;
  victim: string;
  survivor: string;
  victimJobs: number;
  /** Victim jobs that completed the takeover (owned and checkpointed) before the deadline. */
  completed: number;
  /** From the kill: the survivor holds the job's shard lease (a job view's `owner`). */
  leaseMs: Quantiles;
  /** From the kill: the survivor claimed the job's status. */
  claimedMs: Quantiles;
  /** From the kill: the survivor stored the job Running with no wait: its tasks adopted, its checkpoints armed. */
  reattachedMs: Quantiles;
  /** From the kill: both of those and a durable checkpoint at an epoch after the kill. */
  takeoverMs: Quantiles;
  /** From the status claim to that checkpoint (due an interval after the earlier owner's newest began; an overdue one within a second). */
  claimToCheckpointMs: Quantiles;
  /** Start requests the workers received after the kill for the victim's jobs (each a task restarted). */
  tasksRestarted: number;
  /** Start requests after the kill for any job. */
  startsAfterKill: number;
  /** Stop requests after the kill for the victim's jobs. */
  stopsAfterKill: number;
  /** Victim jobs whose stored generation or restart count changed. */
  generationsChanged: number;
  survivorCpuPct: { before: number; takeover: number; settled: number };
  takeoverWindowS: number;
  /** The takeover stopped short of every job (none more were taken over for `TAKEOVER_STALL_MS` and two checkpoint intervals). */
  stalled: boolean;
  survivorRssMiB: number;
  checkpointsPerSec: { before: number; settled: number };
  /** The nats-server's and this process's CPU over the same windows. */
  othersPct: { before: { server: number; bench: number }; settled: { server: number; bench: number } };
  /** Jobs that `weir.api.jobs.list` shows Running, owned by the survivor, at their generation from before the kill. */
  listedOk: number;
  listed: number;
  /** Why `weir.api.jobs.list` could not be read to the end, if it could not. */
  listError?: string;
  /** Workers registering again (a heartbeat answered `unknown_worker`): before the kill, and after it. */
  reregistrations: { before: number; after: number };
  /** Lease renewals as seen land: both controllers before the kill, the survivor during the takeover and after it. */
  renewals: Record<string, RenewalGaps>;
  problems: Record<string, Record<string, number>>;
}

async function failoverPhase(opts: Options, logDir: string): Promise<FailoverResult> {
  /** Per job: the highest epoch whose barrier reached a worker. */
  const barrierEpoch = new Map<string, number>();
  let killedAt: number | undefined;
  let survivor = '';
  const victims = new Set<string>();
  const claimedAt = new Map<string, number>();
  const reattachedAt = new Map<string, number>();
  const checkpointedAt = new Map<string, number>();
  const epochAtKill = new Map<string, number>();
  const phase = await Phase.start('failover', ['c1', 'c2'], opts, logDir, {
    onBarrier: (jobId, epoch) => {
      if (epoch > (barrierEpoch.get(jobId) ?? 0)) barrierEpoch.set(jobId, epoch);
    },
    onStatus: (jobId, status) => {
      if (killedAt === undefined || !victims.has(jobId) || status.owner !== survivor) return;
      if (!claimedAt.has(jobId)) claimedAt.set(jobId, performance.now() - killedAt);
      if (!reattachedAt.has(jobId) && status.state === 'Running' && !status.waiting) reattachedAt.set(jobId, performance.now() - killedAt);
    },
  });
  try {
    const { nc } = phase;
    const kvm = new Kvm(jetstream(nc));
    // The durable checkpoint records (keys are slots; each record names its job and epoch).
    const checkpointsKv = await kvm.create(CHECKPOINTS_KV_BUCKET, { history: 1 });
    void (async () => {
      for await (const e of await checkpointsKv.watch({ include: 'updates' })) {
        if (killedAt === undefined || e.operation !== 'PUT') continue;
        const { job_id: jobId, epoch, status } = e.json<{ job_id: string; epoch: number; status: RecordStatus }>();
        if (!victims.has(jobId) || checkpointedAt.has(jobId) || !RESTORABLE_STATUSES.includes(status)) continue;
        if (epoch > (epochAtKill.get(jobId) ?? 0)) checkpointedAt.set(jobId, performance.now() - killedAt);
      }
    })();
    // The shard leases the survivor takes.
    const leaseAt = new Map<number, number>();
    const leasesKv = await kvm.open(LEASES_BUCKET);
    void (async () => {
      for await (const e of await leasesKv.watch({ key: 'shard.*', include: 'updates' })) {
        if (killedAt === undefined || e.operation !== 'PUT') continue;
        const shard = Number(e.key.slice('shard.'.length));
        if (e.json<{ owner: string | null }>().owner === survivor && !leaseAt.has(shard)) leaseAt.set(shard, performance.now() - killedAt);
      }
    })();
    // Start and stop requests to the workers, seen beside them.
    let startsAfterKill = 0;
    let tasksRestarted = 0;
    let stopsAfterKill = 0;
    nc.subscribe('weir.worker.*.start', {
      callback: (_e, m) => {
        if (killedAt === undefined) return;
        startsAfterKill++;
        if (victims.has(String(dec(m.data)['job_id']))) tasksRestarted++;
      },
    });
    nc.subscribe('weir.worker.*.stop', {
      callback: (_e, m) => {
        if (killedAt !== undefined && victims.has(String(dec(m.data)['job_id']))) stopsAfterKill++;
      },
    });
    await nc.flush();

    const startupS = await phase.createJobs(opts.jobs);
    // Both controllers own jobs: the stored statuses name them, and the fleet agrees.
    const owners = new Map<string, number>();
    for (const id of phase.jobIds) owners.set(phase.status.get(id)?.owner ?? '?', (owners.get(phase.status.get(id)?.owner ?? '?') ?? 0) + 1);
    const fleet = await phase.fleet();
    const jobsBefore = Object.fromEntries(fleet.data.map((c) => [c.controller_id, c.jobs]));
    if (!((owners.get('c1') ?? 0) > 0 && (owners.get('c2') ?? 0) > 0)) throw new Error(`the jobs are not spread over both controllers: ${JSON.stringify([...owners])}`);
    for (const [id, n] of owners) if (jobsBefore[id] !== n) console.log(`   note: the statuses give ${id} ${n} jobs, weir.api.controllers.list ${String(jobsBefore[id])}`);
    const victim = (jobsBefore['c1'] ?? 0) >= (jobsBefore['c2'] ?? 0) ? 'c1' : 'c2';
    survivor = victim === 'c1' ? 'c2' : 'c1';
    const victimProcess = phase.controllers.get(victim)!;
    const survivorProcess = phase.controllers.get(survivor)!;
    console.log(`   ${phase.jobIds.length} jobs Running after ${round(startupS)} s; c1 owns ${jobsBefore['c1']}, c2 ${jobsBefore['c2']}`);
    await phase.warmUp();

    const before = await phase.cpuWindow([survivorProcess], opts.windowS);
    const before0 = { generation: new Map<string, [number, number]>() };
    for (const id of phase.jobIds) {
      if (phase.status.get(id)?.owner !== victim) continue;
      victims.add(id);
      const s = phase.status.get(id)!;
      before0.generation.set(id, [s.generation, s.restarts]);
    }

    // The kill: which epochs were begun before it is noted in the same turn.
    const reregistered0 = phase.reregistrations();
    const cpu0 = cpuSeconds(survivorProcess.pid);
    for (const id of victims) epochAtKill.set(id, barrierEpoch.get(id) ?? 0);
    killedAt = performance.now();
    victimProcess.child.kill('SIGKILL');
    console.log(`   ${victim} (${victims.size} jobs) SIGKILLed; ${survivor} survives`);
    const deadline = killedAt + TAKEOVER_DEADLINE_MS;
    const stallMs = TAKEOVER_STALL_MS + 2 * opts.checkpointIntervalMs;
    const done = (id: string) => claimedAt.has(id) && checkpointedAt.has(id) && leaseAt.has(shardOf(id, SHARDS));
    // The takeover's window ends with the last job taken over (or the last one before it stalled).
    let doneCount = 0;
    let progress = { at: killedAt, cpu: cpu0 };
    for (;;) {
      const now = performance.now();
      const count = [...victims].filter(done).length;
      if (count > doneCount) progress = { at: now, cpu: cpuSeconds(survivorProcess.pid) };
      doneCount = count;
      if (doneCount === victims.size || now > deadline || now - progress.at > stallMs) break;
      await sleep(20);
    }
    const takeoverWindowS = (progress.at - killedAt) / 1000;
    const takeoverCpu = ((progress.cpu - cpu0) / Math.max(takeoverWindowS, 0.01)) * 100;
    await victimProcess.exited;
    const stalled = doneCount < victims.size;
    if (stalled) {
      const leased = [...victims].filter((id) => leaseAt.has(shardOf(id, SHARDS))).length;
      console.log(
        `   takeover stalled: ${doneCount} of ${victims.size} jobs owned and checkpointed ${round(takeoverWindowS, 1)} s after the kill, none more in the ` +
          `${round((performance.now() - progress.at) / 1000)} s since (their leases taken: ${leased}; statuses claimed: ${claimedAt.size}; checkpointed: ${checkpointedAt.size})`,
      );
    }

    // Settled: every adopted job's checkpoints cycle again on the survivor.
    await phase.warmUp();
    const settled = await phase.cpuWindow([survivorProcess], opts.windowS);
    const survivorRssMiB = rssMiB(survivorProcess.pid);

    let generationsChanged = 0;
    for (const [id, [generation, restarts]] of before0.generation) {
      const s = phase.status.get(id);
      if (s?.generation !== generation || s.restarts !== restarts) generationsChanged++;
    }
    let listError: string | undefined;
    const listed = await phase.listAll().catch((err: unknown) => {
      listError = err instanceof Error ? err.message : String(err);
      return [];
    });
    const listedOk = listed.filter((j) => {
      const b = before0.generation.get(j.job_id);
      const generation = b?.[0] ?? phase.status.get(j.job_id)?.generation;
      return j.owner === survivor && j.state === 'Running' && j.generation === generation;
    }).length;

    const victimIds = [...victims];
    const ms = (m: Map<string, number>) => victimIds.flatMap((id) => (m.has(id) ? [m.get(id)!] : []));
    const takeover = victimIds.filter(done).map((id) => Math.max(claimedAt.get(id)!, checkpointedAt.get(id)!, leaseAt.get(shardOf(id, SHARDS))!));
    return {
      startupS,
      jobs: phase.jobIds.length,
      createsUnavailable: phase.createsUnavailable,
      unansweredJobs: phase.unansweredJobs,
      jobsBefore,
      victim,
      survivor,
      victimJobs: victims.size,
      completed: doneCount,
      leaseMs: quantiles(victimIds.flatMap((id) => (leaseAt.has(shardOf(id, SHARDS)) ? [leaseAt.get(shardOf(id, SHARDS))!] : []))),
      claimedMs: quantiles(ms(claimedAt)),
      reattachedMs: quantiles(ms(reattachedAt)),
      takeoverMs: quantiles(takeover),
      claimToCheckpointMs: quantiles(victimIds.filter(done).map((id) => checkpointedAt.get(id)! - claimedAt.get(id)!)),
      tasksRestarted,
      startsAfterKill,
      stopsAfterKill,
      generationsChanged,
      survivorCpuPct: { before: before.cpuPct.get(survivor)!, takeover: takeoverCpu, settled: settled.cpuPct.get(survivor)! },
      takeoverWindowS,
      stalled,
      survivorRssMiB,
      checkpointsPerSec: { before: before.checkpointsPerSec, settled: settled.checkpointsPerSec },
      othersPct: { before: { server: before.serverPct, bench: before.benchPct }, settled: { server: settled.serverPct, bench: settled.benchPct } },
      listedOk,
      listed: listed.length,
      ...(listError === undefined ? {} : { listError }),
      reregistrations: { before: reregistered0, after: phase.reregistrations() - reregistered0 },
      renewals: {
        [`${victim} before the kill`]: phase.renewals(victim, 0, killedAt),
        [`${survivor} before the kill`]: phase.renewals(survivor, 0, killedAt),
        [`${survivor} during the takeover`]: phase.renewals(survivor, killedAt, progress.at),
        [`${survivor} after it`]: phase.renewals(survivor, progress.at),
      },
      problems: phase.problems(),
    };
  } finally {
    await phase.close();
  }
}

// ─── Phases 2 and 3: CPU per controller at steady state ─────────────────────────────────────────────

interface SteadyResult {
  /** Per controller: its jobs and its CPU, % of one core. */
  controllers: { id: string; jobs: number; cpuPct: number; rssMiB: number }[];
  startupS: number;
  jobs: number;
  createsUnavailable: number;
  unansweredJobs: number;
  checkpointsPerSec: number;
  /** The nats-server's and this process's CPU over the window. */
  othersPct: { server: number; bench: number };
  reregistrations: number;
  /** Per controller, over the whole phase (the creation of the jobs included). */
  renewals: Record<string, RenewalGaps>;
  problems: Record<string, Record<string, number>>;
}

async function steadyPhase(name: string, ids: string[], opts: Options, logDir: string): Promise<SteadyResult> {
  const total = opts.jobs * ids.length;
  const phase = await Phase.start(name, ids, opts, logDir, {}, total);
  try {
    const startupS = await phase.createJobs(total);
    const fleet = await phase.fleet();
    console.log(`   ${phase.jobIds.length} jobs Running after ${round(startupS)} s; ${fleet.data.map((c) => `${c.controller_id} owns ${c.jobs}`).join(', ')}`);
    await phase.warmUp();
    const processes = ids.map((id) => phase.controllers.get(id)!);
    const window = await phase.cpuWindow(processes, opts.windowS);
    return {
      controllers: processes.map((c) => ({ id: c.id, jobs: fleet.data.find((f) => f.controller_id === c.id)?.jobs ?? 0, cpuPct: window.cpuPct.get(c.id)!, rssMiB: rssMiB(c.pid) })),
      startupS,
      jobs: phase.jobIds.length,
      createsUnavailable: phase.createsUnavailable,
      unansweredJobs: phase.unansweredJobs,
      checkpointsPerSec: window.checkpointsPerSec,
      othersPct: { server: window.serverPct, bench: window.benchPct },
      reregistrations: phase.reregistrations(),
      renewals: Object.fromEntries(ids.map((id) => [id, phase.renewals(id)])),
      problems: phase.problems(),
    };
  } finally {
    await phase.close();
  }
}

// ─── Main ───────────────────────────────────────────────────────────────────────────────────────────

function problemLines(problems: Record<string, Record<string, number>>): string[] {
  return Object.entries(problems).flatMap(([id, counts]) => Object.entries(counts).map(([msg, n]) => `   ${id} logged ${n}× ${msg}`));
}

async function main(): Promise<void> {
  const opts = options(process.argv.slice(2));
  const logDir = mkdtempSync(join(tmpdir(), 'weir-bench-failover-'));
  console.log(
    `bench:failover  node ${process.version}, ${opts.jobs} jobs, lease TTL ${opts.leaseTtlMs} ms, heartbeats every ${opts.heartbeatIntervalMs} ms, ` +
      `checkpoints every ${opts.checkpointIntervalMs / 1000} s, ${opts.workers} simulated workers, ${opts.windowS} s CPU windows; controller logs in ${logDir}; ` +
      `load average ${loadavg().map((l) => round(l, 2)).join(' ')}`,
  );
  let f: FailoverResult | undefined;
  if (!opts.skipFailover) {
    console.log(`── failover: c1 and c2 share ${opts.jobs} jobs; the one owning more is SIGKILLed`);
    f = await failoverPhase(opts, logDir);
  }
  let scale: { single: SteadyResult; pair: SteadyResult } | undefined;
  if (!opts.skipScale) {
    console.log(`── scale: one controller with ${opts.jobs} jobs`);
    const single = await steadyPhase('single', ['c1'], opts, logDir);
    console.log(`── scale: two controllers with ${opts.jobs} jobs each`);
    scale = { single, pair: await steadyPhase('pair', ['c1', 'c2'], opts, logDir) };
  }

  const { lines, summary } = f === undefined ? { lines: [] as string[], summary: ['══ summary'] } : failoverLines(f, opts);
  let ratio: number | undefined;
  let pairMean: number | undefined;
  if (scale !== undefined) {
    const { single, pair } = scale;
    const singleCpu = single.controllers[0]!.cpuPct;
    pairMean = pair.controllers.reduce((sum, c) => sum + c.cpuPct, 0) / pair.controllers.length;
    ratio = pairMean / singleCpu;
    // Per job, as the two controllers' shares differ from N by a few percent.
    const perJob = (c: { jobs: number; cpuPct: number }) => (c.cpuPct / c.jobs) * 1000;
    const pairPerJob = pair.controllers.reduce((sum, c) => sum + perJob(c), 0) / pair.controllers.length;
    lines.push(
      `── scale: CPU per controller at steady state (${opts.windowS} s windows, a fresh nats-server per phase)`,
      `   one controller, ${opts.jobs} jobs      ${pct(singleCpu)} of one core (${round(single.checkpointsPerSec)} checkpoints/s; RSS ${round(single.controllers[0]!.rssMiB)} MiB)`,
      `   two controllers, ${opts.jobs} each    ${pair.controllers.map((c) => `${c.id} ${pct(c.cpuPct)} (${c.jobs} jobs, RSS ${round(c.rssMiB)} MiB)`).join(', ')}; mean ${pct(pairMean)} (${round(pair.checkpointsPerSec)} checkpoints/s in all)`,
      `   beside them               nats-server ${pct(single.othersPct.server)} with one controller, ${pct(pair.othersPct.server)} with two; this process ${pct(single.othersPct.bench)}, ${pct(pair.othersPct.bench)}`,
      `   per 1,000 jobs            one controller ${pct(perJob(single.controllers[0]!))}, two controllers ${pct(pairPerJob)} each (${round(pairPerJob / perJob(single.controllers[0]!), 2)}×)`,
      `   workers registering again one controller ${single.reregistrations}, two controllers ${pair.reregistrations}`,
      ...createLines(single),
      ...createLines(pair),
      ...renewalLines({ ...prefixed('one controller:', single.renewals), ...prefixed('two controllers:', pair.renewals) }, opts),
    );
    summary.push(`   CPU per controller        ${round(ratio, 2)}× at 2 × ${opts.jobs} jobs against one controller at ${opts.jobs} (goal ≤ ${GOALS.scaleRatio}×: ${ratio <= GOALS.scaleRatio ? 'PASS' : 'FAIL'})`);
  }
  lines.push(...problemLines({ ...(f === undefined ? {} : prefixed('failover', f.problems)), ...(scale === undefined ? {} : { ...prefixed('single', scale.single.problems), ...prefixed('pair', scale.pair.problems) }) }));
  summary.push(`   load average at the end ${loadavg().map((l) => round(l, 2)).join(' ')} on ${availableParallelism()} cores`);
  console.log([...lines, ...summary].join('\n'));
  console.log(
    JSON.stringify({
      bench: 'failover',
      node: process.version,
      cores: availableParallelism(),
      loadAverage: loadavg(),
      options: opts,
      ...(f === undefined ? {} : { failover: f }),
      ...(scale === undefined ? {} : { scale: { ...scale, pairMeanCpuPct: pairMean, ratio, goal: GOALS.scaleRatio } }),
    }),
  );
}

/** The failover phase's report lines, and its part of the summary. */
function failoverLines(f: FailoverResult, opts: Options): { lines: string[]; summary: string[] } {
  const ttlX = (ms: number) => `${round(ms / opts.leaseTtlMs, 2)}× the TTL`;
  const reattachedOk = f.reattachedMs.n === f.victimJobs && f.reattachedMs.max <= opts.leaseTtlMs + 1_000;
  const restartsOk = f.tasksRestarted === 0 && f.generationsChanged === 0 && f.completed === f.victimJobs;
  const lines = [
    `── failover (${f.victim} SIGKILLed with ${f.victimJobs} of ${f.jobs} jobs; ${f.survivor} survives; lease TTL ${opts.leaseTtlMs} ms)`,
    `   kill → survivor holds the job's lease (its view's owner)   ${fmtQ(f.leaseMs)}`,
    `   kill → survivor claimed the job's status                 ${fmtQ(f.claimedMs)}`,
    `   kill → owned and re-attached (Running, no wait)          ${fmtQ(f.reattachedMs)}  (${f.reattachedMs.n} of ${f.victimJobs} jobs; max ${ttlX(f.reattachedMs.max)})`,
    `   kill → owned AND checkpointed at an epoch after the kill  ${fmtQ(f.takeoverMs)}  (p50 ${ttlX(f.takeoverMs.p50)}, max ${ttlX(f.takeoverMs.max)})`,
    `   of which claim → that checkpoint                          ${fmtQ(f.claimToCheckpointMs)}  (a checkpoint every ${opts.checkpointIntervalMs / 1000} s; the first after re-attaching is due an interval after the earlier owner's newest began, an overdue one within 1 s)`,
    `   jobs taken over           ${f.completed} of ${f.victimJobs} in ${round(f.takeoverWindowS, 1)} s${f.stalled ? ' (STALLED: no more taken over after that)' : ''}`,
    `   tasks restarted           ${f.tasksRestarted} (start requests for those jobs after the kill; ${f.startsAfterKill} for any job); stop requests ${f.stopsAfterKill}; generations or restart counts changed ${f.generationsChanged}`,
    `   survivor CPU              before the kill ${pct(f.survivorCpuPct.before)} (${f.jobsBefore[f.survivor]} jobs, ${round(f.checkpointsPerSec.before)} checkpoints/s in all)`,
    `                             takeover ${pct(f.survivorCpuPct.takeover)} (kill → last job taken over, ${round(f.takeoverWindowS, 1)} s)`,
    `                             settled ${pct(f.survivorCpuPct.settled)} (${f.jobs} jobs, ${round(f.checkpointsPerSec.settled)} checkpoints/s), all of one core; RSS ${round(f.survivorRssMiB)} MiB`,
    `   beside it                 nats-server ${pct(f.othersPct.before.server)} before, ${pct(f.othersPct.settled.server)} settled; this process (simulated workers, watches) ${pct(f.othersPct.before.bench)}, ${pct(f.othersPct.settled.bench)}`,
    f.listError === undefined
      ? `   weir.api.jobs.list        ${f.listedOk} of ${f.listed} jobs Running, owned by ${f.survivor}, at their generation from before the kill`
      : `   weir.api.jobs.list        could not be read: ${f.listError}`,
    `   workers registering again (a heartbeat answered unknown_worker): ${f.reregistrations.before} before the kill, ${f.reregistrations.after} after it`,
    ...createLines(f),
    ...renewalLines(f.renewals, opts),
  ];
  const summary = [
    '══ summary',
    `   owned and re-attached     ${fmtQ(f.reattachedMs)} at lease TTL ${opts.leaseTtlMs} ms (goal: every job within TTL + 1 s = ${opts.leaseTtlMs + 1_000} ms: ${reattachedOk ? 'PASS' : 'FAIL'})`,
    `   owned and checkpointed    ${fmtQ(f.takeoverMs)} (${f.completed} of ${f.victimJobs} jobs; a checkpoint every ${opts.checkpointIntervalMs / 1000} s)`,
    `   tasks restarted           ${f.tasksRestarted}, every job taken over (must be 0, all: ${restartsOk ? 'PASS' : 'FAIL'})`,
    `   survivor CPU              ${pct(f.survivorCpuPct.before)} before, ${pct(f.survivorCpuPct.takeover)} during the takeover, ${pct(f.survivorCpuPct.settled)} settled`,
  ];
  return { lines, summary };
}

function prefixed<T>(prefix: string, byId: Record<string, T>): Record<string, T> {
  return Object.fromEntries(Object.entries(byId).map(([id, value]) => [`${prefix} ${id}`, value]));
}

function createLines(r: { jobs: number; createsUnavailable: number; unansweredJobs: number }): string[] {
  if (r.createsUnavailable === 0 && r.unansweredJobs === 0) return [];
  return [`   creating ${r.jobs} jobs: ${r.createsUnavailable} create requests answered unavailable (and tried again); ${r.unansweredJobs} jobs made by a create answered unavailable`];
}

function renewalLines(renewals: Record<string, RenewalGaps>, opts: Options): string[] {
  const lapseMs = opts.leaseTtlMs - Math.min(1_000, Math.floor(opts.leaseTtlMs / 10));
  const rows = Object.entries(renewals).map(([who, r]) => `${who}: ${r.renewals} renewals, longest gap ${round(r.maxGapMs, 0)} ms, ${r.lapses} over ${lapseMs} ms`);
  return [`   lease renewals as seen   ${rows[0] ?? ''}`, ...rows.slice(1).map((row) => `                            ${row}`)];
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
