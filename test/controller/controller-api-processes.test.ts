/**
 * trigger_checkpoint, job metrics and the Prometheus text with the controller and a worker as their own
 * processes (`weir controller`, `weir worker`), on a real nats-server.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import { afterAll, describe, expect } from 'vitest';
import {
  controllerMetricsReplySchema,
  jobCheckpointsReplySchema,
  jobMetricsReplySchema,
  jobViewSchema,
  subjects,
  triggerCheckpointReplySchema,
  type PipelineInput,
} from '../../src/protocol/index.js';
import { requestJson, type Reply } from '../support/cluster.js';
import { eventually } from '../support/nats.js';
import { testWithNatsServer } from '../support/nats-fixtures.js';
import { killAll, WeirProcess } from '../support/processes.js';

const PIPELINE: PipelineInput = {
  name: 'process-api',
  graph: {
    nodes: [
      { id: 'src', operator: 'impulse', parallelism: 2, config: { rate_per_sec: 100 } },
      { id: 'key', operator: 'map-key', parallelism: 2, config: { modulo: 3 } },
      { id: 'out', operator: 'log', parallelism: 1, config: {} },
    ],
    edges: [
      { from: 'src', to: 'key', kind: 'forward' },
      { from: 'key', to: 'out', kind: 'shuffle' },
    ],
  },
  checkpoint_interval_micros: 3_600_000_000,
};

const it = testWithNatsServer();

describe('controller API subjects with controller and worker processes', () => {
  let client: NatsConnection;
  const processes = new Set<WeirProcess>();
  let worker: WeirProcess;
  let jobId: string;

  const request = (subject: string, body: unknown): Promise<Reply> => requestJson(client, subject, body, 8_000);

  it.beforeAll(async ({ natsServer: server, connect }) => {
    client = await connect('client');
    const controller = new WeirProcess('controller', ['controller', '--nats', server.url, '--heartbeat-interval', '300']);
    processes.add(controller);
    await controller.waitForLog('controller started', {}, 60_000);
    worker = new WeirProcess('w1', ['worker', '--slots', '4', '--id', 'w1', '--nats', server.url]);
    processes.add(worker);
    await worker.waitForLog('registered with the controller', {}, 60_000);
  }, 120_000);

  afterAll(async () => {
    await killAll(processes);
  });

  it('a Running job: a trigger takes a manual checkpoint, metrics show its records, the Prometheus text its state', async () => {
    const created = await request(subjects.apiJobsCreate(), PIPELINE);
    expect(created.error).toBeUndefined();
    jobId = created['job_id'] as string;
    await eventually(async () => expect(jobViewSchema.parse(await request(subjects.apiJobGet(jobId), { v: 1 })).state).toBe('Running'), { timeoutMs: 30_000, intervalMs: 100 });

    const reply = triggerCheckpointReplySchema.parse(await request(subjects.apiJobTriggerCheckpoint(jobId), { v: 1, trigger_id: 'proc-1' }));
    expect(reply).toMatchObject({ job_id: jobId, started: true, trigger_id: 'proc-1' });
    expect(triggerCheckpointReplySchema.parse(await request(subjects.apiJobTriggerCheckpoint(jobId), { v: 1, trigger_id: 'proc-1' }))).toMatchObject({ epoch: reply.epoch, started: false });
    await eventually(
      async () => {
        const history = jobCheckpointsReplySchema.parse(await request(subjects.apiJobCheckpoints(jobId), { v: 1 })).data;
        expect(history.filter((c) => c.checkpoint_type === 'manual')).toMatchObject([{ epoch: reply.epoch, status: 'ready' }]);
      },
      { timeoutMs: 20_000, intervalMs: 200 },
    );

    // The worker's metrics every 2 s (and heartbeats): rates once two samples are ≥ 2 s apart or so.
    const metrics = await eventually(
      async () => {
        const m = jobMetricsReplySchema.parse(await request(subjects.apiJobMetrics(jobId), { v: 1 }));
        expect(m.data[0]!.subtasks.every((s) => s.records_out_rate > 0)).toBe(true);
        return m;
      },
      { timeoutMs: 20_000, intervalMs: 250 },
    );
    expect(metrics.data.map((o) => [o.node_id, o.operator, o.parallelism])).toEqual([
      ['src', 'impulse', 2],
      ['key', 'map-key', 2],
      ['out', 'log', 1],
    ]);
    expect(metrics.data[2]!.records_in).toBeGreaterThan(0);

    const text = controllerMetricsReplySchema.parse(await request(subjects.apiMetrics(), { v: 1 })).text;
    expect(text).toMatch(/^weir_jobs\{state="Running"\} 1$/m);
    expect(text).toMatch(/^weir_workers\{live="true"\} 1$/m);
    expect(text).toMatch(/^weir_checkpoints_total\{outcome="completed",type="manual"\} 1$/m);
    expect(text).toMatch(/^weir_controller_requests_total\{kind="trigger_checkpoint"\} 2$/m);
  }, 90_000);

  it('a trigger waiting for a checkpoint in flight holds up no config update of the same job', async () => {
    const trigger = (body: object) => request(subjects.apiJobTriggerCheckpoint(jobId), { v: 1, ...body });
    // A stopped worker answers no barrier request: the first trigger's checkpoint stays in flight.
    process.kill(worker.pid!, 'SIGSTOP');
    try {
      expect(triggerCheckpointReplySchema.parse(await trigger({})).started).toBe(true);
      const answered: string[] = [];
      const behind = trigger({ trigger_id: 'behind' }).then((reply) => {
        answered.push('trigger');
        return reply;
      });
      // Sent after the trigger on the same connection, so the controller has the trigger first.
      const update = await request(subjects.apiJobConfig(jobId), { v: 1, checkpoint_interval_micros: 3_500_000_000 });
      answered.push('config');
      expect(update.error).toBeUndefined();
      const reply = await behind;
      expect(answered).toEqual(['config', 'trigger']);
      // Either way it answered: started once the first failed, or conflict after waiting 3 s.
      if (reply.error === undefined) expect(triggerCheckpointReplySchema.parse(reply).started).toBe(true);
      else expect(reply.error.code).toBe('conflict');
    } finally {
      process.kill(worker.pid!, 'SIGCONT');
    }
  }, 60_000);
});
