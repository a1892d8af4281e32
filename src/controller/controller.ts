/**
 * The controller: the worker registry and service, one job runtime per job in the store, and the
 * `weir.api.jobs.*` request subjects (queue group `weir-controller`).
 *
 * - Every request body is decoded with its protocol schema; bad input gets an error reply and changes
 *   nothing. A handler never throws: anything unexpected is answered with `internal`.
 * - Requests naming one job are handled one at a time per job, so a config update, a delete and the
 *   runtime's own view of the job never interleave.
 * - Config changes written to the store by another process reach the job's runtime through the
 *   store's config watcher; the controller's own writes are recognised by revision and skipped.
 * - On start, every stored job gets a runtime resumed per the controller-restart table
 *   (`resumePlan`): Created/Stopped/Finished/Failed as themselves, the active states from Compiling
 *   (a full reschedule at the next generation), Failing → Failed, Stopping/CheckpointStopping →
 *   Stopped, Finishing → Finished.
 */
import type { InspectionEvent } from 'xstate';
import { isDeepStrictEqual } from 'node:util';
import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import type { z } from 'zod';
import { TERMINAL_STATES, type JobPolicy } from '../../machines/job/types.js';
import { JobMachines } from './job-machines.js';
import { TimerQueue } from './timer-queue.js';
import {
  CHECKPOINTS_KV_BUCKET,
  DEFAULT_LIST_LIMIT,
  MAX_MESSAGE_BYTES,
  PROTOCOL_VERSION,
  SUBJECTS,
  checkpointDetailsRequestSchema,
  configUpdateSchema,
  controllerMetricsRequestSchema,
  decode,
  encode,
  errorReply,
  isValidId,
  jobCheckpointsRequestSchema,
  jobMetricsRequestSchema,
  jobRequestSchema,
  listJobsRequestSchema,
  listWorkersRequestSchema,
  parseSubject,
  pipelineSchema,
  triggerCheckpointRequestSchema,
  truncateErrorText,
  validateGraph,
  type CheckpointDetailsReply,
  type ControllerMetricsReply,
  type DeleteJobReply,
  type ErrorCode,
  type JobCheckpointsReply,
  type JobMetricsReply,
  type JobRevisionReply,
  jobSummary,
  type JobView,
  type ListJobsReply,
  type ListJobsRequest,
  type ListJobViewsReply,
  type ListWorkersReply,
  type TriggerCheckpointReply,
  RequestRejected,
  OPERATOR_CATALOGUE,
  errorCodeOf,
} from '../protocol/index.js';
import {
  isTransientStoreError,
  openStore,
  type ConfigWatcher,
  type JobConfigRecord,
  type JobRecord,
  type JobStatusRecord,
  type Store,
  type StoreOptions,
  type Versioned,
} from '../store/index.js';
import { offeredOperatorSpecs } from './operator-specs.js';
import { applyUpdate, changesNothing, configFromPipeline, desired, newJobId, specOf } from './job-config.js';
import { jobView } from './job-view.js';
import { resumePlan } from './resume-plan.js';
import { createJobRuntime, DEFAULT_CHECKPOINT_BUCKET, type JobRuntime, type ResumeState } from './job-runtime.js';
import { JobEventRouter } from './job-event-router.js';
import { JobRuntimes } from './job-runtimes.js';
import { WorkerRegistry } from './registry.js';
import { openCheckpointKv, openCheckpointStore } from '../checkpoint/index.js';
import { KeyedQueue } from '../shared/keyed-queue.js';
import { microsFromMs } from '../shared/micros.js';
import { retry } from '../shared/retry.js';
import { backoffMs } from '../shared/backoff.js';
import { openOnce } from '../shared/memo.js';
import { jetstream } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { CONTROLLER_QUEUE, startWorkerService, type WorkerService } from './worker-service.js';
import { orphanReaper } from './worker-requests.js';
import { ManualCheckpointRefused } from './checkpoint-coordinator.js';
import { createControllerMetrics, type ControllerMetrics } from './controller-metrics.js';
import { JobMetrics } from './job-metrics.js';

export const DEFAULT_REQUEST_TIMEOUT_MS = 2_000;

/** What the controller needs of an inspector: somewhere to send its actors' inspection events. */
export interface ActorInspector {
  readonly inspect: { next(event: InspectionEvent): void };
}

export interface ControllerOptions {
  log: Logger;
  /** A worker silent this long is lost. Default: the registry's (30 s). */
  heartbeatTimeoutMs?: number;
  /** Heartbeat interval told to workers. Default: the worker service's (5 s). */
  heartbeatIntervalMs?: number;
  /** Deadline of one controller → worker request. Default 2 s. */
  requestTimeoutMs?: number;
  /** Policy overrides for every job. */
  policy?: Partial<JobPolicy>;
  /** Largest accepted API request. Default `MAX_MESSAGE_BYTES`. */
  maxMessageBytes?: number;
  store?: StoreOptions;
  /** Where the job actors' inspection events go (the Stately inspector's relay, src/inspect); none by default. */
  inspector?: ActorInspector | null;
  /** Default `weir-controller`. */
  queue?: string;
  /** Restorable checkpoints kept per job (1–10). Default 10. */
  retainedCheckpoints?: number;
  /** Periodic checkpoints start on this grid (ms), so that those due together start in one batch. Default 10. */
  checkpointGridMs?: number;
  /** Largest page of job views (JSON bytes). Default: 90 % of the server's `max_payload`. */
  maxViewPageBytes?: number;
}

export type ApiRequest = 'create' | 'config' | 'delete' | 'get' | 'list' | 'views' | 'checkpoints' | 'checkpoint' | 'trigger_checkpoint' | 'job_metrics' | 'metrics' | 'workers';

/** How long a trigger request waits for a checkpoint in flight before it answers `conflict`. */
export const MANUAL_CHECKPOINT_WAIT_MS = 3_000;
/** Trigger ids remembered per job (the newest), for idempotent trigger requests. */
export const TRIGGER_IDS_PER_JOB = 256;

export interface ControllerStats {
  jobs: number;
  received: Record<ApiRequest, number>;
  /** RequestRejected requests by error code. */
  rejected: Partial<Record<ErrorCode, number>>;
  /** Config changes of other processes forwarded to a runtime. */
  externalConfigChanges: number;
}

export interface Controller {
  readonly runtimes: JobRuntimes;
  readonly store: Store;
  readonly registry: WorkerRegistry;
  /** The controller's Prometheus metrics (a private registry), as served on `weir.api.metrics`. */
  readonly metrics: ControllerMetrics;
  /** The Prometheus exposition text. */
  metricsText(): Promise<string>;
  /** The recent record counts of every job's current generation. */
  readonly jobMetrics: JobMetrics;
  stats(): ControllerStats;
  /** Stops serving, stops every runtime (jobs keep their persisted state) and the worker service. Idempotent. */
  stop(): Promise<void>;
}


/** The reference keeps 100 checkpoint rows per job. */
const CHECKPOINT_HISTORY_LIMIT = 100;
const CONFIG_RELOAD_INITIAL_MS = 200;
const CONFIG_RELOAD_MAX_MS = 5_000;

function storeCode(err: unknown): { code: ErrorCode; message: string } {
  return { code: errorCodeOf(err), message: err instanceof Error ? err.message : String(err) };
}

export async function startController(nc: NatsConnection, options: ControllerOptions): Promise<Controller> {
  const log = options.log.child({ component: 'controller' });
  const queue = options.queue ?? CONTROLLER_QUEUE;
  const maxBytes = options.maxMessageBytes ?? MAX_MESSAGE_BYTES;
  const requestTimeoutMs = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
  const stats: ControllerStats = {
    jobs: 0,
    received: { create: 0, config: 0, delete: 0, get: 0, list: 0, views: 0, checkpoints: 0, checkpoint: 0, trigger_checkpoint: 0, job_metrics: 0, metrics: 0, workers: 0 },
    rejected: {},
    externalConfigChanges: 0,
  };

  const store = await openStore(nc, options.store);
  const inspector = options.inspector ?? undefined;
  const registry = new WorkerRegistry(options.heartbeatTimeoutMs === undefined ? {} : { heartbeatTimeoutMs: options.heartbeatTimeoutMs });
  const runtimes = new JobRuntimes();
  // One provided machine for every job actor; one timer for every job's checkpoint schedule and timeouts.
  const machines = new JobMachines();
  const timers = new TimerQueue({ onError: (err) => log.error({ err }, 'a checkpoint timer failed') });
  const jobIds = new Set<string>();
  /** Per job: the newest config revision the runtime has been given. */
  const appliedRevision = new Map<string, number>();
  /**
   * The config each job was last read or written with, and its graph's node ids: a config update then
   * costs one compare-and-set instead of reading the job's three keys first. Stale entries are harmless:
   * the compare-and-set fails and the store re-reads.
   */
  const knownConfigs = new Map<string, { nodeIds: string[]; config: Versioned<JobConfigRecord> }>();
  function remember(jobId: string, record: JobRecord): void {
    const nodeIds = specOf(record).runtime.graph.nodes.map((n) => n.id);
    knownConfigs.set(jobId, { nodeIds, config: { value: record.config, revision: record.revisions.config } });
  }
  /** Per job: trigger id → the epoch it started, the newest `TRIGGER_IDS_PER_JOB` (insertion order). */
  const triggers = new Map<string, Map<string, number>>();
  const jobMetrics = new JobMetrics({ accept: (jobId) => jobIds.has(jobId) });
  const metrics = createControllerMetrics({
    *jobStates() {
      for (const jobId of jobIds) {
        const runtime = runtimes.get(jobId);
        if (runtime !== undefined) yield runtime.state();
      }
    },
    workers: () => registry.liveness(),
  });
  /** A job is gone: what is kept about it beside its runtime goes too. */
  function forgetJob(jobId: string): void {
    triggers.delete(jobId);
    jobMetrics.forget(jobId);
  }
  /** Per job: the tail of its request chain. */
  /** Each job's requests, config changes and checkpoint triggers, one at a time. */
  const perJob = new KeyedQueue();
  let stopping: Promise<void> | undefined;

  const workers: WorkerService = startWorkerService(nc, registry, {
    log,
    onLost: (jobId, generation, workerId, reason) => runtimes.onWorkerLost(jobId, generation, workerId, reason),
    onOrphan: orphanReaper(nc, registry, log, requestTimeoutMs),
    ...(options.heartbeatIntervalMs === undefined ? {} : { heartbeatIntervalMs: options.heartbeatIntervalMs }),
    queue,
    onCounts: (report) => jobMetrics.record(report),
  });
  // Reconnects of the connection, for weir_nats_reconnects_total; the iterator ends with the connection.
  const status = nc.status();
  void (async () => {
    for await (const s of status) if (s.type === 'reconnect') metrics.reconnect();
  })().catch((err: unknown) => log.warn({ err }, 'the NATS status stream failed'));

  /** The checkpoint store of the jobs' state blobs, shared by the runtimes; opened on first use. */
  const stateStore = openOnce(() => openCheckpointStore(nc));
  /** The checkpoint records' bucket, shared by the runtimes; opened on first use. */
  const checkpointKv = openCheckpointKv(nc, DEFAULT_CHECKPOINT_BUCKET, requestTimeoutMs);
  /** Every job's task and checkpoint events, on two subscriptions. */
  const events = new JobEventRouter(nc, log);

  async function purgeCheckpointRecords(jobId: string): Promise<void> {
    const kv = await new Kvm(jetstream(nc, { timeout: requestTimeoutMs })).open(CHECKPOINTS_KV_BUCKET);
    const keys: string[] = [];
    for await (const key of await kv.keys(`${jobId}.*`)) keys.push(key);
    for (const key of keys) await kv.purge(key);
  }

  function startRuntime(jobId: string, record: JobRecord, resumeState?: ResumeState, created = false): JobRuntime {
    const { runtime: spec } = specOf(record);
    const { status } = record;
    const runtime = createJobRuntime({
      nc,
      store,
      registry,
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
      },
      ...(options.policy === undefined ? {} : { policy: options.policy }),
      log,
      requestTimeoutMs,
      ...(resumeState === undefined ? {} : { resumeState }),
      ...(inspector === undefined ? {} : { inspect: inspector.inspect }),
      timers,
      machines,
      checkpointStore: stateStore,
      checkpointKv,
      events,
      ...(options.retainedCheckpoints === undefined ? {} : { retainedCheckpoints: options.retainedCheckpoints }),
      ...(options.checkpointGridMs === undefined ? {} : { checkpointGridMs: options.checkpointGridMs }),
      onTransition: (_from, to) => metrics.transition(to),
      onCheckpointOutcome: (outcome) => metrics.checkpoint(outcome),
    });
    runtimes.add(jobId, runtime);
    jobIds.add(jobId);
    appliedRevision.set(jobId, Math.max(appliedRevision.get(jobId) ?? 0, record.revisions.config));
    remember(jobId, record);
    return runtime;
  }

  /**
   * The transition row of the stored state, appended if the log lacks it: the previous controller stopped
   * between writing the status and appending the row. Any row at or after the change's time shows it landed
   * (a runtime appends in order, so nothing after the row lands without it).
   */
  async function completeLog(jobId: string, status: JobStatusRecord): Promise<void> {
    const change = status.transition;
    if (change === undefined) return;
    const newest = await store.log.newest(jobId);
    if (newest !== null && newest.at >= change.at) return;
    await store.log.append(jobId, { kind: 'transition', from: change.from, to: status.state, generation: status.generation, at: change.at }, { id: `${jobId}.${change.at}.resumed.t` });
    log.warn({ jobId, from: change.from, to: status.state }, 'the event log lacked the transition of the stored state: appended it');
  }

  async function resume(jobId: string): Promise<void> {
    let record = await store.jobs.get(jobId);
    if (record === null) return;
    await completeLog(jobId, record.status);
    const plan = resumePlan(record.status.state);
    if (plan.rewrite !== undefined) {
      const from = record.status.state;
      const to = plan.rewrite;
      const at = Date.now();
      await store.jobs.updateStatus(jobId, (s) => ({ ...s, state: to, finishTime: s.finishTime ?? at, updatedAt: at, transition: { from, at } }));
      await store.log.append(jobId, { kind: 'transition', from, to, generation: record.status.generation, at }, { id: `${jobId}.${at}.rewrite.t` });
      record = (await store.jobs.get(jobId)) ?? record;
      log.info({ jobId, from, to }, 'resumed as a terminal state after a controller restart');
    }
    startRuntime(jobId, record, plan.resumeState);
    log.info({ jobId, stored: record.status.state, resumeAs: plan.resumeState ?? 'Compiling', generation: record.status.generation }, 'job resumed');
  }

  // ─── Request handling ─────────────────────────────────────────────────────────────────────────

  function body<S extends z.ZodType>(schema: S, msg: Msg): z.output<S> {
    const result = decode(schema, msg.data, { maxBytes });
    if (!result.ok) throw new RequestRejected(result.error.code, result.error.message);
    return result.value;
  }

  function jobOf(msg: Msg): string {
    const parsed = parseSubject(msg.subject);
    const jobId = parsed?.params['job'];
    if (jobId === undefined || !isValidId(jobId)) throw new RequestRejected('unknown_job', `no job named by ${msg.subject}`);
    return jobId;
  }

  async function existing(jobId: string): Promise<JobRecord> {
    const record = await store.jobs.get(jobId);
    if (record === null || !jobIds.has(jobId)) throw new RequestRejected('unknown_job', `no job ${jobId}`);
    return record;
  }

  async function create(msg: Msg): Promise<JobRevisionReply> {
    const pipeline = body(pipelineSchema, msg);
    const problems = validateGraph(pipeline, offeredOperatorSpecs(registry.operators(), OPERATOR_CATALOGUE, pipeline.graph));
    if (problems.length > 0) throw new RequestRejected('invalid_pipeline', truncateErrorText(problems.map((p) => `${p.path}: ${p.message}`).join('; ')));
    const jobId = newJobId();
    const spec = { ...(pipeline as unknown as Record<string, never>), created_at: microsFromMs(Date.now()) };
    const record = await store.jobs.create(jobId, spec, configFromPipeline(pipeline));
    return perJob.run(jobId, async () => {
      try {
        startRuntime(jobId, record, undefined, true);
      } catch (err) {
        // Nothing may stay behind for a create that failed.
        jobIds.delete(jobId);
        await store.jobs.delete(jobId).catch((e: unknown) => log.error({ err: e, jobId }, 'could not undo a failed create'));
        throw err;
      }
      log.info({ jobId, name: pipeline.name }, 'job created');
      return { v: PROTOCOL_VERSION, job_id: jobId, revision: record.revisions.config };
    });
  }

  async function config(msg: Msg): Promise<JobRevisionReply> {
    const jobId = jobOf(msg);
    const update = body(configUpdateSchema, msg);
    return perJob.run(jobId, async () => {
      const runtime = runtimes.get(jobId);
      let known = jobIds.has(jobId) && runtime !== undefined ? knownConfigs.get(jobId) : undefined;
      // An expected revision is checked against the store, not against what this process last saw.
      let latestEpoch = runtime?.coordinator.epoch ?? 0;
      if (known === undefined || update.expected_revision !== undefined) {
        const record = await existing(jobId);
        remember(jobId, record);
        known = knownConfigs.get(jobId)!;
        latestEpoch = Math.max(latestEpoch, record.status.epoch);
      }
      let { nodeIds, config: current } = known;
      if (update.expected_revision !== undefined && update.expected_revision !== current.revision) {
        throw new RequestRejected('conflict', `job ${jobId} is at revision ${current.revision}, not ${update.expected_revision}`);
      }
      // Validated before the write so that a bad update changes nothing.
      let next = applyUpdate(current.value, update, nodeIds, latestEpoch);
      const state = runtime?.state();
      if (changesNothing(current.value, next, state)) {
        // Judged on the stored config, not on what this process last saw of it: another writer may have changed it.
        const record = await existing(jobId);
        remember(jobId, record);
        ({ nodeIds, config: current } = knownConfigs.get(jobId)!);
        next = applyUpdate(current.value, update, nodeIds, latestEpoch);
        if (changesNothing(current.value, next, state)) {
          log.info({ jobId, update, state }, 'config update changes nothing');
          return { v: PROTOCOL_VERSION, job_id: jobId, revision: current.revision, changed: false, ...(state === undefined ? {} : { state }) };
        }
      }
      const write = store.jobs.updateConfig(jobId, (value) => applyUpdate(value, update, nodeIds, latestEpoch), current);
      // The runtime gets the update while its write is in flight, so the transition it causes is persisted
      // beside the config rather than one round trip later. Should the process die in between, a resumed
      // job converges on the stored config whichever of the two landed (Stopped starts again when the
      // stored config asks to run; a config without its transition is acted on at resume).
      forward(jobId, next);
      let result: Versioned<JobConfigRecord>;
      try {
        result = await write;
      } catch (err) {
        // The runtime holds a config the store may not: give it back what the store holds, once it can be read.
        void perJob.run(jobId, () => reloadStoredConfig(jobId));
        throw err;
      }
      knownConfigs.set(jobId, { nodeIds, config: result });
      appliedRevision.set(jobId, Math.max(appliedRevision.get(jobId) ?? 0, result.revision));
      if (!isDeepStrictEqual(result.value, next)) {
        // Re-applied on top of a change another writer made meanwhile: the runtime follows the merge.
        forward(jobId, result.value);
      }
      log.info({ jobId, revision: result.revision, update }, 'config updated');
      const after = runtimes.get(jobId)?.state();
      return { v: PROTOCOL_VERSION, job_id: jobId, revision: result.revision, changed: true, ...(after === undefined ? {} : { state: after }) };
    });
  }

  /** The job's runtime acts on this desired config, restore floor included. */
  function forward(jobId: string, config: JobConfigRecord): void {
    const runtime = runtimes.get(jobId);
    runtime?.setRestoreFloor(config.ignoreStateBeforeEpoch);
    runtime?.send({ type: 'config.update', config: desired(config) });
  }

  /** After a failed config write: the runtime follows the stored config again, retried while NATS is away. */
  async function reloadStoredConfig(jobId: string): Promise<void> {
    const wanted = () => stopping === undefined && jobIds.has(jobId);
    try {
      const record = await retry(async () => (wanted() ? existing(jobId) : null), {
        retryable: (err) => isTransientStoreError(err),
        pauseMs: (attempt) => backoffMs(attempt - 1, CONFIG_RELOAD_INITIAL_MS, CONFIG_RELOAD_MAX_MS),
      });
      if (record === null) return;
      remember(jobId, record);
      appliedRevision.set(jobId, Math.max(appliedRevision.get(jobId) ?? 0, record.revisions.config));
      forward(jobId, record.config);
      log.info({ jobId, revision: record.revisions.config }, 'runtime given the stored config after a failed config write');
    } catch (err) {
      if (!isTransientStoreError(err)) log.warn({ err, jobId }, 'could not reload the stored config after a failed config write');
    }
  }

  async function remove(msg: Msg): Promise<DeleteJobReply> {
    const jobId = jobOf(msg);
    body(jobRequestSchema, msg);
    return perJob.run(jobId, async () => {
      let record = await existing(jobId);
      const state = runtimes.get(jobId)?.state() ?? record.status.state;
      if (!TERMINAL_STATES.includes(state)) throw new RequestRejected('not_terminal', `job ${jobId} is ${state}; stop it first`);
      const runtime = runtimes.get(jobId);
      if (runtime !== undefined) {
        await runtime.stop();
        runtimes.remove(jobId);
      }
      record = (await store.jobs.get(jobId)) ?? record;
      if (!TERMINAL_STATES.includes(record.status.state)) {
        // Should not happen: the runtime persisted a terminal state before it was stopped. Keep the job.
        startRuntime(jobId, record, undefined);
        throw new RequestRejected('not_terminal', `job ${jobId} is stored as ${record.status.state}`);
      }
      jobIds.delete(jobId);
      appliedRevision.delete(jobId);
      knownConfigs.delete(jobId);
      forgetJob(jobId);
      try {
        await store.jobs.delete(jobId, { statusRevision: record.revisions.status });
      } catch (err) {
        jobIds.add(jobId);
        startRuntime(jobId, record, record.status.state as ResumeState);
        throw err;
      }
      await store.log.purge(jobId).catch((err: unknown) => log.warn({ err, jobId }, 'could not purge the job log'));
      // Its checkpoints go too: the records in the ring, and the state blobs (its run in the checkpoint store).
      await purgeCheckpointRecords(jobId).catch((err: unknown) => log.warn({ err, jobId }, 'could not purge the checkpoint records'));
      await stateStore()
        .then((checkpoints) => checkpoints.deleteRun(jobId))
        .catch((err: unknown) => log.warn({ err, jobId }, 'could not delete the job state from the checkpoint store'));
      runtime?.announceDeleted();
      log.info({ jobId }, 'job deleted');
      return { v: PROTOCOL_VERSION, job_id: jobId };
    });
  }

  async function get(msg: Msg): Promise<JobView> {
    const jobId = jobOf(msg);
    body(jobRequestSchema, msg);
    const record = await existing(jobId);
    return jobView(jobId, record, runtimes.get(jobId)?.progress());
  }

  function runtimeOf(jobId: string): JobRuntime {
    const runtime = jobIds.has(jobId) ? runtimes.get(jobId) : undefined;
    if (runtime === undefined) throw new RequestRejected('unknown_job', `no job ${jobId}`);
    return runtime;
  }

  /** Checkpoint reads go to JetStream directly: an outage is `unavailable`, not a bug. */
  async function readCheckpoints<T>(jobId: string, read: () => Promise<T>): Promise<T> {
    try {
      return await read();
    } catch (err) {
      if (err instanceof RequestRejected) throw err;
      throw new RequestRejected('unavailable', `cannot read the checkpoints of job ${jobId}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  async function checkpoints(msg: Msg): Promise<JobCheckpointsReply> {
    const jobId = jobOf(msg);
    const request = body(jobCheckpointsRequestSchema, msg);
    const runtime = runtimeOf(jobId);
    const all = await readCheckpoints(jobId, () => runtime.checkpointHistory(CHECKPOINT_HISTORY_LIMIT));
    return { v: PROTOCOL_VERSION, job_id: jobId, data: request.include_failed ? all : all.filter((c) => c.status !== 'failed') };
  }

  async function checkpoint(msg: Msg): Promise<CheckpointDetailsReply> {
    const jobId = jobOf(msg);
    const { epoch } = body(checkpointDetailsRequestSchema, msg);
    const runtime = runtimeOf(jobId);
    const details = await readCheckpoints(jobId, () => runtime.checkpointDetails(epoch));
    if (details === null) throw new RequestRejected('unknown_checkpoint', `job ${jobId} has no checkpoint ${epoch}`);
    return { v: PROTOCOL_VERSION, job_id: jobId, checkpoint: details.checkpoint, data: details.operators };
  }

  /**
   * One page of jobs, newest first, each as `item` makes it. `fits` may end the page early (the item
   * that does not fit starts the next one); a page always holds at least one job when there is one.
   */
  async function page<T>(request: ListJobsRequest, item: (view: JobView) => T, fits: (item: T) => boolean = () => true): Promise<{ data: T[]; has_more: boolean }> {
    const limit = request.limit ?? DEFAULT_LIST_LIMIT;
    // Ids are time-ordered, so newest first is reverse id order.
    let ids = (await store.jobs.list()).filter((id) => jobIds.has(id)).reverse();
    if (request.starting_after !== undefined) {
      const after = request.starting_after;
      ids = ids.filter((id) => id < after);
    }
    const data: T[] = [];
    let next = 0;
    // A page's records are read together; a job deleted meanwhile leaves a gap the next batch fills.
    while (next < ids.length && data.length < limit) {
      const batch = ids.slice(next, next + limit - data.length);
      const records = await Promise.all(batch.map((id) => store.jobs.get(id).catch(() => null)));
      for (const [k, id] of batch.entries()) {
        const record = records[k];
        if (record !== null && record !== undefined) {
          const made = item(jobView(id, record, runtimes.get(id)?.progress()));
          if (!fits(made) && data.length > 0) return { data, has_more: true };
          data.push(made);
        }
        next++;
      }
    }
    return { data, has_more: next < ids.length };
  }

  async function list(msg: Msg): Promise<ListJobsReply> {
    return { v: PROTOCOL_VERSION, ...(await page(body(listJobsRequestSchema, msg), jobSummary)) };
  }

  /** Whole views, so a client showing graphs asks once per page; the page stops short of NATS's size limit. */
  async function views(msg: Msg): Promise<ListJobViewsReply> {
    const budget = options.maxViewPageBytes ?? Math.floor(0.9 * (nc.info?.max_payload ?? MAX_MESSAGE_BYTES));
    let bytes = 0;
    const fits = (view: JobView): boolean => {
      bytes += Buffer.byteLength(JSON.stringify(view)) + 1;
      return bytes <= budget;
    };
    return { v: PROTOCOL_VERSION, ...(await page(body(listJobsRequestSchema, msg), (view) => view, fits)) };
  }

  /**
   * A checkpoint now (`CheckpointCoordinator.manual`), answered once it has started. Per job one at a
   * time, so two requests with the same trigger id start one checkpoint; a repeated id is answered with
   * the epoch it started, `started: false`.
   */
  async function triggerCheckpoint(msg: Msg): Promise<TriggerCheckpointReply> {
    const jobId = jobOf(msg);
    const request = body(triggerCheckpointRequestSchema, msg);
    const triggerId = request.trigger_id;
    const reply = (epoch: number, started: boolean): TriggerCheckpointReply => ({
      v: PROTOCOL_VERSION,
      job_id: jobId,
      epoch,
      ...(triggerId === undefined ? {} : { trigger_id: triggerId }),
      started,
    });
    const remembered = () => (triggerId === undefined ? undefined : triggers.get(jobId)?.get(triggerId));
    const deadline = Date.now() + MANUAL_CHECKPOINT_WAIT_MS;
    // A checkpoint in flight is waited for outside the job's request queue: a config update sent meanwhile
    // (a stop, say) is answered at once rather than behind the trigger.
    for (;;) {
      const seen = remembered();
      if (seen !== undefined) return reply(seen, false);
      await runtimeOf(jobId).coordinator.settleInFlight(Math.max(0, deadline - Date.now()));
      const answer = await perJob.run(jobId, (): TriggerCheckpointReply | null => {
        const runtime = runtimeOf(jobId);
        const seenNow = remembered();
        if (seenNow !== undefined) return reply(seenNow, false);
        const notRunning = () => {
          const state = runtime.state();
          return new RequestRejected('not_running', `job ${jobId} is ${state}${state === 'Running' ? ' but taking its final checkpoint' : ''}: checkpoints can be triggered only while it is Running`);
        };
        if (runtime.state() !== 'Running') throw notRunning();
        let started: { epoch: number };
        try {
          started = runtime.coordinator.manual();
        } catch (err) {
          if (!(err instanceof ManualCheckpointRefused)) throw err;
          if (err.reason === 'not_armed') throw notRunning();
          if (err.reason === 'in_flight') {
            // Another one started while this request waited: wait for it too, within the same deadline.
            if (Date.now() < deadline) return null;
            throw new RequestRejected('conflict', `job ${jobId}: checkpoint ${err.epoch} is still in flight after ${MANUAL_CHECKPOINT_WAIT_MS} ms; try again later`);
          }
          throw new RequestRejected('conflict', `job ${jobId}: ${err.message}`);
        }
        if (triggerId !== undefined && jobIds.has(jobId)) {
          let ids = triggers.get(jobId);
          if (ids === undefined) {
            ids = new Map();
            triggers.set(jobId, ids);
          }
          ids.set(triggerId, started.epoch);
          if (ids.size > TRIGGER_IDS_PER_JOB) ids.delete(ids.keys().next().value!);
        }
        log.info({ jobId, epoch: started.epoch, triggerId }, 'checkpoint triggered');
        return reply(started.epoch, true);
      });
      if (answer !== null) return answer;
    }
  }

  function jobMetricsOf(msg: Msg): Promise<JobMetricsReply> {
    const jobId = jobOf(msg);
    body(jobMetricsRequestSchema, msg);
    const runtime = runtimeOf(jobId);
    const parallelism = runtime.parallelism();
    const nodes = runtime.spec.graph.nodes.map((n) => ({ id: n.id, operator: n.operator, parallelism: parallelism.get(n.id) ?? n.parallelism }));
    return Promise.resolve({ v: PROTOCOL_VERSION, job_id: jobId, ...jobMetrics.view(jobId, runtime.actor.getSnapshot().context.generation, nodes) });
  }

  async function controllerMetrics(msg: Msg): Promise<ControllerMetricsReply> {
    body(controllerMetricsRequestSchema, msg);
    return { v: PROTOCOL_VERSION, text: await metrics.text() };
  }

  function workerList(msg: Msg): Promise<ListWorkersReply> {
    body(listWorkersRequestSchema, msg);
    const held = (g: { jobId: string; generation: number; slots: number }) => ({ job_id: g.jobId, generation: g.generation, slots: g.slots });
    const data = registry.list().map((w) => ({
      worker_id: w.workerId,
      slots: w.slots,
      free_slots: w.freeSlots,
      operators: w.operators,
      hostname: w.hostname ?? null,
      pid: w.pid ?? null,
      registered_at: microsFromMs(w.registeredAt),
      last_seen_at: microsFromMs(w.lastSeenAt),
      live: w.live,
      allocations: w.allocations.map(held),
      reported: w.reported.map(held),
    }));
    return Promise.resolve({ v: PROTOCOL_VERSION, data });
  }

  const handlers: Record<ApiRequest, (msg: Msg) => Promise<unknown>> = {
    create,
    config,
    delete: remove,
    get,
    list,
    views,
    checkpoints,
    checkpoint,
    trigger_checkpoint: triggerCheckpoint,
    job_metrics: jobMetricsOf,
    metrics: controllerMetrics,
    workers: workerList,
  };

  function serve(kind: ApiRequest, subject: string): Subscription {
    return nc.subscribe(subject, {
      queue,
      callback: (err, msg) => {
        if (err !== null) {
          log.error({ err, subject }, 'API subscription failed');
          return;
        }
        stats.received[kind]++;
        metrics.request(kind);
        // A handler that throws synchronously is answered like one that rejects.
        void new Promise<unknown>((resolve) => resolve(handlers[kind](msg))).then(
          (reply) => msg.respond(encode(reply)),
          (e: unknown) => {
            const { code, message } = storeCode(e);
            stats.rejected[code] = (stats.rejected[code] ?? 0) + 1;
            metrics.rejection(code);
            if (code === 'internal') log.error({ err: e, subject: msg.subject }, 'API request failed');
            else log.warn({ code, reason: message, subject: msg.subject }, 'API request rejected');
            try {
              msg.respond(encode(errorReply(code, truncateErrorText(message))));
            } catch (respondErr) {
              log.warn({ err: respondErr }, 'could not send the error reply');
            }
          },
        );
      },
    });
  }

  // ─── Start ────────────────────────────────────────────────────────────────────────────────────

  // The watcher first, then the current jobs: a change made in between is seen by both (revision decides).
  const watcher: ConfigWatcher = await store.jobs.watchConfigs(
    (change) => {
      if (stopping !== undefined) return;
      const { jobId, config: cfg, revision } = change;
      return perJob.run(jobId, async () => {
        if (!jobIds.has(jobId)) return;
        if (revision <= (appliedRevision.get(jobId) ?? 0)) return;
        appliedRevision.set(jobId, revision);
        const runtime = runtimes.get(jobId);
        if (cfg === null) {
          // Deleted by another process.
          knownConfigs.delete(jobId);
          jobIds.delete(jobId);
          forgetJob(jobId);
          runtimes.remove(jobId);
          await runtime?.stop();
          log.info({ jobId }, 'job deleted elsewhere: runtime stopped');
          return;
        }
        stats.externalConfigChanges++;
        const known = knownConfigs.get(jobId);
        if (known !== undefined) knownConfigs.set(jobId, { nodeIds: known.nodeIds, config: { value: cfg, revision } });
        forward(jobId, cfg);
        log.info({ jobId, revision }, 'config changed elsewhere: forwarded to the runtime');
      });
    },
    { onError: (err) => log.warn({ err }, 'config watcher problem') },
  );

  for (const jobId of await store.jobs.list()) {
    try {
      await resume(jobId);
    } catch (err) {
      log.error({ err, jobId }, 'could not resume the job');
    }
  }

  const subscriptions = [
    serve('create', SUBJECTS.apiJobsCreate.wildcard),
    serve('list', SUBJECTS.apiJobsList.wildcard),
    serve('views', SUBJECTS.apiJobsViews.wildcard),
    serve('config', SUBJECTS.apiJobConfig.wildcard),
    serve('delete', SUBJECTS.apiJobDelete.wildcard),
    serve('get', SUBJECTS.apiJobGet.wildcard),
    serve('checkpoints', SUBJECTS.apiJobCheckpoints.wildcard),
    serve('checkpoint', SUBJECTS.apiJobCheckpoint.wildcard),
    serve('trigger_checkpoint', SUBJECTS.apiJobTriggerCheckpoint.wildcard),
    serve('job_metrics', SUBJECTS.apiJobMetrics.wildcard),
    serve('metrics', SUBJECTS.apiMetrics.wildcard),
    serve('workers', SUBJECTS.apiWorkersList.wildcard),
  ];
  await nc.flush();
  await workers.ready();
  log.info({ jobs: jobIds.size }, 'controller started');

  return {
    runtimes,
    store,
    registry,
    metrics,
    metricsText: () => metrics.text(),
    jobMetrics,
    stats: () => ({ ...stats, jobs: jobIds.size, received: { ...stats.received }, rejected: { ...stats.rejected } }),
    stop() {
      stopping ??= (async () => {
        await Promise.allSettled(subscriptions.map((s) => s.drain()));
        watcher.stop();
        await perJob.idle();
        await Promise.allSettled([...jobIds].flatMap((id) => runtimes.get(id)?.stop() ?? []));
        await events.close();
        timers.close();
        await workers.stop();
        (status as { stop?: () => void }).stop?.();
        log.info('controller stopped');
      })();
      return stopping;
    },
  };
}
