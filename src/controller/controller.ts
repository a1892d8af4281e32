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
 *
 * This file wires the parts and owns their order of start and stop: the job table (job-table.ts), the
 * request handlers (job-, checkpoint- and info-requests.ts), serving them (request-server.ts) and
 * following config changes made elsewhere (config-follower.ts).
 */
import type { InspectionEvent } from 'xstate';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import type { JobPolicy } from '../../machines/job/types.js';
import { JobMachines } from './job-machines.js';
import { TimerQueue } from './timer-queue.js';
import { MAX_MESSAGE_BYTES, type ErrorCode } from '../protocol/index.js';
import { openStore, type Store, type StoreOptions } from '../store/index.js';
import { createJobRuntime, DEFAULT_CHECKPOINT_BUCKET } from './job-runtime.js';
import { JobEventRouter } from './job-event-router.js';
import { JobRuntimes } from './job-runtimes.js';
import { WorkerRegistry } from './registry.js';
import { openCheckpointKv, openCheckpointStore } from '../checkpoint/index.js';
import { KeyedQueue } from '../shared/keyed-queue.js';
import { openOnce } from '../shared/memo.js';
import { CONTROLLER_QUEUE, startWorkerService, type WorkerService } from './worker-service.js';
import { orphanReaper } from './worker-requests.js';
import { createControllerMetrics, type ControllerMetrics } from './controller-metrics.js';
import { JobMetrics } from './job-metrics.js';
import { JobTable } from './job-table.js';
import { jobRequests } from './job-requests.js';
import { checkpointRequests } from './checkpoint-requests.js';
import { infoRequests } from './info-requests.js';
import { startRequestServer, type ApiRequest, type RequestHandlers } from './request-server.js';
import { followConfigChanges } from './config-follower.js';

export type { ApiRequest } from './request-server.js';
export { MANUAL_CHECKPOINT_WAIT_MS } from './checkpoint-requests.js';
export { TRIGGER_IDS_PER_JOB } from './job-table.js';

export const DEFAULT_REQUEST_TIMEOUT_MS = 2_000;

/** What the controller needs of an inspector: somewhere to send its actors' inspection events. */
export interface ActorInspector {
  readonly inspect: { next(event: InspectionEvent): void };
}

export interface ControllerOptions {
  log: Logger;
  /**
   * Replicas of every bucket and stream the controller creates (jobs, event log, checkpoint records and
   * state): 1 on one server, 3 on a 3-node cluster. Existing ones keep theirs. Default `store.replicas`, else 1.
   */
  replicas?: number;
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

export async function startController(nc: NatsConnection, options: ControllerOptions): Promise<Controller> {
  const log = options.log.child({ component: 'controller' });
  const queue = options.queue ?? CONTROLLER_QUEUE;
  const maxBytes = options.maxMessageBytes ?? MAX_MESSAGE_BYTES;
  const requestTimeoutMs = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;

  const replicas = options.replicas ?? options.store?.replicas ?? 1;
  const store = await openStore(nc, { ...options.store, replicas });
  const inspector = options.inspector ?? undefined;
  const registry = new WorkerRegistry(options.heartbeatTimeoutMs === undefined ? {} : { heartbeatTimeoutMs: options.heartbeatTimeoutMs });
  const runtimes = new JobRuntimes();
  // One provided machine for every job actor; one timer for every job's checkpoint schedule and timeouts.
  const machines = new JobMachines();
  const timers = new TimerQueue({ onError: (err) => log.error({ err }, 'a checkpoint timer failed') });
  // The metrics count the table's jobs and the table's runtimes report to them: each reads the other only
  // when called, and the table (declared below) exists before anything can call them.
  const jobMetrics = new JobMetrics({ accept: (jobId) => table.has(jobId) });
  const metrics = createControllerMetrics({
    jobStates: () => table.states(),
    workers: () => registry.liveness(),
  });
  /** Each job's requests, config changes and checkpoint triggers, one at a time. */
  const perJob = new KeyedQueue();
  let stopping: Promise<void> | undefined;
  const isStopping = () => stopping !== undefined;

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
  const stateStore = openOnce(() => openCheckpointStore(nc, { replicas }));
  /** The checkpoint records' bucket, shared by the runtimes; opened on first use. */
  const checkpointKv = openCheckpointKv(nc, DEFAULT_CHECKPOINT_BUCKET, requestTimeoutMs, replicas);
  /** Every job's task and checkpoint events, on two subscriptions. */
  const events = new JobEventRouter(nc, log);

  const table: JobTable = new JobTable({
    store,
    runtimes,
    // What every job's runtime shares; the table adds what is the job's own.
    createRuntime: (job) =>
      createJobRuntime({
        nc,
        store,
        registry,
        ...job,
        ...(options.policy === undefined ? {} : { policy: options.policy }),
        log,
        requestTimeoutMs,
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
      }),
    jobMetrics,
    stopping: isStopping,
    log,
  });
  const handlers: RequestHandlers = {
    ...jobRequests({ nc, store, registry, table, perJob, stateStore, checkpointKv, log, maxMessageBytes: maxBytes, maxViewPageBytes: options.maxViewPageBytes }),
    ...checkpointRequests({ table, perJob, log, maxMessageBytes: maxBytes }),
    ...infoRequests({ table, registry, jobMetrics, metrics, maxMessageBytes: maxBytes }),
  };

  // ─── Start ────────────────────────────────────────────────────────────────────────────────────

  // The watcher first, then the current jobs: a change made in between is seen by both (revision decides).
  const follower = await followConfigChanges({ store, table, perJob, stopping: isStopping, log });
  await table.resumeStored();
  const server = startRequestServer({ nc, queue, handlers, metrics, log });
  await nc.flush();
  await workers.ready();
  log.info({ jobs: table.size }, 'controller started');

  return {
    runtimes,
    store,
    registry,
    metrics,
    metricsText: () => metrics.text(),
    jobMetrics,
    stats: () => ({ jobs: table.size, ...server.counts(), externalConfigChanges: follower.externalChanges() }),
    stop() {
      stopping ??= (async () => {
        await server.drain();
        follower.stop();
        await perJob.idle();
        await table.stopRuntimes();
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
