/**
 * The in-memory side of incremental state (see incremental.ts): a subtask's named key-value tables,
 * each tracking which keys changed since the last checkpoint, so that a checkpoint writes only those.
 * `tableInner` and `stateInner` are for incremental.ts; the package does not export them.
 */
import { StoreValidationError } from '../jetstream/errors.js';
import { tableNameSchema, type StateRef } from './incremental-format.js';
import type { JsonValue } from './schemas.js';

export interface TableInner {
  readonly data: Map<string, JsonValue>;
  /** The keys changed since the last checkpoint, each with whether it was there at that checkpoint. */
  readonly changes: Map<string, boolean>;
  /** Hands the changes over and starts an empty set. */
  takeChanges(): Map<string, boolean>;
}

export interface StateInner {
  readonly tables: Map<string, TableState>;
  /** refToken of the StateRef the tables were last checkpointed as or restored from: what the changes are relative to. */
  baseline: string | null;
}

// Set by the classes' static blocks, the only code that reaches their private fields.
let innerOfTable: (table: TableState) => TableInner;
let innerOfState: (tables: StateTables) => StateInner;

export function tableInner(table: TableState): TableInner {
  return innerOfTable(table);
}

export function stateInner(tables: StateTables): StateInner {
  return innerOfState(tables);
}

/** One table: string keys, JSON values. Values are kept as given; change them only through `put`. */
export class TableState {
  #data = new Map<string, JsonValue>();
  #changes = new Map<string, boolean>();

  static {
    innerOfTable = (t) => ({
      data: t.#data,
      get changes() {
        return t.#changes;
      },
      takeChanges() {
        const taken = t.#changes;
        t.#changes = new Map();
        return taken;
      },
    });
  }

  constructor(readonly name: string) {}

  get size(): number {
    return this.#data.size;
  }

  /** How many keys were changed since the last checkpoint (a key put and deleted again counts too). */
  get changedKeys(): number {
    return this.#changes.size;
  }

  get(key: string): JsonValue | undefined {
    return this.#data.get(key);
  }

  has(key: string): boolean {
    return this.#data.has(key);
  }

  /**
   * The value must be JSON (no undefined, BigInt or cycles; NaN and ±Infinity come back as null). A put
   * marks the key changed even if the value is equal to the one checkpointed.
   */
  put(key: string, value: JsonValue): this {
    if (value === undefined) throw new StoreValidationError(`table ${this.name}: undefined is not a JSON value (key ${JSON.stringify(key)})`);
    this.#touch(key);
    this.#data.set(key, value);
    return this;
  }

  delete(key: string): boolean {
    if (!this.#data.has(key)) return false;
    this.#touch(key);
    return this.#data.delete(key);
  }

  keys(): IterableIterator<string> {
    return this.#data.keys();
  }

  entries(): IterableIterator<[string, JsonValue]> {
    return this.#data.entries();
  }

  toObject(): Record<string, JsonValue> {
    return Object.fromEntries(this.#data);
  }

  #touch(key: string): void {
    if (!this.#changes.has(key)) this.#changes.set(key, this.#data.has(key));
  }
}

/** A subtask's named tables. */
export class StateTables {
  #tables = new Map<string, TableState>();
  #baseline: string | null = null;

  static {
    innerOfState = (s) => ({
      tables: s.#tables,
      get baseline() {
        return s.#baseline;
      },
      set baseline(token) {
        s.#baseline = token;
      },
    });
  }

  /** The table, created empty if it is not there yet. */
  table(name: string): TableState {
    let table = this.#tables.get(name);
    if (table === undefined) {
      const parsed = tableNameSchema.safeParse(name);
      if (!parsed.success) throw new StoreValidationError(`invalid table name ${JSON.stringify(name)}: ${parsed.error.issues[0]?.message}`);
      table = new TableState(name);
      this.#tables.set(name, table);
    }
    return table;
  }

  get(name: string): TableState | undefined {
    return this.#tables.get(name);
  }

  get names(): string[] {
    return [...this.#tables.keys()];
  }

  [Symbol.iterator](): IterableIterator<TableState> {
    return this.#tables.values();
  }

  /** Every non-empty table as a plain object (an empty table and an absent one are the same state). */
  toObject(): Record<string, Record<string, JsonValue>> {
    return Object.fromEntries([...this.#tables].filter(([, t]) => t.size > 0).map(([name, t]) => [name, t.toObject()]));
  }
}

const tokens = new WeakMap<StateRef, string>();

/**
 * Identifies the state a ref describes: the same blobs make the same state, whatever the epoch. Seqs
 * are unique within a run; the digests also tell apart a run deleted and created again.
 */
export function refToken(ref: StateRef): string {
  let token = tokens.get(ref);
  if (token === undefined) {
    const chains = Object.entries(ref.tables)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([name, t]) => [name, [t.full, ...t.deltas].map((b) => `${b.seq}:${b.digest}`)]);
    token = JSON.stringify([ref.run_id, ref.node_id, chains]);
    tokens.set(ref, token);
  }
  return token;
}
