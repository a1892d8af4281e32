import { setImmediate as yieldToLoop } from 'node:timers/promises';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { encode, PREVIEW_OPERATOR, PROTOCOL_VERSION, subjects, type CommitData, type DataRecord, type EdgeKind, type JsonValue, type PreviewOutput } from '../../protocol/index.js';
import { classifyError, DataplaneError, type FailureReport } from '../errors.js';
import { instantiate, OPERATORS, type OperatorFactory, type OperatorInstance } from '../operators/index.js';
import { InputGate, type GateInput } from './input-gate.js';
import { OutputChannel, type OutputChannelOptions } from './output-channel.js';
import type { DataTransport } from './transport.js';
import { microsFromMs } from '../../shared/micros.js';

export interface SubtaskOutput {
  to: string;
  parallelism: number;
  kind: EdgeKind;
}

export interface SubtaskSpec {
  jobId: string;
  generation: number;
  nodeId: string;
  subtaskIndex: number;
  parallelism: number;
  operator: string;
  config: unknown;
  inputs: GateInput[];
  outputs: SubtaskOutput[];
  /** This subtask's snapshot of the checkpoint to restore from. */
  restored?: unknown;
  /** Sources: on running out of input, report it and keep the stream open until a then-stop barrier. */
  finalCheckpoint?: boolean;
}

export type CheckpointEventType = 'started_alignment' | 'started_checkpointing' | 'finished_sync';

export interface CheckpointCompletion {
  /** The snapshot, as JSON would carry it. */
  state: unknown;
  /** UTF-8 bytes of its JSON. */
  bytes: number;
  start_time_us: number;
  finish_time_us: number;
  /** What a two-phase sink must commit for the epoch; null when nothing. */
  commitData: CommitData | null;
  /** Records seen per input channel (`<from node>/<from subtask>`) when the snapshot was taken; sources: none. */
  versionsSeen: Record<string, number>;
}

export interface RunnerCallbacks {
  onStarted?(): void;
  onCheckpointEvent?(epoch: number, type: CheckpointEventType): void;
  onCheckpointCompleted?(epoch: number, completion: CheckpointCompletion): void;
  onFinished?(): void;
  onFailed?(failure: FailureReport): void;
  /** A source with `finalCheckpoint` ran out of input and waits for the final barrier. */
  onExhausted?(): void;
  /** A commit of this epoch is done (and durable where the sink writes). */
  onCommitted?(epoch: number): void;
}

export interface RunnerOptions {
  registry?: ReadonlyMap<string, OperatorFactory<unknown>>;
  logger?: Logger;
  /** Overrides for every output channel (batch size, linger, backpressure bound). */
  channel?: Pick<OutputChannelOptions, 'batchSize' | 'lingerMs' | 'maxUnflushed'>;
  maxBufferedRecords?: number;
  /** Given to operators (`OperatorContext.nats`), for sinks that write to NATS. */
  nats?: NatsConnection;
  /**
   * How long a two-phase sink waits, after a then-stop barrier, for that epoch's commit before it fails
   * (the job then recovers, and the restore sends the commit again). Default 60 s.
   */
  finalCommitTimeoutMs?: number;
}

export const DEFAULT_FINAL_COMMIT_TIMEOUT_MS = 60_000;

export type StopKind = 'graceful' | 'immediate';
export type RunnerOutcome = 'finished' | 'stopped' | 'failed';
type State = 'created' | 'running' | RunnerOutcome;

/** Sub-ms resolution: record timestamps order the records of one subtask. */
const nowUs = () => microsFromMs(performance.timeOrigin + performance.now());
const YIELD_EVERY = 64;

/**
 * Runs one subtask: its operator between an input gate (non-sources) and one output channel per
 * outgoing edge, with in-band checkpoint barriers. Lifecycle goes out through `RunnerCallbacks`;
 * `done` resolves with how the subtask ended (it never rejects).
 */
export class SubtaskRunner {
  readonly done: Promise<RunnerOutcome>;
  private resolveDone!: (outcome: RunnerOutcome) => void;
  private state: State = 'created';
  private instance: OperatorInstance | undefined;
  private kind: OperatorFactory['kind'] = 'operator';
  private readonly outputs: OutputChannel[] = [];
  private gate: InputGate | undefined;
  private pressure: Array<Promise<void>> = [];
  private readonly barriers: Array<{ epoch: number; thenStop: boolean }> = [];
  private gracefulStop = false;
  private unwatch: (() => void) | undefined;
  /** Wakes a source that waits, exhausted, for a barrier or a stop. */
  private wake: (() => void) | null = null;
  /** A then-stop epoch whose commit must arrive before this subtask finishes. */
  private finalCommit: { epoch: number; arrived: () => void } | null = null;

  constructor(
    private readonly transport: DataTransport,
    readonly spec: SubtaskSpec,
    private readonly callbacks: RunnerCallbacks = {},
    private readonly opts: RunnerOptions = {},
  ) {
    this.done = new Promise((resolve) => (this.resolveDone = resolve));
  }

  get outcome(): State {
    return this.state;
  }

  metrics(): { records_in: number; records_out: number } {
    return { records_in: this.gate?.recordsIn ?? 0, records_out: this.outputs.reduce((n, o) => n + o.recordsOut, 0) };
  }

  /** Opens the operator and subscribes; resolves once the subtask runs (or has failed). */
  async start(): Promise<void> {
    if (this.state !== 'created') throw new Error('a runner starts once');
    this.state = 'running';
    const { spec } = this;
    try {
      this.unwatch = this.transport.onError((err) => this.fail(err));
      const { factory, instance } = instantiate(spec.operator, spec.config, this.opts.registry ?? OPERATORS);
      this.instance = instance;
      this.kind = factory.kind;
      for (const out of spec.outputs) {
        this.outputs.push(
          new OutputChannel(this.transport, {
            jobId: spec.jobId,
            generation: spec.generation,
            fromNode: spec.nodeId,
            fromSubtask: spec.subtaskIndex,
            toNode: out.to,
            toParallelism: out.parallelism,
            kind: out.kind,
            ...this.opts.channel,
          }),
        );
      }
      await instance.open({
        jobId: spec.jobId,
        nodeId: spec.nodeId,
        subtaskIndex: spec.subtaskIndex,
        parallelism: spec.parallelism,
        restored: spec.restored,
        emit: (record) => this.emit(record),
        output: (rows) => this.output(rows),
        ...(this.opts.nats ? { nats: this.opts.nats } : {}),
        ...(this.opts.logger ? { logger: this.opts.logger } : {}),
      });
      if (this.state !== 'running') return;
      if (this.kind === 'source') {
        this.callbacks.onStarted?.();
        void this.runSource().catch((err: unknown) => this.fail(err));
      } else {
        this.gate = new InputGate(
          this.transport,
          {
            jobId: spec.jobId,
            generation: spec.generation,
            node: spec.nodeId,
            subtask: spec.subtaskIndex,
            inputs: spec.inputs,
            ...(this.opts.maxBufferedRecords === undefined ? {} : { maxBufferedRecords: this.opts.maxBufferedRecords }),
          },
          {
            record: (record) => this.process(record),
            alignmentStarted: (epoch) => this.callbacks.onCheckpointEvent?.(epoch, 'started_alignment'),
            barrier: (epoch, thenStop) => this.alignedBarrier(epoch, thenStop),
            end: () => this.endOfStream(),
            error: (err) => this.fail(err),
          },
        );
        this.gate.start();
        // Make sure the server has the subscriptions before anyone is told this subtask runs.
        await this.transport.flush();
        if (this.state === 'running') this.callbacks.onStarted?.();
      }
    } catch (err) {
      this.fail(err);
    }
  }

  /** Sources only: checkpoint at the next record boundary. `false` if this subtask cannot take it. */
  injectBarrier(epoch: number, thenStop: boolean): boolean {
    if (this.kind !== 'source' || this.state !== 'running') return false;
    this.barriers.push({ epoch, thenStop });
    this.wake?.();
    return true;
  }

  /**
   * Second phase of a two-phase commit: the operator makes `data` of `epoch` visible. Rejects when the
   * subtask no longer runs or the operator cannot commit; the controller then recovers the job.
   */
  async commit(epoch: number, data: CommitData): Promise<void> {
    if (this.state !== 'running') throw new DataplaneError(`${this.label()} cannot commit epoch ${epoch}: it has ${this.state}`);
    const instance = this.instance;
    if (instance?.commit === undefined) throw new DataplaneError(`${this.label()} (operator "${this.spec.operator}") has nothing to commit`);
    await instance.commit(epoch, data);
    this.callbacks.onCommitted?.(epoch);
    if (this.finalCommit?.epoch === epoch) this.finalCommit.arrived();
  }

  /** Fails the subtask from outside (its state could not be written, say); nothing once it has ended. */
  abort(err: unknown): void {
    this.fail(err);
  }

  stop(kind: StopKind): void {
    if (this.state !== 'running' && this.state !== 'created') return;
    if (kind === 'graceful') {
      // Sources end their stream; everyone else finishes once all inputs have ended.
      this.gracefulStop = true;
      this.wake?.();
      return;
    }
    this.terminate('stopped');
    this.callbacks.onFinished?.();
  }

  private emit(record: DataRecord): void {
    if (this.state !== 'running') throw new DataplaneError(`${this.label()} emitted after it ${this.state}`);
    for (const out of this.outputs) {
      const wait = out.send(record);
      if (wait !== undefined) this.pressure.push(wait);
    }
  }

  private async relievePressure(): Promise<void> {
    while (this.pressure.length > 0) {
      const waits = this.pressure;
      this.pressure = [];
      await Promise.all(waits);
    }
  }

  private output(rows: JsonValue[]): void {
    const message: PreviewOutput = {
      v: PROTOCOL_VERSION,
      job_id: this.spec.jobId,
      generation: this.spec.generation,
      node_id: this.spec.nodeId,
      subtask_index: this.spec.subtaskIndex,
      rows,
    };
    this.transport.publish(subjects.jobOutput(this.spec.jobId), encode(message));
  }

  private async runSource(): Promise<void> {
    const source = this.instance!;
    if (source.next === undefined) throw new Error(`source operator "${this.spec.operator}" has no next()`);
    let exhausted = false;
    for (let n = 1; this.state === 'running'; n++) {
      const barrier = this.barriers.shift();
      if (barrier !== undefined) {
        await this.checkpoint(barrier.epoch, barrier.thenStop);
        if (barrier.thenStop) return this.finish();
        continue;
      }
      if (this.gracefulStop) return this.endOfStream();
      if (exhausted) {
        // Out of input in a two-phase job: checkpoints still come, and the final one ends the stream.
        await new Promise<void>((resolve) => (this.wake = resolve));
        this.wake = null;
        continue;
      }
      const more = await source.next();
      await this.relievePressure();
      if (this.state !== 'running') return;
      if (!more) {
        if (!this.spec.finalCheckpoint) return this.endOfStream();
        exhausted = true;
        this.callbacks.onExhausted?.();
      } else if (n % YIELD_EVERY === 0) {
        await yieldToLoop();
      }
    }
  }

  private async process(record: DataRecord): Promise<void> {
    if (this.state !== 'running') return;
    await this.instance!.process?.(record);
    await this.relievePressure();
  }

  private async alignedBarrier(epoch: number, thenStop: boolean): Promise<void> {
    if (this.state !== 'running') return;
    await this.checkpoint(epoch, thenStop);
    if (thenStop) await this.finish();
  }

  private async checkpoint(epoch: number, thenStop: boolean): Promise<void> {
    const start = nowUs();
    this.callbacks.onCheckpointEvent?.(epoch, 'started_checkpointing');
    await this.relievePressure();
    const versionsSeen = this.gate?.positions() ?? {};
    const json = JSON.stringify(this.instance!.snapshot() ?? null);
    const state: unknown = JSON.parse(json);
    const commitData = this.instance!.prepareCommit?.(epoch) ?? null;
    this.callbacks.onCheckpointEvent?.(epoch, 'finished_sync');
    for (const out of this.outputs) await out.barrier(epoch, thenStop);
    if (this.state !== 'running') return;
    // Before the completion goes out: its commit may come back before this method returns.
    const committed = thenStop && commitData !== null ? this.expectCommit(epoch) : null;
    this.callbacks.onCheckpointCompleted?.(epoch, { state, bytes: Buffer.byteLength(json), start_time_us: start, finish_time_us: nowUs(), commitData, versionsSeen });
    // A sink that ends here ends only once its last output is committed: Stopped or Finished means visible.
    if (committed !== null) await committed;
  }

  private expectCommit(epoch: number): Promise<void> {
    const timeoutMs = this.opts.finalCommitTimeoutMs ?? DEFAULT_FINAL_COMMIT_TIMEOUT_MS;
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.finalCommit = null;
        this.fail(new DataplaneError(`${this.label()}: the commit of final epoch ${epoch} did not arrive within ${timeoutMs} ms`));
        resolve();
      }, timeoutMs);
      this.finalCommit = {
        epoch,
        arrived: () => {
          clearTimeout(timer);
          this.finalCommit = null;
          resolve();
        },
      };
    });
  }

  private async endOfStream(): Promise<void> {
    if (this.state !== 'running') return;
    await this.relievePressure();
    for (const out of this.outputs) await out.end();
    await this.finish();
  }

  private async finish(): Promise<void> {
    if (this.state !== 'running') return;
    this.gate?.stop();
    await this.instance?.close();
    if (this.spec.operator === PREVIEW_OPERATOR) {
      this.transport.publish(
        subjects.jobOutput(this.spec.jobId),
        encode({ v: PROTOCOL_VERSION, job_id: this.spec.jobId, generation: this.spec.generation, node_id: this.spec.nodeId, subtask_index: this.spec.subtaskIndex, rows: [], done: true }),
      );
    }
    await this.transport.flush();
    if (this.state !== 'running') return;
    this.terminate('finished');
    this.callbacks.onFinished?.();
  }

  private fail(err: unknown): void {
    if (this.state !== 'running' && this.state !== 'created') return;
    this.terminate('failed');
    this.callbacks.onFailed?.(classifyError(err));
  }

  private terminate(outcome: RunnerOutcome): void {
    this.state = outcome;
    this.wake?.();
    this.finalCommit?.arrived();
    this.unwatch?.();
    this.pressure = [];
    this.gate?.stop();
    for (const out of this.outputs) out.close();
    if (outcome === 'finished') return this.resolveDone(outcome);
    try {
      const closing = this.instance?.close();
      if (closing instanceof Promise) closing.catch(() => undefined);
    } catch {
      // Closing after a failure is best effort.
    }
    this.resolveDone(outcome);
  }

  private label(): string {
    return `${this.spec.nodeId}[${this.spec.subtaskIndex}]`;
  }
}
