/**
 * The SSE routes end to end: a real nats-server, controller and worker, the routes served over HTTP
 * (by `startApi`, or by a minimal Fastify app of our own where a test needs the Streams object's stats),
 * and real clients (EventSource, and raw `http.request`s with a small parser).
 */
import { request as httpRequest, type ClientRequest, type IncomingMessage } from 'node:http';
import type { NatsConnection } from '@nats-io/transport-node';
import { EventSource } from 'eventsource';
import Fastify, { type FastifyInstance } from 'fastify';
import { serializerCompiler, validatorCompiler } from 'fastify-type-provider-zod';
import { afterAll, describe, expect } from 'vitest';
import type { JobPolicy, JobState } from '../../machines/job/types.js';
import { controllerClient, type ControllerClient } from '../../src/api/controller-client.js';
import { ApiError } from '../../src/api/errors.js';
import { createStreams, streamInternals, type Streams, type TransitionEventData } from '../../src/api/routes/streams.js';
import { startApi, type ApiServer } from '../../src/api/index.js';
import type { Controller } from '../../src/controller/controller.js';
import { PROTOCOL_VERSION, encode, subjects, type JobView, type PipelineInput } from '../../src/protocol/index.js';
import { openStore, type LogRow, type Store } from '../../src/store/index.js';
import type { WorkerHandle } from '../../src/worker/process.js';
import { log, startTestController, startTestWorker, TEST_POLICY, untilState } from '../support/cluster.js';
import { eventually } from '../support/nats.js';
import { testWithNatsServer } from '../support/nats-fixtures.js';
import { impulseToSinkPipeline, type SourceOptions } from '../support/pipelines.js';

const POLICY: Partial<JobPolicy> = { ...TEST_POLICY, stopTimeoutMs: 30_000, heartbeatTimeoutMs: 1_000 };

/** impulse → preview, in batches of `batch` rows, by size alone (no linger), so that the tests can count rows per message. */
const previewPipeline = (name: string, source: SourceOptions = { rate: 20 }, batch = 5) =>
  impulseToSinkPipeline({ name, ...source, sink: 'preview', sinkConfig: { batch_size: batch, linger_ms: 60_000 } });

const logPipeline = (name: string) => impulseToSinkPipeline({ name, rate: 10 });

interface SseMessage {
  event: string;
  id: string | undefined;
  data: string;
}

/** An SSE client on a raw `http.request`: its parser follows the spec's rules (blank line dispatches, `data` joined by LF). */
class RawSse {
  readonly messages: SseMessage[] = [];
  comments = 0;
  ended = false;
  private buffer = '';
  private constructor(
    readonly req: ClientRequest,
    readonly res: IncomingMessage,
  ) {
    res.setEncoding('utf8');
    res.on('data', (chunk: string) => this.feed(chunk));
    res.on('end', () => (this.ended = true));
    res.on('close', () => (this.ended = true));
  }

  static open(url: string, headers: Record<string, string> = {}, paused = false): Promise<RawSse> {
    return new Promise((resolve, reject) => {
      const req = httpRequest(url, { headers: { accept: 'text/event-stream', ...headers } }, (res) => {
        if (paused) res.pause();
        resolve(new RawSse(req, res));
      });
      req.on('error', reject);
      req.end();
    });
  }

  get status(): number {
    return this.res.statusCode ?? 0;
  }

  /** The whole body of a non-stream answer. */
  async body(): Promise<string> {
    await eventually(() => expect(this.ended).toBe(true));
    return this.buffer;
  }

  of(event: string): SseMessage[] {
    return this.messages.filter((m) => m.event === event);
  }

  close(): void {
    this.req.destroy();
  }

  private feed(chunk: string): void {
    this.buffer += chunk;
    if (!(this.res.headers['content-type'] ?? '').startsWith('text/event-stream')) return;
    this.buffer = this.buffer.replace(/\r\n|\r/g, '\n');
    let at: number;
    while ((at = this.buffer.indexOf('\n\n')) >= 0) {
      const block = this.buffer.slice(0, at);
      this.buffer = this.buffer.slice(at + 2);
      let event = 'message';
      let id: string | undefined;
      const data: string[] = [];
      for (const line of block.split('\n')) {
        if (line.startsWith(':')) {
          this.comments++;
          continue;
        }
        const colon = line.indexOf(':');
        const name = colon < 0 ? line : line.slice(0, colon);
        const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
        if (name === 'event') event = value;
        else if (name === 'id') id = value;
        else if (name === 'data') data.push(value);
      }
      if (data.length > 0) this.messages.push({ event, id, data: data.join('\n') });
    }
  }
}

/** A parsed event payload, for assertions. */
const json = (text: string): Record<string, unknown> => JSON.parse(text) as Record<string, unknown>;

/** An EventSource listener on one event type, with the data and the id. */
function on(es: EventSource, type: string, fn: (data: string, id: string) => void): void {
  es.addEventListener(type, (e) => {
    const m = e as unknown as { data: string; lastEventId: string };
    fn(m.data, m.lastEventId);
  });
}

type Transition = TransitionEventData;

const it = testWithNatsServer();

describe('SSE routes', () => {
  let nc: NatsConnection;
  let apiNc: NatsConnection;
  let controllerNc: NatsConnection;
  let controller: Controller;
  let worker: WorkerHandle;
  let client: ControllerClient;
  let store: Store;
  let api: ApiServer;

  it.beforeAll(async ({ connect }) => {
    controllerNc = await connect('controller');
    controller = await startTestController(controllerNc, { policy: POLICY });
    worker = await startTestWorker(await connect('worker'), { slots: 16 });
    nc = await connect('test');
    apiNc = await connect('api');
    client = controllerClient(nc);
    store = await openStore(nc);
    api = await startApi({ nc: apiNc, logger: log, port: 0, checkResponses: true, streams: { heartbeatMs: 1_000 } });
  });

  afterAll(async () => {
    await api?.close();
    await controller?.stop();
    await worker?.stop('immediate');
  });

  /** Our own app around `createStreams`, for the tests that look at the Streams object. */
  async function ownApp(options: { outputBufferEvents?: number; heartbeatMs?: number } = {}, port = 0): Promise<{ app: FastifyInstance; streams: Streams; url: string }> {
    const app = Fastify({ logger: false });
    app.setValidatorCompiler(validatorCompiler);
    app.setSerializerCompiler(serializerCompiler);
    app.setErrorHandler((err, _req, reply) => {
      const status = err instanceof ApiError ? err.statusCode : (err as { statusCode?: number }).statusCode ?? 500;
      return reply.code(status).send({ error: err instanceof Error ? err.message : String(err) });
    });
    const streams = createStreams({ nc: apiNc, controller: controllerClient(apiNc), log: store.log, logger: log, ...options });
    await app.register(streams.routes, { prefix: '/api/v1' });
    await app.listen({ host: '127.0.0.1', port });
    const address = app.server.address();
    const bound = typeof address === 'object' && address !== null ? address.port : 0;
    return { app, streams, url: `http://127.0.0.1:${bound}` };
  }

  async function create(pipeline: PipelineInput): Promise<string> {
    return (await client.create(pipeline)).job_id;
  }

  async function reach(jobId: string, state: JobState, timeoutMs = 20_000): Promise<JobView> {
    return untilState(() => client.get(jobId), state, { timeoutMs });
  }

  async function transitionsAfter(jobId: string, after: number): Promise<Array<LogRow & { kind: 'transition' }>> {
    const page = await store.log.since(jobId, after, 1000);
    return page.data.filter((row): row is LogRow & { kind: 'transition' } => row.kind === 'transition');
  }

  async function newestSeq(jobId: string): Promise<number> {
    return (await store.log.page(jobId, { limit: 1 })).data[0]?.seq ?? 0;
  }

  const eventsPath = (base: string, jobId: string) => `${base}/api/v1/pipelines/${jobId}/jobs/${jobId}/events`;
  const outputPath = (base: string, jobId: string) => `${base}/api/v1/pipelines/${jobId}/jobs/${jobId}/output`;

  it('(1) an EventSource client gets the state, then every transition live as the job is stopped, started and restarted', async () => {
    const jobId = await create(previewPipeline('events-live'));
    await reach(jobId, 'Running');
    await eventually(async () => expect((await transitionsAfter(jobId, 0)).at(-1)?.to).toBe('Running'));
    const before = await newestSeq(jobId);

    const states: Array<{ job_id: string; state: string; generation: number }> = [];
    const got: Array<{ id: string; data: Transition }> = [];
    const es = new EventSource(eventsPath(api.url, jobId));
    try {
      on(es, 'state', (data) => states.push(JSON.parse(data) as (typeof states)[number]));
      on(es, 'transition', (data, id) => got.push({ id, data: JSON.parse(data) as Transition }));
      await eventually(() => expect(states).toEqual([{ job_id: jobId, state: 'Running', generation: 1 }]));

      await client.config(jobId, { stop: 'checkpoint' });
      await eventually(() => expect(got.at(-1)?.data.to).toBe('Stopped'), { timeoutMs: 20_000 });
      await client.config(jobId, { stop: 'none' });
      await eventually(() => expect(got.at(-1)?.data.to).toBe('Running'), { timeoutMs: 20_000 });
      await client.config(jobId, { restart: true });
      await eventually(() => expect(got.filter((t) => t.data.to === 'Running')).toHaveLength(2), { timeoutMs: 20_000 });

      const expected = await transitionsAfter(jobId, before);
      await eventually(() => expect(got.map((t) => Number(t.id))).toEqual(expected.map((r) => r.seq)));
      expect(got.map((t) => t.data)).toEqual(
        expected.map((r) => ({ seq: r.seq, job_id: jobId, from: r.from, to: r.to, generation: r.generation, at: Math.round(r.at * 1000) })),
      );
      expect(got.map((t) => t.data.to)).toContain('CheckpointStopping');
      expect(got.at(-1)?.data.generation).toBe(3);
      expect(states).toHaveLength(1);
    } finally {
      es.close();
      await client.config(jobId, { stop: 'immediate' });
    }
  });

  it('(2) a client reconnecting with Last-Event-ID after the API restarted misses no transition and gets none twice', async () => {
    const jobId = await create(previewPipeline('events-reconnect'));
    await reach(jobId, 'Running');
    await eventually(async () => expect((await transitionsAfter(jobId, 0)).at(-1)?.to).toBe('Running'));
    const before = await newestSeq(jobId);

    let own = await ownApp({ heartbeatMs: 500 });
    const port = new URL(own.url).port;
    const states: string[] = [];
    const ends: string[] = [];
    const got: Transition[] = [];
    const es = new EventSource(eventsPath(own.url, jobId));
    try {
      on(es, 'state', (data) => states.push(data));
      on(es, 'end', (data) => ends.push(data));
      on(es, 'transition', (data) => got.push(JSON.parse(data) as Transition));
      await eventually(() => expect(states).toHaveLength(1));

      await client.config(jobId, { stop: 'checkpoint' });
      await eventually(() => expect(got.map((t) => t.to)).toContain('CheckpointStopping'), { timeoutMs: 20_000 });
      // The API goes away mid-stream; the job moves on meanwhile.
      await own.app.close();
      expect(own.streams.stats().clients).toBe(0);
      await eventually(() => expect(ends).toHaveLength(1));
      await reach(jobId, 'Stopped');
      await client.config(jobId, { stop: 'none' });
      await reach(jobId, 'Running');

      // Back on the same port: EventSource reconnects by itself with the last id it saw.
      own = await ownApp({ heartbeatMs: 500 }, Number(port));
      await eventually(() => expect(got.at(-1)?.to).toBe('Running'), { timeoutMs: 20_000 });
      await client.config(jobId, { restart: true });
      await eventually(() => expect(got.filter((t) => t.to === 'Running')).toHaveLength(2), { timeoutMs: 20_000 });
      const expected = await transitionsAfter(jobId, before);
      await eventually(() => expect(got.map((t) => t.seq)).toEqual(expected.map((r) => r.seq)));
      expect(new Set(got.map((t) => t.seq)).size).toBe(got.length);
      // A resumed stream sends no state snapshot.
      expect(states).toHaveLength(1);
    } finally {
      es.close();

      await own.app.close();
      await client.config(jobId, { stop: 'immediate' });
    }
  }, 60_000);

  it('replays from ?last_event_id, rejects a bad Last-Event-ID with 400 and an unknown job with 404', async () => {
    const jobId = await create(previewPipeline('events-replay'));
    await reach(jobId, 'Running');
    const all = await eventually(async () => {
      const rows = await transitionsAfter(jobId, 0);
      expect(rows.at(-1)?.to).toBe('Running');
      return rows;
    });
    const first = all[0]!;
    const sse = await RawSse.open(`${eventsPath(api.url, jobId)}?last_event_id=${first.seq}`);
    try {
      expect(sse.status).toBe(200);
      expect(sse.res.headers['content-type']).toBe('text/event-stream');
      expect(sse.res.headers['cache-control']).toBe('no-cache');
      expect(sse.res.headers['x-accel-buffering']).toBe('no');
      await eventually(() => expect(sse.of('transition').map((m) => Number(m.id))).toEqual(all.slice(1).map((r) => r.seq)));
      expect(sse.of('state')).toEqual([]);
    } finally {
      sse.close();
    }
    // The header wins over the query.
    const both = await RawSse.open(`${eventsPath(api.url, jobId)}?last_event_id=0`, { 'last-event-id': String(all.at(-1)!.seq) });
    await new Promise((r) => setTimeout(r, 300));
    expect(both.of('transition')).toEqual([]);
    both.close();

    for (const bad of ['abc', '-1', '1.5', '99999999999999999999']) {
      const res = await RawSse.open(eventsPath(api.url, jobId), { 'last-event-id': bad });
      expect(res.status).toBe(400);
      expect(json(await res.body())).toEqual({ error: expect.stringMatching(/Last-Event-ID/) as unknown });
    }
    const unknown = await RawSse.open(eventsPath(api.url, 'no-such-job'));
    expect(unknown.status).toBe(404);
    expect(JSON.parse(await unknown.body())).toHaveProperty('error');
    const mismatch = await RawSse.open(`${api.url}/api/v1/pipelines/${jobId}/jobs/other/events`);
    expect(mismatch.status).toBe(404);
    await client.config(jobId, { stop: 'immediate' });
  });

  it('(3) streams a running impulse → preview job\'s rows; 400 without a preview sink or when stopped; 404 for an unknown job', async () => {
    const jobId = await create(previewPipeline('output', { rate: 50 }, 5));
    await reach(jobId, 'Running');
    const sse = await RawSse.open(outputPath(api.url, jobId));
    expect(sse.status).toBe(200);
    await eventually(() => expect(sse.of('output').length).toBeGreaterThanOrEqual(4), { timeoutMs: 10_000 });
    const outputs = sse.of('output');
    expect(outputs.map((m) => m.id)).toEqual(outputs.map((_, i) => String(i)));
    const first = JSON.parse(outputs[0]!.data) as { operator_id: string; subtask_idx: number; rows: Array<{ value: { counter: number } }>; generation: number };
    expect(first).toMatchObject({ operator_id: 'out', subtask_idx: 0, generation: 1 });
    expect(first.rows).toHaveLength(5);
    const counters = outputs.flatMap((m) => (JSON.parse(m.data) as typeof first).rows.map((r) => r.value.counter));
    expect(counters).toEqual([...counters].sort((a, b) => a - b));

    // Leaving Running ends the stream with a reason.
    await client.config(jobId, { stop: 'immediate' });
    await eventually(() => expect(sse.ended).toBe(true), { timeoutMs: 10_000 });
    expect(sse.of('end')).toHaveLength(1);
    expect(json(sse.of('end')[0]!.data)).toEqual({ reason: expect.stringMatching(/left Running/) as unknown });
    await reach(jobId, 'Stopped');

    const stopped = await RawSse.open(outputPath(api.url, jobId));
    expect(stopped.status).toBe(400);
    expect(json(await stopped.body())['error']).toMatch(/Stopped.*only while it is Running/);

    const plain = await create(logPipeline('no-preview'));
    await reach(plain, 'Running');
    const noPreview = await RawSse.open(outputPath(api.url, plain));
    expect(noPreview.status).toBe(400);
    expect(json(await noPreview.body())['error']).toMatch(/no preview sink/);
    await client.config(plain, { stop: 'immediate' });

    const unknown = await RawSse.open(outputPath(api.url, 'no-such-job'));
    expect(unknown.status).toBe(404);
  });

  it('(3b) a bounded job\'s output stream ends with `done` after every row', async () => {
    const jobId = await create(previewPipeline('output-done', { events: 60, rate: 30 }, 10));
    await reach(jobId, 'Running');
    const sse = await RawSse.open(outputPath(api.url, jobId));
    expect(sse.status).toBe(200);
    await eventually(() => expect(sse.ended).toBe(true), { timeoutMs: 15_000 });
    expect(sse.of('done')).toHaveLength(1);
    expect(sse.messages.at(-1)?.event).toBe('done');
    const rows = sse.of('output').flatMap((m) => (JSON.parse(m.data) as { rows: Array<{ value: { counter: number } }> }).rows.map((r) => r.value.counter));
    // Rows before the client connected are not replayed (output is live); every later one arrives, in order.
    expect(rows.length).toBeGreaterThan(0);
    expect(rows.at(-1)).toBe(59);
    expect(rows).toEqual(Array.from({ length: rows.length }, (_, i) => 60 - rows.length + i));
  });

  it('(4) a client that does not read gets `event: dropped` with the count when it resumes; its queue stays within the bound', async () => {
    const bound = 32;
    const own = await ownApp({ outputBufferEvents: bound, heartbeatMs: 200 });
    const jobId = await create(previewPipeline('slow', { rate: 0.5 }, 1));
    try {
      const view = await reach(jobId, 'Running');
      const sse = await RawSse.open(outputPath(own.url, jobId), {}, true);
      expect(sse.status).toBe(200);
      await eventually(() => expect(streamInternals(own.streams).outputHubs).toBe(1));
      // 4,000 batches of ~8 KiB: far more than the socket buffers and the queue hold.
      const filler = 'x'.repeat(8 * 1024);
      for (let i = 0; i < 4000; i++) {
        nc.publish(
          subjects.jobOutput(jobId),
          encode({ v: PROTOCOL_VERSION, job_id: jobId, generation: view.generation, node_id: 'out', subtask_index: 0, rows: [{ i, filler }] }),
        );
        if (i % 500 === 0) await nc.flush();
      }
      await nc.flush();
      await eventually(() => expect(own.streams.stats().dropped).toBeGreaterThan(0), { timeoutMs: 10_000 });
      const [conn] = streamInternals(own.streams).connections();
      expect(conn!.capacity).toBe(bound);
      expect(conn!.maxQueued).toBeLessThanOrEqual(bound);
      // Invalid messages are dropped and counted, not forwarded.
      nc.publish(subjects.jobOutput(jobId), new TextEncoder().encode('{"not":"output"}'));
      await eventually(() => expect(streamInternals(own.streams).invalidOutput).toBe(1));

      sse.res.resume();
      await eventually(
        () => {
          const dropped = sse.of('dropped');
          expect(dropped.length).toBeGreaterThanOrEqual(1);
          expect(json(dropped[0]!.data)['count']).toBeGreaterThan(0);
        },
        { timeoutMs: 15_000 },
      );
      const total = sse.of('dropped').reduce((n, m) => n + (JSON.parse(m.data) as { count: number }).count, 0);
      // Every published batch is accounted for: delivered or reported dropped (the job's own few rows may be among the dropped).
      await eventually(
        () => {
          const delivered = sse.of('output').length;
          expect(delivered).toBeGreaterThan(0);
          expect(delivered + total).toBeGreaterThanOrEqual(4000);
          expect(sse.of('output').filter((m) => m.data.includes('filler')).length + total).toBeLessThanOrEqual(4000 + 10);
        },
        { timeoutMs: 10_000 },
      );
      expect(streamInternals(own.streams).connections()[0]!.maxQueued).toBeLessThanOrEqual(bound);
      sse.close();
      await eventually(() => expect(own.streams.stats().clients).toBe(0));
      await eventually(() => expect(streamInternals(own.streams).outputHubs).toBe(0));
    } finally {
      await own.app.close();
      await client.config(jobId, { stop: 'immediate' });
    }
  });

  it('(5, 6) 200 concurrent clients share one follower and all get every transition; leaving cleans everything up', async () => {
    const own = await ownApp({ heartbeatMs: 300 });
    const jobId = await create(previewPipeline('many'));
    const clients: RawSse[] = [];
    try {
      await reach(jobId, 'Running');
      await eventually(async () => expect((await transitionsAfter(jobId, 0)).at(-1)?.to).toBe('Running'));
      const before = await newestSeq(jobId);
      for (let i = 0; i < 200; i += 50) {
        clients.push(...(await Promise.all(Array.from({ length: 50 }, () => RawSse.open(eventsPath(own.url, jobId))))));
      }
      await eventually(() => expect(clients.every((c) => c.of('state').length === 1)).toBe(true), { timeoutMs: 20_000 });
      expect(own.streams.stats().clients).toBe(200);
      expect(streamInternals(own.streams).eventHubs).toBe(1);

      await client.config(jobId, { restart: true });
      await eventually(async () => expect((await client.get(jobId)).generation).toBe(2), { timeoutMs: 20_000 });
      await reach(jobId, 'Running');
      const expected = (await transitionsAfter(jobId, before)).map((r) => String(r.seq));
      expect(expected.length).toBeGreaterThanOrEqual(2);
      await eventually(() => {
        for (const c of clients) expect(c.of('transition').map((m) => m.id)).toEqual(expected);
      }, { timeoutMs: 20_000 });
      // Heartbeats flow.
      await eventually(() => expect(clients.every((c) => c.comments > 0)).toBe(true), { timeoutMs: 5_000 });

      for (const c of clients) c.close();
      await eventually(() => expect(own.streams.stats().clients).toBe(0), { timeoutMs: 10_000 });
      expect(streamInternals(own.streams).eventHubs).toBe(0);
    } finally {
      for (const c of clients) c.close();
      await own.app.close();
      await client.config(jobId, { stop: 'immediate' });
    }
  });

  it('(6) close() ends open streams with `event: end` and stops the followers', async () => {
    const own = await ownApp();
    const jobId = await create(previewPipeline('close'));
    try {
      await reach(jobId, 'Running');
      const events = await RawSse.open(eventsPath(own.url, jobId));
      const output = await RawSse.open(outputPath(own.url, jobId));
      await eventually(() => expect(events.of('state')).toHaveLength(1));
      expect(own.streams.stats().clients).toBe(2);
      expect(streamInternals(own.streams).eventHubs).toBe(1);
      expect(streamInternals(own.streams).outputHubs).toBe(1);
      await own.streams.close();
      await eventually(() => expect(events.ended && output.ended).toBe(true));
      expect(JSON.parse(events.of('end')[0]!.data)).toEqual({ reason: 'the API server is shutting down' });
      expect(output.of('end')).toHaveLength(1);
      expect(own.streams.stats().clients).toBe(0);
      expect(streamInternals(own.streams).eventHubs).toBe(0);
      expect(streamInternals(own.streams).outputHubs).toBe(0);
    } finally {
      await own.app.close();
      await client.config(jobId, { stop: 'immediate' });
    }
  });

  it('describes both routes in the OpenAPI document as text/event-stream', () => {
    type Doc = { paths: Record<string, Record<string, { responses: Record<string, { description?: string; content?: Record<string, unknown> }> }>> };
    const spec = (api.app as unknown as { swagger(): Doc }).swagger();
    for (const path of ['/api/v1/pipelines/{id}/jobs/{job_id}/events', '/api/v1/pipelines/{id}/jobs/{job_id}/output']) {
      const get = spec.paths[path]?.['get'];
      expect(get, path).toBeDefined();
      expect(Object.keys(get!.responses['200']?.content ?? {})).toEqual(['text/event-stream']);
      expect(get!.responses['200']?.description).toMatch(/^text\/event-stream/);
    }
  });
});
