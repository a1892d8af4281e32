/**
 * Fault tests on real processes: a nats-server from the harness, `weir controller` and `weir worker`
 * processes that are killed with SIGKILL and restarted, and a client that talks to them over NATS only.
 * Each test gets its own server, so no job of one test is resumed by the controller of another.
 */
import { jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import { afterEach, describe, expect } from 'vitest';
import type { JobState } from '../../machines/index.js';
import type { CheckpointRecord } from '../../src/controller/checkpoint-coordinator.js';
import {
  SUBJECTS,
  decode,
  encode,
  jobStateEventSchema,
  jobViewSchema,
  subjects,
  type JobStateEvent,
  type JobView,
  type JsonValue,
  type PipelineInput,
} from '../../src/protocol/index.js';
import { requestJson, untilState, type Reply } from '../support/cluster.js';
import { eventually } from '../support/nats.js';
import { storedEpochs, storedRecord, storedRecords, subtaskSnapshot } from '../support/checkpoints.js';
import { SERVER_CONFIG } from '../support/deployment.js';
import { testWithNatsServerPerTest } from '../support/nats-fixtures.js';
import type { NatsServerHandle } from '../support/nats-server.js';
import { impulseCountPipeline } from '../support/pipelines.js';
import { killAll, WeirProcess } from '../support/processes.js';

const HEARTBEAT_TIMEOUT_MS = 1_500;
/** impulse → map-key → count → preview at 100 events/s, checkpointing every second; `extra` over the pipeline's fields. */
function counterPipeline(extra: Partial<PipelineInput> = {}, mapKey: Record<string, JsonValue> = { modulo: 5 }): PipelineInput {
  return { ...impulseCountPipeline({ name: 'faults', rate: 100, mapKey, sinkEdge: 'forward' }), ...extra };
}

const it = testWithNatsServerPerTest({ config: SERVER_CONFIG });

describe('weir on real processes', () => {
  let server: NatsServerHandle;
  let client: NatsConnection;
  let processes: Set<WeirProcess>;
  let states: JobStateEvent[];
  let stateSub: Subscription;

  it.beforeEach(async ({ natsServer, connect }) => {
    server = natsServer;
    client = await connect('fault-test-client');
    processes = new Set();
    states = [];
    stateSub = client.subscribe('weir.jobs.*.state', {
      callback: (_err, msg) => {
        const d = decode(jobStateEventSchema, msg.data);
        if (d.ok) states.push(d.value);
      },
    });
  });

  afterEach(async () => {
    await killAll(processes);
    stateSub.unsubscribe();
  });

  async function controller(...extra: string[]): Promise<WeirProcess> {
    const args = ['controller', '--nats', server.url, '--heartbeat-timeout', String(HEARTBEAT_TIMEOUT_MS), '--heartbeat-interval', '300', ...extra];
    const p = new WeirProcess(`controller-${processes.size}`, args);
    processes.add(p);
    await p.waitForLog('controller started');
    return p;
  }

  async function worker(id: string, slots = 4): Promise<WeirProcess> {
    const p = new WeirProcess(id, ['worker', '--slots', String(slots), '--id', id, '--nats', server.url]);
    processes.add(p);
    await p.waitForLog('registered with the controller');
    return p;
  }

  const request = (subject: string, body: unknown, timeout = 5_000): Promise<Reply> => requestJson(client, subject, body, timeout);

  async function create(pipeline: unknown): Promise<string> {
    const reply = await request(subjects.apiJobsCreate(), pipeline);
    expect(reply.error).toBeUndefined();
    return reply['job_id'] as string;
  }

  async function configure(jobId: string, update: Record<string, unknown>): Promise<Reply> {
    const reply = await request(subjects.apiJobConfig(jobId), { v: 1, ...update });
    expect(reply.error).toBeUndefined();
    return reply;
  }

  async function view(jobId: string): Promise<JobView> {
    return jobViewSchema.parse(await request(subjects.apiJobGet(jobId), { v: 1 }));
  }

  /** Polls the API (which a restarting controller may not answer for a moment) until the job is in `state`. */
  function reach(jobId: string, state: JobState, timeoutMs = 20_000, extra: (v: JobView) => boolean = () => true): Promise<JobView> {
    return untilState(() => view(jobId), state, { timeoutMs, intervalMs: 100 }, (v) => expect(extra(v)).toBe(true));
  }

  function statesOf(jobId: string): JobState[] {
    return states.filter((s) => s.job_id === jobId).map((s) => s.state);
  }

  /**
   * The failing subtask fails on its first record, which may come before or after the
   * last task reports started: Scheduling -> Failing and Running -> Failing are both right.
   */
  function withoutRunning(seq: JobState[]): JobState[] {
    const i = seq.indexOf('Running');
    return i === 2 && seq[3] === 'Failing' ? [...seq.slice(0, 2), ...seq.slice(3)] : seq;
  }

  /** The worker process that started this generation of the job. */
  function hostOf(jobId: string, generation: number, workers: WeirProcess[]): WeirProcess | undefined {
    return workers.find((w) => w.logs().some((l) => l['msg'] === 'generation started' && l['jobId'] === jobId && l['generation'] === generation));
  }

  const epochs = (jobId: string) => storedEpochs(client, jobId);
  const record = (jobId: string, epoch: number) => storedRecord(client, jobId, epoch);

  /** The impulse source's position in a checkpoint: how many events the job had read. */
  const counterOf = async (r: CheckpointRecord): Promise<number> => ((await subtaskSnapshot(client, r, 'src')) as { next_counter: number }).next_counter;

  /** Waits for a checkpoint newer than `after` and returns it. */
  function nextCheckpoint(jobId: string, after: number, generation?: number, timeoutMs = 15_000): Promise<CheckpointRecord> {
    return eventually(
      async () => {
        const later = (await epochs(jobId)).filter((e) => e > after);
        expect(later.length).toBeGreaterThan(0);
        const r = await record(jobId, later.at(-1)!);
        if (generation !== undefined) expect(r.generation).toBe(generation);
        return r;
      },
      { timeoutMs, intervalMs: 100 },
    );
  }

  it('a worker killed with SIGKILL: Recovering, then Running on the remaining worker, counting on from the last checkpoint', async () => {
    await controller();
    const workers = [await worker('w1'), await worker('w2')];
    const jobId = await create(counterPipeline());
    await reach(jobId, 'Running');
    const before = await nextCheckpoint(jobId, 0, 1);
    const host = hostOf(jobId, 1, workers)!;
    expect(host).toBeDefined();

    await host.kill('SIGKILL');
    const recovered = await reach(jobId, 'Running', 20_000, (v) => v.generation > 1);
    expect(statesOf(jobId)).toContain('Recovering');
    expect(recovered.restarts).toBe(1);
    expect(recovered.failure).toMatchObject({ message: `worker ${host.name} was lost`, domain: 'internal' });
    const survivor = workers.find((w) => w !== host)!;
    expect(hostOf(jobId, recovered.generation, workers)).toBe(survivor);

    const after = await nextCheckpoint(jobId, before.epoch, recovered.generation);
    expect(await counterOf(after)).toBeGreaterThan(await counterOf(before));
  }, 60_000);

  it('the controller killed with SIGKILL and restarted: every job resumes per the takeover table and nothing acknowledged is lost', async () => {
    const first = await controller();
    await worker('w1', 12);
    const running = await create(counterPipeline());
    const rescaled = await create(counterPipeline());
    const stopped = await create(counterPipeline());
    await reach(running, 'Running');
    await reach(rescaled, 'Running');
    await reach(stopped, 'Running');
    const lastBefore = await nextCheckpoint(running, 0, 1);
    await configure(stopped, { stop: 'checkpoint' });
    const stoppedView = await reach(stopped, 'Stopped');

    // Acknowledged just before the crash: a new job and a rescale.
    const fresh = await create(counterPipeline());
    const rescale = await configure(rescaled, { parallelism: 2 });
    await first.kill('SIGKILL');
    expect(first.running).toBe(false);

    await controller();
    // Its tasks ran on: the new controller re-attached to them at the same generation, with no restart.
    const resumed = await reach(running, 'Running', 30_000, (v) => v.generation === 1 && v.waiting === null);
    expect(resumed.restarts).toBe(0);
    const rescaledView = await reach(rescaled, 'Running', 30_000, (v) => v.generation > 1 && v.config.parallelism_overrides['cnt'] === 2);
    expect(rescaledView.revision).toBeGreaterThanOrEqual(rescale['revision'] as number);
    await reach(fresh, 'Running', 30_000);
    const still = await view(stopped);
    expect(still).toMatchObject({ state: 'Stopped', generation: stoppedView.generation, restarts: 0 });

    // Its checkpoints go on after the last one before the crash, from the same tasks.
    const after = await nextCheckpoint(running, lastBefore.epoch, resumed.generation, 20_000);
    expect(await counterOf(after)).toBeGreaterThanOrEqual(await counterOf(lastBefore));
    // The rescale acknowledged before the crash took effect (rescaled nodes start from empty state, see docs/protocol.md).
    const rescaledAfter = await nextCheckpoint(rescaled, 0, rescaledView.generation, 20_000);
    expect(rescaledAfter.subtasks.filter((s) => s.node_id === 'cnt')).toHaveLength(2);
  }, 90_000);

  it('nats-server restarted mid-run: controller and workers reconnect and the job carries on or recovers', async () => {
    const c = await controller();
    const w = await worker('w1');
    const jobId = await create(counterPipeline());
    await reach(jobId, 'Running');
    const before = await nextCheckpoint(jobId, 0);

    await server.restart();
    // The API answers again once the controller has reconnected.
    await reach(jobId, 'Running', 30_000);
    const after = await nextCheckpoint(jobId, before.epoch, undefined, 30_000);
    expect(after.epoch).toBeGreaterThan(before.epoch);
    expect(await counterOf(after)).toBeGreaterThanOrEqual(await counterOf(before));
    expect(c.running).toBe(true);
    expect(w.running).toBe(true);
  }, 90_000);

  it('a preview job with a TTL is stopped when it expires, and is not restarted', async () => {
    await controller();
    await worker('w1');
    const jobId = await create(counterPipeline({ ttl_micros: 2_000_000 }));
    await reach(jobId, 'Running');
    const stopped = await reach(jobId, 'Stopped', 15_000);
    expect(stopped.restarts).toBe(0);
    expect(statesOf(jobId)).toEqual(['Compiling', 'Scheduling', 'Running', 'Stopping', 'Stopped']);
  }, 40_000);

  it('restarts exhausted: a job that keeps losing its worker fails with the reason', async () => {
    await controller('--allowed-restarts=1');
    const workers = [await worker('w1'), await worker('w2'), await worker('w3')];
    const jobId = await create(counterPipeline());
    await reach(jobId, 'Running');
    await hostOf(jobId, 1, workers)!.kill('SIGKILL');
    const second = await reach(jobId, 'Running', 20_000, (v) => v.generation > 1);
    expect(second.restarts).toBe(1);
    await hostOf(jobId, second.generation, workers)!.kill('SIGKILL');
    const failed = await reach(jobId, 'Failed', 20_000);
    expect(failed.failure).toMatchObject({ domain: 'internal', hint: 'no_retry' });
    expect(failed.failure?.message).toMatch(/^Exhausted retries: worker w\d was lost$/);
    expect(failed.available_action).toMatchObject({ text: 'Failed', in_progress: false });
  }, 60_000);

  it('a no_retry task failure fails the job at once; a restart from Failed runs it again', async () => {
    await controller();
    await worker('w1');
    const jobId = await create(counterPipeline({}, { field: 'user', required: true }));
    const failed = await reach(jobId, 'Failed', 20_000);
    expect(failed.restarts).toBe(0);
    expect(failed.failure).toMatchObject({ domain: 'user', hint: 'no_retry' });
    expect(failed.failure?.message).toMatch(/no field "user"/);
    expect(withoutRunning(statesOf(jobId))).toEqual(['Compiling', 'Scheduling', 'Failing', 'Failed']);

    await configure(jobId, { restart: true });
    const again = await reach(jobId, 'Failed', 20_000, (v) => v.generation === failed.generation + 1);
    expect(again.restarts).toBe(0);
    const rerun = statesOf(jobId).slice(statesOf(jobId).indexOf('Failed') + 1);
    expect(withoutRunning(rerun)).toEqual(['Compiling', 'Scheduling', 'Failing', 'Failed']);
  }, 60_000);

  it('malformed input on every request subject gets an error reply and changes nothing', async () => {
    const c = await controller();
    const w = await worker('w1');
    const jobId = await create(counterPipeline());
    const before = await reach(jobId, 'Running');
    const listBefore = await request(subjects.apiJobsList(), { v: 1 });

    const payloads: [string, Uint8Array, string[]][] = [
      ['not JSON', new TextEncoder().encode('{nope'), ['bad_json']],
      ['an unknown version', encode({ v: 99 }), ['unsupported_version']],
      ['the wrong schema', encode({ v: 1, bogus: true }), ['bad_schema']],
      ['over the size limit', encode({ v: 1, pad: 'x'.repeat(1_100_000) }), ['too_large']],
    ];
    const requestSubjects = Object.entries(SUBJECTS).filter(([, spec]) => spec.kind === 'request');
    expect(requestSubjects.map(([name]) => name).sort()).toEqual(
      ['apiJobCheckpoint', 'apiJobCheckpoints', 'apiJobConfig', 'apiJobDelete', 'apiJobGet', 'apiJobMetrics', 'apiJobTriggerCheckpoint', 'apiJobsCreate', 'apiJobsList', 'apiJobsViews', 'apiMetrics', 'apiWorkersList', 'apiControllersList', 'workerCheckpoint', 'workerCommit', 'workerHeartbeat', 'workerRegister', 'workerStart', 'workerStop'].sort(),
    );
    for (const [name, spec] of requestSubjects) {
      const subject = spec.pattern.replace('<job>', jobId).replace('<worker>', 'w1');
      for (const [what, body, codes] of payloads) {
        const reply = await request(subject, body);
        expect(reply.error, `${name} with ${what}`).toBeDefined();
        expect(codes, `${name} with ${what}: ${JSON.stringify(reply.error)}`).toContain(reply.error!.code);
        expect(spec.errors).toContain(reply.error!.code);
        expect(reply.error!.message.length).toBeGreaterThan(0);
      }
    }
    // Unknown ids on the subjects that take one.
    expect((await request(subjects.apiJobGet('job-none'), { v: 1 })).error?.code).toBe('unknown_job');
    expect((await request(subjects.apiJobConfig('job-none'), { v: 1, stop: 'immediate' })).error?.code).toBe('unknown_job');
    expect((await request(subjects.apiJobCheckpoints('job-none'), { v: 1 })).error?.code).toBe('unknown_job');
    expect((await request(subjects.apiJobCheckpoint(jobId), { v: 1, epoch: 123_456 })).error?.code).toBe('unknown_checkpoint');
    expect((await request(subjects.workerHeartbeat('w-none'), { v: 1, worker_id: 'w-none', at: 1, jobs: [] })).error?.code).toBe('unknown_worker');
    expect((await request(subjects.workerStop('w1'), { v: 1, job_id: 'job-none', generation: 1, mode: 'immediate' })).error?.code).toBe('unknown_job');

    // Nothing changed: the job runs on at the same revision and generation, the list is the same, the
    // worker is still registered (its heartbeats are accepted) and no process crashed.
    const after = await view(jobId);
    expect(after).toMatchObject({ state: 'Running', revision: before.revision, generation: before.generation, restarts: 0 });
    expect(await request(subjects.apiJobsList(), { v: 1 })).toEqual(listBefore);
    await new Promise((resolve) => setTimeout(resolve, HEARTBEAT_TIMEOUT_MS + 500));
    expect((await view(jobId)).state).toBe('Running');
    expect(c.running && w.running).toBe(true);
    expect(statesOf(jobId)).toEqual(['Compiling', 'Scheduling', 'Running']);
  }, 60_000);
  // ─── Exactly once through the two-phase JetStream sink ───────────────────────────────────────

  const MODULO = 7;

  /** Each event ends as one message `{key, value: {key, count}, ts}` on `subject`. */
  function exactlyOncePipeline(events: number, subject: string, stream?: string): PipelineInput {
    return impulseCountPipeline({
      name: 'exactly-once',
      events,
      rate: 150,
      modulo: MODULO,
      nodeParallelism: { src: 2, key: 2, cnt: 2, out: 2 },
      sink: { operator: 'jetstream-sink', config: { subject, ...(stream === undefined ? {} : { stream }) } },
      sinkEdge: 'forward',
    });
  }

  /** Every message of the stream, in order. */
  async function streamRows(stream: string): Promise<{ key: string; count: number }[]> {
    const jsm = await jetstreamManager(client);
    const { state } = await jsm.streams.info(stream);
    const rows: { key: string; count: number }[] = [];
    for (let seq = state.first_seq; seq <= state.last_seq && state.messages > 0; seq++) {
      const msg = await jsm.streams.getMessage(stream, { seq });
      if (msg !== null) rows.push(msg.json<{ value: { key: string; count: number } }>().value);
    }
    return rows;
  }

  /** Exactly once: every key's counts are 1..n, each once, and n is how many of the events have that key. */
  function expectExactCounts(rows: { key: string; count: number }[], events: number): void {
    expect(rows).toHaveLength(events);
    for (let k = 0; k < MODULO; k++) {
      const expected = Array.from({ length: Math.ceil((events - k) / MODULO) }, (_, i) => i + 1);
      const counts = rows.filter((r) => r.key === String(k)).map((r) => r.count).sort((a, b) => a - b);
      expect(counts, `key ${k}`).toEqual(expected);
    }
  }

  it('exactly once: an impulse → count → JetStream sink job whose workers are killed again and again ends with every count once', async () => {
    await controller();
    const workers = [await worker('w1'), await worker('w2'), await worker('w3')];
    const events = 1_500;
    const jobId = await create(exactlyOncePipeline(events, 'exact.counts', 'EXACT'));
    let generation = (await reach(jobId, 'Running')).generation;
    for (let kill = 0; kill < 3; kill++) {
      // A random point of the run: mid-epoch, mid-barrier or mid-commit.
      await new Promise((resolve) => setTimeout(resolve, 800 + Math.random() * 1_500));
      const host = hostOf(jobId, generation, workers.filter((w) => w.running));
      if (host === undefined || (await view(jobId)).state !== 'Running') break;
      await host.kill('SIGKILL');
      workers.push(await worker(`w${workers.length + 1}`));
      generation = (await reach(jobId, 'Running', 30_000, (v) => v.generation > generation)).generation;
    }
    const finished = await reach(jobId, 'Finished', 60_000);
    expect(finished.restarts).toBeGreaterThan(0);
    expectExactCounts(await streamRows('EXACT'), events);
    // The final checkpoint committed the last output before Finished.
    const records = await storedRecords(client, jobId);
    expect(records.at(-1)).toMatchObject({ kind: 'final', status: 'ready' });
  }, 150_000);

  it('the controller killed while a checkpoint is committing: the restarted controller sends the commit again, and the output is exact', async () => {
    const first = await controller();
    await worker('w1');
    const events = 300;
    // No stream captures the subject yet: commits fail, so epochs stay committing.
    const jobId = await create(exactlyOncePipeline(events, 'late.counts'));
    const committing = await eventually(
      async () => {
        const found = (await storedRecords(client, jobId)).find((r) => r.status === 'committing' && r.subtasks.some((s) => s.commit_data !== undefined));
        expect(found).toBeDefined();
        return found!;
      },
      { timeoutMs: 20_000, intervalMs: 20 },
    );
    await first.kill('SIGKILL');
    const jsm = await jetstreamManager(client);
    await jsm.streams.add({ name: 'LATE', subjects: ['late.counts'], duplicate_window: 600_000_000_000 });

    const second = await controller();
    await reach(jobId, 'Finished', 60_000);
    await second.waitForLog('restored epoch is still committing: sending its commits again', { jobId });
    expect((await storedRecord(client, jobId, committing.epoch).catch(() => null))?.status ?? 'ready').toBe('ready');
    expectExactCounts(await streamRows('LATE'), events);
  }, 120_000);
});
