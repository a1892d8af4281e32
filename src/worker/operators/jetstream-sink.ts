/**
 * `jetstream-sink`: writes each record as a JSON message `{key?, value, ts}` to a JetStream stream,
 * exactly once, by two-phase commit.
 *
 * - Records are held until their epoch's barrier, where they become the epoch's commit data and travel
 *   in the checkpoint record. Nothing is published before the epoch is durable.
 * - The commit publishes them with message id `<job>.<node>.<subtask>.<epoch>.<index>`. A commit sent
 *   again (a restore that finds the epoch still committing) repeats the same ids, and the stream drops
 *   them as duplicates, as long as it comes within the stream's `duplicate_window`.
 * - Records after the newest checkpoint are dropped on a failure or a plain stop: the job's next run
 *   replays them from that checkpoint, so publishing them would duplicate them.
 */
import { jetstream, jetstreamManager, type JetStreamClient } from '@nats-io/jetstream';
import { z } from 'zod';
import { JETSTREAM_SINK_OPERATOR, jsonValueSchema, MAX_EPOCH_BYTES_LIMIT, type CommitData, type DataRecord, type JetStreamSinkConfig, type JsonValue } from '../../protocol/index.js';
import { UserError } from '../errors.js';
import { defineOperator, type OperatorContext, type OperatorInstance } from './types.js';

/** Publishes in flight during a commit: enough to hide the round trips, few enough not to flood the server. */
const COMMIT_WINDOW = 256;

const commitDataSchema = z.strictObject({ rows: z.array(jsonValueSchema) });

class JetStreamSink implements OperatorInstance {
  private ctx!: OperatorContext;
  private js!: JetStreamClient;
  private rows: JsonValue[] = [];
  private bytes = 0;

  constructor(private readonly config: JetStreamSinkConfig) {}

  async open(ctx: OperatorContext): Promise<void> {
    this.ctx = ctx;
    if (ctx.nats === undefined) throw new UserError('jetstream-sink needs the worker\'s NATS connection');
    this.js = jetstream(ctx.nats);
    const { stream, subject, duplicate_window_ms: windowMs } = this.config;
    if (stream === undefined) return;
    const jsm = await jetstreamManager(ctx.nats);
    try {
      await jsm.streams.info(stream);
    } catch {
      // Two subtasks may race to create it: an identical config is accepted by the server.
      await jsm.streams.add({ name: stream, subjects: [subject], duplicate_window: windowMs * 1_000_000 });
      ctx.logger?.info({ stream, subject, duplicateWindowMs: windowMs }, 'jetstream-sink created its stream');
    }
  }

  process(record: DataRecord): void {
    const row: JsonValue = record.key === undefined ? { value: record.value, ts: record.ts } : { key: record.key, value: record.value, ts: record.ts };
    this.bytes += JSON.stringify(row).length;
    if (this.bytes > this.config.max_epoch_bytes) {
      throw new UserError(`jetstream-sink: more than ${this.config.max_epoch_bytes} bytes of output in one epoch; checkpoint more often or raise max_epoch_bytes (at most ${MAX_EPOCH_BYTES_LIMIT})`);
    }
    this.rows.push(row);
  }

  snapshot(): Record<string, never> {
    return {};
  }

  prepareCommit(): CommitData | null {
    if (this.rows.length === 0) return null;
    const data = { rows: this.rows };
    this.rows = [];
    this.bytes = 0;
    return data;
  }

  async commit(epoch: number, data: CommitData): Promise<void> {
    const parsed = commitDataSchema.safeParse(data);
    if (!parsed.success) throw new UserError(`jetstream-sink: commit data of epoch ${epoch} is not {rows}`);
    const { rows } = parsed.data;
    const { jobId, nodeId, subtaskIndex } = this.ctx;
    let duplicates = 0;
    for (let start = 0; start < rows.length; start += COMMIT_WINDOW) {
      const acks = await Promise.all(
        rows.slice(start, start + COMMIT_WINDOW).map((row, i) =>
          this.js.publish(this.config.subject, JSON.stringify(row), { msgID: `${jobId}.${nodeId}.${subtaskIndex}.${epoch}.${start + i}` }),
        ),
      );
      duplicates += acks.filter((ack) => ack.duplicate).length;
    }
    if (duplicates > 0) this.ctx.logger?.info({ epoch, rows: rows.length, duplicates }, 'jetstream-sink: commit repeated; the stream dropped the duplicates');
  }

  close(): void {
    // Rows of no checkpoint: the next run replays them from the newest one.
    this.rows = [];
  }
}

export const jetstreamSink = defineOperator({
  ...JETSTREAM_SINK_OPERATOR,
  create: (config) => new JetStreamSink(config),
});
