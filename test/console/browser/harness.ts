/**
 * The console's browser tests: a real headless Chromium (playwright-core, the system's /usr/bin/chromium)
 * on a real weir: a nats-server of the test's own (fixtures), a controller, a worker and the HTTP API on a
 * free loopback port serving a console built from the current sources (build.ts).
 *
 * One browser per test file; every test gets a fresh context (its own sessionStorage) through
 * `session(name)`, whose screenshots go to test-results/console/<test>/<page>.png. A test fails on any
 * console error or uncaught page error in its pages, except those it says it expects (`allow`: a 401 the
 * token test provokes is logged by the browser as a failed resource).
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { onTestFinished } from 'vitest';
import { startEnv, type Env, type EnvNats, type EnvOptions } from '../../api/harness.js';
import { consoleBuild, ROOT } from './build.js';

export const CHROMIUM = process.env['WEIR_CHROMIUM'] ?? '/usr/bin/chromium';
export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
export const SHOTS = join(ROOT, 'test-results', 'console');
export const DESKTOP = { width: 1280, height: 800 };
export const PHONE = { width: 375, height: 800 };

export function launchBrowser(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
}

/** A weir with the console: `startEnv` (test/api/harness.ts) with a worker and the freshly built console. */
export async function startConsoleEnv(nats: EnvNats, options: EnvOptions = {}): Promise<Env> {
  const consoleDir = await consoleBuild();
  return startEnv(nats, { worker: true, ...options, api: { consoleDir, ...options.api } });
}

export interface Session {
  page: Page;
  context: BrowserContext;
  /** Saves the page as test-results/console/<test>/<name>.png; returns the path. */
  shot(name: string, options?: { fullPage?: boolean }): Promise<string>;
  /** Console errors matching `pattern` are expected in this test. */
  allow(pattern: RegExp): void;
  /** Every console error and page error so far that no `allow` covers. */
  unexpected(): string[];
  /** Every console error and page error so far. */
  errors(): string[];
}

export interface SessionOptions {
  /** Default 1280×800. */
  viewport?: { width: number; height: number };
  /** The API token, in the tab's sessionStorage before any page runs. */
  token?: string;
}

const folderOf = (name: string) =>
  name
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-|-$/g, '')
    .slice(0, 80);

/**
 * A fresh context and page for the current test, at `url`'s origin. Closed when the test ends, which
 * then fails if the page logged an unexpected error; a failing test leaves a `failure.png`.
 */
export async function session(browser: Browser, test: string, options: SessionOptions = {}): Promise<Session> {
  const context = await browser.newContext({ viewport: options.viewport ?? DESKTOP, colorScheme: 'light' });
  // As if the user had answered the token prompt already (console/src/token.ts keeps it there).
  if (options.token !== undefined) await context.addInitScript(`sessionStorage.setItem('weir.token', ${JSON.stringify(options.token)})`);
  const page = await context.newPage();
  page.setDefaultTimeout(20_000);
  const errors: string[] = [];
  const allowed: RegExp[] = [];
  page.on('console', (message) => {
    if (message.type() !== 'error') return;
    const at = message.location();
    errors.push(`console error: ${message.text()}${at.url === '' ? '' : ` (${at.url}:${at.lineNumber})`}`);
  });
  page.on('pageerror', (error) => errors.push(`page error: ${error.stack ?? error.message}`));
  const folder = join(SHOTS, folderOf(test));
  const shot = async (name: string, shotOptions: { fullPage?: boolean } = {}) => {
    mkdirSync(folder, { recursive: true });
    const path = join(folder, `${name}.png`);
    await page.screenshot({ path, fullPage: shotOptions.fullPage ?? true });
    return path;
  };
  const unexpected = () => errors.filter((error) => !allowed.some((pattern) => pattern.test(error)));
  onTestFinished(async ({ task }) => {
    if (task.result?.state === 'fail') await shot('failure').catch(() => undefined);
    const left = unexpected();
    await context.close().catch(() => undefined);
    if (left.length > 0) throw new Error(`the page logged ${left.length} unexpected error(s):\n${left.join('\n')}`);
  });
  return { page, context, shot, allow: (pattern) => allowed.push(pattern), unexpected, errors: () => [...errors] };
}

/** Counts full page loads, so a test can tell the page was never reloaded. */
export function countLoads(page: Page): () => number {
  let loads = 0;
  page.on('load', () => loads++);
  return () => loads;
}
