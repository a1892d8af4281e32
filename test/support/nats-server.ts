import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, unlink, writeFile } from 'node:fs/promises';
import { connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findNatsServerBinary } from '../../src/cli/up.js';
import { setTimeout as sleep } from 'node:timers/promises';

const NOT_FOUND =
  'nats-server not found: install it (Debian/Ubuntu: apt-get install nats-server; macOS: brew install nats-server) or set WEIR_NATS_SERVER to its path';
const DEADLINE_MS = 5_000;
const POLL_MS = 25;
const TAIL_LINES = 64;

export interface NatsServerOptions {
  /** Default true: JetStream on, its store in the server's own directory. */
  jetstream?: boolean;
  /** The text of a configuration file, written to the server's own directory and passed with `-c`. */
  config?: string;
  args?: string[];
}

export interface NatsServerHandle extends AsyncDisposable {
  readonly url: string;
  readonly port: number;
  readonly storeDir: string;
  readonly pid: number;
  stop(): Promise<void>;
  kill(): Promise<void>;
  restart(): Promise<void>;
  dispose(): Promise<void>;
}

// Kept on globalThis so a re-evaluated module (vi.resetModules) does not stack up process hooks.
const registryKey = Symbol.for('weir.test.natsServers');
const registry = globalThis as { [registryKey]?: Set<ChildProcess> };
const running = (registry[registryKey] ??= installCleanupHooks(new Set()));

// Vitest ends fork workers with SIGTERM, which skips 'exit' hooks, so signals are covered too;
// re-raising keeps the default "terminate" behaviour when nobody else handles the signal.
function installCleanupHooks(children: Set<ChildProcess>): Set<ChildProcess> {
  const killAll = () => children.forEach((child) => child.kill('SIGKILL'));
  process.on('exit', killAll);
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
    process.once(signal, () => {
      killAll();
      if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
    });
  }
  return children;
}

/** The same lookup as `weir up` (WEIR_NATS_SERVER, PATH, the usual install locations), failing in one line. */
export function findNatsServer(): string {
  const found = findNatsServerBinary();
  if (found === undefined) throw new Error(NOT_FOUND);
  return found;
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = tcpConnect({ host: '127.0.0.1', port }, () => {
      socket.destroy();
      resolve(true);
    });
    socket.on('error', () => resolve(false));
  });
}

// 0 means "not complete yet". The file is removed once read so a recycled pid can never match it.
async function readPortsFile(path: string): Promise<number> {
  try {
    const { nats } = JSON.parse(await readFile(path, 'utf8')) as { nats?: string[] };
    const port = Number(new URL(nats?.[0] ?? '').port);
    await unlink(path).catch(() => undefined);
    return port;
  } catch {
    return 0;
  }
}

class BindConflict extends Error {}

class NatsServer implements NatsServerHandle {
  port = 0;
  readonly storeDir: string;
  private readonly portsDir: string;
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  private tail: string[] = [];
  private partialLine = '';

  constructor(
    private readonly binary: string,
    private readonly dir: string,
    private readonly jetstream: boolean,
    private readonly extraArgs: string[],
  ) {
    this.storeDir = join(dir, 'store');
    this.portsDir = join(dir, 'ports');
  }

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  get pid(): number {
    return this.child?.pid ?? 0;
  }

  async start(): Promise<void> {
    // Only the first start picks a port; later ones must keep the URL that clients hold valid.
    const deadline = Date.now() + DEADLINE_MS;
    for (;;) {
      try {
        return await this.launch(this.port === 0 ? -1 : this.port);
      } catch (err) {
        if (!(err instanceof BindConflict)) throw err;
        if (Date.now() > deadline) throw new Error(`port ${this.port} busy for ${DEADLINE_MS} ms: ${err.message}`);
        await sleep(100);
      }
    }
  }

  private async launch(port: number): Promise<void> {
    const jsArgs = this.jetstream ? ['-js', '-sd', this.storeDir] : [];
    const portArgs = ['-p', String(port), '--ports_file_dir', this.portsDir];
    const args = ['-a', '127.0.0.1', ...portArgs, ...jsArgs, ...this.extraArgs];
    this.tail = [];
    this.partialLine = '';
    const child = spawn(this.binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    running.add(child);
    this.exited = new Promise((resolve) => {
      const done = () => {
        running.delete(child);
        resolve();
      };
      // 'close' rather than 'exit': stderr is drained by then, so failures show the real cause.
      child.once('close', done);
      child.once('error', (err) => {
        this.record(`spawn error: ${err.message}\n`);
        done();
      });
    });
    child.stdout?.on('data', (chunk: Buffer) => this.record(chunk.toString()));
    child.stderr?.on('data', (chunk: Buffer) => this.record(chunk.toString()));

    // The ports file appears only once this very process listens, which also proves it owns the port.
    let deadline = Date.now() + DEADLINE_MS;
    for (;;) {
      if (!running.has(child)) {
        const message = this.failure(`nats-server exited before listening (-p ${port}, code ${child.exitCode})`);
        throw /address already in use/.test(message) ? new BindConflict(message) : new Error(message);
      }
      const name = (await readdir(this.portsDir)).find((file) => file.endsWith(`_${child.pid}.ports`));
      const listening = name === undefined ? 0 : await readPortsFile(join(this.portsDir, name));
      if (listening > 0) {
        this.port = listening;
        break;
      }
      if (Date.now() > deadline) throw new Error(this.failure(`no ports file within ${DEADLINE_MS} ms`));
      await sleep(POLL_MS);
    }
    deadline = Date.now() + DEADLINE_MS;
    while (!(await canConnect(this.port))) {
      if (Date.now() > deadline) throw new Error(this.failure(`${this.url} refused TCP for ${DEADLINE_MS} ms`));
      await sleep(POLL_MS);
    }
  }

  private record(text: string): void {
    const lines = (this.partialLine + text).split('\n');
    this.partialLine = lines.pop() ?? '';
    this.tail.push(...lines);
    this.tail.splice(0, Math.max(0, this.tail.length - TAIL_LINES));
  }

  private failure(what: string): string {
    const output = [...this.tail, this.partialLine].filter((line) => line !== '').join('\n');
    return `${what}\n--- nats-server output (tail) ---\n${output || '(no output)'}`;
  }

  private isRunning(): boolean {
    return this.child !== undefined && running.has(this.child);
  }

  private async signalAndWait(signal: NodeJS.Signals): Promise<void> {
    this.child?.kill(signal);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      const what = `nats-server pid ${this.pid} did not exit within ${DEADLINE_MS} ms of ${signal}`;
      timer = setTimeout(() => reject(new Error(this.failure(what))), DEADLINE_MS);
    });
    await Promise.race([this.exited, timeout]).finally(() => clearTimeout(timer));
  }

  async stop(): Promise<void> {
    if (this.isRunning()) await this.signalAndWait('SIGTERM').catch(() => this.signalAndWait('SIGKILL'));
  }

  async kill(): Promise<void> {
    if (this.isRunning()) await this.signalAndWait('SIGKILL');
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }

  async dispose(): Promise<void> {
    await this.kill();
    await rm(this.dir, { recursive: true, force: true });
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.dispose();
  }
}

export async function startNatsServer(opts: NatsServerOptions = {}): Promise<NatsServerHandle> {
  const binary = findNatsServer();
  const dir = await mkdtemp(join(tmpdir(), 'weir-nats-'));
  await mkdir(join(dir, 'ports'));
  const configArgs: string[] = [];
  if (opts.config !== undefined) {
    const file = join(dir, 'nats.conf');
    await writeFile(file, opts.config);
    configArgs.push('-c', file);
  }
  const server = new NatsServer(binary, dir, opts.jetstream ?? true, [...configArgs, ...(opts.args ?? [])]);
  try {
    await server.start();
  } catch (err) {
    await server.dispose();
    throw err;
  }
  return server;
}
