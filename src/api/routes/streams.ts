/**
 * The HTTP API's Server-Sent Events (issue 5), under the app's `/api/v1` prefix:
 *
 * `GET /pipelines/:id/jobs/:job_id/events`: the job's state transitions as they happen, from the job
 * event log in JetStream. Each is `id: <log sequence>`, `event: transition`, `data: {seq, job_id, from,
 * to, generation, at (µs)}`. A new client first gets `event: state` (no id) with the job's current state
 * and generation, then every transition appended after it started following (one that happens while the
 * state is read may come after the snapshot). With `Last-Event-ID: N` (or `?last_event_id=N`) it gets
 * every transition after N from the log, then live ones: none missed, none twice. A client that falls
 * so far behind that its queue (`outputBufferEvents`) fills gets `event: dropped` and the stream ends:
 * it reconnects with the Last-Event-ID it has (EventSource does this by itself) and catches up from the
 * log, so it loses nothing. One log follower per job serves all its clients (sse/job-events.ts).
 *
 * `GET /pipelines/:id/jobs/:job_id/output`: the rows of the job's preview sinks (400 unless the graph has
 * a `preview` node and the job is Running). `id: <n from 0>`, `event: output`, `data: {operator_id,
 * subtask_idx, rows, generation}`; `event: done` when every preview subtask of the generation has sent
 * its last batch, `event: end` with `{reason}` when the job leaves Running; the response ends after
 * either. Output is a live preview, not a log: a client whose queue is full loses rows, and is told how
 * many with `event: dropped`, `data: {count}`, as soon as there is room again.
 *
 * Both send a `: ping` comment every `heartbeatMs` so that proxies keep the connection open, and
 * `retry: 2000` first so that EventSource clients reconnect after 2 s.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { JobState, JobView, PreviewOutput } from '../../protocol/index.js';
import { previewParallelism } from '../../protocol/index.js';
import { MAX_PAGE_LIMIT, StoreError, type EventLog } from '../../store/index.js';
import type { ControllerClient } from '../controller-client.js';
import { ApiError } from '../errors.js';
import { jobIdOf } from '../pipeline-ids.js';
import { DEFAULT_CAPACITY, SseConnection, type SseEvent } from '../sse/connection.js';
import { jobEventsHubs, type EventsSubscriber, type JobEventsHub, type TransitionRow } from '../sse/job-events.js';
import { jobOutputHubs, type JobOutputHub, type OutputSubscriber } from '../sse/job-output.js';
import { followJobs, type JobsFeed, type JobsFeedSink } from '../sse/jobs-feed.js';
import { microsFromMs } from '../../shared/micros.js';
import { logRequest } from '../request-log.js';

export interface StreamDeps {
  nc: NatsConnection;
  controller: ControllerClient;
  log: EventLog;
  logger: Logger;
  /** Events queued per client at most. Default 1024. */
  outputBufferEvents?: number;
  /** Interval of the `: ping` comments. Default 15 s. */
  heartbeatMs?: number;
}

export interface Streams {
  routes: FastifyPluginAsync;
  /** Ends every stream (`event: end`), stops every follower and timer. Idempotent. */
  close(): Promise<void>;
  /** Open SSE responses, and events dropped for full queues since the start. */
  stats(): { clients: number; dropped: number };
}

/** What tests look at beyond `stats()`. */
export interface StreamInternals {
  eventHubs: number;
  outputHubs: number;
  invalidOutput: number;
  /** The open connections' queue bounds, depths and the deepest each has been. */
  connections(): Array<{ capacity: number; queued: number; maxQueued: number; dropped: number }>;
}

const internals = new WeakMap<Streams, StreamInternals>();

/** Test hook: the hubs and queues behind a `Streams`. */
export function streamInternals(streams: Streams): StreamInternals {
  const found = internals.get(streams);
  if (found === undefined) throw new TypeError('not a Streams made by createStreams');
  return found;
}

export const DEFAULT_HEARTBEAT_MS = 15_000;
const RECONNECT_MS = 2_000;
/** Rounds of reading the log a resuming client may need before the hub's ring reaches back to it. */
const MAX_CATCH_UP_ROUNDS = 20;
/** How long an output stream waits for the last `done` after the job went from Running to Finishing. */
const FINISH_GRACE_MS = 2_000;
/** How long `close()` gives clients to take their last frames before their connections are cut. */
const CLOSE_GRACE_MS = 2_000;

const errorSchema = z.object({ error: z.string() }).describe('What went wrong');
const paramsSchema = z.object({
  id: z.string().describe('The pipeline id'),
  job_id: z.string().describe("The job id (a pipeline's only job has the pipeline's id)"),
});
const lastEventIdDoc = 'Resume after this event id (a transition\'s `seq`): every transition after it is replayed from the event log first';
const eventsQuerySchema = z.object({ last_event_id: z.string().optional().describe(`${lastEventIdDoc}; the Last-Event-ID header wins`) });
const eventsHeadersSchema = z.looseObject({ 'last-event-id': z.string().optional().describe(lastEventIdDoc) });
const sseBody = (description: string) => ({
  description: `text/event-stream: ${description}`,
  content: { 'text/event-stream': { schema: z.string().describe(description) } },
});

const EVENTS_DOC =
  'Event stream of the job\'s state transitions. `event: state` (no id) first, with `{job_id, state, generation}`, unless resuming; then ' +
  '`event: transition`, `id: <seq>`, `data: {seq, job_id, from, to, generation, at}` (at in µs) for each transition. ' +
  '`event: dropped` with `{count}` ends the stream when the client fell too far behind: reconnect with Last-Event-ID to catch up. ' +
  '`event: end` with `{reason}` when the server stops. `: ping` comments keep the connection open.';
const JOBS_EVENTS_DOC =
  'Event stream of every job\'s state transitions, for lists. `event: ready`, `id: <seq>` first: every transition after that log position follows ' +
  '(load the list after it, and nothing falls between); then `event: transition`, `id: <seq>`, `data: {seq, job_id, from, to, generation, at}` (at in µs) ' +
  'as on a job\'s own stream, in log order; `event: deleted` with `{job_id}` (no id) when a job is deleted. Reconnect with Last-Event-ID to resume: ' +
  'the transitions missed are replayed from the event log (deletions are not: reload the list). `event: end` with `{reason}` when the server stops.';
const OUTPUT_DOC =
  'Event stream of the rows the job\'s preview sinks emit: `event: output`, `id: <n from 0>`, `data: {operator_id, subtask_idx, rows, generation}`; ' +
  '`event: dropped` with `{count}` after rows a slow client lost; `event: done` when every preview subtask has finished; ' +
  '`event: end` with `{reason}` when the job leaves Running. The response ends after done or end.';

function parseLastEventId(header: string | undefined, query: string | undefined): number | undefined {
  const raw = header ?? query;
  if (raw === undefined) return undefined;
  const text = raw.trim();
  const value = /^\d{1,16}$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isSafeInteger(value)) {
    throw new ApiError(400, `Last-Event-ID must be an event id, a non-negative integer; got ${JSON.stringify(raw.slice(0, 64))}`);
  }
  return value;
}

/** The data of an `event: transition` (times in µs, like every time the API shows). */
export interface TransitionEventData {
  seq: number;
  job_id: string;
  from: JobState;
  to: JobState;
  generation: number;
  at: number;
}

function transitionEvent(jobId: string, row: TransitionRow): SseEvent {
  const data: TransitionEventData = { seq: row.seq, job_id: jobId, from: row.from, to: row.to, generation: row.generation, at: microsFromMs(row.at) };
  return { id: row.seq, event: 'transition', data: JSON.stringify(data) };
}

function endEvent(reason: string): SseEvent {
  return { event: 'end', data: JSON.stringify({ reason }) };
}

/** Store failures become 503; ApiErrors pass. */
function asApiError(err: unknown, what: string): unknown {
  if (err instanceof ApiError) return err;
  if (err instanceof StoreError) return new ApiError(503, `${what}: ${err.message}`);
  return err;
}

/** Headers set on the reply by hooks before the handler (CORS, request ids) go out with the stream's. */
function replyHeaders(reply: FastifyReply): Record<string, string | number | readonly string[]> {
  const out: Record<string, string | number | readonly string[]> = {};
  for (const [name, value] of Object.entries(reply.getHeaders())) {
    if (value !== undefined && name !== 'content-length' && name !== 'content-type') out[name] = value;
  }
  return out;
}

export function createStreams(deps: StreamDeps): Streams {
  const capacity = Math.max(1, deps.outputBufferEvents ?? DEFAULT_CAPACITY);
  const heartbeatMs = deps.heartbeatMs ?? DEFAULT_HEARTBEAT_MS;
  const logger = deps.logger.child({ component: 'api-sse' });
  const eventHubs = jobEventsHubs(deps.log, logger);
  const invalidOutput = { count: 0 };
  const outputHubs = jobOutputHubs(deps.nc, deps.controller, logger, heartbeatMs, invalidOutput);
  const connections = new Set<SseConnection>();
  let dropped = 0;
  let closing: Promise<void> | undefined;
  let heartbeat: NodeJS.Timeout | undefined;

  function connection(reply: FastifyReply, overflow: 'notify' | 'end', onClose: () => void): SseConnection {
    const conn = new SseConnection(reply.raw, {
      capacity,
      overflow,
      onDropped: (n) => (dropped += n),
      onClose: () => {
        connections.delete(conn);
        if (connections.size === 0 && heartbeat !== undefined) {
          clearInterval(heartbeat);
          heartbeat = undefined;
        }
        onClose();
      },
    });
    return conn;
  }

  /** Hijacks the reply and starts the stream, unless the client has gone meanwhile. */
  function open(conn: SseConnection, reply: FastifyReply): boolean {
    reply.hijack();
    if (conn.closed || closing !== undefined) {
      conn.destroy();
      return false;
    }
    connections.add(conn);
    heartbeat ??= setInterval(() => {
      for (const c of connections) c.comment('ping');
    }, heartbeatMs);
    heartbeat.unref();
    conn.open(replyHeaders(reply));
    conn.send({ retry: RECONNECT_MS });
    // A hijacked reply skips Fastify's onResponse hook, which logs every other request.
    logRequest(reply, 'event stream opened');
    return true;
  }

  function refuseWhileClosing(): void {
    if (closing !== undefined) throw new ApiError(503, 'the API server is shutting down');
  }

  async function events(request: FastifyRequest<{ Params: { id: string; job_id: string }; Querystring: { last_event_id?: string | undefined } }>, reply: FastifyReply) {
    refuseWhileClosing();
    const jobId = jobIdOf(request.params);
    const header = request.headers['last-event-id'];
    const after = parseLastEventId(Array.isArray(header) ? header[0] : header, request.query.last_event_id);

    let hub: JobEventsHub | undefined;
    /** The newest transition sequence this client has been sent (or, resuming, had). */
    let lastSent = after ?? 0;
    /** Transitions read by the hub before the snapshot went out (bounded by the queue size). */
    let pending: TransitionRow[] | null = [];
    let pendingOverflow = 0;

    const sub: EventsSubscriber = {
      row(row) {
        if (pending !== null) {
          if (pending.length < capacity) pending.push(row);
          else pendingOverflow++;
          return;
        }
        deliver(row);
      },
      failed(reason) {
        conn.end(endEvent(reason));
      },
    };
    const conn = connection(reply, 'end', () => hub?.remove(sub));

    function deliver(row: TransitionRow): void {
      if (row.seq <= lastSent) return;
      lastSent = row.seq;
      conn.send(transitionEvent(jobId, row));
    }

    /** A new client's first event; `seq`: the log position it covers (every transition after it reaches this client). */
    let snapshot: { view: JobView; seq: number } | null = null;
    try {
      hub = await eventHubs.join(jobId, sub);
      if (after === undefined) {
        hub.addLive(sub);
        const seq = hub.newestSeq;
        snapshot = { view: await deps.controller.get(jobId), seq };
      } else {
        await checkResumable(jobId);
      }
    } catch (err) {
      hub?.remove(sub);
      throw asApiError(err, 'the job event log cannot be followed now');
    }
    if (!open(conn, reply)) {
      hub.remove(sub);
      return reply;
    }
    if (after === undefined) {
      // Its id lets a client that leaves before the first transition resume without missing one.
      if (snapshot !== null) {
        const { view, seq } = snapshot;
        conn.send({ id: String(seq), event: 'state', data: JSON.stringify({ job_id: jobId, state: view.state, generation: view.generation }) });
      }
      const early = pending;
      pending = null;
      for (const row of early) deliver(row);
      if (pendingOverflow > 0) dropped += pendingOverflow;
      if (pendingOverflow > 0) conn.end({ event: 'dropped', data: JSON.stringify({ count: pendingOverflow }) });
      return reply;
    }
    pending = null;
    void catchUp(jobId, hub, sub, conn, after, deliver).catch((err: unknown) => {
      logger.warn({ job_id: jobId, err }, 'catching up from the event log failed');
      conn.end(endEvent(`catching up from the event log failed: ${err instanceof Error ? err.message : String(err)}`));
    });
    return reply;
  }

  /**
   * A resuming client needs only the log. An unknown job is still a 404, but when the controller cannot
   * answer (restarting beside this API, say) the client resumes anyway rather than being turned away:
   * an EventSource gives up for good on any answer but 200.
   */
  async function checkResumable(jobId: string): Promise<void> {
    try {
      await deps.controller.get(jobId);
    } catch (err) {
      if (!(err instanceof ApiError) || err.statusCode !== 503) throw err;
      logger.warn({ job_id: jobId, reason: err.message }, 'resuming an event stream without the controller');
    }
  }

  /** Transitions after `after` from the log, then from the hub: see sse/job-events.ts. */
  async function catchUp(
    jobId: string,
    hub: JobEventsHub,
    sub: EventsSubscriber,
    conn: SseConnection,
    after: number,
    deliver: (row: TransitionRow) => void,
  ): Promise<void> {
    let cursor = after;
    for (let round = 1; ; round++) {
      for (;;) {
        const page = await deps.log.since(jobId, cursor, MAX_PAGE_LIMIT);
        for (const row of page.data) {
          if (row.kind === 'transition') {
            await conn.room();
            if (!conn.active) return;
            deliver(row);
          }
          cursor = row.seq;
        }
        if (!conn.active) return;
        if (!page.hasMore) break;
      }
      if (!hub.running) {
        conn.end(endEvent(hub.failure ?? 'the event log follower stopped'));
        return;
      }
      const rows = hub.joinAfter(sub, cursor);
      if (rows !== null) {
        for (const row of rows) deliver(row);
        return;
      }
      if (round >= MAX_CATCH_UP_ROUNDS) {
        conn.end(endEvent('transitions are appended faster than this client catches up; reconnect with Last-Event-ID'));
        return;
      }
    }
  }

  /** GET /jobs/events: see sse/jobs-feed.ts. */
  async function jobsEvents(request: FastifyRequest<{ Querystring: { last_event_id?: string | undefined } }>, reply: FastifyReply) {
    refuseWhileClosing();
    const header = request.headers['last-event-id'];
    const after = parseLastEventId(Array.isArray(header) ? header[0] : header, request.query.last_event_id);
    let feed: JobsFeed | undefined;
    // Transitions wait until `ready` has gone out: it must be the first event.
    let release!: () => void;
    const ready = new Promise<void>((resolve) => (release = resolve));
    const conn = connection(reply, 'end', () => {
      feed?.stop();
      release();
    });
    const sink: JobsFeedSink = {
      async transition(row) {
        await ready;
        await conn.room();
        if (conn.active) conn.send(transitionEvent(row.job_id, row));
      },
      deleted(jobId) {
        conn.send({ event: 'deleted', data: JSON.stringify({ job_id: jobId }) });
      },
      failed(reason) {
        conn.end(endEvent(reason));
      },
    };
    try {
      feed = await followJobs(deps.nc, deps.log, logger, sink, after === undefined ? undefined : after + 1);
    } catch (err) {
      release();
      throw asApiError(err, 'the job event log cannot be followed now');
    }
    if (!open(conn, reply)) {
      feed.stop();
      release();
      return reply;
    }
    const seq = feed.from - 1;
    conn.send({ id: seq, event: 'ready', data: JSON.stringify({ seq }) });
    release();
    return reply;
  }

  async function output(request: FastifyRequest<{ Params: { id: string; job_id: string } }>, reply: FastifyReply) {
    refuseWhileClosing();
    const jobId = jobIdOf(request.params);
    let generation = -1;
    let counter = 0;
    /** Preview node id → its parallelism in this generation. */
    const expected = new Map<string, number>();
    let finishTimer: NodeJS.Timeout | undefined;

    const hubs = outputHubs;
    let hub: JobOutputHub | undefined;

    function complete(): boolean {
      if (hub === undefined) return false;
      const done = hub.doneOf(generation);
      for (const [node, p] of expected) {
        for (let i = 0; i < p; i++) if (!done.has(`${node}/${i}`)) return false;
      }
      return true;
    }

    function finish(last: SseEvent): void {
      if (finishTimer !== undefined) clearTimeout(finishTimer);
      finishTimer = undefined;
      conn.end(last);
      hub?.remove(sub);
    }

    const sub: OutputSubscriber = {
      output(message: PreviewOutput) {
        if (message.generation !== generation || !expected.has(message.node_id)) return;
        // The data says how many subtasks there are when the view could not (a pipeline-wide parallelism).
        const p = expected.get(message.node_id) ?? 0;
        if (message.subtask_index >= p) expected.set(message.node_id, message.subtask_index + 1);
        if (message.rows.length === 0) return;
        conn.send({
          id: counter++,
          event: 'output',
          data: JSON.stringify({ operator_id: message.node_id, subtask_idx: message.subtask_index, rows: message.rows, generation: message.generation }),
        });
      },
      subtaskDone(g) {
        if (g === generation && complete()) finish({ event: 'done', data: JSON.stringify({ generation }) });
      },
      state(state: JobState, g: number) {
        if (!conn.active || (state === 'Running' && g === generation)) return;
        const reason = g === generation ? `the job left Running (now ${state})` : `the job is at generation ${g} (now ${state})`;
        if (g === generation && (state === 'Finishing' || state === 'Finished')) {
          // The last rows and the done markers may still be on their way.
          finishTimer ??= setTimeout(() => finish(endEvent(reason)), FINISH_GRACE_MS);
          return;
        }
        finish(endEvent(reason));
      },
      gone(reason) {
        finish(endEvent(reason));
      },
    };
    const conn = connection(reply, 'notify', () => {
      if (finishTimer !== undefined) clearTimeout(finishTimer);
      hub?.remove(sub);
    });

    let view: JobView;
    try {
      hub = await hubs.join(jobId, sub);
      const mark = hub.stateMark;
      view = await deps.controller.get(jobId);
      const previews = previewParallelism(view);
      if (previews.size === 0) {
        throw new ApiError(400, `pipeline ${jobId} has no preview sink (a node with operator "preview"), so it has no output to stream`);
      }
      const seen = hub.stateMark !== mark ? hub.lastState : undefined;
      const state = seen !== undefined && seen.generation >= view.generation ? seen.state : view.state;
      if (state !== 'Running') throw new ApiError(400, `job ${jobId} is ${state}; its output can be streamed only while it is Running`);
      generation = view.generation;
      for (const [nodeId, parallelism] of previews) expected.set(nodeId, parallelism);
      hub.addLive(sub);
    } catch (err) {
      hub?.remove(sub);
      throw asApiError(err, 'the job output cannot be followed now');
    }
    if (!open(conn, reply)) {
      hub.remove(sub);
      return reply;
    }
    if (complete()) finish({ event: 'done', data: JSON.stringify({ generation }) });
    return reply;
  }

  const routes: FastifyPluginAsync = (fastify) => {
    // Open streams would keep the server from closing: end them first.
    fastify.addHook('preClose', close);
    const app = fastify.withTypeProvider<ZodTypeProvider>();
    app.get(
      '/pipelines/:id/jobs/:job_id/events',
      {
        schema: {
          summary: "Follow a job's state transitions (Server-Sent Events)",
          description: EVENTS_DOC,
          tags: ['jobs'],
          params: paramsSchema,
          querystring: eventsQuerySchema,
          headers: eventsHeadersSchema,
          response: { 200: sseBody(EVENTS_DOC), 400: errorSchema, 404: errorSchema, 503: errorSchema },
        },
      },
      events,
    );
    app.get(
      '/jobs/events',
      {
        schema: {
          summary: "Follow every job's state transitions (Server-Sent Events)",
          description: JOBS_EVENTS_DOC,
          tags: ['jobs'],
          querystring: eventsQuerySchema,
          headers: eventsHeadersSchema,
          response: { 200: sseBody(JOBS_EVENTS_DOC), 400: errorSchema, 401: errorSchema, 503: errorSchema },
        },
      },
      jobsEvents,
    );
    app.get(
      '/pipelines/:id/jobs/:job_id/output',
      {
        schema: {
          summary: "Follow the rows of a job's preview sinks (Server-Sent Events)",
          description: OUTPUT_DOC,
          tags: ['jobs'],
          params: paramsSchema,
          response: { 200: sseBody(OUTPUT_DOC), 400: errorSchema, 404: errorSchema, 503: errorSchema },
        },
      },
      output,
    );
    return Promise.resolve();
  };

  async function close(): Promise<void> {
    closing ??= (async () => {
      for (const conn of connections) conn.end(endEvent('the API server is shutting down'));
      eventHubs.stopAll();
      outputHubs.stopAll();
      const deadline = Date.now() + CLOSE_GRACE_MS;
      while (connections.size > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
      for (const conn of [...connections]) conn.destroy();
      if (heartbeat !== undefined) clearInterval(heartbeat);
      heartbeat = undefined;
    })();
    return closing;
  }

  const streams: Streams = {
    routes,
    close,
    stats: () => ({ clients: connections.size, dropped }),
  };
  internals.set(streams, {
    get eventHubs() {
      return eventHubs.count;
    },
    get outputHubs() {
      return outputHubs.count;
    },
    get invalidOutput() {
      return invalidOutput.count;
    },
    connections: () => [...connections].map((c) => ({ capacity: c.capacity, queued: c.queued, maxQueued: c.maxQueued, dropped: c.dropped })),
  });
  return streams;
}
