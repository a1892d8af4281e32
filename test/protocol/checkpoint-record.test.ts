import { describe, expect, it } from 'vitest';
import { CHECKPOINT_FORMAT_VERSION, STATE_SCHEMA_VERSION, isUuidV7, readCheckpointRecord, uuidv7 } from '../../src/protocol/index.js';

const T = 1_753_000_000_000_000;
const v1 = {
  job_id: 'job-1',
  generation: 2,
  epoch: 7,
  min_epoch: 0,
  kind: 'periodic',
  start_time: T,
  completed_at: T + 4_000,
  operators: [],
  subtasks: [{ worker_id: 'w', node_id: 'cnt', subtask_index: 0, bytes: 9, start_time: T, finish_time: T + 1, table_metadata: { state: { counts: { a: 1 } } } }],
  spans: [],
};
const v2 = { ...v1, v: 2, id: uuidv7(), schema_version: 1, created_at: T + 4_000 };
const v3 = { ...v2, v: 3, status: 'committing', subtasks: [{ ...v1.subtasks[0]!, commit_data: { rows: [1, 2] } }] };

describe('uuidv7', () => {
  it('is a v7 UUID whose first 48 bits are the time in ms', () => {
    // Later than any id made so far: ids never go back in time within a process.
    const at = Date.now() + 86_400_000;
    const id = uuidv7(at);
    expect(isUuidV7(id)).toBe(true);
    expect(parseInt(id.replaceAll('-', '').slice(0, 12), 16)).toBe(at);
  });

  it('sorts in creation order, also within one millisecond, and never repeats', () => {
    const ids = Array.from({ length: 5_000 }, () => uuidv7(1_700_000_000_000));
    expect(new Set(ids).size).toBe(ids.length);
    expect([...ids].sort()).toEqual(ids);
    expect(uuidv7(1_700_000_000_000 - 1_000) > ids.at(-1)!).toBe(true); // a clock step back keeps the order
  });

  it('stays in order past 4,096 ids in one millisecond, also when the clock then catches up', () => {
    const ms = 1_800_000_000_000;
    const burst = Array.from({ length: 4_096 * 3 + 7 }, () => uuidv7(ms));
    const caughtUp = [uuidv7(ms + 1), uuidv7(ms + 2), uuidv7(ms + 3), uuidv7(ms + 4)];
    const ids = [...burst, ...caughtUp];
    expect(new Set(ids).size).toBe(ids.length);
    expect([...ids].sort()).toEqual(ids);
    const msOf = (id: string) => parseInt(id.replaceAll('-', '').slice(0, 12), 16);
    expect(msOf(burst.at(-1)!)).toBe(ms + 3); // the counter carried into the next ms three times
    expect(msOf(caughtUp.at(-1)!)).toBe(ms + 4);
  });
});

describe('readCheckpointRecord', () => {
  it('reads the current format as it is', () => {
    const read = readCheckpointRecord(v3, 'job-1.7');
    expect(read).toMatchObject({ ok: true, migratedFrom: null, record: { v: CHECKPOINT_FORMAT_VERSION, id: v3.id, epoch: 7, status: 'committing', subtasks: v3.subtasks } });
  });

  it('migrates a v2 record as ready: it was only written once complete', () => {
    const read = readCheckpointRecord(v2, 'job-1.7');
    expect(read).toMatchObject({ ok: true, migratedFrom: 2, record: { v: 3, id: v2.id, status: 'ready', epoch: 7 } });
  });

  it('refuses a status it does not know', () => {
    const read = readCheckpointRecord({ ...v3, status: 'archived' }, 'job-1.7');
    expect(read.ok ? '' : read.message).toMatch(/status/);
  });

  it('migrates a v1 record: same fields, a stable v7 id at its completion time, state schema 1', () => {
    const first = readCheckpointRecord(v1, 'job-1.7');
    const again = readCheckpointRecord(structuredClone(v1), 'job-1.7');
    if (!first.ok || !again.ok) throw new Error('expected ok');
    expect(first.migratedFrom).toBe(1);
    expect(first.record).toMatchObject({ v: 3, status: 'ready', schema_version: 1, created_at: v1.completed_at, job_id: 'job-1', epoch: 7, subtasks: v1.subtasks });
    expect(isUuidV7(first.record.id)).toBe(true);
    expect(first.record.id).toBe(again.record.id);
    expect(parseInt(first.record.id.replaceAll('-', '').slice(0, 12), 16)).toBe(Math.floor(v1.completed_at / 1000));
  });

  it('refuses a newer format or state schema with a message that says what to do', () => {
    const newer = readCheckpointRecord({ ...v3, v: CHECKPOINT_FORMAT_VERSION + 1 }, 'job-1.7');
    expect(newer).toEqual({ ok: false, message: `checkpoint record job-1.7 has format v${CHECKPOINT_FORMAT_VERSION + 1}, newer than this weir reads (v${CHECKPOINT_FORMAT_VERSION}): upgrade weir to restore it` });
    const state = readCheckpointRecord({ ...v3, schema_version: STATE_SCHEMA_VERSION + 1 }, 'job-1.7');
    expect(state.ok ? '' : state.message).toMatch(/state schema v2, newer than this weir reads \(v1\)/);
  });

  it('rejects what is not a record, naming the field', () => {
    expect(readCheckpointRecord([], 'k')).toEqual({ ok: false, message: 'checkpoint record k is not an object' });
    expect(readCheckpointRecord({ ...v3, v: 'two' }, 'k').ok).toBe(false);
    const bad = readCheckpointRecord({ ...v3, id: 'not-a-uuid' }, 'k');
    expect(bad.ok ? '' : bad.message).toMatch(/id: expected a UUID v7/);
    const noSubtasks = readCheckpointRecord({ ...v3, subtasks: undefined }, 'k');
    expect(noSubtasks.ok ? '' : noSubtasks.message).toMatch(/subtasks/);
  });
});
