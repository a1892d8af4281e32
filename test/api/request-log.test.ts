/** The API logs each request once, at debug: nothing at info for routine traffic. */
import { request as httpRequest, type ClientRequest } from 'node:http';
import { pino } from 'pino';
import { describe, expect } from 'vitest';
import { testWithNatsServer } from '../support/nats-fixtures.js';
import { eventually } from '../support/nats.js';
import { counterPipeline, http, startEnv } from './harness.js';

interface Line {
  level: number;
  msg: string;
  url?: string;
  statusCode?: number;
  reqId?: string;
}

const it = testWithNatsServer();

describe('request logging', () => {
  it('one debug line per request, whatever its outcome; an event stream is one line too', async ({ natsServer, connect }) => {
    const lines: Line[] = [];
    const logger = pino({ level: 'debug' }, { write: (line: string) => void lines.push(JSON.parse(line) as Line) });
    const env = await startEnv({ natsServer, connect }, { apiLogger: logger });
    try {
      const before = lines.length;
      const forRequest = (url: string) => lines.slice(before).filter((l) => l.url === url || (l.reqId !== undefined && lines.some((o) => o.reqId === l.reqId && o.url === url)));
      expect((await http(`${env.base}/ping`)).status).toBe(200);
      expect((await http(`${env.base}/pipelines/nope`)).status).toBe(404);
      const created = await http<{ id: string }>(`${env.base}/pipelines`, 'POST', { body: counterPipeline('logged') });
      expect(created.status).toBe(201);
      const id = created.body.id;
      // A stream that is hijacked from Fastify: logged once when it opens.
      const events = `/api/v1/pipelines/${id}/jobs/${id}/events`;
      const stream = await new Promise<ClientRequest>((resolve, reject) => {
        const req = httpRequest(`${env.api.url}${events}`, (res) => {
          expect(res.statusCode).toBe(200);
          resolve(req);
        });
        req.on('error', reject);
        req.end();
      });
      await eventually(() => expect(forRequest(events)).toHaveLength(1));
      stream.destroy();

      for (const url of ['/api/v1/ping', '/api/v1/pipelines/nope', '/api/v1/pipelines', events]) {
        const mine = forRequest(url);
        expect(mine, url).toHaveLength(1);
        expect(mine[0]?.level, url).toBe(20);
      }
      expect(forRequest('/api/v1/pipelines/nope')[0]?.statusCode).toBe(404);
      // Nothing about requests at info or above.
      expect(lines.slice(before).filter((l) => l.level >= 30 && l.reqId !== undefined)).toEqual([]);
    } finally {
      await env.close();
    }
  }, 60_000);
});
