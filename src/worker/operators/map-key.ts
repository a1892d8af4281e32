import { z } from 'zod';
import type { DataRecord, JsonValue } from '../../protocol/index.js';
import { UserError } from '../errors.js';
import { defineOperator, type OperatorContext, type OperatorInstance } from './types.js';

export const mapKeyConfigSchema = z
  .strictObject({
    /** Key = the JSON of this field of the record's value (strings as they are). */
    field: z.string().min(1).optional(),
    /** Key = `value.counter % modulo` (or `value[field] % modulo` with `field`). */
    modulo: z.int().positive().optional(),
    /** A record without the field fails the task (a user error, not retried) instead of getting key `null`. */
    required: z.boolean().optional(),
  })
  .refine((c) => c.field !== undefined || c.modulo !== undefined, { error: 'needs field or modulo' });
export type MapKeyConfig = z.infer<typeof mapKeyConfigSchema>;

function fieldOf(value: JsonValue, field: string): JsonValue | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
  return value[field];
}

export function deriveKey(value: JsonValue, config: MapKeyConfig): string {
  const raw = fieldOf(value, config.field ?? 'counter');
  if (config.modulo !== undefined) {
    const n = typeof raw === 'number' ? raw : Number(raw);
    return Number.isFinite(n) ? String(((Math.trunc(n) % config.modulo) + config.modulo) % config.modulo) : 'null';
  }
  if (raw === undefined) return 'null';
  return typeof raw === 'string' ? raw : JSON.stringify(raw);
}

class MapKey implements OperatorInstance {
  private ctx!: OperatorContext;
  constructor(private readonly config: MapKeyConfig) {}
  open(ctx: OperatorContext): void {
    this.ctx = ctx;
  }
  process(record: DataRecord): void {
    const field = this.config.field ?? 'counter';
    if (this.config.required === true && fieldOf(record.value, field) === undefined) {
      throw new UserError(`map-key: a record has no field "${field}": ${JSON.stringify(record.value).slice(0, 200)}`);
    }
    this.ctx.emit({ ...record, key: deriveKey(record.value, this.config) });
  }
  snapshot(): null {
    return null;
  }
  close(): void {}
}

export const mapKey = defineOperator({
  name: 'map-key',
  kind: 'operator',
  config: mapKeyConfigSchema,
  create: (config) => new MapKey(config),
});
