import { jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { Objm } from '@nats-io/obj';
import type { NatsConnection } from '@nats-io/transport-node';
import fc from 'fast-check';
import { describe, expect } from 'vitest';
import {
  CorruptCheckpointError,
  CorruptStateError,
  IncrementalStateWriter,
  openCheckpointStore,
  parseStateRef,
  pruneUnreferenced,
  referencedSequences,
  restoreTables,
  StateFormatError,
  stateNodeId,
  StateTables,
  StoreValidationError,
  type CheckpointStore,
  type IncrementalStateOptions,
  type JsonValue,
  type StateBlobRef,
  type StateCheckpoint,
  type StateRef,
} from '../../src/checkpoint/index.js';
import { corruptCheckpoint } from '../support/checkpoints.js';
import { testWithNatsServer } from '../support/nats-fixtures.js';

let counter = 0;
/** A run id unique within the file (its tests share a server). */
function runId(prefix = 'inc'): string {
  counter++;
  return `${prefix}-${process.pid}-${counter}`;
}

const NODE = stateNodeId('count', 0);
const bytes = (text: string) => new TextEncoder().encode(text);
type Model = Record<string, Record<string, JsonValue>>;

/** What a restore must yield for the model: no empty tables, values as JSON gives them back. */
function expected(model: Map<string, Map<string, JsonValue>>): Model {
  const tables = [...model].filter(([, t]) => t.size > 0).map(([name, t]) => [name, Object.fromEntries(t)] as const);
  return JSON.parse(JSON.stringify(Object.fromEntries(tables))) as Model;
}

async function caught(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => undefined,
    (err: unknown) => err,
  );
}

/** One operation of the property test: a put (value) or a delete (no value) of a key in a table. */
type Op = [table: string, key: string, value: JsonValue | undefined];

interface EpochScript {
  ops: Op[];
  /** Check out a random earlier retained ref by index. */
  pick: number;
  /** Apply the next epoch's ops while this checkpoint is being written. */
  early: boolean;
  /** Start a new writer and tables from the last ref, as a new generation would. */
  restart: boolean;
  /** Keep only some refs (by bit) and delete every sequence they do not reference. */
  prune: number | null;
}

const op: fc.Arbitrary<Op> = fc
  .tuple(
    fc.constantFrom('a', 'b', 'c'),
    fc.constantFrom('k0', 'k1', 'k2', 'k3', 'k4', 'k5', '', 'constructor', '__proto__'),
    fc.option(fc.jsonValue({ maxDepth: 1 }), { nil: undefined, freq: 3 }),
  )
  .map(([table, key, value]) => [table, key, value as JsonValue | undefined]);

const script = (prune: boolean) =>
  fc.array(
    fc.record({
      ops: fc.array(op, { maxLength: 6 }),
      pick: fc.nat(),
      early: fc.boolean(),
      restart: fc.integer({ min: 0, max: 4 }).map((n) => n === 0),
      prune: prune ? fc.option(fc.nat(), { nil: null, freq: 2 }) : fc.constant(null),
    }),
    { minLength: 1, maxLength: 40, size: 'max' },
  );

const it = testWithNatsServer();

describe('incremental state', () => {
  let nc: NatsConnection;
  let store: CheckpointStore;
  /** The same store keeping every state in the object store (inline states off). */
  let blobStore: CheckpointStore;

  it.beforeAll(async ({ connect }) => {
    nc = await connect('incremental-state');
    store = await openCheckpointStore(nc, { requestTimeoutMs: 1_000, operationTimeoutMs: 8_000 });
    blobStore = await openCheckpointStore(nc, { requestTimeoutMs: 1_000, operationTimeoutMs: 8_000, inlineStateBytes: 0 });
  });

  /**
   * Runs a script against a writer and an in-memory model; after every epoch, restoring that epoch's
   * ref and a random earlier retained one yields exactly the model of their epochs.
   */
  async function simulate(epochs: EpochScript[], policy: IncrementalStateOptions): Promise<{ compactions: number }> {
    const run = runId('prop');
    await store.createRun(run, { workflow: 'property' });
    const model = new Map<string, Map<string, JsonValue>>();
    let tables = new StateTables();
    let writer = new IncrementalStateWriter(store, run, NODE, policy);
    let retained: { ref: StateRef; state: Model }[] = [];
    let compactions = 0;
    const apply = (ops: Op[]) => {
      for (const [t, key, value] of ops) {
        const table = model.get(t) ?? new Map<string, JsonValue>();
        model.set(t, table);
        if (value === undefined) {
          expect(tables.table(t).delete(key)).toBe(table.delete(key));
        } else {
          tables.table(t).put(key, value);
          table.set(key, value);
        }
      }
    };
    let applied = false;
    for (const [epoch, step] of epochs.entries()) {
      if (!applied) apply(step.ops);
      const state = expected(model);
      const pending = writer.checkpoint(epoch + 1, tables);
      // The tables were read when checkpoint() was called: changing them now must not leak into this epoch.
      applied = step.early && !step.restart && epoch + 1 < epochs.length;
      if (applied) apply(epochs[epoch + 1]!.ops);
      const done: StateCheckpoint = await pending;
      if (done.compaction !== null) compactions++;
      retained.push({ ref: done.ref, state });
      expect(JSON.parse(JSON.stringify(done.ref))).toEqual(done.ref);

      if (step.prune !== null) {
        const mask = step.prune;
        retained = retained.filter((_, i) => i === retained.length - 1 || ((mask >> i % 30) & 1) === 1);
        const keep = referencedSequences(retained.map((r) => r.ref));
        for (const meta of await store.listRunCheckpoints(run)) if (!keep.has(meta.seq)) await store.deleteCheckpoint(run, meta.seq);
      }
      expect((await restoreTables(store, done.ref)).toObject()).toEqual(state);
      const earlier = retained[step.pick % retained.length]!;
      expect((await restoreTables(store, earlier.ref)).toObject()).toEqual(earlier.state);

      if (step.restart) {
        // A new generation: the state comes back from the store and the chains go on from the ref.
        tables = await restoreTables(store, done.ref);
        writer = new IncrementalStateWriter(store, run, NODE, { ...policy, from: JSON.parse(JSON.stringify(done.ref)) as StateRef });
      }
    }
    await store.deleteRun(run);
    return { compactions };
  }

  it('restores exactly the in-memory state of every epoch, with compaction along the way (property)', async () => {
    let compactions = 0;
    await fc.assert(
      fc.asyncProperty(script(false), fc.integer({ min: 0, max: 4 }), fc.integer({ min: 30, max: 600 }), async (epochs, maxDeltas, maxDeltaBytes) => {
        compactions += (await simulate(epochs, { maxDeltas, maxDeltaBytes })).compactions;
      }),
      { numRuns: 15 },
    );
    expect(compactions).toBeGreaterThan(0);
  }, 60_000);

  it('restores every retained ref after deleting every sequence that no retained ref references (property)', async () => {
    await fc.assert(
      fc.asyncProperty(script(true), fc.integer({ min: 0, max: 3 }), async (epochs, maxDeltas) => {
        await simulate(epochs, { maxDeltas, maxDeltaBytes: 300 });
      }),
      { numRuns: 10 },
    );
  }, 60_000);

  /** A run of its own and a writer on it. */
  async function fresh(opts: IncrementalStateOptions = {}, s: CheckpointStore = store) {
    const run = runId();
    await s.createRun(run, { workflow: 'w' });
    return { run, writer: new IncrementalStateWriter(s, run, NODE, opts), tables: new StateTables() };
  }

  async function blob(run: string, seq: number): Promise<{ json: unknown; metadata: Record<string, string> | undefined }> {
    const loaded = (await store.loadCheckpoint(run, seq))!;
    return { json: JSON.parse(new TextDecoder().decode(loaded.state)), metadata: loaded.meta.metadata };
  }

  it('writes nothing for an unchanged table and only the changed keys in a delta', async () => {
    const { run, writer, tables } = await fresh();
    tables.table('counts').put('x', 1).put('y', 2);
    tables.table('seen').put('z', true);
    tables.table('empty');
    const first = await writer.checkpoint(1, tables);
    expect(first.blobs.map((b) => [b.table, b.kind, b.version])).toEqual([
      ['counts', 'full', 1],
      ['seen', 'full', 1],
    ]);
    expect(first.ref.new_versions).toEqual({ counts: 1, seen: 1 });
    expect(Object.keys(first.ref.tables)).toEqual(['counts', 'seen']);
    expect(first.compaction).toBeNull();
    expect(await blob(run, first.ref.tables['counts']!.full.seq)).toEqual({
      json: { v: 1, kind: 'full', table: 'counts', epoch: 1, version: 1, entries: [['x', 1], ['y', 2]] },
      metadata: { table: 'counts', kind: 'full', epoch: '1', version: '1' },
    });

    tables.table('counts').put('x', 5);
    tables.table('counts').delete('y');
    tables.table('counts').put('new', 0);
    tables.table('counts').delete('new'); // never checkpointed: neither a put nor a delete
    expect(tables.table('counts').changedKeys).toBe(3);
    const second = await writer.checkpoint(2, tables);
    expect(second.blobs).toMatchObject([{ table: 'counts', kind: 'delta', epoch: 2, version: 2 }]);
    expect(second.ref.tables['seen']).toEqual(first.ref.tables['seen']);
    expect(second.ref.new_versions).toEqual({ counts: 2 });
    expect(second.ref.tables['counts']).toMatchObject({ version: 2, full: first.ref.tables['counts']!.full, since_full: { deltas: 1, bytes: second.bytes } });
    expect((await blob(run, second.blobs[0]!.seq)).json).toEqual({ v: 1, kind: 'delta', table: 'counts', epoch: 2, version: 2, put: [['x', 5]], delete: ['y'] });

    const listed = (await store.listRunCheckpoints(run)).length;
    tables.table('seen').put('tmp', 1);
    tables.table('seen').delete('tmp');
    const third = await writer.checkpoint(3, tables);
    expect(third).toMatchObject({ blobs: [], bytes: 0, compaction: null, ref: { epoch: 3, new_versions: {} } });
    expect(third.ref.tables).toEqual(second.ref.tables);
    expect(await store.listRunCheckpoints(run)).toHaveLength(listed);
    expect((await restoreTables(store, third.ref)).toObject()).toEqual({ counts: { x: 5 }, seen: { z: true } });
  });

  it('compacts a chain after maxDeltas deltas, resets its counters and reports a Compacting span', async () => {
    const { writer, tables } = await fresh({ maxDeltas: 3 });
    const counts = tables.table('counts');
    const kinds: string[] = [];
    const results: StateCheckpoint[] = [];
    for (let epoch = 1; epoch <= 9; epoch++) {
      counts.put(`k${epoch % 4}`, epoch);
      if (epoch <= 2) tables.table('other').put('once', epoch); // a full snapshot, then one delta
      const done = await writer.checkpoint(epoch, tables);
      results.push(done);
      kinds.push(done.blobs.find((b) => b.table === 'counts')!.kind);
    }
    expect(kinds).toEqual(['full', 'delta', 'delta', 'delta', 'full', 'delta', 'delta', 'delta', 'full']);
    expect(results.map((r) => r.ref.tables['counts']!.since_full.deltas)).toEqual([0, 1, 2, 3, 0, 1, 2, 3, 0]);
    expect(results.map((r) => r.ref.tables['counts']!.version)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    // The first full snapshot starts the chain; only the later ones replace one.
    expect(results.map((r) => r.compaction?.tables ?? null)).toEqual([null, null, null, null, ['counts'], null, null, null, ['counts']]);
    const span = results[4]!.compaction!;
    expect(span.start_time).toBeLessThanOrEqual(span.finish_time);
    expect(span.start_time).toBeGreaterThan((Date.now() - 60_000) * 1000);
    expect(results[4]!.ref.tables['counts']).toMatchObject({ deltas: [], since_full: { deltas: 0, bytes: 0 } });
    // The table that changed once kept its first chain.
    expect(results[8]!.ref.tables['other']).toEqual(results[1]!.ref.tables['other']);
    expect((await restoreTables(store, results[7]!.ref)).toObject()).toEqual({ counts: { k1: 5, k2: 6, k3: 7, k0: 8 }, other: { once: 2 } });
  });

  it('compacts a chain whose deltas would go over maxDeltaBytes', async () => {
    const { writer, tables } = await fresh({ maxDeltas: 100, maxDeltaBytes: 250 });
    const t = tables.table('t');
    const kinds: string[] = [];
    const sinceFull: number[] = [];
    for (let epoch = 1; epoch <= 8; epoch++) {
      t.put('key', 'v'.repeat(20) + String(epoch));
      const done = await writer.checkpoint(epoch, tables);
      kinds.push(done.blobs[0]!.kind);
      sinceFull.push(done.ref.tables['t']!.since_full.bytes);
      expect(done.ref.tables['t']!.since_full.bytes).toBeLessThanOrEqual(250);
    }
    // Each delta is 108 bytes of JSON: two fit in 250, a third would not.
    expect(kinds).toEqual(['full', 'delta', 'delta', 'full', 'delta', 'delta', 'full', 'delta']);
    expect(sinceFull).toEqual([0, 108, 216, 0, 108, 216, 0, 108]);

    // maxDeltas 0: every change is a full snapshot.
    const always = await fresh({ maxDeltas: 0 });
    always.tables.table('t').put('a', 1);
    await always.writer.checkpoint(1, always.tables);
    always.tables.table('t').put('a', 2);
    expect((await always.writer.checkpoint(2, always.tables)).blobs[0]!.kind).toBe('full');
  });

  it('writes any other StateTables in full, continues a restored ref with deltas, and starts afresh on another run', async () => {
    const { run, writer, tables } = await fresh();
    tables.table('t').put('a', 1).put('b', 2);
    const one = await writer.checkpoint(1, tables);

    // Tables the writer did not checkpoint: their changes mean nothing to its chains.
    const other = new StateTables();
    other.table('t').put('c', 3);
    const two = await writer.checkpoint(2, other);
    expect(two.blobs).toMatchObject([{ table: 't', kind: 'full', version: 2 }]);
    expect((await restoreTables(store, two.ref)).toObject()).toEqual({ t: { c: 3 } });
    expect((await restoreTables(store, one.ref)).toObject()).toEqual({ t: { a: 1, b: 2 } });

    // A new generation: restore, then deltas on the restored chains.
    const restored = await restoreTables(store, two.ref);
    const next = new IncrementalStateWriter(store, run, NODE, { from: two.ref });
    restored.table('t').put('d', 4);
    const three = await next.checkpoint(3, restored);
    expect(three.blobs).toMatchObject([{ kind: 'delta', version: 3 }]);
    expect(three.ref.tables['t']!.full).toEqual(two.ref.tables['t']!.full);
    await expect(next.checkpoint(3, restored)).rejects.toThrow(/epochs must increase/);

    // A ref of another run cannot be continued: full snapshots in the new run.
    const elsewhere = runId();
    await store.createRun(elsewhere, { workflow: 'w' });
    const moved = new IncrementalStateWriter(store, elsewhere, NODE, { from: three.ref });
    expect(moved.last).toBeNull();
    const four = await moved.checkpoint(4, restored);
    expect(four.blobs).toMatchObject([{ kind: 'full', version: 1 }]);
    expect((await restoreTables(store, four.ref)).toObject()).toEqual({ t: { c: 3, d: 4 } });
  });

  it('keeps the changes of a failed checkpoint for the next one, and refuses overlapping checkpoints', async () => {
    const { run, tables } = await fresh();
    let failNext = false;
    const flaky = Object.create(store) as CheckpointStore;
    flaky.saveCheckpoint = (...args) => {
      if (failNext && args[3]?.['table'] === 'b') return Promise.reject(new Error('injected failure'));
      return store.saveCheckpoint(...args);
    };
    const writer = new IncrementalStateWriter(flaky, run, NODE);
    tables.table('a').put('x', 1).put('gone', 0);
    tables.table('b').put('y', 1);
    const one = await writer.checkpoint(1, tables);

    failNext = true;
    tables.table('a').put('x', 2);
    tables.table('a').delete('gone');
    tables.table('b').put('y', 2);
    const pending = writer.checkpoint(2, tables);
    await expect(writer.checkpoint(3, tables)).rejects.toThrow(/still being written/);
    tables.table('b').put('late', true); // changed while the failing checkpoint runs
    await expect(pending).rejects.toThrow('injected failure');
    expect(writer.last).toBe(one.ref);
    expect(tables.table('a').changedKeys).toBe(2);

    // A value JSON cannot encode fails the checkpoint before anything is written, and loses no change either.
    tables.table('c').put('big', 1n as never);
    await expect(writer.checkpoint(2, tables)).rejects.toThrow(/BigInt/);
    tables.table('c').delete('big');

    failNext = false;
    const two = await writer.checkpoint(2, tables);
    expect(two.blobs.map((b) => [b.table, b.kind])).toEqual([
      ['a', 'delta'],
      ['b', 'delta'],
    ]);
    expect((await restoreTables(store, two.ref)).toObject()).toEqual({ a: { x: 2 }, b: { y: 2, late: true } });
    // The failed attempt's blob of table a is garbage now: nothing retained references it.
    const referenced = referencedSequences([one.ref, two.ref]);
    expect((await store.listRunCheckpoints(run)).filter((m) => !referenced.has(m.seq))).toHaveLength(1);
  });

  it('prunes what no retained ref needs, never what one does, nor anything newer than the retained refs', async () => {
    const { run, writer, tables } = await fresh({ maxDeltas: 2 });
    const refs: StateRef[] = [];
    const states: Model[] = [];
    for (let epoch = 1; epoch <= 10; epoch++) {
      tables.table('t').put(`k${epoch % 3}`, epoch);
      if (epoch % 4 === 0) tables.table('u').put('n', epoch);
      refs.push((await writer.checkpoint(epoch, tables)).ref);
      states.push(tables.toObject());
    }
    // Another node's checkpoints and a non-state checkpoint of this node are not the pruner's.
    const otherNode = await store.saveCheckpoint(run, stateNodeId('count', 1), new Uint8Array([1]), { kind: 'full', table: 't' });
    const foreign = await store.saveCheckpoint(run, NODE, new Uint8Array([2]));

    const retained = [refs[3]!, refs[6]!];
    const deleted = await pruneUnreferenced(store, retained);
    const keep = referencedSequences(retained);
    const newest = Math.max(...keep);
    expect(deleted.length).toBeGreaterThan(0);
    for (const seq of deleted) expect(keep.has(seq) || seq >= newest).toBe(false);
    const left = (await store.listRunCheckpoints(run)).map((m) => m.seq);
    expect(left).toEqual(expect.arrayContaining([...keep, otherNode.seq, foreign.seq]));
    // Epochs 8–10 are newer than anything retained: untouched, so a writer still ahead of `retained` is safe.
    for (const ref of refs.slice(7)) for (const seq of referencedSequences([ref])) expect(left).toContain(seq);
    for (const [i, ref] of refs.entries()) {
      if (retained.includes(ref) || i >= 7) expect((await restoreTables(store, ref)).toObject()).toEqual(states[i]);
    }
    expect(await pruneUnreferenced(store, retained)).toEqual([]);
    expect(await pruneUnreferenced(store, [])).toEqual([]);
    expect(() => referencedSequences([refs[0]!, { ...refs[0]!, run_id: 'elsewhere' }])).toThrow(StoreValidationError);
  });

  it.each([
    ['inline in their records', false],
    ['in the object store', true],
  ])('fails a restore with an error naming the run, node, epoch and sequence of a corrupt or missing state (states %s)', async (_where, blobs) => {
    const s = blobs ? blobStore : store;
    const { run, writer, tables } = await fresh({}, s);
    tables.table('t').put('a', 1);
    await writer.checkpoint(1, tables);
    tables.table('t').put('a', 2);
    const { ref } = await writer.checkpoint(2, tables);
    const [full, delta] = [ref.tables['t']!.full, ref.tables['t']!.deltas[0]!];
    expect(await corruptCheckpoint(nc, run, delta.seq, s.names)).toBe(blobs ? 'object' : 'inline');

    const corrupt = await caught(restoreTables(s, ref));
    expect(corrupt).toBeInstanceOf(CorruptStateError);
    expect(corrupt).toBeInstanceOf(CorruptCheckpointError);
    expect(corrupt).toMatchObject({ runId: run, nodeId: NODE, seq: delta.seq, epoch: 2, table: 't', reason: 'digest' });
    const message = (corrupt as Error).message;
    for (const part of [`checkpoint ${delta.seq}`, `node ${NODE}`, `run ${run}`, 'epoch 2', '"t"']) expect(message).toContain(part);

    // A ref of epoch 1 (the full snapshot only) whose blob is gone, and one whose checkpoint is gone.
    const only = (blob: StateBlobRef): StateRef => ({ ...ref, epoch: blob.epoch, new_versions: {}, tables: { t: { version: 1, full: blob, deltas: [], since_full: { deltas: 0, bytes: 0 } } } });
    if (blobs) {
      await (await new Objm(nc).open(s.names.stateBucket)).delete(`${run}/${full.seq}`);
      expect(await caught(restoreTables(s, only(full)))).toMatchObject({ name: 'CorruptStateError', seq: full.seq, epoch: 1, reason: 'missing' });
    }
    await s.deleteCheckpoint(run, full.seq);
    const gone = await caught(restoreTables(s, only(full)));
    expect(gone).toMatchObject({ seq: full.seq, reason: 'missing' });
    expect((gone as Error).message).toContain('not in the store');

    // A ref that names another node's checkpoint, a newer format, or nonsense.
    const foreign = await s.saveCheckpoint(run, 'someone-else', new Uint8Array([1]));
    const wrong = only({ seq: foreign.seq, epoch: 1, bytes: 1, digest: foreign.digest });
    expect(await caught(restoreTables(s, wrong))).toMatchObject({ seq: foreign.seq, reason: 'digest' });
    expect(await caught(restoreTables(s, { ...ref, v: 2 } as never))).toBeInstanceOf(StateFormatError);
    expect(() => parseStateRef({ ...ref, v: 2 })).toThrow(/format v2, newer than this reader/);
    expect(() => parseStateRef({ ...ref, epoch: 1 })).toThrow(StateFormatError);
    expect(() => parseStateRef(null)).toThrow(StateFormatError);
  });

  it('validates ids, table names, epochs and policies', () => {
    expect(stateNodeId('count', 3)).toBe('count-3');
    expect(() => stateNodeId('count/0', 0)).toThrow(StoreValidationError);
    expect(() => stateNodeId('x'.repeat(63), 10)).toThrow(StoreValidationError);
    expect(() => new StateTables().table('')).toThrow(StoreValidationError);
    expect(() => new StateTables().table('__proto__')).toThrow(StoreValidationError);
    expect(() => new StateTables().table('a'.repeat(129))).toThrow(StoreValidationError);
    expect(() => new IncrementalStateWriter(store, 'a.b', NODE)).toThrow(StoreValidationError);
    expect(() => new IncrementalStateWriter(store, 'run', NODE, { maxDeltas: -1 })).toThrow(StoreValidationError);
    expect(() => new IncrementalStateWriter(store, 'run', NODE, { maxDeltaBytes: 1.5 })).toThrow(StoreValidationError);
    expect(() => new StateTables().table('t').put('k', undefined as never)).toThrow(StoreValidationError);
  });

  /** The run's KV keys and blobs, and every message of the KV and object streams (markers included). */
  async function footprint(run: string) {
    const kv = await new Kvm(nc).open(store.names.metaBucket);
    const keys: string[] = [];
    for await (const key of await kv.keys()) if (key.includes(`.${run}`)) keys.push(key);
    const objects = (await (await new Objm(nc).open(store.names.stateBucket)).list()).filter((o) => o.name.startsWith(`${run}/`)).map((o) => o.name);
    const jsm = await jetstreamManager(nc);
    const messages = async (stream: string) => (await jsm.streams.info(stream)).state.messages;
    return { keys: keys.sort(), objects: objects.sort(), kvMessages: await messages(`KV_${store.names.metaBucket}`), objectMessages: await messages(`OBJ_${store.names.stateBucket}`) };
  }

  it('CheckpointStore.deleteCheckpoint removes one checkpoint (record and blob) without markers, idempotently, and leaves the others', async () => {
    // States in the object store (inline ones have no blob: test/checkpoint/store.test.ts covers their deletion).
    const run = runId('del');
    await blobStore.createRun(run, { workflow: 'w' });
    const [a1, a2, a3] = [await blobStore.saveCheckpoint(run, 'a', bytes('a1')), await blobStore.saveCheckpoint(run, 'a', bytes('a2')), await blobStore.saveCheckpoint(run, 'a', bytes('a3'))];
    const b1 = await blobStore.saveCheckpoint(run, 'b', bytes('b1'));
    const before = await footprint(run);

    expect(await blobStore.deleteCheckpoint(run, a2.seq)).toBe(true);
    expect(await blobStore.loadCheckpoint(run, a2.seq)).toBeNull();
    expect((await blobStore.listNodeCheckpoints(run, 'a')).map((m) => m.seq)).toEqual([a1.seq, a3.seq]);
    expect((await blobStore.loadLatest(run, 'a'))?.meta).toEqual(a3);
    const after = await footprint(run);
    expect(after.keys).toEqual(before.keys.filter((k) => k !== `cp.${run}.${a2.seq}`));
    expect(after.objects).toEqual(before.objects.filter((o) => o !== `${run}/${a2.seq}`));
    // One record and one blob's chunk and metadata message gone; no delete markers came in their place.
    expect(after.kvMessages).toBe(before.kvMessages - 1);
    expect(after.objectMessages).toBe(before.objectMessages - 2);

    expect(await blobStore.deleteCheckpoint(run, a2.seq)).toBe(false);
    expect(await blobStore.deleteCheckpoint(run, 999)).toBe(false);
    expect(await blobStore.deleteCheckpoint(`never-${process.pid}`, 1)).toBe(false);

    // The node's newest checkpoint: its latest pointer goes too (it is not moved back to an older one).
    expect(await blobStore.deleteCheckpoint(run, a3.seq)).toBe(true);
    expect(await blobStore.loadLatest(run, 'a')).toBeNull();
    expect((await footprint(run)).keys).not.toContain(`latest.${run}.a`);
    expect(new TextDecoder().decode((await blobStore.loadCheckpoint(run, a1.seq))!.state)).toBe('a1');
    expect((await blobStore.loadLatest(run, 'b'))?.meta).toEqual(b1);
    const a4 = await blobStore.saveCheckpoint(run, 'a', bytes('a4'));
    expect((await blobStore.loadLatest(run, 'a'))?.meta).toEqual(a4);

    // A blob whose save died before its record.
    await (await new Objm(nc).open(blobStore.names.stateBucket)).putBlob({ name: `${run}/50` }, bytes('orphan'));
    expect(await blobStore.deleteCheckpoint(run, 50)).toBe(true);
    expect((await footprint(run)).objects).not.toContain(`${run}/50`);

    await expect(blobStore.deleteCheckpoint(run, 0)).rejects.toBeInstanceOf(StoreValidationError);
    await expect(blobStore.deleteCheckpoint('a.b', 1)).rejects.toBeInstanceOf(StoreValidationError);
    expect(await blobStore.deleteRun(run)).toMatchObject({ blobs: 3 });
  });
});
