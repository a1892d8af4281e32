/**
 * `weir pipelines create`, `weir jobs errors` and `weir jobs tail` against a real nats-server, a real
 * controller and a real worker (in this process).
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { NatsConnection } from '@nats-io/transport-node';
import { afterAll, describe, expect } from 'vitest';
import type { JobState } from '../../machines/job/types.js';
import { jobsCommand, type ErrorsPage } from '../../src/cli/jobs.js';
import type { Controller } from '../../src/controller/controller.js';
import { encode, jobViewSchema, previewOutputSchema, subjects, type JobView, type JsonValue, type PipelineInput } from '../../src/protocol/index.js';
import type { WorkerHandle } from '../../src/worker/process.js';
import { startTestController, startTestWorker, untilState } from '../support/cluster.js';
import type { NatsServerHandle } from '../support/nats-server.js';
import { eventually } from '../support/nats.js';
import { testWithNatsServer } from '../support/nats-fixtures.js';
import { impulseToSinkPipeline, type SourceOptions } from '../support/pipelines.js';

const it = testWithNatsServer();
let server: NatsServerHandle;
let client: NatsConnection;
let controller: Controller;
let worker: WorkerHandle;
const dir = mkdtempSync(join(tmpdir(), 'weir-cli-live-'));

interface Run {
  code: number;
  out: string[];
  err: string[];
}

function weir(argv: string[], signal?: AbortSignal): { done: Promise<Run>; out: string[]; err: string[] } {
  const out: string[] = [];
  const err: string[] = [];
  const done = jobsCommand([...argv, '--nats', server.url], {
    out: (line) => out.push(line),
    err: (line) => err.push(line),
    ...(signal === undefined ? {} : { signal }),
  }).then((code) => ({ code, out, err }));
  return { done, out, err };
}

const run = (...argv: string[]) => weir(argv).done;

function pipelineFile(name: string, pipeline: PipelineInput): string {
  const file = join(dir, `${name}.json`);
  writeFileSync(file, JSON.stringify(pipeline));
  return file;
}

const impulseToPreview = (name: string, source: SourceOptions, preview: Record<string, JsonValue> = {}) => impulseToSinkPipeline({ name, ...source, sink: 'preview', sinkConfig: preview });

async function view(jobId: string): Promise<JobView> {
  const reply = await client.request(subjects.apiJobGet(jobId), encode({ v: 1 }), { timeout: 5_000 });
  return jobViewSchema.parse(reply.json());
}

async function reach(jobId: string, state: JobState, generation?: number): Promise<JobView> {
  return untilState(() => view(jobId), state, {}, (v) => {
    if (generation !== undefined) expect(v.generation).toBe(generation);
  });
}

async function create(file: string): Promise<string> {
  const created = await run('pipelines', 'create', file);
  expect(created.err).toEqual([]);
  expect(created.code).toBe(0);
  expect(created.out).toHaveLength(1);
  return created.out[0]!;
}

it.beforeAll(async ({ natsServer, connect }) => {
  server = natsServer;
  client = await connect('client');
  controller = await startTestController(await connect('controller'));
  worker = await startTestWorker(await connect('worker'));
});

afterAll(async () => {
  await worker?.stop('immediate');
  await controller?.stop();
});

describe('weir pipelines', () => {
  it('create prints the pipeline id, which is the job id; get and list show it', async () => {
    const id = await create(pipelineFile('bounded', impulseToPreview('bounded', { events: 5, rate: 'max' })));
    expect(id).toMatch(/^[A-Za-z0-9_-]{1,64}$/);
    expect((await view(id)).name).toBe('bounded');

    const got = await run('pipelines', 'get', id, '--json');
    expect(got.code).toBe(0);
    expect((JSON.parse(got.out[0]!) as JobView).job_id).toBe(id);

    const listed = await run('pipelines', 'list');
    expect(listed.code).toBe(0);
    expect(listed.out.join('\n')).toMatch(new RegExp(`^${id}\\s+bounded\\s+`, 'm'));

    const json = await run('pipelines', 'create', pipelineFile('bounded-2', impulseToPreview('bounded-2', { events: 1, rate: 'max' })), '--json');
    expect(json.code).toBe(0);
    expect(JSON.parse(json.out[0]!)).toMatchObject({ v: 1, job_id: expect.any(String) as string, revision: expect.any(Number) as number });
  });

  it('create of an invalid pipeline is the controller’s error reply, exit 1', async () => {
    const bad = await run('pipelines', 'create', pipelineFile('bad', { name: 'bad', graph: { nodes: [], edges: [] } }));
    expect(bad.code).toBe(1);
    expect(bad.err.join('\n')).toMatch(/^weir: (bad_schema|invalid_pipeline): /);
  });

  it('usage errors exit 2', async () => {
    expect((await run('pipelines')).code).toBe(2);
    expect((await run('pipelines', 'create')).code).toBe(2);
    expect((await run('pipelines', 'stop', 'x')).code).toBe(2);
    expect((await run('jobs', 'errors', 'x', '--count', '2')).code).toBe(2);
    expect((await run('jobs', 'errors', 'x', '--after', 'last')).code).toBe(2);
    expect((await run('jobs', 'tail', 'x', '--limit', '2')).code).toBe(2);
    expect((await run('jobs', 'tail')).code).toBe(2);
  });
});

describe('weir jobs errors', () => {
  // map-key with a required field no impulse record has: every run fails with a user error.
  const failing: PipelineInput = {
    name: 'failing',
    graph: {
      nodes: [
        { id: 'src', operator: 'impulse', parallelism: 1, config: { rate_per_sec: 50 } },
        { id: 'key', operator: 'map-key', parallelism: 1, config: { field: 'missing', required: true } },
        { id: 'out', operator: 'preview', parallelism: 1, config: {} },
      ],
      edges: [
        { from: 'src', to: 'key', kind: 'forward' },
        { from: 'key', to: 'out', kind: 'forward' },
      ],
    },
  };
  let id: string;

  it.beforeAll(async () => {
    id = await create(pipelineFile('failing', failing));
    await reach(id, 'Failed', 1);
    // A Failed job runs again on a restart, and fails again: three runs, three errors.
    for (const generation of [2, 3]) {
      expect((await run('jobs', 'restart', id)).code).toBe(0);
      await reach(id, 'Failed', generation);
    }
    await eventually(async () => expect((JSON.parse((await run('jobs', 'errors', id, '--json')).out[0]!) as ErrorsPage).data).toHaveLength(3), { timeoutMs: 10_000 });
  }, 90_000);

  it('prints a table, newest first', async () => {
    const { code, out } = await run('jobs', 'errors', id);
    expect(code).toBe(0);
    const lines = out.join('\n').split('\n');
    expect(lines[0]).toMatch(/^ID\s+TIME\s+OPERATOR\s+DOMAIN\s+MESSAGE$/);
    expect(lines).toHaveLength(4);
    const ids = lines.slice(1).map((line) => Number(line.split(/\s+/)[0]));
    expect(ids).toEqual([...ids].sort((a, b) => b - a));
    for (const line of lines.slice(1)) expect(line).toMatch(/^\d+\s+20\d\d-\d\d-\d\dT[\d:.]+Z\s+\S+\s+user\s+.*map-key: a record has no field "missing"/);
  });

  it('--json pages with --limit and --after', async () => {
    const first = await run('jobs', 'errors', id, '--json', '--limit', '2');
    expect(first.code).toBe(0);
    const page1 = JSON.parse(first.out[0]!) as ErrorsPage;
    expect(page1.data).toHaveLength(2);
    expect(page1.has_more).toBe(true);
    expect(page1.next_cursor).toBe(page1.data[1]!.id);
    // The rows as GET /api/v1/pipelines/:id/jobs/:job_id/errors shows them.
    expect(page1.data[0]).toMatchObject({ level: 'error', error_domain: 'user', hint: 'no_retry', operator_id: null, task_index: null });
    expect(page1.data[0]!.message).toContain('map-key: a record has no field "missing"');
    expect(page1.data[0]!.id).toBeGreaterThan(page1.data[1]!.id);

    const second = await run('jobs', 'errors', id, '--json', '--limit', '2', '--after', String(page1.next_cursor));
    const page2 = JSON.parse(second.out[0]!) as ErrorsPage;
    expect(page2).toMatchObject({ has_more: false, next_cursor: null });
    expect(page2.data).toHaveLength(1);
    expect(page2.data[0]!.id).toBeLessThan(page1.next_cursor!);

    const text = await run('jobs', 'errors', id, '--limit', '2');
    expect(text.out.join('\n')).toContain(`(more: weir jobs errors ${id} --after ${page1.next_cursor} --limit 2)`);
    const last = await run('jobs', 'errors', id, '--after', String(page2.data[0]!.id));
    expect(last.out).toEqual(['no older errors']);
  });

  it('a job without errors, and an unknown job', async () => {
    const quiet = await create(pipelineFile('quiet', impulseToPreview('quiet', { events: 1, rate: 'max' })));
    const none = await run('jobs', 'errors', quiet);
    expect(none).toMatchObject({ code: 0, out: ['no errors'] });
    expect(JSON.parse((await run('jobs', 'errors', quiet, '--json')).out[0]!)).toEqual({ data: [], has_more: false, next_cursor: null });
    const unknown = await run('jobs', 'errors', 'no-such-job');
    expect(unknown.code).toBe(1);
    expect(unknown.err).toEqual(['weir: unknown_job: no job "no-such-job", and no job id starts with it']);
  });

  it('takes a unique prefix of the job id', async () => {
    const prefix = id.slice(0, -4);
    const { code, out } = await run('jobs', 'errors', prefix, '--json');
    expect(code).toBe(0);
    expect((JSON.parse(out[0]!) as ErrorsPage).data).toHaveLength(3);
  });
});

describe('weir jobs tail', () => {
  it('prints each row of an impulse → preview job as a JSON line; --count ends it', async () => {
    const id = await create(pipelineFile('endless', impulseToPreview('endless', { rate: 100 }, { batch_size: 1 })));
    const tail = weir(['jobs', 'tail', id, '--count', '5']);
    const { code, out, err } = await tail.done;
    expect(code).toBe(0);
    expect(err.join('')).toContain(`tailing weir.jobs.${id}.output`);
    expect(out).toHaveLength(5);
    const rows = out.map((line) => JSON.parse(line) as { value: { counter: number }; ts: number });
    for (const row of rows) expect(row).toEqual({ value: { counter: expect.any(Number) as number, ts: expect.any(Number) as number }, ts: expect.any(Number) as number });
    const counters = rows.map((row) => row.value.counter);
    expect(counters).toEqual([...counters].sort((a, b) => a - b));

    // --json: the whole message per line.
    const json = await weir(['jobs', 'tail', id, '--json', '--count', '3']).done;
    expect(json.code).toBe(0);
    expect(json.out).toHaveLength(3);
    for (const line of json.out) expect(previewOutputSchema.parse(JSON.parse(line))).toMatchObject({ job_id: id, node_id: 'out', subtask_index: 0, rows: [expect.anything()] });
    expect((await run('jobs', 'stop', id, '--mode', 'immediate')).code).toBe(0);
  }, 30_000);

  it('ends by itself when every preview subtask has sent its last batch', async () => {
    // 20 rows over 2 s; the preview sink sends them when it closes, then says it is done.
    const id = await create(pipelineFile('short', impulseToPreview('short', { events: 20, rate: 10 })));
    const { code, out } = await weir(['jobs', 'tail', id]).done;
    expect(code).toBe(0);
    expect(out.map((line) => (JSON.parse(line) as { value: { counter: number } }).value.counter)).toEqual(Array.from({ length: 20 }, (_, i) => i));
    await reach(id, 'Finished');
    const after = await run('jobs', 'tail', id);
    expect(after.code).toBe(0);
    expect(after.err.join('')).toContain('is Finished');
  }, 30_000);

  it('shows each row well within a second of its emission, not once a batch has filled', async () => {
    // Two rows a second into a preview sink of batches of 100: a full batch would take 50 s.
    const id = await create(pipelineFile('slow', impulseToPreview('slow', { rate: 2 })));
    await reach(id, 'Running');
    const arrivals: Array<{ at: number; ts: number }> = [];
    const done = jobsCommand(['jobs', 'tail', id.slice(0, -4), '--count', '3', '--nats', server.url], {
      out: (line) => arrivals.push({ at: Date.now(), ts: (JSON.parse(line) as { ts: number }).ts }),
      err: () => undefined,
    });
    expect(await done).toBe(0);
    expect(arrivals).toHaveLength(3);
    // Well under a second (the sink lingers 50 ms); the bound leaves room for a loaded machine.
    for (const { at, ts } of arrivals) expect(at - ts / 1000).toBeLessThan(1_500);
    expect((await run('jobs', 'stop', id, '--mode', 'immediate')).code).toBe(0);
  }, 30_000);

  it('an AbortSignal (Ctrl-C) ends it; an unknown job is exit 1', async () => {
    const id = await create(pipelineFile('idle', impulseToPreview('idle', { rate: 1 })));
    const abort = new AbortController();
    const tail = weir(['jobs', 'tail', id], abort.signal);
    await eventually(() => expect(tail.err.join('')).toContain('tailing'));
    abort.abort();
    expect((await tail.done).code).toBe(0);
    expect((await run('jobs', 'stop', id, '--mode', 'immediate')).code).toBe(0);

    const unknown = await run('jobs', 'tail', 'no-such-job');
    expect(unknown.code).toBe(1);
    expect(unknown.err.join('')).toMatch(/^weir: unknown_job: /);
  }, 30_000);
});
