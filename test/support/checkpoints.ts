import { Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import type { CheckpointRecord } from '../../src/controller/job-runtime.js';
import { CHECKPOINTS_KV_BUCKET } from '../../src/protocol/index.js';
import { openCheckpointStore } from '../../src/checkpoint/index.js';
import { restoreSnapshot } from '../../src/worker/subtask-state.js';

/** The checkpoint records the bucket holds for a job, oldest epoch first (keys are slots, not epochs). */
export async function storedRecords(nc: NatsConnection, jobId: string): Promise<CheckpointRecord[]> {
  const kv = await new Kvm(nc).open(CHECKPOINTS_KV_BUCKET);
  const out: CheckpointRecord[] = [];
  for await (const key of await kv.keys(`${jobId}.*`)) {
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
