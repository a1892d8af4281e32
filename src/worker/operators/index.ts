import { count } from './count.js';
import { impulse } from './impulse.js';
import { mapKey } from './map-key.js';
import { log, preview } from './sinks.js';
import { jetstreamSink } from './jetstream-sink.js';
import { UserError } from '../errors.js';
import type { OperatorFactory, OperatorInstance } from './types.js';

export * from './types.js';
export { impulse, type ImpulseSnapshot } from './impulse.js';
export { mapKey, deriveKey } from './map-key.js';
export { count, type CountSnapshot } from './count.js';
export { log, preview } from './sinks.js';
export { jetstreamSink } from './jetstream-sink.js';

// Each factory's `create` only ever receives what its own `config` schema produced (see `instantiate`).
const all = [impulse, mapKey, count, log, preview, jetstreamSink] as unknown as ReadonlyArray<OperatorFactory<unknown>>;

/** Every built-in operator's implementation by name, one for each entry of the protocol's OPERATOR_CATALOGUE. */
export const OPERATORS: ReadonlyMap<string, OperatorFactory<unknown>> = new Map(all.map((factory) => [factory.name, factory]));

/** Checks `config` with the operator's schema and makes a subtask instance; `UserError` on any mistake. */
export function instantiate(operator: string, config: unknown, registry: ReadonlyMap<string, OperatorFactory<unknown>> = OPERATORS): {
  factory: OperatorFactory<unknown>;
  instance: OperatorInstance;
} {
  const factory = registry.get(operator);
  if (factory === undefined) throw new UserError(`unknown operator "${operator}"; known: ${[...registry.keys()].sort().join(', ')}`);
  const parsed = factory.config.safeParse(config ?? {});
  if (!parsed.success) {
    throw new UserError(`operator "${operator}": bad config: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}`);
  }
  return { factory, instance: factory.create(parsed.data) };
}
