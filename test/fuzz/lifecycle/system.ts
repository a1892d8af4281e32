/**
 * The system under the lifecycle fuzzer: a real nats-server, a real `weir controller` and real `weir
 * worker` processes (killed and replaced at will), driven over NATS as a user would, and the invariants
 * checked against it. Every check that fails throws a `Violation` naming the invariant.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Subscription } from '@nats-io/transport-node';
import type { JobPolicy, JobState } from '../../../machines/job/types.js';
import {
  decode,
  heartbeatSchema,
  jobCheckpointsReplySchema,
  jobViewSchema,
  listJobViewsReplySchema,
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
 * The longest a job may take to settle after the last command, by the policy's deadlines: a lost worker
 * noticed, a restart's backoff and cleanup, a final checkpoint that waits for one in flight, a stop and a
 * kill, tasks starting again, and a replaced worker starting.
 */
export function settleBudgetMs(settings: FuzzSettings): number {
  const p = settings.policy;
  return (
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
}

export function newStats(): FuzzStats {
  return { commands: {}, skipped: 0, invariants: {}, settleMs: [] };
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
  private controllerProcess!: WeirProcess;
  private workerCount = 0;
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
          system.heard.set(beat.value.worker_id, { jobs, at: Date.now() });
        },
      });
      system.store = await openStore(d.client);
      system.controllerProcess = await d.controller();
      for (let i = 0; i < settings.workers; i++) await system.addWorker();
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

  private async addWorker(): Promise<WeirProcess> {
    const id = `w${++this.workerCount}`;
    const worker = await this.d.worker(id, this.settings.slotsPerWorker);
    this.workers.push(worker);
    this.note(`worker ${id} registered`);
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

  /** SIGKILLs the controller, then starts it again. */
  async restartController(): Promise<void> {
    this.killed.add(this.controllerProcess);
    await this.controllerProcess.kill('SIGKILL');
    this.note('controller killed');
    this.controllerProcess = await this.d.controller();
    this.note('controller started again');
  }

  /** A request to the controller; no answer in time is a violation (it runs, NATS runs). */
  async request(subject: string, body: unknown): Promise<Reply> {
    try {
      return await this.d.request(subject, body, 10_000);
    } catch (err) {
      throw new Violation('the controller answers every request in time', `${subject}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  /** Fails unless the reply is a success or an error with one of `codes`; returns the error code (or null). */
  expectReply(what: string, reply: Reply, codes: readonly string[] = []): string | null {
    const code = reply.error?.code ?? null;
    if (code !== null && !codes.includes(code)) throw new Violation('every request gets a success or an expected error', `${what}: ${code}: ${reply.error?.message ?? ''}`);
    return code;
  }

  async createJob(kind: PipelineKind, name: string): Promise<string> {
    const reply = await this.request(subjects.apiJobsCreate(), pipelineOf(kind, name));
    this.expectReply(`create ${kind}`, reply);
    return reply['job_id'] as string;
  }

  /** Every job view, all pages. */
  async views(): Promise<JobView[]> {
    const out: JobView[] = [];
    let after: string | undefined;
    for (;;) {
      const reply = listJobViewsReplySchema.parse(await this.request(subjects.apiJobsViews(), { v: 1, limit: 100, ...(after === undefined ? {} : { starting_after: after }) }));
      out.push(...reply.data);
      if (!reply.has_more || reply.data.length === 0) return out;
      after = reply.data.at(-1)!.job_id;
    }
  }

  /** No job sits in a waiting state without a reason and a deadline; bounded jobs seen Finished stay Finished. */
  async checkWaits(model: LifecycleModel): Promise<JobView[]> {
    const views = await this.views();
    for (const view of views) {
      const job = model.jobs.find((j) => j.id === view.job_id);
      if (job?.finished === true && view.state !== 'Finished') throw new Violation('a Finished job stays Finished', `${view.job_id} is ${view.state}`);
      if (job?.kind === 'bounded' && view.state === 'Finished') job.finished = true;
      if (NOT_WAITING.includes(view.state)) {
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
   * deadlines; a fresh job runs; the booked slots are what the workers report; the event log has a row
   * for every state change; no process crashed.
   */
  async settle(model: LifecycleModel): Promise<void> {
    const began = Date.now();
    const deadline = began + settleBudgetMs(this.settings);
    await this.untilQuiet(model, deadline);
    this.stats.settleMs.push(Date.now() - began);
    this.count('jobs settle as asked');
    this.count('booked slots are what workers run');
    await this.probe(deadline);
    this.count('a fresh job runs');
    // The probe came and went: nothing of it may be left booked or running.
    await this.untilQuiet(model, Date.now() + settleBudgetMs(this.settings));
    this.count('booked slots are what workers run');
    await this.checkCheckpointsGoOn(model);
    await this.checkLogs(model);
    this.count('the event log has every state change');
    this.checkProcesses();
  }

  /**
   * Until every job is where its desired config puts it and every worker runs exactly what is booked there
   * (both at once, seen through heartbeats sent after the call), or the deadline: then the problems left
   * are the broken invariants.
   */
  private async untilQuiet(model: LifecycleModel, deadline: number): Promise<void> {
    const since = Date.now();
    for (;;) {
      const views = new Map((await this.checkWaits(model)).map((v) => [v.job_id, v]));
      const unsettled = this.stateProblems(model, views);
      const slots = unsettled.length === 0 ? await this.slotProblems(model, views, since) : [];
      if (unsettled.length === 0 && slots.length === 0) return;
      if (Date.now() > deadline) {
        if (unsettled.length > 0) throw new Violation('every job settles as its config asks, within the policy deadlines', unsettled.join('; '));
        throw new Violation('the registry books exactly what the workers run', slots.join('; '));
      }
      await sleep(this.settings.heartbeatIntervalMs);
    }
  }

  private stateProblems(model: LifecycleModel, views: Map<string, JobView>): string[] {
    return model.jobs.flatMap((job) => {
      const view = views.get(job.id);
      const want = settledStates(job);
      if (want.length === 0) return view === undefined ? [] : [`${jobLabel(job)} is ${view.state}, but was deleted`];
      if (view === undefined) return [`${jobLabel(job)} is gone`];
      if (!want.includes(view.state)) return [`${jobLabel(job)} is ${view.state}${view.waiting === null ? '' : ` (${view.waiting.reason})`}, not ${want.join(' or ')}`];
      return [];
    });
  }

  /** A fresh job reaches Running, then stops and goes. */
  private async probe(deadline: number): Promise<void> {
    const id = await this.createJob('unbounded', 'probe');
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
   * The registry's booked slots per worker equal what the worker's own heartbeats say runs there (no slot
   * leaked, none booked twice); no worker runs more than it has; a job runs one generation, the current,
   * with the parallelism asked; nothing runs for a job that does not run; a killed worker is no longer
   * counted live.
   */
  private async slotProblems(model: LifecycleModel, views: Map<string, JobView>, since: number): Promise<string[]> {
    const registry = listWorkersReplySchema.parse(await this.request(subjects.apiWorkersList(), { v: 1 })).data;
    const problems: string[] = [];
    for (const killed of this.killed) {
      if (registry.some((w) => w.worker_id === killed.name && w.live)) problems.push(`the registry still counts the killed worker ${killed.name} live`);
    }
    const running = new Map<string, Set<number>>();
    const slotsOf = new Map<string, number>();
    for (const worker of this.liveWorkers()) {
      const entry: WorkerViewMessage | undefined = registry.find((w) => w.worker_id === worker.name);
      const heard = this.heard.get(worker.name);
      if (entry === undefined || !entry.live) {
        problems.push(`worker ${worker.name} runs but the registry has it ${entry === undefined ? 'not at all' : 'not live'}`);
        continue;
      }
      if (heard === undefined || heard.at < since) {
        problems.push(`no heartbeat from ${worker.name} yet`);
        continue;
      }
      const key = (j: { job_id: string; generation: number; slots: number }) => `${j.job_id}/${j.generation}×${j.slots}`;
      const booked = entry.allocations.map(key).sort();
      const reported = heard.jobs.map(key).sort();
      if (booked.join() !== reported.join()) problems.push(`${worker.name} has booked [${booked.join(', ')}] but runs [${reported.join(', ')}]`);
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

  /** The last lines of every process, for a report. */
  tails(lines = 40): string {
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
