import { jetstream } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { describe, expect } from 'vitest';
import { CHECKPOINT_FORMAT_VERSION, CHECKPOINTS_KV_BUCKET, checkpointKey, uuidv7 } from '../../src/protocol/index.js';
import { checkpointState } from '../../src/worker/process.js';
import { testWithNatsServer } from '../support/nats-fixtures.js';

const T = 1_753_000_000_000_000;
const subtasks = [
  { worker_id: 'w', node_id: 'cnt', subtask_index: 0, bytes: 9, start_time: T, finish_time: T + 1, table_metadata: { state: { counts: { a: 1 } } } },
  { worker_id: 'w', node_id: 'cnt', subtask_index: 1, bytes: 9, start_time: T, finish_time: T + 1, table_metadata: { state: { counts: { b: 2 } } } },
];
const v1 = { job_id: 'job-1', generation: 1, epoch: 3, min_epoch: 0, kind: 'periodic', start_time: T, completed_at: T + 9, operators: [], subtasks, spans: [] };

const it = testWithNatsServer();

describe('a worker reading its restore record', () => {
  let nc: NatsConnection;
  let kv: KV;

  it.beforeAll(async ({ connect }) => {
    nc = await connect('worker');
    kv = await new Kvm(jetstream(nc)).create(CHECKPOINTS_KV_BUCKET, { history: 1 });
  });

  it('reads the current format and a v1 record alike', async () => {
    await kv.put(checkpointKey('job-1', 3), JSON.stringify(v1));
    await kv.put(checkpointKey('job-1', 4), JSON.stringify({ ...v1, epoch: 4, v: CHECKPOINT_FORMAT_VERSION, id: uuidv7(), status: 'ready', schema_version: 1, created_at: T }));
    for (const epoch of [3, 4]) {
      const { state, parallelism } = await checkpointState(nc, 'job-1', epoch);
      expect(parallelism.get('cnt')).toBe(2);
      expect([...state.values()]).toEqual([{ counts: { a: 1 } }, { counts: { b: 2 } }]);
    }
  });

  it('refuses a record of a newer format, saying so', async () => {
    await kv.put(checkpointKey('job-1', 5), JSON.stringify({ ...v1, epoch: 5, v: CHECKPOINT_FORMAT_VERSION + 1, id: uuidv7(), schema_version: 1, created_at: T }));
    await expect(checkpointState(nc, 'job-1', 5)).rejects.toThrow(`checkpoint record job-1.5 has format v${CHECKPOINT_FORMAT_VERSION + 1}, newer than this weir reads`);
  });
});
