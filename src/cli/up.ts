/**
 * `weir up`: everything on one machine for trying weir out. Uses the NATS server at $NATS_URL when
 * one answers there, otherwise starts nats-server with JetStream under ./.weir/ (on the port NATS_URL
 * names, if it names one); then runs `weir controller`, N `weir worker` and `weir api` as child
 * processes (the workers once the controller answers), shows their logs (child-logs.ts: pretty on a
 * terminal, JSON elsewhere), prints where the console and the API are, and on SIGINT/SIGTERM stops the
 * API, then the controller, then the workers, then nats-server, within its shutdown deadline. Its
 * children stop by themselves when it is gone, however it ended.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, mkdirSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { hostname } from 'node:os';
import { delimiter, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { decodeReply, encode, listWorkersReplySchema, subjects } from '../protocol/index.js';
import { freePort } from '../shared/free-port.js';
import { API_OPTIONS, apiSettings, DEFAULT_API_PORT, refuseTokenArgument } from './api.js';
import { commandArgs, parseCommandArgs, positiveInteger, SHUTDOWN_OPTION, SHUTDOWN_USAGE, shutdownTimeoutOf, UsageError } from './args.js';
import { formatMs } from './format.js';
import { childLineFormatter, LOG_FORMATS, type LogFormat } from './child-logs.js';
import { natsOptions } from './nats-options.js';

export interface UpIo {
  out: (line: string) => void;
  err: (line: string) => void;
  env?: NodeJS.ProcessEnv;
  /** `out` is a terminal: the children's logs are shown pretty and coloured unless --log-format says otherwise. */
  tty?: boolean;
}

export const UP_USAGE = `Usage: weir up [options]   NATS (if needed), a controller, workers and the API, until Ctrl-C
  --controllers N     controller processes sharing the jobs (default 1; named weir-up-1 … weir-up-N, so a
                      restarted deployment takes its jobs back at once)
  --workers N         worker processes (default 2)
  --slots N           task slots per worker (default 4)
  --data-dir D        where a nats-server it starts keeps its JetStream data (default: $WEIR_DATA_DIR or ./.weir)
  --api-port N        the HTTP API's port (default: $WEIR_API_PORT or ${DEFAULT_API_PORT}, or a free one if that is taken;
                      0 = any free port)
  --api-host H        the HTTP API's interface (default: $WEIR_API_HOST or 127.0.0.1)
  --api-token-file F  the API's bearer token from a file (or WEIR_API_TOKEN; never on the command line)
  --log-format F      how the children's logs are shown: pretty (one readable line each, coloured; nats-server's
                      info lines left out) or json (pino's lines, with the child's name as "proc"); default: pretty
                      on a terminal, json otherwise (env WEIR_LOG_FORMAT; NO_COLOR turns the colours off)
  ${SHUTDOWN_USAGE}
                      for the whole deployment: the API, the controller, the workers and nats-server each get a quarter
Uses the NATS server at $NATS_URL if one answers; otherwise starts nats-server, on the port $NATS_URL names
(default 4222, or any free port when that is taken).`;

export const NATS_INSTALL_HINT =
  'install nats-server (Debian/Ubuntu: apt-get install nats-server; macOS: brew install nats-server; or https://github.com/nats-io/nats-server/releases), put it on PATH or set WEIR_NATS_SERVER, or point NATS_URL at a running server';

const DEFAULT_URL = 'nats://127.0.0.1:4222';
/** More controllers than shards would leave some without jobs; a laptop needs far fewer. */
const MAX_UP_CONTROLLERS = 16;
const READY_TIMEOUT_MS = 30_000;

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

interface Child {
  name: string;
  proc: ChildProcess;
  exited: Promise<Exit>;
  stopping: boolean;
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/** WEIR_NATS_SERVER, then PATH, then the usual install locations; undefined when none. */
export function findNatsServerBinary(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const fromEnv = env['WEIR_NATS_SERVER'];
  if (fromEnv) return isExecutable(fromEnv) ? fromEnv : undefined;
  const dirs = (env['PATH'] ?? '').split(delimiter).filter((dir) => dir !== '');
  return [...dirs, '/usr/sbin', '/usr/local/bin', '/opt/homebrew/bin'].map((dir) => join(dir, 'nats-server')).find(isExecutable);
}

async function tryConnect(url: string, env: NodeJS.ProcessEnv): Promise<NatsConnection | undefined> {
  try {
    return await connect({ ...natsOptions(url, env), name: 'weir-up', waitOnFirstConnect: false, maxReconnectAttempts: 0, timeout: 1000 });
  } catch {
    return undefined;
  }
}

function portIsFree(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((done) => {
    const server = createServer();
    server.once('error', () => done(false));
    server.listen(port, host, () => server.close(() => done(true)));
  });
}


export interface UpArgs {
  controllers: number;
  workers: number;
  slots: number;
  api: ReturnType<typeof apiSettings>;
  /** The API port was given (flag or WEIR_API_PORT): a taken one is an error, not replaced by a free one. */
  apiPortGiven: boolean;
  /** Where a nats-server that `weir up` starts keeps its JetStream data. */
  dataDir: string;
  /** The whole deployment stops within this once told to (each of its four stages gets a quarter). */
  shutdownTimeoutMs: number;
  /** How the children's logs are shown; undefined: pretty on a terminal, json otherwise. */
  logFormat: LogFormat | undefined;
}

/** `weir up` arguments; throws a `UsageError` with the reason on bad input. */
export function parseUpArgs(args: readonly string[], env: NodeJS.ProcessEnv = process.env): UpArgs {
  refuseTokenArgument(args);
  const { values } = parseCommandArgs(args, {
    controllers: { type: 'string' },
    workers: { type: 'string' },
    slots: { type: 'string' },
    'data-dir': { type: 'string' },
    'log-format': { type: 'string' },
    ...API_OPTIONS,
    ...SHUTDOWN_OPTION,
  });
  const controllers = positiveInteger(values.controllers ?? '1', '--controllers');
  if (controllers > MAX_UP_CONTROLLERS) throw new UsageError(`--controllers must be at most ${MAX_UP_CONTROLLERS}, got ${controllers}`);
  return {
    controllers,
    workers: positiveInteger(values.workers ?? '2', '--workers'),
    slots: positiveInteger(values.slots ?? '4', '--slots'),
    api: apiSettings(values, env),
    apiPortGiven: values['api-port'] !== undefined || (env['WEIR_API_PORT'] ?? '') !== '',
    dataDir: resolve(values['data-dir'] ?? env['WEIR_DATA_DIR'] ?? '.weir'),
    shutdownTimeoutMs: shutdownTimeoutOf(values, env),
    logFormat: logFormatOf(values['log-format'], env),
  };
}

function logFormatOf(flag: string | undefined, env: NodeJS.ProcessEnv): LogFormat | undefined {
  const raw = flag ?? (env['WEIR_LOG_FORMAT'] === '' ? undefined : env['WEIR_LOG_FORMAT']);
  if (raw === undefined) return undefined;
  const format = LOG_FORMATS.find((f) => f === raw);
  if (format === undefined) throw new UsageError(`${flag === undefined ? 'WEIR_LOG_FORMAT' : '--log-format'} must be ${LOG_FORMATS.join(' or ')}, got ${JSON.stringify(raw)}`);
  return format;
}

/** Colours on a terminal, unless NO_COLOR is set; FORCE_COLOR turns them on anywhere. */
export function wantsColour(env: NodeJS.ProcessEnv, tty: boolean): boolean {
  if ((env['NO_COLOR'] ?? '') !== '') return false;
  const force = env['FORCE_COLOR'] ?? '';
  return force !== '' && force !== '0' ? true : tty;
}

/** The flags and environment of the `weir api` child: the port is always explicit; the token stays in env or its file. */
export function apiChildArgs(api: UpArgs['api'], port: number): string[] {
  return ['api', '--api-port', String(port), '--api-host', api.host, ...(api.token?.from === 'file' ? ['--api-token-file', api.token.path] : [])];
}

/** The URL a browser uses for a host the API listens on (any-interface hosts are reached on loopback): the console's. */
export function consoleUrl(host: string, port: number): string {
  const reach = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '[::1]' : host.includes(':') ? `[${host}]` : host;
  return `http://${reach}:${port}/`;
}

/** The HTTP API's base URL on that host and port. */
export function apiBaseUrl(host: string, port: number): string {
  return `${consoleUrl(host, port)}api/v1`;
}

/** The stages of a stop, in order; each gets a quarter of the shutdown deadline. */
const STOP_STAGES = 4;
/** What a child keeps of its stage for itself: the rest is `weir up`'s margin before SIGKILL. */
const CHILD_SHARE = 0.8;

/** NATS's port when a URL names none. */
const DEFAULT_NATS_PORT = 4222;

/**
 * The port of a NATS URL on this machine (`nats://127.0.0.1:4333`, `localhost:4333`, `nats://[::1]`: 4222
 * when it names none, as NATS clients read it), or undefined when it names another host or several servers.
 */
export function localNatsPort(url: string): number | undefined {
  const text = url.trim();
  if (text.includes(',')) return undefined;
  try {
    const parsed = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(text) ? text : `nats://${text}`);
    if (!['127.0.0.1', 'localhost', '[::1]'].includes(parsed.hostname)) return undefined;
    return parsed.port === '' ? DEFAULT_NATS_PORT : Number(parsed.port);
  } catch {
    return undefined;
  }
}

export async function up(args: readonly string[], io: UpIo): Promise<number> {
  const env = io.env ?? process.env;
  const parsed = commandArgs('weir up', args, io, UP_USAGE, () => parseUpArgs(args, env));
  if (typeof parsed === 'number') return parsed;
  const { controllers, workers, slots, api, apiPortGiven, dataDir, shutdownTimeoutMs } = parsed;
  const stageMs = Math.floor(shutdownTimeoutMs / STOP_STAGES);
  const tty = io.tty === true;
  const controllerName = (i: number) => (controllers === 1 ? 'controller' : `controller-${i + 1}`);
  const childLine = childLineFormatter({
    format: parsed.logFormat ?? (tty ? 'pretty' : 'json'),
    colour: wantsColour(env, tty),
    nameWidth: Math.max(controllerName(controllers - 1).length, `worker-${workers}`.length),
  });

  const children: Child[] = [];
  let onDeath: (child: Child, exit: Exit) => void = () => undefined;
  const died = new Promise<{ child: Child; exit: Exit }>((resolveDeath) => {
    onDeath = (child, exit) => resolveDeath({ child, exit });
  });
  let onSignal: (signal: NodeJS.Signals) => void = () => undefined;
  const signalled = new Promise<NodeJS.Signals>((resolveSignal) => {
    onSignal = resolveSignal;
  });
  const signals = ['SIGINT', 'SIGTERM'] as const;
  signals.forEach((signal) => process.on(signal, onSignal));
  // Children run in their own process groups, so Ctrl-C reaches only us and we stop them in order. Should
  // this process die without stopping them (SIGKILL), each notices its parent is gone (WEIR_PARENT_PID)
  // and stops by itself; nats-server runs under `weir guard`, which does the same for it.
  const parentEnv = { WEIR_PARENT_PID: String(process.pid), WEIR_SHUTDOWN_TIMEOUT_MS: String(Math.max(1, Math.floor(stageMs * CHILD_SHARE))) };

  const launch = (name: string, command: string, argv: string[], childEnv: NodeJS.ProcessEnv): Child => {
    const proc = spawn(command, argv, { stdio: ['ignore', 'pipe', 'pipe'], env: childEnv, detached: true });
    const child: Child = {
      name,
      proc,
      stopping: false,
      exited: new Promise<Exit>((resolveExit) => {
        proc.once('exit', (code, signal) => resolveExit({ code, signal }));
        proc.once('error', (err) => {
          io.err(`[${name}] cannot start: ${err.message}`);
          resolveExit({ code: 127, signal: null });
        });
      }),
    };
    for (const stream of [proc.stdout, proc.stderr]) {
      if (stream !== null) {
        createInterface({ input: stream }).on('line', (line) => {
          const text = childLine(name, line);
          if (text !== undefined) io.out(text);
        });
      }
    }
    void child.exited.then((exit) => {
      if (!child.stopping) onDeath(child, exit);
    });
    children.push(child);
    if (proc.pid !== undefined) io.out(`weir up: started ${name} (pid ${proc.pid})`);
    return child;
  };

  /** SIGTERM, then SIGKILL once its stage is over; true when it exited 0 by itself. */
  const stopChild = async (child: Child): Promise<boolean> => {
    child.stopping = true;
    if (child.proc.exitCode === null && child.proc.signalCode === null) child.proc.kill('SIGTERM');
    const exit = await Promise.race([child.exited, sleep(stageMs, undefined, { ref: false })]);
    if (exit === undefined) {
      io.err(`weir up: ${child.name} did not stop within ${formatMs(stageMs)}; killing it`);
      child.proc.kill('SIGKILL');
      await child.exited;
      return false;
    }
    if (exit.code !== 0) io.err(`weir up: ${child.name} exited with ${exit.signal ?? `code ${exit.code}`}`);
    return exit.code === 0;
  };

  // The same node, flags (e.g. --import tsx) and entry script as this process.
  const entry = process.argv[1] ?? '';
  const self = (argv: string[]) => [...process.execArgv, entry, ...argv];

  const polling = new AbortController();
  /** Starts everything and runs until a signal or a child's death; the exit code so far. */
  const runUntilStopped = async (): Promise<number> => {
    let url = env['NATS_URL'] ?? DEFAULT_URL;
    let natsLine: string;
    const existing = await tryConnect(url, env);
    if (existing !== undefined) {
      await existing.close();
      natsLine = `NATS        ${url} (already running)`;
    } else {
      const binary = findNatsServerBinary(env);
      if (binary === undefined) {
        io.err(`weir up: no NATS server answers at ${url} and nats-server is not installed: ${NATS_INSTALL_HINT}`);
        return 1;
      }
      // The port NATS_URL names; without NATS_URL, 4222 or, when that is taken, any free one.
      const named = env['NATS_URL'] === undefined ? undefined : localNatsPort(url);
      if (env['NATS_URL'] !== undefined && named === undefined) {
        io.err(`weir up: no NATS server answers at ${url}, and it names no port on this machine to start one on`);
        return 1;
      }
      const port = named ?? ((await portIsFree(4222)) ? 4222 : await freePort());
      if (named !== undefined && !(await portIsFree(named))) {
        io.err(`weir up: no NATS server answers at ${url}, and port ${named} is taken by something else`);
        return 1;
      }
      const storeDir = join(dataDir, 'jetstream');
      mkdirSync(storeDir, { recursive: true });
      url = `nats://127.0.0.1:${port}`;
      // nats-server stops cleanly (exit 0) on SIGINT; once `weir up` is gone it waits for the other three stages.
      const guardEnv = { ...env, ...parentEnv, WEIR_GUARD_STOP_SIGNAL: 'SIGINT', WEIR_GUARD_GRACE_MS: String(stageMs * (STOP_STAGES - 1)) };
      const nats = launch('nats', process.execPath, self(['guard', '--', binary, '-a', '127.0.0.1', '-p', String(port), '-js', '-sd', storeDir]), guardEnv);
      const deadline = Date.now() + 10_000;
      for (;;) {
        const nc = await tryConnect(url, {});
        if (nc !== undefined) {
          await nc.close();
          break;
        }
        if (nats.proc.exitCode !== null || nats.proc.signalCode !== null || Date.now() > deadline) {
          io.err(`weir up: nats-server (${binary}) did not start on ${url}`);
          return 1;
        }
        await sleep(100);
      }
      natsLine = `NATS        ${url} (nats-server under weir guard pid ${nats.proc.pid}, JetStream data in ${storeDir})`;
    }

    const childEnv: NodeJS.ProcessEnv = { ...env, ...parentEnv, NATS_URL: url };
    // Only the API needs its token.
    const natsChildEnv: NodeJS.ProcessEnv = { ...childEnv };
    delete natsChildEnv['WEIR_API_TOKEN'];
    // Stable names: a deployment started again takes its jobs back at once rather than after the lease TTL.
    const controllerChildren = Array.from({ length: controllers }, (_, i) =>
      launch(controllerName(i), process.execPath, self(['controller', '--id', `weir-up-${i + 1}`]), natsChildEnv),
    );
    const controllerReady = controllerAnswers(url, env, polling.signal);
    // The workers once the controller answers, so that their first registration is heard; ready once it lists them.
    const workerChildren: Child[] = [];
    const workersReady = controllerReady.then((ok) => {
      if (!ok || polling.signal.aborted) return false;
      for (let i = 0; i < workers; i++) workerChildren.push(launch(`worker-${i + 1}`, process.execPath, self(['worker', '--slots', String(slots)]), natsChildEnv));
      return workersRegistered(url, env, polling.signal, workerChildren.flatMap((w) => w.proc.pid ?? []));
    });
    // Port 0 or a taken default: pick a free port here, so the URL is known before the API says it.
    const apiPort = api.port === 0 || (!apiPortGiven && !(await portIsFree(api.port, api.host))) ? await freePort() : api.port;
    const apiUrl = apiBaseUrl(api.host, apiPort);
    const consoleAddress = consoleUrl(api.host, apiPort);
    const apiChild = launch('api', process.execPath, self(apiChildArgs(api, apiPort)), childEnv);

    const first = await Promise.race([
      Promise.all([controllerReady, apiAnswers(apiUrl, polling.signal), workersReady]).then(([controllerOk, apiOk, workersOk]) =>
        controllerOk && apiOk && workersOk
          ? { kind: 'ready' as const }
          : { kind: 'timeout' as const, what: !controllerOk ? `the controller did not answer on ${url}` : !workersOk ? 'the workers did not register' : `the API did not answer on ${apiUrl}` },
      ),
      died.then((death) => ({ kind: 'died' as const, ...death })),
      signalled.then((signal) => ({ kind: 'signal' as const, signal })),
    ]);
    let outcome: { kind: 'died'; child: Child; exit: Exit } | { kind: 'signal'; signal: NodeJS.Signals };
    if (first.kind === 'timeout') {
      io.err(`weir up: ${first.what} within ${formatMs(READY_TIMEOUT_MS)}`);
      return 1;
    } else if (first.kind === 'ready') {
      const nats = url === DEFAULT_URL ? '' : `NATS_URL=${url} `;
      io.out(
        [
          `weir up: everything runs (Ctrl-C stops it)`,
          `  ${natsLine}`,
          ...controllerChildren.map((c) => `  ${c.name.padEnd(10)}  pid ${c.proc.pid}`),
          ...workerChildren.map((w) => `  ${w.name.padEnd(10)}  pid ${w.proc.pid} (slots: ${slots})`),
          `  api         pid ${apiChild.proc.pid} (${api.token === null ? 'no token: loopback only' : 'bearer token required'})`,
          `Console: ${consoleAddress}`,
          `API: ${apiUrl}`,
          `API docs: ${apiUrl}/docs`,
          `Try, in another terminal:`,
          `  ${nats}weir submit examples/counter.json     # runs until stopped`,
          `  ${nats}weir submit examples/bounded.json     # finishes by itself`,
          `  ${nats}weir jobs list`,
          `  ${nats}weir jobs watch <job id>`,
          `  ${nats}weir jobs stop <job id>`,
          `  curl ${api.token === null ? '' : '-H "Authorization: Bearer $WEIR_API_TOKEN" '}${apiUrl}/pipelines`,
        ].join('\n'),
      );
      outcome = await Promise.race([
        died.then((death) => ({ kind: 'died' as const, ...death })),
        signalled.then((signal) => ({ kind: 'signal' as const, signal })),
      ]);
    } else {
      outcome = first;
    }
    if (outcome.kind === 'died') {
      const how = outcome.exit.signal === null ? `exit code ${outcome.exit.code}` : `signal ${outcome.exit.signal}`;
      io.err(`weir up: ${outcome.child.name} (pid ${outcome.child.proc.pid}) exited unexpectedly (${how}); shutting down`);
      return 1;
    }
    io.out(`weir up: ${outcome.signal}: stopping the API, then the controller, then the workers${children.some((c) => c.name === 'nats') ? ', then nats-server' : ''}`);
    return 0;
  };

  let code: number;
  let clean = true;
  try {
    code = await runUntilStopped();
  } finally {
    polling.abort();
    // The API first (a client: its streams end), then the controller (jobs keep their persisted state, and
    // no worker's exit looks like a failure to it), then the workers, then nats-server: each stage within
    // a quarter of the shutdown deadline.
    for (const stage of [['api'], children.filter((c) => c.name.startsWith('controller')).map((c) => c.name), children.filter((c) => c.name.startsWith('worker-')).map((c) => c.name), ['nats']]) {
      const results = await Promise.all(children.filter((c) => stage.includes(c.name)).map(stopChild));
      clean &&= results.every(Boolean);
    }
    signals.forEach((signal) => process.off(signal, onSignal));
  }
  return clean ? code : Math.max(code, 1);
}

/**
 * Asks the controller `subject` until its reply satisfies `ready` (by default any reply, even an error
 * reply): false when it does not within the ready timeout.
 */
async function controllerAnswers(url: string, env: NodeJS.ProcessEnv, signal: AbortSignal, subject = subjects.apiJobsList(), ready: (reply: Uint8Array) => boolean = () => true): Promise<boolean> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  let nc: NatsConnection | undefined;
  try {
    while (Date.now() < deadline && !signal.aborted) {
      nc ??= await tryConnect(url, env);
      if (nc !== undefined) {
        try {
          if (ready((await nc.request(subject, encode({ v: 1 }), { timeout: 1000 })).data)) return true;
        } catch {
          // No responders yet: the controller is still starting.
        }
      }
      await sleep(200);
    }
    return false;
  } finally {
    await nc?.close().catch(() => undefined);
  }
}

/** Until the controller lists a live worker of each of these processes (on this host). */
function workersRegistered(url: string, env: NodeJS.ProcessEnv, signal: AbortSignal, pids: readonly number[]): Promise<boolean> {
  const host = hostname();
  return controllerAnswers(url, env, signal, subjects.apiWorkersList(), (data) => {
    const reply = decodeReply(listWorkersReplySchema, data);
    if (!reply.ok) return false;
    const live = new Set(reply.value.data.filter((w) => w.live && (w.hostname === null || w.hostname === host.slice(0, 255))).map((w) => w.pid));
    return pids.every((pid) => live.has(pid));
  });
}

/** Polls the API's `/ping` until it answers at all (any status: a token may be required). */
async function apiAnswers(baseUrl: string, signal: AbortSignal): Promise<boolean> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline && !signal.aborted) {
    try {
      const response = await fetch(`${baseUrl}/ping`, { signal: AbortSignal.any([signal, AbortSignal.timeout(1000)]) });
      await response.body?.cancel();
      return true;
    } catch {
      // Not listening yet.
    }
    await sleep(200);
  }
  return false;
}
