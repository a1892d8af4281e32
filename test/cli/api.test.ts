/** `weir api` against a real nats-server: it listens, answers, says whether a token is needed, and stops on a signal. */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect } from 'vitest';
import { apiCommand } from '../../src/cli/api.js';
import type { NatsServerHandle } from '../support/nats-server.js';
import { eventually } from '../support/nats.js';
import { testWithNatsServer } from '../support/nats-fixtures.js';

const it = testWithNatsServer();
let server: NatsServerHandle;

it.beforeAll(({ natsServer }) => {
  server = natsServer;
});

function runApi(args: string[], env: NodeJS.ProcessEnv) {
  const out: string[] = [];
  const err: string[] = [];
  const abort = new AbortController();
  const done = apiCommand(['--api-port', '0', '--nats', server.url, ...args], {
    out: (line) => out.push(line),
    err: (line) => err.push(line),
    env: { WEIR_LOG_LEVEL: 'silent', ...env },
    signal: abort.signal,
  });
  const url = () =>
    eventually(
      () => {
        const match = /listening on (http:\/\/\S+\/api\/v1)/.exec(out.join('\n'));
        expect(match, err.join('\n')).not.toBeNull();
        return match![1]!;
      },
      { timeoutMs: 15_000 },
    );
  return { done, out, err, url, stop: () => abort.abort() };
}

describe('weir api', () => {
  it('serves /api/v1 without a token on loopback, and stops with exit 0', async () => {
    const api = runApi([], {});
    const base = await api.url();
    expect(base).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/api\/v1$/);
    expect(api.out.join('\n')).toContain('no token');
    const ping = await fetch(`${base}/ping`);
    expect(ping.status).toBe(200);
    expect(await ping.json()).toEqual({ pong: true });
    api.stop();
    expect(await api.done).toBe(0);
    await expect(fetch(`${base}/ping`)).rejects.toThrow();
  }, 30_000);

  it('takes examples/counter.json as the README’s curl sends it (no controller here: 503, not 400)', async () => {
    const api = runApi([], {});
    const base = await api.url();
    try {
      const response = await fetch(`${base}/pipelines`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: readFileSync('examples/counter.json', 'utf8') });
      const body = (await response.json()) as { error?: string };
      expect(response.status, body.error).toBe(503);
    } finally {
      api.stop();
      await api.done;
    }
  }, 30_000);

  it('takes the token from a file: routes need it, and it is never printed', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'weir-api-')), 'token');
    writeFileSync(file, 'tok-from-file\n');
    const api = runApi(['--api-token-file', file], {});
    const base = await api.url();
    expect(api.out.join('\n')).toContain('bearer token required');
    expect((await fetch(`${base}/pipelines`)).status).toBe(401);
    const authed = await fetch(`${base}/openapi.json`, { headers: { authorization: 'Bearer tok-from-file' } });
    expect(authed.status).toBe(200);
    await authed.body?.cancel();
    api.stop();
    expect(await api.done).toBe(0);
    expect([...api.out, ...api.err].join('\n')).not.toContain('tok-from-file');
  }, 30_000);

  it('refuses a public interface without a token (exit 1), and an empty token file (exit 2)', async () => {
    const open = runApi(['--api-host', '0.0.0.0'], {});
    expect(await open.done).toBe(1);
    expect(open.err.join('\n')).toMatch(/weir api: cannot start: .*without WEIR_API_TOKEN/);

    const file = join(mkdtempSync(join(tmpdir(), 'weir-api-')), 'empty');
    writeFileSync(file, '\n');
    const empty = runApi([], { WEIR_API_TOKEN_FILE: file });
    expect(await empty.done).toBe(2);
    expect(empty.err.join('\n')).toContain(`the API token file ${file} is empty`);
  }, 30_000);
});
