import { jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { Objm } from '@nats-io/obj';
import type { NatsConnection } from '@nats-io/transport-node';
import { createHash } from 'node:crypto';
import { describe, expect } from 'vitest';
import {
  CHECKPOINT_STORE_STREAM_SUBJECTS,
  CorruptCheckpointError,
  openCheckpointStore,
  RunExistsError,
  StoreUnavailableError,
  StoreValidationError,
  UnknownRunError,
  type CheckpointEvent,
  type CheckpointMeta,
  type CheckpointStore,
  type CheckpointStoreOptions,
} from '../../src/checkpoint/index.js';
import { corruptCheckpoint } from '../support/checkpoints.js';
import { connectTo } from '../support/nats.js';
import { testWithNatsServer } from '../support/nats-fixtures.js';
import type { NatsServerHandle } from '../support/nats-server.js';

const FAST: CheckpointStoreOptions = { requestTimeoutMs: 1_000, operationTimeoutMs: 8_000 };

let counter = 0;
/** A run id unique within the file (its tests share a server). */
function runId(prefix = 'run'): string {
  counter++;
  return `${prefix}-${process.pid}-${counter}`;
}

const bytes = (text: string) => new TextEncoder().encode(text);
const text = (data: Uint8Array) => new TextDecoder().decode(data);

async function caught(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => undefined,
    (err: unknown) => err,
  );
}

const it = testWithNatsServer();

describe('CheckpointStore', () => {
  let server: NatsServerHandle;
  let nc: NatsConnection;
  let store: CheckpointStore;
  /** The same store keeping every state in the object store, as before inline states. */
  let blobStore: CheckpointStore;

  it.beforeAll(async ({ natsServer, connect }) => {
    server = natsServer;
    nc = await connect('checkpoint-store');
    store = await openCheckpointStore(nc, FAST);
    blobStore = await openCheckpointStore(nc, { ...FAST, inlineStateBytes: 0 });
  });

  /** What JetStream holds for a run, read around the store. */
  async function footprint(run: string, s: CheckpointStore = store) {
    const kv = await new Kvm(nc).open(s.names.metaBucket);
    const keys: string[] = [];
    for await (const key of await kv.keys()) if (key.includes(`.${run}`)) keys.push(key);
    const objects = (await (await new Objm(nc).open(s.names.stateBucket)).list()).filter((o) => o.name.startsWith(`${run}/`));
    const jsm = await jetstreamManager(nc);
    const subjects = async (stream: string, filter: string) =>
      Object.values((await jsm.streams.info(stream, { subjects_filter: filter })).state.subjects ?? {}).reduce((a, b) => a + b, 0);
    return {
      keys: keys.sort(),
      objects: objects.map((o) => o.name),
      objectMessages: await subjects(`OBJ_${s.names.stateBucket}`, '>'),
      events: await subjects(s.names.eventStream, `${s.names.eventSubjectPrefix}.${run}`),
    };
  }

  it('opens idempotently, from several connections at once, and lays out the bucket, object store and stream', async () => {
    const others = await Promise.all([1, 2].map((i) => connectTo(server.url, `open-${i}`)));
    try {
      await Promise.all(others.map((other) => openCheckpointStore(other, FAST)));
      const jsm = await jetstreamManager(nc);
      expect((await jsm.streams.info('WEIR_CP_EVENTS')).config).toMatchObject({ subjects: ['weir.cp.events.*'], allow_direct: true, storage: 'file' });
      expect((await jsm.streams.info('KV_weir_cp_meta')).config).toMatchObject({ subjects: ['$KV.weir_cp_meta.>'], max_msgs_per_subject: 1 });
      expect((await jsm.streams.info('OBJ_weir_cp_state')).config.subjects).toEqual(['$O.weir_cp_state.C.>', '$O.weir_cp_state.M.>']);
      expect(CHECKPOINT_STORE_STREAM_SUBJECTS).toEqual(['weir.cp.events.*', '$KV.weir_cp_meta.>', '$O.weir_cp_state.>']);
      expect(store.names).toEqual({ metaBucket: 'weir_cp_meta', stateBucket: 'weir_cp_state', eventStream: 'WEIR_CP_EVENTS', eventSubjectPrefix: 'weir.cp.events' });
    } finally {
      await Promise.all(others.map((other) => other.close()));
    }
  });

  it('keeps stores with different prefixes apart', async () => {
    const other = await openCheckpointStore(nc, { ...FAST, prefix: 'acme' });
    expect(other.names).toEqual({ metaBucket: 'acme_cp_meta', stateBucket: 'acme_cp_state', eventStream: 'ACME_CP_EVENTS', eventSubjectPrefix: 'acme.cp.events' });
    const run = runId();
    await other.createRun(run, { workflow: 'w' });
    await other.saveCheckpoint(run, 'n', bytes('acme'));
    await other.appendEvent(run, 'started');
    expect(await store.getRun(run)).toBeNull();
    expect(await store.listRunCheckpoints(run)).toEqual([]);
    expect((await store.eventsSince(run, 0, 10)).events).toEqual([]);
    expect(text((await other.loadLatest(run, 'n'))!.state)).toBe('acme');
    await expect(openCheckpointStore(nc, { prefix: 'Upper.Case' })).rejects.toThrow(/invalid checkpoint store prefix/);
    await expect(openCheckpointStore(nc, { names: { eventSubjectPrefix: 'cp.*' } })).rejects.toBeInstanceOf(StoreValidationError);
  });

  it('creates, gets and updates runs', async () => {
    const run = runId();
    const created = await store.createRun(run, { workflow: 'etl', params: { date: '2024-01-01', shards: 4, nested: { a: [1, null] } } });
    expect(created).toMatchObject({ run_id: run, workflow: 'etl', status: 'running', last_seq: 0, params: { shards: 4 } });
    expect(created.updated_at).toBe(created.created_at);
    expect(await store.getRun(run)).toEqual(created);

    const err = await caught(store.createRun(run, { workflow: 'other' }));
    expect(err).toBeInstanceOf(RunExistsError);
    expect((err as RunExistsError).runId).toBe(run);
    expect((await store.getRun(run))?.workflow).toBe('etl');

    const done = await store.updateRunStatus(run, 'succeeded');
    expect(done).toMatchObject({ status: 'succeeded', workflow: 'etl', created_at: created.created_at });
    expect(done.updated_at).toBeGreaterThanOrEqual(created.updated_at);
    expect(await store.getRun(run)).toEqual(done);
    // A status this store does not know by name is fine: orchestrators have their own.
    expect((await store.updateRunStatus(run, 'paused-by-operator')).status).toBe('paused-by-operator');

    expect(await store.getRun(runId('never'))).toBeNull();
    expect(await store.createRun(runId(), { workflow: 'w', status: 'failed' })).toMatchObject({ status: 'failed', params: {} });
  });

  it('re-applies a status update after losing the compare-and-set to another process', async () => {
    const run = runId();
    await store.createRun(run, { workflow: 'w' });
    const nc2 = await connectTo(server.url, 'status-2');
    try {
      const other = await openCheckpointStore(nc2, FAST);
      // The other process moves the record on; this store's cached revision is stale now.
      await other.saveCheckpoint(run, 'n', bytes('x'));
      await other.updateRunStatus(run, 'cancelled');
      expect(await store.updateRunStatus(run, 'failed')).toMatchObject({ status: 'failed', last_seq: 1 });
      const saved = await store.saveCheckpoint(run, 'n', bytes('y'));
      expect(saved.seq).toBe(2);
    } finally {
      await nc2.close();
    }
  });

  it('saves and loads checkpoints: latest, by sequence, listed by run and by node', async () => {
    const run = runId();
    await store.createRun(run, { workflow: 'w' });
    const a1 = await store.saveCheckpoint(run, 'a', bytes('a-1'), { epoch: '1', offsets: '{"p0":7}' });
    const b1 = await store.saveCheckpoint(run, 'b', bytes('b-1'));
    const a2 = await store.saveCheckpoint(run, 'a', bytes('a-2'));
    const empty = await store.saveCheckpoint(run, 'c', new Uint8Array(0));
    expect([a1.seq, b1.seq, a2.seq, empty.seq]).toEqual([1, 2, 3, 4]);
    expect(a1).toMatchObject({
      run_id: run,
      node_id: 'a',
      bytes: 3,
      digest: createHash('sha256').update('a-1').digest('hex'),
      metadata: { epoch: '1', offsets: '{"p0":7}' },
    });
    expect(a1.metadata).toEqual({ epoch: '1', offsets: '{"p0":7}' });
    expect('metadata' in b1).toBe(false);
    // Small states are inline in the record: no blob.
    expect('object' in a1).toBe(false);

    const latestA = await store.loadLatest(run, 'a');
    expect(latestA?.meta).toEqual(a2);
    expect(text(latestA!.state)).toBe('a-2');
    expect(text((await store.loadLatest(run, 'b'))!.state)).toBe('b-1');
    expect((await store.loadLatest(run, 'c'))?.state).toEqual(new Uint8Array(0));
    expect(await store.loadLatest(run, 'nobody')).toBeNull();

    const first = await store.loadCheckpoint(run, 1);
    expect(first?.meta).toEqual(a1);
    expect(text(first!.state)).toBe('a-1');
    expect(text((await store.loadCheckpoint(run, 2))!.state)).toBe('b-1');
    expect(await store.loadCheckpoint(run, 99)).toBeNull();

    expect(await store.listRunCheckpoints(run)).toEqual([a1, b1, a2, empty]);
    expect(await store.listNodeCheckpoints(run, 'a')).toEqual([a1, a2]);
    expect(await store.listNodeCheckpoints(run, 'nobody')).toEqual([]);
    expect(await store.listRunCheckpoints(runId('never'))).toEqual([]);
    expect((await store.getRun(run))?.last_seq).toBe(4);
  });

  it('round-trips a state of several MiB', async () => {
    const run = runId();
    await store.createRun(run, { workflow: 'w' });
    const state = new Uint8Array(3 * 1024 * 1024 + 17).map((_, i) => (i * 31) % 251);
    const meta = await store.saveCheckpoint(run, 'big', state);
    expect(meta.bytes).toBe(state.byteLength);
    // Buffer.equals: a deep toEqual of 3 MiB element by element takes seconds.
    expect(Buffer.from((await store.loadLatest(run, 'big'))!.state).equals(state)).toBe(true);
  });

  it.each([
    ['one connection', 1],
    ['two connections', 2],
  ])('hands out every sequence exactly once to 8 concurrent writers × 25 saves (%s)', async (_name, connections) => {
    const run = runId('race');
    await store.createRun(run, { workflow: 'w' });
    const extra = await Promise.all(Array.from({ length: connections - 1 }, (_, i) => connectTo(server.url, `race-${i}`)));
    try {
      const stores = [store, ...(await Promise.all(extra.map((other) => openCheckpointStore(other, FAST))))];
      const saved = await Promise.all(
        Array.from({ length: 8 }, async (_, writer) => {
          const mine: CheckpointMeta[] = [];
          const s = stores[writer % stores.length]!;
          const node = writer % 2 === 0 ? 'even' : 'odd';
          for (let i = 0; i < 25; i++) mine.push(await s.saveCheckpoint(run, node, bytes(`${writer}/${i}`)));
          return mine;
        }),
      );
      const seqs = saved.flat().map((m) => m.seq);
      expect([...seqs].sort((a, b) => a - b)).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
      // Each writer's own saves got increasing numbers.
      for (const mine of saved) expect(mine.map((m) => m.seq)).toEqual([...mine.map((m) => m.seq)].sort((a, b) => a - b));

      const listed = await store.listRunCheckpoints(run);
      expect(listed.map((m) => m.seq)).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
      for (const node of ['even', 'odd']) {
        const max = Math.max(...saved.flat().filter((m) => m.node_id === node).map((m) => m.seq));
        const latest = await store.loadLatest(run, node);
        expect(latest?.meta.seq).toBe(max);
        expect(text(latest!.state)).toBe(text((await store.loadCheckpoint(run, max))!.state));
      }
      expect((await store.getRun(run))?.last_seq).toBe(200);
    } finally {
      await Promise.all(extra.map((other) => other.close()));
    }
  });

  /** Every load of checkpoint `seq` (by sequence and, while it is the node's newest, latest) throws CorruptCheckpointError naming it. */
  async function expectCorrupt(s: CheckpointStore, run: string, node: string, seq: number, reason: 'digest' | 'missing' = 'digest') {
    for (const load of [() => s.loadCheckpoint(run, seq), () => s.loadLatest(run, node)]) {
      const err = await caught(load());
      expect(err).toBeInstanceOf(CorruptCheckpointError);
      expect(err).toMatchObject({ runId: run, nodeId: node, seq, reason });
      expect((err as Error).message).toContain(`checkpoint ${seq} of node ${node} in run ${run} is corrupt`);
    }
  }

  it('detects a blob that was overwritten or removed behind its back', async () => {
    const run = runId();
    await blobStore.createRun(run, { workflow: 'w' });
    const meta = await blobStore.saveCheckpoint(run, 'n', bytes('the real state'));
    expect(meta.object).toBe(`${run}/${meta.seq}`);
    const os = await new Objm(nc).open(blobStore.names.stateBucket);
    await os.putBlob({ name: meta.object! }, bytes('something else'));
    await expectCorrupt(blobStore, run, 'n', meta.seq);

    await os.delete(meta.object!);
    await expectCorrupt(blobStore, run, 'n', meta.seq, 'missing');
  });

  it('keeps a small state inline in its record: no blob, one KV get per loadLatest, nothing of it in what saves and lists return', async () => {
    const run = runId();
    await store.createRun(run, { workflow: 'w' });
    const before = await footprint(run);
    const saved = await store.saveCheckpoint(run, 'n', bytes('small state'), { epoch: '3' });
    const empty = await store.saveCheckpoint(run, 'e', new Uint8Array(0));
    for (const meta of [saved, empty]) expect(Object.keys(meta).filter((k) => k === 'object' || k === 'inline_state')).toEqual([]);

    const after = await footprint(run);
    expect(after.objects).toEqual([]);
    expect(after.objectMessages).toBe(before.objectMessages);
    const kv = await new Kvm(nc).open(store.names.metaBucket);
    const record = (await kv.get(`cp.${run}.${saved.seq}`))!.json<Record<string, unknown>>();
    expect(record).toEqual({ ...saved, inline_state: Buffer.from('small state').toString('base64') });
    expect((await kv.get(`latest.${run}.n`))!.json()).toEqual(record);

    const latest = (await store.loadLatest(run, 'n'))!;
    expect(latest.meta).toEqual(saved);
    expect(text(latest.state)).toBe('small state');
    expect(latest.state.constructor).toBe(Uint8Array);
    expect(latest.state.byteLength).toBe(latest.state.buffer.byteLength);
    expect(text((await store.loadCheckpoint(run, saved.seq))!.state)).toBe('small state');
    expect((await store.loadLatest(run, 'e'))?.state).toEqual(new Uint8Array(0));

    // Lists carry the records without the states.
    expect(await store.listRunCheckpoints(run)).toEqual([saved, empty]);
    expect(await store.listNodeCheckpoints(run, 'n')).toEqual([saved]);
    for (const meta of await store.listRunCheckpoints(run)) expect('inline_state' in meta).toBe(false);
  });

  it('detects an inline state damaged behind its back, on loadLatest and loadCheckpoint', async () => {
    const run = runId();
    await store.createRun(run, { workflow: 'w' });
    const meta = await store.saveCheckpoint(run, 'n', bytes('the real state'));
    expect(await corruptCheckpoint(nc, run, meta.seq, store.names)).toBe('inline');
    await expectCorrupt(store, run, 'n', meta.seq);
    const empty = await store.saveCheckpoint(run, 'e', new Uint8Array(0));
    await corruptCheckpoint(nc, run, empty.seq, store.names);
    await expectCorrupt(store, run, 'e', empty.seq);
    // The helper damages blobs just as well.
    const blob = await blobStore.saveCheckpoint(run, 'b', bytes('in a blob'));
    expect(await corruptCheckpoint(nc, run, blob.seq, store.names)).toBe('object');
    await expectCorrupt(store, run, 'b', blob.seq);
  });

  it('puts a state of exactly inlineStateBytes inline and one byte more in the object store; 0 keeps everything there', async () => {
    const run = runId();
    await store.createRun(run, { workflow: 'w' });
    const limit = 64 * 1024;
    const at = new Uint8Array(limit).map((_, i) => i % 251);
    const over = new Uint8Array(limit + 1).map((_, i) => i % 253);
    const inline = await store.saveCheckpoint(run, 'n', at);
    expect(inline.object).toBeUndefined();
    const blob = await store.saveCheckpoint(run, 'n', over);
    expect(blob.object).toBe(`${run}/${blob.seq}`);
    expect((await footprint(run)).objects).toEqual([`${run}/${blob.seq}`]);
    expect(Buffer.from((await store.loadCheckpoint(run, inline.seq))!.state).equals(at)).toBe(true);
    expect(Buffer.from((await store.loadLatest(run, 'n'))!.state).equals(over)).toBe(true);

    // A limit of its own, and 0.
    const tiny = await openCheckpointStore(nc, { ...FAST, inlineStateBytes: 10 });
    expect((await tiny.saveCheckpoint(run, 't', new Uint8Array(10))).object).toBeUndefined();
    expect((await tiny.saveCheckpoint(run, 't', new Uint8Array(11))).object).toBeDefined();
    for (const state of [new Uint8Array(0), bytes('x')]) {
      const meta = await blobStore.saveCheckpoint(run, 'z', state);
      expect(meta.object).toBe(`${run}/${meta.seq}`);
      expect((await store.loadLatest(run, 'z'))?.state).toEqual(state);
    }
    // However large the option, the record stays well under the server's max_payload (1 MiB here).
    const huge = await openCheckpointStore(nc, { ...FAST, inlineStateBytes: 8 * 1024 * 1024 });
    expect((await huge.saveCheckpoint(run, 'h', new Uint8Array(300 * 1024))).object).toBeUndefined();
    const capped = await huge.saveCheckpoint(run, 'h', new Uint8Array(512 * 1024));
    expect(capped.object).toBe(`${run}/${capped.seq}`);
    await expect(openCheckpointStore(nc, { ...FAST, inlineStateBytes: -1 })).rejects.toBeInstanceOf(StoreValidationError);
    await expect(openCheckpointStore(nc, { ...FAST, inlineStateBytes: 1.5 })).rejects.toBeInstanceOf(StoreValidationError);
  });

  it('deletes inline checkpoints and runs of them, idempotently, with no blob to delete', async () => {
    const run = runId();
    await store.createRun(run, { workflow: 'w' });
    const [a1, a2] = [await store.saveCheckpoint(run, 'a', bytes('a1')), await store.saveCheckpoint(run, 'a', bytes('a2'))];
    const b1 = await blobStore.saveCheckpoint(run, 'b', bytes('b1'));
    const before = await footprint(run);
    expect(before.objects).toEqual([`${run}/${b1.seq}`]);

    expect(await store.deleteCheckpoint(run, a2.seq)).toBe(true);
    expect(await store.loadLatest(run, 'a')).toBeNull();
    expect(await store.loadCheckpoint(run, a2.seq)).toBeNull();
    expect(await store.deleteCheckpoint(run, a2.seq)).toBe(false);
    const after = await footprint(run);
    expect(after.keys).toEqual(before.keys.filter((k) => k !== `cp.${run}.${a2.seq}` && k !== `latest.${run}.a`));
    expect(after.objectMessages).toBe(before.objectMessages);
    expect(await store.listRunCheckpoints(run)).toEqual([a1, b1]);

    expect(await store.deleteRun(run)).toEqual({ records: 3, blobs: 1, events: 0 });
    expect(await footprint(run)).toMatchObject({ keys: [], objects: [] });
    expect(await store.deleteRun(run)).toEqual({ records: 0, blobs: 0, events: 0 });
  });

  it('pages through events after a cursor without duplicates or gaps', async () => {
    const run = runId();
    const other = runId();
    await store.createRun(run, { workflow: 'w' });
    await store.createRun(other, { workflow: 'w' });
    const seqs: number[] = [];
    for (let i = 0; i < 23; i++) {
      seqs.push(await store.appendEvent(run, i % 5 === 0 ? 'checkpoint' : 'progress', { i, note: `event ${i}` }));
      if (i % 4 === 0) await store.appendEvent(other, 'noise', i);
    }
    expect([...seqs].sort((a, b) => a - b)).toEqual(seqs);

    const walked: CheckpointEvent[] = [];
    let cursor = 0;
    let pages = 0;
    for (;;) {
      const page = await store.eventsSince(run, cursor, 5);
      pages++;
      expect(page.events.length).toBeLessThanOrEqual(5);
      walked.push(...page.events);
      if (!page.hasMore) {
        expect(page.next).toBe(seqs.at(-1));
        break;
      }
      expect(page.next).toBe(page.events.at(-1)!.seq);
      cursor = page.next;
    }
    expect(pages).toBe(5);
    expect(walked.map((e) => e.seq)).toEqual(seqs);
    expect(walked[7]).toMatchObject({ run_id: run, type: 'progress', data: { i: 7, note: 'event 7' } });
    expect(walked[0]!.at).toBeGreaterThan(Date.now() - 60_000);

    // Caught up: an empty page that keeps the cursor.
    expect(await store.eventsSince(run, seqs.at(-1)!, 10)).toEqual({ events: [], next: seqs.at(-1), hasMore: false });
    expect((await store.eventsSince(run, seqs[20]!, 1000)).events.map((e) => e.seq)).toEqual(seqs.slice(21));
    expect(await store.eventsSince(runId('never'), 0, 10)).toEqual({ events: [], next: 0, hasMore: false });

    // An idempotency key makes a retried append a no-op.
    const once = await store.appendEvent(run, 'once', null, { id: `once-${run}` });
    expect(await store.appendEvent(run, 'once', null, { id: `once-${run}` })).toBe(once);
    expect((await store.eventsSince(run, seqs.at(-1)!, 10)).events).toMatchObject([{ seq: once, run_id: run, type: 'once', data: null }]);
  });

  it('deletes a run with thousands of checkpoints, its blobs, pointers and events; idempotently', async () => {
    const run = runId('doomed');
    const neighbour = runId('doomed');
    await store.createRun(run, { workflow: 'w' });
    await store.createRun(neighbour, { workflow: 'w' });
    const N = 1200;
    let next = 0;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (next < N) {
          const i = next++;
          await blobStore.saveCheckpoint(run, `node-${i % 3}`, bytes(`state ${i}`));
        }
      }),
    );
    for (let i = 0; i < 30; i++) await store.appendEvent(run, 'tick', i);
    await blobStore.saveCheckpoint(neighbour, 'node-0', bytes('stays'));
    await store.appendEvent(neighbour, 'stays');

    const before = await footprint(run);
    expect(before.keys).toHaveLength(1 + N + 3);
    expect(before.objects).toHaveLength(N);
    expect(before.events).toBe(30);

    const result = await store.deleteRun(run);
    expect(result).toEqual({ records: N + 3, blobs: N, events: 30 });
    expect(await footprint(run)).toMatchObject({ keys: [], objects: [], events: 0 });
    expect(await store.getRun(run)).toBeNull();
    expect(await store.loadLatest(run, 'node-0')).toBeNull();
    expect(await store.listRunCheckpoints(run)).toEqual([]);
    // No delete markers are left behind either: only the neighbour's blob is in the object store.
    const after = await footprint(neighbour);
    expect(after).toMatchObject({ keys: [`cp.${neighbour}.1`, `latest.${neighbour}.node-0`, `run.${neighbour}`], objects: [`${neighbour}/1`], events: 1 });
    expect(text((await store.loadLatest(neighbour, 'node-0'))!.state)).toBe('stays');

    expect(await store.deleteRun(run)).toEqual({ records: 0, blobs: 0, events: 0 });
    expect(await store.deleteRun(runId('never'))).toEqual({ records: 0, blobs: 0, events: 0 });

    // The id can be used again, from sequence 1.
    await store.createRun(run, { workflow: 'again' });
    expect((await store.saveCheckpoint(run, 'n', bytes('fresh'))).seq).toBe(1);
    expect(text((await store.loadCheckpoint(run, 1))!.state)).toBe('fresh');
  });

  it('removes a blob whose save died before its record (beside an inline checkpoint, which has none)', async () => {
    const run = runId();
    await store.createRun(run, { workflow: 'w' });
    await store.saveCheckpoint(run, 'n', bytes('one'));
    // A save that claimed sequence 2 and wrote its blob, then crashed.
    await store.updateRunStatus(run, 'running');
    const kv = await new Kvm(nc).open(store.names.metaBucket);
    const entry = await kv.get(`run.${run}`);
    await kv.update(`run.${run}`, JSON.stringify({ ...entry!.json<object>(), last_seq: 2 }), entry!.revision);
    await (await new Objm(nc).open(store.names.stateBucket)).putBlob({ name: `${run}/2` }, bytes('orphan'));
    expect(await store.deleteRun(run)).toEqual({ records: 2, blobs: 1, events: 0 });
    expect(await footprint(run)).toMatchObject({ keys: [], objects: [] });
  });

  it('rejects bad input with StoreValidationError or UnknownRunError, writing nothing', async () => {
    const small = await openCheckpointStore(nc, { ...FAST, maxStateBytes: 1024, maxEventBytes: 512 });
    const run = runId();
    await small.createRun(run, { workflow: 'w' });
    const before = await footprint(run, small);

    const invalid = [
      () => small.createRun('a.b', { workflow: 'w' }),
      () => small.createRun('*', { workflow: 'w' }),
      () => small.createRun('x'.repeat(65), { workflow: 'w' }),
      () => small.createRun(runId(), { workflow: '' }),
      () => small.createRun(runId(), { workflow: 'w', params: { n: 1n } as never }),
      () => small.createRun(runId(), { workflow: 'w', extra: true } as never),
      () => small.createRun(runId(), { workflow: 'w', params: { big: 'x'.repeat(300 * 1024) } }),
      () => small.getRun(''),
      () => small.updateRunStatus(run, ''),
      () => small.updateRunStatus(run, 's'.repeat(65)),
      () => small.saveCheckpoint(run, 'a>b', bytes('x')),
      () => small.saveCheckpoint('bad id', 'n', bytes('x')),
      () => small.saveCheckpoint(run, 'n', new Uint8Array(1025)),
      () => small.saveCheckpoint(run, 'n', 'not bytes' as never),
      () => small.saveCheckpoint(run, 'n', bytes('x'), { epoch: 1 } as never),
      () => small.loadCheckpoint(run, 0),
      () => small.loadCheckpoint(run, 1.5),
      () => small.loadLatest(run, 'n.m'),
      () => small.appendEvent(run, ''),
      () => small.appendEvent(run, 'big', 'x'.repeat(600)),
      () => small.appendEvent(run, 'id', null, { id: 'has space' }),
      () => small.eventsSince(run, 0, 0),
      () => small.eventsSince(run, 0, 1001),
      () => small.eventsSince(run, -1, 10),
      () => small.eventsSince(run, 0, 2.5),
      () => small.deleteRun('a.*'),
    ];
    for (const [i, attempt] of invalid.entries()) expect(await caught(attempt()), `case ${i}`).toBeInstanceOf(StoreValidationError);
    await expect(openCheckpointStore(nc, { ...FAST, maxStateBytes: -1 })).rejects.toBeInstanceOf(StoreValidationError);
    expect(await caught(small.saveCheckpoint(run, 'n', bytes('x'), { epoch: '1' }))).toBeUndefined();
    await small.deleteRun(run);
    await small.createRun(run, { workflow: 'w' });

    const ghost = runId('ghost');
    for (const attempt of [() => small.updateRunStatus(ghost, 'failed'), () => small.saveCheckpoint(ghost, 'n', bytes('x')), () => small.appendEvent(ghost, 'x')]) {
      const err = await caught(attempt());
      expect(err).toBeInstanceOf(UnknownRunError);
      expect((err as UnknownRunError).runId).toBe(ghost);
    }
    expect(await footprint(ghost, small)).toMatchObject({ keys: [], objects: [], events: 0 });
    expect(await footprint(run, small)).toEqual(before);
    expect((await small.getRun(run))?.last_seq).toBe(0);
  });

  it('rides out a server restart on the same connection, and fails fast while the server is down', async () => {
    const steady = await openCheckpointStore(nc, { ...FAST, operationTimeoutMs: 15_000 });
    const run = runId('restart');
    await steady.createRun(run, { workflow: 'w' });
    await steady.saveCheckpoint(run, 'n', bytes('before'));
    const cursor = await steady.appendEvent(run, 'before');

    // Writers keep saving while the server goes away and comes back.
    let stop = false;
    const writers = Array.from({ length: 3 }, async (_, w) => {
      const seqs: number[] = [];
      for (let i = 0; !stop || i < 3; i++) seqs.push((await steady.saveCheckpoint(run, `w${w}`, bytes(`${w}/${i}`))).seq);
      return seqs;
    });
    await new Promise((resolve) => setTimeout(resolve, 100));
    await server.restart();
    stop = true;
    const seqs = (await Promise.all(writers)).flat();

    // No eventually(): the store's own retries carry every operation over the reconnect.
    const listed = (await steady.listRunCheckpoints(run)).map((m) => m.seq);
    for (const seq of seqs) expect(listed).toContain(seq);
    expect(new Set(seqs).size).toBe(seqs.length);
    expect(text((await steady.loadCheckpoint(run, 1))!.state)).toBe('before');
    const after = await steady.appendEvent(run, 'after');
    expect((await steady.eventsSince(run, cursor, 10)).events.map((e) => e.seq)).toEqual([after]);
    expect((await steady.updateRunStatus(run, 'succeeded')).status).toBe('succeeded');

    const short = await openCheckpointStore(nc, { requestTimeoutMs: 200, operationTimeoutMs: 1_000 });
    await server.stop();
    try {
      const started = Date.now();
      const errors = await Promise.all([
        caught(short.saveCheckpoint(run, 'n', bytes('lost?'))),
        caught(short.loadLatest(run, 'n')),
        caught(short.listRunCheckpoints(run)),
        caught(short.eventsSince(run, 0, 10)),
        caught(short.deleteRun(run)),
      ]);
      for (const err of errors) expect(err).toBeInstanceOf(StoreUnavailableError);
      expect(Date.now() - started).toBeLessThan(1_000 + 700);
    } finally {
      await server.restart();
    }
    expect((await steady.getRun(run))?.status).toBe('succeeded');
  });
});
