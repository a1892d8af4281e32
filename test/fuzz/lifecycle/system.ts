/**
 * The system under the lifecycle fuzzer: a real nats-server, two real `weir controller` processes sharing
 * the jobs by shard leases (ids c1 and c2: killed and started again under their id, or paused past their
 * lease) and real `weir worker` processes (killed and replaced at will), driven over NATS as a user would,
 * and the invariants checked against it. Every check that fails throws a `Violation` naming the invariant.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Subscription } from '@nats-io/transport-node';
import type { JobPolicy, JobState } from '../../../machines/job/types.js';
import {
  controllerMetricsReplySchema,
  decode,
  heartbeatSchema,
  jobCheckpointsReplySchema,
  jobViewSchema,
  listControllersReplySchema,
  listWorkersReplySchema,
  SUBJECTS,
  subjects,
  type JobView,
  type WorkerViewMessage,
} from '../../../src/protocol/index.js';
import { openStore, type Store } from '../../../src/store/index.js';
import { Deployment } from '../../support/deployment.js';
import { impulseCountPipeline } from '../../support/pipelines.js';
import type { Reply } from '../../support/cluster.js';
import type { WeirProcess } from '../../support/processes.js';
import { liveJobs, NOT_WAITING, settledStates, type LifecycleModel, type ModelJob, type PipelineKind } from './model.js';

/** A broken invariant: the fuzzer's failure. */
export class Violation extends Error {
  constructor(
    readonly invariant: string,
    detail: string,
  ) {
    super(`invariant broken: ${invariant}: ${detail}`);
    this.name = 'Violation';
  }
}

export interface FuzzSettings {
  /** The controllers' ids (`--id`): each is started again under its own id after a kill. */
  controllers: readonly string[];
  /** The controllers' shard lease TTL (`--lease-ttl`). */
  leaseTtlMs: number;
  workers: number;
  slotsPerWorker: number;
  maxJobs: number;
  heartbeatIntervalMs: number;
  heartbeatTimeoutMs: number;
  /** The controller's job policy (`--policy-file`); restarts are unlimited (`--allowed-restarts=-1`). */
  policy: Partial<JobPolicy>;
}

/** Short timeouts and backoffs, so that jobs settle in seconds; every deadline of the machine still applies. */
export const FUZZ_SETTINGS: FuzzSettings = {
  controllers: ['c1', 'c2'],
  leaseTtlMs: 1_500,
  workers: 3,
  slotsPerWorker: 4,
  maxJobs: 4,
  heartbeatIntervalMs: 300,
  heartbeatTimeoutMs: 1_500,
  policy: {
    restartBackoff: { initialMs: 100, maxMs: 1_000, multiplier: 2, jitter: 0.5 },
    stateBackoff: { initialMs: 100, maxMs: 1_000, multiplier: 2, jitter: 0.5 },
    healthyDurationMs: 10_000,
    checkpointTimeoutMs: 5_000,
    stopTimeoutMs: 5_000,
    killTimeoutMs: 3_000,
    cleanupTimeoutMs: 3_000,
    workerStartupTimeoutMs: 60_000,
    taskStartupTimeoutMs: 10_000,
    notEnoughSlotsRetryMs: 200,
    finishTimeoutMs: 10_000,
  },
};

/** How long a replaced worker or a restarted controller may take to come up (tsx on a loaded 2-core machine). */
const PROCESS_START_MS = 20_000;

/**
 * How long requests about a job may be answered `unavailable` (its shard has no live owner that answers:
 * a takeover or a hand-over is under way) before that counts as no answer. A dead or paused owner's
 * shards are taken over within a lease TTL, a restarted controller takes its share back within a lease
 * period, and a request waits a TTL and a second for an owner itself: this is several of each, for a
 * loaded 2-core machine.
 */
export function unavailableBudgetMs(settings: FuzzSettings): number {
  return 6 * settings.leaseTtlMs + 5_000;
}

/** How long a controller is paused (SIGSTOP): past its lease TTL, so its jobs are taken over meanwhile. */
export function pauseMs(settings: FuzzSettings): number {
  return settings.leaseTtlMs + 500;
}

/** How long a request on a controller's own forwarding subject may take: a paused or restarting one gets asked again. */
const DIRECT_REQUEST_MS = 3_000;

/**
 * The longest a job may take to settle after the last command, by the policy's deadlines: a lost worker
 * noticed, a restart's backoff and cleanup, a final checkpoint that waits for one in flight, a stop and a
 * kill, tasks starting again, and a replaced worker starting.
 */
export function settleBudgetMs(settings: FuzzSettings): number {
  const p = settings.policy;
  return (
    settings.leaseTtlMs +
    settings.heartbeatTimeoutMs +
    (p.restartBackoff?.maxMs ?? 0) +
    (p.cleanupTimeoutMs ?? 0) +
    2 * (p.checkpointTimeoutMs ?? 0) +
    (p.stopTimeoutMs ?? 0) +
    (p.killTimeoutMs ?? 0) +
    (p.taskStartupTimeoutMs ?? 0) +
    PROCESS_START_MS
  );
}

/** Every fuzzed job checkpoints this often. */
const CHECKPOINT_INTERVAL_MS = 1_000;

/** An unbounded job keys its impulses; a bounded one counts 300 of them and finishes in about 1.5 s. */
export function pipelineOf(kind: PipelineKind, name: string): Record<string, unknown> {
  return kind === 'unbounded'
    ? impulseCountPipeline({ name, rate: 50, modulo: 5, checkpointIntervalMs: CHECKPOINT_INTERVAL_MS })
    : impulseCountPipeline({ name, rate: 200, events: 300, checkpointIntervalMs: CHECKPOINT_INTERVAL_MS });
}

/** What the fuzzer counts: commands run, invariants checked. */
export interface FuzzStats {
  commands: Record<string, number>;
  skipped: number;
  invariants: Record<string, number>;
  settleMs: number[];
  /** Requests answered `unavailable` (no live owner for a moment) and asked again. */
  unavailable: number;
}

export function newStats(): FuzzStats {
  return { commands: {}, skipped: 0, invariants: {}, settleMs: [], unavailable: 0 };
}

/** The subject on which one controller takes `subject`'s requests itself, whichever jobs it owns (docs/high-availability.md). */
export function directSubject(controllerId: string, subject: string): string {
  return `weir.ctl.controllers.${controllerId}.api.${subject}`;
}

/** The jobs in a controller's table, summed over states, from its `weir_jobs{state}` gauge. */
function jobsInTable(metricsText: string): number {
  let total = 0;
  for (const line of metricsText.split('\n')) {
    const m = /^weir_jobs\{[^}]*\} (\S+)$/.exec(line);
    if (m !== null) total += Number(m[1]);
  }
  return total;
}

interface Heard {
  jobs: Array<{ job_id: string; generation: number; slots: number }>;
  at: number;
}

/** Log lines that mean something crashed or was handled as a bug, whatever else went on. */
const CRASH_MESSAGES = ['job actor failed', 'API request failed', 'worker message failed', 'request handler threw', 'job event handler failed', 'liveness loop failed', 'worker stop failed', 'the stop failed'];

export class LifecycleSystem {
  readonly history: string[] = [];
  private readonly workers: WeirProcess[] = [];
  private readonly killed = new Set<WeirProcess>();
  /** Each controller id's running process. */
  private readonly controllers = new Map<string, WeirProcess>();
  /** Processes started per controller id so far (names the next: c1, c1#2, …). */
  private readonly incarnations = new Map<string, number>();
  private workerCount = 0;
  private probes = 0;
  private readonly heard = new Map<string, Heard>();
  private heartbeats!: Subscription;
  private store!: Store;
  private readonly started = Date.now();

  private constructor(
    readonly d: Deployment,
    readonly settings: FuzzSettings,
    readonly stats: FuzzStats,
  ) {}

  static async start(settings: FuzzSettings, stats: FuzzStats): Promise<LifecycleSystem> {
    const dir = mkdtempSync(join(tmpdir(), 'weir-fuzz-'));
    const policyFile = join(dir, 'policy.json');
    writeFileSync(policyFile, JSON.stringify(settings.policy));
    const d = await Deployment.start({
      heartbeatIntervalMs: settings.heartbeatIntervalMs,
      heartbeatTimeoutMs: settings.heartbeatTimeoutMs,
      leaseTtlMs: settings.leaseTtlMs,
      controllerArgs: ['--policy-file', policyFile, '--allowed-restarts=-1'],
      env: { WEIR_SHUTDOWN_TIMEOUT_MS: '5000' },
    });
    const system = new LifecycleSystem(d, settings, stats);
    try {
      system.heartbeats = d.client.subscribe(SUBJECTS.workerHeartbeat.wildcard, {
        callback: (_err, msg) => {
          const beat = decode(heartbeatSchema, msg.data);
          if (!beat.ok) return;
          const jobs = beat.value.jobs.map((j) => ({ job_id: j.job_id, generation: j.generation, slots: j.slots ?? 0 }));
          const now = Date.now();
          // A gap past the heartbeat timeout makes any controller count the worker lost: worth knowing in a report.
          const before = system.heard.get(beat.value.worker_id)?.at;
          if (before !== undefined && now - before > settings.heartbeatTimeoutMs) system.note(`  (no heartbeat of ${beat.value.worker_id} heard for ${now - before} ms: a stalled machine?)`);
          system.heard.set(beat.value.worker_id, { jobs, at: now });
        },
      });
      system.store = await openStore(d.client);
      // Everything starts at once (each is a tsx process that takes seconds); the workers keep their order.
      await Promise.all(settings.controllers.map((id) => system.startController(id)));
      const workers = await Promise.all(Array.from({ length: settings.workers }, () => system.startWorker()));
      for (const worker of workers) system.workers.push(worker);
    } catch (err) {
      await system.stop();
      throw err;
    }
    return system;
  }

  note(line: string): void {
    this.history.push(`${((Date.now() - this.started) / 1000).toFixed(1).padStart(6)}s ${line}`);
  }

  private count(invariant: string): void {
    this.stats.invariants[invariant] = (this.stats.invariants[invariant] ?? 0) + 1;
  }

  private async startWorker(): Promise<WeirProcess> {
    const id = `w${++this.workerCount}`;
    const worker = await this.d.worker(id, this.settings.slotsPerWorker);
    this.note(`worker ${id} registered`);
    return worker;
  }

  private async addWorker(): Promise<WeirProcess> {
    const worker = await this.startWorker();
    this.workers.push(worker);
    return worker;
  }

  liveWorkers(): WeirProcess[] {
    return this.workers.filter((w) => !this.killed.has(w));
  }

  /** SIGKILLs a worker, then starts a new one in its place (a new id, as a replacement machine would have). */
  async replaceWorker(pick: number): Promise<string> {
    const live = this.liveWorkers();
    const victim = live[pick % live.length]!;
    this.killed.add(victim);
    await victim.kill('SIGKILL');
    this.note(`worker ${victim.name} killed`);
    const replacement = await this.addWorker();
    return `${victim.name} → ${replacement.name}`;
  }

  /** The controllers' ids. */
  get controllerIds(): readonly string[] {
    return this.settings.controllers;
  }

  private async startController(id: string): Promise<void> {
    const n = (this.incarnations.get(id) ?? 0) + 1;
    this.incarnations.set(id, n);
    this.controllers.set(id, await this.d.controllerNamed(n === 1 ? id : `${id}#${n}`, '--id', id));
    this.note(`controller ${id} started${n === 1 ? '' : ' again'}`);
  }

  /** SIGKILLs the controller, then starts it again under the same id. */
  async restartController(id: string): Promise<void> {
    const victim = this.controllers.get(id)!;
    this.killed.add(victim);
    await victim.kill('SIGKILL');
    this.note(`controller ${id} killed`);
    await this.startController(id);
  }

  /** SIGSTOPs the controller for longer than its lease TTL, then SIGCONTs it. */
  async pauseController(id: string): Promise<void> {
    const pid = this.controllers.get(id)!.pid!;
    process.kill(pid, 'SIGSTOP');
    this.note(`controller ${id} paused`);
    try {
      await sleep(pauseMs(this.settings));
    } finally {
      process.kill(pid, 'SIGCONT');
      this.note(`controller ${id} woken`);
    }
  }

  /** The controller that owns the job, by its view; null when none does within a takeover's time (or the job is gone). */
  async ownerOf(jobId: string): Promise<string | null> {
    const deadline = Date.now() + this.settings.leaseTtlMs + 1_000;
    for (;;) {
      const owner = (await this.views()).find((v) => v.job_id === jobId)?.owner ?? null;
      if (owner !== null && this.controllers.has(owner)) return owner;
      if (Date.now() > deadline) return null;
      await sleep(100);
    }
  }

  /** A request on a public subject, answered by any controller; no answer in time is a violation (they run, NATS runs). */
  private async requestOnce(subject: string, body: unknown): Promise<Reply> {
    try {
      return await this.d.request(subject, body, 10_000);
    } catch (err) {
      throw new Violation('the controller answers every request in time', `${subject}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  /** Counts an `unavailable` answer; a violation once they have gone on past the budget. */
  private unavailable(subject: string, reply: Reply, since: number): void {
    this.stats.unavailable++;
    this.note(`  ${subject}: unavailable (${reply.error?.message ?? ''}): asked again`);
    const budget = unavailableBudgetMs(this.settings);
    if (Date.now() - since > budget) throw new Violation('the controller answers every request in time', `${subject}: still unavailable after ${budget} ms: ${reply.error?.message ?? ''}`);
  }

  /**
   * A request on a public subject, asked again (as a client would) while it is answered `unavailable`
   * (a takeover is under way), within `unavailableBudgetMs`; `retried`: some answer was `unavailable`, so
   * an earlier try may have done what was asked.
   */
  async ask(subject: string, body: unknown): Promise<{ reply: Reply; retried: boolean }> {
    const since = Date.now();
    let retried = false;
    for (;;) {
      const reply = await this.requestOnce(subject, body);
      if (reply.error?.code !== 'unavailable') return { reply, retried };
      this.unavailable(subject, reply, since);
      retried = true;
      await sleep(200);
    }
  }

  async request(subject: string, body: unknown): Promise<Reply> {
    return (await this.ask(subject, body)).reply;
  }

  /** A request to one controller itself, on its own subject: null (and why) when it does not answer in time or answers an error. */
  private async askController<T>(id: string, subject: string, parse: (reply: Reply) => T): Promise<{ value: T } | { problem: string }> {
    try {
      const reply = await this.d.request(directSubject(id, subject), { v: 1 }, DIRECT_REQUEST_MS);
      if (reply.error !== undefined) return { problem: `controller ${id} answered ${subject} with ${reply.error.code}: ${reply.error.message}` };
      return { value: parse(reply) };
    } catch (err) {
      return { problem: `controller ${id} did not answer ${subject} on its own subject: ${err instanceof Error ? err.message : String(err)}` };
    }
  }

  /** Fails unless the reply is a success or an error with one of `codes`; returns the error code (or null). */
  expectReply(what: string, reply: Reply, codes: readonly string[] = []): string | null {
    const code = reply.error?.code ?? null;
    // Every request the fuzzer sends names a job that exists (or existed, when `codes` says so).
    if (code === 'unknown_job' && !codes.includes(code)) throw new Violation('a job that exists is never answered unknown_job', `${what}: ${reply.error?.message ?? ''}`);
    if (code !== null && !codes.includes(code)) throw new Violation('every request gets a success or an expected error', `${what}: ${code}: ${reply.error?.message ?? ''}`);
    return code;
  }

  /**
   * Creates a job named `name` (unique in the system). Answered `unavailable`, the create may still have
   * happened: the job is looked for by its name before asking again, so that it is not created twice.
   */
  async createJob(kind: PipelineKind, name: string): Promise<string> {
    const since = Date.now();
    for (;;) {
      const reply = await this.requestOnce(subjects.apiJobsCreate(), pipelineOf(kind, name));
      if (reply.error?.code !== 'unavailable') {
        this.expectReply(`create ${kind}`, reply);
        return reply['job_id'] as string;
      }
      this.unavailable(subjects.apiJobsCreate(), reply, since);
      await sleep(500);
      const made = (await this.views()).filter((v) => v.name === name);
      if (made.length > 1) throw new Violation('every request gets a success or an expected error', `one create made ${made.length} jobs named ${name}`);
      if (made.length === 1) {
        this.note(`  the create of ${name} answered unavailable had made ${made[0]!.job_id}`);
        return made[0]!.job_id;
      }
    }
  }

  /**
   * Every job view, all pages, from whichever controller answers: the live progress of its own jobs, the
   * stored status of the other's (which lags the owner's runtime by the writes it has queued).
   */
  views(): Promise<JobView[]> {
    return this.d.views((subject, body) => this.request(subject, body));
  }

  /**
   * Every job's view as its owner knows it now: the jobs listed, each then asked for on its own subject,
   * which reaches its owner. A job listed is never answered `unknown_job` (nothing is deleted meanwhile:
   * the fuzzer waits for each command).
   */
  async ownerViews(model: LifecycleModel): Promise<JobView[]> {
    const listed = await this.views();
    return Promise.all(
      listed.map(async ({ job_id: id }) => {
        const reply = await this.request(subjects.apiJobGet(id), { v: 1 });
        if (reply.error?.code === 'unknown_job') {
          const job = model.jobs.find((j) => j.id === id);
          throw new Violation('a job that exists is never answered unknown_job', `${job === undefined ? id : jobLabel(job)} is listed, but its get was answered: ${reply.error.message}`);
        }
        this.expectReply(`get ${id}`, reply);
        return jobViewSchema.parse(reply);
      }),
    );
  }

  /** No job sits in a waiting state without a reason and a deadline; bounded jobs seen Finished stay Finished. */
  async checkWaits(model: LifecycleModel): Promise<JobView[]> {
    const views = await this.ownerViews(model);
    for (const view of views) {
      const job = model.jobs.find((j) => j.id === view.job_id);
      if (job?.finished === true && view.state !== 'Finished') throw new Violation('a Finished job stays Finished', `${view.job_id} is ${view.state}`);
      if (job?.kind === 'bounded' && view.state === 'Finished') job.finished = true;
      // A Running job taken over waits to re-attach to its tasks (Running.progress.reconciling), with a deadline.
      const reattaching = view.state === 'Running' && view.waiting?.kind === 'reconcile';
      if (NOT_WAITING.includes(view.state) && !reattaching) {
        if (view.waiting !== null) throw new Violation('only a waiting state waits', `${view.job_id} is ${view.state} but waits: ${view.waiting.reason}`);
        continue;
      }
      if (view.waiting === null || view.waiting.until === null) {
        throw new Violation('no job sits in a waiting state without a deadline', `${view.job_id} is ${view.state}, waiting ${JSON.stringify(view.waiting)}`);
      }
    }
    this.count('waits have deadlines');
    return views;
  }

  /** Every process the fuzzer did not kill still runs, and none logged a crash. */
  checkProcesses(): void {
    for (const p of this.d.processes) {
      if (!this.killed.has(p) && !p.running) throw new Violation('no process crashed', `${p.name} exited:\n${p.output().slice(-3_000)}`);
      const crash = p.logs().find((line) => (line['level'] as number) >= 60 || CRASH_MESSAGES.includes(line['msg'] as string));
      if (crash !== undefined) throw new Violation('no process crashed', `${p.name} logged ${JSON.stringify(crash)}`);
    }
    this.count('no process crashed');
  }

  /**
   * The quiescent point: every job settles into the state its desired config implies within the policy's
   * deadlines; each is owned by exactly one live controller, and the controllers share the shards fairly;
   * a fresh job runs; the booked slots are what the workers report; the event log has a row for every
   * state change; no process crashed.
   */
  async settle(model: LifecycleModel): Promise<void> {
    const began = Date.now();
    const deadline = began + settleBudgetMs(this.settings);
    await this.untilQuiet(model, deadline);
    this.stats.settleMs.push(Date.now() - began);
    this.count('jobs settle as asked');
    this.count('every job is owned by exactly one live controller');
    this.count('the live controllers share the shards fairly');
    this.count('booked slots are what workers run');
    await this.probe(deadline);
    this.count('a fresh job runs');
    // The probe came and went: nothing of it may be left booked or running.
    await this.untilQuiet(model, Date.now() + settleBudgetMs(this.settings));
    this.count('every job is owned by exactly one live controller');
    this.count('the live controllers share the shards fairly');
    this.count('booked slots are what workers run');
    await this.checkCheckpointsGoOn(model);
    await this.checkLogs(model);
    this.count('the event log has every state change');
    this.checkProcesses();
  }

  /**
   * Until every job is where its desired config puts it, has one live owner, the controllers share the
   * shards fairly and every worker runs exactly what is booked there (all at once, seen through heartbeats
   * sent after the call), or the deadline: then the problems left are the broken invariants.
   */
  private async untilQuiet(model: LifecycleModel, deadline: number): Promise<void> {
    const since = Date.now();
    let last = '';
    for (;;) {
      const views = new Map((await this.checkWaits(model)).map((v) => [v.job_id, v]));
      // Each kind of problem is looked for once the ones before it are gone, and named by its invariant.
      const kinds: Array<[string, () => Promise<string[]> | string[]]> = [
        ['every job settles as its config asks, within the policy deadlines', () => this.stateProblems(model, views)],
        ['every job is owned by exactly one live controller', () => this.ownerProblems(model, views)],
        ['the live controllers share the shards fairly', () => this.shareProblems()],
        ['the registry books exactly what the workers run', () => this.slotProblems(model, views, since)],
      ];
      let broken: [string, string[]] | undefined;
      for (const [invariant, problems] of kinds) {
        const found = await problems();
        if (found.length > 0) {
          broken = [invariant, found];
          break;
        }
      }
      if (broken === undefined) return;
      if (Date.now() > deadline) throw new Violation(broken[0], broken[1].join('; '));
      // What the settle point waits for, each time it changes: a report then shows how it got stuck.
      const now = `${broken[0]}: ${broken[1].join('; ')}`;
      if (now !== last) this.note(`  settling, not yet: ${now}`);
      last = now;
      await sleep(this.settings.heartbeatIntervalMs);
    }
  }

  /**
   * Every job has an owner, a live controller of the listing and one of the system's; and each controller
   * runs exactly the jobs it owns (its table, by its `weir_jobs` gauge, asked on its own subject), so no job
   * runs under two controllers or none.
   */
  private async ownerProblems(model: LifecycleModel, views: Map<string, JobView>): Promise<string[]> {
    const fleet = listControllersReplySchema.parse(await this.request(subjects.apiControllersList(), { v: 1 }));
    const live = new Set(fleet.data.filter((c) => c.live).map((c) => c.controller_id));
    const problems: string[] = [];
    const label = (id: string) => {
      const job = model.jobs.find((j) => j.id === id);
      return job === undefined ? id : jobLabel(job);
    };
    for (const view of views.values()) {
      const owner = view.owner ?? null;
      if (owner === null) problems.push(`${label(view.job_id)} has no owner`);
      else if (!live.has(owner)) problems.push(`${label(view.job_id)} is owned by ${owner}, which is not a live controller (live: ${[...live].join(', ')})`);
      else if (!this.controllers.has(owner)) problems.push(`${label(view.job_id)} is owned by ${owner}, which the fuzzer never started`);
    }
    for (const id of this.controllerIds) {
      if (!live.has(id)) problems.push(`controller ${id} runs but is not listed live`);
      const answer = await this.askController(id, subjects.apiMetrics(), (r) => jobsInTable(controllerMetricsReplySchema.parse(r).text));
      if ('problem' in answer) {
        problems.push(answer.problem);
        continue;
      }
      const owned = [...views.values()].filter((v) => v.owner === id).length;
      if (answer.value !== owned) problems.push(`controller ${id} runs ${answer.value} jobs but owns ${owned}`);
    }
    return problems;
  }

  /** Every shard has a live owner, and none holds more than its fair share (`ceil(shards / controllers)`): a restarted or woken controller gets its share back. */
  private async shareProblems(): Promise<string[]> {
    const fleet = listControllersReplySchema.parse(await this.request(subjects.apiControllersList(), { v: 1 }));
    const fair = Math.ceil(fleet.shards / this.controllerIds.length);
    const owned = fleet.data.filter((c) => c.live).reduce((sum, c) => sum + c.shards, 0);
    const problems: string[] = [];
    if (owned !== fleet.shards) problems.push(`${owned} of ${fleet.shards} shards have a live owner`);
    for (const c of fleet.data) if (c.shards > fair) problems.push(`controller ${c.controller_id} holds ${c.shards} shards, more than its fair share of ${fair}`);
    return problems.length === 0 ? [] : [...problems, `shares: ${fleet.data.map((c) => `${c.controller_id}${c.live ? '' : ' (not live)'} ${c.shards}`).join(', ')}`];
  }

  private stateProblems(model: LifecycleModel, views: Map<string, JobView>): string[] {
    return model.jobs.flatMap((job) => {
      const view = views.get(job.id);
      const want = settledStates(job);
      if (want.length === 0) return view === undefined ? [] : [`${jobLabel(job)} is ${view.state}, but was deleted`];
      if (view === undefined) return [`${jobLabel(job)} is gone`];
      if (!want.includes(view.state)) return [`${jobLabel(job)} is ${view.state}${view.waiting === null ? '' : ` (${view.waiting.reason})`}, not ${want.join(' or ')}`];
      if (view.waiting !== null) return [`${jobLabel(job)} is ${view.state} but still ${view.waiting.reason}`];
      return [];
    });
  }

  /** A fresh job reaches Running, then stops and goes. */
  private async probe(deadline: number): Promise<void> {
    const id = await this.createJob('unbounded', `probe-${++this.probes}`);
    await this.untilState(id, 'Running', deadline, 'a job submitted at a quiescent point reaches Running');
    this.expectReply('stop the probe', await this.request(subjects.apiJobConfig(id), { v: 1, stop: 'immediate' }));
    await this.untilState(id, 'Stopped', deadline, 'a stopped probe stops');
    this.expectReply('delete the probe', await this.request(subjects.apiJobDelete(id), { v: 1 }));
  }

  private async untilState(id: string, state: JobState, deadline: number, invariant: string): Promise<void> {
    for (;;) {
      const view = jobViewSchema.parse(await this.request(subjects.apiJobGet(id), { v: 1 }));
      if (view.state === state) return;
      if (Date.now() > deadline) throw new Violation(invariant, `${id} is ${view.state}${view.waiting === null ? '' : ` (${view.waiting.reason})`}`);
      await sleep(100);
    }
  }

  /**
   * The slots booked per worker, summed over the controllers' registries (each books only the jobs it
   * owns; each is asked on its own subject), equal what the worker's own heartbeats say runs there (no slot
   * leaked, none booked twice, not even by two controllers); no worker runs more than it has; a job runs
   * one generation, the current, with the parallelism asked; nothing runs for a job that does not run; a
   * killed worker is no longer counted live by any controller, and every live one is by both.
   */
  private async slotProblems(model: LifecycleModel, views: Map<string, JobView>, since: number): Promise<string[]> {
    const registries = new Map<string, WorkerViewMessage[]>();
    const problems: string[] = [];
    for (const id of this.controllerIds) {
      const answer = await this.askController(id, subjects.apiWorkersList(), (r) => listWorkersReplySchema.parse(r).data);
      if ('problem' in answer) problems.push(answer.problem);
      else registries.set(id, answer.value);
    }
    if (problems.length > 0) return problems;
    for (const killed of this.workers.filter((w) => this.killed.has(w))) {
      for (const [id, registry] of registries) {
        if (registry.some((w) => w.worker_id === killed.name && w.live)) problems.push(`controller ${id}'s registry still counts the killed worker ${killed.name} live`);
      }
    }
    const running = new Map<string, Set<number>>();
    const slotsOf = new Map<string, number>();
    for (const worker of this.liveWorkers()) {
      const entries = [...registries].map(([id, registry]) => ({ id, entry: registry.find((w) => w.worker_id === worker.name) }));
      const heard = this.heard.get(worker.name);
      const unknown = entries.filter(({ entry }) => entry === undefined || !entry.live);
      if (unknown.length > 0) {
        for (const { id, entry } of unknown) problems.push(`worker ${worker.name} runs but controller ${id}'s registry has it ${entry === undefined ? 'not at all' : 'not live'}`);
        continue;
      }
      if (heard === undefined || heard.at < since) {
        problems.push(`no heartbeat from ${worker.name} yet`);
        continue;
      }
      const key = (j: { job_id: string; generation: number; slots: number }) => `${j.job_id}/${j.generation}×${j.slots}`;
      const booked = entries.flatMap(({ id, entry }) => entry!.allocations.map((a) => `${key(a)}@${id}`)).sort();
      const bookedKeys = booked.map((b) => b.slice(0, b.lastIndexOf('@'))).sort();
      const reported = heard.jobs.map(key).sort();
      if (bookedKeys.join() !== reported.join()) problems.push(`${worker.name} has booked [${booked.join(', ')}] but runs [${reported.join(', ')}]`);
      const used = heard.jobs.reduce((sum, j) => sum + j.slots, 0);
      if (used > this.settings.slotsPerWorker) problems.push(`${worker.name} runs ${used} slots of ${this.settings.slotsPerWorker}`);
      for (const j of heard.jobs) {
        running.set(j.job_id, (running.get(j.job_id) ?? new Set()).add(j.generation));
        slotsOf.set(`${j.job_id}/${j.generation}`, (slotsOf.get(`${j.job_id}/${j.generation}`) ?? 0) + j.slots);
      }
    }
    for (const [jobId, generations] of running) {
      const view = views.get(jobId);
      const job = model.jobs.find((j) => j.id === jobId);
      if (generations.size > 1) problems.push(`${jobId} runs generations ${[...generations].join(', ')} at once`);
      if (view === undefined || view.state !== 'Running') problems.push(`${job === undefined ? jobId : jobLabel(job)} runs tasks but is ${view?.state ?? 'gone'}`);
    }
    for (const job of liveJobs(model)) {
      const view = views.get(job.id);
      if (view?.state !== 'Running') continue;
      const slots = slotsOf.get(`${job.id}/${view.generation}`) ?? 0;
      if (slots !== job.parallelism) problems.push(`${jobLabel(job)} runs generation ${view.generation} on ${slots} slots, asked ${job.parallelism}`);
    }
    return problems;
  }

  /** Every Running job completes a checkpoint newer than its newest, within two intervals and the checkpoint timeout. */
  private async checkCheckpointsGoOn(model: LifecycleModel): Promise<void> {
    const running = (await this.views()).filter((v) => v.state === 'Running' && liveJobs(model).some((j) => j.id === v.job_id));
    const newest = async (id: string) => {
      const reply = jobCheckpointsReplySchema.parse(await this.request(subjects.apiJobCheckpoints(id), { v: 1 }));
      return Math.max(0, ...reply.data.filter((c) => c.status === 'ready').map((c) => c.epoch));
    };
    const deadline = Date.now() + 2 * CHECKPOINT_INTERVAL_MS + (this.settings.policy.checkpointTimeoutMs ?? 0);
    await Promise.all(
      running.map(async (view) => {
        const before = await newest(view.job_id);
        for (;;) {
          if ((await newest(view.job_id)) > before) return;
          if (Date.now() > deadline) throw new Violation('a Running job goes on checkpointing', `${view.job_id} completed no checkpoint after epoch ${before}`);
          await sleep(200);
        }
      }),
    );
    this.count('running jobs go on checkpointing');
  }

  /** Each job's transition rows chain (each starts where the last ended), from Created to its state now; a deleted job has none. */
  private async checkLogs(model: LifecycleModel): Promise<void> {
    for (const job of model.jobs) {
      const rows = (await this.store.log.page(job.id, { kind: 'transition', limit: 1000 })).data.reverse().flatMap((r) => (r.kind === 'transition' ? [r] : []));
      if (job.deleted) {
        if (rows.length > 0) throw new Violation('the event log has a row for every state change', `${jobLabel(job)} was deleted but its log has ${rows.length} rows`);
        continue;
      }
      const view = jobViewSchema.parse(await this.request(subjects.apiJobGet(job.id), { v: 1 }));
      const chain = rows.map((r) => `${r.from}→${r.to}`).join(' ');
      if (rows[0]?.from !== 'Created') throw new Violation('the event log has a row for every state change', `${jobLabel(job)}: the first row is not from Created: ${chain}`);
      for (let i = 1; i < rows.length; i++) {
        if (rows[i]!.from !== rows[i - 1]!.to) throw new Violation('the event log has a row for every state change', `${jobLabel(job)}: a row is missing before row ${i}: ${chain}`);
      }
      if (rows.at(-1)!.to !== view.state) throw new Violation('the event log has a row for every state change', `${jobLabel(job)} is ${view.state} but its log ends at ${rows.at(-1)!.to}: ${chain}`);
    }
  }

  /** The last lines of every process, for a report (`WEIR_FUZZ_TAIL_LINES` lines each, default 40). */
  tails(lines = Number(process.env['WEIR_FUZZ_TAIL_LINES'] ?? 40)): string {
    return [...this.d.processes]
      .map((p) => `--- ${p.name}${this.killed.has(p) ? ' (killed by the fuzzer)' : p.running ? '' : ' (exited)'} ---\n${p.output().split('\n').slice(-lines).join('\n')}`)
      .join('\n');
  }

  async stop(): Promise<void> {
    this.heartbeats?.unsubscribe();
    await this.d.stop();
  }
}

export function jobLabel(job: ModelJob): string {
  return `job#${job.slot} (${job.id}, ${job.kind}, stop=${job.stop}, p=${job.parallelism})`;
}
