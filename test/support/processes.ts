import { spawn, type ChildProcessByStdio } from 'node:child_process';
import type { Readable } from 'node:stream';
import { eventually } from './nats.js';

/**
 * A `weir` command in its own process (run from the sources with tsx), for fault tests that kill real
 * processes. Its stdout and stderr are kept; JSON log lines can be searched.
 */
export class WeirProcess {
  private out = '';
  private readonly child: ChildProcessByStdio<null, Readable, Readable>;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(
    readonly name: string,
    args: readonly string[],
    env: Record<string, string> = {},
  ) {
    this.child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], {
      cwd: process.cwd(),
      env: { ...process.env, WEIR_LOG_LEVEL: 'info', WEIR_INSPECT: '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child.stdout.on('data', (d: Buffer) => (this.out += d.toString()));
    this.child.stderr.on('data', (d: Buffer) => (this.out += d.toString()));
    this.exited = new Promise((resolve) => this.child.once('exit', (code, signal) => resolve({ code, signal })));
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  output(): string {
    return this.out;
  }

  /** The JSON log lines written so far. */
  logs(): Record<string, unknown>[] {
    return this.out
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .flatMap((l) => {
        try {
          return [JSON.parse(l) as Record<string, unknown>];
        } catch {
          return [];
        }
      });
  }

  /** Resolves once a log line has this `msg` (and these fields). */
  async waitForLog(msg: string, fields: Record<string, unknown> = {}, timeoutMs = 20_000): Promise<Record<string, unknown>> {
    return eventually(
      () => {
        const line = this.logs().find((l) => l['msg'] === msg && Object.entries(fields).every(([k, v]) => l[k] === v));
        if (line === undefined) throw new Error(`${this.name}: no log line "${msg}" ${JSON.stringify(fields)} yet; output:\n${this.out.slice(-2_000)}`);
        return line;
      },
      { timeoutMs, intervalMs: 50 },
    );
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.running) this.child.kill(signal);
    return this.exited;
  }
}

/** Whether a process with this pid exists (signal 0 probes without signalling). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Kills whatever still runs (SIGKILL) and waits for it. */
export async function killAll(processes: Iterable<WeirProcess>): Promise<void> {
  await Promise.all([...processes].map((p) => p.kill('SIGKILL')));
}
