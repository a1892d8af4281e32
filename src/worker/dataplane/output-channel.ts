import { encode, PROTOCOL_VERSION, subjects, type DataMessage, type DataRecord, type EdgeKind } from '../../protocol/index.js';
import { DataplaneError } from '../errors.js';
import { shufflePartition } from './hash.js';
import type { DataTransport } from './transport.js';

export interface OutputChannelOptions {
  jobId: string;
  generation: number;
  fromNode: string;
  fromSubtask: number;
  toNode: string;
  toParallelism: number;
  kind: EdgeKind;
  /** Records per batch message. Default 256. */
  batchSize?: number;
  /** A partly filled batch waits at most this long. Default 5 ms. */
  lingerMs?: number;
  /** Records published since the last `nc.flush()` before `send` waits for a flush. Default 4096. */
  maxUnflushed?: number;
}

/**
 * One (from node, from subtask) → one downstream node. Batches records per downstream subtask,
 * publishes barriers and end-of-stream to every downstream subtask after flushing, and applies
 * backpressure: `send` returns a promise to await once `maxUnflushed` records are out unconfirmed.
 */
export class OutputChannel {
  private readonly batches: DataRecord[][];
  private readonly subjects: string[];
  private readonly batchSize: number;
  private readonly lingerMs: number;
  private readonly maxUnflushed: number;
  private unflushed = 0;
  private timer: NodeJS.Timeout | undefined;
  private error: Error | undefined;
  private closed = false;
  recordsOut = 0;

  constructor(
    private readonly transport: DataTransport,
    private readonly opts: OutputChannelOptions,
  ) {
    this.batchSize = opts.batchSize ?? 256;
    this.lingerMs = opts.lingerMs ?? 5;
    this.maxUnflushed = opts.maxUnflushed ?? 4096;
    const n = opts.toParallelism;
    this.batches = Array.from({ length: n }, () => []);
    this.subjects = Array.from({ length: n }, (_, i) => subjects.data(opts.jobId, opts.generation, opts.fromNode, opts.toNode, i));
    if (opts.kind === 'forward' && opts.fromSubtask >= n) {
      throw new DataplaneError(`forward edge ${opts.fromNode} → ${opts.toNode}: subtask ${opts.fromSubtask} has no peer (parallelism ${n})`);
    }
  }

  /** Target subtask of a record. */
  route(record: DataRecord): number {
    return this.opts.kind === 'forward' ? this.opts.fromSubtask : shufflePartition(record.key, this.opts.toParallelism);
  }

  /** Queues a record. Returns a promise only when the caller must wait (backpressure). */
  send(record: DataRecord): Promise<void> | undefined {
    this.check();
    const target = this.route(record);
    const batch = this.batches[target]!;
    batch.push(record);
    this.recordsOut++;
    if (batch.length >= this.batchSize) this.publishBatch(target);
    else this.timer ??= setTimeout(() => this.lingerFlush(), this.lingerMs);
    return this.unflushed >= this.maxUnflushed ? this.flush() : undefined;
  }

  /** Publishes every partial batch and waits until the server has them. */
  async flush(): Promise<void> {
    this.publishAll();
    this.unflushed = 0;
    try {
      await this.transport.flush();
    } catch (err) {
      throw this.fail(err);
    }
  }

  async barrier(epoch: number, thenStop: boolean): Promise<void> {
    await this.control({ v: PROTOCOL_VERSION, kind: 'barrier', from_subtask: this.opts.fromSubtask, epoch, then_stop: thenStop });
  }

  async end(): Promise<void> {
    await this.control({ v: PROTOCOL_VERSION, kind: 'end', from_subtask: this.opts.fromSubtask });
    this.close();
  }

  /** Drops unsent records (immediate stop). */
  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private async control(message: DataMessage): Promise<void> {
    this.check();
    this.publishAll();
    const bytes = encode(message);
    for (const subject of this.subjects) this.publish(subject, bytes);
    await this.flush();
  }

  private lingerFlush(): void {
    this.timer = undefined;
    if (this.closed || this.error !== undefined) return;
    try {
      this.publishAll();
    } catch {
      // Kept in `this.error`; the next send or flush throws it.
    }
  }

  private publishAll(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    for (let i = 0; i < this.batches.length; i++) this.publishBatch(i);
  }

  private publishBatch(target: number): void {
    const records = this.batches[target]!;
    if (records.length === 0) return;
    this.batches[target] = [];
    this.publish(this.subjects[target]!, encode({ v: PROTOCOL_VERSION, kind: 'records', from_subtask: this.opts.fromSubtask, records }));
    this.unflushed += records.length;
  }

  private publish(subject: string, bytes: Uint8Array): void {
    try {
      this.transport.publish(subject, bytes);
    } catch (err) {
      throw this.fail(err);
    }
  }

  private check(): void {
    if (this.error !== undefined) throw this.error;
    if (this.closed) throw new DataplaneError(`output ${this.opts.fromNode}[${this.opts.fromSubtask}] → ${this.opts.toNode} is closed`);
  }

  private fail(err: unknown): Error {
    this.error ??= err instanceof DataplaneError ? err : new DataplaneError(`publish on ${this.opts.fromNode} → ${this.opts.toNode} failed: ${err instanceof Error ? err.message : String(err)}`);
    return this.error;
  }
}
