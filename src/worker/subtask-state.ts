/**
 * A subtask's operator state in the checkpoint store, written incrementally. The operator's JSON
 * snapshot is laid onto tables: when every property of the snapshot is an object, each property is a
 * table of its own (`count`'s `{counts: {…}}` is the table `counts`), so an epoch writes only the keys
 * that changed; any other snapshot is one value in the table `:snapshot`. The checkpoint record keeps
 * the returned metadata in the subtask's `table_metadata`, and a restore rebuilds the snapshot from it.
 */
import { z } from 'zod';
import {
  IncrementalStateWriter,
  RunExistsError,
  StateTables,
  parseStateRef,
  restoreTables,
  stateNodeId,
  type CheckpointStore,
  type IncrementalStateOptions,
  type StateRef,
} from '../checkpoint/index.js';
import type { JsonValue } from '../protocol/index.js';

/** The table of a snapshot that is not a map of tables (`:` keeps it apart from any property name). */
export const VALUE_TABLE = ':snapshot';
const VALUE_KEY = 'value';
const TABLE_NAME = /^[A-Za-z0-9_.-]{1,128}$/;

/** What a subtask's `table_metadata` holds for its state. */
export interface StoredState {
  state_ref: StateRef;
  /** The snapshot's properties, each a table; null when the snapshot is one value. */
  tables: string[] | null;
  /** When this epoch rewrote delta chains as full snapshots (µs); absent when it did not. */
  compaction?: { start_time: number; finish_time: number };
}

const storedStateSchema = z.looseObject({ state_ref: z.unknown(), tables: z.array(z.string()).nullable() });

export function isStoredState(metadata: unknown): boolean {
  return storedStateSchema.safeParse(metadata).success;
}

function isObject(value: unknown): value is Record<string, JsonValue> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The snapshot's table names, or null when it is stored as one value. */
function tableNames(snapshot: unknown): string[] | null {
  if (!isObject(snapshot)) return null;
  const names = Object.keys(snapshot);
  if (names.length === 0 || names.some((n) => n === '__proto__' || !TABLE_NAME.test(n) || !isObject(snapshot[n]))) return null;
  return names;
}

/** Equal as JSON; scalars (most values: counts, strings) without serialising them. */
function sameJson(a: JsonValue, b: JsonValue): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  return JSON.stringify(a) === JSON.stringify(b);
}

/** Brings the tables to the snapshot through put and delete, so that they track exactly what changed. */
function applySnapshot(tables: StateTables, snapshot: unknown, names: string[] | null): void {
  const wanted = new Map<string, [string, JsonValue][]>(
    names === null ? [[VALUE_TABLE, [[VALUE_KEY, snapshot as JsonValue]]]] : names.map((n) => [n, Object.entries((snapshot as Record<string, Record<string, JsonValue>>)[n]!)]),
  );
  for (const table of tables) if (!wanted.has(table.name)) for (const key of [...table.keys()]) table.delete(key);
  for (const [name, entries] of wanted) {
    const table = tables.table(name);
    const present = new Set<string>();
    for (const [key, value] of entries) {
      present.add(key);
      const current = table.get(key);
      if (current === undefined || !sameJson(current, value)) table.put(key, value);
    }
    for (const key of [...table.keys()]) if (!present.has(key)) table.delete(key);
  }
}

function snapshotOf(tables: StateTables, names: string[] | null): unknown {
  if (names === null) return tables.get(VALUE_TABLE)?.get(VALUE_KEY) ?? null;
  return Object.fromEntries(names.map((n) => [n, tables.get(n)?.toObject() ?? {}]));
}

/** Creates the job's run in the store unless it exists: one run per job, across generations. */
export async function ensureRun(store: CheckpointStore, jobId: string): Promise<void> {
  try {
    await store.createRun(jobId, { workflow: 'weir-job', params: {} });
  } catch (err) {
    if (!(err instanceof RunExistsError)) throw err;
  }
}

export interface RestoredState {
  snapshot: unknown;
  ref: StateRef;
  tables: StateTables;
}

/** The snapshot a subtask's stored state describes; CorruptCheckpointError when a blob is missing or damaged. */
export async function restoreSnapshot(store: CheckpointStore, metadata: unknown): Promise<RestoredState> {
  const parsed = storedStateSchema.parse(metadata);
  const ref = parseStateRef(parsed.state_ref);
  const tables = await restoreTables(store, ref);
  return { snapshot: snapshotOf(tables, parsed.tables), ref, tables };
}

/** One subtask's writer: epochs are written one after the other, in the order they were taken. */
export class SubtaskStateWriter {
  private readonly writer: IncrementalStateWriter;
  private readonly tables: StateTables;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    store: CheckpointStore,
    jobId: string,
    nodeId: string,
    subtaskIndex: number,
    restored?: Pick<RestoredState, 'ref' | 'tables'>,
    options: Omit<IncrementalStateOptions, 'from'> = {},
  ) {
    this.writer = new IncrementalStateWriter(store, jobId, stateNodeId(nodeId, subtaskIndex), { ...options, ...(restored === undefined ? {} : { from: restored.ref }) });
    this.tables = restored?.tables ?? new StateTables();
  }

  /** Writes `snapshot` as epoch `epoch`; resolves with what the record keeps and the bytes written. */
  checkpoint(epoch: number, snapshot: unknown): Promise<{ stored: StoredState; bytes: number }> {
    const names = tableNames(snapshot);
    const written = this.queue.then(async () => {
      applySnapshot(this.tables, snapshot, names);
      const result = await this.writer.checkpoint(epoch, this.tables);
      const stored: StoredState = {
        state_ref: result.ref,
        tables: names,
        ...(result.compaction === null ? {} : { compaction: { start_time: result.compaction.start_time, finish_time: result.compaction.finish_time } }),
      };
      return { stored, bytes: result.bytes };
    });
    this.queue = written.catch(() => {});
    return written;
  }
}
