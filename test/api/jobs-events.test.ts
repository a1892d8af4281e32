/**
 * `GET /api/v1/jobs/events`, every job's transitions for the console's jobs list, on a real nats-server,
 * controller and worker. The client is `fetch` with the console's own SSE parser (console/src/sse-parser.ts),
 * as the console reads it: the token in a header, Last-Event-ID to resume.
 */
import { afterAll, describe, expect } from 'vitest';
import { SseParser, type SseMessage } from '../../console/src/sse-parser.js';
import type { TransitionEventData } from '../../src/api/routes/streams.js';
import type { LogRow } from '../../src/store/index.js';
import { eventually } from '../support/nats.js';
import { testWithNatsServer } from '../support/nats-fixtures.js';
import { untilState } from '../support/cluster.js';
import { counterPipeline, expectError, http, startEnv, type Env, type PipelineResponse } from './harness.js';

const TOKEN = 'jobs-events-token';
const auth = { authorization: `Bearer ${TOKEN}` };

/** Reads an SSE response in the background until closed. */
class SseReader {
  readonly messages: SseMessage[] = [];
  private readonly abort = new AbortController();
  status = 0;
  private constructor() {}

  static async open(url: string, headers: Record<string, string>): Promise<SseReader> {
    const reader = new SseReader();
    const res = await fetch(url, { headers: { accept: 'text/event-stream', ...headers }, signal: reader.abort.signal });
    reader.status = res.status;
    if (res.ok && res.body !== null) void reader.read(res.body);
    return reader;
  }

  of(event: string): SseMessage[] {
    return this.messages.filter((m) => m.event === event);
  }

  transitions(): Array<TransitionEventData & { id: string }> {
    return this.of('transition').map((m) => ({ ...(JSON.parse(m.data) as TransitionEventData), id: m.lastEventId }));
  }

  close(): void {
    this.abort.abort();
  }

  private async read(body: ReadableStream<Uint8Array>): Promise<void> {
    const parser = new SseParser();
    const decoder = new TextDecoder();
    try {
      for await (const chunk of body) this.messages.push(...parser.push(decoder.decode(chunk, { stream: true })));
    } catch {
      // Closed by the test.
    }
  }
}

const it = testWithNatsServer();

describe('GET /api/v1/jobs/events', () => {
  let env: Env;
  it.beforeAll(async ({ natsServer, connect }) => {
    env = await startEnv({ natsServer, connect }, { worker: true, api: { token: TOKEN } });
  });
  afterAll(async () => {
    await env?.close();
  });

  async function transitionsOf(jobId: string, after = 0): Promise<Array<LogRow & { kind: 'transition' }>> {
    const page = await env.store.log.since(jobId, after, 1000);
    return page.data.filter((row): row is LogRow & { kind: 'transition' } => row.kind === 'transition');
  }

  async function create(name: string): Promise<string> {
    const res = await http<PipelineResponse>(`${env.base}/pipelines`, 'POST', { body: counterPipeline(name), headers: auth });
    expect(res.status).toBe(201);
    return res.body.id;
  }

  it('sends ready, then every job\'s transitions in log order, then deletions; and resumes after Last-Event-ID from the log', { timeout: 90_000 }, async () => {
    const live = await SseReader.open(`${env.base}/jobs/events`, auth);
    try {
      expect(live.status).toBe(200);
      await eventually(() => expect(live.of('ready')).toHaveLength(1));
      const ready = live.of('ready')[0]!;
      expect(live.messages[0]).toBe(ready);
      const readySeq = Number(ready.lastEventId);
      expect(JSON.parse(ready.data)).toEqual({ seq: readySeq });

      const a = await create('feed-a');
      const b = await create('feed-b');
      await untilState(() => env.client.get(a), 'Running', { timeoutMs: 30_000 });
      await untilState(() => env.client.get(b), 'Running', { timeoutMs: 30_000 });
      await eventually(() => expect(live.transitions().filter((t) => t.to === 'Running').map((t) => t.job_id).sort()).toEqual([a, b].sort()), { timeoutMs: 10_000 });

      // Exactly the log's transitions of both jobs, merged in log order, each with its sequence as its id.
      const logged = [...(await transitionsOf(a, readySeq)), ...(await transitionsOf(b, readySeq))].sort((x, y) => x.seq - y.seq);
      const jobOf = new Map<number, string>();
      for (const row of await transitionsOf(a, readySeq)) jobOf.set(row.seq, a);
      for (const row of await transitionsOf(b, readySeq)) jobOf.set(row.seq, b);
      expect(live.transitions()).toEqual(
        logged.map((r) => ({ id: String(r.seq), seq: r.seq, job_id: jobOf.get(r.seq), from: r.from, to: r.to, generation: r.generation, at: Math.round(r.at * 1000) })),
      );
      expect(live.transitions().map((t) => t.to)).toEqual(expect.arrayContaining(['Compiling', 'Scheduling', 'Running']));

      // A client that left after b's first transition is replayed everything after it, of every job.
      const firstOfB = live.transitions().find((t) => t.job_id === b)!;
      const resumed = await SseReader.open(`${env.base}/jobs/events`, { ...auth, 'last-event-id': firstOfB.id });
      try {
        const expected = live.transitions().filter((t) => t.seq > firstOfB.seq);
        await eventually(() => expect(resumed.transitions()).toEqual(expected));
        expect(resumed.messages[0]?.event).toBe('ready');
        expect(resumed.messages[0]?.lastEventId).toBe(firstOfB.id);
      } finally {
        resumed.close();
      }

      // Stopping a, then deleting it: its transitions live, then `deleted`.
      expect((await http(`${env.base}/pipelines/${a}`, 'PATCH', { body: { stop: 'immediate' }, headers: auth })).status).toBe(200);
      await eventually(() => expect(live.transitions().filter((t) => t.job_id === a).at(-1)?.to).toBe('Stopped'), { timeoutMs: 20_000 });
      expect((await http(`${env.base}/pipelines/${a}`, 'DELETE', { headers: auth })).status).toBe(204);
      await eventually(() => expect(live.of('deleted').map((m) => JSON.parse(m.data) as unknown)).toEqual([{ job_id: a }]));
    } finally {
      live.close();
    }
  });

  it('needs the token, and refuses a Last-Event-ID that is not a sequence', async () => {
    expectError(await http(`${env.base}/jobs/events`), 401);
    expectError(await http(`${env.base}/jobs/events`, 'GET', { headers: { ...auth, 'last-event-id': 'abc' } }), 400, /Last-Event-ID/);
    expectError(await http(`${env.base}/jobs/events?last_event_id=-1`, 'GET', { headers: auth }), 400, /Last-Event-ID/);
  });
});
