import { pino, type Logger } from 'pino';
import { z } from 'zod';
import { LOG_OPERATOR, PREVIEW_SINK_OPERATOR, type DataRecord, type JsonValue, type PreviewConfig } from '../../protocol/index.js';
import { defineOperator, type OperatorContext, type OperatorInstance } from './types.js';

let defaultLogger: Logger | undefined;
function fallbackLogger(): Logger {
  return (defaultLogger ??= pino({ name: 'weir-worker', level: process.env['WEIR_LOG_LEVEL'] ?? 'info' }));
}

function restoredCount(restored: unknown): number {
  const parsed = z.strictObject({ count: z.int().nonnegative() }).safeParse(restored);
  return parsed.success ? parsed.data.count : 0;
}

/** Logs every record at debug; its state is the number of records seen. */
class LogSink implements OperatorInstance {
  private logger!: Logger;
  count = 0;
  open(ctx: OperatorContext): void {
    this.logger = (ctx.logger ?? fallbackLogger()).child({ job: ctx.jobId, node: ctx.nodeId, subtask: ctx.subtaskIndex });
    this.count = restoredCount(ctx.restored);
  }
  process(record: DataRecord): void {
    this.count++;
    this.logger.debug({ record }, 'record');
  }
  snapshot(): { count: number } {
    return { count: this.count };
  }
  close(): void {}
}

export const log = defineOperator({
  ...LOG_OPERATOR,
  create: () => new LogSink(),
});


/**
 * Hands each record (as `{key?, value, ts}`) to `ctx.output` in batches; a batch is flushed when full,
 * when its first row has waited `linger_ms`, at every snapshot (so a checkpoint never holds rows back)
 * and on close.
 */
class PreviewSink implements OperatorInstance {
  private ctx!: OperatorContext;
  private rows: JsonValue[] = [];
  private linger: NodeJS.Timeout | undefined;
  count = 0;
  constructor(private readonly config: PreviewConfig) {}
  open(ctx: OperatorContext): void {
    this.ctx = ctx;
    this.count = restoredCount(ctx.restored);
  }
  process(record: DataRecord): void {
    this.count++;
    this.rows.push(record.key === undefined ? { value: record.value, ts: record.ts } : { key: record.key, value: record.value, ts: record.ts });
    if (this.rows.length >= this.config.batch_size) this.flush();
    else this.linger ??= setTimeout(() => this.lingered(), this.config.linger_ms);
  }
  private lingered(): void {
    this.linger = undefined;
    try {
      this.flush();
    } catch (err) {
      // Preview rows are a core NATS publish at most once; a connection that failed fails the subtask by itself.
      (this.ctx.logger ?? fallbackLogger()).debug({ err, job: this.ctx.jobId, node: this.ctx.nodeId }, 'preview rows dropped');
    }
  }
  private flush(): void {
    clearTimeout(this.linger);
    this.linger = undefined;
    if (this.rows.length === 0) return;
    const rows = this.rows;
    this.rows = [];
    this.ctx.output?.(rows);
  }
  snapshot(): { count: number } {
    this.flush();
    return { count: this.count };
  }
  close(): void {
    this.flush();
  }
}

export const preview = defineOperator({
  ...PREVIEW_SINK_OPERATOR,
  create: (config) => new PreviewSink(config),
});
