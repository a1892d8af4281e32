/**
 * A simulated worker: it speaks the worker protocol over NATS and runs nothing. It registers with the
 * controller, acknowledges start, stop, checkpoint and commit requests, reports its subtasks started and
 * finished, and completes every checkpoint of a generation it runs as soon as the barrier request arrives,
 * as if the barrier flowed through its subtasks at once. For tests of the controller's side of the
 * protocol, and for benches that load the controller without the cost of real workers.
 */
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import {
  ackSchema,
  checkpointRequestSchema,
  decode,
  decodeReply,
  encode,
  registerWorkerReplySchema,
  startExecutionSchema,
  stopExecutionSchema,
  subjects,
  type CheckpointCompleted,
  type CheckpointRequest,
  type Heartbeat,
  type JsonValue,
  type StopExecution,
  type TaskEvent,
} from '../../src/protocol/index.js';

export interface SubtaskRef {
  node_id: string;
  subtask_index: number;
}

/** A generation of a job that runs here. */
export interface Hosted {
  generation: number;
  subtasks: SubtaskRef[];
}

export type TableMetadata = Record<string, JsonValue>;

export interface SimWorkerOptions {
  /** The operators it offers. Default: those of the test pipelines. */
  operators?: readonly string[];
  /**
   * Heartbeats at the interval the registration reply names, listing what runs here. Default off: the
   * tests that use none keep the controller's heartbeat timeout out of their way.
   */
  heartbeats?: boolean;
  /**
   * Heartbeats list every subtask hosted here (record counts 0), as a real worker's do: a controller that
   * takes a job over re-attaches to its tasks only once heartbeats report all of them
   * (docs/high-availability.md). Default off: heartbeats list each generation with no subtasks.
   */
  heartbeatSubtasks?: boolean;
  /**
   * A heartbeat answered `unknown_worker` makes it register again, listing what runs here, as a real
   * worker does (src/worker/process.ts). Default off: it registers once.
   */
  reregister?: boolean;
  /** What each subtask's checkpoint completion carries as its state. Default: none (`{}`). */
  tableMetadata?: (subtask: SubtaskRef) => TableMetadata;
  /** Called with every barrier request as it arrives, before it is answered. */
  onCheckpointRequest?: (request: CheckpointRequest) => void;
}

const DEFAULT_OPERATORS = ['impulse', 'map-key', 'count', 'log', 'preview'];
const REQUEST_TIMEOUT_MS = 10_000;
const nowMicros = () => Date.now() * 1000;

/** The fields of a subtask's checkpoint completion past the subtask's own; `bytes` is the state's JSON size. */
export function checkpointCompletion(epoch: number, tableMetadata: TableMetadata = {}): Pick<CheckpointCompleted, 'event' | 'epoch' | 'bytes' | 'start_time' | 'finish_time' | 'table_metadata'> {
  const now = nowMicros();
  const bytes = Object.keys(tableMetadata).length === 0 ? 0 : JSON.stringify(tableMetadata).length;
  return { event: 'completed', epoch, bytes, start_time: now, finish_time: now, table_metadata: tableMetadata };
}

const errorReply = (code: string, message: string) => encode({ error: { code, message } });
const ACK = encode({ v: 1, ok: true });

export class SimWorker {
  /** Job id → the generation that runs here. */
  readonly hosted = new Map<string, Hosted>();
  readonly checkpointRequests: CheckpointRequest[] = [];
  readonly stopRequests: StopExecution[] = [];
  /** Start requests still to refuse with `unavailable`, as a worker shutting down does. */
  rejectStarts = 0;
  /** While set, start requests wait for it before they are carried out and answered (a slow start). */
  holdStarts: Promise<void> | undefined;
  private subs: Subscription[] = [];
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private registering: Promise<void> | undefined;
  /** Registrations after the first (`reregister`). */
  reregistrations = 0;

  constructor(
    readonly nc: NatsConnection,
    readonly id: string,
    readonly slots: number,
    private readonly options: SimWorkerOptions = {},
  ) {}

  /** Listens for requests, then registers; throws if the controller refuses it. */
  async start(): Promise<void> {
    const answer = (subject: string, handle: (data: Uint8Array) => Uint8Array) =>
      this.nc.subscribe(subject, {
        callback: (_err, msg) => {
          msg.respond(handle(msg.data));
        },
      });
    this.subs = [
      this.nc.subscribe(subjects.workerStart(this.id), {
        callback: (_err, msg) => {
          if (this.holdStarts === undefined) msg.respond(this.onStart(msg.data));
          else void this.holdStarts.then(() => msg.respond(this.onStart(msg.data)));
        },
      }),
      answer(subjects.workerStop(this.id), (data) => this.onStop(data)),
      answer(subjects.workerCheckpoint(this.id), (data) => this.onCheckpoint(data)),
      // Nothing to commit: no sink runs here.
      answer(subjects.workerCommit(this.id), () => ACK),
    ];
    await this.nc.flush();
    const operators = [...(this.options.operators ?? DEFAULT_OPERATORS)];
    const reply = await this.nc.request(subjects.workerRegister(), encode({ v: 1, worker_id: this.id, slots: this.slots, operators }), { timeout: REQUEST_TIMEOUT_MS });
    const registered = decodeReply(registerWorkerReplySchema, reply.data);
    if (!registered.ok) throw new Error(`${this.id}: registration refused: ${registered.error.code} ${registered.error.message}`);
    if (this.options.heartbeats === true) this.heartbeatTimer = setInterval(() => this.heartbeat(), registered.value.heartbeat_interval_ms);
  }

  /** Goes silent, as a worker that died: no deregistration. */
  stop(): void {
    clearInterval(this.heartbeatTimer);
    for (const sub of this.subs) sub.unsubscribe();
  }

  /** Goes silent and deregisters, as a worker that shuts down. */
  async leave(): Promise<void> {
    this.stop();
    this.nc.publish(subjects.workerDeregister(this.id), encode({ v: 1, worker_id: this.id }));
    await this.nc.flush();
  }

  private onStart(data: Uint8Array): Uint8Array {
    const r = decode(startExecutionSchema, data);
    if (!r.ok) return errorReply('bad_schema', r.error.message);
    if (this.rejectStarts > 0) {
      this.rejectStarts--;
      return errorReply('unavailable', 'shutting down');
    }
    const subtasks = r.value.program.assignments.flatMap((a) => a.subtasks.map((subtask_index) => ({ node_id: a.node_id, subtask_index })));
    this.hosted.set(r.value.job_id, { generation: r.value.generation, subtasks });
    // After the reply is on its way, as a worker's runners start after it accepted.
    setImmediate(() => this.report(r.value.job_id, 'started'));
    return ACK;
  }

  private onStop(data: Uint8Array): Uint8Array {
    const r = decode(stopExecutionSchema, data);
    if (!r.ok) return errorReply('bad_schema', r.error.message);
    this.stopRequests.push(r.value);
    const { job_id: jobId, generation, mode } = r.value;
    if (this.hosted.get(jobId)?.generation !== generation) return errorReply('unknown_job', 'nothing runs here');
    // Only a graceful stop ends in `finished` events; a killed or immediately stopped generation just ends.
    if (mode === 'graceful') setImmediate(() => this.finish(jobId));
    else this.hosted.delete(jobId);
    return ACK;
  }

  private onCheckpoint(data: Uint8Array): Uint8Array {
    const r = decode(checkpointRequestSchema, data);
    if (!r.ok) return errorReply('bad_schema', r.error.message);
    this.checkpointRequests.push(r.value);
    this.options.onCheckpointRequest?.(r.value);
    setImmediate(() => this.completeCheckpoint(r.value));
    return ACK;
  }

  private subtaskEvent(jobId: string, generation: number, s: SubtaskRef) {
    return { v: 1 as const, job_id: jobId, generation, worker_id: this.id, node_id: s.node_id, subtask_index: s.subtask_index, at: nowMicros() };
  }

  private report(jobId: string, event: 'started' | 'finished'): void {
    const hosted = this.hosted.get(jobId);
    if (hosted === undefined) return;
    for (const s of hosted.subtasks) this.nc.publish(subjects.jobTasks(jobId), encode({ ...this.subtaskEvent(jobId, hosted.generation, s), event } satisfies TaskEvent));
  }

  private finish(jobId: string): void {
    this.report(jobId, 'finished');
    this.hosted.delete(jobId);
  }

  private completeCheckpoint(req: CheckpointRequest): void {
    const hosted = this.hosted.get(req.job_id);
    if (hosted?.generation !== req.generation) return;
    for (const s of hosted.subtasks) {
      const completed: CheckpointCompleted = { ...this.subtaskEvent(req.job_id, hosted.generation, s), ...checkpointCompletion(req.epoch, this.options.tableMetadata?.(s)) };
      this.nc.publish(subjects.jobCheckpoints(req.job_id), encode(completed));
    }
    if (req.then_stop) this.finish(req.job_id);
  }

  private heartbeat(): void {
    const jobs: Heartbeat['jobs'] = [...this.hosted].map(([job_id, h]) => ({
      job_id,
      generation: h.generation,
      slots: new Set(h.subtasks.map((s) => s.subtask_index)).size,
      subtasks: this.options.heartbeatSubtasks === true ? h.subtasks.map((s) => ({ node_id: s.node_id, subtask_index: s.subtask_index, records_in: 0, records_out: 0 })) : [],
    }));
    const beat: Heartbeat = { v: 1, worker_id: this.id, at: nowMicros(), jobs };
    // A lost heartbeat is what the controller's timeout is for.
    this.nc
      .request(subjects.workerHeartbeat(this.id), encode(beat), { timeout: REQUEST_TIMEOUT_MS })
      .then((reply) => {
        if (this.options.reregister !== true || this.registering !== undefined) return;
        const answer = decodeReply(ackSchema, reply.data);
        if (answer.ok || !answer.remote || answer.error.code !== 'unknown_worker') return;
        this.registering = this.registerAgain().finally(() => (this.registering = undefined));
      })
      .catch(() => undefined);
  }

  /** Registers again with what runs here (after `unknown_worker`); a failure waits for the next heartbeat. */
  private async registerAgain(): Promise<void> {
    const operators = [...(this.options.operators ?? DEFAULT_OPERATORS)];
    const jobs: Heartbeat['jobs'] = [...this.hosted].map(([job_id, h]) => ({
      job_id,
      generation: h.generation,
      slots: new Set(h.subtasks.map((s) => s.subtask_index)).size,
      subtasks: h.subtasks.map((s) => ({ node_id: s.node_id, subtask_index: s.subtask_index, records_in: 0, records_out: 0 })),
    }));
    const reply = await this.nc.request(subjects.workerRegister(), encode({ v: 1, worker_id: this.id, slots: this.slots, operators, jobs }), { timeout: REQUEST_TIMEOUT_MS });
    if (decodeReply(registerWorkerReplySchema, reply.data).ok) this.reregistrations++;
  }
}
