/**
 * The controller's job table: which jobs it runs, each job's runtime, and what it keeps beside the
 * runtime (the config last read or written, the newest config revision the runtime was given, the
 * trigger ids of manual checkpoints). Starting a runtime, resuming a stored job after a controller
 * restart, forwarding a config to a runtime and forgetting a deleted job happen here; the requests and
 * the config follower decide when.
 */
import type { Logger } from 'pino';
import type { JobState } from '../../machines/job/types.js';
import { RequestRejected } from '../protocol/index.js';
import { isTransientStoreError, type JobConfigRecord, type JobRecord, type JobStatusRecord, type Store, type Versioned } from '../store/index.js';
import { backoffMs } from '../shared/backoff.js';
import { retry } from '../shared/retry.js';
import { desired, specOf } from './job-config.js';
import type { JobMetrics } from './job-metrics.js';
import type { JobRuntime, JobRuntimeOptions, ResumeState } from './job-runtime.js';
import type { JobRuntimes } from './job-runtimes.js';
import { needsNewestRecord, takeoverPlan } from './takeover-plan.js';

/** Trigger ids remembered per job (the newest), for idempotent trigger requests. */
export const TRIGGER_IDS_PER_JOB = 256;

const CONFIG_RELOAD_INITIAL_MS = 200;
const CONFIG_RELOAD_MAX_MS = 5_000;

/** The runtime options that differ from job to job; the controller's factory adds the ones its jobs share. */
export type PerJobRuntimeOptions = Pick<JobRuntimeOptions, 'jobId' | 'spec' | 'config' | 'restoreFloor' | 'created' | 'status' | 'resumeState'>;

/** A job's config as last read or written, and its graph's node ids (which a config update checks against). */
export interface KnownConfig {
  nodeIds: string[];
  config: Versioned<JobConfigRecord>;
}

export interface JobTableOptions {
  store: Store;
  /** Where the table's runtimes are kept, by job (the worker service reaches them there). */
  runtimes: JobRuntimes;
  /** Makes a job's runtime; the table adds it. */
  createRuntime: (job: PerJobRuntimeOptions) => JobRuntime;
  /** The jobs' record counts: a forgotten job's go too. */
  jobMetrics: JobMetrics;
  /** Whether the controller is stopping: a stored config is then no longer worth reloading. */
  stopping: () => boolean;
  /** Whether the job's newest restorable checkpoint record is still committing (the takeover of a Finishing job asks). */
  newestRecordCommitting: (jobId: string) => Promise<boolean>;
  log: Logger;
}

export class JobTable {
  private readonly jobIds = new Set<string>();
  /** Per job: the newest config revision the runtime has been given. */
  private readonly appliedRevision = new Map<string, number>();
  /**
   * The config each job was last read or written with, and its graph's node ids: a config update then
   * costs one compare-and-set instead of reading the job's three keys first. Stale entries are harmless:
   * the compare-and-set fails and the store re-reads.
   */
  private readonly knownConfigs = new Map<string, KnownConfig>();
  /** Per job: trigger id → the epoch it started, the newest `TRIGGER_IDS_PER_JOB` (insertion order). */
  private readonly triggers = new Map<string, Map<string, number>>();

  constructor(private readonly options: JobTableOptions) {}

  has(jobId: string): boolean {
    return this.jobIds.has(jobId);
  }

  get size(): number {
    return this.jobIds.size;
  }

  /** The jobs of the table. */
  ids(): string[] {
    return [...this.jobIds];
  }

  /** The state of every job's runtime. */
  *states(): Generator<JobState> {
    for (const jobId of this.jobIds) {
      const runtime = this.options.runtimes.get(jobId);
      if (runtime !== undefined) yield runtime.state();
    }
  }

  /** The job's runtime, if it has one; unlike `runtimeOf`, whether the job is in the table is not asked. */
  runtime(jobId: string): JobRuntime | undefined {
    return this.options.runtimes.get(jobId);
  }

  /** The runtime of a job of the table; `unknown_job` for any other. */
  runtimeOf(jobId: string): JobRuntime {
    const runtime = this.jobIds.has(jobId) ? this.options.runtimes.get(jobId) : undefined;
    if (runtime === undefined) throw new RequestRejected('unknown_job', `no job ${jobId}`);
    return runtime;
  }

  /** The job's runtime is no longer reached (it has been or is being stopped). */
  removeRuntime(jobId: string): void {
    this.options.runtimes.remove(jobId);
  }

  /** The stored record of a job of the table; `unknown_job` for any other. */
  async existing(jobId: string): Promise<JobRecord> {
    const record = await this.options.store.jobs.get(jobId);
    if (record === null || !this.jobIds.has(jobId)) throw new RequestRejected('unknown_job', `no job ${jobId}`);
    return record;
  }

  knownConfig(jobId: string): KnownConfig | undefined {
    return this.knownConfigs.get(jobId);
  }

  rememberConfig(jobId: string, known: KnownConfig): void {
    this.knownConfigs.set(jobId, known);
  }

  /** The job's config and node ids, as this record has them. */
  remember(jobId: string, record: JobRecord): void {
    const nodeIds = specOf(record).runtime.graph.nodes.map((n) => n.id);
    this.knownConfigs.set(jobId, { nodeIds, config: { value: record.config, revision: record.revisions.config } });
  }

  /** Whether the job's runtime has been given this config revision or a newer one. */
  hasApplied(jobId: string, revision: number): boolean {
    return revision <= (this.appliedRevision.get(jobId) ?? 0);
  }

  /** The job's runtime has been given this config revision. */
  markApplied(jobId: string, revision: number): void {
    this.appliedRevision.set(jobId, Math.max(this.appliedRevision.get(jobId) ?? 0, revision));
  }

  /** The epoch a manual checkpoint with this trigger id started, if it is remembered. */
  triggeredEpoch(jobId: string, triggerId: string): number | undefined {
    return this.triggers.get(jobId)?.get(triggerId);
  }

  /** A manual checkpoint with this trigger id started this epoch; kept only for a job of the table. */
  rememberTrigger(jobId: string, triggerId: string, epoch: number): void {
    if (!this.jobIds.has(jobId)) return;
    let ids = this.triggers.get(jobId);
    if (ids === undefined) {
      ids = new Map();
      this.triggers.set(jobId, ids);
    }
    ids.set(triggerId, epoch);
    if (ids.size > TRIGGER_IDS_PER_JOB) ids.delete(ids.keys().next().value!);
  }

  /** A job is gone: it leaves the table, and what is kept about it beside its runtime goes too. */
  forget(jobId: string): void {
    this.jobIds.delete(jobId);
    this.appliedRevision.delete(jobId);
    this.knownConfigs.delete(jobId);
    this.triggers.delete(jobId);
    this.options.jobMetrics.forget(jobId);
  }

  /**
   * A forgotten job whose delete failed: back in the table, even should its runtime fail to start again,
   * and resumed as the terminal state it rests in.
   */
  restore(jobId: string, record: JobRecord, resumeState: ResumeState): JobRuntime {
    this.jobIds.add(jobId);
    return this.startRuntime(jobId, record, resumeState);
  }

  /** The job's runtime, started from its stored record, and the job in the table. */
  startRuntime(jobId: string, record: JobRecord, resumeState?: ResumeState, created = false): JobRuntime {
    const { runtime: spec } = specOf(record);
    const { status } = record;
    const runtime = this.options.createRuntime({
      jobId,
      spec,
      config: desired(record.config),
      restoreFloor: record.config.ignoreStateBeforeEpoch,
      created,
      status: {
        state: status.state,
        generation: status.generation,
        restarts: status.restarts,
        appliedRestartNonce: status.appliedRestartNonce,
        failure: status.failure,
        startTime: status.startTime,
        finishTime: status.finishTime,
        epoch: status.epoch,
        minEpoch: status.minEpoch,
        ...(status.parallelism === undefined ? {} : { parallelism: status.parallelism }),
      },
      ...(resumeState === undefined ? {} : { resumeState }),
    });
    this.options.runtimes.add(jobId, runtime);
    this.jobIds.add(jobId);
    this.markApplied(jobId, record.revisions.config);
    this.remember(jobId, record);
    return runtime;
  }

  /** Every stored job `wanted` that the table lacks, adopted (`adopt`); a job that cannot be is logged and left out. */
  async adoptStored(wanted: (jobId: string) => boolean = () => true): Promise<void> {
    for (const jobId of await this.options.store.jobs.list()) {
      if (this.jobIds.has(jobId) || !wanted(jobId)) continue;
      try {
        await this.adopt(jobId);
      } catch (err) {
        this.options.log.error({ err, jobId }, 'could not adopt the job');
      }
    }
  }

  /**
   * A stored job this controller now owns (a takeover, or its own restart): its runtime started per the
   * takeover table (`takeoverPlan`). A Running job's tasks run on: the runtime re-attaches to them.
   */
  async adopt(jobId: string): Promise<JobState | null> {
    const { store, log } = this.options;
    let record = await store.jobs.get(jobId);
    if (record === null || this.jobIds.has(jobId)) return null;
    const found = record.status.state;
    await this.completeLog(jobId, record.status);
    const committing = needsNewestRecord(record.status.state) ? await this.options.newestRecordCommitting(jobId) : false;
    const plan = takeoverPlan(record.status.state, committing);
    if (plan.rewrite !== undefined) {
      const from = record.status.state;
      const to = plan.rewrite;
      const at = Date.now();
      await store.jobs.updateStatus(jobId, (s) => ({ ...s, state: to, finishTime: s.finishTime ?? at, updatedAt: at, transition: { from, at } }));
      await store.log.append(jobId, { kind: 'transition', from, to, generation: record.status.generation, at }, { id: `${jobId}.${at}.rewrite.t` });
      record = (await store.jobs.get(jobId)) ?? record;
      log.info({ jobId, from, to }, 'adopted as a terminal state');
    }
    this.startRuntime(jobId, record, plan.resumeState);
    log.info({ jobId, stored: found, resumeAs: plan.resumeState ?? 'Compiling', generation: record.status.generation }, 'job adopted');
    return found;
  }

  /**
   * A job this controller no longer owns: its runtime stops without writing anything more (the new owner
   * carries on from the store), and the job leaves the table. Its tasks run on.
   */
  async drop(jobId: string): Promise<void> {
    const runtime = this.options.runtimes.get(jobId);
    this.forget(jobId);
    this.removeRuntime(jobId);
    await runtime?.stop();
    runtime?.releaseSlots();
  }

  /**
   * The transition row of the stored state, appended if the log lacks it: the previous controller stopped
   * between writing the status and appending the row. Any row at or after the change's time shows it landed
   * (a runtime appends in order, so nothing after the row lands without it).
   */
  private async completeLog(jobId: string, status: JobStatusRecord): Promise<void> {
    const { store, log } = this.options;
    const change = status.transition;
    if (change === undefined) return;
    const newest = await store.log.newest(jobId);
    if (newest !== null && newest.at >= change.at) return;
    await store.log.append(jobId, { kind: 'transition', from: change.from, to: status.state, generation: status.generation, at: change.at }, { id: `${jobId}.${change.at}.resumed.t` });
    log.warn({ jobId, from: change.from, to: status.state }, 'the event log lacked the transition of the stored state: appended it');
  }

  /** The job's runtime acts on this desired config, restore floor included. */
  forward(jobId: string, config: JobConfigRecord): void {
    const runtime = this.options.runtimes.get(jobId);
    runtime?.setRestoreFloor(config.ignoreStateBeforeEpoch);
    runtime?.send({ type: 'config.update', config: desired(config) });
  }

  /** After a failed config write: the runtime follows the stored config again, retried while NATS is away. */
  async reloadStoredConfig(jobId: string): Promise<void> {
    const { log } = this.options;
    const wanted = () => !this.options.stopping() && this.jobIds.has(jobId);
    try {
      const record = await retry(async () => (wanted() ? this.existing(jobId) : null), {
        retryable: (err) => isTransientStoreError(err),
        pauseMs: (attempt) => backoffMs(attempt - 1, CONFIG_RELOAD_INITIAL_MS, CONFIG_RELOAD_MAX_MS),
      });
      if (record === null) return;
      this.remember(jobId, record);
      this.markApplied(jobId, record.revisions.config);
      this.forward(jobId, record.config);
      log.info({ jobId, revision: record.revisions.config }, 'runtime given the stored config after a failed config write');
    } catch (err) {
      if (!isTransientStoreError(err)) log.warn({ err, jobId }, 'could not reload the stored config after a failed config write');
    }
  }

  /** Stops every job's runtime; the jobs keep their persisted state. */
  async stopRuntimes(): Promise<void> {
    await Promise.allSettled([...this.jobIds].flatMap((id) => this.options.runtimes.get(id)?.stop() ?? []));
  }
}
