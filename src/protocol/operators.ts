/**
 * The operator catalogue: what the control plane knows of each built-in operator (its name, kind, config
 * schema and whether it commits in two phases), without its implementation. The controller validates
 * pipelines against it; each implementation in src/worker/operators is defined from its entry here, so
 * the two cannot disagree.
 */
import { z } from 'zod';
import { PREVIEW_OPERATOR, type OperatorKind, type OperatorSpec } from './graph.js';

/** One catalogue entry; `C` is what the config schema produces, the type an implementation receives. */
export interface OperatorDescriptor<C = unknown> extends OperatorSpec {
  readonly name: string;
  readonly kind: OperatorKind;
  readonly config: z.ZodType<C>;
}

function describe<C>(descriptor: OperatorDescriptor<C>): OperatorDescriptor<C> {
  return descriptor;
}

export const impulseConfigSchema = z.strictObject({
  /** Total events over all subtasks; absent: unbounded. */
  events: z.int().nonnegative().optional(),
  /** Total rate over all subtasks; absent: as fast as possible. */
  rate_per_sec: z.number().positive().optional(),
});
export type ImpulseConfig = z.infer<typeof impulseConfigSchema>;

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

export const countConfigSchema = z.strictObject({});

export const logConfigSchema = z.strictObject({});

export const previewConfigSchema = z.strictObject({
  /** Rows per output message. */
  batch_size: z.int().min(1).max(1000).default(100),
  /**
   * How long a row may wait for its batch to fill: a slow job's rows reach `weir jobs tail` and the
   * output stream this soon after they are made, not once `batch_size` of them have piled up.
   */
  linger_ms: z.int().min(1).max(60_000).default(50),
});
export type PreviewConfig = z.infer<typeof previewConfigSchema>;

/** Commit data travels in checkpoint events and records, each one NATS message of at most 1 MiB. */
export const MAX_EPOCH_BYTES_LIMIT = 512 * 1024;

const subjectToken = /^[A-Za-z0-9_-]+$/;

export const jetstreamSinkConfigSchema = z.strictObject({
  /** Where the records go: a literal subject (no wildcards) that a stream captures. */
  subject: z
    .string()
    .min(1)
    .max(255)
    .refine((s) => s.split('.').every((t) => subjectToken.test(t)), { error: 'expected dot-separated tokens of A-Z a-z 0-9 _ - (no wildcards)' }),
  /** When set, the stream is created with this name if it is missing, capturing `subject`. */
  stream: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/).optional(),
  /** Duplicate window of a stream this sink creates: the longest a re-sent commit can still be recognised. */
  duplicate_window_ms: z.int().min(1_000).max(86_400_000).default(600_000),
  /** Output of one subtask in one epoch, as JSON; more fails the subtask (checkpoint more often). */
  max_epoch_bytes: z.int().min(1_024).max(MAX_EPOCH_BYTES_LIMIT).default(256 * 1024),
});
export type JetStreamSinkConfig = z.infer<typeof jetstreamSinkConfigSchema>;

export const IMPULSE_OPERATOR = describe({ name: 'impulse', kind: 'source', config: impulseConfigSchema });
export const MAP_KEY_OPERATOR = describe({ name: 'map-key', kind: 'operator', config: mapKeyConfigSchema });
export const COUNT_OPERATOR = describe({ name: 'count', kind: 'operator', config: countConfigSchema });
export const LOG_OPERATOR = describe({ name: 'log', kind: 'sink', config: logConfigSchema });
export const PREVIEW_SINK_OPERATOR = describe({ name: PREVIEW_OPERATOR, kind: 'sink', config: previewConfigSchema });
export const JETSTREAM_SINK_OPERATOR = describe({ name: 'jetstream-sink', kind: 'sink', twoPhase: true, config: jetstreamSinkConfigSchema });

const descriptors: readonly OperatorDescriptor[] = [
  IMPULSE_OPERATOR,
  MAP_KEY_OPERATOR,
  COUNT_OPERATOR,
  LOG_OPERATOR,
  PREVIEW_SINK_OPERATOR,
  JETSTREAM_SINK_OPERATOR,
] as readonly OperatorDescriptor<unknown>[];

/** Every built-in operator by name: the `availableOperators` map of `validateGraph`. */
export const OPERATOR_CATALOGUE: ReadonlyMap<string, OperatorDescriptor> = new Map(descriptors.map((descriptor) => [descriptor.name, descriptor]));
