import { MAP_KEY_OPERATOR, type DataRecord, type JsonValue, type MapKeyConfig } from '../../protocol/index.js';
import { UserError } from '../errors.js';
import { defineOperator, type OperatorContext, type OperatorInstance } from './types.js';


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
  ...MAP_KEY_OPERATOR,
  create: (config) => new MapKey(config),
});
