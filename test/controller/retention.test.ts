/**
 * Checkpoint retention on a real nats-server: records whose subtasks keep incremental state in the
 * checkpoint store, cleaned up as the controller does it.
 */
import { describe, expect } from 'vitest';
import { openCheckpointStore, type CheckpointStore } from '../../src/checkpoint/index.js';
import type { CheckpointRecord } from '../../src/controller/checkpoint-coordinator.js';
import { cleanupCheckpoints, stateRefs } from '../../src/controller/retention.js';
import { ensureRun, restoreSnapshot, SubtaskStateWriter, type StoredState } from '../../src/worker/subtask-state.js';
import { recordFixture } from '../support/checkpoints.js';
import { testWithNatsServer } from '../support/nats-fixtures.js';

const it = testWithNatsServer();
let store: CheckpointStore;

it.beforeAll(async ({ connect }) => {
  store = await openCheckpointStore(await connect('retention-test'));
});

function record(jobId: string, epoch: number, stored: StoredState, status: CheckpointRecord['status'] = 'ready'): CheckpointRecord {
  return recordFixture(jobId, epoch, {
    status,
    subtasks: [{ worker_id: 'w', node_id: 'cnt', subtask_index: 0, bytes: 1, start_time: 0, finish_time: 0, table_metadata: { ...stored } }],
  });
}

/** A count subtask's snapshot at epoch e: key `k<i>` counted e times for i < e, so each epoch adds a key and changes them all. */
const snapshotAt = (epoch: number) => ({ counts: Object.fromEntries(Array.from({ length: epoch }, (_, i) => [`k${i}`, epoch])) });

/** Epochs 1..n of one job, checkpointed with short delta chains; the records as the controller keeps them. */
async function history(jobId: string, n: number): Promise<{ records: CheckpointRecord[]; writer: SubtaskStateWriter }> {
  await ensureRun(store, jobId);
  const writer = new SubtaskStateWriter(store, jobId, 'cnt', 0, undefined, { maxDeltas: 2 });
  const records: CheckpointRecord[] = [];
  for (let epoch = 1; epoch <= n; epoch++) records.push(record(jobId, epoch, (await writer.checkpoint(epoch, snapshotAt(epoch))).stored));
  return { records, writer };
}

async function restores(r: CheckpointRecord): Promise<boolean> {
  const { snapshot } = await restoreSnapshot(store, r.subtasks[0]!.table_metadata);
  expect(snapshot).toEqual(snapshotAt(r.epoch));
  return true;
}

describe('checkpoint cleanup', () => {
  it('keeps the newest K and what they reference, compacts the rest, and reports the new minimum epoch', async () => {
    const { records } = await history('ret-1', 12);
    const rewritten: CheckpointRecord[] = [];
    const before = (await store.listRunCheckpoints('ret-1')).length;
    const result = await cleanupCheckpoints({ store, records, keep: 3, pinned: new Set(), rewrite: (r) => Promise.resolve(void rewritten.push(r)) });
    expect(result.retained).toEqual([10, 11, 12]);
    expect(result.minEpoch).toBe(10);
    expect(result.deleted.length).toBeGreaterThan(0);
    expect((await store.listRunCheckpoints('ret-1')).length).toBe(before - result.deleted.length);
    for (const r of records.slice(9)) expect(await restores(r)).toBe(true);
    // Epoch 9's chain was not all kept: it is no longer restorable, and its record says so.
    expect(rewritten.filter((r) => r.status === 'compacted').map((r) => r.epoch)).toEqual([9, 8, 7, 6, 5, 4, 3, 2, 1]);
    expect(rewritten.filter((r) => r.status === 'compacting')).toHaveLength(9);
  });

  it('never deletes what a restore in progress reads, nor a committing epoch, even when it races the restore', async () => {
    const { records } = await history('ret-2', 12);
    records[4] = { ...records[4]!, status: 'committing' };
    // The restore of epoch 2 starts first and is still reading when the cleanup runs.
    const [restored, result] = await Promise.all([
      restores(records[1]!),
      cleanupCheckpoints({ store, records, keep: 2, pinned: new Set([2]), rewrite: () => Promise.resolve() }),
    ]);
    expect(restored).toBe(true);
    expect(result.retained).toEqual([2, 5, 11, 12]);
    expect(result.minEpoch).toBe(2);
    // And after the cleanup: every retained epoch still restores.
    for (const epoch of result.retained) expect(await restores(records[epoch - 1]!)).toBe(true);
    const referenced = new Set(result.retained.flatMap((e) => stateRefs(records[e - 1]!)).flatMap((ref) => Object.values(ref.tables).flatMap((t) => [t.full.seq, ...t.deltas.map((d) => d.seq)])));
    expect(result.deleted.some((seq) => referenced.has(seq))).toBe(false);
  });

  it('leaves a checkpoint in flight alone: blobs newer than the retained ones are not touched', async () => {
    const { records, writer } = await history('ret-3', 6);
    // Epoch 7 is written by the subtask but has no record yet (the checkpoint is in flight).
    const inFlight = (await writer.checkpoint(7, snapshotAt(7))).stored;
    await cleanupCheckpoints({ store, records, keep: 1, pinned: new Set(), rewrite: () => Promise.resolve() });
    expect(await restores(record('ret-3', 7, inFlight))).toBe(true);
  });

  it('records without stored state (as before the checkpoint store) leave nothing to do', async () => {
    const legacy = { ...record('ret-4', 1, {} as StoredState), subtasks: [{ worker_id: 'w', node_id: 'cnt', subtask_index: 0, bytes: 1, start_time: 0, finish_time: 0, table_metadata: { state: { counts: {} } } }] };
    expect(await cleanupCheckpoints({ store, records: [legacy], keep: 1, pinned: new Set(), rewrite: () => Promise.reject(new Error('no rewrite expected')) })).toEqual({
      deleted: [],
      retained: [1],
      minEpoch: 1,
    });
    await expect(cleanupCheckpoints({ store, records: [legacy], keep: 0, pinned: new Set(), rewrite: () => Promise.resolve() })).rejects.toThrow(RangeError);
  });
});
