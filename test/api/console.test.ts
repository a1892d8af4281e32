/**
 * The web console and the API docs on the API's own origin: the built files, the router's paths falling
 * back to index.html, the API's paths keeping their JSON errors, and the token guarding the API only.
 * The console here is a stand-in build in a temp dir, so the test does not depend on `npm run build`.
 */
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect } from 'vitest';
import { startApi, type ApiServer } from '../../src/api/index.js';
import { AUTH_META, defaultConsoleDir } from '../../src/api/console.js';
import { expectError, http, log, startEnv, type Env } from './harness.js';
import { testWithNatsServer } from '../support/nats-fixtures.js';

const TOKEN = 'console-test-token';
const auth = { authorization: `Bearer ${TOKEN}` };
const INDEX = '<!doctype html><html><head><script type="module" src="/assets/index-abc123.js"></script></head><body><div id="app">stand-in console</div></body></html>';
const SCRIPT = 'console.log("weir");';
/** The page as served by an API with a token: it tells the console to ask for the token first. */
const PAGE = INDEX.replace('</head>', `${AUTH_META}\n</head>`);

const it = testWithNatsServer();

describe('the web console and the API docs', () => {
  let env: Env;
  let dir: string;
  let unbuilt: ApiServer | undefined;

  it.beforeAll(async ({ natsServer, connect }) => {
    dir = mkdtempSync(join(tmpdir(), 'weir-console-'));
    mkdirSync(join(dir, 'assets'));
    writeFileSync(join(dir, 'index.html'), INDEX);
    writeFileSync(join(dir, 'assets', 'index-abc123.js'), SCRIPT);
    env = await startEnv({ natsServer, connect }, { api: { token: TOKEN, consoleDir: dir } });
    unbuilt = await startApi({ nc: await connect('api-unbuilt'), logger: log, port: 0, consoleDir: null });
  });
  afterAll(async () => {
    await unbuilt?.close();
    await env?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('serves index.html at / without a token, with its security policy and the hint that the API wants one', async () => {
    const res = await http(`${env.api.url}/`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/html/);
    expect(res.text).toBe(PAGE);
    expect(res.headers.get('content-security-policy')).toContain("default-src 'self'");
    expect(res.headers.get('cache-control')).toBe('no-cache');
  });

  it('serves the built assets without a token, cached for good', async () => {
    const res = await http(`${env.api.url}/assets/index-abc123.js`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/javascript/);
    expect(res.text).toBe(SCRIPT);
    expect(res.headers.get('cache-control')).toContain('immutable');
  });

  it("answers the router's paths with index.html, and missing files with a 404", async () => {
    for (const path of ['/jobs', '/jobs/abc-123', '/create', '/controllers', '/anything/else?x=1']) {
      const res = await http(`${env.api.url}${path}`);
      expect({ path, status: res.status }).toEqual({ path, status: 200 });
      expect(res.text).toBe(PAGE);
    }
    expectError(await http(`${env.api.url}/assets/index-gone.js`), 404);
    // index.html itself is only ever the page above, never the raw file.
    expectError(await http(`${env.api.url}/index.html`), 404);
    expectError(await http(`${env.api.url}/favicon.ico`), 404);
    expectError(await http(`${env.api.url}/jobs`, 'POST', { body: {} }), 404);
  });

  it('serves a rebuild without a restart: the new index.html and its new assets', async () => {
    const rebuilt = INDEX.replace('index-abc123.js', 'index-def456.js');
    writeFileSync(join(dir, 'assets', 'index-def456.js'), SCRIPT);
    writeFileSync(join(dir, 'index.html'), rebuilt);
    try {
      expect((await http(`${env.api.url}/jobs`)).text).toBe(rebuilt.replace('</head>', `${AUTH_META}\n</head>`));
      expect((await http(`${env.api.url}/assets/index-def456.js`)).text).toBe(SCRIPT);
      // While a rebuild has removed index.html, the last one read is served.
      rmSync(join(dir, 'index.html'));
      expect((await http(`${env.api.url}/`)).text).toContain('index-def456.js');
    } finally {
      writeFileSync(join(dir, 'index.html'), INDEX);
    }
    expect((await http(`${env.api.url}/`)).text).toBe(PAGE);
  });

  it('keeps the API behind the token, with its JSON errors', async () => {
    expectError(await http(`${env.base}/pipelines`), 401, /missing/);
    expectError(await http(`${env.base}/nowhere`), 401, /missing/);
    expectError(await http(`${env.api.url}/metrics`), 401, /missing/);
    expectError(await http(`${env.base}/openapi.json`), 401, /missing/);
    // A path the router decodes to an API route is that route: percent-encoding does not make it a console path.
    expectError(await http(`${env.api.url}/%61pi/v1/pipelines`), 401, /missing/);
    expectError(await http(`${env.api.url}/%6detrics`), 401, /missing/);
    expect((await http(`${env.base}/pipelines`, 'GET', { headers: auth })).status).toBe(200);
    expectError(await http(`${env.base}/nowhere`, 'GET', { headers: auth }), 404, /no route GET \/api\/v1\/nowhere/);
    expectError(await http(`${env.api.url}/api/v2/pipelines`, 'GET', { headers: auth }), 404);
    // The console's files are routes of their own, not a wildcard: an unknown method on an API path is still a 404.
    expectError(await http(`${env.base}/nowhere`, 'POST', { headers: auth, body: {} }), 404);
    expectError(await http(`${env.base}/pipelines`, 'PUT', { headers: auth, body: {} }), 405);
  });

  it('serves the interactive API docs at /api/v1/docs without a token, over the OpenAPI document', async () => {
    const page = await http(`${env.base}/docs`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    expect(page.text).toMatch(/swagger/i);
    const doc = await http<{ openapi: string; paths: Record<string, unknown> }>(`${env.base}/docs/json`);
    expect(doc.status).toBe(200);
    expect(doc.body.openapi).toMatch(/^3\./);
    expect(Object.keys(doc.body.paths)).toContain('/api/v1/pipelines');
    // Neither the console's files nor the docs' own routes are API operations.
    expect(Object.keys(doc.body.paths).filter((p) => !p.startsWith('/api/v1/') && p !== '/metrics')).toEqual([]);
    expect(Object.keys(doc.body.paths).filter((p) => p.startsWith('/api/v1/docs'))).toEqual([]);
  });

  it('starts without a built console, saying so at / and at the router\'s paths', async () => {
    for (const path of ['/', '/jobs/x']) {
      const res = await http(`${unbuilt!.url}${path}`);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/^text\/html/);
      expect(res.text).toContain('not built');
      expect(res.text).not.toContain(AUTH_META);
    }
    expect((await http(`${unbuilt!.url}/api/v1/ping`)).body).toEqual({ pong: true });
    expectError(await http(`${unbuilt!.url}/assets/index-abc123.js`), 404);
  });

  it("looks for the built console in the package's dist/console by default", () => {
    expect(defaultConsoleDir()).toBe(fileURLToPath(new URL('../../dist/console/', import.meta.url)));
  });
});
