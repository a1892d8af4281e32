import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { connect, credsAuthenticator, nkeyAuthenticator, type NodeConnectionOptions } from '@nats-io/transport-node';
import { pino } from 'pino';
import { applyNatsRequestFix } from './nats-request-fix.js';
import { startWorker } from '../worker/process.js';
import { apiCommand } from './api.js';
import { controllerCommand, positiveInteger } from './controller.js';
import { jobsCommand } from './jobs.js';
import { up } from './up.js';

// Every weir process is started through this module.
applyNatsRequestFix();

const USAGE = `weir: a NATS-native control plane for streaming jobs

Usage: weir <command> [options]

Commands:
  version        print the version
  help           print this text
  worker         run a worker until SIGTERM/SIGINT:
                   --slots N     task slots (required)
                   --id ID       worker id (default: <hostname>-<pid>-<random>)
                   --nats URL    NATS server (default: $NATS_URL or nats://127.0.0.1:4222)
                   --max-deltas N         deltas of a state table before a full snapshot (default 10)
                   --max-delta-bytes B    bytes of deltas of a state table before a full snapshot (default 8 MiB)
                 credentials from NATS_USER/NATS_PASSWORD, NATS_TOKEN, NATS_NKEY_SEED_FILE or NATS_CREDS;
                 TLS from NATS_TLS_CA, NATS_TLS_CERT and NATS_TLS_KEY

  controller     run the controller until SIGTERM/SIGINT (--nats URL, --heartbeat-timeout MS, --allowed-restarts N, …)
  api            run the HTTP API until SIGTERM/SIGINT:
                   --api-port N        port (default $WEIR_API_PORT or 8000)
                   --api-host H        interface (default $WEIR_API_HOST or 127.0.0.1; other than loopback needs a token)
                   --api-token-file F  bearer token from a file (or WEIR_API_TOKEN; never on the command line)
                   --nats URL          NATS server (default: $NATS_URL or nats://127.0.0.1:4222)
  up             run NATS (if needed), a controller, workers and the API locally until Ctrl-C:
                   --workers N   workers (default 2)   --slots N   slots per worker (default 4)
                   --api-port N, --api-host H, --api-token-file F   as for 'weir api'
  submit, jobs,  create, watch and manage jobs (pipelines and jobs are one to one):
  pipelines        see 'weir jobs help'`;

/** The same module runs from src/ (tsx) and from dist/src/ (the bin), so look upwards for package.json. */
function version(): string {
  for (let dir = new URL('.', import.meta.url); dir.pathname !== '/'; dir = new URL('..', dir)) {
    const candidate = new URL('package.json', dir);
    if (existsSync(candidate)) return (JSON.parse(readFileSync(candidate, 'utf8')) as { version: string }).version;
  }
  return 'unknown';
}

/** Runs one CLI invocation and returns the process exit code. */
export function main(argv: readonly string[], out: (line: string) => void = console.log): Promise<number> {
  if (argv[0] === 'worker') return worker(argv.slice(1), out);
  if (argv[0] === 'controller') return controllerCommand(argv.slice(1), out);
  if (argv[0] === 'api') return apiCommand(argv.slice(1), { out, err: console.error });
  if (argv[0] === 'submit' || argv[0] === 'jobs' || argv[0] === 'pipelines') return jobsCommand(argv, { out, err: console.error });
  if (argv[0] === 'up') return up(argv.slice(1), { out, err: console.error });
  return Promise.resolve(run(argv, out));
}

/**
 * NATS connection options from the URL and the NATS_* environment variables (docs/operations.md):
 * credentials and TLS never come from code or command-line arguments. Throws when more than one
 * authentication method is set, rather than letting one silently win.
 */
export function natsOptions(url: string, env: NodeJS.ProcessEnv = process.env): NodeConnectionOptions {
  // noAsyncTraces: nats.js otherwise captures a stack trace on every request and JetStream publish, which
  // cost the controller more CPU than its checkpoints (bench:controller); our logs say where a call began.
  const options: NodeConnectionOptions = { servers: url, maxReconnectAttempts: -1, waitOnFirstConnect: true, noAsyncTraces: true };
  const methods = (['NATS_USER', 'NATS_TOKEN', 'NATS_NKEY_SEED_FILE', 'NATS_CREDS'] as const).filter((name) => env[name]);
  if (methods.length > 1) throw new Error(`set one NATS authentication method, not ${methods.join(' and ')}`);
  if (env['NATS_CREDS']) options.authenticator = credsAuthenticator(readFileSync(env['NATS_CREDS']));
  if (env['NATS_NKEY_SEED_FILE']) options.authenticator = nkeyAuthenticator(new TextEncoder().encode(readFileSync(env['NATS_NKEY_SEED_FILE'], 'utf8').trim()));
  if (env['NATS_USER']) {
    options.user = env['NATS_USER'];
    options.pass = env['NATS_PASSWORD'] ?? '';
  }
  if (env['NATS_TOKEN']) options.token = env['NATS_TOKEN'];
  const tls = { caFile: env['NATS_TLS_CA'], certFile: env['NATS_TLS_CERT'], keyFile: env['NATS_TLS_KEY'] };
  if (tls.certFile !== undefined && tls.keyFile === undefined) throw new Error('NATS_TLS_CERT needs NATS_TLS_KEY');
  if (Object.values(tls).some((v) => v !== undefined && v !== '')) {
    options.tls = Object.fromEntries(Object.entries(tls).filter(([, v]) => v !== undefined && v !== ''));
  }
  return options;
}

/** The commands `main` runs; deployment files are checked against this list. */
export const COMMANDS = ['version', 'help', 'worker', 'controller', 'api', 'up', 'submit', 'jobs', 'pipelines'] as const;

export interface WorkerArgs {
  slots: number;
  id: string | undefined;
  url: string;
  /** When a state table's delta chain is compacted into a full snapshot. */
  incrementalState: { maxDeltas?: number; maxDeltaBytes?: number };
}

function countArg(value: string | undefined, flag: string): number | undefined {
  return value === undefined ? undefined : positiveInteger(value, flag, 0);
}

/** `weir worker` arguments; throws with the reason on bad input. */
export function parseWorkerArgs(args: readonly string[], env: NodeJS.ProcessEnv = process.env): WorkerArgs {
  const { values } = parseArgs({
    args: [...args],
    options: { slots: { type: 'string' }, id: { type: 'string' }, nats: { type: 'string' }, 'max-deltas': { type: 'string' }, 'max-delta-bytes': { type: 'string' } },
    strict: true,
    allowPositionals: false,
  });
  const slots = Number(values.slots);
  if (values.slots === undefined || !Number.isSafeInteger(slots) || slots < 1) throw new Error('--slots N (a positive integer) is required');
  const maxDeltas = countArg(values['max-deltas'], '--max-deltas');
  const maxDeltaBytes = countArg(values['max-delta-bytes'], '--max-delta-bytes');
  return {
    slots,
    id: values.id,
    url: values.nats ?? env['NATS_URL'] ?? 'nats://127.0.0.1:4222',
    incrementalState: { ...(maxDeltas === undefined ? {} : { maxDeltas }), ...(maxDeltaBytes === undefined ? {} : { maxDeltaBytes }) },
  };
}

async function worker(args: readonly string[], out: (line: string) => void): Promise<number> {
  let slots: number;
  let id: string | undefined;
  let url: string;
  let incrementalState: WorkerArgs['incrementalState'];
  try {
    ({ slots, id, url, incrementalState } = parseWorkerArgs(args));
  } catch (err) {
    out(`weir worker: ${err instanceof Error ? err.message : String(err)}\n\n${USAGE}`);
    return 2;
  }
  const log = pino({ name: 'weir-worker', level: process.env['WEIR_LOG_LEVEL'] ?? 'info' });
  let nc;
  try {
    nc = await connect({ ...natsOptions(url), name: `weir-worker${id === undefined ? '' : `-${id}`}` });
  } catch (err) {
    log.error({ err, url }, 'cannot connect to NATS');
    return 1;
  }
  let signalled = false;
  let handle;
  try {
    handle = startWorker(nc, { slots, log, incrementalState, ...(id === undefined ? {} : { workerId: id }) });
  } catch (err) {
    log.error({ err }, 'cannot start the worker');
    await nc.close();
    return 1;
  }
  const w = handle;
  const onSignal = (signal: NodeJS.Signals) => {
    signalled = true;
    log.info({ signal }, 'signal received: draining');
    void w.stop('immediate');
  };
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
  await w.closed;
  process.off('SIGTERM', onSignal);
  process.off('SIGINT', onSignal);
  return signalled ? 0 : 1;
}

function run(argv: readonly string[], out: (line: string) => void): number {
  const [command = 'help'] = argv;
  switch (command) {
    case 'version':
    case '--version':
      out(version());
      return 0;
    case 'help':
    case '--help':
    case '-h':
      out(USAGE);
      return 0;
    default:
      out(`weir: unknown command "${command}"\n\n${USAGE}`);
      return 2;
  }
}

/** Run directly (`node --import tsx src/cli/main.ts …`); `bin/weir.js` calls `main` itself. */
const entry = process.argv[1];
if (entry !== undefined && existsSync(entry) && import.meta.url === pathToFileURL(realpathSync(entry)).href) {
  process.exitCode = await main(process.argv.slice(2));
}
