/**
 * `GET /api/v1/controllers` through real HTTP, on a real nats-server. The controller does not serve
 * `weir.api.controllers.list` yet (its request server is wired separately), so a tiny real NATS responder
 * answers it here with a valid `listControllersReplySchema` reply, an error reply, or nothing at all; the
 * handler that builds the reply from the shard leases is tested in test/controller/fleet-requests.test.ts.
 */
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import { afterAll, describe, expect } from 'vitest';
import { startApi, type ApiServer } from '../../src/api/index.js';
import type { ControllerList } from '../../src/api/schemas.js';
import { encode, errorReply, subjects, type ListControllersReply } from '../../src/protocol/index.js';
import { testWithNatsServer } from '../support/nats-fixtures.js';
import { expectError, http, log } from './harness.js';

const it = testWithNatsServer();
const TOKEN = 'fleet-token-value';

const REPLY: ListControllersReply = {
  v: 1,
  shards: 16,
  lease_ttl_ms: 1_500,
  answered_by: 'ctl-a',
  data: [
    { controller_id: 'ctl-a', jobs: 3, shards: 8, oldest_lease_age_ms: 420, presence_age_ms: 17, live: true },
    { controller_id: 'ctl-b.host-7', jobs: 0, shards: 8, oldest_lease_age_ms: 1_380, presence_age_ms: null, live: false },
  ],
};

describe('GET /api/v1/controllers', () => {
  let nc: NatsConnection;
  let api: ApiServer;
  let secured: ApiServer;
  let responder: Subscription | undefined;
  /** What the responder answers; every request body it got. */
  let answer: () => Uint8Array = () => encode(REPLY);
  const received: unknown[] = [];

  async function respond(): Promise<void> {
    responder = nc.subscribe(subjects.apiControllersList(), {
      callback: (_err, msg) => {
        received.push(msg.json());
        msg.respond(answer());
      },
    });
    await nc.flush();
  }

  it.beforeAll(async ({ connect }) => {
    nc = await connect('fake-controller');
    await respond();
    api = await startApi({ nc: await connect('api'), logger: log, port: 0, checkResponses: true, readCacheMs: 0, controllerTimeoutMs: 1_000 });
    secured = await startApi({ nc: await connect('api-secured'), logger: log, port: 0, checkResponses: true, token: TOKEN });
  });
  afterAll(async () => {
    await api?.close();
    await secured?.close();
  });

  it('answers the fleet as the controller that answered sees it, without v, snake_case as on the wire', async () => {
    received.length = 0;
    const res = await http<ControllerList>(`${api.url}/api/v1/controllers`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    const { v: _v, ...body } = REPLY;
    expect(res.body).toEqual(body);
    expect(received).toEqual([{ v: 1 }]);
  });

  it('needs the token when the API has one', async () => {
    expectError(await http(`${secured.url}/api/v1/controllers`), 401, /missing/);
    expectError(await http(`${secured.url}/api/v1/controllers`, 'GET', { headers: { authorization: 'Bearer nope' } }), 401, /invalid/);
    const res = await http<ControllerList>(`${secured.url}/api/v1/controllers`, 'GET', { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(res.status).toBe(200);
    expect(res.body.answered_by).toBe('ctl-a');
  });

  it('rejects query parameters, maps error replies and unreadable replies, and is 503 with no controller', async () => {
    expectError(await http(`${api.url}/api/v1/controllers?limit=5`), 400, /limit/);
    try {
      answer = () => encode(errorReply('internal', 'the leases bucket is gone'));
      expectError(await http(`${api.url}/api/v1/controllers`), 500, /leases bucket/);
      answer = () => encode({ v: 1, shards: 0, lease_ttl_ms: 1, answered_by: 'x', data: [] });
      expectError(await http(`${api.url}/api/v1/controllers`), 502, /does not decode/);
      responder?.unsubscribe();
      await nc.flush();
      expectError(await http(`${api.url}/api/v1/controllers`), 503, /controller/);
    } finally {
      answer = () => encode(REPLY);
      if (responder?.isClosed() === true) await respond();
    }
  });

  it('is in the OpenAPI document with its response schema', async () => {
    const doc = await http<{ paths: Record<string, Record<string, { responses: Record<string, { content?: Record<string, { schema: { required?: string[] } }> }> }>> }>(
      `${api.url}/api/v1/openapi.json`,
    );
    const op = doc.body.paths['/api/v1/controllers']?.['get'];
    expect(op).toBeDefined();
    expect(op!.responses['200']!.content!['application/json']!.schema.required?.sort()).toEqual(['answered_by', 'data', 'lease_ttl_ms', 'shards']);
  });
});
