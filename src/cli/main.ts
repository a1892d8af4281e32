import { existsSync, readFileSync } from 'node:fs';

const USAGE = `weir: a NATS-native control plane for streaming jobs

Usage: weir <command> [options]

Commands:
  version        print the version
  help           print this text

The controller, workers and job commands arrive with the controller (see README.md).`;

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
  return Promise.resolve(run(argv, out));
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
