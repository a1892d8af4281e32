/**
 * What the checkpoint store keeps, its JetStream names, and the checks on what callers pass in.
 * Times are epoch milliseconds. Records are strict objects: a field this version does not know is a
 * CorruptRecordError on read rather than something a read-modify-write would silently drop.
 */
import { z } from 'zod';
import { StoreValidationError } from '../jetstream/errors.js';
import { idSchema, jsonObjectSchema, jsonValueSchema, type JsonValue } from '../protocol/primitives.js';

// ─── Names ───────────────────────────────────────────────────────────────────────────────────────

/** Every JetStream name the store uses; derived from one prefix so that several stores can share a server. */
export interface CheckpointStoreNames {
  /** KV bucket of runs, checkpoint records and latest pointers. */
  metaBucket: string;
  /** Object store of the state blobs. */
  stateBucket: string;
  /** Stream of the runs' events, one subject per run: `<eventSubjectPrefix>.<run>`. */
  eventStream: string;
  eventSubjectPrefix: string;
}

export const DEFAULT_CHECKPOINT_STORE_PREFIX = 'weir';

/** Lower case only: the stream name is the prefix in upper case, so `a` and `A` would collide. */
export const CHECKPOINT_STORE_PREFIX_PATTERN = /^[a-z0-9][a-z0-9_-]{0,31}$/;

export function checkpointStoreNames(prefix: string = DEFAULT_CHECKPOINT_STORE_PREFIX): CheckpointStoreNames {
  if (!CHECKPOINT_STORE_PREFIX_PATTERN.test(prefix)) {
    throw new StoreValidationError(`invalid checkpoint store prefix ${JSON.stringify(prefix)}: expected 1–32 characters from a-z 0-9 _ -, starting with a letter or digit`);
  }
  return {
    metaBucket: `${prefix}_cp_meta`,
    stateBucket: `${prefix}_cp_state`,
    eventStream: `${prefix.toUpperCase()}_CP_EVENTS`,
    eventSubjectPrefix: `${prefix}.cp.events`,
  };
}

/** Every subject the store's three streams capture (the KV bucket and the object store are streams too). */
export function checkpointStoreSubjects(names: CheckpointStoreNames): string[] {
  return [`${names.eventSubjectPrefix}.*`, `$KV.${names.metaBucket}.>`, `$O.${names.stateBucket}.>`];
}

const DEFAULT_NAMES = checkpointStoreNames();
export const CHECKPOINT_META_BUCKET = DEFAULT_NAMES.metaBucket;
export const CHECKPOINT_STATE_BUCKET = DEFAULT_NAMES.stateBucket;
export const CHECKPOINT_EVENT_STREAM = DEFAULT_NAMES.eventStream;
/** The subjects of the default store's streams: no request subject may overlap them. */
export const CHECKPOINT_STORE_STREAM_SUBJECTS: readonly string[] = checkpointStoreSubjects(DEFAULT_NAMES);

// ─── Limits ──────────────────────────────────────────────────────────────────────────────────────

export const DEFAULT_MAX_STATE_BYTES = 64 * 1024 * 1024;
/** States up to this size are kept in the checkpoint record rather than in the object store. */
export const DEFAULT_INLINE_STATE_BYTES = 64 * 1024;
/** A run's workflow and params, and a checkpoint's metadata, as JSON. KV values go out as one message. */
export const MAX_RUN_BYTES = 256 * 1024;
export const MAX_METADATA_BYTES = 64 * 1024;
/** Default cap of one event as JSON; never more than the server's max_payload allows. */
export const DEFAULT_MAX_EVENT_BYTES = 256 * 1024;
export const MAX_EVENTS_LIMIT = 1000;

// ─── Records ─────────────────────────────────────────────────────────────────────────────────────

/** The statuses the store knows by name; any other string of 1–64 characters is accepted too. */
export const RUN_STATUSES = ['running', 'succeeded', 'failed', 'cancelled'] as const;
export type KnownRunStatus = (typeof RUN_STATUSES)[number];
// `string & {}` keeps the known names in editor completion without closing the set.
export type RunStatus = KnownRunStatus | (string & {});

const count = z.int().nonnegative();
const epochMs = z.number().nonnegative();
export const runStatusSchema = z.string().min(1).max(64);
const jsonRecord = jsonObjectSchema as z.ZodType<Record<string, JsonValue>>;

export const runSchema = z.strictObject({
  run_id: idSchema,
  workflow: z.string().min(1).max(256),
  params: jsonRecord,
  status: runStatusSchema,
  created_at: epochMs,
  updated_at: epochMs,
  /** The highest checkpoint sequence handed out in this run (0: none); sequences are claimed by raising it. */
  last_seq: count,
});
export type Run = z.infer<typeof runSchema> & { status: RunStatus };

export const metadataSchema = z.record(z.string().min(1).max(256), z.string());

/** A checkpoint as callers see it (saves, loads, lists): never the state itself. */
export const checkpointMetaSchema = z.strictObject({
  run_id: idSchema,
  node_id: idSchema,
  seq: z.int().positive(),
  created_at: epochMs,
  /** Size of the state. */
  bytes: count,
  /** SHA-256 of the state, lower-case hex; checked on every load. */
  digest: z.string().regex(/^[0-9a-f]{64}$/),
  /** Name of the state blob in the object store; absent when the state is inline in the record. */
  object: z.string().min(1).optional(),
  metadata: metadataSchema.optional(),
});
export type CheckpointMeta = z.infer<typeof checkpointMetaSchema>;

const storedCheckpointBase = checkpointMetaSchema.omit({ object: true });

/**
 * A checkpoint record as the KV bucket holds it (`cp.<run>.<seq>`, and its copy in `latest.<run>.<node>`):
 * the state is either a blob in the object store (`object`; every record before inline states was one)
 * or, up to `inlineStateBytes`, base64 in the record itself (`inline_state`), never both. Internal: what
 * the store hands out is the CheckpointMeta without `inline_state`.
 */
export const storedCheckpointSchema = z.union([
  storedCheckpointBase.extend({ object: z.string().min(1) }),
  // Any string: a damaged value is caught by the size and SHA-256 check, as a damaged blob is.
  storedCheckpointBase.extend({ inline_state: z.string() }),
]);
export type StoredCheckpoint = z.infer<typeof storedCheckpointSchema>;

export interface Checkpoint {
  meta: CheckpointMeta;
  state: Uint8Array;
}

/** An event as stored (its sequence is the stream's, added on read). */
export const storedEventSchema = z.strictObject({
  run_id: idSchema,
  type: z.string().min(1).max(128),
  data: jsonValueSchema,
  at: epochMs,
});
export type CheckpointEvent = z.infer<typeof storedEventSchema> & { seq: number };

export interface EventPage {
  /** Oldest first. */
  events: CheckpointEvent[];
  /** Pass as `afterSeq` for the next page: the last sequence read, or the `afterSeq` given if none. */
  next: number;
  /** Whether more events were already there when this page was read. */
  hasMore: boolean;
}

// ─── Inputs ──────────────────────────────────────────────────────────────────────────────────────

export interface CreateRunInput {
  workflow: string;
  params?: Record<string, JsonValue>;
  /** Default `running`. */
  status?: RunStatus;
}

export const createRunInputSchema = z.strictObject({
  workflow: runSchema.shape.workflow,
  params: jsonRecord.default({}),
  status: runStatusSchema.default('running'),
});

export const eventInputSchema = z.strictObject({
  type: storedEventSchema.shape.type,
  data: z.custom<JsonValue>().default(null),
});

export { idSchema };
export type { JsonValue };
