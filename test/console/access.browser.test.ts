/**
 * The console in a real browser, the pages that need no running job: the token prompt when the API has a
 * token, a job page for a job that does not exist, the size of the first load, and the jobs list on a
 * phone. See browser/harness.ts.
 */
import { gzipSync } from 'node:zlib';
import type { Browser } from 'playwright-core';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { afterAll, describe, expect, onTestFinished } from 'vitest';
import { http, type Env, type PipelineResponse } from '../api/harness.js';
import { eventually } from '../support/nats.js';
import { testWithNatsServer } from '../support/nats-fixtures.js';
import { launchBrowser, PHONE, session, startConsoleEnv } from './browser/harness.js';
import { EXAMPLE_COUNTER } from './browser/pipelines.js';

const TOKEN = 'browser-test-token';
const auth = { authorization: `Bearer ${TOKEN}` };
/** The first download's JS and CSS, gzipped (README, "Web console"). */
const FIRST_LOAD_BUDGET = 300 * 1024;

const it = testWithNatsServer();

describe('the console in a browser: token, bad ids, first load, phones', { timeout: 60_000 }, () => {
  let env: Env;
  let browser: Browser;
  let url: string;

  it.beforeAll(async ({ natsServer, connect }) => {
    // No worker: a created job waits for slots, which is all a list needs.
    [env, browser] = await Promise.all([startConsoleEnv({ natsServer, connect }, { worker: false, api: { token: TOKEN } }), launchBrowser()]);
    url = env.api.url;
    for (const name of ['a-pipeline-with-a-long-name-that-must-not-widen-the-page', 'second']) {
      const res = await http<PipelineResponse>(`${env.base}/pipelines`, 'POST', { body: { ...EXAMPLE_COUNTER, name }, headers: auth });
      expect(res.status).toBe(201);
    }
  }, 90_000);
  afterAll(async () => {
    await browser?.close();
    await env?.close();
  });

  it('asks for the token: a wrong one gets a 401 and the prompt again, the right one shows the jobs', async () => {
    const ui = await session(browser, 'token prompt');
    // The browser logs the 401 the wrong token gets as a failed resource: expected here, and only here.
    ui.allow(/status of 401/);
    const { page } = ui;
    // The 401s the API answers, counted at its HTTP server.
    let refused = 0;
    const count = (_req: IncomingMessage, res: ServerResponse) => res.on('finish', () => void (res.statusCode === 401 && refused++));
    env.api.app.server.on('request', count);
    onTestFinished(() => void env.api.app.server.off('request', count));
    const refusals = () => refused;
    await page.goto(`${url}/jobs`);
    const dialog = page.getByRole('dialog', { name: 'API token' });
    // The page tells the console that the API wants a token: it asks before its first request.
    await dialog.waitFor();
    await ui.shot('prompt');

    const before = refusals();
    await dialog.getByLabel('Token').fill('not-the-token');
    await dialog.getByRole('button', { name: 'Use token' }).click();
    await dialog.getByText(/The token was refused/).waitFor();
    await eventually(() => expect(refusals()).toBeGreaterThan(before), { timeoutMs: 5_000, intervalMs: 50 });
    await ui.shot('refused');

    await dialog.getByLabel('Token').fill(TOKEN);
    await dialog.getByRole('button', { name: 'Use token' }).click();
    await dialog.waitFor({ state: 'hidden' });
    await page.getByRole('link', { name: 'second', exact: true }).waitFor();
    expect(await page.evaluate<string | null>("sessionStorage.getItem('weir.token')")).toBe(TOKEN);
    await ui.shot('jobs');
  });

  it('a job page for a job that does not exist says so', async () => {
    const ui = await session(browser, 'bad job id', { token: TOKEN });
    // The browser logs the API's 404 (unknown id) and 400 (malformed id) as failed resources.
    ui.allow(/status of 40[04]/);
    const { page } = ui;
    for (const [path, says] of [
      ['/jobs/no-such-job', /no job no-such-job|not found|does not exist/i],
      ['/jobs/not%20an%20id', /invalid id|not found|does not exist/i],
    ] as const) {
      await page.goto(`${url}${path}`);
      const message = page.locator('[role=alert], .notice.error').filter({ hasText: says });
      await message.first().waitFor();
      await ui.shot(path === '/jobs/no-such-job' ? 'unknown-id' : 'invalid-id');
    }
  });

  it('the first load is under 300 KB of gzipped JavaScript and CSS', async () => {
    const ui = await session(browser, 'first load');
    // No token in this fresh context: the list's requests meet a 401 and the prompt (the test above checks it).
    ui.allow(/status of 401/);
    const { page } = ui;
    const assets: { url: string; raw: number; gzipped: number }[] = [];
    const pending: Promise<void>[] = [];
    page.on('response', (res) => {
      if (!/\.(js|css)$/.test(new URL(res.url()).pathname)) return;
      pending.push(res.body().then((body) => void assets.push({ url: new URL(res.url()).pathname, raw: body.length, gzipped: gzipSync(body).length })));
    });
    // A fresh context has nothing cached: this is what a first visit downloads.
    await page.goto(`${url}/jobs`, { waitUntil: 'networkidle' });
    await Promise.all(pending);
    const total = assets.reduce((sum, asset) => sum + asset.gzipped, 0);
    console.info(`first load: ${assets.length} files, ${(total / 1024).toFixed(1)} KB gzipped (${assets.map((a) => `${a.url} ${(a.gzipped / 1024).toFixed(1)} KB`).join(', ')})`);
    expect(assets.some((asset) => asset.url.endsWith('.js'))).toBe(true);
    expect(total, JSON.stringify(assets)).toBeLessThan(FIRST_LOAD_BUDGET);
  });

  it('the jobs list fits a 375 px phone: the page never scrolls sideways (the table may, in its wrapper)', async () => {
    const ui = await session(browser, 'jobs list on a phone', { viewport: PHONE, token: TOKEN });
    const { page } = ui;
    await page.goto(`${url}/jobs`);
    await page.getByRole('link', { name: 'second', exact: true }).waitFor();
    const widths = await page.evaluate<{ viewport: number; document: number; body: number }>(
      '({ viewport: window.innerWidth, document: document.documentElement.scrollWidth, body: document.body.scrollWidth })',
    );
    expect(widths.document).toBeLessThanOrEqual(widths.viewport);
    expect(widths.body).toBeLessThanOrEqual(widths.viewport);
    // The navigation and the create link stay on screen.
    for (const name of ['Jobs', 'Create', 'Controllers']) {
      const box = await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name, exact: true }).boundingBox();
      expect(box !== null && box.x >= 0 && box.x + box.width <= PHONE.width, name).toBe(true);
    }
    await ui.shot('jobs');

    // The create page too, with an example's JSON and graph (both scroll in their own boxes).
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Create', exact: true }).click();
    await page.getByRole('button', { name: 'counter', exact: true }).click();
    await page.locator('[data-testid=create-preview] [data-node="preview"]').waitFor();
    const createWidths = await page.evaluate<{ viewport: number; document: number }>('({ viewport: window.innerWidth, document: document.documentElement.scrollWidth })');
    expect(createWidths.document).toBeLessThanOrEqual(createWidths.viewport);
    await ui.shot('create');
  });
});
