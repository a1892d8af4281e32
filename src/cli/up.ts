/**
 * `weir up`: everything on one machine for trying weir out. Uses the NATS server at $NATS_URL when
 * one answers there, otherwise starts nats-server with JetStream under ./.weir/; then runs
 * `weir controller`, N `weir worker` and `weir api` as child processes, forwards their logs, and on
 * SIGINT/SIGTERM stops the API, then the workers, then the controller, then nats-server.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, mkdirSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { delimiter, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { encode, subjects } from '../protocol/index.js';
import { freePort } from '../shared/free-port.js';
import { API_OPTIONS, apiSettings, DEFAULT_API_PORT, refuseTokenArgument } from './api.js';
import { natsOptions } from './main.js';

export interface UpIo {
  out: (line: string) => void;
  err: (line: string) => void;
  env?: NodeJS.ProcessEnv;
}

export const UP_USAGE = `Usage: weir up [--workers N] [--slots N] [--api-port N] [--api-host H] [--api-token-file F]
  --workers N         worker processes (default 2)
  --slots N           task slots per worker (default 4)
  --api-port N        the HTTP API's port (default: $WEIR_API_PORT or ${DEFAULT_API_PORT}, or a free one if that is taken;
                      0 = any free port)
  --api-host H        the HTTP API's interface (default: $WEIR_API_HOST or 127.0.0.1)
  --api-token-file F  the API's bearer token from a file (or WEIR_API_TOKEN; never on the command line)
Uses the NATS server at $NATS_URL if one answers; otherwise starts nats-server (JetStream data in ./.weir/).`;

export const NATS_INSTALL_HINT =
  'install nats-server (Debian/Ubuntu: apt-get install nats-server; macOS: brew install nats-server; or https://github.com/nats-io/nats-server/releases), put it on PATH or set WEIR_NATS_SERVER, or point NATS_URL at a running server';

const DEFAULT_URL = 'nats://127.0.0.1:4222';
const READY_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 15_000;

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

function positiveInt(text: string, what: string): number {
  const n = Number(text);
  if (!/^[0-9]+$/.test(text) || !Number.isSafeInteger(n) || n < 1) throw new Error(`${what} must be a positive integer, got ${JSON.stringify(text)}`);
  return n;
}

export interface UpArgs {
  workers: number;
  slots: number;
  api: ReturnType<typeof apiSettings>;
  /** The API port was given (flag or WEIR_API_PORT): a taken one is an error, not replaced by a free one. */
  apiPortGiven: boolean;
  help: boolean;
}

/** `weir up` arguments; throws with the reason on bad input. */
export function parseUpArgs(args: readonly string[], env: NodeJS.ProcessEnv = process.env): UpArgs {
  refuseTokenArgument(args);
  const { values } = parseArgs({
    args: [...args],
    options: { workers: { type: 'string' }, slots: { type: 'string' }, ...API_OPTIONS, help: { type: 'boolean', short: 'h' } },
    strict: true,
    allowPositionals: false,
  });
  return {
    workers: positiveInt(values.workers ?? '2', '--workers'),
    slots: positiveInt(values.slots ?? '4', '--slots'),
    api: apiSettings(values, env),
    apiPortGiven: values['api-port'] !== undefined || (env['WEIR_API_PORT'] ?? '') !== '',
    help: values.help === true,
  };
}

/** The flags and environment of the `weir api` child: the port is always explicit; the token stays in env or its file. */
export function apiChildArgs(api: UpArgs['api'], port: number): string[] {
  return ['api', '--api-port', String(port), '--api-host', api.host, ...(api.token?.from === 'file' ? ['--api-token-file', api.token.path] : [])];
}

/** The URL a browser or curl uses for a host the API listens on (any-interface hosts are reached on loopback). */
export function apiBaseUrl(host: string, port: number): string {
  const reach = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '[::1]' : host.includes(':') ? `[${host}]` : host;
  return `http://${reach}:${port}/api/v1`;
}

export async function up(args: readonly string[], io: UpIo): Promise<number> {
  const env = io.env ?? process.env;
  let workers: number;
  let slots: number;
  let api: UpArgs['api'];
  let apiPortGiven: boolean;
  try {
    const parsed = parseUpArgs(args, env);
    if (parsed.help) {
      io.out(UP_USAGE);
      return 0;
    }
    ({ workers, slots, api, apiPortGiven } = parsed);
  } catch (err) {
    io.err(`weir up: ${err instanceof Error ? err.message : String(err)}\n\n${UP_USAGE}`);
    return 2;
  }

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
  // Children run in their own process groups (so Ctrl-C reaches only us and we stop them in order);
  // if this process dies anyway, take them along.
  const killAll = () => children.forEach((child) => child.proc.exitCode === null && child.proc.signalCode === null && child.proc.kill('SIGKILL'));
  process.on('exit', killAll);

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
      if (stream !== null) createInterface({ input: stream }).on('line', (line) => io.out(`[${name}] ${line}`));
    }
    void child.exited.then((exit) => {
      if (!child.stopping) onDeath(child, exit);
    });
    children.push(child);
    if (proc.pid !== undefined) io.out(`weir up: started ${name} (pid ${proc.pid})`);
    return child;
  };

  const stopChild = async (child: Child) => {
    child.stopping = true;
    if (child.proc.exitCode === null && child.proc.signalCode === null) child.proc.kill('SIGTERM');
    const exit = await Promise.race([child.exited, sleep(STOP_TIMEOUT_MS, undefined, { ref: false })]);
    if (exit === undefined) {
      io.err(`weir up: ${child.name} did not stop within ${STOP_TIMEOUT_MS / 1000}s; killing it`);
      child.proc.kill('SIGKILL');
      await child.exited;
    }
  };

  const polling = new AbortController();
  let code = 0;
  try {
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
      const port = (await portIsFree(4222)) ? 4222 : await freePort();
      const storeDir = resolve('.weir', 'jetstream');
      mkdirSync(storeDir, { recursive: true });
      url = `nats://127.0.0.1:${port}`;
      const nats = launch('nats', binary, ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', storeDir], env);
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
      natsLine = `NATS        ${url} (nats-server pid ${nats.proc.pid}, JetStream data in ${storeDir})`;
    }

    // The same node, flags (e.g. --import tsx) and entry script as this process.
    const entry = process.argv[1] ?? '';
    const self = (argv: string[]) => [...process.execArgv, entry, ...argv];
    const childEnv: NodeJS.ProcessEnv = { ...env, NATS_URL: url };
    // Only the API needs its token.
    const natsChildEnv: NodeJS.ProcessEnv = { ...childEnv };
    delete natsChildEnv['WEIR_API_TOKEN'];
    const controller = launch('controller', process.execPath, self(['controller']), natsChildEnv);
    const workerChildren = Array.from({ length: workers }, (_, i) =>
      launch(`worker-${i + 1}`, process.execPath, self(['worker', '--slots', String(slots)]), natsChildEnv),
    );
    // Port 0 or a taken default: pick a free port here, so the URL is known before the API says it.
    const apiPort = api.port === 0 || (!apiPortGiven && !(await portIsFree(api.port, api.host))) ? await freePort() : api.port;
    const apiUrl = apiBaseUrl(api.host, apiPort);
    const apiChild = launch('api', process.execPath, self(apiChildArgs(api, apiPort)), childEnv);

    const first = await Promise.race([
      Promise.all([controllerAnswers(url, env, polling.signal), apiAnswers(apiUrl, polling.signal)]).then(([controllerOk, apiOk]) =>
        controllerOk && apiOk ? { kind: 'ready' as const } : { kind: 'timeout' as const, what: controllerOk ? `the API did not answer on ${apiUrl}` : `the controller did not answer on ${url}` },
      ),
      died.then((death) => ({ kind: 'died' as const, ...death })),
      signalled.then((signal) => ({ kind: 'signal' as const, signal })),
    ]);
    let outcome: { kind: 'died'; child: Child; exit: Exit } | { kind: 'signal'; signal: NodeJS.Signals };
    if (first.kind === 'timeout') {
      io.err(`weir up: ${first.what} within ${READY_TIMEOUT_MS / 1000}s`);
      code = 1;
      return code;
    } else if (first.kind === 'ready') {
      const nats = url === DEFAULT_URL ? '' : `NATS_URL=${url} `;
      io.out(
        [
          `weir up: everything runs (Ctrl-C stops it)`,
          `  ${natsLine}`,
          `  controller  pid ${controller.proc.pid}`,
          ...workerChildren.map((w) => `  ${w.name.padEnd(10)}  pid ${w.proc.pid} (slots: ${slots})`),
          `  api         pid ${apiChild.proc.pid} (${api.token === null ? 'no token: loopback only' : 'bearer token required'})`,
          `API: ${apiUrl}`,
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
      code = 1;
    } else {
      io.out(`weir up: ${outcome.signal}: stopping the API, then the workers, then the controller${children[0]?.name === 'nats' ? ', then nats-server' : ''}`);
    }
    return code;
  } finally {
    polling.abort();
    // The API first (a client: its streams end), then the workers (they drain their tasks), then the
    // controller, then nats-server.
    for (const child of children.filter((c) => c.name === 'api')) await stopChild(child);
    await Promise.all(children.filter((c) => c.name.startsWith('worker-')).map(stopChild));
    for (const name of ['controller', 'nats']) for (const child of children.filter((c) => c.name === name)) await stopChild(child);
    process.off('exit', killAll);
    signals.forEach((signal) => process.off(signal, onSignal));
  }
}

/** Polls `weir.api.jobs.list` until the controller answers (any reply, even an error reply). */
async function controllerAnswers(url: string, env: NodeJS.ProcessEnv, signal: AbortSignal): Promise<boolean> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  let nc: NatsConnection | undefined;
  try {
    while (Date.now() < deadline && !signal.aborted) {
      nc ??= await tryConnect(url, env);
      if (nc !== undefined) {
        try {
          await nc.request(subjects.apiJobsList(), encode({ v: 1, limit: 1 }), { timeout: 1000 });
          return true;
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
