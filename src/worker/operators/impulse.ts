import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { IMPULSE_OPERATOR, type ImpulseConfig } from '../../protocol/index.js';
import { UserError } from '../errors.js';
import { defineOperator, type OperatorContext, type OperatorInstance } from './types.js';
import { nowMicros } from '../../shared/micros.js';


const restoredSchema = z.strictObject({ next_counter: z.int().nonnegative() });
export type ImpulseSnapshot = z.infer<typeof restoredSchema>;

/** Subtask i of p emits counters i, i+p, i+2p… below `events`, each as `{counter, ts}` (ts in µs). */
class Impulse implements OperatorInstance {
  private ctx!: OperatorContext;
  private counter = 0;
  private emitted = 0;
  private startedAt = 0;

  constructor(private readonly config: ImpulseConfig) {}

  open(ctx: OperatorContext): void {
    this.ctx = ctx;
    if (ctx.restored !== undefined) {
      const parsed = restoredSchema.safeParse(ctx.restored);
      if (!parsed.success) throw new UserError(`impulse: restored state is not {next_counter}: ${JSON.stringify(ctx.restored)}`);
      if (parsed.data.next_counter % ctx.parallelism !== ctx.subtaskIndex % ctx.parallelism) {
        throw new UserError(`impulse: restored counter ${parsed.data.next_counter} does not belong to subtask ${ctx.subtaskIndex} of ${ctx.parallelism}`);
      }
      this.counter = parsed.data.next_counter;
    } else {
      this.counter = ctx.subtaskIndex;
    }
    this.startedAt = performance.now();
  }

  async next(): Promise<boolean> {
    const { events, rate_per_sec: rate } = this.config;
    if (events !== undefined && this.counter >= events) return false;
    if (rate !== undefined) {
      const due = this.startedAt + (this.emitted * 1000 * this.ctx.parallelism) / rate;
      const wait = due - performance.now();
      if (wait > 0) await sleep(wait);
    }
    const ts = nowMicros();
    this.ctx.emit({ value: { counter: this.counter, ts }, ts });
    this.counter += this.ctx.parallelism;
    this.emitted++;
    return events === undefined || this.counter < events;
  }

  snapshot(): ImpulseSnapshot {
    return { next_counter: this.counter };
  }

  close(): void {}
}

export const impulse = defineOperator({
  ...IMPULSE_OPERATOR,
  create: (config) => new Impulse(config),
});
