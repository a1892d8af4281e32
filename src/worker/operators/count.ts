import { z } from 'zod';
import { COUNT_OPERATOR, type DataRecord } from '../../protocol/index.js';
import { UserError } from '../errors.js';
import { defineOperator, type OperatorContext, type OperatorInstance } from './types.js';

const restoredSchema = z.strictObject({ counts: z.record(z.string(), z.int().nonnegative()) });
export type CountSnapshot = z.infer<typeof restoredSchema>;

/** Keyed running count: for each record emits `{key, count}` with the key's count so far. */
class Count implements OperatorInstance {
  private ctx!: OperatorContext;
  private readonly counts = new Map<string, number>();

  open(ctx: OperatorContext): void {
    this.ctx = ctx;
    if (ctx.restored === undefined) return;
    const parsed = restoredSchema.safeParse(ctx.restored);
    if (!parsed.success) throw new UserError(`count: restored state is not {counts}: ${JSON.stringify(ctx.restored).slice(0, 200)}`);
    for (const [key, n] of Object.entries(parsed.data.counts)) this.counts.set(key, n);
  }

  process(record: DataRecord): void {
    const key = record.key ?? 'null';
    const count = (this.counts.get(key) ?? 0) + 1;
    this.counts.set(key, count);
    this.ctx.emit({ key, value: { key, count }, ts: record.ts });
  }

  snapshot(): CountSnapshot {
    return { counts: Object.fromEntries(this.counts) };
  }

  close(): void {}
}

export const count = defineOperator({
  ...COUNT_OPERATOR,
  create: () => new Count(),
});
