/**
 * Requests reach the job's owner, whichever controller receives them (docs/protocol.md, "Several
 * controllers: who answers"): two in-process controllers on a real nats-server share the queue group, so
 * a client's requests land on both; the non-owner forwards them and relays the owner's reply. A request
 * forwarded to a controller that does not own the job is refused, never forwarded again; during a
 * takeover a request waits for the new owner or fails with `unavailable`, and no reply comes from a
 * controller that lost the job.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import { afterEach, describe, expect } from 'vitest';
import type { Controller } from '../../src/controller/controller.js';
import { JobOwnership } from '../../src/controller/job-ownership.js';
import { forwardPrefix, RequestRouter } from '../../src/controller/request-router.js';
import { jobViewSchema, RequestRejected, subjects, type JobView } from '../../src/protocol/index.js';
import type { WorkerHandle } from '../../src/worker/process.js';
import { log, requestJson, startTestController, startTestWorker, untilState, type Reply } from '../support/cluster.js';
import { eventually } from '../support/nats.js';
import { testWithNatsServerPerTest } from '../support/nats-fixtures.js';
import { impulseCountPipeline } from '../support/pipelines.js';

const it = testWithNatsServerPerTest();
const LEASE_TTL_MS = 1_000;
const OWNER_WAIT_MS = 600;

describe('requests reach the owner', () => {
  const controllers: Controller[] = [];
  let worker: WorkerHandle | undefined;

  afterEach(async () => {
    await worker?.stop('immediate');
    worker = undefined;
    await Promise.all(controllers.splice(0).map((c) => c.stop()));
  });

  async function controller(nc: NatsConnection, controllerId: string): Promise<Controller> {
    const c = await startTestController(nc, { controllerId, leaseTtlMs: LEASE_TTL_MS, ownerWaitMs: OWNER_WAIT_MS });
    controllers.push(c);
    return c;
  }

  /** Two controllers with their fair shares, a worker, and `count` running jobs. */
  async function setUp(connect: (name: string) => Promise<NatsConnection>, count: number) {
    const a = await controller(await connect('a'), 'a');
    const b = await controller(await connect('b'), 'b');
    await eventually(() => expect([a.ownership.fleet().find((c) => c.controllerId === 'a')?.shards, b.ownership.fleet().find((c) => c.controllerId === 'b')?.shards]).toEqual([64, 64]), { timeoutMs: 4 * LEASE_TTL_MS });
    worker = await startTestWorker(await connect('worker'), { slots: 16 });
    const client = await connect('client');
    const request = (subject: string, body: unknown = { v: 1 }): Promise<Reply> => requestJson(client, subject, body, 5_000);
    const view = async (jobId: string): Promise<JobView> => {
      const reply = await request(subjects.apiJobGet(jobId));
      if (reply.error !== undefined) throw new Error(`get ${jobId}: ${reply.error.code}: ${reply.error.message}`);
      return jobViewSchema.parse(reply);
    };
    const ids: string[] = [];
    for (let i = 0; i < count; i++) {
      const reply = await request(subjects.apiJobsCreate(), impulseCountPipeline({ name: `job-${i}`, rate: 10 }));
      expect(reply.error).toBeUndefined();
      ids.push(reply['job_id'] as string);
    }
    for (const id of ids) await untilState(() => view(id), 'Running', { timeoutMs: 15_000 });
    return { a, b, client, request, view, ids };
  }

  it('any controller answers for any job, with the owner’s reply; creates land on both', async ({ connect }) => {
    const { a, b, request, view, ids } = await setUp(connect, 8);
    // Each controller created the jobs it received on its own shards.
    const owners = await Promise.all(ids.map(async (id) => (await view(id)).owner));
    expect(new Set(owners)).toEqual(new Set(['a', 'b']));
    for (const id of ids) expect(owners[ids.indexOf(id)]).toBe(a.ownership.owns(id) ? 'a' : 'b');
    // Many gets of one job land on both controllers; every reply is the owner's.
    const jobId = ids[0]!;
    const replies = await Promise.all(Array.from({ length: 30 }, () => request(subjects.apiJobGet(jobId))));
    for (const reply of replies) expect(jobViewSchema.parse(reply)).toMatchObject({ job_id: jobId, state: 'Running', owner: owners[0] });
    expect(a.stats().forwarded + b.stats().forwarded).toBeGreaterThan(0);
    // A config change sent to either reaches the owner's runtime.
    for (const id of ids) expect((await request(subjects.apiJobConfig(id), { v: 1, stop: 'immediate' })).error).toBeUndefined();
    for (const id of ids) await untilState(() => view(id), 'Stopped', { timeoutMs: 15_000 });
    // The listings cover every job, whichever controller answers, each with its owner.
    const listed = (await request(subjects.apiJobsList(), { v: 1, limit: 100 }))['data'] as { job_id: string; owner: string }[];
    expect(listed.map((j) => j.job_id).sort()).toEqual([...ids].sort());
    for (const job of listed) expect(job.owner).toBe(owners[ids.indexOf(job.job_id)]);
  }, 60_000);

  it('a forwarded request reaching a controller that does not own the job is refused with unavailable, not forwarded again', async ({ connect }) => {
    const { a, client, ids } = await setUp(connect, 4);
    const foreign = ids.find((id) => !a.ownership.owns(id))!;
    const started = performance.now();
    const reply = await requestJson(client, forwardPrefix('a') + subjects.apiJobGet(foreign), { v: 1 }, 5_000);
    expect(reply.error?.code).toBe('unavailable');
    // It waited for the job's shard to become its own, up to its deadline, and no longer.
    expect(performance.now() - started).toBeGreaterThanOrEqual(OWNER_WAIT_MS - 50);
    expect(performance.now() - started).toBeLessThan(OWNER_WAIT_MS + 2_000);
  }, 60_000);

  it('during a takeover a request waits for the new owner or fails with unavailable; no reply comes from the dead owner', async ({ connect }) => {
    const { a, b, request, view, ids } = await setUp(connect, 8);
    const aJobs = ids.filter((id) => a.ownership.owns(id));
    expect(aJobs.length).toBeGreaterThan(0);
    // `a` dies: it renews nothing and answers nothing more.
    await a.halt();
    controllers.splice(controllers.indexOf(a), 1);
    // Per job, what each request got: an owner's view, or an error code.
    const outcomes = new Map<string, string[]>(aJobs.map((id) => [id, []]));
    const deadline = performance.now() + 4 * LEASE_TTL_MS;
    while (performance.now() < deadline) {
      const replies = await Promise.all(aJobs.map((id) => request(subjects.apiJobGet(id))));
      replies.forEach((reply, i) => outcomes.get(aJobs[i]!)!.push(reply.error !== undefined ? reply.error.code : `owner ${String(reply['owner'])}`));
      if (replies.every((r) => r.error === undefined && r['owner'] === 'b' && r['waiting'] === null)) break;
    }
    for (const [id, seen] of outcomes) {
      // `a` may still answer while its lease lasts (nobody can own the job before it expires); once `b`
      // has answered, nothing comes from `a` again.
      expect(seen.every((o) => ['unavailable', 'owner a', 'owner b'].includes(o)), `${id}: ${seen.join(', ')}`).toBe(true);
      const firstB = seen.indexOf('owner b');
      expect(firstB, `${id}: ${seen.join(', ')}`).toBeGreaterThanOrEqual(0);
      expect(seen.slice(firstB).includes('owner a'), `${id}: ${seen.join(', ')}`).toBe(false);
    }
    for (const id of aJobs) expect(await view(id)).toMatchObject({ owner: 'b', state: 'Running', restarts: 0 });
    // The survivor counts what it took over, by the state it found.
    const metrics = await b.metricsText();
    expect(metrics).toMatch(new RegExp(`weir_takeovers_total\\{state="Running"\\} ${aJobs.length}`));
    expect(metrics).toMatch(new RegExp(`weir_jobs_by_owner\\{owner="b"\\} ${ids.length}`));
  }, 60_000);

  it('a job handed over while its request ran is answered unavailable, not with the unknown_job of the table it left (lifecycle fuzzer, seed 1010897344)', async ({ connect }) => {
    const nc = await connect('router');
    let owned = true;
    const leases = { shards: 128, ttlMs: LEASE_TTL_MS, owns: () => owned, owned: () => (owned ? [0] : []), epochOf: () => (owned ? 1 : undefined), ownerOf: () => (owned ? 'a' : null), fleet: () => [] };
    const router = new RequestRouter({ nc, ownership: new JobOwnership('a', leases), log, waitMs: OWNER_WAIT_MS });
    const msg = { subject: subjects.apiJobGet('job-1'), data: new Uint8Array() } as unknown as Parameters<ReturnType<RequestRouter['forJob']>>[0];
    const missing = () => Promise.reject(new RequestRejected('unknown_job', 'no job job-1'));
    // Still the owner: the handler's error is the answer.
    await expect(router.forJob(missing)(msg, false)).rejects.toMatchObject({ code: 'unknown_job' });
    // Handed over while the handler ran (the rebalance that follows a paused controller's return): unavailable.
    const handedOver = () => {
      owned = false;
      return missing();
    };
    await expect(router.forJob(handedOver)(msg, false)).rejects.toMatchObject({ code: 'unavailable' });
  }, 30_000);
});
