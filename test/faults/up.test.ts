/**
 * `weir up` as a supervisor sees it: killed outright, its children (controller, workers, API, and the
 * nats-server it started) end by themselves; stopped with Ctrl-C, it leaves every job as it was, so the
 * next `weir up` resumes it with no failure and no restart counted.
 */
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { NatsConnection } from '@nats-io/transport-node';
import { afterEach, describe, expect, it } from 'vitest';
import { jobViewSchema, listControllersReplySchema, subjects } from '../../src/protocol/index.js';
import { openStore } from '../../src/store/index.js';
import { freePort } from '../../src/shared/free-port.js';
import { requestJson } from '../support/cluster.js';
import { connectTo, eventually } from '../support/nats.js';
import { alive, WeirProcess } from '../support/processes.js';

const SHUTDOWN_TIMEOUT_MS = 4_000;
const counter = JSON.parse(readFileSync(new URL('../../examples/counter.json', import.meta.url), 'utf8')) as Record<string, unknown>;

/** The command name of a process, read from /proc. */
function commandOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '';
  }
}

/** The pids of a process's children, read from /proc. */
function childPids(pid: number): number[] {
  return readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .flatMap((entry) => {
      try {
        const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
        const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
        return ppid === pid ? [Number(entry)] : [];
      } catch {
        return [];
      }
    });
}


interface Up {
  process: WeirProcess;
  url: string;
  /** Every process `weir up` started, the nats-server under its guard included. */
  pids(): number[];
}

const started: WeirProcess[] = [];
const everyPid = new Set<number>();

afterEach(async () => {
  for (const p of started.splice(0)) await p.kill('SIGKILL');
  for (const pid of everyPid) if (alive(pid)) process.kill(pid, 'SIGKILL');
  everyPid.clear();
});

async function startUp(dataDir: string, port: number, extra: string[] = []): Promise<Up> {
  const p = new WeirProcess('up', ['up', '--workers', '2', '--slots', '4', '--api-port', '0', '--data-dir', dataDir, ...extra], {
    NATS_URL: `nats://127.0.0.1:${port}`,
    WEIR_SHUTDOWN_TIMEOUT_MS: String(SHUTDOWN_TIMEOUT_MS),
    WEIR_API_TOKEN: '',
  });
  started.push(p);
  await eventually(() => expect(p.output()).toContain('weir up: everything runs'), { timeoutMs: 40_000, intervalMs: 100 });
  const pids = () => {
    const direct = [...p.output().matchAll(/weir up: started \S+ \(pid (\d+)\)/g)].map((m) => Number(m[1]));
    return [...direct, ...direct.flatMap(childPids)];
  };
  for (const pid of pids()) everyPid.add(pid);
  return { process: p, url: `nats://127.0.0.1:${port}`, pids };
}

describe('weir up, killed or stopped', () => {
  it.each([
    ['SIGKILL', async (up: Up) => void (await up.process.kill('SIGKILL'))],
    [
      'SIGTERM, then SIGKILL 100 ms later',
      async (up: Up) => {
        up.process.kill('SIGTERM').catch(() => undefined);
        await sleep(100);
        await up.process.kill('SIGKILL');
      },
    ],
  ])('killed with %s: its controller, workers, API and nats-server end by themselves', async (_how, kill) => {
    const up = await startUp(mkdtempSync(join(tmpdir(), 'weir-up-')), await freePort());
    const pids = up.pids();
    // The controller, two workers, the API, the guard and its nats-server (and any helper process tsx started).
    expect(pids.length).toBeGreaterThanOrEqual(6);
    expect(pids.map(commandOf)).toContain('nats-server');
    await kill(up);
    // Each stops within its share of the deadline; nats-server waits for the others first.
    await eventually(() => expect(pids.filter(alive)).toEqual([]), { timeoutMs: 2 * SHUTDOWN_TIMEOUT_MS + 5_000, intervalMs: 200 });
  }, 90_000);

  it('Ctrl-C leaves every job as it was: the next weir up resumes it with no failure and no restart', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'weir-up-'));
    const port = await freePort();
    const first = await startUp(dataDir, port);
    let nc: NatsConnection = await connectTo(first.url, 'up-test');
    const created = await requestJson(nc, subjects.apiJobsCreate(), counter, 5_000);
    const jobId = created['job_id'] as string;
    const view = async () => jobViewSchema.parse(await requestJson(nc, subjects.apiJobGet(jobId), { v: 1 }, 5_000));
    await eventually(async () => expect((await view()).state).toBe('Running'), { timeoutMs: 20_000, intervalMs: 100 });
    await nc.close();

    const pids = first.pids();
    const { code } = await first.process.kill('SIGINT');
    expect(code, first.process.output().slice(-3_000)).toBe(0);
    expect(first.process.output()).toContain('stopping the API, then the controller, then the workers, then nats-server');
    for (const pid of pids) expect(alive(pid)).toBe(false);

    const second = await startUp(dataDir, port);
    nc = await connectTo(second.url, 'up-test');
    try {
      const resumed = await eventually(
        async () => {
          const v = await view();
          expect(v.state).toBe('Running');
          expect(v.generation).toBeGreaterThan(1);
          return v;
        },
        { timeoutMs: 30_000, intervalMs: 200 },
      );
      expect(resumed.restarts).toBe(0);
      expect(resumed.failure).toBeNull();
      const store = await openStore(nc);
      expect((await store.log.page(jobId, { kind: 'error', limit: 10 })).data).toEqual([]);
      const transitions = (await store.log.page(jobId, { kind: 'transition', limit: 100 })).data.map((r) => (r.kind === 'transition' ? r.to : ''));
      expect(transitions).not.toContain('Recovering');
    } finally {
      await nc.close();
    }
  }, 120_000);
  it('--controllers 2 runs two controllers that share the jobs, and Ctrl-C stops both', async () => {
    const up = await startUp(mkdtempSync(join(tmpdir(), 'weir-up-')), await freePort(), ['--controllers', '2']);
    expect(up.process.output()).toMatch(/controller-1\s+pid \d+/);
    expect(up.process.output()).toMatch(/controller-2\s+pid \d+/);
    const nc = await connectTo(up.url, 'up-test');
    try {
      await eventually(
        async () => {
          const fleet = listControllersReplySchema.parse(await requestJson(nc, subjects.apiControllersList(), { v: 1 }, 5_000));
          expect(fleet.data.map((c) => [c.controller_id, c.shards])).toEqual([['weir-up-1', 64], ['weir-up-2', 64]]);
        },
        { timeoutMs: 30_000, intervalMs: 200 },
      );
      const created = await requestJson(nc, subjects.apiJobsCreate(), counter, 5_000);
      const jobId = created['job_id'] as string;
      await eventually(async () => expect(jobViewSchema.parse(await requestJson(nc, subjects.apiJobGet(jobId), { v: 1 }, 5_000)).state).toBe('Running'), { timeoutMs: 20_000, intervalMs: 100 });
    } finally {
      await nc.close();
    }
    const pids = up.pids();
    const { code } = await up.process.kill('SIGINT');
    expect(code, up.process.output().slice(-3_000)).toBe(0);
    for (const pid of pids) expect(alive(pid)).toBe(false);
  }, 120_000);
});
