/**
 * Incremental operator state on the checkpoint store. A subtask keeps its state in named key-value
 * tables (StateTables); at each epoch its IncrementalStateWriter saves, per table that changed, a delta
 * with the puts and deletes of the changed keys, and after `maxDeltas` deltas or `maxDeltaBytes` bytes
 * of them a full snapshot instead, which starts a new chain (compaction, the Compacting span). The
 * StateRef it returns names the full snapshot and the deltas after it for every table; restoreTables
 * loads them in order and yields exactly the tables of that epoch. Blobs are ordinary checkpoints of
 * the store (the format is in incremental-format.ts); which of them are garbage follows from the refs
 * still retained (referencedSequences, pruneUnreferenced).
 *
 * An empty table and an absent one are the same state: an empty table needs no blob, and a restore
 * yields the tables the ref names (some of them may be empty).
 */
import { StoreValidationError } from '../jetstream/errors.js';
import { CorruptCheckpointError } from './errors.js';
import {
  blobMetadata,
  CorruptStateError,
  decodeBlob,
  DEFAULT_MAX_DELTA_BYTES,
  DEFAULT_MAX_DELTAS,
  encodeBlob,
  own,
  parseStateRef,
  STATE_FORMAT_VERSION,
  type DeltaStateBlob,
  type FullStateBlob,
  type StateBlob,
  type StateBlobKind,
  type StateBlobRef,
  type StateRef,
  type TableRef,
} from './incremental-format.js';
import { idSchema, type Checkpoint, type CheckpointMeta, type JsonValue } from './schemas.js';
import { refToken, StateTables, stateInner, tableInner, type TableInner } from './incremental-tables.js';
import type { CheckpointStore } from './store.js';
import { nowMicros as nowUs } from '../shared/micros.js';


// ─── Writing ─────────────────────────────────────────────────────────────────────────────────────

export interface IncrementalStateOptions {
  /** Deltas a table's chain may hold after its full snapshot; the next change then writes a full one. Default 10 (0: always full). */
  maxDeltas?: number;
  /** Bytes of deltas a chain may hold; a delta that would go over writes a full snapshot instead. Default 8 MiB. */
  maxDeltaBytes?: number;
  /** Continue the chains of this ref (same run and node), e.g. after restoring it in a new generation. */
  from?: StateRef;
}

export interface WrittenStateBlob {
  table: string;
  kind: StateBlobKind;
  seq: number;
  epoch: number;
  version: number;
  bytes: number;
}

/** The time spent writing full snapshots that replaced a chain, for a Compacting span (µs since the Unix epoch). */
export interface CompactionSpan {
  start_time: number;
  finish_time: number;
  tables: string[];
}

export interface StateCheckpoint {
  ref: StateRef;
  /** What this epoch wrote, in the order of the tables. */
  blobs: WrittenStateBlob[];
  bytes: number;
  /** Null when no chain was compacted. */
  compaction: CompactionSpan | null;
}

interface Plan {
  blob: StateBlob;
  data: Uint8Array;
  chain: TableRef | undefined;
  compacting: boolean;
}

interface Capture {
  /** Whether the tables' changes are relative to the writer's last ref (else every table is written in full). */
  incremental: boolean;
  plans: Plan[];
  /** The change sets taken from the tables, to put back if the write fails. */
  captured: [TableInner, Map<string, boolean>][];
  compactStart: number | null;
}

function delta(table: string, epoch: number, version: number, data: Map<string, JsonValue>, changes: Map<string, boolean>): DeltaStateBlob {
  const put: [string, JsonValue][] = [];
  const del: string[] = [];
  for (const [key, existed] of changes) {
    const value = data.get(key);
    if (value !== undefined) put.push([key, value]);
    else if (existed) del.push(key);
  }
  return { kind: 'delta', table, epoch, version, put, delete: del };
}

function full(table: string, epoch: number, version: number, data: Map<string, JsonValue>): FullStateBlob {
  return { kind: 'full', table, epoch, version, entries: [...data] };
}

function plan(blob: StateBlob, chain: TableRef | undefined, compacting: boolean): Plan {
  return { blob, data: encodeBlob(blob), chain, compacting };
}

/** The table's chain once the plan's blob (saved as `saved`) is on it. */
function chainWith({ chain, blob }: Plan, saved: StateBlobRef): TableRef {
  if (blob.kind === 'full' || chain === undefined) return { version: blob.version, full: saved, deltas: [], since_full: { deltas: 0, bytes: 0 } };
  return {
    version: blob.version,
    full: chain.full,
    deltas: [...chain.deltas, saved],
    since_full: { deltas: chain.since_full.deltas + 1, bytes: chain.since_full.bytes + saved.bytes },
  };
}

/** Returns changes taken for a checkpoint that failed to the tables, under whatever changed since (their baseline is the older one). */
function putBack(captured: Capture['captured']): void {
  for (const [inner, changes] of captured) for (const [key, existed] of changes) inner.changes.set(key, existed);
}

function assertCount(value: number, what: string): number {
  if (!Number.isSafeInteger(value) || value < 0) throw new StoreValidationError(`invalid ${what} ${value}: expected a non-negative integer`);
  return value;
}

function assertId(value: string, what: string): string {
  if (!idSchema.safeParse(value).success) throw new StoreValidationError(`invalid ${what} ${JSON.stringify(value)}: expected 1–64 characters from A-Z a-z 0-9 _ -`);
  return value;
}

/** The store's node id of one subtask of a graph node: `<node>-<subtask>` (`count-0`); it must fit the store's 64 characters. */
export function stateNodeId(nodeId: string, subtaskIndex: number): string {
  return assertId(`${nodeId}-${assertCount(subtaskIndex, 'subtask index')}`, 'state node id');
}

/**
 * Checkpoints one subtask's tables (`nodeId` e.g. stateNodeId('count', 0)), one epoch at a time. A
 * table changed since the last checkpoint gets a delta of its changed keys, or a full snapshot when it
 * has no chain yet or its chain is due for compaction; an unchanged table writes nothing. Tables that
 * were not checkpointed or restored as this writer's last ref are written in full, so any StateTables
 * may be passed.
 */
export class IncrementalStateWriter {
  readonly maxDeltas: number;
  readonly maxDeltaBytes: number;
  #last: StateRef | null;
  #busy = false;

  constructor(
    private readonly store: CheckpointStore,
    readonly runId: string,
    readonly nodeId: string,
    opts: IncrementalStateOptions = {},
  ) {
    assertId(runId, 'run id');
    assertId(nodeId, 'node id');
    this.maxDeltas = assertCount(opts.maxDeltas ?? DEFAULT_MAX_DELTAS, 'maxDeltas');
    this.maxDeltaBytes = assertCount(opts.maxDeltaBytes ?? DEFAULT_MAX_DELTA_BYTES, 'maxDeltaBytes');
    const from = opts.from === undefined ? null : parseStateRef(opts.from);
    // A ref of another run or node cannot be continued (its sequences are another run's): start afresh.
    this.#last = from !== null && from.run_id === runId && from.node_id === nodeId ? from : null;
  }

  /** The ref of the last successful checkpoint (or `from`): keep it among the retained refs. */
  get last(): StateRef | null {
    return this.#last;
  }

  /**
   * Saves the tables' state at `epoch` (higher than the last one). The tables are read synchronously,
   * before this returns, so the operator may change them again while the promise runs. If it rejects,
   * the next checkpoint still writes everything changed (blobs this one did save are garbage).
   */
  async checkpoint(epoch: number, tables: StateTables): Promise<StateCheckpoint> {
    // Everything up to the first await runs within this call.
    assertCount(epoch, 'epoch');
    if (this.#busy) throw new StoreValidationError(`checkpoint ${epoch} of ${this.nodeId}: the previous checkpoint is still being written`);
    if (this.#last !== null && epoch <= this.#last.epoch) {
      throw new StoreValidationError(`checkpoint ${epoch} of ${this.nodeId}: epochs must increase (the last was ${this.#last.epoch})`);
    }
    const capture = this.#capture(epoch, tables);
    this.#busy = true;
    try {
      return await this.#write(epoch, tables, capture);
    } finally {
      this.#busy = false;
    }
  }

  #capture(epoch: number, tables: StateTables): Capture {
    const last = this.#last;
    const incremental = last !== null && stateInner(tables).baseline === refToken(last);
    const plans: Plan[] = [];
    const captured: Capture['captured'] = [];
    let compactStart: number | null = null;
    try {
      for (const table of tables) {
        const inner = tableInner(table);
        if (incremental && inner.changes.size === 0) continue;
        const started = nowUs();
        const changes = inner.takeChanges();
        captured.push([inner, changes]);
        const previous = last === null ? undefined : own(last.tables, table.name);
        const version = (previous?.version ?? 0) + 1;
        const chain = incremental ? previous : undefined;
        if (chain === undefined) {
          // Nothing to build on: a full snapshot, unless the table is empty (then it needs none).
          if (inner.data.size > 0) plans.push(plan(full(table.name, epoch, version, inner.data), undefined, false));
          continue;
        }
        const d = delta(table.name, epoch, version, inner.data, changes);
        if (d.put.length + d.delete.length === 0) continue;
        const asDelta = plan(d, chain, false);
        if (chain.deltas.length < this.maxDeltas && chain.since_full.bytes + asDelta.data.byteLength <= this.maxDeltaBytes) {
          plans.push(asDelta);
        } else {
          compactStart ??= started;
          plans.push(plan(full(table.name, epoch, version, inner.data), chain, true));
        }
      }
    } catch (err) {
      // A value that is not JSON (a BigInt, a cycle): nothing was written, so nothing may be forgotten.
      putBack(captured);
      throw err;
    }
    return { incremental, plans, captured, compactStart };
  }

  async #write(epoch: number, tables: StateTables, { incremental, plans, captured, compactStart }: Capture): Promise<StateCheckpoint> {
    let compactEnd = 0;
    const settled = await Promise.allSettled(
      plans.map(async (p) => {
        const meta = await this.store.saveCheckpoint(this.runId, this.nodeId, p.data, blobMetadata(p.blob));
        if (p.compacting) compactEnd = Math.max(compactEnd, nowUs());
        return meta;
      }),
    );
    const failed = settled.find((s) => s.status === 'rejected');
    if (failed !== undefined) {
      putBack(captured);
      throw failed.reason;
    }
    const metas = settled.map((s) => (s as PromiseFulfilledResult<CheckpointMeta>).value);
    // Unchanged tables keep their chains; a table no longer in `tables` is empty, which needs none.
    const chains = new Map<string, TableRef>(incremental && this.#last !== null ? Object.entries(this.#last.tables) : []);
    const blobs: WrittenStateBlob[] = plans.map(({ blob }, i) => {
      const { seq, bytes, digest } = metas[i]!;
      chains.set(blob.table, chainWith(plans[i]!, { seq, epoch, bytes, digest }));
      return { table: blob.table, kind: blob.kind, seq, epoch, version: blob.version, bytes };
    });
    const ref: StateRef = {
      v: STATE_FORMAT_VERSION,
      run_id: this.runId,
      node_id: this.nodeId,
      epoch,
      tables: Object.fromEntries(tables.names.flatMap((name) => (chains.has(name) ? [[name, chains.get(name)!]] : []))),
      new_versions: Object.fromEntries(blobs.map((b) => [b.table, b.version])),
    };
    stateInner(tables).baseline = refToken(ref);
    this.#last = ref;
    return {
      ref,
      blobs,
      bytes: blobs.reduce((sum, b) => sum + b.bytes, 0),
      compaction:
        compactStart === null
          ? null
          : { start_time: compactStart, finish_time: Math.max(compactEnd, compactStart), tables: plans.filter((p) => p.compacting).map((p) => p.blob.table) },
    };
  }
}

// ─── Restoring ───────────────────────────────────────────────────────────────────────────────────

async function loadBlob(store: CheckpointStore, ref: StateRef, table: string, at: StateBlobRef, kind: StateBlobKind, version: number): Promise<StateBlob> {
  const what = `its ${kind} of epoch ${at.epoch} (checkpoint ${at.seq})`;
  const fail = (reason: 'missing' | 'digest', detail: string, cause?: unknown) =>
    new CorruptStateError(ref.run_id, ref.node_id, at.seq, ref.epoch, table, reason, `${what} ${detail}`, cause === undefined ? undefined : { cause });
  let loaded: Checkpoint | null;
  try {
    loaded = await store.loadCheckpoint(ref.run_id, at.seq);
  } catch (err) {
    if (err instanceof CorruptCheckpointError) throw fail(err.reason, err.reason === 'missing' ? 'has lost its blob' : 'does not match its SHA-256', err);
    throw err;
  }
  if (loaded === null) throw fail('missing', 'is not in the store (deleted, or never saved)');
  const { meta, state } = loaded;
  if (meta.node_id !== ref.node_id || meta.digest !== at.digest || meta.bytes !== at.bytes) {
    throw fail('digest', `is another checkpoint: node ${meta.node_id}, ${meta.bytes} bytes, SHA-256 ${meta.digest.slice(0, 12)}…`);
  }
  const blob = decodeBlob(state, `checkpoint ${at.seq} of node ${ref.node_id} in run ${ref.run_id}`);
  if (typeof blob === 'string') throw fail('digest', `is ${blob}`);
  if (blob.kind !== kind || blob.table !== table || blob.epoch !== at.epoch || blob.version !== version) {
    throw fail('digest', `holds the ${blob.kind} of table ${JSON.stringify(blob.table)} at epoch ${blob.epoch}, version ${blob.version} (expected version ${version})`);
  }
  return blob;
}

/**
 * The tables exactly as they were at the ref's epoch: for each table its full snapshot, then its
 * deltas in order. A blob that is missing, corrupt or not the one the ref names throws CorruptStateError
 * (run, node, seq, epoch, table); a ref or blob of a newer format throws StateFormatError.
 */
export async function restoreTables(store: CheckpointStore, stateRef: StateRef): Promise<StateTables> {
  const ref = parseStateRef(stateRef);
  const tables = new StateTables();
  await Promise.all(
    Object.entries(ref.tables).map(async ([name, chain]) => {
      const data = tableInner(tables.table(name)).data;
      const first = chain.version - chain.deltas.length;
      const blobs = await Promise.all([
        loadBlob(store, ref, name, chain.full, 'full', first),
        ...chain.deltas.map((d, i) => loadBlob(store, ref, name, d, 'delta', first + 1 + i)),
      ]);
      for (const blob of blobs) {
        if (blob.kind === 'full') for (const [key, value] of blob.entries) data.set(key, value);
        else {
          for (const key of blob.delete) data.delete(key);
          for (const [key, value] of blob.put) data.set(key, value);
        }
      }
    }),
  );
  stateInner(tables).baseline = refToken(ref);
  return tables;
}

// ─── Retention ───────────────────────────────────────────────────────────────────────────────────

function sequencesOf(ref: StateRef): number[] {
  return Object.values(ref.tables).flatMap((t) => [t.full.seq, ...t.deltas.map((d) => d.seq)]);
}

/**
 * The store sequences the refs still need (all of one run): every other state checkpoint of their
 * nodes may be deleted without breaking a restore of any of them.
 */
export function referencedSequences(refs: Iterable<StateRef>): Set<number> {
  const seqs = new Set<number>();
  let run: string | undefined;
  for (const ref of refs) {
    if ((run ??= ref.run_id) !== ref.run_id) throw new StoreValidationError(`referencedSequences: refs of runs ${run} and ${ref.run_id}; sequences are per run`);
    for (const seq of sequencesOf(ref)) seqs.add(seq);
  }
  return seqs;
}

/**
 * Deletes the state checkpoints (those with `kind` full or delta in their metadata) of the retained
 * refs' nodes that no retained ref needs and that are older than the newest blob the node's retained
 * refs use, so a checkpoint still being written is never touched. `retained` must hold every ref that
 * may still be restored or continued (a writer's `last` included). Returns the sequences deleted.
 */
export async function pruneUnreferenced(store: CheckpointStore, retained: readonly StateRef[]): Promise<number[]> {
  const keep = referencedSequences(retained);
  const newest = new Map<string, number>();
  for (const ref of retained) newest.set(ref.node_id, Math.max(newest.get(ref.node_id) ?? 0, ...sequencesOf(ref)));
  const run = retained[0]?.run_id;
  const deleted: number[] = [];
  if (run === undefined) return deleted;
  for (const [node, below] of newest) {
    for (const meta of await store.listNodeCheckpoints(run, node)) {
      const kind = meta.metadata?.['kind'];
      if (meta.seq >= below || keep.has(meta.seq) || (kind !== 'full' && kind !== 'delta') || meta.metadata?.['table'] === undefined) continue;
      await store.deleteCheckpoint(run, meta.seq);
      deleted.push(meta.seq);
    }
  }
  return deleted;
}
