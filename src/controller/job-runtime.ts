/**
 * One job's actor wired to the world: the job machine's actors and side effects implemented over NATS,
 * the registry and the store, worker task/checkpoint events aggregated into machine events, and every
 * transition persisted (status CAS, event log, `weir.jobs.<job>.state`). This file composes the parts
 * that do each: the worker commands of a generation (generation-commands.ts), the machine's hooks
 * (job-hooks.ts), the checkpoint records (checkpoint-records.ts, over weir/checkpoint's
 * JobCheckpointRecords), their retention (retention.ts), the final checkpoint (final-checkpoints.ts),
 * the worker-event aggregation (worker-events.ts) and the status writer (status-writer.ts).
 *
 * Cost rules (docs/design-notes.md): per-subtask events are aggregated here and reach the actor once
 * per generation (`tasks.started`, `tasks.finished`, `source.finished`, the first `task.failed`);
 * checkpoints belong to the job's CheckpointCoordinator and reach the actor only as the result of a
 * final checkpoint; liveness reaches the job only as `worker.lost`. Messages of another generation
 * than the actor's current one are counted and dropped.
 *
 * Times: the machine and the store use epoch ms; the wire uses µs.
 */
import type { KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { createActor, type Actor, type InspectionEvent } from 'xstate';
import type { jobMachine } from '../../machines/job/machine.js';
import { DEFAULT_POLICY, initialContext } from '../../machines/job/policy.js';
import { TERMINAL_STATES, type DesiredConfig, type JobInput, type JobPolicy, type JobState, type JobWait, type UnstampedJobEvent } from '../../machines/job/types.js';
import { waitOf, type WaitingSnapshot } from '../../machines/job/waits.js';
import { CHECKPOINTS_KV_BUCKET, CHECKPOINT_SLOTS, effectiveParallelism, OPERATOR_CATALOGUE, type Checkpoint, type Graph, type OperatorSpec } from '../protocol/index.js';
import type { JobOwner, JobStatusRecord, Store } from '../store/index.js';
import { openCheckpointKv, openCheckpointStore, type CheckpointStore } from '../checkpoint/index.js';
import type { WorkerRegistry } from './registry.js';
import { CheckpointCoordinator, type CheckpointOutcome, type CoordinatorStats } from './checkpoint-coordinator.js';
import { CheckpointRecords, type CheckpointDetails } from './checkpoint-records.js';
import { FinalCheckpoints } from './final-checkpoints.js';
import { GenerationCommands } from './generation-commands.js';
import type { GenerationState } from './generations.js';
import { deliverJobEvents, type JobEventRouter } from './job-event-router.js';
import { jobHooks } from './job-hooks.js';
import { JobMachines } from './job-machines.js';
import { stamp, tickingClock } from './job-time.js';
import { DEFAULT_RETAINED_CHECKPOINTS, JobRetention } from './retention.js';
import { StatusWriter, topState, type StatusWriterStats } from './status-writer.js';
import { TimerQueue } from './timer-queue.js';
import { WorkerEvents, type WorkerEventStats } from './worker-events.js';
import type { LostReason } from './worker-service.js';
import { openOnce } from '../shared/memo.js';

/** The part of a pipeline the runtime needs. */
export interface RuntimeSpec {
  graph: Graph;
  /** Pipeline-wide parallelism, as in `pipelineSchema`. */
  parallelism?: number | undefined;
}

export interface JobRuntimeOptions {
  nc: NatsConnection;
  store: Store;
  registry: WorkerRegistry;
  jobId: string;
  spec: RuntimeSpec;
  config: DesiredConfig;
  /**
   * Status of a previous incarnation (a controller restart); `epoch` is the newest completed epoch, and
   * `state` the stored one, which the first transition this runtime records starts from.
   */
  status?: JobInput['status'] & Partial<Pick<JobStatusRecord, 'epoch' | 'state' | 'transition' | 'parallelism'>>;
  /** A job this controller has just created: it has no checkpoint records to look for. */
  created?: boolean;
  /** A restart that ignored state: restore no checkpoint older than this epoch (null: any). */
  restoreFloor?: number | null;
  /** The provided job machine, shared by the controller's jobs. Default: a private one. */
  machines?: JobMachines;
  /** Shared by the controller's jobs, so their checkpoint schedules cost one timer. Default: a private one. */
  timers?: TimerQueue;
  policy?: Partial<JobPolicy>;
  log: Logger;
  /** Deadline of one controller → worker request. */
  requestTimeoutMs: number;
  /**
   * Operator specs by name (kind and config schema). The registry only knows which names workers
   * offer; an offered name missing here gets the kind its node's position implies. Default: the
   * built-in operators.
   */
  operatorSpecs?: ReadonlyMap<string, OperatorSpec>;
  /** KV bucket of the minimal checkpoint records. Default `weir_checkpoints`. */
  checkpointBucket?: string;
  /**
   * The checkpoint bucket, opened once and shared by the controller's jobs (a KV handle is a JetStream
   * client, its APIs and a bucket object: a few KiB per job, and a round trip to open). Default: the
   * runtime opens `checkpointBucket` itself on first use.
   */
  checkpointKv?: () => Promise<KV>;
  /** The job's checkpoint records keyed by epoch (before the slots), from one listing of the bucket shared by the controller's jobs. Default: listed per job. */
  legacyCheckpointKeys?: (jobId: string) => Promise<string[]>;
  /** Where the subtasks' state blobs are (for retention). Default: the checkpoint store at its default prefix. */
  checkpointStore?: () => Promise<CheckpointStore>;
  /** Restorable checkpoints kept per job, at most `CHECKPOINT_SLOTS`. Default 10. */
  retainedCheckpoints?: number;
  /** The grid periodic checkpoints start on (`CoordinatorOptions.scheduleGridMs`). Default 10 ms. */
  checkpointGridMs?: number;
  /**
   * A controller restart of a job that rests in a terminal state: the actor is restored in that state
   * (its entry actions do not run again) instead of starting at Created.
   */
  resumeState?: ResumeState;
  /**
   * The controller's subscriptions to every job's task and checkpoint events (`JobEventRouter`): two
   * subscriptions in all instead of two per job. Default: the runtime subscribes to its job's subjects.
   */
  events?: JobEventRouter;
  /** Extra inspection observer (the XState inspector, see src/inspect). */
  inspect?: { next(event: InspectionEvent): void };
  /** Every state transition, as it is observed (before it is persisted). Must be cheap. */
  onTransition?(from: JobState, to: JobState): void;
  /** Every checkpoint outcome (completed, failed, commit_failed). Must be cheap. */
  onCheckpointOutcome?(outcome: CheckpointOutcome): void;
  /**
   * This controller and its lease epoch on the job's shard while it owns the job, else null: status writes
   * and worker commands carry it, and none is made without it. Default: no owner (a lone controller's tests).
   */
  owner?: () => JobOwner | null;
  /** The job turned out to have another owner: the controller stops this runtime without writing. */
  onFenced?: () => void;
  /**
   * How long a takeover of a Running job waits for the workers to report its tasks: two heartbeat intervals
   * and a second (a worker new to this controller registers at its next heartbeat, with what it runs).
   */
  adoptWaitMs?: number;
}

/** Two of the workers' default 5 s heartbeat intervals, and a second. */
const DEFAULT_ADOPT_WAIT_MS = 11_000;

/**
 * The states a job resumes in as themselves after a takeover or a controller restart (Created just starts
 * again). `Running`: its generation's tasks run on, and the runtime re-attaches to them (`job.adopt`).
 */
export type ResumeState = 'Stopped' | 'Finished' | 'Failed' | 'Running';

/** A Running job restored at a takeover: each region of Running in its initial state, until `job.adopt` re-attaches. */
const RESTORED_RUNNING = { Running: { progress: 'polling', logging: 'waiting', ttl: 'armed' } } as const;

export type { CheckpointRecord, SubtaskCheckpoint } from './checkpoint-coordinator.js';

export interface JobRuntimeStats extends WorkerEventStats, StatusWriterStats {
  /** Machine events sent by the aggregation. */
  eventsSent: number;
}

export type { CheckpointDetails } from './checkpoint-records.js';

/** Where a job is in its lifecycle: as its runtime knows it now, or as the store last recorded it. */
export interface JobProgress extends Pick<JobStatusRecord, 'state' | 'generation' | 'restarts' | 'failure' | 'startTime' | 'finishTime'> {
  waiting: JobWait | null;
}

export interface JobRuntime {
  readonly actor: Actor<typeof jobMachine>;
  readonly spec: RuntimeSpec;
  /** The actor's top-level state. */
  state(): JobState;
  /** The job's progress now: ahead of the stored status by the writes still queued. */
  progress(): JobProgress;
  /**
   * Node id → parallelism of the current generation: as scheduled when it has been, else as the graph
   * and the desired config's overrides give it.
   */
  parallelism(): Map<string, number>;
  /** Stamps `event` with the time and sends it to the actor. */
  send(event: UnstampedJobEvent): void;
  /** The config's `ignoreStateBeforeEpoch` changed (a restart that ignores state). */
  setRestoreFloor(epoch: number | null): void;
  /** The job was deleted: its followers hear it as a last state event, `deleted: true`. */
  announceDeleted(): void;
  /** Whether the job wants this generation's tasks to run now: it is the current one and the job is not at rest. */
  wantsGeneration(generation: number): boolean;
  /**
   * The job has another owner now: this controller's registry books none of its slots any more (the new
   * owner's does, from the workers' reports). Its tasks are not touched.
   */
  releaseSlots(): void;
  /** Liveness path: the registry lost a worker that held this generation. */
  onWorkerLost(generation: number, workerId: string, reason?: LostReason): void;
  /** The newest `limit` checkpoints: recorded epochs, plus what this incarnation saw fail or run. */
  checkpointHistory(limit: number): Promise<Checkpoint[]>;
  /** One checkpoint with its operators and subtasks; null when the job has no such epoch. */
  checkpointDetails(epoch: number): Promise<CheckpointDetails | null>;
  readonly coordinator: CheckpointCoordinator;
  stats(): JobRuntimeStats & { checkpoints: CoordinatorStats };
  /** Resolves when every persistence step queued so far has run. */
  flush(): Promise<void>;
  /** Stops the actor and the subscriptions, then waits for pending persistence. Idempotent. */
  stop(): Promise<void>;
}

export const DEFAULT_CHECKPOINT_BUCKET = CHECKPOINTS_KV_BUCKET;

export function createJobRuntime(options: JobRuntimeOptions): JobRuntime {
  const { nc, store, registry, jobId, spec, log: baseLog, requestTimeoutMs } = options;
  const log = baseLog.child({ jobId });
  const stats = { eventsSent: 0 };

  // ─── The parts ────────────────────────────────────────────────────────────────────────────────

  /** The generations this runtime scheduled, by number: shared by the commands, the hooks and the event aggregation. */
  const generations = new Map<number, GenerationState>();
  let stopped = false;
  let restoreFloor = options.restoreFloor ?? null;
  const ownTimers = options.timers === undefined ? new TimerQueue({ onError: (err) => baseLog.error({ err, jobId }, 'checkpoint timer failed') }) : undefined;
  const coordinator: CheckpointCoordinator = new CheckpointCoordinator({
    jobId,
    timers: options.timers ?? ownTimers!,
    timeoutMs: options.policy?.checkpointTimeoutMs ?? DEFAULT_POLICY.checkpointTimeoutMs,
    lastCompletedEpoch: options.status?.epoch ?? 0,
    trigger: (request) => commands.triggerCheckpoint(request),
    persist: (record) => records.persist(record),
    commit: (request) => commands.sendCommits(request),
    onOutcome: onCheckpointOutcome,
    ...(options.checkpointGridMs === undefined ? {} : { scheduleGridMs: options.checkpointGridMs }),
  });
  const checkpointKv = options.checkpointKv ?? openCheckpointKv(nc, options.checkpointBucket ?? DEFAULT_CHECKPOINT_BUCKET, requestTimeoutMs);
  const records = new CheckpointRecords({
    jobId,
    log,
    kv: checkpointKv,
    coordinator,
    created: options.created === true,
    ...(options.legacyCheckpointKeys === undefined ? {} : { legacyKeys: options.legacyCheckpointKeys }),
  });
  const owner = options.owner;
  const commands = new GenerationCommands({
    nc,
    jobId,
    registry,
    log,
    requestTimeoutMs,
    generations,
    coordinator,
    ...(owner === undefined ? {} : { ownerEpoch: () => owner()?.epoch ?? null }),
  });
  const writer = new StatusWriter({
    nc,
    store,
    jobId,
    log,
    initial: {
      state: options.status?.state ?? options.resumeState ?? 'Created',
      generation: options.status?.generation ?? 0,
      restarts: options.status?.restarts ?? 0,
      failure: options.status?.failure ?? null,
      warning: null,
      waitKind: null,
    },
    transition: options.status?.transition,
    coordinator,
    stopped: () => stopped,
    onTransition: (from, to) => options.onTransition?.(from, to),
    ...(owner === undefined ? {} : { owner }),
    ...(options.onFenced === undefined ? {} : { onFenced: options.onFenced }),
  });
  /** Epochs a restore is reading: retention keeps them whatever their age. */
  const restoring = new Set<number>();
  const retention = new JobRetention({
    log,
    stateStore: openOnce(() => options.checkpointStore?.() ?? openCheckpointStore(nc)),
    records,
    coordinator,
    keep: Math.min(options.retainedCheckpoints ?? DEFAULT_RETAINED_CHECKPOINTS, CHECKPOINT_SLOTS),
    pinned: restoring,
    stopped: () => stopped,
  });
  const snapshot = () => actor.getSnapshot();
  const finals = new FinalCheckpoints({ log, coordinator, generations, snapshot, send, stopped: () => stopped });

  // ─── Checkpoint outcomes ──────────────────────────────────────────────────────────────────────

  function onCheckpointOutcome(outcome: CheckpointOutcome): void {
    try {
      options.onCheckpointOutcome?.(outcome);
    } catch (err) {
      log.warn({ err }, 'onCheckpointOutcome failed');
    }
    if (outcome.kind === 'completed') {
      const record = outcome.record;
      // Not kept here: the coordinator's history holds the newest completed epoch, the others are read
      // from the store, and a copy of ten epochs per job weighs on 10,000 jobs.
      records.completed();
      retention.maybeCleanup(record);
      // The record is the durable fact; the status takes the epoch with its next transition (a write per
      // checkpoint would double the store's load, and a restore looks for the newest record anyway).
      log.debug({ epoch: record.epoch, generation: record.generation, kind: record.kind }, 'checkpoint completed');
      return;
    }
    log.warn({ epoch: outcome.epoch, generation: outcome.generation, kind: outcome.checkpoint }, outcome.message);
    if (outcome.kind === 'commit_failed' && outcome.generation === actor.getSnapshot().context.generation && actor.getSnapshot().matches('Running')) {
      // The sinks' output of a durable epoch must become visible: a restore from it sends the commit again.
      send({ type: 'task.failed', generation: outcome.generation, message: outcome.message, domain: 'external', hint: 'with_backoff' });
    }
    const at = Date.now();
    writer.appendWarning(outcome.message, at, `${jobId}.${at}.checkpoint-${outcome.generation}-${outcome.epoch}`);
  }

  // ─── The actor ────────────────────────────────────────────────────────────────────────────────

  const machines = options.machines ?? new JobMachines();
  const machine = machines.machine;
  const unregister = machines.register(
    jobId,
    jobHooks({
      jobId,
      spec,
      catalog: options.operatorSpecs ?? OPERATOR_CATALOGUE,
      registry,
      log,
      generations,
      coordinator,
      commands,
      records,
      finals,
      writer,
      restoring,
      restoreFloor: () => restoreFloor,
      snapshot,
      adoptWaitMs: options.adoptWaitMs ?? DEFAULT_ADOPT_WAIT_MS,
    }),
  );

  // Liveness is tracked once per worker by the registry, which reports a silent worker as `worker.lost`;
  // a per-job heartbeat deadline would need every heartbeat forwarded to every job (docs/design-notes.md).
  const policy: Partial<JobPolicy> = { ...options.policy, heartbeatTimeoutMs: 0 };
  const input: JobInput = { jobId, createdAt: Date.now(), config: options.config, policy, status: options.status };
  const resumeValue = options.resumeState === 'Running' ? RESTORED_RUNNING : options.resumeState;
  const restoredContext = { ...initialContext(input), ...(options.status?.parallelism === undefined ? {} : { parallelism: options.status.parallelism }) };
  const restored = resumeValue === undefined ? undefined : machine.resolveState({ value: resumeValue, context: restoredContext });
  const extraInspect = options.inspect;
  const actor: Actor<typeof jobMachine> = createActor(machine, {
    input,
    // XState's timer events carry no time: the clock sends the actor the time each timer fires at.
    clock: tickingClock(() => deliver({ type: 'clock.tick' })),
    ...(restored === undefined ? {} : { snapshot: restored }),
    inspect: (event) => {
      // Every microstep, so eventless hops (Created → Compiling) are persisted too. Matched by logic, not
      // identity: the initial microsteps run inside createActor, before `actor` is assigned.
      if (event.type === '@xstate.microstep' && (event.actorRef as { logic?: unknown }).logic === machine) {
        writer.observe(event.snapshot as unknown as WaitingSnapshot);
      }
      extraInspect?.next(event);
    },
  });
  const events = new WorkerEvents({ jobId, log, generations, snapshot, send, coordinator, commands, finals });
  /** The reason of the slot wait last logged: a job that waits for slots says so once, and again when the reason changes. */
  let loggedSlotWait: string | null = null;
  function logSlotWait(snapshot: Parameters<typeof waitOf>[0]): void {
    if (snapshot.context.deadlines.workerStartup === null && loggedSlotWait === null) return; // only Scheduling waits for slots
    const wait = waitOf(snapshot);
    const reason = wait?.kind === 'slots' ? wait.reason : null;
    if (reason !== null && reason !== loggedSlotWait) log.info({ generation: snapshot.context.generation, reason, until: wait!.until }, 'job waits');
    loggedSlotWait = reason;
  }

  actor.subscribe({
    next: (snapshot) => {
      writer.observe(snapshot);
      logSlotWait(snapshot);
      events.maybeSendStarted();
      finals.maybeFinishWithCheckpoint();
    },
    error: (err) => log.error({ err }, 'job actor failed'),
  });

  function send(event: UnstampedJobEvent): void {
    if (stopped) return;
    stats.eventsSent++;
    deliver(event);
  }

  /** The one way events reach the actor: stamped with the time now, the only clock the machine knows. */
  function deliver(event: UnstampedJobEvent): void {
    actor.send(stamp(event));
  }

  // ─── Worker events ────────────────────────────────────────────────────────────────────────────

  const undeliver = deliverJobEvents(nc, jobId, { task: (msg) => events.onTask(msg), checkpoint: (msg) => events.onCheckpoint(msg) }, log, options.events);
  actor.start();
  if (options.resumeState === 'Running') {
    // The status names this controller before anything else is written: a stale owner's next write fails.
    writer.claim();
    // A restored actor has no timers (job-machines' rearmTimers); then it re-attaches to its tasks.
    deliver({ type: 'job.resume' });
    deliver({ type: 'job.adopt' });
  } else if (owner !== undefined && options.status !== undefined && !options.created) {
    writer.claim();
  }

  let stopping: Promise<void> | undefined;
  return {
    actor,
    send,
    spec,
    state: () => topState(actor.getSnapshot().value),
    progress() {
      const snapshot = actor.getSnapshot();
      const { generation, restarts, failure, times } = snapshot.context;
      return { state: topState(snapshot.value), generation, restarts, failure, startTime: times.start, finishTime: times.finish, waiting: waitOf(snapshot) };
    },
    parallelism() {
      const snapshot = actor.getSnapshot();
      const plan = coordinator.generationPlan;
      if (plan !== null && plan.generation === snapshot.context.generation) return new Map(plan.subtasks);
      const resolved = effectiveParallelism({ graph: { nodes: spec.graph.nodes, edges: [] }, parallelism: spec.parallelism });
      for (const [nodeId, p] of Object.entries(snapshot.context.config.parallelismOverrides)) if (resolved.has(nodeId)) resolved.set(nodeId, p);
      return resolved;
    },
    releaseSlots() {
      for (const generation of new Set([...generations.keys(), actor.getSnapshot().context.generation])) registry.release(jobId, generation);
    },
    wantsGeneration(generation) {
      const snapshot = actor.getSnapshot();
      return snapshot.context.generation === generation && !TERMINAL_STATES.includes(topState(snapshot.value));
    },
    onWorkerLost(generation, workerId, reason) {
      const gen = generations.get(generation);
      gen?.goneWorkers.add(workerId);
      if (generation !== actor.getSnapshot().context.generation) return;
      const message = reason === 'vanished' ? `the tasks of generation ${generation} on worker ${workerId} ended unreported` : undefined;
      send({ type: 'worker.lost', generation, workerId, ...(message === undefined ? {} : { message }) });
    },
    coordinator,
    checkpointHistory: (limit) => records.history(limit),
    checkpointDetails: (epoch) => records.details(epoch),
    setRestoreFloor(epoch) {
      restoreFloor = epoch;
    },
    announceDeleted: () => writer.announceDeleted(),
    stats: () => ({ ...events.stats, eventsSent: stats.eventsSent, ...writer.stats, checkpoints: coordinator.stats() }),
    flush: () => writer.flush(),
    stop() {
      stopping ??= (async () => {
        stopped = true;
        actor.stop();
        unregister();
        coordinator.close();
        ownTimers?.close();
        await undeliver();
        await writer.close();
      })();
      return stopping;
    },
  };
}
