/**
 * `weir submit FILE`, `weir pipelines …` and `weir jobs …`: a thin client of the controller's
 * `weir.api.jobs.*` request subjects, plus `weir jobs watch` on `weir.jobs.<job>.state`, `weir jobs tail`
 * on `weir.jobs.<job>.output` and `weir jobs errors`, which reads the job's event log in JetStream.
 * A pipeline and its job are one to one and share the id, so `pipelines` aliases the job commands.
 *
 * A job is named by its id or a unique prefix of it (`job-ids.ts`).
 *
 * Exit codes: 0 ok; 1 the controller answered with an error reply, or a prefix names no job or several;
 * 2 bad arguments or input file; 3 NATS or the controller cannot be reached (no responders, timeout,
 * connection refused).
 */
import { readFileSync } from 'node:fs';
import { connect, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import type { z } from 'zod';
import {
  decodeReply,
  decode,
  previewOutputSchema,
  checkpointDetailsReplySchema,
  deleteJobReplySchema,
  encode,
  isValidId,
  jobCheckpointsReplySchema,
  jobRevisionReplySchema,
  jobStateEventSchema,
  jobViewSchema,
  previewParallelism,
  listControllersReplySchema,
  listJobsReplySchema,
  listWorkersReplySchema,
  stopModeSchema,
  subjects,
  SUBJECTS,
  type ConfigUpdate,
  type JobView,
  type ListJobsReply,
  type ListJobsRequest,
} from '../protocol/index.js';
import { toErrorRow } from '../api/views.js';
import type { ErrorRow } from '../api/schemas.js';
import { MAX_PAGE_LIMIT, openStore, StoreUnavailableError, type Page } from '../store/index.js';
import { checkpointListTable, checkpointTimeline } from './checkpoint-timeline.js';
import { controllerListTable, currentStateLine, errorListTable, formatMs, jobListTable, jobViewText, stateEventLine, workerListTable } from './format.js';
import { resolveJobPrefix, type Resolution } from './job-ids.js';
import { DEFAULT_REFRESH_MS, watchList } from './list-watch.js';
import { parseCommandArgs, UsageError, usageLine, type ParsedArgs } from './args.js';
import { natsOptions } from './nats-options.js';

export const EXIT_OK = 0;
export const EXIT_ERROR_REPLY = 1;
export const EXIT_USAGE = 2;
export const EXIT_UNREACHABLE = 3;

export const JOBS_USAGE = `Job commands (all take --nats URL, default $NATS_URL or nats://127.0.0.1:4222,
credentials as for 'weir worker'; --json prints JSON instead of text; --timeout MS, default 5000):
  weir submit FILE                       create a job from a pipeline JSON file; prints its id
  weir pipelines create FILE             the same (a pipeline's id is its job's id)
  weir pipelines list | get ID           the same as 'weir jobs list' and 'weir jobs get ID'
  weir jobs list [--limit N] [--after ID] [-o wide] [--watch]
                                         jobs, newest first: state, generation, restarts, age; -o wide adds the
                                         desired stop mode, owner, action, creation time, what it waits for and
                                         its failure; --watch draws the list again at each state change (Ctrl-C ends it)
  weir jobs get ID                       state, generation, restarts, failure and the available action
  weir jobs stop ID [--mode M]           M: checkpoint (default), graceful, immediate, force
  weir jobs start ID                     run again (stop: none)
  weir jobs restart ID [--force]         a new run; --force does not wait for a checkpoint
  weir jobs rescale ID N                 run every node with parallelism N
  weir jobs delete ID                    remove a Stopped, Finished or Failed job
  weir jobs watch ID [--count N]         the state now, then each transition, one line each, until Ctrl-C, N lines,
                                         the job is Finished or it is deleted (--json: the job view, then the events)
  weir jobs tail ID [--count N]          rows of the job's preview sinks, one JSON line each, until Ctrl-C,
                                         N rows, or every preview subtask has finished (--json: whole messages)
  weir jobs errors ID [--limit N] [--after CURSOR]
                                         the job's errors, newest first (N up to 1000, default 20); CURSOR is
                                         the id of the last error of the previous page
  weir jobs checkpoints ID [EPOCH]       the checkpoint history; with EPOCH, that checkpoint's spans as a timeline
  weir workers                           the workers the controller knows: slots, free slots, the slots it booked
                                         per job generation, and what each worker says runs there
  weir controllers                       the controllers sharing the jobs: live or not, shards and jobs each owns, and
                                         the age of its oldest lease (--json: the whole reply, rows in data)
Wherever a job ID is taken, a unique prefix of it will do (weir jobs get job-0mx).`;

export interface CliIo {
  out: (line: string) => void;
  err: (line: string) => void;
  /** Ends `watch`, `tail` and `list --watch` (besides SIGINT/SIGTERM). */
  signal?: AbortSignal;
  env?: NodeJS.ProcessEnv;
  /** `out` is a terminal: `list --watch` redraws in place. */
  tty?: boolean;
}


const DEFAULT_URL = 'nats://127.0.0.1:4222';
const DEFAULT_ERRORS_LIMIT = 20;

const OPTIONS = {
  nats: { type: 'string' },
  json: { type: 'boolean' },
  timeout: { type: 'string' },
  mode: { type: 'string' },
  force: { type: 'boolean' },
  count: { type: 'string' },
  limit: { type: 'string' },
  after: { type: 'string' },
  output: { type: 'string', short: 'o' },
  watch: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

type Values = ParsedArgs<typeof OPTIONS, true>['values'];

interface Context {
  io: CliIo;
  url: string;
  json: boolean;
  timeout: number;
  values: Values;
}

function positiveInt(text: string | undefined, what: string): number {
  const n = nonNegativeInt(text, what);
  if (n < 1) throw new UsageError(`${what} must be a positive integer, got ${JSON.stringify(text ?? '')}`);
  return n;
}

function nonNegativeInt(text: string | undefined, what: string): number {
  const n = Number(text);
  if (text === undefined || !/^[0-9]+$/.test(text) || !Number.isSafeInteger(n)) throw new UsageError(`${what} must be a non-negative integer, got ${JSON.stringify(text ?? '')}`);
  return n;
}

function jobId(text: string | undefined): string {
  if (text === undefined) throw new UsageError('a job id is required');
  if (!isValidId(text)) throw new UsageError(`invalid job id ${JSON.stringify(text)}: expected 1–64 of A-Z a-z 0-9 _ -`);
  return text;
}

function expectPositionals(positionals: readonly string[], count: number, what: string): void {
  if (positionals.length !== count) throw new UsageError(`expected ${what}`);
}

/** `argv[0]` is `submit`, `jobs`, `pipelines`, `workers` or `controllers`. */
export async function jobsCommand(argv: readonly string[], io: CliIo): Promise<number> {
  const env = io.env ?? process.env;
  let ctx: Context;
  let run: () => Promise<number>;
  try {
    const { values, positionals } = parseCommandArgs(argv, OPTIONS, true);
    ctx = {
      io,
      url: values.nats ?? env['NATS_URL'] ?? DEFAULT_URL,
      json: values.json === true,
      timeout: values.timeout === undefined ? 5000 : positiveInt(values.timeout, '--timeout'),
      values,
    };
    run = plan(positionals, ctx);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    io.err(usageLine(`weir ${argv[0] ?? 'jobs'}`, err));
    return EXIT_USAGE;
  }
  return run();
}

/** Checks the arguments and returns the action to run; throws `UsageError`. */
function plan(positionals: readonly string[], ctx: Context): () => Promise<number> {
  const [command, sub, ...rest] = positionals;
  const { values } = ctx;
  const allow = (...names: Array<keyof typeof OPTIONS>) => {
    const common = ['nats', 'json', 'timeout'];
    for (const [name, value] of Object.entries(values)) {
      if (value !== undefined && !common.includes(name) && !names.includes(name as keyof typeof OPTIONS)) {
        throw new UsageError(`--${name} does not apply here`);
      }
    }
  };
  if (values.help === true || ((command === 'jobs' || command === 'pipelines') && sub === 'help')) {
    return () => {
      ctx.io.out(JOBS_USAGE);
      return Promise.resolve(EXIT_OK);
    };
  }
  if (command === 'workers') {
    allow();
    expectPositionals(positionals, 1, 'weir workers');
    return () => request(ctx, subjects.apiWorkersList(), { v: 1 }, listWorkersReplySchema, (reply) => workerListTable(reply.data));
  }
  if (command === 'controllers') {
    allow();
    expectPositionals(positionals, 1, 'weir controllers');
    return () => request(ctx, subjects.apiControllersList(), { v: 1 }, listControllersReplySchema, controllerListTable);
  }
  if (command === 'submit') {
    allow();
    expectPositionals(positionals, 2, 'weir submit FILE');
    return () => submit(ctx, sub ?? '');
  }
  if (command === 'pipelines') {
    switch (sub) {
      case 'create':
        allow();
        expectPositionals(rest, 1, 'weir pipelines create FILE');
        return () => submit(ctx, rest[0] ?? '');
      case 'list':
      case 'get':
        break;
      case undefined:
        throw new UsageError('expected a pipelines subcommand: create, list or get');
      default:
        throw new UsageError(`unknown pipelines subcommand "${sub}"`);
    }
  }
  switch (sub) {
    case 'list': {
      allow('limit', 'after', 'output', 'watch');
      expectPositionals(rest, 0, 'weir jobs list');
      const request: ListJobsRequest = { v: 1 };
      if (values.limit !== undefined) request.limit = Math.min(positiveInt(values.limit, '--limit'), 100);
      // A cursor, not a job reference: it may name a job deleted since, so no prefix is resolved.
      if (values.after !== undefined) request.starting_after = jobId(values.after);
      if (values.output !== undefined && values.output !== 'wide') throw new UsageError(`-o must be wide, got ${JSON.stringify(values.output)}`);
      const wide = values.output === 'wide';
      return values.watch === true ? () => watchJobs(ctx, request, wide) : () => list(ctx, request, wide);
    }
    case 'get': {
      allow();
      expectPositionals(rest, 1, 'weir jobs get ID');
      const id = jobId(rest[0]);
      return () => jobRequest(ctx, id, subjects.apiJobGet, { v: 1 }, jobViewSchema, jobViewText);
    }
    case 'delete': {
      allow();
      expectPositionals(rest, 1, 'weir jobs delete ID');
      const id = jobId(rest[0]);
      return () => jobRequest(ctx, id, subjects.apiJobDelete, { v: 1 }, deleteJobReplySchema, (reply) => `deleted ${reply.job_id}`);
    }
    case 'stop': {
      allow('mode');
      expectPositionals(rest, 1, 'weir jobs stop ID [--mode checkpoint|graceful|immediate|force]');
      const id = jobId(rest[0]);
      const mode = values.mode ?? 'checkpoint';
      const modes = stopModeSchema.options.filter((m) => m !== 'none');
      const stop = modes.find((m) => m === mode);
      if (stop === undefined) throw new UsageError(`--mode must be one of ${modes.join(', ')}, got ${JSON.stringify(mode)}`);
      return () => configure(ctx, id, { v: 1, stop }, `stop requested (${stop})`);
    }
    case 'start': {
      allow();
      expectPositionals(rest, 1, 'weir jobs start ID');
      const id = jobId(rest[0]);
      return () => configure(ctx, id, { v: 1, stop: 'none' }, 'start requested');
    }
    case 'restart': {
      allow('force');
      expectPositionals(rest, 1, 'weir jobs restart ID [--force]');
      const id = jobId(rest[0]);
      const mode = values.force === true ? 'force' : 'safe';
      return () => configure(ctx, id, { v: 1, restart: true, restart_mode: mode }, `restart requested (${mode})`);
    }
    case 'rescale': {
      allow();
      expectPositionals(rest, 2, 'weir jobs rescale ID N');
      const id = jobId(rest[0]);
      const parallelism = positiveInt(rest[1], 'N');
      return () => configure(ctx, id, { v: 1, parallelism }, `rescale to parallelism ${parallelism} requested`);
    }
    case 'checkpoints': {
      allow();
      if (rest.length < 1 || rest.length > 2) throw new UsageError('usage: weir jobs checkpoints ID [EPOCH]');
      const id = jobId(rest[0]);
      if (rest[1] === undefined) {
        return () => jobRequest(ctx, id, subjects.apiJobCheckpoints, { v: 1 }, jobCheckpointsReplySchema, (reply) => checkpointListTable(reply.data));
      }
      const epoch = nonNegativeInt(rest[1], 'EPOCH');
      return () => jobRequest(ctx, id, subjects.apiJobCheckpoint, { v: 1, epoch }, checkpointDetailsReplySchema, (reply) => checkpointTimeline(reply));
    }
    case 'watch': {
      allow('count');
      expectPositionals(rest, 1, 'weir jobs watch ID [--count N]');
      const id = jobId(rest[0]);
      const count = values.count === undefined ? Infinity : positiveInt(values.count, '--count');
      return () => watch(ctx, id, count);
    }
    case 'tail': {
      allow('count');
      expectPositionals(rest, 1, 'weir jobs tail ID [--count N]');
      const id = jobId(rest[0]);
      const count = values.count === undefined ? Infinity : positiveInt(values.count, '--count');
      return () => tail(ctx, id, count);
    }
    case 'errors': {
      allow('limit', 'after');
      expectPositionals(rest, 1, 'weir jobs errors ID [--limit N] [--after CURSOR]');
      const id = jobId(rest[0]);
      const limit = values.limit === undefined ? DEFAULT_ERRORS_LIMIT : Math.min(positiveInt(values.limit, '--limit'), MAX_PAGE_LIMIT);
      const after = values.after === undefined ? undefined : positiveInt(values.after, '--after CURSOR');
      return () => errors(ctx, id, limit, after);
    }
    case undefined:
      throw new UsageError('expected a jobs subcommand');
    default:
      throw new UsageError(`unknown jobs subcommand "${sub}"`);
  }
}

async function withConnection(ctx: Context, reconnect: boolean, fn: (nc: NatsConnection) => Promise<number>): Promise<number> {
  let nc: NatsConnection;
  try {
    nc = await connect({
      ...natsOptions(ctx.url, ctx.io.env ?? process.env),
      name: 'weir-cli',
      waitOnFirstConnect: false,
      maxReconnectAttempts: reconnect ? -1 : 0,
      timeout: ctx.timeout,
    });
  } catch (err) {
    ctx.io.err(`weir: cannot connect to NATS at ${ctx.url}: ${err instanceof Error ? err.message : String(err)}`);
    return EXIT_UNREACHABLE;
  }
  try {
    return await fn(nc);
  } finally {
    await nc.close().catch(() => undefined);
  }
}

/** A controller's reply, or why there is none: the line to print, the exit code and any error reply's code. */
type Answer<T> = { ok: true; value: T } | { ok: false; exit: number; line: string; code?: string };

const messageOf = (err: unknown) => (err instanceof Error ? err.message : String(err));

/** One controller request, decoded with `schema`. */
async function ask<S extends z.ZodType>(ctx: Context, nc: NatsConnection, subject: string, body: unknown, schema: S): Promise<Answer<z.output<S>>> {
  let data: Uint8Array;
  try {
    data = (await nc.request(subject, encode(body), { timeout: ctx.timeout })).data;
  } catch (err) {
    return { ok: false, exit: EXIT_UNREACHABLE, line: `weir: no controller answered on ${ctx.url} (${subject}: ${messageOf(err)}); is 'weir controller' (or 'weir up') running?` };
  }
  const reply = decodeReply(schema, data);
  if (reply.ok) return { ok: true, value: reply.value };
  if (!reply.remote) return { ok: false, exit: EXIT_ERROR_REPLY, line: `weir: unreadable reply from the controller: ${reply.error.code}: ${reply.error.message}` };
  return { ok: false, exit: EXIT_ERROR_REPLY, line: `weir: ${reply.error.code}: ${reply.error.message}`, code: reply.error.code };
}

/** A listing the prefix resolution could not read. */
class ListUnavailable extends Error {
  constructor(readonly answer: Answer<never>) {
    super('the job list could not be read');
  }
}

/**
 * `attempt` with the job `text` names: first with `text` as its id (one request, as before prefixes
 * were taken); when no job has that id, once more with the id of the one job it is a prefix of.
 */
async function withJob<T>(ctx: Context, nc: NatsConnection, text: string, attempt: (id: string) => Promise<Answer<T>>): Promise<Answer<{ id: string; value: T }>> {
  const first = await attempt(text);
  if (first.ok) return { ok: true, value: { id: text, value: first.value } };
  if (first.code !== 'unknown_job') return first;
  let found: Resolution;
  try {
    found = await resolveJobPrefix(async (request) => {
      const page = await ask(ctx, nc, subjects.apiJobsList(), request, listJobsReplySchema);
      if (!page.ok) throw new ListUnavailable(page);
      return page.value;
    }, text);
  } catch (err) {
    if (err instanceof ListUnavailable) return err.answer;
    throw err;
  }
  if (!found.ok) return { ok: false, exit: EXIT_ERROR_REPLY, line: `weir: ${found.code}: ${found.message}`, code: found.code };
  const second = await attempt(found.id);
  return second.ok ? { ok: true, value: { id: found.id, value: second.value } } : second;
}

/** Prints the answer (JSON or `text(value)`) or why there is none; returns the exit code. */
function print<T>(ctx: Context, answer: Answer<T>, text: (value: T) => string): number {
  if (!answer.ok) {
    ctx.io.err(answer.line);
    return answer.exit;
  }
  ctx.io.out(ctx.json ? JSON.stringify(answer.value) : text(answer.value));
  return EXIT_OK;
}

/** Sends a request; prints the reply (JSON or `text(reply)`), an error reply (exit 1) or "no controller" (exit 3). */
function request<S extends z.ZodType>(ctx: Context, subject: string, body: unknown, schema: S, text: (reply: z.output<S>) => string): Promise<number> {
  return withConnection(ctx, false, async (nc) => print(ctx, await ask(ctx, nc, subject, body, schema), text));
}

/** `request` about one job, which `text` names by its id or a unique prefix of it. */
function jobRequest<S extends z.ZodType>(ctx: Context, text: string, subjectOf: (id: string) => string, body: unknown, schema: S, show: (reply: z.output<S>) => string): Promise<number> {
  return withConnection(ctx, false, async (nc) => {
    const answer = await withJob(ctx, nc, text, (id) => ask(ctx, nc, subjectOf(id), body, schema));
    return print(ctx, answer.ok ? { ok: true, value: answer.value.value } : answer, show);
  });
}

function submit(ctx: Context, file: string): Promise<number> {
  let pipeline: unknown;
  try {
    pipeline = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    ctx.io.err(`weir: cannot read the pipeline ${file}: ${messageOf(err)}`);
    return Promise.resolve(EXIT_USAGE);
  }
  return request(ctx, subjects.apiJobsCreate(), pipeline, jobRevisionReplySchema, (reply) => reply.job_id);
}

/** The table of a list page, and how to read the next one. */
function listText(reply: ListJobsReply, wide: boolean, nowMs: number): string {
  const last = reply.data.at(-1);
  const more = reply.has_more && last !== undefined ? `\n(more: weir jobs list --after ${last.job_id})` : '';
  return jobListTable(reply.data, { wide, nowMs }) + more;
}

function list(ctx: Context, body: ListJobsRequest, wide: boolean): Promise<number> {
  return request(ctx, subjects.apiJobsList(), body, listJobsReplySchema, (reply) => listText(reply, wide, Date.now()));
}

/**
 * `weir jobs list --watch`: the list, then again at each state change of any job (every job's state
 * events) and every few seconds, until Ctrl-C, SIGTERM or the caller's signal (exit 0).
 */
function watchJobs(ctx: Context, body: ListJobsRequest, wide: boolean): Promise<number> {
  return withConnection(ctx, true, async (nc) => {
    const interruption = untilInterrupted(ctx);
    try {
      const first = await ask(ctx, nc, subjects.apiJobsList(), body, listJobsReplySchema);
      if (!first.ok) return print(ctx, first, () => '');
      let stopped = false;
      void interruption.interrupted.then(() => (stopped = true));
      await watchList({
        initial: first.value,
        fetch: async () => {
          const next = await ask(ctx, nc, subjects.apiJobsList(), body, listJobsReplySchema);
          if (next.ok) return next.value;
          if (!stopped) ctx.io.err(`${next.line} (still watching)`);
          return undefined;
        },
        render: (reply, nowMs) => (ctx.json ? JSON.stringify(reply) : `weir jobs list, at each state change and every ${formatMs(DEFAULT_REFRESH_MS)} (Ctrl-C ends it)\n${listText(reply, wide, nowMs)}`),
        identity: (reply) => JSON.stringify(reply),
        follow: (changed) => {
          const sub = nc.subscribe(SUBJECTS.jobState.wildcard, { callback: () => changed() });
          return () => sub.unsubscribe();
        },
        out: ctx.io.out,
        redraw: ctx.io.tty === true && !ctx.json,
        stopped: interruption.interrupted,
      });
      return EXIT_OK;
    } finally {
      interruption.release();
    }
  });
}

/** A config update; one that changes nothing says so (exit 0) rather than naming a revision nothing wrote. */
function configure(ctx: Context, id: string, update: ConfigUpdate, what: string): Promise<number> {
  return jobRequest(ctx, id, subjects.apiJobConfig, update, jobRevisionReplySchema, (reply) => {
    if (reply.changed === false) return reply.state === undefined ? `${reply.job_id}: nothing to change` : `${reply.job_id} is already ${reply.state}: nothing to change`;
    return `${reply.job_id}: ${what} (revision ${reply.revision})`;
  });
}

/** Resolves on Ctrl-C, SIGTERM or the caller's abort signal; `release` removes those hooks. */
function untilInterrupted(ctx: Context): { interrupted: Promise<void>; release: () => void } {
  let interrupt!: () => void;
  const interrupted = new Promise<void>((resolve) => (interrupt = resolve));
  const signals = ['SIGINT', 'SIGTERM'] as const;
  signals.forEach((signal) => process.once(signal, interrupt));
  ctx.io.signal?.addEventListener('abort', interrupt, { once: true });
  if (ctx.io.signal?.aborted === true) interrupt();
  return {
    interrupted,
    release: () => {
      interrupt();
      signals.forEach((signal) => process.off(signal, interrupt));
      ctx.io.signal?.removeEventListener('abort', interrupt);
    },
  };
}

/** A subscription that Ctrl-C, SIGTERM or the caller's abort signal ends; `release` ends it and removes those hooks. */
function interruptible(ctx: Context, nc: NatsConnection, subject: string): { sub: Subscription; release: () => void } {
  const sub = nc.subscribe(subject);
  const interruption = untilInterrupted(ctx);
  void interruption.interrupted.then(() => sub.unsubscribe());
  return { sub, release: interruption.release };
}

/**
 * Subscribes to `subjectOf(job)`, then reads the job (so nothing published after the read is missed),
 * for the job `text` names by its id or a unique prefix; the subscription is the one of the job found.
 */
async function followJob(ctx: Context, nc: NatsConnection, text: string, subjectOf: (id: string) => string): Promise<Answer<{ id: string; view: JobView; sub: Subscription; release: () => void }>> {
  let following: { sub: Subscription; release: () => void } | undefined;
  const found = await withJob(ctx, nc, text, async (id) => {
    following?.release();
    following = interruptible(ctx, nc, subjectOf(id));
    await nc.flush();
    return ask(ctx, nc, subjects.apiJobGet(id), { v: 1 }, jobViewSchema);
  });
  if (!found.ok || following === undefined) {
    following?.release();
    return found.ok ? { ok: false, exit: EXIT_ERROR_REPLY, line: 'weir: internal: no subscription' } : found;
  }
  return { ok: true, value: { id: found.value.id, view: found.value.value, ...following } };
}

/**
 * The job's state now, then each transition as it happens, one line each (with `--json`, the job view,
 * then the state events). Ends after `count` lines, when the job reaches Finished (nothing can follow
 * it), when it is deleted, or on Ctrl-C.
 */
function watch(ctx: Context, text: string, count: number): Promise<number> {
  return withConnection(ctx, true, async (nc) => {
    const followed = await followJob(ctx, nc, text, subjects.jobState);
    if (!followed.ok) return print(ctx, followed, () => '');
    const { id, view, sub, release } = followed.value;
    try {
      ctx.io.err(`watching ${subjects.jobState(id)} on ${ctx.url} (Ctrl-C to stop)`);
      ctx.io.out(ctx.json ? JSON.stringify(view) : currentStateLine(view));
      let seen = 1;
      if (seen >= count || view.state === 'Finished') return EXIT_OK;
      let lastSeq: number | undefined;
      for await (const msg of sub) {
        const event = decode(jobStateEventSchema, msg.data);
        // State events are core NATS publishes: one lost on the way (a reconnect) shows as a jump in `seq`.
        // A jump back is a new controller (its count starts again): not a gap.
        if (event.ok) {
          const missed = lastSeq === undefined ? 0 : event.value.seq - lastSeq - 1;
          if (missed > 0) ctx.io.err(`weir: ${missed} state event${missed === 1 ? '' : 's'} of ${id} missed (weir jobs get ${id} has the current state)`);
          lastSeq = event.value.seq;
        }
        if (ctx.json) {
          ctx.io.out(msg.string());
        } else {
          ctx.io.out(event.ok ? stateEventLine(event.value) : `unreadable state event (${event.error.code}: ${event.error.message}): ${msg.string()}`);
        }
        if (++seen >= count || (event.ok && (event.value.deleted === true || event.value.state === 'Finished'))) break;
      }
      return EXIT_OK;
    } finally {
      release();
    }
  });
}

/**
 * `weir jobs errors --json`: one page of error events, newest first, as `GET …/jobs/:job_id/errors`
 * answers it (rows as the HTTP API shows them); `next_cursor` continues with `--after`.
 */
export interface ErrorsPage {
  data: ErrorRow[];
  has_more: boolean;
  next_cursor: number | null;
}

/**
 * One page of the job's error events, read from the event log in JetStream: the controller is asked
 * only when `text` is no job's id, for the job it is a prefix of (a deleted job's log stays readable by
 * its whole id).
 */
function errors(ctx: Context, text: string, limit: number, after: number | undefined): Promise<number> {
  return withConnection(ctx, false, async (nc) => {
    let store: Awaited<ReturnType<typeof openStore>>;
    try {
      store = await openStore(nc, { operationTimeoutMs: ctx.timeout, requestTimeoutMs: Math.min(2_000, ctx.timeout) });
    } catch (err) {
      return print(ctx, unreadableLog(ctx, text, err), () => '');
    }
    const found = await withJob(ctx, nc, text, async (id): Promise<Answer<Page>> => {
      try {
        const page = await store.log.page(id, { kind: 'error', limit, ...(after === undefined ? {} : { startingAfter: after }) });
        // A first page with nothing on it: say so if the job does not exist (a deleted job's log stays readable).
        if (page.data.length === 0 && after === undefined && (await store.jobs.get(id).catch(() => true)) === null) {
          return { ok: false, exit: EXIT_ERROR_REPLY, line: `weir: unknown_job: no job ${JSON.stringify(id)}`, code: 'unknown_job' };
        }
        return { ok: true, value: page };
      } catch (err) {
        return unreadableLog(ctx, id, err);
      }
    });
    if (!found.ok) return print(ctx, found, () => '');
    const { id, value: page } = found.value;
    const data = page.data.map(toErrorRow).filter((row): row is ErrorRow => row !== null);
    const last = data.at(-1);
    const next = page.hasMore && last !== undefined ? last.id : null;
    if (ctx.json) {
      const body: ErrorsPage = { data, has_more: next !== null, next_cursor: next };
      ctx.io.out(JSON.stringify(body));
    } else {
      const more = next === null ? '' : `\n(more: weir jobs errors ${id} --after ${next}${limit === DEFAULT_ERRORS_LIMIT ? '' : ` --limit ${limit}`})`;
      ctx.io.out(errorListTable(data, after === undefined ? 'no errors' : 'no older errors') + more);
    }
    return EXIT_OK;
  });
}

function unreadableLog(ctx: Context, id: string, err: unknown): Answer<never> {
  if (err instanceof StoreUnavailableError) return { ok: false, exit: EXIT_UNREACHABLE, line: `weir: the job event log on ${ctx.url} cannot be read (${messageOf(err)}); is JetStream enabled?` };
  return { ok: false, exit: EXIT_ERROR_REPLY, line: `weir: cannot read the errors of ${id}: ${messageOf(err)}` };
}

/** The preview subtasks of the job's current run, as `<node>/<subtask>`; a rescale's overrides count. */
function previewSubtasks(view: JobView): Set<string> {
  const keys = new Set<string>();
  for (const [nodeId, parallelism] of previewParallelism(view)) {
    for (let i = 0; i < parallelism; i++) keys.add(`${nodeId}/${i}`);
  }
  return keys;
}

/**
 * Prints the rows the job's preview sinks publish (core NATS: only rows sent while it listens), until
 * Ctrl-C, `count` rows, or every preview subtask of the current run has sent its last batch.
 */
function tail(ctx: Context, text: string, count: number): Promise<number> {
  return withConnection(ctx, true, async (nc) => {
    const followed = await followJob(ctx, nc, text, subjects.jobOutput);
    if (!followed.ok) return print(ctx, followed, () => '');
    const { id, sub, release } = followed.value;
    let view = followed.value.view;
    try {
      let expected = previewSubtasks(view);
      if (expected.size === 0) {
        ctx.io.err(`weir: job ${id} has no preview sink: nothing to tail`);
        return EXIT_ERROR_REPLY;
      }
      if (view.state === 'Finished') {
        ctx.io.err(`weir: job ${id} is Finished: its preview sinks have sent all their rows`);
        return EXIT_OK;
      }
      ctx.io.err(`tailing ${subjects.jobOutput(id)} on ${ctx.url} (${expected.size} preview subtask${expected.size === 1 ? '' : 's'}; Ctrl-C to stop)`);
      let generation = view.generation;
      const done = new Set<string>();
      let rows = 0;
      for await (const msg of sub) {
        const decoded = decode(previewOutputSchema, msg.data);
        if (!decoded.ok) {
          ctx.io.err(`weir: unreadable output message (${decoded.error.code}: ${decoded.error.message})`);
          continue;
        }
        const output = decoded.value;
        if (output.generation < generation) continue;
        if (output.generation > generation) {
          // A new run (restart, rescale, recovery): its subtasks are the ones to wait for.
          generation = output.generation;
          done.clear();
          const again = await ask(ctx, nc, subjects.apiJobGet(id), { v: 1 }, jobViewSchema);
          if (!again.ok) return print(ctx, again, () => '');
          view = again.value;
          expected = previewSubtasks(view);
        }
        if (ctx.json) {
          ctx.io.out(msg.string());
          rows += output.rows.length;
        } else {
          for (const row of output.rows) {
            if (rows >= count) break;
            ctx.io.out(JSON.stringify(row));
            rows++;
          }
        }
        if (rows >= count) break;
        if (output.done === true) {
          done.add(`${output.node_id}/${output.subtask_index}`);
          if ([...expected].every((key) => done.has(key))) break;
        }
      }
      return EXIT_OK;
    } finally {
      release();
    }
  });
}
