/**
 * The console in a real browser, a job's whole life: created from the create page, Running in the jobs
 * list without a reload, its output rows, a checkpoint and its timeline, stopped with a checkpoint and
 * started again with the statechart following, rescaled and deleted. The tests share one job, in order;
 * should an early one fail, the next creates the job through the API. See browser/harness.ts.
 */
import { copyFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, describe, expect } from 'vitest';
import { http, untilJob, type Env, type PipelineResponse } from '../api/harness.js';
import { eventually } from '../support/nats.js';
import { testWithNatsServer } from '../support/nats-fixtures.js';
import { ROOT } from './browser/build.js';
import { countLoads, launchBrowser, session, startConsoleEnv } from './browser/harness.js';
import { EXAMPLE_COUNTER } from './browser/pipelines.js';

const it = testWithNatsServer();

/** `WEIR_DOCS_SCREENSHOTS=1`: the job page's screenshot also replaces docs/console-job.png (README). */
const DOCS_SHOTS = process.env['WEIR_DOCS_SCREENSHOTS'] === '1';

const statechart = (page: Page, state: string) => page.locator(`[data-testid=statechart][data-current-state="${state}"]`);

describe('a job in the console, from create to delete', { timeout: 60_000 }, () => {
  let env: Env;
  let browser: Browser;
  let url: string;
  let id: string | undefined;

  it.beforeAll(async ({ natsServer, connect }) => {
    [env, browser] = await Promise.all([startConsoleEnv({ natsServer, connect }), launchBrowser()]);
    url = env.api.url;
  }, 90_000);
  afterAll(async () => {
    await browser?.close();
    await env?.close();
  });

  const pipeline = async (jobId: string) => (await http<PipelineResponse>(`${env.base}/pipelines/${jobId}`)).body;

  /** The job the tests share: the one test 1 created, else a new one through the API. */
  async function job(): Promise<string> {
    if (id === undefined) {
      const res = await http<PipelineResponse>(`${env.base}/pipelines`, 'POST', { body: EXAMPLE_COUNTER });
      expect(res.status).toBe(201);
      id = res.body.id;
    }
    // An earlier test that failed half-way may have left it stopped.
    const state = (await pipeline(id)).job.state;
    if (state === 'Stopped') expect((await http(`${env.base}/pipelines/${id}`, 'PATCH', { body: { stop: 'none' } })).status).toBe(200);
    await untilJob(env, id, (j) => expect(j.state).toBe('Running'));
    return id;
  }

  it('creates a job from the create page and sees it Running in the jobs list without a reload', async () => {
    const ui = await session(browser, 'create a job');
    const { page } = ui;
    const loads = countLoads(page);
    await page.goto(`${url}/jobs`);
    await page.getByText('No jobs yet.').waitFor();
    await page.getByRole('link', { name: 'Create a pipeline' }).click();
    await page.getByRole('heading', { name: 'Create a pipeline' }).waitFor();

    // A pipeline the API refuses: its errors point at the line and the node.
    await page.getByLabel('Pipeline JSON').fill(JSON.stringify({ ...EXAMPLE_COUNTER, graph: { ...EXAMPLE_COUNTER.graph, nodes: EXAMPLE_COUNTER.graph.nodes.map((n) => (n.id === 'key' ? { ...n, operator: 'no-such-operator' } : n)) } }, null, 2));
    ui.allow(/status of 400/);
    await page.getByRole('button', { name: 'Create pipeline' }).click();
    const errors = page.getByTestId('create-errors');
    await errors.getByText(/unknown operator "no-such-operator"/).waitFor();
    expect(await errors.getByRole('button', { name: /^line \d+$/ }).count()).toBeGreaterThan(0);
    expect(await errors.textContent()).toContain('node key');
    expect(await page.locator('[data-testid=create-preview] [data-node="key"].pg-problem').count()).toBe(1);
    await ui.shot('create-refused');

    await page.getByRole('button', { name: 'counter', exact: true }).click();
    await page.locator('[data-testid=create-preview] [data-node="count"]').waitFor();
    expect(await page.getByTestId('create-preview').textContent()).toMatch(/count ×2/);
    await ui.shot('create');
    await page.getByRole('button', { name: 'Create pipeline' }).click();
    await page.waitForURL(/\/jobs\/[A-Za-z0-9_-]+$/);
    id = decodeURIComponent(new URL(page.url()).pathname.split('/').pop()!);
    await ui.shot('job');

    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Jobs', exact: true }).click();
    const row = page.getByRole('row').filter({ hasText: id });
    await row.getByText('Running', { exact: true }).waitFor();
    expect(await row.getByRole('link', { name: 'counter', exact: true }).count()).toBe(1);
    expect(loads()).toBe(1);
    await ui.shot('jobs');
  });

  it('shows the output rows as they arrive', async () => {
    const jobId = await job();
    const ui = await session(browser, 'output rows');
    const { page } = ui;
    await page.goto(`${url}/jobs/${jobId}`);
    const rows = page.getByTestId('output-row');
    await rows.first().waitFor();
    const first = await rows.first().textContent();
    // More arrive (the counter emits 20 a second), the newest on top.
    await eventually(async () => expect(await rows.first().textContent()).not.toBe(first), { timeoutMs: 10_000, intervalMs: 100 });
    expect(await rows.count()).toBeGreaterThan(1);
    await ui.shot('job');
    if (DOCS_SHOTS) {
      // The README's picture: the job page as a 1280×800 window shows it.
      await statechart(page, 'Running').waitFor();
      const shot = await ui.shot('docs-job', { fullPage: false });
      mkdirSync(join(ROOT, 'docs'), { recursive: true });
      copyFileSync(shot, join(ROOT, 'docs', 'console-job.png'));
    }
  });

  it('triggers a checkpoint and opens its timeline', async () => {
    const jobId = await job();
    const ui = await session(browser, 'checkpoint timeline');
    const { page } = ui;
    await page.goto(`${url}/jobs/${jobId}`);
    await statechart(page, 'Running').waitFor();
    const triggered = page.waitForResponse((res) => res.request().method() === 'POST' && /\/checkpoints$/.test(new URL(res.url()).pathname));
    await page.getByRole('button', { name: 'Trigger checkpoint' }).click();
    const res = await triggered;
    expect(res.status()).toBe(202);
    const { epoch } = (await res.json()) as { epoch: number };
    const button = page.getByTestId('checkpoints').getByRole('button', { name: `Checkpoint ${epoch}`, exact: true });
    const shown = await button.waitFor({ timeout: 10_000 }).then(
      () => true,
      () => false,
    );
    if (!shown) {
      // Say precisely what is wrong: the panel missed the new checkpoint, or it is not there at all.
      await page.getByRole('region', { name: 'Checkpoints' }).getByRole('button', { name: 'Refresh', exact: true }).click();
      const afterRefresh = await button.waitFor({ timeout: 5_000 }).then(
        () => true,
        () => false,
      );
      throw new Error(
        afterRefresh
          ? `the checkpoints panel showed checkpoint ${epoch} only after its Refresh button: "Trigger checkpoint" does not reload it`
          : `no button "Checkpoint ${epoch}" in [data-testid=checkpoints], even after Refresh`,
      );
    }
    await button.click();
    await page.getByTestId('checkpoint-timeline').waitFor();
    await ui.shot('timeline');
  });

  it('stops with a checkpoint and starts again, the statechart following', async () => {
    const jobId = await job();
    const ui = await session(browser, 'stop and start');
    const { page } = ui;
    const loads = countLoads(page);
    await page.goto(`${url}/jobs/${jobId}`);
    await statechart(page, 'Running').waitFor();
    await page.getByLabel('Stop mode').selectOption('checkpoint');
    await page.getByRole('button', { name: 'Stop', exact: true }).click();
    await statechart(page, 'Stopped').waitFor();
    await untilJob(env, jobId, (j) => expect(j.state).toBe('Stopped'), 5_000);
    await ui.shot('stopped');
    await page.getByRole('button', { name: 'Start', exact: true }).click();
    await statechart(page, 'Running').waitFor();
    expect(loads()).toBe(1);
    await ui.shot('running');
  });

  it('rescales, then deletes the job', async () => {
    const jobId = await job();
    const ui = await session(browser, 'rescale and delete');
    const { page } = ui;
    await page.goto(`${url}/jobs/${jobId}`);
    await statechart(page, 'Running').waitFor();
    await page.getByLabel('Parallelism').fill('1');
    await page.getByRole('button', { name: 'Rescale', exact: true }).click();
    await eventually(async () => expect((await pipeline(jobId)).parallelism).toBe(1), { timeoutMs: 15_000, intervalMs: 200 });
    await statechart(page, 'Running').waitFor();
    await ui.shot('rescaled');

    // Only a job at rest can be deleted: stop it first.
    await page.getByLabel('Stop mode').selectOption('immediate');
    await page.getByRole('button', { name: 'Stop', exact: true }).click();
    await statechart(page, 'Stopped').waitFor();
    await page.getByRole('button', { name: 'Delete', exact: true }).click();
    const dialog = page.getByRole('dialog');
    await dialog.getByRole('button', { name: 'Cancel' }).waitFor();
    await ui.shot('delete-dialog');
    await dialog.getByRole('button', { name: 'Delete job' }).click();
    await eventually(async () => expect((await http(`${env.base}/pipelines/${jobId}`)).status).toBe(404), { timeoutMs: 10_000, intervalMs: 200 });
    // Whatever the page does next (the jobs list, a notice), it shows the job no more.
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Jobs', exact: true }).click();
    await page.getByRole('heading', { name: 'Jobs' }).waitFor();
    await eventually(async () => expect(await page.getByRole('row').filter({ hasText: jobId }).count()).toBe(0), { timeoutMs: 10_000, intervalMs: 200 });
    await ui.shot('jobs');
    id = undefined;
  });
});
