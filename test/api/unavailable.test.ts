import { describe, expect } from 'vitest';
import { eventually } from '../support/nats.js';
import { counterPipeline, expectError, http, startEnv, type PipelineResponse } from './harness.js';
import { testWithNatsServerPerTest } from '../support/nats-fixtures.js';

// Each test starts a weir of its own, on a server of its own.
const it = testWithNatsServerPerTest();

describe('the controller is away (NATS is up)', () => {
  it('answers 503 within the client deadline, still serves the ping and its own metrics', { timeout: 30_000 }, async ({ natsServer, connect }) => {
    // No read cache: every request must reach the controller that is gone.
    const env = await startEnv({ natsServer, connect }, { api: { controllerTimeoutMs: 500, readCacheMs: 0 } });
    try {
      const id = (await http<PipelineResponse>(`${env.base}/pipelines`, 'POST', { body: counterPipeline('away') })).body.id;
      expect(id).toBeTypeOf('string');
      await env.stopController();

      const job = `${env.base}/pipelines/${id}/jobs/${id}`;
      const requests: [string, string, unknown?][] = [
        ['POST', `${env.base}/pipelines`, counterPipeline('later')],
        ['GET', `${env.base}/pipelines`],
        ['GET', `${env.base}/pipelines/${id}`],
        ['PATCH', `${env.base}/pipelines/${id}`, { stop: 'immediate' }],
        ['POST', `${env.base}/pipelines/${id}/restart`, {}],
        ['DELETE', `${env.base}/pipelines/${id}`],
        ['GET', `${env.base}/jobs`],
        ['GET', `${env.base}/pipelines/${id}/jobs`],
        ['GET', `${job}/errors`],
        ['GET', `${job}/checkpoints`],
        ['GET', `${job}/checkpoints/1/operator_checkpoint_groups`],
        ['POST', `${job}/checkpoints`, {}],
        ['GET', `${job}/operator_metric_groups`],
      ];
      for (const [method, url, body] of requests) {
        const started = Date.now();
        const res = await http(url, method, { body });
        expectError(res, 503, /controller/);
        expect(Date.now() - started, `${method} ${url}`).toBeLessThan(1_500);
      }

      expect((await http(`${env.base}/ping`)).body).toEqual({ pong: true });
      const metrics = await http(`${env.api.url}/metrics`);
      expect(metrics.status).toBe(200);
      expect(metrics.text).toContain('weir_controller_up 0');
      expect(metrics.text).toMatch(/weir_api_http_request_duration_seconds_count\{[^}]*status="503"/);
    } finally {
      await env.close();
    }
  });
});

describe('NATS itself is away', () => {
  it('answers 503 within the deadline on every route that needs it, and recovers when NATS is back', { timeout: 60_000 }, async ({ natsServer, connect }) => {
    const env = await startEnv({ natsServer, connect }, { api: { controllerTimeoutMs: 500, readCacheMs: 0 } });
    try {
      const id = (await http<PipelineResponse>(`${env.base}/pipelines`, 'POST', { body: counterPipeline('nats-away') })).body.id;
      const job = `${env.base}/pipelines/${id}/jobs/${id}`;
      await env.server.stop();

      for (const [method, url] of [
        ['GET', `${env.base}/pipelines/${id}`],
        ['PATCH', `${env.base}/pipelines/${id}`],
        ['GET', `${job}/errors`],
        ['GET', `${job}/events`],
      ] as const) {
        const started = Date.now();
        const res = await http(url, method, method === 'PATCH' ? { body: { stop: 'immediate' } } : {});
        expectError(res, 503);
        // The event log's reads have the controller client's deadline too: an answer, not a hang.
        expect(Date.now() - started, `${method} ${url}`).toBeLessThan(3_000);
      }
      expect((await http(`${env.base}/ping`)).body).toEqual({ pong: true });

      await env.server.restart();
      await eventually(async () => expect((await http<PipelineResponse>(`${env.base}/pipelines/${id}`)).status).toBe(200), { timeoutMs: 30_000, intervalMs: 250 });
    } finally {
      await env.close();
    }
  });
});
