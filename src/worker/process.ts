/**
 * The worker process: registers with the controller, heartbeats what it runs, serves the
 * controller's start / stop / checkpoint / commit requests and runs the subtasks it is assigned with
 * the data plane (`SubtaskRunner`).
 *
 * - Every request is decoded with the protocol schemas and the size limit; bad input gets an error
 *   reply, is logged at warn, counted per code, and changes nothing. A handler never throws.
 * - Requests about one job are handled one at a time, in arrival order.
 * - Generations fence: a request for a generation older than the newest one seen for the job gets
 *   `stale_generation`; a start for a newer generation first stops the old one's runners at once.
 * - Task and checkpoint events are validated against their schemas and published. Core NATS drops
 *   publishes while disconnected (docs/design-notes.md): if an event cannot be confirmed with a
 *   flush, the generation is stopped here, so it vanishes from the heartbeat and the controller
 *   recovers the job.
 * - State goes to the checkpoint store (`SubtaskStateWriter`): at each barrier a subtask's snapshot is
 *   written incrementally, and only then is the subtask's completion published, naming what it wrote.
 * - The start message carries `restore_epoch` but no state: the state comes from the epoch's record
 *   in the checkpoint KV bucket and the store (`checkpointState`), or from the `restoreState` hook. A
 *   start whose epoch cannot be read gets an `unavailable` error reply naming the epoch (the controller
 *   retries), and one whose state is damaged `corrupt_checkpoint` (the controller falls back to an
 *   earlier checkpoint); never a silent start from empty state.
 */
import { hostname as osHostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { Kvm } from '@nats-io/kv';
import type { z } from 'zod';
import {
  CHECKPOINTS_KV_BUCKET,
  MAX_MESSAGE_BYTES,
  PROTOCOL_VERSION,
  checkpointEventSchema,
  checkpointRequestSchema,
  commitRequestSchema,
  decode,
  decodeReply,
  deregisterWorkerSchema,
  encode,
  errorReply,
  heartbeatSchema,
  ackSchema,
  checkpointKey,
  isValidId,
  registerWorkerReplySchema,
  registerWorkerSchema,
  startExecutionSchema,
  stopExecutionSchema,
  subjects,
  taskEventSchema,
  type Ack,
  type CheckpointEvent,
  type ErrorCode,
  type Heartbeat,
  type WorkerMetrics,
  type StartExecution,
  type TaskEvent,
  RequestRejected,
  replyTo,
  rejectionOf,
} from '../protocol/index.js';
import { natsTransport, type DataTransport } from './dataplane/transport.js';
import { SubtaskRunner, type RunnerOptions } from './dataplane/runner.js';
import { subtaskKey, subtaskSpecs } from './dataplane/graph.js';
import { OPERATORS, type OperatorFactory } from './operators/index.js';
import { CorruptCheckpointError, JobCheckpointRecords, openCheckpointStore, type CheckpointStore, type IncrementalStateOptions } from '../checkpoint/index.js';
import { ensureRun, isStoredState, restoreSnapshot, SubtaskStateWriter, type RestoredState } from './subtask-state.js';
import { KeyedQueue } from '../shared/keyed-queue.js';
import { openOnce } from '../shared/memo.js';
import { drainWithin } from '../shared/nats-close.js';
import { nowMicros as nowUs } from '../shared/micros.js';
import { isNoResponders } from '../shared/no-responders.js';

export const DEFAULT_WORKER_HEARTBEAT_INTERVAL_MS = 5_000;
export const DEFAULT_WORKER_METRICS_INTERVAL_MS = 2_000;
export const DEFAULT_REQUEST_TIMEOUT_MS = 2_000;
export const DEFAULT_START_TIMEOUT_MS = 10_000;
export const DEFAULT_STOP_TIMEOUT_MS = 10_000;
const REGISTER_BACKOFF_MIN_MS = 100;
const REGISTER_BACKOFF_MAX_MS = 5_000;
export const DEFAULT_CONTROLLER_WAIT_MS = 30_000;

export type WorkerStopMode = 'graceful' | 'immediate';
export type WorkerRequestKind = 'start' | 'stop' | 'checkpoint' | 'commit';

/** What a worker answers a stop of a generation that does not run here (any more). */
const STOPPED_ALREADY: readonly ErrorCode[] = ['unknown_job', 'stale_generation'];

/** Jobs whose newest owner epoch a worker remembers. */
const MAX_OWNER_EPOCHS = 10_000;

export interface WorkerOptions {
  /** Default: `<hostname>-<pid>-<random>`, cut to a valid id. */
  workerId?: string;
  slots: number;
  /** Operators this worker can run (their names are sent at registration). Default `OPERATORS`. */
  operators?: ReadonlyMap<string, OperatorFactory<unknown>>;
  /** Used until the controller's register reply names its own interval. Default 5 s. */
  heartbeatIntervalMs?: number;
  /** How often record counts go out, until the register reply names the controller's interval. Default 2 s. */
  metricsIntervalMs?: number;
  log: Logger;
  /** Deadline of each register / heartbeat request. Default 2 s. */
  requestTimeoutMs?: number;
  /**
   * How long a worker that has never registered waits quietly for a controller to answer at all (no
   * responders is logged at info once, then at debug); past it, and for every other failure, each
   * failed registration warns. Default 30 s.
   */
  controllerWaitMs?: number;
  /** Deadline for a start's runners to be running. Default 10 s. */
  startTimeoutMs?: number;
  /** Deadline of a graceful `stop()` of the worker. Default 10 s. */
  stopTimeoutMs?: number;
  /** Largest accepted request. Default `MAX_MESSAGE_BYTES`. */
  maxMessageBytes?: number;
  /**
   * Snapshots by `node/subtask` for a start that carries `restore_epoch`; a rejection fails the start.
   * Default: `checkpointState`, from the epoch's record in the checkpoint KV bucket.
   */
  restoreState?: (jobId: string, generation: number, epoch: number) => Promise<ReadonlyMap<string, unknown>>;
  /** Passed to every `SubtaskRunner` (the operator registry is always `operators`). */
  runner?: Omit<RunnerOptions, 'registry' | 'logger'>;
  /** Where subtasks' state goes. Default: the checkpoint store at its default prefix, opened on first use. */
  checkpointStore?: CheckpointStore;
  /** Replicas of the checkpoint store's buckets and stream when this worker is the first to create them. Default 1. */
  replicas?: number;
  /** When a table's delta chain is compacted into a full snapshot. */
  incrementalState?: Omit<IncrementalStateOptions, 'from'>;
}

export interface WorkerStats {
  received: Record<WorkerRequestKind, number>;
  /** RequestRejected requests by error code. */
  rejected: Partial<Record<ErrorCode, number>>;
  registrations: number;
  heartbeats: number;
  heartbeatFailures: number;
  metricsSent: number;
  /** Task and checkpoint events published, and those that could not be confirmed. */
  eventsPublished: number;
  eventsLost: number;
}

export interface WorkerHandle {
  readonly workerId: string;
  /**
   * Deregisters, stops every runner (immediately unless `graceful`), drains the connection (closes it when
   * NATS does not answer within the stop timeout). Resolves true when all of that went cleanly. Idempotent.
   */
  stop(mode?: WorkerStopMode): Promise<boolean>;
  /** Resolves once the worker has stopped: after `stop()`, or when the connection closed on its own. */
  readonly closed: Promise<void>;
  stats(): WorkerStats;
  /** Whether the controller currently knows this worker (last register/heartbeat answered ok). */
  registered(): boolean;
  /** Job id → generation of what runs here now. */
  running(): Map<string, number>;
}


interface JobRun {
  jobId: string;
  generation: number;
  runners: SubtaskRunner[];
  transport: DataTransport & { close(): void };
  /** Slots it takes here: distinct subtask indexes (slot k hosts subtask k of every node). */
  slots: number;
  /** Set when the controller stopped it (or it was fenced): its runners' events are not reported. */
  silenced: boolean;
  lastEpoch: number;
  /** By `node/subtask`. */
  states: Map<string, SubtaskStateWriter>;
  /** Sources (by `node/subtask`) that ran out of input and wait for the final checkpoint: heartbeats say so, for a new controller. */
  exhausted: Set<string>;
}


export interface CheckpointState {
  /** Snapshot by `node/subtask`. */
  state: Map<string, unknown>;
  /** Subtasks per node in the record. */
  parallelism: Map<string, number>;
  /** By `node/subtask`, for state kept in the checkpoint store: what its writer continues from. */
  stored: Map<string, RestoredState>;
}

/**
 * Reads epoch `epoch` of job `jobId`: the record from the checkpoint KV bucket (`JobCheckpointRecords`,
 * which the controller reads the records with too), and each subtask's snapshot by `node/subtask`, from
 * the checkpoint store (or inline, as records before it kept them). Rejects when the bucket, the key or
 * a readable record is missing; with CorruptCheckpointError when a state blob is missing or fails its
 * digest.
 */
export async function checkpointState(nc: NatsConnection, jobId: string, epoch: number, bucket = CHECKPOINTS_KV_BUCKET, store?: CheckpointStore): Promise<CheckpointState> {
  const key = checkpointKey(jobId, epoch);
  const record = await new JobCheckpointRecords({ jobId, bucket, kv: () => new Kvm(nc).open(bucket) }).readForRestore(epoch);
  const state = new Map<string, unknown>();
  const parallelism = new Map<string, number>();
  const stored = new Map<string, RestoredState>();
  await Promise.all(
    record.subtasks.map(async (s) => {
      parallelism.set(s.node_id, (parallelism.get(s.node_id) ?? 0) + 1);
      const id = subtaskKey(s.node_id, s.subtask_index);
      if (isStoredState(s.table_metadata)) {
        if (store === undefined) throw new Error(`checkpoint record ${key} keeps its state in the checkpoint store, and none was given`);
        try {
          const restored = await restoreSnapshot(store, s.table_metadata);
          stored.set(id, restored);
          state.set(id, restored.snapshot);
        } catch (err) {
          if (err instanceof CorruptCheckpointError) throw new CorruptCheckpointError(err.runId, err.nodeId, err.seq, err.reason, `checkpoint ${epoch} of job ${jobId}, subtask ${s.node_id}[${s.subtask_index}]: ${err.message}`, { cause: err });
          throw err;
        }
        return;
      }
      const snapshot = s.table_metadata.state;
      if (snapshot !== undefined && snapshot !== null) state.set(id, snapshot);
    }),
  );
  return { state, parallelism, stored };
}

export function defaultWorkerId(): string {
  const host = osHostname().replace(/[^A-Za-z0-9_-]/g, '-').slice(0, 40) || 'worker';
  return `${host}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`.slice(0, 64);
}

export function startWorker(nc: NatsConnection, options: WorkerOptions): WorkerHandle {
  const workerId = options.workerId ?? defaultWorkerId();
  if (!isValidId(workerId)) throw new RangeError(`invalid worker id ${JSON.stringify(workerId)}: expected 1–64 of A-Z a-z 0-9 _ -`);
  if (!Number.isSafeInteger(options.slots) || options.slots < 1) throw new RangeError(`slots must be a positive integer, got ${options.slots}`);
  const log = options.log.child({ component: 'worker', workerId });
  const operators = options.operators ?? OPERATORS;
  const requestTimeoutMs = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
  const startTimeoutMs = options.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS;
  const stopTimeoutMs = options.stopTimeoutMs ?? DEFAULT_STOP_TIMEOUT_MS;
  const maxBytes = options.maxMessageBytes ?? MAX_MESSAGE_BYTES;

  /**
   * The default state source: the epoch's record. Per-subtask state cannot be redistributed, so a node
   * whose parallelism changed since the epoch starts from empty state (logged at warn).
   */
  async function recordedState(jobId: string, generation: number, epoch: number, parallelism: ReadonlyMap<string, number>): Promise<Pick<CheckpointState, 'state' | 'stored'>> {
    const recorded = await checkpointState(nc, jobId, epoch, CHECKPOINTS_KV_BUCKET, await checkpointStore());
    const rescaled = [...parallelism].filter(([node, p]) => recorded.parallelism.has(node) && recorded.parallelism.get(node) !== p).map(([node]) => node);
    if (rescaled.length === 0) return recorded;
    log.warn({ jobId, generation, epoch, nodes: rescaled }, 'parallelism changed since the restored epoch: these nodes start from empty state');
    const kept = (key: string) => !rescaled.some((node) => key.startsWith(`${node}/`));
    return { state: new Map([...recorded.state].filter(([key]) => kept(key))), stored: new Map([...recorded.stored].filter(([key]) => kept(key))) };
  }

  const checkpointStore = openOnce(() => (options.checkpointStore !== undefined ? Promise.resolve(options.checkpointStore) : openCheckpointStore(nc, { replicas: options.replicas ?? 1 })));
  /** Jobs whose run exists in the store: created once per job and worker. */
  const runsReady = new Map<string, Promise<void>>();
  function jobRun(jobId: string, checkpoints: CheckpointStore): Promise<void> {
    let ready = runsReady.get(jobId);
    if (ready === undefined) {
      ready = ensureRun(checkpoints, jobId);
      runsReady.set(jobId, ready);
      ready.catch(() => runsReady.delete(jobId));
    }
    return ready;
  }
  let heartbeatIntervalMs = options.heartbeatIntervalMs ?? DEFAULT_WORKER_HEARTBEAT_INTERVAL_MS;
  let metricsIntervalMs = options.metricsIntervalMs ?? DEFAULT_WORKER_METRICS_INTERVAL_MS;

  const stats: WorkerStats = {
    received: { start: 0, stop: 0, checkpoint: 0, commit: 0 },
    rejected: {},
    registrations: 0,
    heartbeats: 0,
    heartbeatFailures: 0,
    metricsSent: 0,
    eventsPublished: 0,
    eventsLost: 0,
  };
  const runs = new Map<string, JobRun>();
  /** Slots of starts still reading their restore point, by job and generation: taken, though no run holds them yet. */
  const reserved = new Map<string, number>();
  /** Newest generation seen per job (kept after the run ends, so older requests stay fenced). */
  const newest = new Map<string, number>();
  /** Per-job chain: requests about one job run one after the other. */
  /** Each job's commands, one at a time in the order they came. */
  const perJob = new KeyedQueue();
  const abort = new AbortController();
  let isRegistered = false;
  let stopping: Promise<boolean> | undefined;
  let resolveClosed!: () => void;
  const closed = new Promise<void>((resolve) => (resolveClosed = resolve));

  // ─── Events ──────────────────────────────────────────────────────────────────────────────────

  function publishEvent(run: JobRun, subject: string, schema: z.ZodType, event: TaskEvent | CheckpointEvent): void {
    if (run.silenced) return;
    const checked = schema.safeParse(event);
    if (!checked.success) {
      log.error({ subject, issues: checked.error.issues }, 'refusing to publish an invalid event');
      return;
    }
    try {
      if (nc.isClosed()) throw new Error('connection closed');
      nc.publish(subject, encode(event));
      stats.eventsPublished++;
    } catch (err) {
      eventLost(run, err);
      return;
    }
    // A publish made while disconnected is dropped silently; a flush that fails says so.
    nc.flush().catch((err: unknown) => eventLost(run, err));
  }

  function eventLost(run: JobRun, err: unknown): void {
    stats.eventsLost++;
    if (runs.get(run.jobId) !== run) return;
    log.warn({ err, jobId: run.jobId, generation: run.generation }, 'an event may be lost: stopping the generation so the controller recovers it');
    endRun(run, 'immediate');
  }

  function taskEvent(run: JobRun, nodeId: string, subtask: number, event: Record<string, unknown>): void {
    const message = { v: PROTOCOL_VERSION, job_id: run.jobId, generation: run.generation, worker_id: workerId, node_id: nodeId, subtask_index: subtask, at: nowUs(), ...event };
    publishEvent(run, subjects.jobTasks(run.jobId), taskEventSchema, message as TaskEvent);
  }

  function checkpointEvent(run: JobRun, nodeId: string, subtask: number, event: Record<string, unknown>): void {
    const message = { v: PROTOCOL_VERSION, job_id: run.jobId, generation: run.generation, worker_id: workerId, node_id: nodeId, subtask_index: subtask, at: nowUs(), ...event };
    publishEvent(run, subjects.jobCheckpoints(run.jobId), checkpointEventSchema, message as CheckpointEvent);
  }

  // ─── Runs ────────────────────────────────────────────────────────────────────────────────────

  /** Stops a run's runners (silently unless graceful) and forgets it once they are done. */
  function endRun(run: JobRun, mode: 'graceful' | 'immediate'): void {
    if (mode === 'immediate') run.silenced = true;
    for (const runner of run.runners) runner.stop(mode);
    if (mode === 'immediate') forget(run);
  }

  function forget(run: JobRun): void {
    if (runs.get(run.jobId) === run) runs.delete(run.jobId);
    run.transport.close();
  }

  function usedSlots(): number {
    let used = 0;
    for (const run of runs.values()) used += run.slots;
    for (const slots of reserved.values()) used += slots;
    return used;
  }

  async function startRun(msg: StartExecution): Promise<Ack> {
    const { job_id: jobId, generation, program } = msg;
    const parallelism = new Map(program.graph.nodes.map((n) => [n.id, n.parallelism ?? 1]));
    const operatorOf = new Map(program.graph.nodes.map((n) => [n.id, n.operator]));
    const wanted = new Set<string>();
    const slotIndexes = new Set<number>();
    for (const [i, assignment] of program.assignments.entries()) {
      const p = parallelism.get(assignment.node_id);
      if (p === undefined) throw new RequestRejected('bad_schema', `program.assignments[${i}].node_id: no node "${assignment.node_id}" in the graph`);
      for (const subtask of assignment.subtasks) {
        if (subtask >= p) throw new RequestRejected('bad_schema', `program.assignments[${i}].subtasks: ${subtask} is not below the node's parallelism ${p}`);
        wanted.add(subtaskKey(assignment.node_id, subtask));
        slotIndexes.add(subtask);
      }
    }
    const previous = newest.get(jobId);
    if (previous !== undefined && generation < previous) {
      throw new RequestRejected('stale_generation', `job ${jobId}: generation ${generation} is older than generation ${previous} seen here`);
    }
    if (previous === generation) throw new RequestRejected('conflict', `job ${jobId}: generation ${generation} has already started here`);
    for (const assignment of program.assignments) {
      const operator = operatorOf.get(assignment.node_id) ?? '';
      if (!operators.has(operator)) throw new RequestRejected('unavailable', `this worker lacks operator "${operator}" (node ${assignment.node_id})`);
    }
    // PR #914: a newer generation fences the old one before anything else.
    const old = runs.get(jobId);
    if (old !== undefined) {
      log.info({ jobId, old: old.generation, generation }, 'a newer generation fences the old one');
      endRun(old, 'immediate');
    }
    const free = options.slots - usedSlots();
    if (slotIndexes.size > free) throw new RequestRejected('conflict', `job ${jobId} needs ${slotIndexes.size} slots here; ${free} of ${options.slots} are free`);
    // Taken now, before the restore is read: a start arriving meanwhile (another controller's) counts them.
    const reservation = `${jobId}\u0000${generation}`;
    reserved.set(reservation, slotIndexes.size);

    let restored: ReadonlyMap<string, unknown> = new Map();
    let stored: ReadonlyMap<string, RestoredState> = new Map();
    let checkpoints: CheckpointStore;
    try {
      checkpoints = await checkpointStore();
      await jobRun(jobId, checkpoints);
      if (msg.restore_epoch !== undefined) {
        if (options.restoreState === undefined) ({ state: restored, stored } = await recordedState(jobId, generation, msg.restore_epoch, parallelism));
        else restored = await options.restoreState(jobId, generation, msg.restore_epoch);
      }
    } catch (err) {
      reserved.delete(reservation);
      const why = err instanceof Error ? err.message : String(err);
      const code = err instanceof CorruptCheckpointError ? 'corrupt_checkpoint' : 'unavailable';
      throw new RequestRejected(code, `job ${jobId} generation ${generation}: cannot restore epoch ${msg.restore_epoch ?? '(none)'}: ${why}`);
    }
    if (msg.restore_epoch !== undefined) log.info({ jobId, generation, epoch: msg.restore_epoch, subtasks: restored.size }, 'restoring state of an epoch');

    if (stopping !== undefined) {
      reserved.delete(reservation);
      throw new RequestRejected('unavailable', `worker ${workerId} is shutting down`);
    }
    newest.set(jobId, generation);
    const transport = natsTransport(nc);
    const run: JobRun = { jobId, generation, runners: [], transport, slots: slotIndexes.size, silenced: false, lastEpoch: msg.start_epoch, states: new Map(), exhausted: new Set() };
    const runnerLog = log.child({ jobId, generation });
    for (const planned of subtaskSpecs(program.graph, jobId, generation, restored)) {
      if (!wanted.has(subtaskKey(planned.nodeId, planned.subtaskIndex))) continue;
      const spec = msg.final_checkpoint === true ? { ...planned, finalCheckpoint: true } : planned;
      const { nodeId, subtaskIndex: i } = spec;
      const stateWriter = new SubtaskStateWriter(checkpoints, jobId, nodeId, i, stored.get(subtaskKey(nodeId, i)), options.incrementalState);
      run.states.set(subtaskKey(nodeId, i), stateWriter);
      const runner: SubtaskRunner = new SubtaskRunner(
        transport,
        spec,
        {
          onStarted: () => taskEvent(run, nodeId, i, { event: 'started' }),
          onFinished: () => taskEvent(run, nodeId, i, { event: 'finished' }),
          onFailed: (failure) => taskEvent(run, nodeId, i, { event: 'failed', domain: failure.domain, hint: failure.hint, reason: failure.reason }),
          onExhausted: () => {
            run.exhausted.add(`${nodeId}/${i}`);
            taskEvent(run, nodeId, i, { event: 'exhausted' });
          },
          onCommitted: (epoch) => checkpointEvent(run, nodeId, i, { event: 'finished_commit', epoch }),
          onCheckpointEvent: (epoch, type) => checkpointEvent(run, nodeId, i, { event: type, epoch }),
          // The async part: the subtask's completion goes out once its state is durable in the store.
          onCheckpointCompleted: (epoch, c) =>
            void stateWriter.checkpoint(epoch, c.state ?? null).then(
              ({ stored, bytes }) =>
                checkpointEvent(run, nodeId, i, {
                  event: 'completed',
                  epoch,
                  bytes,
                  start_time: c.start_time_us,
                  finish_time: nowUs(),
                  table_metadata: { ...stored, versions_seen: c.versionsSeen },
                  ...(c.commitData === null ? {} : { commit_data: c.commitData }),
                }),
              (err: unknown) => {
                // Without its state the epoch cannot complete: the subtask fails, and the job recovers from the last one.
                log.error({ err, jobId, generation, node: nodeId, subtask: i, epoch }, 'could not write the subtask state');
                runner.abort(err);
              },
            ),
        },
        { ...options.runner, nats: nc, registry: operators, logger: runnerLog },
      );
      run.runners.push(runner);
    }
    reserved.delete(reservation);
    runs.set(jobId, run);
    void Promise.all(run.runners.map((r) => r.done)).then(() => {
      if (runs.get(jobId) === run) runnerLog.info('every subtask of the generation has ended');
      forget(run);
    });

    // Downstream first, so every subscription exists before a local source publishes.
    const isSource = (r: SubtaskRunner) => operators.get(r.spec.operator)?.kind === 'source';
    const ordered = [...run.runners.filter((r) => !isSource(r)), ...run.runners.filter(isSource)];
    const starting = (async () => {
      for (const runner of ordered) {
        if (run.silenced) break;
        await runner.start();
      }
    })();
    const timedOut = await Promise.race([starting.then(() => false), sleep(startTimeoutMs, true, { ref: false })]);
    if (timedOut) {
      endRun(run, 'immediate');
      throw new RequestRejected('unavailable', `the subtasks of job ${jobId} did not start within ${startTimeoutMs} ms`);
    }
    if (run.silenced) throw new RequestRejected('unavailable', `job ${jobId} generation ${generation} was stopped while starting`);
    runnerLog.info({ subtasks: run.runners.length, slots: run.slots }, 'generation started');
    return { v: PROTOCOL_VERSION, ok: true };
  }

  /** The run a stop/checkpoint/commit is about, after the generation checks. */
  function runFor(jobId: string, generation: number): JobRun {
    const seen = newest.get(jobId);
    if (seen !== undefined && generation < seen) {
      throw new RequestRejected('stale_generation', `job ${jobId}: generation ${generation} is older than generation ${seen} seen here`);
    }
    const run = runs.get(jobId);
    if (run === undefined || run.generation !== generation) throw new RequestRejected('unknown_job', `no tasks of job ${jobId} generation ${generation} run here`);
    return run;
  }

  // ─── Requests ────────────────────────────────────────────────────────────────────────────────

  function body<S extends z.ZodType>(schema: S, msg: Msg): z.output<S> {
    const result = decode(schema, msg.data, { maxBytes });
    if (!result.ok) throw new RequestRejected(result.error.code, result.error.message);
    return result.value;
  }

  const respond = (msg: Msg, reply: unknown): void => replyTo(msg, reply, log);

  function reject(kind: WorkerRequestKind, msg: Msg, err: unknown): void {
    const rejected = rejectionOf(err);
    stats.rejected[rejected.code] = (stats.rejected[rejected.code] ?? 0) + 1;
    const fields = { kind, subject: msg.subject, code: rejected.code, reason: rejected.message, bytes: msg.data.byteLength };
    if (rejected.code === 'internal') log.error({ ...fields, err }, 'controller request failed');
    // A stop that finds nothing of its generation here has what it asked for: the tasks ended by themselves
    // (a final checkpoint, a bounded source) before it came. The controller takes the reply as "gone".
    else if (kind === 'stop' && STOPPED_ALREADY.includes(rejected.code)) log.debug(fields, 'nothing of the generation to stop runs here');
    else log.warn(fields, 'rejected controller request');
    respond(msg, errorReply(rejected.code, rejected.message));
  }

  /** Per job, the newest owner epoch a command carried: older ones come from a controller that lost the job. */
  const ownerEpochs = new Map<string, number>();

  function fenceOwner(request: { job_id: string; owner_epoch?: number | undefined }): void {
    const epoch = request.owner_epoch;
    if (epoch === undefined) return;
    const newest = ownerEpochs.get(request.job_id) ?? 0;
    if (epoch < newest) throw new RequestRejected('stale_owner', `job ${request.job_id}: owner epoch ${epoch} is older than ${newest}; another controller owns the job now`);
    // Newest last; the oldest jobs' entries go first once there are many (one number per job seen).
    ownerEpochs.delete(request.job_id);
    ownerEpochs.set(request.job_id, epoch);
    if (ownerEpochs.size > MAX_OWNER_EPOCHS) ownerEpochs.delete(ownerEpochs.keys().next().value!);
  }

  /** Decodes, then runs `work` after the job's earlier requests; replies with its ack or an error reply. */
  function handle<S extends z.ZodType<{ job_id: string; owner_epoch?: number | undefined }>>(kind: WorkerRequestKind, schema: S, work: (request: z.output<S>) => Ack | Promise<Ack>) {
    return (msg: Msg): void => {
      stats.received[kind]++;
      let request: z.output<S>;
      try {
        if (stopping !== undefined) throw new RequestRejected('unavailable', `worker ${workerId} is shutting down`);
        request = body(schema, msg);
      } catch (err) {
        reject(kind, msg, err);
        return;
      }
      void perJob.run(request.job_id, async () => {
        try {
          if (stopping !== undefined) throw new RequestRejected('unavailable', `worker ${workerId} is shutting down`);
          fenceOwner(request);
          respond(msg, await work(request));
        } catch (err) {
          reject(kind, msg, err);
        }
      });
    };
  }

  const ack: Ack = { v: PROTOCOL_VERSION, ok: true };

  const onStart = handle('start', startExecutionSchema, (request) => startRun(request));

  const onStop = handle('stop', stopExecutionSchema, (request) => {
    const run = runFor(request.job_id, request.generation);
    log.info({ jobId: run.jobId, generation: run.generation, mode: request.mode }, 'stopping generation');
    endRun(run, request.mode === 'graceful' ? 'graceful' : 'immediate');
    return ack;
  });

  const onCheckpoint = handle('checkpoint', checkpointRequestSchema, (request) => {
    const run = runFor(request.job_id, request.generation);
    if (request.epoch <= run.lastEpoch) {
      throw new RequestRejected('conflict', `job ${run.jobId}: checkpoint epoch ${request.epoch} is not newer than epoch ${run.lastEpoch}`);
    }
    run.lastEpoch = request.epoch;
    let injected = 0;
    for (const runner of run.runners) if (runner.injectBarrier(request.epoch, request.then_stop)) injected++;
    log.debug({ jobId: run.jobId, generation: run.generation, epoch: request.epoch, thenStop: request.then_stop, injected }, 'checkpoint barrier injected');
    return ack;
  });

  /** Acknowledged once every listed subtask has committed: the ack is the controller's proof. */
  const onCommit = handle('commit', commitRequestSchema, async (request) => {
    const run = runFor(request.job_id, request.generation);
    const runners = request.commits.map((c) => {
      const runner = run.runners.find((r) => r.spec.nodeId === c.node_id && r.spec.subtaskIndex === c.subtask_index);
      if (runner === undefined) throw new RequestRejected('unknown_job', `subtask ${c.node_id}[${c.subtask_index}] of job ${run.jobId} generation ${run.generation} does not run here`);
      return { runner, data: c.commit_data };
    });
    try {
      await Promise.all(runners.map(({ runner, data }) => runner.commit(request.epoch, data)));
    } catch (err) {
      throw new RequestRejected('unavailable', `job ${run.jobId}: commit of epoch ${request.epoch} failed: ${err instanceof Error ? err.message : String(err)}`);
    }
    log.debug({ jobId: run.jobId, generation: run.generation, epoch: request.epoch, subtasks: runners.length }, 'epoch committed');
    return ack;
  });

  const subscribe = (subject: string, handler: (msg: Msg) => void): Subscription =>
    nc.subscribe(subject, {
      callback: (err, msg) => {
        if (err !== null) {
          log.error({ err, subject }, 'worker subscription failed');
          return;
        }
        try {
          handler(msg);
        } catch (e) {
          log.error({ err: e, subject }, 'request handler threw');
        }
      },
    });

  const subscriptions = [
    subscribe(subjects.workerStart(workerId), onStart),
    subscribe(subjects.workerStop(workerId), onStop),
    subscribe(subjects.workerCheckpoint(workerId), onCheckpoint),
    subscribe(subjects.workerCommit(workerId), onCommit),
  ];

  // ─── Register and heartbeat ──────────────────────────────────────────────────────────────────

  async function request<S extends z.ZodType>(subject: string, message: unknown, schema: z.ZodType, replySchema: S) {
    const checked = schema.parse(message);
    const reply = await nc.request(subject, encode(checked), { timeout: requestTimeoutMs });
    return decodeReply(replySchema, reply.data);
  }

  const startedAt = Date.now();
  const controllerWaitMs = options.controllerWaitMs ?? DEFAULT_CONTROLLER_WAIT_MS;
  let saidWaiting = false;

  async function register(): Promise<boolean> {
    try {
      const result = await request(
        subjects.workerRegister(),
        { v: PROTOCOL_VERSION, worker_id: workerId, slots: options.slots, operators: [...operators.keys()], hostname: osHostname().slice(0, 255), pid: process.pid, jobs: runningJobs() },
        registerWorkerSchema,
        registerWorkerReplySchema,
      );
      if (!result.ok) {
        log.warn({ code: result.error.code, reason: result.error.message, remote: result.remote }, 'registration refused');
        return false;
      }
      heartbeatIntervalMs = result.value.heartbeat_interval_ms;
      metricsIntervalMs = result.value.metrics_interval_ms ?? metricsIntervalMs;
      stats.registrations++;
      log.info({ slots: options.slots, heartbeatIntervalMs }, 'registered with the controller');
      return true;
    } catch (err) {
      // Workers and controllers start together (weir up, docker compose): until one has answered once, and
      // for a while, nobody listening is no failure yet.
      if (stats.registrations === 0 && isNoResponders(err) && Date.now() - startedAt < controllerWaitMs) {
        if (saidWaiting) log.debug('no controller answers yet');
        else log.info({ controllerWaitMs }, 'no controller answers yet: waiting for one');
        saidWaiting = true;
      } else {
        log.warn({ err: (err as Error).message }, 'registration failed; retrying');
      }
      return false;
    }
  }

  function heartbeatMessage(): Heartbeat {
    return { v: PROTOCOL_VERSION, worker_id: workerId, at: nowUs(), jobs: runningJobs() };
  }

  function runningJobs(): Heartbeat['jobs'] {
    return [...runs.values()].map((run) => ({
        job_id: run.jobId,
        generation: run.generation,
        slots: run.slots,
        subtasks: run.runners
          .filter((r) => r.outcome === 'running' || r.outcome === 'created')
          .map((r) => ({
            node_id: r.spec.nodeId,
            subtask_index: r.spec.subtaskIndex,
            ...r.metrics(),
            ...(run.exhausted.has(`${r.spec.nodeId}/${r.spec.subtaskIndex}`) ? { exhausted: true } : {}),
          })),
    }));
  }

  /** Record counts between heartbeats; a plain publish, since a lost one only delays the figures. */
  async function metricsLoop(): Promise<void> {
    while (!abort.signal.aborted) {
      await pause(metricsIntervalMs);
      if (abort.signal.aborted || !isRegistered || runs.size === 0 || nc.isClosed()) continue;
      try {
        nc.publish(subjects.workerMetrics(workerId), encode({ v: PROTOCOL_VERSION, worker_id: workerId, at: nowUs(), jobs: runningJobs() } satisfies WorkerMetrics));
        stats.metricsSent++;
      } catch (err) {
        log.warn({ err }, 'could not send metrics');
      }
    }
  }

  /** Heartbeats in a row that no controller heard (no responders). */
  let unheardHeartbeats = 0;

  /** `true`: still registered; `false`: the controller does not know us, register again. */
  async function heartbeat(): Promise<boolean> {
    try {
      const result = await request(subjects.workerHeartbeat(workerId), heartbeatMessage(), heartbeatSchema, ackSchema);
      unheardHeartbeats = 0;
      if (result.ok) {
        stats.heartbeats++;
        return true;
      }
      stats.heartbeatFailures++;
      if (result.remote && result.error.code === 'unknown_worker') {
        log.warn('the controller does not know this worker: registering again');
        return false;
      }
      log.warn({ code: result.error.code, reason: result.error.message }, 'heartbeat refused');
      return true;
    } catch (err) {
      stats.heartbeatFailures++;
      // One heartbeat nobody hears is what a controller's stop or restart looks like (weir up stops the
      // controller just before the workers); a second in a row is not.
      if (isNoResponders(err) && ++unheardHeartbeats === 1) log.info('no controller heard the heartbeat: trying again at the next one');
      else log.warn({ err: (err as Error).message }, 'heartbeat failed');
      return true;
    }
  }

  async function pause(ms: number): Promise<void> {
    try {
      await sleep(ms, undefined, { signal: abort.signal });
    } catch {
      // Aborted: the worker is stopping.
    }
  }

  async function liveness(): Promise<void> {
    await nc.flush();
    let backoff = REGISTER_BACKOFF_MIN_MS;
    while (!abort.signal.aborted) {
      if (!isRegistered) {
        isRegistered = await register();
        if (!isRegistered) {
          await pause(backoff * (0.5 + Math.random() / 2));
          backoff = Math.min(backoff * 2, REGISTER_BACKOFF_MAX_MS);
        } else {
          backoff = REGISTER_BACKOFF_MIN_MS;
        }
        continue;
      }
      await pause(heartbeatIntervalMs);
      if (abort.signal.aborted) break;
      isRegistered = await heartbeat();
    }
  }

  const livenessLoop = liveness().catch((err: unknown) => log.error({ err }, 'liveness loop failed'));
  const metricsLoopDone = metricsLoop().catch((err: unknown) => log.error({ err }, 'metrics loop failed'));

  // ─── Stop ────────────────────────────────────────────────────────────────────────────────────

  async function shutdown(mode: WorkerStopMode, reason: string): Promise<boolean> {
    log.info({ mode, reason }, 'worker stopping');
    abort.abort();
    await Promise.all([livenessLoop, metricsLoopDone]);
    let clean = true;
    if (!nc.isClosed()) {
      try {
        nc.publish(subjects.workerDeregister(workerId), encode(deregisterWorkerSchema.parse({ v: PROTOCOL_VERSION, worker_id: workerId, reason })));
        const flushed = await Promise.race([nc.flush().then(() => true), sleep(requestTimeoutMs, false, { ref: false })]);
        if (!flushed) {
          clean = false;
          log.warn({ requestTimeoutMs }, 'NATS did not confirm the deregistration');
        }
      } catch (err) {
        clean = false;
        log.warn({ err }, 'could not deregister');
      }
    }
    isRegistered = false;
    // Requests already queued are refused now; a start in flight ends within its deadline.
    await perJob.idle();
    const active = [...runs.values()];
    for (const run of active) endRun(run, mode);
    if (mode === 'graceful') {
      const done = Promise.all(active.flatMap((run) => run.runners.map((r) => r.done)));
      const timedOut = await Promise.race([done.then(() => false), sleep(stopTimeoutMs, true, { ref: false })]);
      if (timedOut) {
        log.warn({ stopTimeoutMs }, 'graceful stop timed out: stopping the rest immediately');
        for (const run of active) endRun(run, 'immediate');
      }
    }
    for (const sub of subscriptions) sub.unsubscribe();
    // NATS did not answer the deregistration: a drain would wait for it too, so the connection just closes.
    if (!clean) await nc.close().catch(() => undefined);
    else if (!(await drainWithin(nc, stopTimeoutMs))) {
      clean = false;
      log.warn({ stopTimeoutMs }, 'the NATS connection did not drain: closed it');
    }
    log.info({ clean }, 'worker stopped');
    return clean;
  }

  function stop(mode: WorkerStopMode = 'immediate', reason = 'shutdown'): Promise<boolean> {
    stopping ??= shutdown(mode, reason)
      .catch((err: unknown) => {
        log.error({ err }, 'worker stop failed');
        return false;
      })
      .finally(resolveClosed);
    return stopping;
  }

  void nc.closed().then(() => {
    if (stopping === undefined) {
      log.error('NATS connection closed: the worker stops');
      void stop('immediate', 'connection closed');
    }
  });

  return {
    workerId,
    stop: (mode) => stop(mode),
    closed,
    stats: () => structuredClone(stats),
    registered: () => isRegistered,
    running: () => new Map([...runs.values()].map((run) => [run.jobId, run.generation])),
  };
}
