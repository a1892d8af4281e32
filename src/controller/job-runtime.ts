/**
 * One job's actor wired to the world: the job machine's actors and side effects implemented over NATS,
 * the registry and the store, worker task/checkpoint events aggregated into machine events, and every
 * transition persisted (status CAS, event log, `weir.jobs.<job>.state`).
 *
 * Cost rules (docs/design-notes.md): per-subtask events are aggregated here and reach the actor once
 * per generation (`tasks.started`, `tasks.finished`, `source.finished`, the first `task.failed`);
 * checkpoints belong to the job's CheckpointCoordinator and reach the actor only as the result of a
 * final checkpoint; liveness reaches the job only as `worker.lost`. Messages of another generation
 * than the actor's current one are counted and dropped.
 *
 * Times: the machine and the store use epoch ms; the wire uses µs.
 */
import { jetstream } from '@nats-io/jetstream';
import { Kvm, type KV, type KvEntry } from '@nats-io/kv';
import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import type { z } from 'zod';
import { createActor, type Actor, type InspectionEvent } from 'xstate';
import type { jobMachine } from '../../machines/job/machine.js';
import { DEFAULT_POLICY, initialContext } from '../../machines/job/policy.js';
import { JobError, type CheckpointSchedule, type DesiredConfig, type GenerationInput, type JobContext, type JobFailure, type JobInput, type JobPolicy, type JobState, type JobWait, type ScheduleInput, type ScheduleResult, type StopInput, type UnstampedJobEvent } from '../../machines/job/types.js';
import type { StopResult } from '../../machines/job/setup.js';
import { waitOf } from '../../machines/job/waits.js';
import {
  CHECKPOINTS_KV_BUCKET,
  CHECKPOINT_SLOTS,
  PROTOCOL_VERSION,
  checkpointKey,
  checkpointEventSchema,
  decode,
  effectiveParallelism,
  encode,
  readCheckpointRecord,
  RESTORABLE_STATUSES,
  SUBJECTS,
  subjects,
  taskEventSchema,
  truncateErrorText,
  validateGraph,
  type Checkpoint,
  type CheckpointRequest,
  type CommitRequest,
  type Graph,
  type JobStateEvent,
  type OperatorCheckpointGroup,
  type OperatorSpec,
  type StartExecution,
  type StopExecution,
  OPERATOR_CATALOGUE,
} from '../protocol/index.js';
import { isTransientStoreError, type JobStatusRecord, type Store, type Versioned } from '../store/index.js';
import type { WorkerRegistry } from './registry.js';
import { CheckpointCoordinator, type CheckpointOutcome, type CheckpointRecord, type CheckpointTrigger, type CommitTrigger, type CoordinatorStats } from './checkpoint-coordinator.js';
import { assignSubtasks, toStartAssignments, type SubtaskRef } from './scheduler.js';
import { checkpointFromRecord, checkpointFromSummary, operatorGroupsFromRecord, operatorGroupsFromSummary, withWriteClosed } from './checkpoint-views.js';
import { JobMachines } from './job-machines.js';
import { stamp, tickingClock } from './job-time.js';
import { CLEANUP_EVERY_EPOCHS, cleanupCheckpoints, DEFAULT_RETAINED_CHECKPOINTS, hasStoredState } from './retention.js';
import { openCheckpointStore, type CheckpointStore } from '../checkpoint/index.js';
import { TimerQueue } from './timer-queue.js';
import { offeredOperatorSpecs } from './operator-specs.js';
import { askWorker, WorkerRejected, type WorkerAnswer } from './worker-requests.js';
import type { LostReason } from './worker-service.js';
import { backoffMs } from '../shared/backoff.js';
import { retry } from '../shared/retry.js';
import { openOnce } from '../shared/memo.js';
import { microsFromMs } from '../shared/micros.js';

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
  status?: JobInput['status'] & Partial<Pick<JobStatusRecord, 'epoch' | 'state' | 'transition'>>;
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
}

/** The states a job resumes in as themselves after a controller restart (Created just starts again). */
export type ResumeState = 'Stopped' | 'Finished' | 'Failed';

export type { CheckpointRecord, SubtaskCheckpoint } from './checkpoint-coordinator.js';

export interface JobRuntimeStats {
  /** Undecodable task/checkpoint events. */
  rejected: number;
  /** Events of another generation than the current one. */
  stale: number;
  /** Events naming a subtask the generation does not have. */
  unknownSubtask: number;
  /** Machine events sent by the aggregation. */
  eventsSent: number;
  /** Persistence steps (status/log) that failed after the store's retries. */
  persistFailures: number;
  stateEventsPublished: number;
}

export interface CheckpointDetails {
  checkpoint: Checkpoint;
  operators: OperatorCheckpointGroup[];
}

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
const PERSIST_RETRY_INITIAL_MS = 200;
const PERSIST_RETRY_MAX_MS = 10_000;
/** A commit request waits for the sinks' writes (one publish per output row), not just for an ack. */
const COMMIT_REQUEST_TIMEOUT_MS = 30_000;
/** Attempts at the final checkpoint that exhausted sources wait for, before the job recovers instead. */
const FINAL_ON_EXHAUSTED_ATTEMPTS = 3;

function subtaskKey(nodeId: string, index: number): string {
  return `${nodeId}\u0000${index}`;
}

function topState(value: unknown): JobState {
  return (typeof value === 'string' ? value : Object.keys(value as object)[0]) as JobState;
}


/** What the runtime knows about one generation it scheduled. */
interface GenerationState {
  generation: number;
  /** Worker → its subtasks. */
  assignments: Map<string, SubtaskRef[]>;
  /** Subtask key → worker. */
  owners: Map<string, string>;
  sourceKeys: Set<string>;
  sourceWorkers: Set<string>;
  /** Workers where none of its tasks runs any more: lost, or each of its tasks there ended. */
  goneWorkers: Set<string>;
  started: Set<string>;
  finished: Set<string>;
  /** Sources that ran out of input and wait for the final checkpoint (jobs with two-phase sinks). */
  exhausted: Set<string>;
  finalRequested: boolean;
  startedSent: boolean;
  finishedSent: boolean;
  sourceFinishedSent: boolean;
  failedSent: boolean;
}

interface Observed {
  state: JobState;
  generation: number;
  restarts: number;
  failure: JobFailure | null;
  warning: { message: string; at: number } | null;
}

/** Runtimes by job: the controller's side of worker-service's `onLost`. */
export class JobRuntimes {
  private readonly runtimes = new Map<string, JobRuntime>();

  add(jobId: string, runtime: JobRuntime): void {
    this.runtimes.set(jobId, runtime);
  }

  get(jobId: string): JobRuntime | undefined {
    return this.runtimes.get(jobId);
  }

  remove(jobId: string): void {
    this.runtimes.delete(jobId);
  }

  /** Pass as (or call from) `startWorkerService`'s `onLost`. */
  readonly onWorkerLost = (jobId: string, generation: number, workerId: string, reason?: LostReason): void => {
    this.runtimes.get(jobId)?.onWorkerLost(generation, workerId, reason);
  };
}

/** The checkpoint bucket (created when missing), opened on first use; a failed open is tried again at the next use. */
export function openCheckpointKv(nc: NatsConnection, bucket: string, requestTimeoutMs: number): () => Promise<KV> {
  return openOnce(() => new Kvm(jetstream(nc, { timeout: requestTimeoutMs })).create(bucket, { history: 1 }));
}

/** One job's handlers of its worker events. */
export interface JobEventHandlers {
  task(msg: Msg): void;
  checkpoint(msg: Msg): void;
}

/** The `<job>` token of `weir.ctl.jobs.<job>.<kind>`; undefined for any other shape. */
function jobToken(subject: string): string | undefined {
  let dot = -1;
  for (let token = 0; token < 3; token++) {
    dot = subject.indexOf('.', dot + 1);
    if (dot < 0) return undefined;
  }
  const end = subject.indexOf('.', dot + 1);
  return end < 0 ? undefined : subject.slice(dot + 1, end);
}

/**
 * Every job's task and checkpoint events on two wildcard subscriptions, handed to the job's runtime by
 * the subject's job token. A subscription per job and subject was about 1.8 KiB of client state each
 * (heap snapshot at 3,000 jobs), and as many interests on the server. Events of a job without a runtime
 * here are dropped, as the server dropped them when nothing subscribed.
 */
export class JobEventRouter {
  private readonly handlers = new Map<string, JobEventHandlers>();
  private readonly subscriptions: Subscription[];

  constructor(nc: NatsConnection, log: Logger) {
    const subscribe = (subject: string, kind: keyof JobEventHandlers): Subscription =>
      nc.subscribe(subject, {
        callback: (err, msg) => {
          if (err !== null) {
            log.error({ err, subject }, 'job subscription failed');
            return;
          }
          const jobId = jobToken(msg.subject);
          if (jobId !== undefined) this.handlers.get(jobId)?.[kind](msg);
        },
      });
    this.subscriptions = [subscribe(SUBJECTS.jobTasks.wildcard, 'task'), subscribe(SUBJECTS.jobCheckpoints.wildcard, 'checkpoint')];
  }

  /** Routes the job's events to `handlers` until the returned function is called. */
  route(jobId: string, handlers: JobEventHandlers): () => void {
    if (this.handlers.has(jobId)) throw new Error(`job ${jobId} already has a runtime`);
    this.handlers.set(jobId, handlers);
    return () => {
      if (this.handlers.get(jobId) === handlers) this.handlers.delete(jobId);
    };
  }

  /** Drains both subscriptions. */
  async close(): Promise<void> {
    await Promise.allSettled(this.subscriptions.map((s) => s.drain()));
  }
}

/** What every worker event carries to be routed to one subtask of one generation. */
interface WorkerEventFields {
  job_id: string;
  generation: number;
  node_id: string;
  subtask_index: number;
}

export function createJobRuntime(options: JobRuntimeOptions): JobRuntime {
  const { nc, store, registry, jobId, spec, log: baseLog, requestTimeoutMs } = options;
  const log = baseLog.child({ jobId });
  const catalog = options.operatorSpecs ?? OPERATOR_CATALOGUE;
  const bucket = options.checkpointBucket ?? DEFAULT_CHECKPOINT_BUCKET;
  const stats: JobRuntimeStats = { rejected: 0, stale: 0, unknownSubtask: 0, eventsSent: 0, persistFailures: 0, stateEventsPublished: 0 };
  const generations = new Map<number, GenerationState>();
  const inputs = new Set(spec.graph.edges.map((e) => e.to));
  const sourceNodes = new Set(spec.graph.nodes.filter((n) => !inputs.has(n.id)).map((n) => n.id));
  let stopped = false;
  let restoreFloor = options.restoreFloor ?? null;
  /** After a controller restart the status's epoch can lag behind the records: list them once. */
  let knowsNewestRecord = options.created === true;
  /** The newest restorable epoch the listing found (it can be newer than the status knows). */
  let listedEpoch = 0;
  const ownTimers = options.timers === undefined ? new TimerQueue({ onError: (err) => baseLog.error({ err, jobId }, 'checkpoint timer failed') }) : undefined;
  const coordinator = new CheckpointCoordinator({
    jobId,
    timers: options.timers ?? ownTimers!,
    timeoutMs: options.policy?.checkpointTimeoutMs ?? DEFAULT_POLICY.checkpointTimeoutMs,
    lastCompletedEpoch: options.status?.epoch ?? 0,
    trigger: triggerCheckpoint,
    persist: persistCheckpoint,
    commit: sendCommits,
    onOutcome: onCheckpointOutcome,
    ...(options.checkpointGridMs === undefined ? {} : { scheduleGridMs: options.checkpointGridMs }),
  });
  /** Output becomes visible only at a checkpoint's commit: the job's last output needs a final checkpoint. */
  const twoPhase = spec.graph.nodes.some((n) => catalog.get(n.operator)?.twoPhase === true);
  /** The final checkpoint of a generation, shared by the machine (stops) and exhausted sources. */
  const finals = new Map<number, Promise<{ epoch: number }>>();
  /** Epochs a restore is reading: retention keeps them whatever their age. */
  const restoring = new Set<number>();
  const retention = { keep: Math.min(options.retainedCheckpoints ?? DEFAULT_RETAINED_CHECKPOINTS, CHECKPOINT_SLOTS), lastEpoch: 0, running: false };
  const stateStore = openOnce(() => options.checkpointStore?.() ?? openCheckpointStore(nc));

  // ─── Requests to workers ───────────────────────────────────────────────────────────────────────

  const ask = (subject: string, body: unknown, timeout = requestTimeoutMs): Promise<WorkerAnswer> => askWorker(nc, subject, body, timeout);

  function workersOf(generation: number): string[] {
    const gen = generations.get(generation);
    const fromPlan = gen === undefined ? [] : [...gen.assignments.keys()].filter((w) => !gen.goneWorkers.has(w));
    // A generation scheduled by an earlier incarnation is only known to the registry.
    const fromRegistry = registry.holders(jobId, generation);
    return [...new Set([...fromPlan, ...fromRegistry])].sort();
  }

  /**
   * A worker acknowledges an immediate stop or a kill only once the generation's runners there have
   * stopped, and answers `gone` when nothing of it runs there: either way its slots there are free.
   */
  async function stopWorkers(generation: number, mode: StopExecution['mode'], workers = workersOf(generation)) {
    const body: StopExecution = { v: PROTOCOL_VERSION, job_id: jobId, generation, mode };
    const results = await Promise.allSettled(workers.map((w) => ask(subjects.workerStop(w), body)));
    workers.forEach((workerId, i) => {
      if (results[i]?.status === 'fulfilled' && (mode !== 'graceful' || results[i].value === 'gone')) endedOn(generation, workerId);
    });
    return workers.map((workerId, i) => ({ workerId, result: results[i]! }));
  }

  /** Nothing of the generation runs on the worker any more: its slots there are free now. */
  function endedOn(generation: number, workerId: string): void {
    generations.get(generation)?.goneWorkers.add(workerId);
    registry.ended(workerId, jobId, generation);
  }

  /** Kill, then release the slots. `strict`: reject when a live worker did not confirm. */
  async function teardown(generation: number, strict: boolean): Promise<void> {
    const results = await stopWorkers(generation, 'kill');
    const failed = results.filter((r) => r.result.status === 'rejected' && registry.isLive(r.workerId));
    for (const r of results) {
      if (r.result.status === 'rejected') log.warn({ generation, workerId: r.workerId, err: r.result.reason as unknown }, 'kill request failed');
    }
    if (strict && failed.length > 0) {
      throw new JobError({ kind: 'retryable', message: `kill of generation ${generation} not confirmed by ${failed.map((r) => r.workerId).join(', ')}` });
    }
    registry.release(jobId, generation);
    generations.delete(generation);
    coordinator.endGeneration(generation);
  }

  // ─── The machine's actors ─────────────────────────────────────────────────────────────────────

  function compileJob(): Promise<void> {
    const problems = validateGraph(spec, offeredOperatorSpecs(registry.operators(), catalog, spec.graph));
    if (problems.length > 0) {
      return Promise.reject(new JobError({ kind: 'fatal', domain: 'user', message: truncateErrorText(problems.map((p) => p.message).join('; ')) }));
    }
    return Promise.resolve();
  }

  async function scheduleJob(input: ScheduleInput, signal: AbortSignal): Promise<ScheduleResult> {
    // First, before any slot is taken: it may fail (and the attempt is retried).
    const restorePoint = await restorableRecord(restoreFloor);
    // The machine left Scheduling meanwhile (a stop, a delete): its stop found nothing of this generation to
    // stop, so starting it now would run tasks nobody wants on slots nobody frees (lifecycle fuzzer, seed 450132480).
    if (signal.aborted) throw new JobError({ kind: 'retryable', message: `generation ${input.generation} is no longer wanted` });
    const restoreEpoch = restorePoint?.epoch ?? null;
    if (restoreEpoch !== null) restoring.add(restoreEpoch);
    try {
      return await startGeneration(input, restorePoint, signal);
    } finally {
      if (restoreEpoch !== null) restoring.delete(restoreEpoch);
    }
  }

  async function startGeneration(input: ScheduleInput, restorePoint: CheckpointRecord | null, signal: AbortSignal): Promise<ScheduleResult> {
    const { generation } = input;
    const operators = spec.graph.nodes.map((n) => n.operator);
    const restoreEpoch = restorePoint?.epoch ?? null;
    const plan = assignSubtasks(spec, input.parallelismOverrides, registry.candidates(operators));
    registry.release(jobId, generation);
    registry.allocate(jobId, generation, plan.slots);

    const gen: GenerationState = {
      generation,
      assignments: plan.assignments,
      owners: new Map(),
      sourceKeys: new Set(),
      sourceWorkers: new Set(),
      goneWorkers: new Set(),
      started: new Set(),
      finished: new Set(),
      exhausted: new Set(),
      finalRequested: false,
      startedSent: false,
      finishedSent: false,
      sourceFinishedSent: false,
      failedSent: false,
    };
    for (const [workerId, refs] of plan.assignments) {
      for (const ref of refs) {
        const key = subtaskKey(ref.nodeId, ref.subtaskIndex);
        gen.owners.set(key, workerId);
        if (sourceNodes.has(ref.nodeId)) {
          gen.sourceKeys.add(key);
          gen.sourceWorkers.add(workerId);
        }
      }
    }
    // Registered before the start requests go out: a fast worker's `started` must not be missed.
    generations.set(generation, gen);

    const context = actor.getSnapshot().context;
    const graph: Graph = { ...spec.graph, nodes: spec.graph.nodes.map((n) => ({ ...n, parallelism: plan.parallelism[n.id] ?? n.parallelism })) };
    // Epochs go on after the restored one; after a restart that ignored state, the new lineage starts at the floor.
    const startEpoch = Math.max(restoreEpoch ?? 0, restoreFloor === null ? 0 : restoreFloor - 1);
    coordinator.beginGeneration({ generation, subtasks: new Map(graph.nodes.map((n) => [n.id, n.parallelism])) }, startEpoch);
    const workers = [...plan.assignments.keys()];
    const results = await Promise.allSettled(
      workers.map((workerId) => {
        const body: StartExecution = {
          v: PROTOCOL_VERSION,
          job_id: jobId,
          generation,
          program: { graph, assignments: toStartAssignments(plan.assignments.get(workerId) ?? []) },
          ...(restoreEpoch !== null ? { restore_epoch: restoreEpoch } : {}),
          // The epoch the tasks start at (the last one started, as in the reference); their first checkpoint is the next.
          start_epoch: coordinator.epoch,
          min_epoch: input.minEpoch,
          checkpoint_interval_micros: microsFromMs(context.config.checkpointIntervalMs),
          ...(twoPhase ? { final_checkpoint: true } : {}),
        };
        return ask(subjects.workerStart(workerId), body).then((r) => {
          if (r === 'gone') throw new Error('stale_generation');
        });
      }),
    );
    const failed = workers.flatMap((w, i) => (results[i]?.status === 'rejected' ? [{ w, reason: (results[i]).reason as unknown }] : []));
    const abandon = async (workersToKill: string[], message: string): Promise<never> => {
      await stopWorkers(generation, 'kill', workersToKill);
      registry.release(jobId, generation);
      generations.delete(generation);
      throw new JobError({ kind: 'retryable', message });
    };
    if (failed.length > 0) {
      const why = failed.map(({ w, reason }) => `${w}: ${reason instanceof Error ? reason.message : String(reason)}`).join('; ');
      const corrupt = failed.find(({ reason }) => reason instanceof WorkerRejected && reason.code === 'corrupt_checkpoint');
      // The next attempt restores the previous good checkpoint; retrying this one would fail the same way.
      if (corrupt !== undefined && restorePoint !== null) await markFailed(restorePoint, (corrupt.reason as Error).message);
      await abandon(workers.filter((_, i) => results[i]?.status === 'fulfilled'), `start of generation ${generation} failed on ${why}`);
    }
    if (restorePoint?.status === 'committing') {
      // The previous run died between the epoch's record and its sinks' commits: they commit it now.
      try {
        await recommit(generation, restorePoint);
      } catch (err) {
        await abandon(workers, `generation ${generation}: the commit of restored epoch ${restorePoint.epoch} failed: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    if (signal.aborted) {
      // Stopped while the workers were starting it: whatever the machine's stop did, these tasks go now.
      await abandon(workers, `generation ${generation} started after the job stopped wanting it: killed`);
    }
    log.info({ generation, workers, parallelism: plan.parallelism }, 'generation started on workers');
    return { parallelism: plan.parallelism };
  }

  async function stopJob(input: StopInput): Promise<StopResult> {
    const workers = workersOf(input.generation);
    if (workers.length === 0) return { finished: true };
    const results = await stopWorkers(input.generation, input.mode, workers);
    const failed = results.filter((r) => r.result.status === 'rejected');
    if (failed.length > 0) {
      throw new JobError({ kind: 'retryable', message: `${input.mode} stop not accepted by ${failed.map((r) => r.workerId).join(', ')}` });
    }
    const allGone = results.every((r) => r.result.status === 'fulfilled' && r.result.value === 'gone');
    // A worker acknowledges an immediate stop only after it has stopped the generation's runners and
    // closed its data plane, and it reports no `finished` events for them: the acks are the confirmation.
    return { finished: allGone || input.mode === 'immediate' };
  }

  const killJob = (input: GenerationInput) => teardown(input.generation, true);
  const cleanupJob = async (input: GenerationInput) => {
    await teardown(input.generation, false).catch((err: unknown) => log.warn({ err, generation: input.generation }, 'cleanup failed'));
  };

  // ─── Side-effect actions ──────────────────────────────────────────────────────────────────────

  /** Barriers go to the workers that run sources; each must accept the request. */
  async function triggerCheckpoint(request: CheckpointTrigger): Promise<void> {
    const gen = generations.get(request.generation);
    const workers = gen === undefined ? [] : [...gen.sourceWorkers].filter((w) => !gen.goneWorkers.has(w));
    if (workers.length === 0) throw new Error('no source workers known for this generation');
    const body: CheckpointRequest = {
      v: PROTOCOL_VERSION,
      job_id: jobId,
      generation: request.generation,
      epoch: request.epoch,
      min_epoch: request.minEpoch,
      then_stop: request.thenStop,
      timestamp: microsFromMs(Date.now()),
    };
    const results = await Promise.allSettled(workers.map((w) => ask(subjects.workerCheckpoint(w), body)));
    const failed = workers.filter((_, i) => results[i]?.status === 'rejected');
    if (failed.length > 0) throw new Error(`checkpoint request not accepted by ${failed.join(', ')}`);
  }

  /**
   * Every `CLEANUP_EVERY_EPOCHS` epochs, with no checkpoint in flight and none running already: deletes
   * the state no retained checkpoint needs, then advances the minimum epoch. A failure is logged and
   * retried at the next turn.
   */
  function maybeCleanup(record: CheckpointRecord): void {
    if (retention.running || record.epoch - retention.lastEpoch < CLEANUP_EVERY_EPOCHS || !hasStoredState(record)) return;
    if (coordinator.inFlightEpoch() !== null || stopped) return;
    retention.running = true;
    void (async () => {
      try {
        const [store, kv] = await Promise.all([stateStore(), checkpointKv()]);
        const result = await cleanupCheckpoints({ store, records: await storedRecords(kv), keep: retention.keep, pinned: restoring, rewrite: (r) => rewriteRecord(kv, r) });
        retention.lastEpoch = record.epoch;
        if (result.minEpoch !== null) coordinator.advanceMinEpoch(result.minEpoch);
        log.debug({ epoch: record.epoch, deleted: result.deleted.length, retained: result.retained, minEpoch: result.minEpoch }, 'checkpoint cleanup');
      } catch (err) {
        log.warn({ err, epoch: record.epoch }, 'checkpoint cleanup failed; retrying at the next turn');
      } finally {
        retention.running = false;
      }
    })();
  }

  /** A record whose state proved damaged: written `failed`, so no restore picks it again. Retried until it lands. */
  async function markFailed(record: CheckpointRecord, why: string): Promise<void> {
    const message = `checkpoint ${record.epoch} cannot be restored (${why}); restoring the previous good checkpoint`;
    log.error({ epoch: record.epoch }, message);
    const at = Date.now();
    enqueue(() => store.log.append(jobId, { kind: 'warning', message: truncateErrorText(message), at }, { id: `${jobId}.${at}.corrupt-${record.epoch}` }).then(() => {}));
    await persistCheckpoint({ ...record, status: 'failed' });
  }

  /** Commits grouped by the worker that runs each subtask; resolves once every worker confirmed. */
  async function sendCommits(request: CommitTrigger): Promise<void> {
    const gen = generations.get(request.generation);
    if (gen === undefined) throw new Error(`generation ${request.generation} is not running`);
    const byWorker = new Map<string, CommitRequest['commits']>();
    for (const commit of request.commits) {
      const owner = gen.owners.get(subtaskKey(commit.node_id, commit.subtask_index));
      if (owner === undefined) throw new Error(`no worker runs ${commit.node_id}[${commit.subtask_index}] in generation ${request.generation}`);
      byWorker.set(owner, [...(byWorker.get(owner) ?? []), commit]);
    }
    const timeout = Math.max(requestTimeoutMs, COMMIT_REQUEST_TIMEOUT_MS);
    const results = await Promise.allSettled(
      [...byWorker].map(async ([workerId, commits]) => {
        const body: CommitRequest = { v: PROTOCOL_VERSION, job_id: jobId, generation: request.generation, epoch: request.epoch, commits };
        if ((await ask(subjects.workerCommit(workerId), body, timeout)) === 'gone') throw new Error(`${workerId} no longer runs generation ${request.generation}`);
      }),
    );
    const failed = results.flatMap((r) => (r.status === 'rejected' ? [r.reason instanceof Error ? r.reason.message : String(r.reason)] : []));
    if (failed.length > 0) throw new Error(failed.join('; '));
  }

  /** A restored epoch that is still committing: the new generation's sinks commit its data, then it is ready. */
  async function recommit(generation: number, record: CheckpointRecord): Promise<void> {
    const commits = record.subtasks.flatMap((s) => (s.commit_data === undefined ? [] : [{ node_id: s.node_id, subtask_index: s.subtask_index, commit_data: s.commit_data }]));
    log.info({ generation, epoch: record.epoch, subtasks: commits.length }, 'restored epoch is still committing: sending its commits again');
    await sendCommits({ generation, epoch: record.epoch, commits });
    // Best effort: a record left committing only means one more (tolerated) commit at the next restore.
    await persistCheckpoint({ ...record, status: 'ready' }).catch((err: unknown) => log.warn({ err, epoch: record.epoch }, 'could not mark the recommitted epoch ready'));
  }

  /**
   * The final checkpoint of a generation, at most one at a time: a stop that asks for one while exhausted
   * sources already wait for theirs shares it.
   */
  function finalCheckpoint(generation: number): Promise<{ epoch: number }> {
    let final = finals.get(generation);
    if (final === undefined) {
      final = coordinator.final(generation);
      finals.set(generation, final);
      final.catch(() => finals.delete(generation));
    }
    return final;
  }

  /** Every source of a two-phase job ran out of input: the final checkpoint commits the last output, then all finish. */
  async function finishWithCheckpoint(gen: GenerationState): Promise<void> {
    const running = () => !stopped && generations.get(gen.generation) === gen && actor.getSnapshot().matches('Running');
    const failure = (err: unknown) => `the final checkpoint after the sources ran out failed: ${err instanceof Error ? err.message : String(err)}`;
    try {
      const { epoch } = await retry(() => finalCheckpoint(gen.generation), {
        attempts: FINAL_ON_EXHAUSTED_ATTEMPTS,
        retryable: running,
        onRetry: (err, attempt) => log.warn({ generation: gen.generation, attempt }, failure(err)),
      });
      log.info({ generation: gen.generation, epoch }, 'sources exhausted: final checkpoint committed');
    } catch (err) {
      if (running()) send({ type: 'task.failed', generation: gen.generation, message: failure(err), domain: 'internal', hint: 'with_backoff' });
    }
  }

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
      knowsNewestRecord = true;
      maybeCleanup(record);
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
    const id = `${jobId}.${at}.checkpoint-${outcome.generation}-${outcome.epoch}`;
    enqueue(() => store.log.append(jobId, { kind: 'warning', message: outcome.message, at }, { id }).then(() => {}));
  }

  function releaseGeneration(params: GenerationInput): void {
    if (workersOf(params.generation).length === 0) {
      registry.release(jobId, params.generation);
      generations.delete(params.generation);
      return;
    }
    void cleanupJob(params);
  }

  // ─── The actor ────────────────────────────────────────────────────────────────────────────────

  const machines = options.machines ?? new JobMachines();
  const machine = machines.machine;
  const unregister = machines.register(jobId, {
    compileJob: () => compileJob(),
    scheduleJob,
    stopJob,
    killJob,
    cleanupJob,
    finalCheckpoint: (input) => finalCheckpoint(input.generation),
    armCheckpoints: (params: CheckpointSchedule) => coordinator.arm(params.generation, params.intervalMs, params.minEpoch),
    disarmCheckpoints: (params) => coordinator.disarm(params.generation),
    releaseGeneration,
    logStatus: (params) => log.info(params, 'job status'),
  });

  let last: Observed = {
    state: options.resumeState ?? options.status?.state ?? 'Created',
    generation: options.status?.generation ?? 0,
    restarts: options.status?.restarts ?? 0,
    failure: options.status?.failure ?? null,
    warning: null,
  };
  let seq = 0;
  let observed = 0;
  /** The state change the stored status records (`JobStatusRecord.transition`). */
  let lastTransition = options.status?.transition;
  /** Aborted by stop(): pending persistence retries give up. */
  const persistAbort = new AbortController();
  let queue: Promise<void> = Promise.resolve();
  let lastStatus: Versioned<JobStatusRecord> | undefined;

  // Liveness is tracked once per worker by the registry, which reports a silent worker as `worker.lost`;
  // a per-job heartbeat deadline would need every heartbeat forwarded to every job (docs/design-notes.md).
  const policy: Partial<JobPolicy> = { ...options.policy, heartbeatTimeoutMs: 0 };
  const input: JobInput = { jobId, createdAt: Date.now(), config: options.config, policy, status: options.status };
  const restored = options.resumeState === undefined ? undefined : machine.resolveState({ value: options.resumeState, context: initialContext(input) });
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
        observe(event.snapshot as unknown as { value: unknown; context: JobContext });
      }
      extraInspect?.next(event);
    },
  });
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
      observe(snapshot);
      logSlotWait(snapshot);
      maybeSendStarted();
      maybeFinishWithCheckpoint();
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

  // ─── Persistence ──────────────────────────────────────────────────────────────────────────────

  /** Core publish: may be lost while disconnected; followers detect the gap by `seq`. */
  function publishState(event: JobStateEvent): void {
    try {
      nc.publish(subjects.jobState(jobId), encode(event));
      stats.stateEventsPublished++;
    } catch (err) {
      log.warn({ err }, 'could not publish the state event');
    }
  }

  function observe(snapshot: { value: unknown; context: JobContext }): void {
    const ctx = snapshot.context;
    const now: Observed = { state: topState(snapshot.value), generation: ctx.generation, restarts: ctx.restarts, failure: ctx.failure, warning: ctx.warning };
    const prev = last;
    const stateChanged = now.state !== prev.state;
    if (!stateChanged && now.generation === prev.generation && now.restarts === prev.restarts && now.failure === prev.failure && now.warning === prev.warning) return;
    last = now;
    const at = Date.now();
    if (stateChanged) lastTransition = { from: prev.state, at };
    const status = {
      state: now.state,
      generation: ctx.generation,
      restarts: ctx.restarts,
      appliedRestartNonce: ctx.appliedRestartNonce,
      failure: ctx.failure,
      startTime: ctx.times.start,
      finishTime: ctx.times.finish,
      epoch: coordinator.lastCompletedEpoch,
      minEpoch: ctx.checkpoint.minEpoch,
      updatedAt: at,
      ...(lastTransition === undefined ? {} : { transition: lastTransition }),
    };
    const stateEvent: JobStateEvent | null = stateChanged
      ? {
          v: PROTOCOL_VERSION,
          job_id: jobId,
          state: now.state,
          previous: prev.state,
          generation: now.generation,
          restarts: now.restarts,
          ...(now.failure === null
            ? {}
            : { failure: { message: truncateErrorText(now.failure.message), domain: now.failure.domain, hint: now.failure.hint, at: microsFromMs(now.failure.at) } }),
          at: microsFromMs(at),
          seq: ++seq,
        }
      : null;
    if (stateEvent !== null) {
      try {
        options.onTransition?.(prev.state, now.state);
      } catch (err) {
        log.warn({ err }, 'onTransition failed');
      }
      publishState(stateEvent);
      log.info({ from: prev.state, to: now.state, generation: now.generation }, 'job transition');
    }
    // Stable ids: a step retried after an append that landed but was not acknowledged appends nothing twice.
    // The observation's number is taken now: the step runs later, after more observations (of the same ms) bumped the counter.
    const observation = observed++;
    const appendId = (kind: string) => `${jobId}.${at}.${observation}.${kind}`;
    enqueue(async () => {
      // This runtime is the status's only writer: its last write is the base of the next compare-and-set.
      const known = lastStatus;
      lastStatus = undefined;
      lastStatus = await store.jobs.updateStatus(jobId, (current) => ({ ...current, ...status }), known);
      if (stateChanged) {
        await store.log.append(jobId, { kind: 'transition', from: prev.state, to: now.state, generation: now.generation, at }, { id: appendId('t') });
      }
      if (now.failure !== null && now.failure !== prev.failure) {
        const { message, domain, hint, at: failedAt } = now.failure;
        await store.log.append(jobId, { kind: 'error', message, domain, hint, at: failedAt }, { id: appendId('e') });
      }
      if (now.warning !== null && now.warning !== prev.warning) {
        await store.log.append(jobId, { kind: 'warning', message: now.warning.message, at: now.warning.at }, { id: appendId('w') });
      }
    });
  }

  /**
   * Persistence steps run one at a time, in order. A step the store could not take (NATS unreachable,
   * lost races) is retried with backoff until it lands or the runtime stops: a transition that is never
   * written would be resumed wrongly after a controller restart. Anything else is a bug: logged, dropped.
   */
  function enqueue(step: () => Promise<void>): void {
    queue = queue.then(async () => {
      try {
        await retry(step, {
          retryable: (err, attempt) => {
            stats.persistFailures++;
            const again = isTransientStoreError(err) && !stopped;
            if (!again) log.error({ err, attempt: attempt - 1 }, 'persisting the job failed');
            return again;
          },
          pauseMs: (attempt) => backoffMs(attempt - 1, PERSIST_RETRY_INITIAL_MS, PERSIST_RETRY_MAX_MS),
          onRetry: (err, attempt, retryInMs) => log.error({ err, attempt: attempt - 1, retryInMs }, 'persisting the job failed; retrying'),
          signal: persistAbort.signal,
          pausesHoldProcess: false,
        });
      } catch {
        // Given up (logged above), or the runtime stopped while waiting to retry.
      }
    });
  }

  /**
   * The newest readable record, ready or committing, at or above `floor` (a restart that ignored state).
   * It can be newer than the last completed epoch the status knows: a controller that stopped between
   * writing a record and persisting the status leaves a complete checkpoint all the same. Epochs after
   * it never got a record, so they count as failed. Null when there is nothing to restore from: the
   * tasks start empty.
   */
  async function restorableRecord(floor: number | null): Promise<CheckpointRecord | null> {
    const known = Math.max(coordinator.lastCompletedEpoch, listedEpoch);
    let best: CheckpointRecord | null = null;
    let damaged = 0;
    try {
      const kv = await checkpointKv();
      // Once this incarnation has listed the records or completed a checkpoint itself, the newest
      // epoch is known exactly: one read instead of listing a bucket that holds every job's records.
      if (knowsNewestRecord && known === 0 && floor === null) return null;
      if (knowsNewestRecord && known > 0 && known >= (floor ?? 0)) {
        const record = await storedRecord(kv, known);
        if (record !== null && RESTORABLE_STATUSES.includes(record.status)) return record;
      }
      const records = await storedRecords(kv);
      best = records.find((r) => r.epoch >= (floor ?? 0) && RESTORABLE_STATUSES.includes(r.status)) ?? null;
      damaged = records.filter((r) => r.status === 'failed').length;
    } catch (err) {
      // Never guess: an older epoch would replay, and none at all would lose the state. Scheduling retries.
      log.warn({ err, known }, 'cannot list checkpoint records');
      throw new JobError({ kind: 'retryable', domain: 'external', message: `cannot list the checkpoint records: ${err instanceof Error ? err.message : String(err)}` });
    }
    if (floor === null && best === null && known > 0 && damaged === 0) {
      // Epoch `known` completed, so its record was acknowledged: a listing without it is not to be trusted.
      throw new JobError({ kind: 'retryable', domain: 'external', message: `no readable checkpoint record, although epoch ${known} completed` });
    }
    knowsNewestRecord = true;
    // A scheduling attempt that fails after this (no slots yet) must find the same record the next time.
    if (best !== null) listedEpoch = Math.max(listedEpoch, best.epoch);
    if (floor === null && best !== null && best.epoch < known) log.warn({ known, restoring: best.epoch }, 'no checkpoint record for the last completed epoch');
    if (floor === null && best === null && damaged > 0) log.error({ known, damaged }, 'every checkpoint record is damaged: the new run starts empty');
    if (floor !== null && best === null) log.info({ floor }, 'restart without state: the new run starts empty');
    return best;
  }

  /** A stored entry as a record of this job, or null (logged when unreadable) when it is not one. */
  function recordIn(key: string, entry: KvEntry | null): CheckpointRecord | null {
    if (entry === null || entry.operation !== 'PUT') return null;
    let json: unknown;
    try {
      json = entry.json();
    } catch (err) {
      log.warn({ err, key }, 'unreadable checkpoint record');
      return null;
    }
    const read = readCheckpointRecord(json, key);
    if (!read.ok) {
      log.warn({ key, reason: read.message }, 'unreadable checkpoint record');
      return null;
    }
    if (read.record.job_id !== jobId) return null;
    // The coordinator writes every field of CheckpointRecord; v1 records are migrated to the current format.
    return withWriteClosed(read.record as unknown as CheckpointRecord, microsFromMs(entry.created.getTime()));
  }

  const slotKeys = Array.from({ length: CHECKPOINT_SLOTS }, (_, slot) => `${jobId}.${slot}`);
  /**
   * Keys an older version wrote by epoch rather than by slot. Listing keys costs a consumer on the server,
   * and nothing writes such keys any more, so they are listed once per runtime; the slots are read directly.
   */
  const legacyKeys = openOnce(async () => {
    const keys: string[] = [];
    for await (const key of await (await checkpointKv()).keys(`${jobId}.*`)) if (!slotKeys.includes(key)) keys.push(key);
    return keys;
  });

  /**
   * Every record the bucket holds for this job, newest epoch first: the slots, plus keys named by epoch
   * that versions before the slots wrote.
   */
  async function storedRecords(kv: KV): Promise<CheckpointRecord[]> {
    const keys = [...slotKeys, ...(await legacyKeys())];
    const entries = await Promise.all(keys.map((key) => kv.get(key)));
    const records = entries.flatMap((entry, i) => recordIn(keys[i]!, entry) ?? []);
    return records.sort((a, b) => b.epoch - a.epoch);
  }

  /** An epoch's record as its slot holds it; null when absent, replaced by a newer epoch, or unreadable. */
  async function storedRecord(kv: KV, epoch: number): Promise<CheckpointRecord | null> {
    const key = checkpointKey(jobId, epoch);
    const record = recordIn(key, await kv.get(key));
    return record?.epoch === epoch ? record : null;
  }

  async function checkpointHistory(limit: number): Promise<Checkpoint[]> {
    const byEpoch = new Map<number, Checkpoint>();
    for (const record of (await storedRecords(await checkpointKv())).slice(0, limit)) byEpoch.set(record.epoch, checkpointFromRecord(record));
    // What this incarnation saw itself is more complete: failed and in-flight epochs have no record.
    for (const summary of coordinator.history()) byEpoch.set(summary.epoch, checkpointFromSummary(summary));
    return [...byEpoch.values()].sort((a, b) => b.epoch - a.epoch).slice(0, limit);
  }

  async function checkpointDetails(epoch: number): Promise<CheckpointDetails | null> {
    const summary = coordinator.history().find((s) => s.epoch === epoch);
    if (summary !== undefined) return { checkpoint: checkpointFromSummary(summary), operators: operatorGroupsFromSummary(summary) };
    const record = await storedRecord(await checkpointKv(), epoch);
    return record === null ? null : { checkpoint: checkpointFromRecord(record), operators: operatorGroupsFromRecord(record) };
  }

  const checkpointKv = options.checkpointKv ?? openCheckpointKv(nc, bucket, requestTimeoutMs);

  /** Writes a record again only while its slot still holds that epoch: never over a newer epoch's record. */
  async function rewriteRecord(kv: KV, record: CheckpointRecord): Promise<void> {
    const key = checkpointKey(jobId, record.epoch);
    const entry = await kv.get(key);
    if (entry === null || recordIn(key, entry)?.epoch !== record.epoch) return;
    await kv.update(key, JSON.stringify(record), entry.revision);
  }

  async function persistCheckpoint(record: CheckpointRecord): Promise<void> {
    await retry(async () => void (await (await checkpointKv()).put(checkpointKey(jobId, record.epoch), JSON.stringify(record))), { attempts: 3 });
  }

  // ─── Worker events ────────────────────────────────────────────────────────────────────────────

  function currentGeneration(generation: number): GenerationState | undefined {
    if (generation !== actor.getSnapshot().context.generation) {
      stats.stale++;
      return undefined;
    }
    const gen = generations.get(generation);
    if (gen === undefined) stats.stale++;
    return gen;
  }

  /** Once Running, with every source of the generation exhausted (sources may run out before Running). */
  function maybeFinishWithCheckpoint(): void {
    const snapshot = actor.getSnapshot();
    const gen = generations.get(snapshot.context.generation);
    if (gen === undefined || gen.finalRequested || gen.exhausted.size === 0 || !snapshot.matches('Running')) return;
    if (![...gen.sourceKeys].every((k) => gen.exhausted.has(k) || gen.finished.has(k))) return;
    gen.finalRequested = true;
    void finishWithCheckpoint(gen);
  }

  function maybeSendStarted(): void {
    const ctx = actor.getSnapshot();
    const gen = generations.get(ctx.context.generation);
    if (gen === undefined || gen.startedSent || gen.started.size < gen.owners.size) return;
    if (!ctx.matches({ Scheduling: { attempt: 'starting' } })) return;
    gen.startedSent = true;
    send({ type: 'tasks.started', generation: gen.generation });
  }

  /**
   * A worker event for this job, from a subtask the current generation planned; anything else is
   * counted and dropped. `wanted` filters before the generation check, so it does not count as stale.
   */
  function acceptWorkerEvent<T extends WorkerEventFields, U extends T = T>(
    schema: z.ZodType<T>,
    msg: Msg,
    label: string,
    wanted: (event: T) => event is U = (_event): _event is U => true,
  ): { event: U; gen: GenerationState; key: string } | undefined {
    const decoded = decode(schema, msg.data);
    if (!decoded.ok || decoded.value.job_id !== jobId) {
      stats.rejected++;
      log.warn({ reason: decoded.ok ? 'job_id does not match the subject' : decoded.error.message }, `rejected ${label} event`);
      return undefined;
    }
    const event = decoded.value;
    if (!wanted(event)) return undefined;
    const gen = currentGeneration(event.generation);
    if (gen === undefined) return undefined;
    const key = subtaskKey(event.node_id, event.subtask_index);
    if (!gen.owners.has(key)) {
      stats.unknownSubtask++;
      return undefined;
    }
    return { event, gen, key };
  }

  function onTask(msg: Msg): void {
    const accepted = acceptWorkerEvent(taskEventSchema, msg, 'task');
    if (accepted === undefined) return;
    const { event, gen, key } = accepted;
    switch (event.event) {
      case 'started':
        gen.started.add(key);
        maybeSendStarted();
        break;
      case 'exhausted':
        gen.exhausted.add(key);
        maybeFinishWithCheckpoint();
        break;
      case 'finished': {
        gen.finished.add(key);
        const worker = gen.owners.get(key)!;
        if (gen.assignments.get(worker)?.every((ref) => gen.finished.has(subtaskKey(ref.nodeId, ref.subtaskIndex))) === true) endedOn(gen.generation, worker);
        if (gen.finished.size >= gen.owners.size && !gen.finishedSent) {
          gen.finishedSent = true;
          send({ type: 'tasks.finished', generation: gen.generation });
        } else if (gen.sourceKeys.has(key) && !gen.sourceFinishedSent && actor.getSnapshot().matches('Running')) {
          gen.sourceFinishedSent = true;
          send({ type: 'source.finished', generation: gen.generation });
        }
        break;
      }
      case 'failed':
        if (gen.failedSent) {
          log.warn({ generation: gen.generation, node: event.node_id, subtask: event.subtask_index, reason: event.reason }, 'another subtask failed');
          break;
        }
        gen.failedSent = true;
        send({
          type: 'task.failed',
          generation: gen.generation,
          message: `${event.node_id}[${event.subtask_index}] on ${event.worker_id}: ${event.reason}`,
          domain: event.domain,
          hint: event.hint,
        });
        break;
    }
  }

  function onCheckpoint(msg: Msg): void {
    const accepted = acceptWorkerEvent(checkpointEventSchema, msg, 'checkpoint');
    if (accepted === undefined) return;
    const { event } = accepted;
    if (event.event === 'completed') coordinator.onCompleted(event);
    else coordinator.onProgress(event);
  }

  const handled =
    (handler: (msg: Msg) => void) =>
    (msg: Msg): void => {
      try {
        handler(msg);
      } catch (e) {
        log.error({ err: e, subject: msg.subject }, 'job event handler failed');
      }
    };
  const subscribe = (subject: string, handler: (msg: Msg) => void): Subscription => {
    const handle = handled(handler);
    return nc.subscribe(subject, {
      callback: (err, msg) => {
        if (err !== null) {
          log.error({ err, subject }, 'job subscription failed');
          return;
        }
        handle(msg);
      },
    });
  };

  const events = options.events;
  const unroute = events?.route(jobId, { task: handled(onTask), checkpoint: handled(onCheckpoint) });
  const subscriptions = events !== undefined ? [] : [subscribe(subjects.jobTasks(jobId), onTask), subscribe(subjects.jobCheckpoints(jobId), onCheckpoint)];
  actor.start();

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
    onWorkerLost(generation, workerId, reason) {
      const gen = generations.get(generation);
      gen?.goneWorkers.add(workerId);
      if (generation !== actor.getSnapshot().context.generation) return;
      const message = reason === 'vanished' ? `the tasks of generation ${generation} on worker ${workerId} ended unreported` : undefined;
      send({ type: 'worker.lost', generation, workerId, ...(message === undefined ? {} : { message }) });
    },
    coordinator,
    checkpointHistory,
    checkpointDetails,
    setRestoreFloor(epoch) {
      restoreFloor = epoch;
    },
    announceDeleted() {
      const { state, generation, restarts } = last;
      publishState({ v: PROTOCOL_VERSION, job_id: jobId, state, previous: state, generation, restarts, at: microsFromMs(Date.now()), seq: ++seq, deleted: true });
    },
    stats: () => ({ ...stats, checkpoints: coordinator.stats() }),
    flush: async () => {
      // Steps may enqueue more steps; wait until the queue settles.
      for (;;) {
        const current = queue;
        await current;
        if (current === queue) return;
      }
    },
    stop() {
      stopping ??= (async () => {
        stopped = true;
        actor.stop();
        unregister();
        coordinator.close();
        ownTimers?.close();
        unroute?.();
        await Promise.allSettled(subscriptions.map((s) => s.drain()));
        persistAbort.abort();
        await queue;
      })();
      return stopping;
    },
  };
}
