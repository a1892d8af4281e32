import { afterAll, describe, expect } from 'vitest';
import { routesOf } from '../../src/api/error-handling.js';
import { http, startEnv, type Env } from './harness.js';
import { testWithNatsServer } from '../support/nats-fixtures.js';

interface Operation {
  parameters?: { in: string; name: string }[];
  requestBody?: { content: Record<string, { schema: unknown }> };
  responses: Record<string, { content?: Record<string, { schema: unknown }> }>;
}

const it = testWithNatsServer();

describe('GET /api/v1/openapi.json', () => {
  let env: Env;
  it.beforeAll(async ({ natsServer, connect }) => {
    env = await startEnv({ natsServer, connect });
  });
  afterAll(async () => {
    await env?.close();
  });

  it('is an OpenAPI 3 document listing every route with its request and response schemas', async () => {
    const res = await http<{ openapi: string; info: { title: string }; paths: Record<string, Record<string, Operation>> }>(`${env.base}/openapi.json`);
    expect(res.status).toBe(200);
    const doc = res.body;
    expect(doc.openapi).toMatch(/^3\./);
    expect(doc.info.title).toBe('weir');

    // Hidden routes (the web console's files, the docs page) are not API operations.
    const routes = routesOf(env.api.app).filter((r) => !r.hidden);
    expect(routes.length).toBeGreaterThanOrEqual(17);
    const documented = Object.entries(doc.paths).flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`));
    const registered = routes.map((r) => `${r.method} ${r.url.replace(/:([A-Za-z_]+)/g, '{$1}')}`);
    expect(documented.sort()).toEqual([...new Set(registered)].sort());

    for (const route of routes) {
      const path = route.url.replace(/:([A-Za-z_]+)/g, '{$1}');
      const op = doc.paths[path]?.[route.method.toLowerCase()];
      const where = `${route.method} ${route.url}`;
      expect(op, where).toBeDefined();
      const params = (route.url.match(/:[A-Za-z_]+/g) ?? []).map((p) => p.slice(1));
      const pathParams = (op!.parameters ?? []).filter((p) => p.in === 'path').map((p) => p.name);
      expect(pathParams.sort(), where).toEqual(params.sort());
      const success = Object.entries(op!.responses).filter(([status]) => status.startsWith('2'));
      expect(success.length, `${where} success response`).toBeGreaterThan(0);
      // Every 4xx declared is the one error shape.
      for (const [status, response] of Object.entries(op!.responses)) {
        if (!status.startsWith('4') && !status.startsWith('5')) continue;
        expect(response.content?.['application/json']?.schema, `${where} ${status}`).toMatchObject({ properties: { error: { type: 'string' } }, required: ['error'] });
      }
      if (['POST', 'PATCH', 'PUT'].includes(route.method)) expect(op!.requestBody?.content['application/json']?.schema, `${where} body`).toBeDefined();
    }

    const create = doc.paths['/api/v1/pipelines']!['post']!;
    const createBody = create.requestBody!.content['application/json']!.schema as { additionalProperties: unknown; required: string[] };
    expect(createBody.additionalProperties).toBe(false);
    expect(createBody.required).toEqual(['name', 'graph']);
    expect(Object.keys(create.responses)).toEqual(expect.arrayContaining(['201', '400', '413', '415']));
    const errors = doc.paths['/api/v1/pipelines/{id}/jobs/{job_id}/errors']!['get']!;
    expect(errors.parameters!.filter((p) => p.in === 'query').map((p) => p.name).sort()).toEqual(['limit', 'starting_after']);
  });
});
