/**
 * The versioned format of a job checkpoint record (the value under `checkpointKey(job, epoch)` in the
 * checkpoint bucket), read by the controller (restore, history) and by workers (their state). A reader
 * refuses a record of a newer format with an error that says so, and migrates older ones.
 *
 * Format history:
 * - v1 (no `v` field): job_id, generation, epoch, min_epoch, kind, start_time, completed_at, operators,
 *   subtasks, spans.
 * - v2: adds `v`, a time-ordered unique `id` (UUID v7), the state `schema_version` and `created_at`.
 * - v3: adds `status`: `committing` while the sinks of a two-phase commit have not all committed the
 *   epoch's `commit_data`, then `ready`. Older records were written complete: they read as `ready`.
 */
import { createHash, randomFillSync } from 'node:crypto';
import { z } from 'zod';
import { commitDataSchema, countSchema, microsSchema } from './primitives.js';
import { msFromMicros } from '../shared/micros.js';

export const CHECKPOINT_FORMAT_VERSION = 3;
/**
 * A stored record's status. `committing` and `ready` are restorable (a `committing` one has its commits
 * sent again). `failed` marks a record whose state proved damaged at a restore; `compacting` and
 * `compacted` one that retention is dropping or has dropped the state of. Those are never restored.
 */
export const RECORD_STATUSES = ['committing', 'ready', 'failed', 'compacting', 'compacted'] as const;
export const RESTORABLE_STATUSES: readonly RecordStatus[] = ['committing', 'ready'];
export type RecordStatus = (typeof RECORD_STATUSES)[number];
/** The version of the operators' state layout inside `table_metadata`; restore checks it too. */
export const STATE_SCHEMA_VERSION = 1;

const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** The newest id made in this process: its ms and its counter within that ms. */
let lastMs = Number.NEGATIVE_INFINITY;
let lastCounter = 0;
/**
 * Random bytes for 256 ids, drawn at once: in a CPU profile of the controller at 1,000 checkpoints/s, a
 * randomFillSync per id took an eighth of its busy time (the uuid package draws per id, hence this).
 */
const entropy = new Uint8Array(16 * 256);
let entropyOffset = entropy.length;

function randomBytes16(): Uint8Array {
  if (entropyOffset === entropy.length) {
    randomFillSync(entropy);
    entropyOffset = 0;
  }
  entropyOffset += 16;
  return entropy.subarray(entropyOffset - 16, entropyOffset);
}

/**
 * A UUID v7 (RFC 9562): 48 bits of Unix ms, then random bits. Within one millisecond a 12-bit counter
 * keeps the ids of one process in creation order; past 4,096 ids the id moves on to the next ms, and the
 * ids that follow stay after it even while the clock has not caught up (or went back).
 */
export function uuidv7(now: number = Date.now()): string {
  if (now > lastMs) {
    lastMs = now;
    lastCounter = 0;
  } else if (lastCounter < 0xfff) {
    lastCounter++;
  } else {
    lastMs++;
    lastCounter = 0;
  }
  return formatV7(lastMs, lastCounter, randomBytes16());
}

function formatV7(ms: number, counter: number, bytes: Uint8Array): string {
  for (let i = 0; i < 6; i++) bytes[i] = Math.floor(ms / 2 ** (8 * (5 - i))) % 256;
  bytes[6] = 0x70 | (counter >> 8);
  bytes[7] = counter & 0xff;
  bytes[8] = 0x80 | (bytes[8]! & 0x3f);
  const hex = Buffer.from(bytes).toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

export function isUuidV7(value: string): boolean {
  return UUID_V7.test(value);
}

/** What every reader relies on; other fields pass through untouched (a newer minor addition is not an error). */
export const checkpointRecordSchema = z.looseObject({
  v: z.literal(CHECKPOINT_FORMAT_VERSION),
  id: z.string().regex(UUID_V7, { error: 'expected a UUID v7' }),
  status: z.enum(RECORD_STATUSES),
  schema_version: z.int().positive(),
  created_at: microsSchema,
  job_id: z.string(),
  generation: countSchema,
  epoch: countSchema,
  min_epoch: countSchema,
  subtasks: z.array(
    z.looseObject({
      node_id: z.string(),
      subtask_index: countSchema,
      table_metadata: z.looseObject({ state: z.unknown().optional() }),
      commit_data: commitDataSchema.optional(),
    }),
  ),
});
export type CheckpointRecordFields = z.infer<typeof checkpointRecordSchema>;

export type RecordRead<T> = { ok: true; record: T; migratedFrom: number | null } | { ok: false; message: string };

/**
 * Reads a stored record (`key` names it in messages): migrates v1, refuses a newer format or a newer
 * state schema with a clear message, and checks the fields every reader needs.
 */
export function readCheckpointRecord(json: unknown, key: string): RecordRead<CheckpointRecordFields> {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) return { ok: false, message: `checkpoint record ${key} is not an object` };
  const raw = json as Record<string, unknown>;
  const v = raw['v'] ?? 1;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) return { ok: false, message: `checkpoint record ${key} has an invalid format version ${JSON.stringify(v)}` };
  if (v > CHECKPOINT_FORMAT_VERSION) {
    return { ok: false, message: `checkpoint record ${key} has format v${v}, newer than this weir reads (v${CHECKPOINT_FORMAT_VERSION}): upgrade weir to restore it` };
  }
  const migrated = v === 1 ? migrateV2(migrateV1(raw)) : v === 2 ? migrateV2(raw) : raw;
  const schemaVersion = migrated['schema_version'];
  if (typeof schemaVersion === 'number' && schemaVersion > STATE_SCHEMA_VERSION) {
    return { ok: false, message: `checkpoint record ${key} holds state schema v${schemaVersion}, newer than this weir reads (v${STATE_SCHEMA_VERSION})` };
  }
  const parsed = checkpointRecordSchema.safeParse(migrated);
  if (!parsed.success) return { ok: false, message: `checkpoint record ${key} is malformed: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ').slice(0, 300)}` };
  return { ok: true, record: parsed.data, migratedFrom: v === CHECKPOINT_FORMAT_VERSION ? null : v };
}

/**
 * v1 records had no id. Theirs is a v7 id at their completion time, so it sorts with newer ones, and its
 * other bits come from the job and epoch, so every read of the same record gives the same id.
 */
function migrateV1(raw: Record<string, unknown>): Record<string, unknown> {
  const completed = typeof raw['completed_at'] === 'number' ? raw['completed_at'] : 0;
  const seed = createHash('sha256').update(`${String(raw['job_id'])}.${String(raw['epoch'])}`).digest();
  const id = formatV7(msFromMicros(completed), 0, new Uint8Array(seed.subarray(0, 16)));
  return { ...raw, v: 2, id, schema_version: 1, created_at: completed };
}

/** v2 records were only written once complete, and no sink of theirs had anything to commit. */
function migrateV2(raw: Record<string, unknown>): Record<string, unknown> {
  return { ...raw, v: CHECKPOINT_FORMAT_VERSION, status: 'ready' };
}
