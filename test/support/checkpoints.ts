import { Kvm } from '@nats-io/kv';
import { Objm } from '@nats-io/obj';
import type { NatsConnection } from '@nats-io/transport-node';
import type { CheckpointRecord } from '../../src/controller/job-runtime.js';
import { CHECKPOINTS_KV_BUCKET } from '../../src/protocol/index.js';
import { checkpointStoreNames, openCheckpointStore, type CheckpointStoreNames } from '../../src/checkpoint/index.js';
import { restoreSnapshot } from '../../src/worker/subtask-state.js';

/** A `ready` periodic record of generation 1 as the controller writes it, its times all `epoch`; `subtasks` default none. */
export function recordFixture(jobId: string, epoch: number, fields: Partial<CheckpointRecord> = {}): CheckpointRecord {
  return {
    v: 3,
    id: `0190f0f0-0000-7000-8000-${String(epoch).padStart(12, '0')}`,
    status: 'ready',
    schema_version: 1,
    created_at: epoch,
    job_id: jobId,
    generation: 1,
    epoch,
    min_epoch: 0,
    kind: 'periodic',
    start_time: epoch,
    completed_at: epoch,
    operators: [],
    subtasks: [],
    spans: [],
    ...fields,
  };
}

/** The checkpoint records the bucket holds for a job, oldest epoch first (keys are slots, not epochs). */
export async function storedRecords(nc: NatsConnection, jobId: string): Promise<CheckpointRecord[]> {
  const kv = await new Kvm(nc).open(CHECKPOINTS_KV_BUCKET);
  // nats.js's keys() goes on delivering until nothing is pending, so a slot rewritten meanwhile comes twice:
  // read each key once, or one slot would count as two records (its epoch before and after the rewrite).
  const keys = new Set<string>();
  for await (const key of await kv.keys(`${jobId}.*`)) keys.add(key);
  const out: CheckpointRecord[] = [];
  for (const key of keys) {
    const entry = await kv.get(key);
    if (entry?.operation === 'PUT') out.push(entry.json<CheckpointRecord>());
  }
  return out.sort((a, b) => a.epoch - b.epoch);
}

export async function storedEpochs(nc: NatsConnection, jobId: string): Promise<number[]> {
  return (await storedRecords(nc, jobId)).map((r) => r.epoch);
}

/** One epoch's record; throws when its slot holds another epoch or nothing. */
export async function storedRecord(nc: NatsConnection, jobId: string, epoch: number): Promise<CheckpointRecord> {
  const record = (await storedRecords(nc, jobId)).find((r) => r.epoch === epoch);
  if (record === undefined) throw new Error(`no record of epoch ${epoch}`);
  return record;
}

/** A subtask's snapshot in a record, read from the checkpoint store (or inline, as older records kept it). */
export async function subtaskSnapshot(nc: NatsConnection, record: CheckpointRecord, node: string, index = 0): Promise<unknown> {
  const metadata = record.subtasks.find((s) => s.node_id === node && s.subtask_index === index)?.table_metadata;
  if (metadata === undefined) throw new Error(`no subtask ${node}[${index}] in the record of epoch ${record.epoch}`);
  if (!('state_ref' in metadata)) return metadata['state'];
  return (await restoreSnapshot(await openCheckpointStore(nc), metadata)).snapshot;
}

/** The bytes with the first one flipped (an empty state gets one byte). */
function damaged(state: Uint8Array): Uint8Array {
  if (state.byteLength === 0) return new Uint8Array([0]);
  const out = new Uint8Array(state);
  out[0] = out[0]! ^ 0xff;
  return out;
}

/**
 * Damages checkpoint `seq` of a run behind the store's back, as a disk or an operator could: a state
 * inline in its record gets a flipped byte in the record (and in the latest pointer's copy, if that
 * points at it), digest unchanged; a state in the object store gets its blob rewritten with a flipped
 * byte. Either way the next load must throw CorruptCheckpointError. Returns where the state was.
 */
export async function corruptCheckpoint(nc: NatsConnection, run: string, seq: number, names: CheckpointStoreNames = checkpointStoreNames()): Promise<'inline' | 'object'> {
  const kv = await new Kvm(nc).open(names.metaBucket);
  const key = `cp.${run}.${seq}`;
  const entry = await kv.get(key);
  if (entry?.operation !== 'PUT') throw new Error(`no checkpoint ${seq} in run ${run}`);
  const record = entry.json<{ node_id: string; object?: string; inline_state?: string }>();
  if (record.inline_state !== undefined) {
    const data = JSON.stringify({ ...record, inline_state: Buffer.from(damaged(Buffer.from(record.inline_state, 'base64'))).toString('base64') });
    await kv.put(key, data);
    const pointerKey = `latest.${run}.${record.node_id}`;
    const pointer = await kv.get(pointerKey);
    if (pointer?.operation === 'PUT' && pointer.json<{ seq: number }>().seq === seq) await kv.put(pointerKey, data);
    return 'inline';
  }
  if (record.object === undefined) throw new Error(`checkpoint ${seq} in run ${run} has neither an inline state nor a blob`);
  const os = await new Objm(nc).open(names.stateBucket);
  const blob = await os.getBlob(record.object);
  if (blob === null) throw new Error(`checkpoint ${seq} in run ${run}: blob ${record.object} is missing`);
  await os.putBlob({ name: record.object }, damaged(blob));
  return 'object';
}
