/**
 * The stored format of incremental operator state (see incremental.ts): the blobs a table's chain is
 * made of, the StateRef that says which blobs make up one epoch's state, and the errors of reading them.
 *
 * Blobs are UTF-8 JSON, one table each, saved as ordinary checkpoints of the store:
 *
 *   full   {"v":1,"kind":"full","table":"counts","epoch":12,"version":7,"entries":[["a",3],["b",1]]}
 *   delta  {"v":1,"kind":"delta","table":"counts","epoch":13,"version":8,"put":[["a",4]],"delete":["b"]}
 *
 * with the checkpoint metadata `{table, kind, epoch, version}` (strings) beside them, so that a listing
 * tells them apart without loading them. `v` is the format version: a reader refuses a newer one
 * (StateFormatError) rather than guess at it. Entries are [key, value] pairs, not an object, so that any
 * string is a key (`__proto__` included) and the order of the table survives.
 *
 * Not compressed, on purpose: the object store can compress every blob on the server (S2, the stream's
 * `compression`), where it costs the worker nothing; compressing here would put zlib on the checkpoint's
 * synchronous path (the tables are encoded before the first await, see IncrementalStateWriter), and it
 * would turn the byte budget of a delta chain (`maxDeltaBytes`) into something other than what a
 * restore has to parse. Plain JSON also stays readable with `nats object get`.
 */
import { z } from 'zod';
import { StoreError } from '../jetstream/errors.js';
import { CorruptCheckpointError } from './errors.js';
import { idSchema, type JsonValue } from './schemas.js';

/** The version of the blobs and of StateRef written by this code. */
export const STATE_FORMAT_VERSION = 1;
/** A table's chain holds at most this many deltas after its full snapshot, then the next change compacts it. */
export const DEFAULT_MAX_DELTAS = 10;
/** …or at most this many bytes of deltas. */
export const DEFAULT_MAX_DELTA_BYTES = 8 * 1024 * 1024;
export const MAX_TABLE_NAME_LENGTH = 128;

export type StateBlobKind = 'full' | 'delta';

// ─── Errors ──────────────────────────────────────────────────────────────────────────────────────

/**
 * A blob of a state chain that cannot be used: missing, not the one the StateRef names, or not a
 * valid state blob. A CorruptCheckpointError (so one `catch` serves both) that also names the epoch
 * being restored and the table.
 */
export class CorruptStateError extends CorruptCheckpointError {
  readonly epoch: number;
  readonly table: string;
  constructor(runId: string, nodeId: string, seq: number, epoch: number, table: string, reason: 'missing' | 'digest', detail: string, options?: ErrorOptions) {
    super(runId, nodeId, seq, reason, `cannot restore table ${JSON.stringify(table)} at epoch ${epoch}: ${detail}`, options);
    this.epoch = epoch;
    this.table = table;
  }
}

/** A StateRef or a state blob of a newer format than this reader knows (or of no known format). */
export class StateFormatError extends StoreError {}

// ─── StateRef ────────────────────────────────────────────────────────────────────────────────────

const count = z.int().nonnegative();
/** Labels, not data: `__proto__` is refused because a JSON object (the StateRef's `tables`) cannot hold it safely. */
export const tableNameSchema = z
  .string()
  .regex(/^[A-Za-z0-9_.:-]{1,128}$/, { error: `expected 1–${MAX_TABLE_NAME_LENGTH} characters from A-Z a-z 0-9 _ . : -` })
  .refine((name) => name !== '__proto__', { error: '__proto__ is not a table name' });

/** `record[key]` if the record has it as its own property (never something from Object.prototype). */
export function own<T>(record: Record<string, T>, key: string): T | undefined {
  return Object.hasOwn(record, key) ? record[key] : undefined;
}

/** One blob of a chain, as the StateRef names it; `digest` is the SHA-256 the store recorded for it. */
const blobRefSchema = z.strictObject({
  seq: z.int().positive(),
  epoch: count,
  bytes: count,
  digest: z.string().regex(/^[0-9a-f]{64}$/),
});
export type StateBlobRef = z.infer<typeof blobRefSchema>;

/**
 * A table's chain: its last full snapshot and the deltas after it, oldest first. The table's version
 * grows by one with every blob, so the full snapshot has version `version - deltas.length`.
 */
const tableRefSchema = z
  .strictObject({
    version: z.int().positive(),
    full: blobRefSchema,
    deltas: z.array(blobRefSchema),
    /** Counters since the full snapshot: the number of deltas and their bytes. */
    since_full: z.strictObject({ deltas: count, bytes: count }),
  })
  .superRefine((t, ctx) => {
    const chain = [t.full, ...t.deltas];
    for (let i = 1; i < chain.length; i++) {
      if (chain[i]!.seq <= chain[i - 1]!.seq || chain[i]!.epoch <= chain[i - 1]!.epoch) {
        ctx.addIssue({ code: 'custom', message: 'the chain must be in increasing sequence and epoch order' });
      }
    }
    if (t.version <= t.deltas.length) ctx.addIssue({ code: 'custom', message: `version ${t.version} is lower than the chain is long` });
    const bytes = t.deltas.reduce((sum, d) => sum + d.bytes, 0);
    if (t.since_full.deltas !== t.deltas.length || t.since_full.bytes !== bytes) {
      ctx.addIssue({ code: 'custom', message: 'since_full does not match the deltas' });
    }
  });
export type TableRef = z.infer<typeof tableRefSchema>;

const stateRefV1Schema = z
  .strictObject({
    v: z.literal(STATE_FORMAT_VERSION),
    run_id: idSchema,
    node_id: idSchema,
    epoch: count,
    /** Every table of the state (an empty table may be absent: it restores as no table). */
    tables: z.record(tableNameSchema, tableRefSchema),
    /** The tables written at this epoch, with their new versions. */
    new_versions: z.record(tableNameSchema, z.int().positive()),
  })
  .superRefine((ref, ctx) => {
    for (const [name, table] of Object.entries(ref.tables)) {
      if ((table.deltas.at(-1) ?? table.full).epoch > ref.epoch) ctx.addIssue({ code: 'custom', message: `table ${name} has a blob of a later epoch` });
    }
    for (const [name, version] of Object.entries(ref.new_versions)) {
      const table = own(ref.tables, name);
      if (table?.version !== version || (table.deltas.at(-1) ?? table.full).epoch !== ref.epoch) {
        ctx.addIssue({ code: 'custom', message: `new_versions.${name} is not a blob of this epoch` });
      }
    }
  });

/**
 * What a restore needs to rebuild one subtask's tables at one epoch: per table, the store sequences of
 * the full snapshot and the deltas after it. Plain JSON: keep it in the checkpoint record.
 */
export type StateRef = z.infer<typeof stateRefV1Schema>;

function formatVersion(value: unknown): unknown {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>)['v'] : undefined;
}

function refuseNewer(v: unknown, what: string): void {
  if (typeof v === 'number' && Number.isInteger(v) && v > STATE_FORMAT_VERSION) {
    throw new StateFormatError(`${what} has format v${v}, newer than this reader (v${STATE_FORMAT_VERSION}): upgrade weir to read it`);
  }
}

/** Checks a StateRef read back from JSON; StateFormatError if it is of a newer format or not a StateRef. */
export function parseStateRef(value: unknown): StateRef {
  refuseNewer(formatVersion(value), 'the state ref');
  const parsed = stateRefV1Schema.safeParse(value);
  if (!parsed.success) throw new StateFormatError(`invalid state ref: ${parsed.error.message}`, { cause: parsed.error });
  return parsed.data;
}

// ─── Blobs ───────────────────────────────────────────────────────────────────────────────────────

interface BlobHead {
  table: string;
  epoch: number;
  version: number;
}
export type FullStateBlob = BlobHead & { kind: 'full'; entries: [string, JsonValue][] };
export type DeltaStateBlob = BlobHead & { kind: 'delta'; put: [string, JsonValue][]; delete: string[] };
export type StateBlob = FullStateBlob | DeltaStateBlob;

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

/** JSON.stringify throws on BigInt and cycles; values must be JSON (NaN and undefined come back as null). */
export function encodeBlob(blob: StateBlob): Uint8Array {
  return encoder.encode(JSON.stringify({ v: STATE_FORMAT_VERSION, ...blob }));
}

export function blobMetadata(blob: StateBlob): Record<string, string> {
  return { table: blob.table, kind: blob.kind, epoch: String(blob.epoch), version: String(blob.version) };
}

const isStrings = (value: unknown): value is string[] => Array.isArray(value) && value.every((k) => typeof k === 'string');
const isPairs = (value: unknown): value is [string, JsonValue][] =>
  Array.isArray(value) && value.every((e) => Array.isArray(e) && e.length === 2 && typeof e[0] === 'string');

/** The blob, or a message saying why these bytes are not a state blob; StateFormatError (naming `what`) if it is newer. */
export function decodeBlob(data: Uint8Array, what: string): StateBlob | string {
  let json: unknown;
  try {
    json = JSON.parse(decoder.decode(data));
  } catch {
    return 'not JSON';
  }
  const v = formatVersion(json);
  refuseNewer(v, what);
  if (v !== STATE_FORMAT_VERSION) return `not a state blob (format ${JSON.stringify(v) ?? 'none'})`;
  const b = json as Record<string, unknown>;
  const { table, epoch, version } = b;
  if (typeof table !== 'string' || !Number.isSafeInteger(epoch) || !Number.isSafeInteger(version)) return 'a state blob without table, epoch and version';
  const head = { table, epoch: epoch as number, version: version as number };
  if (b['kind'] === 'full' && isPairs(b['entries'])) return { ...head, kind: 'full', entries: b['entries'] };
  if (b['kind'] === 'delta' && isPairs(b['put']) && isStrings(b['delete'])) return { ...head, kind: 'delta', put: b['put'], delete: b['delete'] };
  return `a state blob of unknown kind ${JSON.stringify(b['kind'])} or shape`;
}
