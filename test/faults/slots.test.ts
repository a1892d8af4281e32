/**
 * Slots on real processes: the sequence that wedged the scheduler (restart, restart again, rescale, job
 * after job), a job waiting for slots that says why, and a controller restart under running tasks.
 */
import { readFileSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { setTimeout as sleep } from 'node:timers/promises';
import { Deployment } from '../support/deployment.js';
import { eventually } from '../support/nats.js';

const counter = JSON.parse(readFileSync(new URL('../../examples/counter.json', import.meta.url), 'utf8')) as Record<string, unknown>;

describe('slots on real processes', () => {
  let d: Deployment;

  beforeEach(async () => {
    d = await Deployment.start();
  });

  afterEach(async () => {
    await d.stop();
  });

  it('restart, restart 60 ms later, rescale 3 s later, job after job: every job runs, and no slot leaks', async () => {
    await d.controller();
    await d.worker('w1', 4);
    await d.worker('w2', 4);
    for (let round = 1; round <= 3; round++) {
      const jobId = await d.create(counter);
      await d.reach(jobId, 'Running', 20_000);
      await d.configure(jobId, { restart: true });
      await sleep(60);
      await d.configure(jobId, { restart: true });
      await sleep(3_000);
      await d.configure(jobId, { parallelism: 2 });
      const view = await d.reach(jobId, 'Running', 30_000, (v) => v.generation === 4);
      expect(view.waiting).toBeNull();
    }
    // Three jobs of two slots each: two of the eight slots are free, and the booked slots are what runs.
    const workers = await d.slotsSettled();
    expect(workers.reduce((sum, w) => sum + w.free_slots, 0)).toBe(2);
  }, 90_000);

  it('a job that waits for slots says why and until when, and runs once slots are free', async () => {
    await d.controller();
    await d.worker('w1', 2);
    const first = await d.create(counter);
    await d.reach(first, 'Running');
    const second = await d.create(counter);
    const waiting = await eventually(
      async () => {
        const view = await d.view(second);
        expect(view.state).toBe('Scheduling');
        expect(view.waiting?.reason).toBe('waiting for slots: need 2 slots, 0 free on 1 worker');
        return view.waiting!;
      },
      { timeoutMs: 10_000, intervalMs: 100 },
    );
    // The worker startup deadline (10 minutes by default), from when Scheduling began.
    expect(waiting.until).toBeGreaterThan(Date.now() * 1000 + 9 * 60_000_000);
    expect(waiting.until).toBeLessThanOrEqual(Date.now() * 1000 + 10 * 60_000_000);
    const controller = [...d.processes].find((p) => p.name.startsWith('controller'))!;
    await controller.waitForLog('job waits', { jobId: second });

    await d.configure(first, { stop: 'immediate' });
    await d.reach(first, 'Stopped');
    const running = await d.reach(second, 'Running', 10_000);
    expect(running.waiting).toBeNull();
    await d.slotsSettled();
  }, 60_000);
});
