/**
 * The `weir` command: dispatches to the commands. `runAsProcess` is what the `weir` executable runs.
 */
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { apiCommand } from './api.js';
import { controllerCommand } from './controller.js';
import { guardCommand } from './guard.js';
import { jobsCommand } from './jobs.js';
import { applyNatsRequestFix } from '../jetstream/request-fix.js';
import { up } from './up.js';
import { workerCommand } from './worker.js';

const USAGE = `weir: a NATS-native control plane for streaming jobs

Usage: weir <command> [options]        weir <command> --help says more

Commands:
  up             run NATS (if needed), a controller, workers and the API locally until Ctrl-C
  controller     run the controller until SIGTERM/SIGINT
  worker         run a worker until SIGTERM/SIGINT (--slots N)
  api            run the HTTP API until SIGTERM/SIGINT
  submit FILE    create a job from a pipeline file
  jobs, pipelines  watch and manage jobs (pipelines and jobs are one to one): weir jobs help
  workers        the workers the controller knows, their slots and what runs on them
  controllers    the controllers sharing the jobs: live or not, shards, jobs, oldest lease age
  guard -- CMD   run CMD and end it when the process that started the guard is gone (weir up's nats-server)
  version        print the version
  help           print this text`;

/** The same module runs from src/ (tsx) and from dist/src/ (the bin), so look upwards for package.json. */
function version(): string {
  for (let dir = new URL('.', import.meta.url); dir.pathname !== '/'; dir = new URL('..', dir)) {
    const candidate = new URL('package.json', dir);
    if (existsSync(candidate)) return (JSON.parse(readFileSync(candidate, 'utf8')) as { version: string }).version;
  }
  return 'unknown';
}

/** The commands `main` runs; deployment files are checked against this list. */
export const COMMANDS = ['version', 'help', 'worker', 'controller', 'api', 'up', 'guard', 'submit', 'jobs', 'pipelines', 'workers', 'controllers'] as const;

/** Runs one CLI invocation and returns the process exit code. */
export function main(argv: readonly string[], out: (line: string) => void = console.log): Promise<number> {
  applyNatsRequestFix();
  const [command = 'help', ...args] = argv;
  switch (command) {
    case 'worker':
      return workerCommand(args, out);
    case 'controller':
      return controllerCommand(args, out);
    case 'api':
      return apiCommand(args, { out, err: console.error });
    case 'submit':
    case 'jobs':
    case 'pipelines':
    case 'workers':
    case 'controllers':
      return jobsCommand(argv, { out, err: console.error, tty: out === console.log && process.stdout.isTTY });
    case 'up':
      return up(args, { out, err: console.error, tty: out === console.log && process.stdout.isTTY });
    case 'guard':
      return guardCommand(args, console.error);
    case 'version':
    case '--version':
      out(version());
      return Promise.resolve(0);
    case 'help':
    case '--help':
    case '-h':
      out(USAGE);
      return Promise.resolve(0);
    default:
      out(`weir: unknown command "${command}" (see weir help)`);
      return Promise.resolve(2);
  }
}

/** How long a stopped command may leave something behind that keeps the process alive. */
const LINGER_MS = 2_000;

/**
 * `weir …` as a process: runs the command and exits with its code. Once a command has returned, nothing
 * it left behind (a timer, a socket) may keep the process alive past a short grace.
 */
export async function runAsProcess(argv: readonly string[]): Promise<void> {
  const code = await main(argv);
  process.exitCode = code;
  setTimeout(() => process.exit(code), LINGER_MS).unref();
}

/** Run directly (`node --import tsx src/cli/main.ts …`); `bin/weir.js` calls `runAsProcess` itself. */
const entry = process.argv[1];
if (entry !== undefined && existsSync(entry) && import.meta.url === pathToFileURL(realpathSync(entry)).href) {
  await runAsProcess(process.argv.slice(2));
}
