import fc from 'fast-check';
import { afterAll, describe, expect } from 'vitest';
import { counterPipeline, expectError, http, startEnv, type Env, type HttpResult, type Page, type PipelineResponse } from './harness.js';
import { testWithNatsServer } from '../support/nats-fixtures.js';

const BODY_LIMIT = 16 * 1024;

const it = testWithNatsServer();

describe('bad input gets a 4xx {"error"} and changes nothing', () => {
  let env: Env;
  let id: string;
  let job: string;

  /** What a rejected request must not change: the record's revision, state and generation. */
  const snapshot = async () => {
    const view = await env.client.get(id);
    return { revision: view.revision, state: view.state, generation: view.generation, config: view.config };
  };

  it.beforeAll(async ({ natsServer, connect }) => {
    // No worker: the job waits for slots, so nothing but a request can change its record.
    env = await startEnv({ natsServer, connect }, { api: { bodyLimitBytes: BODY_LIMIT } });
    const created = await http<PipelineResponse>(`${env.base}/pipelines`, 'POST', { body: counterPipeline('target') });
    expect(created.status).toBe(201);
    id = created.body.id;
    job = `${env.base}/pipelines/${id}/jobs/${id}`;
  });
  afterAll(async () => {
    await env?.close();
  });

  it('for every route: malformed JSON, wrong types, unknown fields, huge bodies, wrong content types, unknown ids, bad cursors', { timeout: 30_000 }, async () => {
    const before = await snapshot();
    const huge = JSON.stringify({ ...counterPipeline('huge'), name: 'x'.repeat(BODY_LIMIT) });
    const pipeline = `${env.base}/pipelines/${id}`;
    const cases: [string, string, { body?: unknown; headers?: Record<string, string> }, number, RegExp?][] = [
      // POST /pipelines
      ['POST', `${env.base}/pipelines`, { body: '{"name":' }, 400, /JSON/],
      ['POST', `${env.base}/pipelines`, { body: '' }, 400],
      ['POST', `${env.base}/pipelines`, {}, 400, /body/],
      ['POST', `${env.base}/pipelines`, { body: [] }, 400],
      ['POST', `${env.base}/pipelines`, { body: { ...counterPipeline(), name: 5 } }, 400, /^name: expected string, got number/],
      ['POST', `${env.base}/pipelines`, { body: { ...counterPipeline(), v: 2 } }, 400, /^v: /],
      ['POST', `${env.base}/pipelines`, { body: { ...counterPipeline(), bogus: true } }, 400, /bogus: unknown field/],
      ['POST', `${env.base}/pipelines`, { body: { ...counterPipeline(), graph: { nodes: [{ id: 'a', operator: 'impulse', parallelism: 1.5 }], edges: [] } } }, 400, /graph\.nodes\[0\]\.parallelism/],
      ['POST', `${env.base}/pipelines`, { body: { ...counterPipeline(), graph: { nodes: [{ id: 'a', operator: 'no-such-operator' }], edges: [] } } }, 400, /no-such-operator/],
      ['POST', `${env.base}/pipelines`, { body: { ...counterPipeline(), checkpoint_interval_micros: 5 } }, 400, /checkpoint_interval_micros/],
      ['POST', `${env.base}/pipelines`, { body: huge }, 413],
      ['POST', `${env.base}/pipelines`, { body: JSON.stringify(counterPipeline()), headers: { 'content-type': 'text/plain' } }, 415],
      ['POST', `${env.base}/pipelines`, { body: '{"__proto__": {"x": 1}}' }, 400],
      ['POST', `${env.base}/pipelines?dry_run=true`, { body: counterPipeline() }, 400, /dry_run/],
      // GET lists
      ['GET', `${env.base}/pipelines?limit=0`, {}, 400, /limit/],
      ['GET', `${env.base}/pipelines?limit=101`, {}, 400, /limit/],
      ['GET', `${env.base}/pipelines?starting_after=a.b`, {}, 400, /starting_after/],
      ['GET', `${env.base}/jobs?limit=1001`, {}, 400, /limit/],
      ['GET', `${env.base}/jobs?page=2`, {}, 400, /page/],
      // One pipeline
      ['GET', `${env.base}/pipelines/job-unknown`, {}, 404],
      ['GET', `${env.base}/pipelines/bad.id`, {}, 400, /^id: invalid id "bad\.id"/],
      ['PATCH', `${env.base}/pipelines/bad.id`, { body: { stop: 'none' } }, 400, /^id: invalid id/],
      ['DELETE', `${env.base}/pipelines/${'x'.repeat(65)}`, {}, 400, /^id: invalid id/],
      ['GET', `${env.base}/pipelines/${id}/jobs/bad.id/errors`, {}, 400, /^job_id: invalid id/],
      ['GET', `${pipeline}?verbose=1`, {}, 400, /verbose/],
      ['PATCH', pipeline, { body: '{"stop": ' }, 400],
      ['PATCH', pipeline, { body: {} }, 400, /nothing to change/],
      ['PATCH', pipeline, { body: { stop: null, parallelism: null } }, 400, /nothing to change/],
      ['PATCH', pipeline, { body: { stop: 'pause' } }, 400, /stop/],
      ['PATCH', pipeline, { body: { parallelism: 'x' } }, 400, /parallelism: expected number, got string/],
      ['PATCH', pipeline, { body: { parallelism: 0 } }, 400, /parallelism/],
      ['PATCH', pipeline, { body: { ttl_micros: 5 } }, 400, /ttl_micros: unknown field/],
      ['PATCH', pipeline, { body: JSON.stringify({ stop: 'none', pad: 'x'.repeat(BODY_LIMIT) }) }, 413],
      ['PATCH', pipeline, { body: 'stop=none', headers: { 'content-type': 'application/x-www-form-urlencoded' } }, 415],
      ['PATCH', `${env.base}/pipelines/job-unknown`, { body: { stop: 'none' } }, 404],
      ['POST', `${pipeline}/restart`, { body: '{' }, 400],
      ['POST', `${pipeline}/restart`, { body: { force: 'yes' } }, 400, /force: expected boolean/],
      ['POST', `${pipeline}/restart`, { body: { mode: 'force' } }, 400, /mode: unknown field/],
      ['POST', `${pipeline}/restart`, { body: 42 }, 400],
      ['POST', `${env.base}/pipelines/job-unknown/restart`, { body: {} }, 404],
      ['DELETE', `${env.base}/pipelines/job-unknown`, {}, 404],
      ['DELETE', `${pipeline}?force=true`, {}, 400, /force/],
      ['DELETE', pipeline, {}, 409],
      // Jobs
      ['GET', `${env.base}/pipelines/job-unknown/jobs`, {}, 404],
      ['GET', `${env.base}/pipelines/${id}/jobs/other/errors`, {}, 404],
      ['GET', `${job}/errors?starting_after=abc`, {}, 400, /starting_after/],
      ['GET', `${job}/errors?limit=0`, {}, 400, /limit/],
      ['GET', `${env.base}/pipelines/job-unknown/jobs/job-unknown/operator_metric_groups`, {}, 404],
      // Checkpoints
      ['GET', `${job}/checkpoints?include_failed=yes`, {}, 400, /include_failed/],
      ['GET', `${env.base}/pipelines/job-unknown/jobs/job-unknown/checkpoints`, {}, 404],
      ['GET', `${job}/checkpoints/1.5/operator_checkpoint_groups`, {}, 400, /epoch/],
      ['GET', `${job}/checkpoints/-1/operator_checkpoint_groups`, {}, 400, /epoch/],
      ['GET', `${job}/checkpoints/12345/operator_checkpoint_groups`, {}, 404],
      ['POST', `${job}/checkpoints`, { body: '{"trigger_id":' }, 400],
      ['POST', `${job}/checkpoints`, { body: { trigger_id: 'has space' } }, 400, /trigger_id/],
      ['POST', `${job}/checkpoints`, { body: {}, headers: { 'idempotency-key': 'ä' } }, 400, /idempotency-key/],
      ['POST', `${job}/checkpoints`, { body: { epoch: 3 } }, 400, /epoch: unknown field/],
      ['POST', `${job}/checkpoints`, { body: {} }, 409],
      ['POST', `${env.base}/pipelines/job-unknown/jobs/job-unknown/checkpoints`, { body: {} }, 404],
      // Routes and methods
      ['GET', `${env.base}/nowhere`, {}, 404, /no route/],
      ['PUT', pipeline, { body: {} }, 405, /PUT is not allowed/],
      ['GET', `${env.base}/pipelines/${id}/restart`, {}, 405],
    ];
    for (const [method, url, options, status, mentions] of cases) {
      const res = await http(url, method, options);
      try {
        expectError(res, status, mentions);
      } catch (err) {
        throw new Error(`${method} ${url} ${String(options.body).slice(0, 80)} → ${res.status} ${res.text.slice(0, 300)}: ${String(err)}`);
      }
    }
    expect((await http(pipeline, 'PUT', { body: {} })).headers.get('allow')).toBe('GET, PATCH, DELETE');
    expect(await snapshot()).toEqual(before);
    expect((await http<Page<PipelineResponse>>(`${env.base}/pipelines`)).body.data.map((p) => p.id)).toEqual([id]);
  });

  it('random JSON at every POST and PATCH route: only documented statuses, never a 5xx, and the server keeps serving', { timeout: 60_000 }, async () => {
    const json = fc.oneof(
      fc.json({ maxDepth: 3 }),
      fc.dictionary(fc.constantFrom('name', 'graph', 'stop', 'parallelism', 'force', 'ignore_state', 'trigger_id', 'checkpoint_interval_micros', 'x'), fc.jsonValue({ maxDepth: 2 })).map((o) => JSON.stringify(o)),
    );
    const routes: [string, string, number[]][] = [
      ['POST', `${env.base}/pipelines`, [201, 400]],
      ['PATCH', `${env.base}/pipelines/${id}`, [200, 400, 409]],
      ['POST', `${env.base}/pipelines/${id}/restart`, [200, 400, 409]],
      ['POST', `${job}/checkpoints`, [202, 400, 409]],
    ];
    for (const [method, url, allowed] of routes) {
      await fc.assert(
        fc.asyncProperty(json, async (body) => {
          const res: HttpResult = await http(url, method, { body });
          expect(allowed, `${method} ${url} ${body} → ${res.status} ${res.text}`).toContain(res.status);
          if (res.status >= 400) expectError(res, res.status);
        }),
        { numRuns: 50 },
      );
    }
    expect((await http(`${env.base}/ping`)).status).toBe(200);
    expect((await http(`${env.base}/pipelines/${id}`)).status).toBe(200);
  });
});
