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
 * - Several controllers may run against the same NATS (docs/high-availability.md): each owns the jobs of
 *   the shards whose leases it holds (shard-leases.ts, job-ownership.ts), takes over the jobs of a shard it
 *   acquires per the takeover table (takeover-plan.ts: a Running job's tasks run on), drops those of a
 *   shard it loses without writing, and forwards requests about jobs it does not own to their owner
 *   (request-router.ts). Every controller hears every worker (no queue group on the worker subjects), so
 *   each registry sees all slots taken.
 *
 * This file wires the parts and owns their order of start and stop: the leases, the job table
 * (job-table.ts), the request handlers (job-, checkpoint-, info- and fleet-requests.ts), serving them
 * (request-server.ts) and following config changes made elsewhere (config-follower.ts).
 */
import { hostname } from 'node:os';
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
import { JobCheckpointRecords, legacyKeysOfBucket, openCheckpointKv, openCheckpointStore } from '../checkpoint/index.js';
import { KeyedQueue } from '../shared/keyed-queue.js';
import { openOnce } from '../shared/memo.js';
import { CONTROLLER_QUEUE, DEFAULT_HEARTBEAT_INTERVAL_MS, startWorkerService, type WorkerService } from './worker-service.js';
import { orphanReaper } from './worker-requests.js';
import { createControllerMetrics, type ControllerMetrics } from './controller-metrics.js';
import { JobMetrics } from './job-metrics.js';
import { JobTable } from './job-table.js';
import { jobRequests } from './job-requests.js';
import { checkpointRequests } from './checkpoint-requests.js';
import { infoRequests } from './info-requests.js';
import { startRequestServer, type ApiRequest, type RequestHandlers } from './request-server.js';
import { followConfigChanges } from './config-follower.js';
import { fleetRequests } from './fleet-requests.js';
import { JobOwnership } from './job-ownership.js';
import { forwardPrefix, ownerWaitMs, RequestRouter } from './request-router.js';
import { DEFAULT_LEASE_TTL_MS, ShardLeases } from './shard-leases.js';
import { RESTORABLE_STATUSES } from '../protocol/index.js';
import { TERMINAL_STATES } from '../../machines/job/types.js';
import { forEachLimited } from '../shared/for-each-limited.js';
import type { ReportedGeneration } from './registry.js';

export type { ApiRequest } from './request-server.js';
export { MANUAL_CHECKPOINT_WAIT_MS } from './checkpoint-requests.js';
export { TRIGGER_IDS_PER_JOB } from './job-table.js';

export const DEFAULT_REQUEST_TIMEOUT_MS = 2_000;

/** Jobs of newly acquired shards adopted at once: each is a few store round trips. */
const ADOPTION_CONCURRENCY = 64;
/** Jobs of an acquired shard that could not be adopted are tried again after this. */
const ADOPTION_RETRY_MS = 1_000;

/** What the controller needs of an inspector: somewhere to send its actors' inspection events. */
export interface ActorInspector {
  readonly inspect: { next(event: InspectionEvent): void };
}

export interface ControllerOptions {
  log: Logger;
  /**
   * This controller's name among the controllers of a deployment. Give each a stable one: a controller
   * restarted under its name takes its own leases back at once. Default `<hostname>-<pid>`.
   */
  controllerId?: string;
  /** The shard lease TTL: a dead controller's jobs are taken over after it. Default 10 s. */
  leaseTtlMs?: number;
  /** The leases bucket. Default `weir_leases`. */
  leasesBucket?: string;
  /** How long a request for a job whose shard has no live owner waits for one. Default: the TTL and a second, at most 10 s. */
  ownerWaitMs?: number;
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
  /** Requests about jobs another controller owns, forwarded to it. */
  forwarded: number;
}

export interface Controller {
  readonly id: string;
  readonly runtimes: JobRuntimes;
  /** Which jobs this controller owns now. */
  readonly ownership: JobOwnership;
  /** Stops as a controller that died would: nothing more is written or renewed, and nothing is handed over. For tests. */
  halt(): Promise<void>;
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
    jobsByOwner: async () => {
      const counts = new Map<string, number>();
      for (const jobId of await store.jobs.list()) {
        const owner = ownership.ownerOf(jobId) ?? '';
        counts.set(owner, (counts.get(owner) ?? 0) + 1);
      }
      return counts;
    },
  });
  /** Each job's requests, config changes and checkpoint triggers, one at a time. */
  const perJob = new KeyedQueue();
  let stopping: Promise<void> | undefined;
  const isStopping = () => stopping !== undefined;

  // ─── Ownership ────────────────────────────────────────────────────────────────────────────────

  const controllerId = options.controllerId ?? `${hostname()}-${process.pid}`;
  /** Shards acquired whose jobs are still to be adopted. */
  const pendingShards = new Set<number>();
  /** Shards acquired whose adoption has not ended: requests about their jobs wait for it. */
  const unadopted = new Set<number>();
  let adoptionQueued = false;
  let adoptions: Promise<void> = Promise.resolve();
  const leases = new ShardLeases(nc, {
    controllerId,
    log,
    ttlMs: options.leaseTtlMs ?? DEFAULT_LEASE_TTL_MS,
    replicas,
    jobsRun: () => table.size,
    ...(options.leasesBucket === undefined ? {} : { bucket: options.leasesBucket }),
    onAcquired: (shard) => {
      pendingShards.add(shard);
      unadopted.add(shard);
      queueAdoption();
    },
    onLost: (shard) => {
      pendingShards.delete(shard);
      unadopted.delete(shard);
      if (!isStopping()) dropShard(shard);
    },
  });
  const ownership = new JobOwnership(controllerId, leases);

  function queueAdoption(): void {
    if (adoptionQueued) return;
    adoptionQueued = true;
    adoptions = adoptions.then(adoptPending);
  }

  /** The stored jobs of the shards acquired since the last run, each adopted per the takeover table. */
  async function adoptPending(): Promise<void> {
    adoptionQueued = false;
    if (isStopping() || pendingShards.size === 0) return;
    const shards = new Set(pendingShards);
    pendingShards.clear();
    let ids: string[];
    try {
      ids = await store.jobs.list();
    } catch (err) {
      log.warn({ err, shards: shards.size }, 'could not list the jobs of acquired shards; trying again');
      for (const shard of shards) if (leases.owns(shard)) pendingShards.add(shard);
      setTimeout(queueAdoption, 1_000).unref();
      return;
    }
    const mine = ids.filter((id) => shards.has(ownership.shardOf(id)) && !table.has(id));
    /** Shards with a job not adopted this time (its lease lapsed for a moment, the store timed out): adopted again. */
    const again = new Set<number>();
    try {
      await adoptEach(mine, (jobId) => again.add(ownership.shardOf(jobId)));
    } finally {
      for (const shard of again) if (leases.heldShard(shard)) pendingShards.add(shard);
      for (const shard of shards) if (!pendingShards.has(shard)) unadopted.delete(shard);
      if (again.size > 0 && !isStopping()) setTimeout(queueAdoption, ADOPTION_RETRY_MS).unref();
    }
  }

  function adoptEach(jobIds: string[], notAdopted: (jobId: string) => void): Promise<void> {
    return forEachLimited(jobIds, ADOPTION_CONCURRENCY, (jobId) =>
      perJob.run(jobId, async () => {
        if (isStopping() || table.has(jobId)) return;
        if (!ownership.owns(jobId)) {
          notAdopted(jobId);
          return;
        }
        try {
          const state = await table.adopt(jobId);
          if (state !== null) metrics.takeover(state);
        } catch (err) {
          log.warn({ err, jobId }, 'could not adopt the job; trying again');
          notAdopted(jobId);
        }
      }),
    );
  }

  /** Resolves once every adoption queued so far has run. */
  async function adoptionsIdle(): Promise<void> {
    for (;;) {
      const current = adoptions;
      await current;
      if (current === adoptions) return;
    }
  }

  /** The shard's jobs are no longer this controller's: their runtimes stop without writing; their tasks run on. */
  function dropShard(shard: number): void {
    for (const jobId of table.ids()) {
      if (ownership.shardOf(jobId) !== shard) continue;
      void perJob.run(jobId, async () => {
        if (ownership.owns(jobId) || !table.has(jobId)) return;
        await table.drop(jobId);
        log.info({ jobId, shard }, 'job handed over: its runtime stopped, its tasks run on');
      });
    }
  }

  const reapOrphan = orphanReaper(nc, registry, log, requestTimeoutMs, (jobId) => ownership.tokenOf(jobId)?.epoch ?? null);
  /**
   * A generation a worker runs that this controller holds no slots for. Another owner's job is that owner's
   * business; one of this controller's jobs being taken over (adopted, or about to be) is kept: its new
   * runtime re-attaches to it. Anything else goes.
   */
  async function onOrphan(workerId: string, orphan: ReportedGeneration): Promise<void> {
    const { jobId, generation } = orphan;
    // Another owner's job, or one of a shard whose jobs are still being adopted: not this controller's to judge yet.
    if (!ownership.owns(jobId) || unadopted.has(ownership.shardOf(jobId))) return;
    const runtime = table.runtime(jobId);
    if (runtime !== undefined) {
      if (runtime.wantsGeneration(generation)) return;
    } else {
      const record = await store.jobs.get(jobId).catch(() => undefined);
      if (record === undefined) return; // cannot tell now; the next heartbeat asks again
      if (record !== null && record.status.generation === generation && !TERMINAL_STATES.includes(record.status.state)) return;
    }
    await reapOrphan(workerId, orphan);
  }

  const workers: WorkerService = startWorkerService(nc, registry, {
    log,
    onLost: (jobId, generation, workerId, reason) => runtimes.onWorkerLost(jobId, generation, workerId, reason),
    onOrphan,
    ...(options.heartbeatIntervalMs === undefined ? {} : { heartbeatIntervalMs: options.heartbeatIntervalMs }),
    // Every controller hears every worker: each registry then counts every slot taken, whoever took it.
    queue: null,
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
  /** Records keyed by epoch (written before the slots), listed once for every job instead of once per job adopted. */
  const legacyCheckpointKeys = legacyKeysOfBucket(checkpointKv);
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
        legacyCheckpointKeys,
        events,
        ...(options.retainedCheckpoints === undefined ? {} : { retainedCheckpoints: options.retainedCheckpoints }),
        ...(options.checkpointGridMs === undefined ? {} : { checkpointGridMs: options.checkpointGridMs }),
        onTransition: (_from, to) => metrics.transition(to),
        onCheckpointOutcome: (outcome) => metrics.checkpoint(outcome),
        owner: () => ownership.tokenOf(job.jobId),
        adoptWaitMs: 2 * (options.heartbeatIntervalMs ?? DEFAULT_HEARTBEAT_INTERVAL_MS) + 1_000,
        onFenced: () => void perJob.run(job.jobId, () => table.drop(job.jobId)),
      }),
    jobMetrics,
    stopping: isStopping,
    newestRecordCommitting: async (jobId) => {
      const records = await new JobCheckpointRecords({ jobId, kv: checkpointKv, legacyKeys: legacyCheckpointKeys }).list();
      return records.find(({ record }) => RESTORABLE_STATUSES.includes(record.status))?.record.status === 'committing';
    },
    log,
  });
  const local = {
    ...jobRequests({ nc, store, registry, table, perJob, stateStore, checkpointKv, log, maxMessageBytes: maxBytes, maxViewPageBytes: options.maxViewPageBytes, ownership }),
    ...checkpointRequests({ table, perJob, log, maxMessageBytes: maxBytes }),
    ...infoRequests({ table, registry, jobMetrics, metrics, maxMessageBytes: maxBytes }),
    ...fleetRequests({ leases, controllerId, maxMessageBytes: maxBytes }),
  };
  const router = new RequestRouter({
    nc,
    ownership,
    log,
    waitMs: options.ownerWaitMs ?? ownerWaitMs(leases.ttlMs),
    answersFor: (jobId) => ownership.owns(jobId) && !unadopted.has(ownership.shardOf(jobId)),
  });
  // Requests about one job go to its owner; a new job goes to a controller that owns a shard; the
  // listings and the fleet's state are answered by whichever controller receives them, from the store.
  const handlers: RequestHandlers = {
    create: router.forCreate(local.create),
    config: router.forJob(local.config),
    delete: router.forJob(local.delete),
    get: router.forJob(local.get),
    checkpoints: router.forJob(local.checkpoints),
    checkpoint: router.forJob(local.checkpoint),
    trigger_checkpoint: router.forJob(local.trigger_checkpoint),
    job_metrics: router.forJob(local.job_metrics),
    list: local.list,
    views: local.views,
    metrics: local.metrics,
    workers: local.workers,
    controllers: local.controllers,
  };

  // ─── Start ────────────────────────────────────────────────────────────────────────────────────

  // The watcher first, then the current jobs: a change made in between is seen by both (revision decides).
  const follower = await followConfigChanges({ store, table, perJob, stopping: isStopping, log });
  // The first share of shards, and their jobs, before any request is served.
  await leases.start();
  await adoptionsIdle();
  const server = startRequestServer({ nc, queue, handlers, metrics, log, forwardPrefix: forwardPrefix(controllerId) });
  await nc.flush();
  await workers.ready();
  log.info({ controllerId, jobs: table.size, shards: leases.owned().length }, 'controller started');

  /** Stops serving and every runtime; `handOver`: then gives the leases back, so the others take the jobs at once. */
  function shutDown(handOver: boolean): Promise<void> {
    stopping ??= (async () => {
      if (!handOver) leases.halt();
      await server.drain();
      follower.stop();
      await perJob.idle();
      await adoptionsIdle();
      await table.stopRuntimes();
      // Only now: the new owners must not find a runtime of this controller still writing.
      if (handOver) await leases.stop();
      await events.close();
      timers.close();
      await workers.stop();
      (status as { stop?: () => void }).stop?.();
      log.info({ handedOver: handOver }, 'controller stopped');
    })();
    return stopping;
  }

  return {
    id: controllerId,
    ownership,
    halt: () => shutDown(false),
    runtimes,
    store,
    registry,
    metrics,
    metricsText: () => metrics.text(),
    jobMetrics,
    stats: () => ({ jobs: table.size, ...server.counts(), externalConfigChanges: follower.externalChanges(), forwarded: router.forwarded }),
    stop: () => shutDown(true),
  };
}
