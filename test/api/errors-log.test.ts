import { afterAll, describe, expect } from 'vitest';
import type { LogEvent } from '../../src/store/index.js';
import { counterPipeline, expectError, http, startEnv, type Env, type ErrorRow, type Page, type PipelineResponse } from './harness.js';
import { testWithNatsServer } from '../support/nats-fixtures.js';

const errorEvent = (n: number): LogEvent => ({
  kind: 'error',
  message: `failure ${n}`,
  domain: n % 2 === 0 ? 'user' : 'external',
  hint: 'with_backoff',
  operator_id: 'count',
  subtask_index: n % 3,
  at: Date.now(),
});

const it = testWithNatsServer();

describe('GET …/jobs/:job_id/errors', () => {
  let env: Env;
  let id: string;
  let url: string;

  it.beforeAll(async ({ natsServer, connect }) => {
    // No worker: the job stays put and only the test writes its errors.
    env = await startEnv({ natsServer, connect });
    id = (await http<PipelineResponse>(`${env.base}/pipelines`, 'POST', { body: counterPipeline('errors') })).body.id;
    url = `${env.base}/pipelines/${id}/jobs/${id}/errors`;
  });
  afterAll(async () => {
    await env?.close();
  });

  it('walks pages of 3 newest first while errors keep arriving: no row twice, none missed, has_more right', { timeout: 30_000 }, async () => {
    const empty = await http<Page<ErrorRow>>(url);
    expect(empty.status).toBe(200);
    expect(empty.body).toEqual({ data: [], has_more: false });

    let n = 0;
    const appended: number[] = [];
    const append = async (count: number) => {
      for (let i = 0; i < count; i++) {
        appended.push(await env.store.log.append(id, errorEvent(n++)));
        // Rows of other kinds in between: the filter must skip them.
        if (i % 2 === 0) await env.store.log.append(id, { kind: 'warning', message: 'noise', at: Date.now() });
      }
    };
    await append(11);

    const first = await http<Page<ErrorRow>>(`${url}?limit=3`);
    expect(first.status).toBe(200);
    expect(first.body.data).toHaveLength(3);
    expect(first.body.has_more).toBe(true);
    const newest = first.body.data[0]!;
    const { created_at: _at, ...rest } = newest;
    expect(rest).toEqual({
      id: appended.at(-1),
      operator_id: 'count',
      task_index: 10 % 3,
      level: 'error',
      message: 'failure 10',
      error_domain: 'user',
      hint: 'with_backoff',
    });
    expect(newest.created_at).toBeGreaterThan(1e15); // µs

    const seen: number[] = first.body.data.map((r) => r.id);
    let cursor = seen.at(-1)!;
    let hasMore = first.body.has_more;
    while (hasMore) {
      await append(2); // newer rows must not show up in this walk
      const page = await http<Page<ErrorRow>>(`${url}?limit=3&starting_after=${cursor}`);
      expect(page.status).toBe(200);
      const ids = page.body.data.map((r) => r.id);
      expect(ids.length).toBeLessThanOrEqual(3);
      seen.push(...ids);
      hasMore = page.body.has_more;
      if (hasMore) expect(ids).toHaveLength(3);
      if (ids.length > 0) cursor = ids.at(-1)!;
    }
    expect(new Set(seen).size).toBe(seen.length);
    expect(seen).toEqual([...seen].sort((a, b) => b - a));
    expect(seen).toEqual(appended.filter((seq) => seq <= newest.id).reverse());

    // A new first page starts at the newest row.
    const fresh = await http<Page<ErrorRow>>(`${url}?limit=1`);
    expect(fresh.body.data[0]?.id).toBe(appended.at(-1));
    const all = await http<Page<ErrorRow>>(`${url}?limit=1000`);
    expect(all.body.data).toHaveLength(appended.length);
    expect(all.body.has_more).toBe(false);
    await append(21 - appended.length);
    const byDefault = await http<Page<ErrorRow>>(url);
    expect(byDefault.body.data).toHaveLength(20);
    expect(byDefault.body.has_more).toBe(true);
  });

  it('rejects bad limits and cursors with a 400 naming them, and unknown jobs with a 404', async () => {
    for (const limit of ['0', '1001', 'abc', '1.5', '-1', '', '1e2']) expectError(await http<Page<ErrorRow>>(`${url}?limit=${limit}`), 400, /limit/);
    for (const cursor of ['0', '-3', 'x', '2.5', '']) expectError(await http(`${url}?starting_after=${cursor}`), 400, /starting_after/);
    expectError(await http<Page<ErrorRow>>(`${url}?limit=1&limit=2`), 400, /limit/);
    expectError(await http(`${url}?cursor=5`), 400, /cursor/);
    expectError(await http(`${env.base}/pipelines/job-unknown/jobs/job-unknown/errors`), 404);
    expectError(await http(`${env.base}/pipelines/${id}/jobs/other/errors`), 404);
    expectError(await http(`${env.base}/pipelines/bad.id/jobs/bad.id/errors`), 400, /invalid id/);
  });
});
