import type { Subscription } from '@nats-io/transport-node';
import { afterAll, describe, expect } from 'vitest';
import { decode, jobStateEventSchema, type JobStateEvent } from '../../src/protocol/index.js';
import { eventually } from '../support/nats.js';
import { jobsCommand } from '../../src/cli/jobs.js';
import { counterPipeline, expectError, http, startEnv, untilJob, type Env, type Job, type Page, type PipelineResponse } from './harness.js';
import { testWithNatsServer } from '../support/nats-fixtures.js';
import type { Checkpoint, OperatorCheckpointGroup, OperatorMetricGroup } from '../../src/protocol/index.js';

interface Trigger {
  epoch: number;
  trigger_id?: string;
  started: boolean;
}

const it = testWithNatsServer();

describe('a pipeline through its whole life, over HTTP only', () => {
  let env: Env;
  let states: JobStateEvent[];
  let sub: Subscription;

  it.beforeAll(async ({ natsServer, connect }) => {
    env = await startEnv({ natsServer, connect }, { worker: true });
    states = [];
    // A witness only: transitions too quick to poll (Rescaling) are seen here.
    sub = env.nc.subscribe('weir.jobs.*.state', {
      callback: (_err, msg) => {
        const d = decode(jobStateEventSchema, msg.data);
        if (d.ok) states.push(d.value);
      },
    });
  });
  afterAll(async () => {
    sub?.unsubscribe();
    await env?.close();
  });

  it('create → Running → stop/start → restart → rescale → checkpoints → delete', { timeout: 90_000 }, async () => {
    const created = await http<PipelineResponse>(`${env.base}/pipelines`, 'POST', { body: counterPipeline('life') });
    expect(created.status).toBe(201);
    const id = created.body.id;
    expect(created.body).toMatchObject({ id, name: 'life', stop: 'none', checkpoint_interval_micros: 1_000_000, ttl_micros: null, parallelism: 1 });
    expect(created.body.graph.nodes.map((n) => n.id)).toEqual(['src', 'key', 'cnt', 'out']);
    expect(created.body.job).toMatchObject({ id, pipeline_id: id, running_desired: true });

    const running = await untilJob(env, id, (job) => {
      expect(job.state).toBe('Running');
      return job;
    });
    expect(running).toMatchObject({ run_id: 1, restarts: 0, failure: null, action: 'checkpoint', action_text: 'Stop', action_in_progress: false });
    expect(running.start_time).toBeGreaterThan(0);

    const got = await http<PipelineResponse>(`${env.base}/pipelines/${id}`);
    expect(got.status).toBe(200);
    expect(got.body).toMatchObject({ id, action: 'checkpoint', action_text: 'Stop', job: { state: 'Running' } });
    const asked = env.controller!.stats().received;
    const listed = await http<Page<PipelineResponse>>(`${env.base}/pipelines`);
    expect(listed.body.has_more).toBe(false);
    expect(listed.body.data.map((p) => p.id)).toEqual([id]);
    expect(listed.body.data[0]).toEqual(got.body);
    // One request for the page, none per pipeline.
    const after = env.controller!.stats().received;
    expect([after.views - asked.views, after.get - asked.get]).toEqual([1, 0]);
    const jobs = await http<{ data: Job[] }>(`${env.base}/jobs`);
    expect(jobs.body.data.map((j) => j.id)).toEqual([id]);

    // The job is running: it cannot be deleted.
    expectError(await http(`${env.base}/pipelines/${id}`, 'DELETE'), 409);

    // Stop with a final checkpoint, then start again at the next generation.
    const stopping = await http<PipelineResponse>(`${env.base}/pipelines/${id}`, 'PATCH', { body: { stop: 'checkpoint' } });
    expect(stopping.status).toBe(200);
    expect(stopping.body.stop).toBe('checkpoint');
    const stopped = await untilJob(env, id, (job) => {
      expect(job.state).toBe('Stopped');
      return job;
    });
    expect(stopped).toMatchObject({ running_desired: false, action: 'none', action_text: 'Start' });
    const started = await http(`${env.base}/pipelines/${id}`, 'PATCH', { body: { stop: 'none', parallelism: null } });
    expect(started.status).toBe(200);
    await untilJob(env, id, (job) => expect(job).toMatchObject({ state: 'Running', run_id: 2 }));

    const restarted = await http(`${env.base}/pipelines/${id}/restart`, 'POST', { body: {} });
    expect(restarted.status).toBe(200);
    await untilJob(env, id, (job) => expect(job).toMatchObject({ state: 'Running', run_id: 3 }));

    const rescaled = await http<PipelineResponse>(`${env.base}/pipelines/${id}`, 'PATCH', { body: { parallelism: 2 } });
    expect(rescaled.status).toBe(200);
    expect(rescaled.body.parallelism).toBe(2);
    expect(rescaled.body.parallelism_overrides).toEqual({ src: 2, key: 2, cnt: 2, out: 2 });
    await untilJob(env, id, (job) => expect(job).toMatchObject({ state: 'Running', run_id: 4 }));
    const seen = states.filter((s) => s.job_id === id).map((s) => s.state);
    expect(seen).toContain('Rescaling');
    expect(seen.lastIndexOf('Running')).toBeGreaterThan(seen.lastIndexOf('Rescaling'));

    // Checkpoints: the history, then one checkpoint's operators.
    const jobUrl = `${env.base}/pipelines/${id}/jobs/${id}`;
    const ready = await eventually(
      async () => {
        const res = await http<{ data: Checkpoint[] }>(`${jobUrl}/checkpoints`);
        expect(res.status).toBe(200);
        const done = res.body.data.filter((c) => c.status === 'ready');
        expect(done.length).toBeGreaterThan(0);
        expect(res.body.data.every((c) => c.status !== 'failed')).toBe(true);
        return done[0]!;
      },
      { timeoutMs: 15_000, intervalMs: 200 },
    );
    const groups = await http<{ data: OperatorCheckpointGroup[] }>(`${jobUrl}/checkpoints/${ready.epoch}/operator_checkpoint_groups`);
    expect(groups.status).toBe(200);
    const operators = groups.body.data.map((g) => g.operator_id).sort();
    expect(operators.length).toBeGreaterThan(0);
    expect(operators.every((o) => ['src', 'key', 'cnt', 'out'].includes(o))).toBe(true);
    expectError(await http(`${jobUrl}/checkpoints/999999/operator_checkpoint_groups`), 404);
    expectError(await http(`${jobUrl}/checkpoints/abc/operator_checkpoint_groups`), 400, /epoch/);
    expect((await http(`${jobUrl}/checkpoints?include_failed=true`)).status).toBe(200);

    // Stop, then delete: gone afterwards.
    expect((await http(`${env.base}/pipelines/${id}`, 'PATCH', { body: { stop: 'immediate' } })).status).toBe(200);
    await untilJob(env, id, (job) => expect(job.state).toBe('Stopped'));
    const deleted = await http(`${env.base}/pipelines/${id}`, 'DELETE');
    expect(deleted.status).toBe(204);
    expect(deleted.text).toBe('');
    expectError(await http(`${env.base}/pipelines/${id}`), 404);
    expectError(await http(`${env.base}/pipelines/${id}/jobs`), 404);
    expect((await http<Page<PipelineResponse>>(`${env.base}/pipelines`)).body.data).toEqual([]);
  });

  it('a job that waits for slots says why and until when, in GET /pipelines/:id and in the CLI', { timeout: 60_000 }, async () => {
    // The worker has 8 slots; this job needs 9.
    const id = (await http<PipelineResponse>(`${env.base}/pipelines`, 'POST', { body: { ...counterPipeline('too-wide'), parallelism: 9 } })).body.id;
    const job = await untilJob(env, id, (j) => {
      expect(j.state).toBe('Scheduling');
      expect(j.waiting?.kind).toBe('slots');
      return j;
    });
    expect(job.waiting!.reason).toBe('waiting for slots: need 9 slots, 8 free on 1 worker');
    expect(job.waiting!.until).toBeGreaterThan(Date.now() * 1000);
    expect((await http<PipelineResponse>(`${env.base}/pipelines/${id}`)).body.job.waiting).toMatchObject({ kind: 'slots', reason: job.waiting!.reason });
    const out: string[] = [];
    expect(await jobsCommand(['jobs', 'get', id, '--nats', env.server.url], { out: (l) => out.push(l), err: () => undefined })).toBe(0);
    expect(out.join('\n')).toMatch(/^waiting: +waiting for slots: need 9 slots, 8 free on 1 worker \(until \S+, in \d+m\d+s\)$/m);
    expect((await http(`${env.base}/pipelines/${id}`, 'PATCH', { body: { stop: 'immediate' } })).status).toBe(200);
    const stopped = await untilJob(env, id, (j) => {
      expect(j.state).toBe('Stopped');
      return j;
    });
    expect(stopped.waiting).toBeNull();
    expect((await http(`${env.base}/pipelines/${id}`, 'DELETE')).status).toBe(204);
  });

  it('takes a checkpoint on demand (idempotent by trigger id) and shows record counts', { timeout: 60_000 }, async () => {
    const id = (await http<PipelineResponse>(`${env.base}/pipelines`, 'POST', { body: { v: 1, ...counterPipeline('manual'), checkpoint_interval_micros: 60_000_000 } })).body.id;
    const jobUrl = `${env.base}/pipelines/${id}/jobs/${id}`;
    await untilJob(env, id, (job) => expect(job.state).toBe('Running'));

    const first = await http<Trigger>(`${jobUrl}/checkpoints`, 'POST', { body: { trigger_id: 'k-1' } });
    expect(first.status).toBe(202);
    expect(first.body).toMatchObject({ trigger_id: 'k-1', started: true });
    expect(first.body.epoch).toBeGreaterThanOrEqual(1);
    const again = await http<Trigger>(`${jobUrl}/checkpoints`, 'POST', { headers: { 'idempotency-key': 'k-1' } });
    expect(again.status).toBe(202);
    expect(again.body).toEqual({ epoch: first.body.epoch, trigger_id: 'k-1', started: false });
    expectError(await http(`${jobUrl}/checkpoints`, 'POST', { body: { trigger_id: 'a' }, headers: { 'idempotency-key': 'b' } }), 400, /trigger_id/);
    await eventually(
      async () => {
        const res = await http<{ data: Checkpoint[] }>(`${jobUrl}/checkpoints`);
        const cp = res.body.data.find((c) => c.epoch === first.body.epoch);
        expect(cp).toMatchObject({ status: 'ready', checkpoint_type: 'manual' });
      },
      { timeoutMs: 15_000, intervalMs: 200 },
    );

    await eventually(
      async () => {
        const res = await http<{ data: OperatorMetricGroup[] }>(`${jobUrl}/operator_metric_groups`);
        expect(res.status).toBe(200);
        const impulse = res.body.data.find((g) => g.node_id === 'src');
        expect(impulse?.records_out).toBeGreaterThan(0);
      },
      { timeoutMs: 15_000, intervalMs: 200 },
    );

    expect((await http(`${env.base}/pipelines/${id}`, 'PATCH', { body: { stop: 'immediate' } })).status).toBe(200);
    await untilJob(env, id, (job) => expect(job.state).toBe('Stopped'));
    expectError(await http(`${jobUrl}/checkpoints`, 'POST', { body: {} }), 409);
  });
});
