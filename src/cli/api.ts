/**
 * `weir api`: runs the HTTP API (src/api/) until SIGTERM/SIGINT, then closes the server (in-flight
 * requests finish, streams end) and drains the NATS connection.
 *
 * The bearer token comes from WEIR_API_TOKEN or from a file (`--api-token-file F` / WEIR_API_TOKEN_FILE),
 * never from the command line (where `ps` shows it) and never into a log line.
 */
import { readFileSync } from 'node:fs';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { pino } from 'pino';
import { drainWithin } from '../shared/nats-close.js';
import { commandArgs, parseCommandArgs, REPLICAS_OPTION, REPLICAS_USAGE, replicasOf, SHUTDOWN_OPTION, SHUTDOWN_USAGE, shutdownTimeoutOf, UsageError } from './args.js';
import { runDaemon } from './daemon.js';
import { natsOptions } from './nats-options.js';

export const DEFAULT_API_HOST = '127.0.0.1';
export const DEFAULT_API_PORT = 8000;
const DEFAULT_URL = 'nats://127.0.0.1:4222';

export const API_USAGE = `Usage: weir api [--api-port N] [--api-host H] [--api-token-file F] [--read-cache-ms MS] [--nats URL]
  --api-port N        port (default: $WEIR_API_PORT or ${DEFAULT_API_PORT}; 0 = any free port)
  --api-host H        interface (default: $WEIR_API_HOST or ${DEFAULT_API_HOST}); anything but loopback needs a token
  --api-token-file F  a file holding the bearer token (default: $WEIR_API_TOKEN_FILE), or set WEIR_API_TOKEN;
                      without a token the API answers anyone who reaches it, so it only listens on loopback
  --read-cache-ms MS  how long a job, checkpoint or metrics read serves identical requests (default:
                      $WEIR_API_READ_CACHE_MS or 250; 0: every request asks the controller)
  --nats URL          NATS server (default: $NATS_URL or ${DEFAULT_URL}; credentials as for 'weir worker')
  ${REPLICAS_USAGE}
  ${SHUTDOWN_USAGE}`;

export interface ApiArgs {
  url: string;
  host: string;
  port: number;
  /** Where the token comes from; `null`: no token (loopback only). */
  token: { from: 'env' } | { from: 'file'; path: string } | null;
  /** Undefined: the API's default. */
  readCacheMs?: number;
  /** Replicas of the buckets and streams this process creates. */
  replicas: number;
  shutdownTimeoutMs: number;
}

/** A TCP port, 0–65535 (0: any free port). */
export function portNumber(text: string, what: string): number {
  const n = Number(text);
  if (!/^[0-9]+$/.test(text) || !Number.isSafeInteger(n) || n > 65_535) throw new UsageError(`${what} must be a port number (0–65535), got ${JSON.stringify(text)}`);
  return n;
}

/** The API flags `weir api` and `weir up` share. */
export const API_OPTIONS = {
  'api-port': { type: 'string' },
  'api-host': { type: 'string' },
  'api-token-file': { type: 'string' },
} as const;

/** A token on the command line would show in `ps` and shell history: refused with the reason. */
export function refuseTokenArgument(args: readonly string[]): void {
  if (args.some((arg) => arg === '--api-token' || arg.startsWith('--api-token='))) {
    throw new UsageError('--api-token: a token is never taken on the command line; set WEIR_API_TOKEN or use --api-token-file F');
  }
}

/** The API's host, port and token source from the flags and the environment; throws with the reason. */
export function apiSettings(values: { 'api-port'?: string | undefined; 'api-host'?: string | undefined; 'api-token-file'?: string | undefined }, env: NodeJS.ProcessEnv): Pick<ApiArgs, 'host' | 'port' | 'token'> {
  const portText = values['api-port'] ?? nonEmpty(env['WEIR_API_PORT']);
  const port = portText === undefined ? DEFAULT_API_PORT : portNumber(portText, values['api-port'] === undefined ? 'WEIR_API_PORT' : '--api-port');
  const host = values['api-host'] ?? nonEmpty(env['WEIR_API_HOST']) ?? DEFAULT_API_HOST;
  if (host === '') throw new UsageError('--api-host must not be empty');
  const file = values['api-token-file'] ?? nonEmpty(env['WEIR_API_TOKEN_FILE']);
  const fromEnv = nonEmpty(env['WEIR_API_TOKEN']) !== undefined;
  if (file !== undefined && fromEnv) throw new UsageError('set one API token source, not WEIR_API_TOKEN and a token file');
  if (file === '') throw new UsageError('--api-token-file must not be empty');
  return { host, port, token: file !== undefined ? { from: 'file', path: file } : fromEnv ? { from: 'env' } : null };
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}

/** `weir api` arguments; throws with the reason on bad input. Reads no file: see `readApiToken`. */
export function parseApiArgs(args: readonly string[], env: NodeJS.ProcessEnv = process.env): ApiArgs {
  refuseTokenArgument(args);
  const { values } = parseCommandArgs(args, { ...API_OPTIONS, nats: { type: 'string' }, 'read-cache-ms': { type: 'string' }, ...REPLICAS_OPTION, ...SHUTDOWN_OPTION });
  const cacheText = values['read-cache-ms'] ?? nonEmpty(env['WEIR_API_READ_CACHE_MS']);
  const cacheWhat = values['read-cache-ms'] === undefined ? 'WEIR_API_READ_CACHE_MS' : '--read-cache-ms';
  if (cacheText !== undefined && !/^[0-9]{1,9}$/.test(cacheText)) throw new UsageError(`${cacheWhat} must be a number of milliseconds, got ${JSON.stringify(cacheText)}`);
  return {
    url: values.nats ?? env['NATS_URL'] ?? DEFAULT_URL,
    ...apiSettings(values, env),
    ...(cacheText === undefined ? {} : { readCacheMs: Number(cacheText) }),
    replicas: replicasOf(values, env),
    shutdownTimeoutMs: shutdownTimeoutOf(values, env),
  };
}

/** The token itself (trimmed); throws when the file cannot be read or holds nothing. */
export function readApiToken(token: ApiArgs['token'], env: NodeJS.ProcessEnv = process.env, read: (path: string) => string = (path) => readFileSync(path, 'utf8')): string | null {
  if (token === null) return null;
  if (token.from === 'env') {
    const trimmed = (env['WEIR_API_TOKEN'] ?? '').trim();
    if (trimmed === '') throw new UsageError('WEIR_API_TOKEN is blank');
    return trimmed;
  }
  let text: string;
  try {
    text = read(token.path);
  } catch (err) {
    throw new UsageError(`cannot read the API token file ${token.path}: ${err instanceof Error ? err.message : String(err)}`);
  }
  const trimmed = text.trim();
  if (trimmed === '') throw new UsageError(`the API token file ${token.path} is empty`);
  return trimmed;
}

export interface ApiIo {
  out: (line: string) => void;
  err: (line: string) => void;
  env?: NodeJS.ProcessEnv;
  /** Ends the API (besides SIGINT/SIGTERM); for tests. */
  signal?: AbortSignal;
}

/** Runs `weir api`; resolves with the exit code (0 after a signal, 1 when it cannot start or NATS closes, 2 on bad arguments). */
export async function apiCommand(args: readonly string[], io: ApiIo): Promise<number> {
  const env = io.env ?? process.env;
  const settings = commandArgs('weir api', args, io, API_USAGE, () => {
    const parsed = parseApiArgs(args, env);
    return { parsed, token: readApiToken(parsed.token, env) };
  });
  if (typeof settings === 'number') return settings;
  const { parsed, token } = settings;
  const log = pino({ name: 'weir-api', level: env['WEIR_LOG_LEVEL'] ?? 'info' });
  // Loaded here, so the other commands do not pay for Fastify at startup.
  const { startApi } = await import('../api/index.js');
  let nc: NatsConnection;
  try {
    nc = await connect({ ...natsOptions(parsed.url, env), name: 'weir-api' });
  } catch (err) {
    log.error({ err, url: parsed.url }, 'cannot connect to NATS');
    return 1;
  }
  let server: Awaited<ReturnType<typeof startApi>>;
  try {
    server = await startApi({ nc, logger: log, host: parsed.host, port: parsed.port, token, replicas: parsed.replicas, ...(parsed.readCacheMs === undefined ? {} : { readCacheMs: parsed.readCacheMs }) });
  } catch (err) {
    io.err(`weir api: cannot start: ${err instanceof Error ? err.message : String(err)}`);
    await nc.close().catch(() => undefined);
    return 1;
  }
  const auth = token === null ? 'no token: answers anyone on this machine (loopback only)' : 'bearer token required';
  io.out(`weir api: listening on ${server.url}/api/v1 (${auth}); NATS ${parsed.url}; the web console at ${server.url}/`);

  return runDaemon({
    log,
    env,
    shutdownTimeoutMs: parsed.shutdownTimeoutMs,
    ended: nc.closed(),
    ...(io.signal === undefined ? {} : { signal: io.signal }),
    stop: async () => {
      log.info('closing the HTTP server, then the NATS connection');
      let clean = await server.close().then(
        () => true,
        (err: unknown) => {
          log.warn({ err }, 'could not close the HTTP server cleanly');
          return false;
        },
      );
      clean = (await drainWithin(nc, parsed.shutdownTimeoutMs)) && clean;
      return clean;
    },
  });
}
