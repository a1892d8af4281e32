import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { stripVTControlCharacters } from 'node:util';
import type { NatsConnection } from '@nats-io/transport-node';
import { afterEach, describe, expect } from 'vitest';
import { encode, subjects } from '../../src/protocol/index.js';
import { freePort } from '../../src/shared/free-port.js';
import { requestJson } from '../support/cluster.js';
import type { NatsServerHandle } from '../support/nats-server.js';
import { connectTo, eventually } from '../support/nats.js';
import { testWithNatsServer } from '../support/nats-fixtures.js';
import { alive } from '../support/processes.js';

const MAIN = new URL('../../src/cli/main.ts', import.meta.url).pathname;
const ROOT = new URL('../..', import.meta.url).pathname;

/** `weir controller` arrives separately; until main.ts dispatches it, `weir up` cannot come up. */
function hasControllerCommand(): boolean {
  return /['"]controller['"]/.test(readFileSync(MAIN, 'utf8').replace(/^\s*(up|\/\/|\*).*controller.*$/gm, ''));
}

interface Up {
  proc: ChildProcess;
  output: string[];
  exit: Promise<number | null>;
  pids: () => number[];
}

const started: Up[] = [];

function startUp(url: string, ...args: string[]): Up {
  return startUpWith({ NATS_URL: url, WEIR_LOG_LEVEL: 'warn' }, ...args);
}

function startUpWith(env: Record<string, string>, ...args: string[]): Up {
  const proc = spawn(process.execPath, ['--import', 'tsx', MAIN, 'up', ...args], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  proc.stdout.setEncoding('utf8').on('data', (chunk: string) => output.push(chunk));
  proc.stderr.setEncoding('utf8').on('data', (chunk: string) => output.push(chunk));
  const exit = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  const pids = () => [...output.join('').matchAll(/weir up: started \S+ \(pid (\d+)\)/g)].map((m) => Number(m[1]));
  const up = { proc, output, exit, pids };
  started.push(up);
  return up;
}


const it = testWithNatsServer();
let server: NatsServerHandle;

it.beforeAll(({ natsServer }) => {
  server = natsServer;
});

afterEach(() => {
  // Whatever a failed test left behind.
  for (const up of started.splice(0)) {
    for (const pid of up.pids()) if (alive(pid)) process.kill(pid, 'SIGKILL');
    if (up.proc.exitCode === null) up.proc.kill('SIGKILL');
  }
});

describe('weir up', () => {
  it('runs a controller, a worker and the API on $NATS_URL; SIGTERM stops them all and exits 0', async ({ skip }) => {
    if (!hasControllerCommand()) skip('src/cli/main.ts has no `controller` command yet, so `weir up` cannot start a controller');
    const up = startUp(server.url, '--workers', '1', '--slots', '2', '--api-port', '0');
    await eventually(() => expect(up.output.join('')).toContain('weir up: everything runs'), { timeoutMs: 30_000, intervalMs: 100 });
    const text = up.output.join('');
    expect(text).toContain(`${server.url} (already running)`);
    expect(text).toContain('weir submit examples/counter.json');
    const api = /^API: (http:\/\/127\.0\.0\.1:\d+\/api\/v1)$/m.exec(text)?.[1];
    expect(api, text).toBeDefined();
    const ping = await fetch(`${api}/ping`);
    expect(ping.status).toBe(200);
    expect(await ping.json()).toEqual({ pong: true });
    // The API reaches the controller that `up` started.
    const pipelines = await fetch(`${api}/pipelines`);
    expect(pipelines.status).toBe(200);
    await pipelines.body?.cancel();
    const pids = up.pids();
    expect(pids).toHaveLength(3);
    up.proc.kill('SIGTERM');
    expect(await up.exit, up.output.join('')).toBe(0);
    expect(up.output.join('')).toContain('stopping the API, then the controller, then the workers');
    for (const pid of pids) expect(alive(pid)).toBe(false);
    await expect(fetch(`${api}/ping`)).rejects.toThrow();
  }, 60_000);

  it('starts nats-server on the port NATS_URL names; pretty, coloured logs; a job run and stopped, then Ctrl-C: no warning anywhere', async () => {
    const port = await freePort();
    const dataDir = mkdtempSync(join(tmpdir(), 'weir-up-'));
    const up = startUpWith(
      { NATS_URL: `nats://localhost:${port}`, WEIR_LOG_LEVEL: 'info', FORCE_COLOR: '1', WEIR_API_TOKEN: '', WEIR_SHUTDOWN_TIMEOUT_MS: '8000' },
      '--log-format',
      'pretty',
      '--api-port',
      '0',
      '--data-dir',
      dataDir,
    );
    await eventually(() => expect(up.output.join('')).toContain('weir up: everything runs'), { timeoutMs: 40_000, intervalMs: 100 });
    const text = () => up.output.join('');
    expect(text()).toContain(`NATS        nats://127.0.0.1:${port} (nats-server under weir guard`);
    const consoleUrl = /^Console: (http:\/\/127\.0\.0\.1:\d+\/)$/m.exec(text())?.[1];
    expect(consoleUrl, text()).toBeDefined();
    expect(text()).toContain(`API: ${consoleUrl}api/v1`);
    // Readable and coloured: the child's name, then pino-pretty's time, level and message.
    const plain = stripVTControlCharacters(text());
    expect(text()).toContain('\x1b[');
    expect(plain).toMatch(/^controller +\[\d\d:\d\d:\d\d\.\d{3}\] INFO: controller started /m);
    expect(plain).not.toMatch(/^\{"level"/m);

    const nc = await connectTo(`nats://127.0.0.1:${port}`, 'up-test');
    try {
      const counter = JSON.parse(readFileSync(new URL('../../examples/counter.json', import.meta.url), 'utf8')) as Record<string, unknown>;
      const created = await requestJson(nc, subjects.apiJobsCreate(), counter, 10_000);
      const jobId = created['job_id'] as string;
      const state = async () => (await requestJson(nc, subjects.apiJobGet(jobId), { v: 1 }, 10_000))['state'];
      await eventually(async () => expect(await state()).toBe('Running'), { timeoutMs: 30_000, intervalMs: 200 });
      // A stop with a final checkpoint: the tasks end by themselves before the controller's stop reaches them.
      expect((await requestJson(nc, subjects.apiJobConfig(jobId), { v: 1, stop: 'checkpoint' }, 10_000)).error).toBeUndefined();
      await eventually(async () => expect(await state()).toBe('Stopped'), { timeoutMs: 30_000, intervalMs: 200 });
      // A moment for what follows a stop (the workers' next heartbeats).
      await sleep(1_000);
    } finally {
      await nc.close();
    }
    up.proc.kill('SIGINT');
    expect(await up.exit, text().slice(-3_000)).toBe(0);
    const after = stripVTControlCharacters(text());
    expect(after).toContain('stopping the API, then the controller, then the workers, then nats-server');
    // Nor a warning of Node's own (a deprecation, say), which a child writes to stderr as plain text.
    const warnings = after.split('\n').filter((line) => /\] (WARN|ERROR|FATAL): /.test(line) || /\(node:\d+\)|Warning|DEP\d{3}/.test(line) || /^weir up: .*(did not|exited with|unexpectedly)/.test(line));
    expect(warnings).toEqual([]);
  }, 120_000);

  it('a child that dies shuts everything down with a non-zero exit', async () => {
    // A stand-in controller answers the readiness probe, so this holds with or without `weir controller`.
    const nc: NatsConnection = await connectTo(server.url, 'probe-answerer');
    const sub = nc.subscribe('weir.api.jobs.list');
    void (async () => {
      for await (const msg of sub) msg.respond(encode({ v: 1, data: [], has_more: false }));
    })();
    try {
      const up = startUp(server.url, '--workers', '1', '--slots', '1', '--api-port', '0');
      await eventually(() => expect(up.pids()).toHaveLength(3), { timeoutMs: 10_000 });
      const worker = Number(/weir up: started worker-1 \(pid (\d+)\)/.exec(up.output.join(''))?.[1]);
      // Without a `controller` command the controller dies by itself; otherwise kill the worker.
      if (hasControllerCommand()) {
        await eventually(() => expect(up.output.join('')).toContain('everything runs'), { timeoutMs: 30_000, intervalMs: 100 });
        process.kill(worker, 'SIGKILL');
      }
      expect(await up.exit).toBe(1);
      expect(up.output.join('')).toMatch(/weir up: (worker-1|controller) \(pid \d+\) exited unexpectedly/);
      for (const pid of up.pids()) expect(alive(pid)).toBe(false);
    } finally {
      await nc.close();
    }
  }, 60_000);
});
