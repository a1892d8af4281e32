/**
 * The controller's trigger_checkpoint, job metrics and Prometheus metrics subjects, on a real nats-server
 * with a real worker.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import { afterAll, describe, expect } from 'vitest';
import type { JobPolicy, JobState } from '../../machines/job/types.js';
import type { Controller } from '../../src/controller/controller.js';
import {
  controllerMetricsReplySchema,
  jobCheckpointsReplySchema,
  jobMetricsReplySchema,
  jobViewSchema,
  subjects,
  triggerCheckpointReplySchema,
  type Checkpoint,
} from '../../src/protocol/index.js';
import type { WorkerHandle } from '../../src/worker/process.js';
import { requestJson, startTestController, startTestWorker, TEST_POLICY, untilState, type Reply } from '../support/cluster.js';
import { eventually } from '../support/nats.js';
import { testWithNatsServer } from '../support/nats-fixtures.js';
import { impulseCountPipeline } from '../support/pipelines.js';

const POLICY: Partial<JobPolicy> = { ...TEST_POLICY, stopTimeoutMs: 30_000 };

/** impulse ×2 → map-key ×2 → count ×1 → preview ×1; periodic checkpoints hourly, so only triggers take them. */
const pipeline = (name: string) => impulseCountPipeline({ name, rate: 200, modulo: 5, nodeParallelism: { src: 2, key: 2 }, checkpointIntervalMs: 3_600_000 });

const it = testWithNatsServer();

describe('controller: trigger_checkpoint, job metrics, Prometheus metrics', () => {
  let nc: NatsConnection;
  let client: NatsConnection;
  let controller: Controller;
  let worker: WorkerHandle;
  let running: string;

  const request = (subject: string, body: unknown): Promise<Reply> => requestJson(client, subject, body, 8_000);

  async function reach(jobId: string, state: JobState): Promise<void> {
    await untilState(async () => jobViewSchema.parse(await request(subjects.apiJobGet(jobId), { v: 1 })), state);
  }

  async function create(name: string): Promise<string> {
    const reply = await request(subjects.apiJobsCreate(), pipeline(name));
    expect(reply.error).toBeUndefined();
    return reply['job_id'] as string;
  }

  async function history(jobId: string): Promise<Checkpoint[]> {
    return jobCheckpointsReplySchema.parse(await request(subjects.apiJobCheckpoints(jobId), { v: 1 })).data;
  }

  const trigger = (jobId: string, triggerId?: string) => request(subjects.apiJobTriggerCheckpoint(jobId), { v: 1, ...(triggerId === undefined ? {} : { trigger_id: triggerId }) });

  async function metricsText(): Promise<string> {
    return controllerMetricsReplySchema.parse(await request(subjects.apiMetrics(), { v: 1 })).text;
  }

  /** The value of one exposition line, e.g. `weir_jobs{state="Running"}`; undefined when absent. */
  function sample(text: string, series: string): number | undefined {
    const line = text.split('\n').find((l) => l.startsWith(`${series} `));
    return line === undefined ? undefined : Number(line.slice(series.length + 1));
  }

  it.beforeAll(async ({ connect }) => {
    nc = await connect('controller');
    client = await connect('client');
    controller = await startTestController(nc, { heartbeatTimeoutMs: 5_000, policy: POLICY });
    worker = await startTestWorker(await connect('worker'));
    running = await create('running');
    await reach(running, 'Running');
  }, 60_000);

  afterAll(async () => {
    await controller?.stop();
    await worker?.stop('immediate');
  });

  it('a trigger on a Running job starts a new epoch at once; it shows as a manual checkpoint and completes', async () => {
    const before = await history(running);
    const reply = triggerCheckpointReplySchema.parse(await trigger(running));
    expect(reply).toMatchObject({ v: 1, job_id: running, started: true });
    expect(reply.trigger_id).toBeUndefined();
    expect(before.every((c) => c.epoch < reply.epoch)).toBe(true);
    await eventually(
      async () => {
        const found = (await history(running)).find((c) => c.epoch === reply.epoch);
        expect(found).toMatchObject({ checkpoint_type: 'manual', status: 'ready' });
      },
      { timeoutMs: 15_000, intervalMs: 100 },
    );
    const details = await request(subjects.apiJobCheckpoint(running), { v: 1, epoch: reply.epoch });
    expect(details['checkpoint']).toMatchObject({ checkpoint_type: 'manual', status: 'ready' });
  });

  it('the same trigger_id, repeated and concurrent, starts one checkpoint; repeats answer started: false with its epoch', async () => {
    const first = triggerCheckpointReplySchema.parse(await trigger(running, 'client-key-1'));
    expect(first).toMatchObject({ started: true, trigger_id: 'client-key-1' });
    const again = triggerCheckpointReplySchema.parse(await trigger(running, 'client-key-1'));
    expect(again).toEqual({ v: 1, job_id: running, epoch: first.epoch, trigger_id: 'client-key-1', started: false });

    const concurrent = (await Promise.all([1, 2, 3].map(() => trigger(running, 'client-key-2')))).map((r) => triggerCheckpointReplySchema.parse(r));
    expect(concurrent.filter((r) => r.started)).toHaveLength(1);
    expect(new Set(concurrent.map((r) => r.epoch)).size).toBe(1);
    expect(concurrent[0]!.epoch).toBeGreaterThan(first.epoch);

    // A new id starts another.
    const other = triggerCheckpointReplySchema.parse(await trigger(running, 'client-key-3'));
    expect(other).toMatchObject({ started: true });
    expect(other.epoch).toBeGreaterThan(concurrent[0]!.epoch);

    await eventually(
      async () => {
        const manual = (await history(running)).filter((c) => c.checkpoint_type === 'manual' && c.epoch >= first.epoch);
        expect(manual.map((c) => c.epoch).sort((a, b) => a - b)).toEqual([first.epoch, concurrent[0]!.epoch, other.epoch]);
        expect(manual.every((c) => c.status === 'ready')).toBe(true);
      },
      { timeoutMs: 20_000, intervalMs: 100 },
    );
  });

  it('a Stopped job answers not_running naming its state, and takes no checkpoint', async () => {
    const jobId = await create('stopped');
    await reach(jobId, 'Running');
    expect((await request(subjects.apiJobConfig(jobId), { v: 1, stop: 'immediate' })).error).toBeUndefined();
    await reach(jobId, 'Stopped');
    const before = await history(jobId);
    const reply = await trigger(jobId, 'stopped-key');
    expect(reply.error?.code).toBe('not_running');
    expect(reply.error?.message).toContain('Stopped');
    // Nothing was remembered for the id: once running again, it starts a checkpoint.
    expect(await history(jobId)).toEqual(before);
    expect((await request(subjects.apiJobConfig(jobId), { v: 1, stop: 'none' })).error).toBeUndefined();
    await reach(jobId, 'Running');
    await eventually(async () => expect(triggerCheckpointReplySchema.parse(await trigger(jobId, 'stopped-key')).started).toBe(true), { timeoutMs: 10_000, intervalMs: 200 });
  });

  it('answers unknown jobs and malformed bodies with error replies', async () => {
    expect((await trigger('job-nope')).error?.code).toBe('unknown_job');
    expect((await request(subjects.apiJobMetrics('job-nope'), { v: 1 })).error?.code).toBe('unknown_job');
    const trig = subjects.apiJobTriggerCheckpoint(running);
    expect((await request(trig, '{not json')).error?.code).toBe('bad_json');
    expect((await request(trig, { v: 1, trigger_id: 'has space' })).error?.code).toBe('bad_schema');
    expect((await request(trig, { v: 1, extra: true })).error?.code).toBe('bad_schema');
    expect((await request(trig, { v: 2 })).error?.code).toBe('unsupported_version');
    expect((await request(subjects.apiJobMetrics(running), { v: 1, node: 'src' })).error?.code).toBe('bad_schema');
    expect((await request(subjects.apiMetrics(), '')).error?.code).toBe('bad_json');
    expect((await request(subjects.apiMetrics(), { v: 1, x: 1 })).error?.code).toBe('bad_schema');
  });

  it('job metrics: records and rates per operator and subtask of the current generation, with the effective parallelism', async () => {
    const reply = await eventually(
      async () => {
        const r = jobMetricsReplySchema.parse(await request(subjects.apiJobMetrics(running), { v: 1 }));
        const src = r.data.find((o) => o.node_id === 'src')!;
        expect(src.subtasks.every((s) => s.records_out > 0 && s.records_out_rate > 0)).toBe(true);
        expect(r.data.find((o) => o.node_id === 'cnt')!.records_in_rate).toBeGreaterThan(0);
        return r;
      },
      { timeoutMs: 15_000, intervalMs: 200 },
    );
    const view = jobViewSchema.parse(await request(subjects.apiJobGet(running), { v: 1 }));
    expect(reply).toMatchObject({ v: 1, job_id: running, generation: view.generation });
    expect(reply.collected_at).not.toBeNull();
    expect(reply.data.map((o) => [o.node_id, o.operator, o.parallelism, o.subtasks.length])).toEqual([
      ['src', 'impulse', 2, 2],
      ['key', 'map-key', 2, 2],
      ['cnt', 'count', 1, 1],
      ['out', 'preview', 1, 1],
    ]);
    for (const op of reply.data) {
      expect(op.records_in).toBe(op.subtasks.reduce((n, s) => n + s.records_in, 0));
      expect(op.records_out).toBe(op.subtasks.reduce((n, s) => n + s.records_out, 0));
      for (const s of op.subtasks) {
        expect(s.samples.length).toBeGreaterThan(1);
        expect(s.samples.length).toBeLessThanOrEqual(30);
        const ats = s.samples.map((x) => x.at);
        expect(ats).toEqual([...ats].sort((a, b) => a - b));
        expect(s.samples.at(-1)).toMatchObject({ records_in: s.records_in, records_out: s.records_out });
      }
    }
    const [src, key, cnt] = reply.data;
    expect(src!.records_out).toBeGreaterThan(0);
    expect(key!.records_in).toBeGreaterThan(0);
    expect(key!.records_out_rate).toBeGreaterThan(0);
    expect(cnt!.records_out).toBeGreaterThan(0);
    // The impulse runs at 200 records/s per subtask: the rate is of that order.
    expect(src!.subtasks[0]!.records_out_rate).toBeGreaterThan(50);
    expect(src!.subtasks[0]!.records_out_rate).toBeLessThan(1_000);
  });

  it('Prometheus metrics: jobs by state, transitions, checkpoints, workers, requests and rejections', async () => {
    // At least one completed manual checkpoint (the tests above) and one rejection (not_running / unknown_job).
    const text = await eventually(
      async () => {
        const t = await metricsText();
        expect(sample(t, 'weir_checkpoints_total{outcome="completed",type="manual"}')).toBeGreaterThanOrEqual(1);
        return t;
      },
      { timeoutMs: 10_000, intervalMs: 200 },
    );
    expect(text).toContain('# TYPE weir_jobs gauge');
    expect(sample(text, 'weir_jobs{state="Running"}')).toBe(2);
    expect(sample(text, 'weir_jobs{state="Failed"}')).toBe(0);
    expect(sample(text, 'weir_workers{live="true"}')).toBe(1);
    expect(sample(text, 'weir_workers{live="false"}')).toBe(0);
    expect(sample(text, 'weir_job_transitions_total{to="Running"}')).toBeGreaterThanOrEqual(3);
    expect(sample(text, 'weir_job_transitions_total{to="Stopped"}')).toBe(1);
    expect(sample(text, 'weir_checkpoint_duration_seconds_count')).toBeGreaterThanOrEqual(1);
    expect(sample(text, 'weir_checkpoint_duration_seconds_sum')).toBeGreaterThan(0);
    expect(sample(text, 'weir_checkpoint_bytes_count')).toBeGreaterThanOrEqual(1);
    expect(sample(text, 'weir_controller_requests_total{kind="trigger_checkpoint"}')).toBeGreaterThanOrEqual(8);
    expect(sample(text, 'weir_controller_requests_total{kind="metrics"}')).toBeGreaterThanOrEqual(1);
    expect(sample(text, 'weir_controller_rejections_total{code="not_running"}')).toBeGreaterThanOrEqual(1);
    expect(sample(text, 'weir_controller_rejections_total{code="unknown_job"}')).toBeGreaterThanOrEqual(2);
    expect(sample(text, 'weir_nats_reconnects_total')).toBe(0);
    // The same registry on the Controller interface.
    expect(await controller.metricsText()).toContain('weir_jobs{state="Running"} 2');
    expect(controller.stats().received.trigger_checkpoint).toBeGreaterThanOrEqual(8);
  });

  it('counts reconnects of the controller connection', async () => {
    const reconnected = new Promise<void>((resolve) => {
      void (async () => {
        for await (const s of nc.status()) if (s.type === 'reconnect') return resolve();
      })();
    });
    await nc.reconnect();
    await reconnected;
    await eventually(async () => expect(sample(await metricsText(), 'weir_nats_reconnects_total')).toBe(1), { timeoutMs: 10_000, intervalMs: 100 });
  });
});
