/**
 * `weir submit FILE` and `weir jobs …`: a thin client of the controller's `weir.api.jobs.*` request
 * subjects, plus `weir jobs watch` on `weir.jobs.<job>.state`.
 *
 * Exit codes: 0 ok; 1 the controller answered with an error reply; 2 bad arguments or input file;
 * 3 NATS or the controller cannot be reached (no responders, timeout, connection refused).
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import type { z } from 'zod';
import {
  decodeReply,
  decodeValue,
  checkpointDetailsReplySchema,
  deleteJobReplySchema,
  encode,
  isValidId,
  jobCheckpointsReplySchema,
  jobRevisionReplySchema,
  jobStateEventSchema,
  jobViewSchema,
  listJobsReplySchema,
  stopModeSchema,
  subjects,
  type ConfigUpdate,
  type ListJobsRequest,
} from '../protocol/index.js';
import { checkpointListTable, checkpointTimeline } from './checkpoint-timeline.js';
import { jobListTable, jobViewText, stateEventLine } from './format.js';
import { natsOptions } from './main.js';

export const EXIT_OK = 0;
export const EXIT_ERROR_REPLY = 1;
export const EXIT_USAGE = 2;
export const EXIT_UNREACHABLE = 3;

export const JOBS_USAGE = `Job commands (all take --nats URL, default $NATS_URL or nats://127.0.0.1:4222,
credentials as for 'weir worker'; --json prints JSON instead of text; --timeout MS, default 5000):
  weir submit FILE                       create a job from a pipeline JSON file; prints its id
  weir jobs list [--limit N] [--after ID]
  weir jobs get ID                       state, generation, restarts, failure and the available action
  weir jobs stop ID [--mode M]           M: checkpoint (default), graceful, immediate, force
  weir jobs start ID                     run again (stop: none)
  weir jobs restart ID [--force]         a new run; --force does not wait for a checkpoint
  weir jobs rescale ID N                 run every node with parallelism N
  weir jobs delete ID                    remove a Stopped, Finished or Failed job
  weir jobs watch ID [--count N]         print state events until Ctrl-C (or N events)
  weir jobs checkpoints ID [EPOCH]       the checkpoint history; with EPOCH, that checkpoint's spans as a timeline`;

export interface CliIo {
  out: (line: string) => void;
  err: (line: string) => void;
  /** Ends `watch` (besides SIGINT/SIGTERM). */
  signal?: AbortSignal;
  env?: NodeJS.ProcessEnv;
}

class UsageError extends Error {}

const DEFAULT_URL = 'nats://127.0.0.1:4222';

const OPTIONS = {
  nats: { type: 'string' },
  json: { type: 'boolean' },
  timeout: { type: 'string' },
  mode: { type: 'string' },
  force: { type: 'boolean' },
  count: { type: 'string' },
  limit: { type: 'string' },
  after: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

type Values = ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true; strict: true }>>['values'];

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

/** `argv[0]` is `submit` or `jobs`. */
export async function jobsCommand(argv: readonly string[], io: CliIo): Promise<number> {
  const env = io.env ?? process.env;
  let ctx: Context;
  let run: () => Promise<number>;
  try {
    const { values, positionals } = parseArgs({ args: [...argv], options: OPTIONS, allowPositionals: true, strict: true });
    ctx = {
      io,
      url: values.nats ?? env['NATS_URL'] ?? DEFAULT_URL,
      json: values.json === true,
      timeout: values.timeout === undefined ? 5000 : positiveInt(values.timeout, '--timeout'),
      values,
    };
    run = plan(positionals, ctx);
  } catch (err) {
    if (!(err instanceof UsageError) && !(err instanceof TypeError)) throw err;
    io.err(`weir: ${err.message}\n\n${JOBS_USAGE}`);
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
  if (values.help === true || (command === 'jobs' && sub === 'help')) {
    return () => {
      ctx.io.out(JOBS_USAGE);
      return Promise.resolve(EXIT_OK);
    };
  }
  if (command === 'submit') {
    allow();
    expectPositionals(positionals, 2, 'weir submit FILE');
    return () => submit(ctx, sub ?? '');
  }
  switch (sub) {
    case 'list': {
      allow('limit', 'after');
      expectPositionals(rest, 0, 'weir jobs list');
      const request: ListJobsRequest = { v: 1 };
      if (values.limit !== undefined) request.limit = Math.min(positiveInt(values.limit, '--limit'), 100);
      if (values.after !== undefined) request.starting_after = jobId(values.after);
      return () => list(ctx, request);
    }
    case 'get': {
      allow();
      expectPositionals(rest, 1, 'weir jobs get ID');
      const id = jobId(rest[0]);
      return () => get(ctx, id);
    }
    case 'delete': {
      allow();
      expectPositionals(rest, 1, 'weir jobs delete ID');
      const id = jobId(rest[0]);
      return () => request(ctx, subjects.apiJobDelete(id), { v: 1 }, deleteJobReplySchema, (reply) => `deleted ${reply.job_id}`);
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
        return () => request(ctx, subjects.apiJobCheckpoints(id), { v: 1 }, jobCheckpointsReplySchema, (reply) => checkpointListTable(reply.data));
      }
      const epoch = nonNegativeInt(rest[1], 'EPOCH');
      return () => request(ctx, subjects.apiJobCheckpoint(id), { v: 1, epoch }, checkpointDetailsReplySchema, (reply) => checkpointTimeline(reply));
    }
    case 'watch': {
      allow('count');
      expectPositionals(rest, 1, 'weir jobs watch ID [--count N]');
      const id = jobId(rest[0]);
      const count = values.count === undefined ? Infinity : positiveInt(values.count, '--count');
      return () => watch(ctx, id, count);
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

/** Sends a request; prints the reply (JSON or `text(reply)`), an error reply (exit 1) or "no controller" (exit 3). */
function request<S extends z.ZodType>(ctx: Context, subject: string, body: unknown, schema: S, text: (reply: z.output<S>) => string): Promise<number> {
  return withConnection(ctx, false, async (nc) => {
    let data: Uint8Array;
    try {
      data = (await nc.request(subject, encode(body), { timeout: ctx.timeout })).data;
    } catch (err) {
      ctx.io.err(`weir: no controller answered on ${ctx.url} (${subject}: ${err instanceof Error ? err.message : String(err)}); is 'weir controller' (or 'weir up') running?`);
      return EXIT_UNREACHABLE;
    }
    const reply = decodeReply(schema, data);
    if (!reply.ok) {
      ctx.io.err(reply.remote ? `weir: ${reply.error.code}: ${reply.error.message}` : `weir: unreadable reply from the controller: ${reply.error.code}: ${reply.error.message}`);
      return EXIT_ERROR_REPLY;
    }
    ctx.io.out(ctx.json ? JSON.stringify(reply.value) : text(reply.value));
    return EXIT_OK;
  });
}

function submit(ctx: Context, file: string): Promise<number> {
  let pipeline: unknown;
  try {
    pipeline = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    ctx.io.err(`weir: cannot read the pipeline ${file}: ${err instanceof Error ? err.message : String(err)}`);
    return Promise.resolve(EXIT_USAGE);
  }
  return request(ctx, subjects.apiJobsCreate(), pipeline, jobRevisionReplySchema, (reply) => reply.job_id);
}

function list(ctx: Context, body: ListJobsRequest): Promise<number> {
  return request(ctx, subjects.apiJobsList(), body, listJobsReplySchema, (reply) => {
    const last = reply.data.at(-1);
    const more = reply.has_more && last !== undefined ? `\n(more: weir jobs list --after ${last.job_id})` : '';
    return jobListTable(reply.data) + more;
  });
}

function get(ctx: Context, id: string): Promise<number> {
  return request(ctx, subjects.apiJobGet(id), { v: 1 }, jobViewSchema, jobViewText);
}

function configure(ctx: Context, id: string, update: ConfigUpdate, what: string): Promise<number> {
  return request(ctx, subjects.apiJobConfig(id), update, jobRevisionReplySchema, (reply) => `${reply.job_id}: ${what} (revision ${reply.revision})`);
}

function watch(ctx: Context, id: string, count: number): Promise<number> {
  return withConnection(ctx, true, async (nc) => {
    const sub = nc.subscribe(subjects.jobState(id));
    const stop = () => sub.unsubscribe();
    const signals = ['SIGINT', 'SIGTERM'] as const;
    signals.forEach((signal) => process.once(signal, stop));
    ctx.io.signal?.addEventListener('abort', stop, { once: true });
    if (ctx.io.signal?.aborted === true) stop();
    await nc.flush();
    ctx.io.err(`watching ${subjects.jobState(id)} on ${ctx.url} (Ctrl-C to stop)`);
    let seen = 0;
    try {
      for await (const msg of sub) {
        if (ctx.json) {
          ctx.io.out(msg.string());
        } else {
          let parsed: unknown;
          try {
            parsed = msg.json();
          } catch {
            parsed = undefined;
          }
          const event = decodeValue(jobStateEventSchema, parsed);
          ctx.io.out(event.ok ? stateEventLine(event.value) : `unreadable state event (${event.error.code}: ${event.error.message}): ${msg.string()}`);
        }
        if (++seen >= count) break;
      }
    } finally {
      signals.forEach((signal) => process.off(signal, stop));
      ctx.io.signal?.removeEventListener('abort', stop);
    }
    return EXIT_OK;
  });
}
