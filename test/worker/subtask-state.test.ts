/** A subtask's snapshot in the checkpoint store, written incrementally, on a real nats-server. */
import { describe, expect } from 'vitest';
import { openCheckpointStore, type CheckpointStore } from '../../src/checkpoint/index.js';
import { ensureRun, restoreSnapshot, SubtaskStateWriter, VALUE_TABLE } from '../../src/worker/subtask-state.js';
import { testWithNatsServer } from '../support/nats-fixtures.js';

const it = testWithNatsServer();
let store: CheckpointStore;

it.beforeAll(async ({ connect }) => {
  store = await openCheckpointStore(await connect('subtask-state-test'));
});

describe('SubtaskStateWriter', () => {
  it('lays a map-of-maps snapshot onto tables and writes only what changed', async () => {
    await ensureRun(store, 'job-t');
    await ensureRun(store, 'job-t'); // a second worker of the job: the run is there already
    const writer = new SubtaskStateWriter(store, 'job-t', 'cnt', 0);
    const many = Object.fromEntries(Array.from({ length: 200 }, (_, i) => [`k${i}`, i]));
    const first = await writer.checkpoint(1, { counts: many, seen: {} });
    expect(first.stored.tables).toEqual(['counts', 'seen']);
    const second = await writer.checkpoint(2, { counts: { ...many, k3: 1_000 }, seen: {} });
    // One changed key: a delta of a few dozen bytes, not the 200 keys again.
    expect(second.bytes).toBeLessThan(first.bytes / 10);
    const deleted = { ...many };
    delete deleted['k7'];
    const third = await writer.checkpoint(3, { counts: deleted, seen: { x: { at: 1 } } });

    expect((await restoreSnapshot(store, first.stored)).snapshot).toEqual({ counts: many, seen: {} });
    expect((await restoreSnapshot(store, second.stored)).snapshot).toEqual({ counts: { ...many, k3: 1_000 }, seen: {} });
    expect((await restoreSnapshot(store, third.stored)).snapshot).toEqual({ counts: deleted, seen: { x: { at: 1 } } });
  });

  it('keeps any other snapshot as one value, and continues a restored chain in a new generation', async () => {
    await ensureRun(store, 'job-v');
    const writer = new SubtaskStateWriter(store, 'job-v', 'src', 1);
    const stored = (await writer.checkpoint(4, { next_counter: 41 })).stored;
    expect(stored.tables).toBeNull();
    expect(Object.keys(stored.state_ref.tables)).toEqual([VALUE_TABLE]);
    for (const snapshot of [null, 7, 'text', [1, 2], { nested: [1] }]) {
      const w = new SubtaskStateWriter(store, 'job-v', 'other', 0);
      expect((await restoreSnapshot(store, (await w.checkpoint(1, snapshot)).stored)).snapshot).toEqual(snapshot);
    }

    const restored = await restoreSnapshot(store, stored);
    const next = new SubtaskStateWriter(store, 'job-v', 'src', 1, restored);
    const continued = (await next.checkpoint(5, { next_counter: 43 })).stored;
    // A delta on the restored chain, not a new full snapshot.
    expect(continued.state_ref.tables[VALUE_TABLE]).toMatchObject({ full: stored.state_ref.tables[VALUE_TABLE]!.full, deltas: [expect.objectContaining({ epoch: 5 })] });
    expect((await restoreSnapshot(store, continued)).snapshot).toEqual({ next_counter: 43 });
  });

  it('writes epochs in the order they were taken, even when asked back to back', async () => {
    await ensureRun(store, 'job-o');
    const writer = new SubtaskStateWriter(store, 'job-o', 'cnt', 0, undefined, { maxDeltas: 1 });
    const results = await Promise.all([1, 2, 3, 4].map((epoch) => writer.checkpoint(epoch, { counts: { a: epoch } })));
    expect(results.map((r) => r.stored.state_ref.epoch)).toEqual([1, 2, 3, 4]);
    // With one delta per chain, epoch 3 compacted its chain into a full snapshot.
    expect(results[2]!.stored.compaction).toMatchObject({ start_time: expect.any(Number) as number });
    for (const [i, r] of results.entries()) expect((await restoreSnapshot(store, r.stored)).snapshot).toEqual({ counts: { a: i + 1 } });
  });
});
