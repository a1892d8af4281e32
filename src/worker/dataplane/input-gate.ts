import { dataMessageSchema, decode, parseSubject, subjects, type DataMessage, type DataRecord } from '../../protocol/index.js';
import { BufferOverflowError } from '../errors.js';
import type { DataTransport, Subscription } from './transport.js';

export interface GateInput {
  /** Upstream node id. */
  from: string;
  /** Its parallelism: one input channel per upstream subtask. */
  parallelism: number;
}

export interface InputGateOptions {
  jobId: string;
  generation: number;
  node: string;
  subtask: number;
  inputs: GateInput[];
  /** Records held (inbox + alignment buffers) before the gate fails. Default 100 000. */
  maxBufferedRecords?: number;
}

export interface InputGateHandlers {
  record(record: DataRecord): void | Promise<void>;
  /** The first barrier of an epoch arrived (on one channel). */
  alignmentStarted?(epoch: number): void;
  /** Barriers of `epoch` arrived on every live channel; called once per epoch, before any later record. */
  barrier(epoch: number, thenStop: boolean): void | Promise<void>;
  /** Every channel sent end-of-stream. */
  end(): void | Promise<void>;
  /** Fatal: buffer bound exceeded, or a handler threw. The gate stops delivering. */
  error(err: Error): void;
}

interface Channel {
  id: string;
  /** Records delivered from this channel so far: its position. */
  seen: number;
  blocked: boolean;
  ended: boolean;
  pending: DataMessage[];
}

interface Envelope {
  channel: Channel;
  message: DataMessage;
}

const sizeOf = (m: DataMessage) => (m.kind === 'records' ? m.records.length : 0);

/**
 * The input side of one subtask: subscribes to `weir.data.<job>.<generation>.<from>.<node>.<subtask>`
 * for each input, delivers records in order per upstream subtask, and aligns barriers: after a
 * channel's barrier for epoch e, its later messages wait until every live channel sent e.
 */
export class InputGate {
  private readonly channels = new Map<string, Channel>();
  private inbox: Envelope[] = [];
  private readonly subs: Subscription[] = [];
  private readonly maxBuffered: number;
  private buffered = 0;
  private aligning: { epoch: number; thenStop: boolean } | undefined;
  private pumping = false;
  private stopped = false;
  private endSignalled = false;
  /** Messages dropped because they belong to another generation or are malformed. */
  dropped = 0;
  recordsIn = 0;

  constructor(
    private readonly transport: DataTransport,
    private readonly opts: InputGateOptions,
    private readonly handlers: InputGateHandlers,
  ) {
    this.maxBuffered = opts.maxBufferedRecords ?? 100_000;
    for (const input of opts.inputs) {
      for (let i = 0; i < input.parallelism; i++) {
        const id = `${input.from}/${i}`;
        this.channels.set(id, { id, seen: 0, blocked: false, ended: false, pending: [] });
      }
    }
  }

  start(): void {
    for (const input of this.opts.inputs) {
      const subject = subjects.data(this.opts.jobId, this.opts.generation, input.from, this.opts.node, this.opts.subtask);
      this.subs.push(this.transport.subscribe(subject, (s, data) => this.receive(s, data)));
    }
  }

  stop(): void {
    this.stopped = true;
    for (const sub of this.subs.splice(0)) sub.unsubscribe();
    this.inbox = [];
    for (const channel of this.channels.values()) channel.pending = [];
  }

  /** Records currently held: inbox plus alignment buffers. */
  get bufferedRecords(): number {
    return this.buffered;
  }

  private receive(subject: string, data: Uint8Array): void {
    if (this.stopped) return;
    const parsed = parseSubject(subject);
    // The subject is per generation already; checking its token guards against a mis-routed message.
    if (parsed?.name !== 'data' || parsed.params['generation'] !== String(this.opts.generation)) {
      this.dropped++;
      return;
    }
    const decoded = decode(dataMessageSchema, data);
    const channel = decoded.ok ? this.channels.get(`${parsed.params['from']}/${decoded.value.from_subtask}`) : undefined;
    if (!decoded.ok || channel === undefined) {
      this.dropped++;
      return;
    }
    const size = sizeOf(decoded.value);
    if (this.buffered + size > this.maxBuffered) {
      this.fail(
        new BufferOverflowError(
          `input of ${this.opts.node}[${this.opts.subtask}] holds more than ${this.maxBuffered} records` +
            (this.aligning ? ` while aligning barrier ${this.aligning.epoch}` : '') +
            '; the operator is too slow or an upstream barrier is missing',
        ),
      );
      return;
    }
    this.buffered += size;
    this.inbox.push({ channel, message: decoded.value });
    void this.pump();
  }

  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (!this.stopped) {
        const next = this.inbox.shift();
        if (next === undefined) break;
        await this.handle(next);
      }
    } catch (err) {
      this.fail(err instanceof Error ? err : new Error(String(err)));
    } finally {
      this.pumping = false;
    }
  }

  private async handle({ channel, message }: Envelope): Promise<void> {
    if (channel.blocked) {
      channel.pending.push(message);
      return;
    }
    switch (message.kind) {
      case 'records':
        this.buffered -= message.records.length;
        for (const record of message.records) {
          if (this.stopped) return;
          this.recordsIn++;
          channel.seen++;
          await this.handlers.record(record);
        }
        return;
      case 'barrier':
        if (this.aligning === undefined) {
          this.aligning = { epoch: message.epoch, thenStop: message.then_stop };
          this.handlers.alignmentStarted?.(message.epoch);
        } else if (this.aligning.epoch !== message.epoch) {
          throw new Error(`channel ${channel.id} sent barrier ${message.epoch} while aligning ${this.aligning.epoch}`);
        }
        channel.blocked = true;
        return this.maybeRelease();
      case 'end':
        channel.ended = true;
        if (this.aligning !== undefined) await this.maybeRelease();
        if (!this.endSignalled && [...this.channels.values()].every((c) => c.ended)) {
          this.endSignalled = true;
          await this.handlers.end();
        }
        return;
    }
  }

  /**
   * Records delivered per input channel (`<from node>/<from subtask>`) so far in this generation; at a
   * barrier, the positions of the cut the epoch's snapshot stands for.
   */
  positions(): Record<string, number> {
    return Object.fromEntries([...this.channels.values()].map((c) => [c.id, c.seen]));
  }

  private async maybeRelease(): Promise<void> {
    const aligning = this.aligning;
    if (aligning === undefined) return;
    const live = [...this.channels.values()].filter((c) => !c.ended);
    if (!live.every((c) => c.blocked)) return;
    this.aligning = undefined;
    await this.handlers.barrier(aligning.epoch, aligning.thenStop);
    // Held messages go back in front of the inbox: per channel they are older than anything in it.
    const held: Envelope[] = [];
    for (const channel of this.channels.values()) {
      channel.blocked = false;
      for (const message of channel.pending) held.push({ channel, message });
      channel.pending = [];
    }
    this.inbox.unshift(...held);
  }

  private fail(err: Error): void {
    if (this.stopped) return;
    this.stop();
    this.handlers.error(err);
  }
}
