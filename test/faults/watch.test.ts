/**
 * `weir jobs watch` against a controller and a worker on real processes: it prints the state the job is
 * in at once, and it ends by itself: after `--count` lines, when the job is Finished, when it is deleted.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { jobsCommand } from '../../src/cli/jobs.js';
import { Deployment } from '../support/deployment.js';
import { eventually } from '../support/nats.js';
import { impulseCountPipeline } from '../support/pipelines.js';

/** A job that finishes by itself once its impulse source has sent its events. */
const bounded = (events: number) => impulseCountPipeline({ name: 'bounded', rate: 100, events });

describe('weir jobs watch', () => {
  let d: Deployment;

  beforeEach(async () => {
    d = await Deployment.start();
    await d.controller();
    await d.worker('w1', 2);
  });

  afterEach(async () => {
    await d.stop();
  });

  function watch(jobId: string, ...flags: string[]) {
    const out: string[] = [];
    const err: string[] = [];
    const done = jobsCommand(['jobs', 'watch', jobId, '--nats', d.server.url, ...flags], { out: (l) => out.push(l), err: (l) => err.push(l) });
    return { done, out, err };
  }

  it('prints the current state first, and with --count 3 ends after Finishing -> Finished', async () => {
    const jobId = await d.create(bounded(300));
    await d.reach(jobId, 'Running');
    const w = watch(jobId, '--count', '3');
    // Without waiting for a transition: the state it is in now.
    await eventually(() => expect(w.out[0]).toMatch(new RegExp(`${jobId} {2}Running \\(now\\) {2}generation=1 restarts=0$`)), { timeoutMs: 5_000 });
    expect(await w.done).toBe(0);
    expect(w.out.slice(1).map((l) => l.replace(/^\S+ {2}\S+ {2}/, ''))).toEqual([
      'Running -> Finishing  generation=1 restarts=0',
      'Finishing -> Finished  generation=1 restarts=0',
    ]);
  }, 60_000);

  it('ends by itself once the job is Finished, and at once for a job that already is', async () => {
    const jobId = await d.create(bounded(200));
    await d.reach(jobId, 'Running');
    const w = watch(jobId);
    expect(await w.done).toBe(0);
    expect(w.out.at(-1)).toMatch(/Finishing -> Finished/);
    const again = watch(jobId);
    expect(await again.done).toBe(0);
    expect(again.out).toHaveLength(1);
    expect(again.out[0]).toMatch(/Finished \(now\)/);
  }, 60_000);

  it('ends when the job is deleted', async () => {
    const jobId = await d.create(bounded(1_000_000));
    await d.reach(jobId, 'Running');
    await d.configure(jobId, { stop: 'immediate' });
    await d.reach(jobId, 'Stopped');
    const w = watch(jobId);
    await eventually(() => expect(w.out).toHaveLength(1));
    expect((await d.request(`weir.api.jobs.${jobId}.delete`, { v: 1 })).error).toBeUndefined();
    expect(await w.done).toBe(0);
    expect(w.out.at(-1)).toMatch(new RegExp(`${jobId} {2}deleted \\(was Stopped\\)$`));
  }, 60_000);
});
