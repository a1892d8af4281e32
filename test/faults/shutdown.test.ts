/**
 * A process told to stop exits within its shutdown deadline, whatever NATS does: `weir controller`,
 * `weir worker` and `weir api` stopped with SIGTERM while their nats-server is gone or frozen (SIGSTOP).
 * They exit non-zero then, since they could not stop cleanly; with NATS there, they exit 0.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Deployment } from '../support/deployment.js';
import type { WeirProcess } from '../support/processes.js';

const SHUTDOWN_TIMEOUT_MS = 2_000;
/** What a loaded 2-core machine may add to a process's exit after its deadline. */
const SLACK_MS = 2_000;

async function stopAndTime(p: WeirProcess): Promise<{ code: number | null; ms: number }> {
  const started = Date.now();
  const { code } = await p.kill('SIGTERM');
  return { code, ms: Date.now() - started };
}

/** Each process exited with `code`, within its deadline. */
function expectExits(processes: WeirProcess[], results: Array<{ code: number | null; ms: number }>, code: number): void {
  for (const [i, result] of results.entries()) {
    expect(result.code, `${processes[i]!.name}\n${processes[i]!.output().slice(-2_000)}`).toBe(code);
    expect(result.ms, processes[i]!.name).toBeLessThan(SHUTDOWN_TIMEOUT_MS + SLACK_MS);
  }
}

describe('stopping within the shutdown deadline', () => {
  let d: Deployment;

  beforeEach(async () => {
    d = await Deployment.start({ env: { WEIR_SHUTDOWN_TIMEOUT_MS: String(SHUTDOWN_TIMEOUT_MS) } });
  });

  afterEach(async () => {
    await d.stop();
  });

  async function parts(): Promise<WeirProcess[]> {
    const controller = await d.controller();
    const worker = await d.worker('w1', 2);
    const api = d.spawn('api', ['api', '--api-port', '0']);
    await expect.poll(() => api.output(), { timeout: 20_000 }).toContain('weir api: listening');
    return [controller, worker, api];
  }

  it('with NATS gone: each exits within its deadline, and with 1', async () => {
    const processes = await parts();
    await d.server.stop();
    expectExits(processes, await Promise.all(processes.map(stopAndTime)), 1);
  }, 60_000);

  it('with NATS frozen (SIGSTOP): the same', async () => {
    const processes = await parts();
    process.kill(d.server.pid, 'SIGSTOP');
    try {
      expectExits(processes, await Promise.all(processes.map(stopAndTime)), 1);
    } finally {
      process.kill(d.server.pid, 'SIGCONT');
    }
  }, 60_000);

  it('with NATS there: each stops cleanly, with 0', async () => {
    const processes = await parts();
    expectExits(processes, await Promise.all(processes.map(stopAndTime)), 0);
  }, 60_000);
});
