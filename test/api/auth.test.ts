import { describe, expect } from 'vitest';
import { startApi } from '../../src/api/index.js';
import { tokenMatches } from '../../src/api/auth.js';
import { expectError, http, log, startEnv } from './harness.js';
import { testWithNatsServerPerTest } from '../support/nats-fixtures.js';

const TOKEN = 's3cret-token-value';

// Each test starts a weir of its own, on a server of its own.
const it = testWithNatsServerPerTest();

describe('bearer auth', () => {
  it('compares tokens exactly', () => {
    expect(tokenMatches(TOKEN, `Bearer ${TOKEN}`)).toBe(true);
    expect(tokenMatches(TOKEN, `bearer ${TOKEN}`)).toBe(true);
    expect(tokenMatches(TOKEN, `Bearer ${TOKEN}x`)).toBe(false);
    expect(tokenMatches(TOKEN, `Bearer ${TOKEN.slice(0, -1)}`)).toBe(false);
    expect(tokenMatches(TOKEN, TOKEN)).toBe(false);
    expect(tokenMatches(TOKEN, 'Bearer ')).toBe(false);
    expect(tokenMatches(TOKEN, undefined)).toBe(false);
    expect(tokenMatches(TOKEN, `Basic ${TOKEN}`)).toBe(false);
  });

  it('with a token: every route but the ping needs it, /metrics included', { timeout: 30_000 }, async ({ natsServer, connect }) => {
    const env = await startEnv({ natsServer, connect }, { api: { token: TOKEN } });
    try {
      const auth = { authorization: `Bearer ${TOKEN}` };
      for (const path of ['/api/v1/pipelines', '/api/v1/jobs', '/api/v1/openapi.json', '/metrics', '/api/v1/nowhere']) {
        const missing = await http(`${env.api.url}${path}`);
        expectError(missing, 401, /missing/);
        expect(missing.headers.get('www-authenticate')).toMatch(/^Bearer/);
        const wrong = await http(`${env.api.url}${path}`, 'GET', { headers: { authorization: 'Bearer nope' } });
        expectError(wrong, 401, /invalid/);
        expect(wrong.text).not.toContain(TOKEN);
      }
      expectError(await http(`${env.base}/pipelines`, 'POST', { body: { name: 'x' } }), 401);
      expect((await http(`${env.base}/pipelines`)).status).toBe(401);

      expect((await http(`${env.base}/pipelines`, 'GET', { headers: auth })).body).toEqual({ data: [], has_more: false });
      expectError(await http(`${env.base}/nowhere`, 'GET', { headers: auth }), 404);
      const ping = await http(`${env.base}/ping`);
      expect(ping.status).toBe(200);
      expect(ping.body).toEqual({ pong: true });

      const metrics = await http(`${env.api.url}/metrics`, 'GET', { headers: auth });
      expect(metrics.status).toBe(200);
      expect(metrics.headers.get('content-type')).toMatch(/^text\/plain/);
      expect(metrics.text).toMatch(/weir_api_http_request_duration_seconds_bucket\{[^}]*route="\/api\/v1\/pipelines"/);
      expect(metrics.text).toContain('weir_api_nats_reconnects_total 0');
      expect(metrics.text).toContain('weir_api_sse_clients 0');
      expect(metrics.text).toContain('weir_controller_up 1');
      // The controller's own metrics follow the API's.
      expect(metrics.text.split('\n').some((l) => /^weir_controller_(?!up)/.test(l) || /^weir_jobs?/.test(l))).toBe(true);
    } finally {
      await env.close();
    }
  });

  it('without a token: refuses anything but loopback, and says so when it listens', async ({ natsServer, connect }) => {
    const env = await startEnv({ natsServer, connect });
    try {
      await expect(startApi({ nc: env.nc, logger: log, host: '0.0.0.0', port: 0 })).rejects.toThrow('refusing to listen on 0.0.0.0 without WEIR_API_TOKEN');
      await expect(startApi({ nc: env.nc, logger: log, host: '192.168.1.10', port: 0, token: '' })).rejects.toThrow(/without WEIR_API_TOKEN/);
      const lines: string[] = [];
      const { pino } = await import('pino');
      const logger = pino({ level: 'info' }, { write: (line: string) => lines.push(line) });
      const api = await startApi({ nc: env.nc, logger, port: 0, checkResponses: true });
      try {
        expect(lines.join('')).toContain('no token: listening on 127.0.0.1 only');
        expect((await http(`${api.url}/api/v1/pipelines`)).status).toBe(200);
        expect((await http(`${api.url}/metrics`)).status).toBe(200);
      } finally {
        await api.close();
      }
      const secured: string[] = [];
      const api2 = await startApi({ nc: env.nc, logger: pino({ level: 'info' }, { write: (line: string) => secured.push(line) }), port: 0, token: TOKEN });
      await api2.close();
      expect(secured.join('')).not.toContain(TOKEN);
      expect(secured.join('')).toContain('bearer token required');
    } finally {
      await env.close();
    }
  });
});
