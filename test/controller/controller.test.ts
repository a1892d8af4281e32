import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import type { InspectionEvent } from 'xstate';
import { afterEach, describe, expect } from 'vitest';
import type { JobPolicy, JobState } from '../../machines/job/types.js';
import { startController, type Controller, type ControllerOptions } from '../../src/controller/controller.js';
import { newJobId } from '../../src/controller/job-config.js';
import { takeoverPlan } from '../../src/controller/takeover-plan.js';
import {
  CHECKPOINTS_KV_BUCKET,
  CHECKPOINT_SLOTS,
  checkpointDetailsReplySchema,
  checkpointKey,
  decode,
  jobCheckpointsReplySchema,
  jobStateEventSchema,
  jobViewSchema,
  listJobsReplySchema,
  listJobViewsReplySchema,
  listWorkersReplySchema,
  previewOutputSchema,
  subjects,
  type JobStateEvent,
  type JobView,
} from '../../src/protocol/index.js';
import type { JobInspector } from '../../src/inspect/index.js';
import type { CheckpointRecord } from '../../src/controller/job-runtime.js';
import { StoreUnavailableError, openStore, type Store } from '../../src/store/index.js';
import { startWorker, type WorkerHandle } from '../../src/worker/process.js';
import { jobsCommand } from '../../src/cli/jobs.js';
import { corruptCheckpoint, storedEpochs, storedRecord, storedRecords, subtaskSnapshot } from '../support/checkpoints.js';
import { openCheckpointStore } from '../../src/checkpoint/index.js';
import { log, requestJson, startTestController, startTestWorker, TEST_POLICY, untilState, type Reply } from '../support/cluster.js';
import { eventually } from '../support/nats.js';
import { testWithNatsServerPerTest, type Connect } from '../support/nats-fixtures.js';
import type { NatsServerHandle } from '../support/nats-server.js';
import { impulseCountPipeline } from '../support/pipelines.js';

const POLICY: Partial<JobPolicy> = {
  ...TEST_POLICY,
  // Long enough that a stop which only ended by this timeout (and the kill after it) fails the tests.
  stopTimeoutMs: 30_000,
  // Would expire within the tests if the runtime kept a per-job heartbeat deadline that nothing refreshes.
  heartbeatTimeoutMs: 1_000,
};

const pipeline = (name = 'counts') => impulseCountPipeline({ name, rate: 200, modulo: 5 });

// A server per test: each test starts from empty buckets.
const it = testWithNatsServerPerTest();

describe('controller', () => {
  let server: NatsServerHandle;
  let connect: Connect;
  let nc: NatsConnection;
  let client: NatsConnection;
  let store: Store;
  let controller: Controller | undefined;
  let worker: WorkerHandle | undefined;
  let states: JobStateEvent[];
  let stateSub: Subscription;

  async function start(options: Partial<ControllerOptions> = {}): Promise<Controller> {
    controller = await startTestController(nc, { policy: POLICY, maxMessageBytes: 64 * 1024, ...options });
    return controller;
  }

  const request = (subject: string, body: unknown): Promise<Reply> => requestJson(client, subject, body, 5_000);

  async function view(jobId: string): Promise<JobView> {
    const reply = await request(subjects.apiJobGet(jobId), { v: 1 });
    const decoded = jobViewSchema.safeParse(reply);
    if (!decoded.success) throw new Error(`bad view: ${JSON.stringify(reply)}`);
    return decoded.data;
  }

  async function reach(jobId: string, state: JobState, timeoutMs = 15_000): Promise<JobView> {
    return untilState(() => view(jobId), state, { timeoutMs });
  }

  async function create(): Promise<string> {
    const reply = await request(subjects.apiJobsCreate(), pipeline());
    expect(reply.error).toBeUndefined();
    expect(reply['v']).toBe(1);
    expect(typeof reply['revision']).toBe('number');
    return reply['job_id'] as string;
  }

  /** Three jobs, oldest first, a few ms apart so that their time-ordered ids sort as created. */
  async function createThree(): Promise<string[]> {
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      ids.push(await create());
      await new Promise((r) => setTimeout(r, 5));
    }
    return ids;
  }

  async function configure(jobId: string, update: Record<string, unknown>): Promise<Reply> {
    return request(subjects.apiJobConfig(jobId), { v: 1, ...update });
  }

  it.beforeEach(async ({ natsServer, connect: connectToServer }) => {
    server = natsServer;
    connect = connectToServer;
    nc = await connect('controller');
    client = await connect('client');
    store = await openStore(client);
    states = [];
    stateSub = client.subscribe('weir.jobs.*.state', {
      callback: (_err, msg) => {
        const d = decode(jobStateEventSchema, msg.data);
        if (d.ok) states.push(d.value);
      },
    });
    await start();
    worker = await startTestWorker(await connect('worker'));
  });

  afterEach(async () => {
    await controller?.stop();
    controller = undefined;
    await worker?.stop('immediate');
    worker = undefined;
    stateSub.unsubscribe();
  });

  it('creates a job over NATS that reaches Running; stop=checkpoint → Stopped; start again at generation 2; restart bumps the generation', async () => {
    const jobId = await create();
    expect(jobId).toMatch(/^job-[0-9a-z]{9}-[0-9a-f]{10}$/);
    const running = await reach(jobId, 'Running');
    expect(running.generation).toBe(1);
    expect(running.name).toBe('counts');
    expect(running.config.checkpoint_interval_micros).toBe(1_000_000);
    expect(running.available_action).toEqual({ text: 'Stop', stop: 'checkpoint', in_progress: false });
    await eventually(() => expect(states.filter((s) => s.job_id === jobId).map((s) => s.state)).toEqual(['Compiling', 'Scheduling', 'Running']));
    expect(worker!.running().get(jobId)).toBe(1);

    const list = listJobsReplySchema.parse(await request(subjects.apiJobsList(), { v: 1 }));
    expect(list.data.map((j) => j.job_id)).toEqual([jobId]);
    expect(list.has_more).toBe(false);

    const stopped = await configure(jobId, { stop: 'checkpoint' });
    expect(stopped.error).toBeUndefined();
    expect(stopped['revision']).toBeGreaterThan(running.revision);
    await reach(jobId, 'Stopped');
    expect(states.filter((s) => s.job_id === jobId).map((s) => s.state)).toContain('CheckpointStopping');
    await eventually(() => expect(worker!.running().has(jobId)).toBe(false));

    await configure(jobId, { stop: 'none' });
    const again = await reach(jobId, 'Running');
    expect(again.generation).toBe(2);

    const restarted = await configure(jobId, { restart: true });
    expect(restarted.error).toBeUndefined();
    await eventually(async () => {
      const v = await view(jobId);
      expect(v.state).toBe('Running');
      expect(v.generation).toBe(3);
      expect(v.config.restart_nonce).toBe(1);
    }, { timeoutMs: 15_000 });
    expect(states.filter((s) => s.job_id === jobId).map((s) => s.state)).toContain('Restarting');

    // parallelism applies to every node as overrides; the job rescales.
    await configure(jobId, { parallelism: 2 });
    await eventually(async () => {
      const v = await view(jobId);
      expect(v.config.parallelism_overrides).toEqual({ src: 2, key: 2, cnt: 2, out: 2 });
      expect(v.state).toBe('Running');
      expect(v.generation).toBe(4);
    }, { timeoutMs: 15_000 });
  });

  it('a config update that changes nothing the job acts on is not written, and says so', async () => {
    const jobId = await create();
    const running = await reach(jobId, 'Running');
    // Start a Running job: its config already asks to run.
    const start = await configure(jobId, { stop: 'none' });
    expect(start).toEqual({ v: 1, job_id: jobId, revision: running.revision, changed: false, state: 'Running' });
    const stop = await configure(jobId, { stop: 'checkpoint' });
    expect(stop).toMatchObject({ changed: true });
    const stopped = await reach(jobId, 'Stopped');
    // Stop a Stopped job, the same way or another: a job that does not run has no use for a stop mode.
    for (const mode of ['checkpoint', 'immediate', 'force']) {
      expect(await configure(jobId, { stop: mode })).toEqual({ v: 1, job_id: jobId, revision: stopped.revision, changed: false, state: 'Stopped' });
    }
    expect((await store.jobs.get(jobId))!.config.stop).toBe('checkpoint');
    // What does change is written: a rescale of the stopped job, then a start.
    expect(await configure(jobId, { parallelism: 2 })).toMatchObject({ changed: true, state: 'Stopped' });
    expect(await configure(jobId, { stop: 'none' })).toMatchObject({ changed: true });
    await reach(jobId, 'Running');
  });

  it('starts from the newest checkpoint record that exists when the last completed epoch has none', async () => {
    const jobId = await create();
    await reach(jobId, 'Running');
    const kv = await new Kvm(client).open(CHECKPOINTS_KV_BUCKET);
    const epochs = () => storedEpochs(client, jobId);
    await eventually(async () => expect((await epochs()).length).toBeGreaterThanOrEqual(2), { timeoutMs: 15_000 });
    await configure(jobId, { stop: 'checkpoint' });
    await reach(jobId, 'Stopped');
    // As after a crash mid-checkpoint: the newest epoch's record is gone.
    const all = await epochs();
    await kv.purge(checkpointKey(jobId, all.at(-1)!));
    await configure(jobId, { stop: 'none' });
    const again = await reach(jobId, 'Running');
    expect(again.generation).toBe(2);
  });

  it(`keeps each job's newest ${CHECKPOINT_SLOTS} checkpoint records, replacing older ones in place, and restores from the newest`, async () => {
    const jobId = await create();
    await reach(jobId, 'Running');
    const epochs = await eventually(
      async () => {
        const now = await storedEpochs(client, jobId);
        expect(now.at(-1)).toBeGreaterThan(CHECKPOINT_SLOTS + 1);
        return now;
      },
      { timeoutMs: 30_000, intervalMs: 250 },
    );
    expect(epochs.length).toBeLessThanOrEqual(CHECKPOINT_SLOTS);
    // Only the ring's epochs, each once; an epoch of it without a record is one that failed (a failed
    // checkpoint costs its epoch and writes nothing), which a loaded machine can see.
    const newestEpoch = epochs.at(-1)!;
    expect(new Set(epochs).size).toBe(epochs.length);
    expect(epochs.every((e) => e > newestEpoch - CHECKPOINT_SLOTS)).toBe(true);
    const missing = Array.from({ length: CHECKPOINT_SLOTS }, (_, i) => newestEpoch - i).filter((e) => !epochs.includes(e));
    if (missing.length > 0) {
      const withFailed = jobCheckpointsReplySchema.parse(await request(subjects.apiJobCheckpoints(jobId), { v: 1, include_failed: true }));
      const failed = new Set(withFailed.data.filter((c) => c.status === 'failed').map((c) => c.epoch));
      expect(missing.filter((e) => !failed.has(e))).toEqual([]);
    }
    // The bucket's stream holds one message per slot, nothing per replaced epoch.
    const info = await (await jetstreamManager(client)).streams.info(`KV_${CHECKPOINTS_KV_BUCKET}`, { subjects_filter: `$KV.${CHECKPOINTS_KV_BUCKET}.${jobId}.*` });
    const perSubject = Object.values(info.state.subjects ?? {});
    expect(perSubject.length).toBeLessThanOrEqual(CHECKPOINT_SLOTS);
    expect(perSubject.every((count) => count === 1)).toBe(true);

    await configure(jobId, { stop: 'checkpoint' });
    await reach(jobId, 'Stopped');
    const newest = (await storedEpochs(client, jobId)).at(-1)!;
    expect((await store.jobs.get(jobId))!.status.epoch).toBe(newest);
    await configure(jobId, { stop: 'none' });
    const again = await reach(jobId, 'Running');
    expect(again.generation).toBe(2);
    const history = jobCheckpointsReplySchema.parse(await request(subjects.apiJobCheckpoints(jobId), { v: 1, include_failed: false }));
    expect(history.data.some((c) => c.epoch === newest)).toBe(true);
  }, 60_000);

  it('a stopped and restarted job continues its operator state from the last completed epoch', async () => {
    const jobId = await create();
    await reach(jobId, 'Running');
    const epochsOf = () => storedEpochs(client, jobId);
    const recordOf = (epoch: number) => storedRecord(client, jobId, epoch);
    const stateOf = (record: CheckpointRecord, node: string): Promise<unknown> => subtaskSnapshot(client, record, node);
    // At least one periodic checkpoint before the stop.
    await eventually(async () => expect((await epochsOf()).length).toBeGreaterThan(0), { timeoutMs: 10_000 });

    await configure(jobId, { stop: 'checkpoint' });
    await reach(jobId, 'Stopped');
    const epochs = await epochsOf();
    const finalEpoch = epochs.at(-1)!;
    expect(epochs.length).toBeGreaterThan(1);
    const final = await recordOf(finalEpoch);
    expect(final.generation).toBe(1);
    const finalCounts = ((await stateOf(final, 'cnt')) as { counts: Record<string, number> }).counts;
    const finalCounter = ((await stateOf(final, 'src')) as { next_counter: number }).next_counter;
    expect(Object.keys(finalCounts).sort()).toEqual(['0', '1', '2', '3', '4']);
    expect(Object.values(finalCounts).reduce((a, b) => a + b, 0)).toBe(finalCounter);

    const firstAfterRestart = new Map<string, number>();
    const output = client.subscribe(subjects.jobOutput(jobId), {
      callback: (_err, msg) => {
        const d = decode(previewOutputSchema, msg.data);
        if (!d.ok || d.value.generation !== 2) return;
        for (const row of d.value.rows) {
          const { key, count } = (row as { value: { key: string; count: number } }).value;
          if (!firstAfterRestart.has(key)) firstAfterRestart.set(key, count);
        }
      },
    });
    try {
      await configure(jobId, { stop: 'none' });
      const again = await reach(jobId, 'Running');
      expect(again.generation).toBe(2);
      await eventually(() => expect([...firstAfterRestart.keys()].sort()).toEqual(['0', '1', '2', '3', '4']), { timeoutMs: 10_000 });
    } finally {
      output.unsubscribe();
    }
    for (const [key, count] of firstAfterRestart) expect(count, `key ${key}`).toBeGreaterThan(finalCounts[key]!);

    // A checkpoint of generation 2: the impulse counter went on from the final epoch's, not from 0,
    // and the counts still add up to it.
    const next = await eventually(
      async () => {
        const later = (await epochsOf()).filter((e) => e > finalEpoch);
        expect(later.length).toBeGreaterThan(0);
        return recordOf(later[0]!);
      },
      { timeoutMs: 10_000 },
    );
    expect(next.generation).toBe(2);
    const nextCounter = ((await stateOf(next, 'src')) as { next_counter: number }).next_counter;
    expect(nextCounter).toBeGreaterThan(finalCounter);
    const nextCounts = ((await stateOf(next, 'cnt')) as { counts: Record<string, number> }).counts;
    expect(Object.values(nextCounts).reduce((a, b) => a + b, 0)).toBe(nextCounter);
    for (const key of Object.keys(finalCounts)) expect(nextCounts[key]).toBeGreaterThanOrEqual(finalCounts[key]!);
  });

  it('a damaged state blob: the restore fails naming the checkpoint, the record is marked failed, and the job restores the previous good one', async () => {
    const jobId = await create();
    await reach(jobId, 'Running');
    await eventually(async () => expect((await storedEpochs(client, jobId)).length).toBeGreaterThan(1), { timeoutMs: 10_000 });
    await configure(jobId, { stop: 'checkpoint' });
    await reach(jobId, 'Stopped');
    const records = await storedRecords(client, jobId);
    const [previous, final] = [records.at(-2)!, records.at(-1)!];
    const previousCounter = ((await subtaskSnapshot(client, previous, 'src')) as { next_counter: number }).next_counter;
    const finalCounter = ((await subtaskSnapshot(client, final, 'src')) as { next_counter: number }).next_counter;
    expect(finalCounter).toBeGreaterThan(previousCounter);

    // Damage the final epoch's `src` state, inline in its record or a blob (the store checks its SHA-256 on every load).
    const ref = final.subtasks.find((t) => t.node_id === 'src')!.table_metadata['state_ref'] as { tables: Record<string, { full: { seq: number }; deltas: { seq: number }[] }> };
    const chain = Object.values(ref.tables)[0]!;
    const seq = chain.deltas.at(-1)?.seq ?? chain.full.seq;
    await corruptCheckpoint(client, jobId, seq, (await openCheckpointStore(client)).names);

    // Listen in on the start requests: which epoch each attempt restores.
    const restoreEpochs: (number | undefined)[] = [];
    const starts = client.subscribe(subjects.workerStart('w1'), { callback: (_err, msg) => void restoreEpochs.push(msg.json<{ restore_epoch?: number }>().restore_epoch) });
    await configure(jobId, { stop: 'none' });
    const again = await reach(jobId, 'Running', 20_000);
    starts.unsubscribe();
    expect(again.generation).toBeGreaterThan(2);
    expect(restoreEpochs).toEqual([final.epoch, previous.epoch]);
    await eventually(async () => expect((await storedRecord(client, jobId, final.epoch)).status).toBe('failed'));
    const warnings = (await store.log.page(jobId, { kind: 'warning', limit: 100 })).data.map((row) => (row as { message: string }).message);
    expect(warnings.some((m) => m.includes(`checkpoint ${final.epoch} cannot be restored`) && m.includes(`checkpoint ${seq} of node src-0 in run ${jobId} is corrupt`))).toBe(true);
    // The new generation went on from the previous good checkpoint, not from the damaged one nor from nothing.
    const next = await eventually(
      async () => {
        const later = (await storedRecords(client, jobId)).filter((r) => r.generation === again.generation);
        expect(later.length).toBeGreaterThan(0);
        return later[0]!;
      },
      { timeoutMs: 10_000 },
    );
    expect(next.epoch).toBeGreaterThan(final.epoch);
    const nextCounter = ((await subtaskSnapshot(client, next, 'src')) as { next_counter: number }).next_counter;
    expect(nextCounter).toBeGreaterThan(previousCounter);
  });

  it('retention: every 4 epochs the state no kept checkpoint needs is deleted, older records are compacted, and the minimum epoch advances', async () => {
    await controller?.stop();
    controller = await startTestController(nc, { policy: POLICY, retainedCheckpoints: 2 });
    await worker?.stop();
    // One delta per chain: every other epoch rewrites full snapshots, so superseded blobs pile up fast.
    worker = startWorker(await connect('worker-2'), { workerId: 'w2', slots: 8, log, heartbeatIntervalMs: 200, incrementalState: { maxDeltas: 1 } });
    await eventually(() => expect(worker!.registered()).toBe(true));
    const jobId = await create();
    await reach(jobId, 'Running');
    const newest = await eventually(
      async () => {
        const last = (await storedRecords(client, jobId)).at(-1);
        expect(last?.epoch).toBeGreaterThanOrEqual(6);
        expect(last?.min_epoch).toBeGreaterThan(0);
        return last!;
      },
      { timeoutMs: 20_000, intervalMs: 200 },
    );
    const statuses = (await storedRecords(client, jobId)).map((r) => r.status);
    expect(statuses).toContain('compacted');
    // Blobs are gone: fewer are left than were ever written, by more than one epoch's worth.
    const checkpoints = await openCheckpointStore(client);
    const written = (await checkpoints.getRun(jobId))!.last_seq;
    const left = (await checkpoints.listRunCheckpoints(jobId)).length;
    expect(written - left).toBeGreaterThan(newest.subtasks.length);

    // And the kept checkpoints restore: a stop and start goes on counting.
    await configure(jobId, { stop: 'checkpoint' });
    await reach(jobId, 'Stopped');
    const final = (await storedRecords(client, jobId)).at(-1)!;
    const before = ((await subtaskSnapshot(client, final, 'src')) as { next_counter: number }).next_counter;
    await configure(jobId, { stop: 'none' });
    await reach(jobId, 'Running');
    const next = await eventually(
      async () => {
        const later = (await storedRecords(client, jobId)).filter((r) => r.epoch > final.epoch);
        expect(later.length).toBeGreaterThan(0);
        return later[0]!;
      },
      { timeoutMs: 10_000 },
    );
    expect(((await subtaskSnapshot(client, next, 'src')) as { next_counter: number }).next_counter).toBeGreaterThan(before);
  }, 40_000);

  it('a restart with ignore_state starts from no state once; later restarts restore the new lineage', async () => {
    const jobId = await create();
    await reach(jobId, 'Running');
    const records = () => storedRecords(client, jobId);
    const counter = async (r: CheckpointRecord) => ((await subtaskSnapshot(client, r, 'src')) as { next_counter: number }).next_counter;
    const newestOf = (generation: number) =>
      eventually(
        async () => {
          const mine = (await records()).filter((r) => r.generation === generation);
          expect(mine.length).toBeGreaterThan(0);
          return mine.at(-1)!;
        },
        { timeoutMs: 10_000 },
      );
    // Let the first lineage count for a while.
    const old = await eventually(
      async () => {
        const last = await newestOf(1);
        expect(await counter(last)).toBeGreaterThan(400);
        return last;
      },
      { timeoutMs: 15_000 },
    );

    expect((await request(subjects.apiJobConfig(jobId), { v: 1, restart: true, ignore_state: true, restart_mode: 'safe' })).error?.code).toBe('bad_schema');
    expect((await configure(jobId, { restart: true, ignore_state: true })).error).toBeUndefined();
    const fresh = await reach(jobId, 'Running', 15_000);
    expect(fresh.generation).toBe(2);
    expect(states.filter((e) => e.job_id === jobId).map((e) => e.state)).toContain('Restarting');
    const first = await newestOf(2);
    // A new lineage: epochs after every epoch of the old one, and the count started again from zero.
    expect(first.epoch).toBeGreaterThan(old.epoch);
    expect(await counter(first)).toBeLessThan(await counter(old));

    // State is ignored once: a later restart continues the new lineage.
    const before = await newestOf(2);
    await configure(jobId, { restart: true, restart_mode: 'force' });
    await reach(jobId, 'Running', 15_000);
    const next = await eventually(
      async () => {
        const later = (await records()).filter((r) => r.generation === 3);
        expect(later.length).toBeGreaterThan(0);
        return later[0]!;
      },
      { timeoutMs: 10_000 },
    );
    expect(await counter(next)).toBeGreaterThanOrEqual(await counter(before));
  });

  it('a running job stays Running: liveness comes from the worker registry, not a per-job heartbeat deadline', async () => {
    const jobId = await create();
    await reach(jobId, 'Running');
    await new Promise((resolve) => setTimeout(resolve, 2_500));
    const v = await view(jobId);
    expect(v.state).toBe('Running');
    expect(v.generation).toBe(1);
    expect(v.restarts).toBe(0);
  });

  it('an immediate stop ends as soon as the workers confirm it, not at the stop timeout', async () => {
    const jobId = await create();
    await reach(jobId, 'Running');
    const started = Date.now();
    await configure(jobId, { stop: 'immediate' });
    await reach(jobId, 'Stopped', 5_000);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(worker!.running().has(jobId)).toBe(false);
  });

  it('answers bad requests with the right codes and changes nothing', async () => {
    const jobId = await create();
    await reach(jobId, 'Running');
    const before = await store.jobs.get(jobId);
    const codeOf = async (subject: string, body: unknown) => (await request(subject, body)).error?.code;

    // create
    expect(await codeOf(subjects.apiJobsCreate(), 'not json')).toBe('bad_json');
    expect(await codeOf(subjects.apiJobsCreate(), { name: 'x' })).toBe('bad_schema');
    expect(await codeOf(subjects.apiJobsCreate(), { ...pipeline(), v: 2 })).toBe('unsupported_version');
    expect(await codeOf(subjects.apiJobsCreate(), { ...pipeline(), name: 'x'.repeat(100 * 1024) })).toBe('too_large');
    const unknownOp = pipeline();
    unknownOp.graph.nodes[1]!.operator = 'no-such-operator';
    expect(await codeOf(subjects.apiJobsCreate(), unknownOp)).toBe('invalid_pipeline');
    const badConfig = pipeline();
    badConfig.graph.nodes[0]!.config = { events: -1 };
    expect(await codeOf(subjects.apiJobsCreate(), badConfig)).toBe('invalid_pipeline');

    // config
    const cfg = subjects.apiJobConfig(jobId);
    expect(await codeOf(cfg, '{')).toBe('bad_json');
    expect(await codeOf(cfg, { v: 1 })).toBe('bad_schema'); // nothing to change
    expect(await codeOf(cfg, { v: 1, stop: 'later' })).toBe('bad_schema');
    expect(await codeOf(cfg, { v: 2, stop: 'checkpoint' })).toBe('unsupported_version');
    expect(await codeOf(cfg, { v: 1, parallelism: 2, parallelism_overrides: { src: 1 } })).toBe('bad_schema');
    expect(await codeOf(cfg, { v: 1, parallelism_overrides: { nope: 2 } })).toBe('invalid_pipeline');
    expect(await codeOf(cfg, { v: 1, stop: 'checkpoint', expected_revision: before!.revisions.config - 1 })).toBe('conflict');
    expect(await codeOf(subjects.apiJobConfig('job-nope'), { v: 1, stop: 'checkpoint' })).toBe('unknown_job');

    // delete and get
    expect(await codeOf(subjects.apiJobDelete(jobId), 'x')).toBe('bad_json');
    expect(await codeOf(subjects.apiJobDelete(jobId), { v: 1, extra: true })).toBe('bad_schema');
    expect(await codeOf(subjects.apiJobDelete(jobId), { v: 2 })).toBe('unsupported_version');
    expect(await codeOf(subjects.apiJobDelete('job-nope'), { v: 1 })).toBe('unknown_job');
    expect(await codeOf(subjects.apiJobDelete(jobId), { v: 1 })).toBe('not_terminal');
    expect(await codeOf(subjects.apiJobGet('job-nope'), { v: 1 })).toBe('unknown_job');
    expect(await codeOf(subjects.apiJobsList(), { v: 1, limit: 0 })).toBe('bad_schema');

    // Nothing changed: one job, same config, still running.
    const after = await store.jobs.get(jobId);
    expect(after!.config).toEqual(before!.config);
    expect(after!.revisions.config).toBe(before!.revisions.config);
    expect(after!.status.state).toBe('Running');
    expect(await store.jobs.list()).toEqual([jobId]);
    expect(controller!.stats().rejected).toMatchObject({ bad_json: 3, bad_schema: 6, unsupported_version: 3, too_large: 1, invalid_pipeline: 3, conflict: 1, unknown_job: 3, not_terminal: 1 });

    // The right expected_revision is accepted.
    const ok = await configure(jobId, { stop: 'checkpoint', expected_revision: before!.revisions.config });
    expect(ok.error).toBeUndefined();
    await reach(jobId, 'Stopped');
  });

  it('deletes a stopped job (its log and its checkpoint records too), refuses a running one', async () => {
    const jobId = await create();
    await reach(jobId, 'Running');
    await eventually(async () => expect(await storedEpochs(client, jobId)).not.toEqual([]), { timeoutMs: 15_000 });
    expect((await request(subjects.apiJobDelete(jobId), { v: 1 })).error?.code).toBe('not_terminal');
    await configure(jobId, { stop: 'immediate' });
    await reach(jobId, 'Stopped');
    expect((await store.log.page(jobId, { limit: 10 })).data.length).toBeGreaterThan(0);
    const reply = await request(subjects.apiJobDelete(jobId), { v: 1 });
    expect(reply).toEqual({ v: 1, job_id: jobId });
    expect(await store.jobs.get(jobId)).toBeNull();
    expect((await store.log.page(jobId, { limit: 10 })).data).toEqual([]);
    expect(await storedEpochs(client, jobId)).toEqual([]);
    expect(controller!.runtimes.get(jobId)).toBeUndefined();
    expect((await request(subjects.apiJobGet(jobId), { v: 1 })).error?.code).toBe('unknown_job');
  });

  it('lists newest first with pagination', async () => {
    const ids = await createThree();
    const page1 = listJobsReplySchema.parse(await request(subjects.apiJobsList(), { v: 1, limit: 2 }));
    expect(page1.data.map((j) => j.job_id)).toEqual([ids[2], ids[1]]);
    expect(page1.has_more).toBe(true);
    const page2 = listJobsReplySchema.parse(await request(subjects.apiJobsList(), { v: 1, limit: 2, starting_after: ids[1] }));
    expect(page2.data.map((j) => j.job_id)).toEqual([ids[0]]);
    expect(page2.has_more).toBe(false);
    for (const id of ids) await reach(id, 'Running');
  });

  it('pages through whole job views, each as a get answers it, and ends a page early rather than pass its byte budget', async () => {
    const ids = await createThree();
    for (const id of ids) await reach(id, 'Running');
    const views = listJobViewsReplySchema.parse(await request(subjects.apiJobsViews(), { v: 1, limit: 2 }));
    expect(views.data.map((j) => j.job_id)).toEqual([ids[2], ids[1]]);
    expect(views.has_more).toBe(true);
    for (const view of views.data) expect(view).toEqual(jobViewSchema.parse(await request(subjects.apiJobGet(view.job_id), { v: 1 })));
    const rest = listJobViewsReplySchema.parse(await request(subjects.apiJobsViews(), { v: 1, limit: 2, starting_after: ids[1] }));
    expect(rest).toMatchObject({ data: [{ job_id: ids[0] }], has_more: false });

    // A budget of about one view: each page holds one job, and has_more says where the rest are.
    await controller!.stop();
    const oneView = Buffer.byteLength(JSON.stringify(views.data[0]));
    await start({ maxViewPageBytes: oneView + 100 });
    const seen: string[] = [];
    let cursor: string | undefined;
    for (let pages = 0; pages < 5; pages++) {
      const page = listJobViewsReplySchema.parse(await request(subjects.apiJobsViews(), { v: 1, limit: 10, ...(cursor === undefined ? {} : { starting_after: cursor }) }));
      expect(page.data).toHaveLength(1);
      seen.push(page.data[0]!.job_id);
      cursor = page.data[0]!.job_id;
      if (!page.has_more) break;
    }
    expect(seen).toEqual([...ids].reverse());
  });

  it('fills a page past a job whose record vanished between the listing and its read', async () => {
    const ids = await createThree();
    for (const id of ids) await reach(id, 'Running');
    // Behind the controller's back, as a delete by another process would look before its watcher fires.
    await store.jobs.delete(ids[1]!);
    const page = listJobsReplySchema.parse(await request(subjects.apiJobsList(), { v: 1, limit: 2 }));
    expect(page.data.map((j) => j.job_id)).toEqual([ids[2], ids[0]]);
  });

  it('forwards config changes made by another process through the store', async () => {
    const jobId = await create();
    await reach(jobId, 'Running');
    await store.jobs.updateConfig(jobId, (c) => ({ ...c, stop: 'checkpoint' }));
    await reach(jobId, 'Stopped');
    expect(controller!.stats().externalConfigChanges).toBe(1);
  });

  it('a config write that fails hands the runtime the stored config back: the job returns to what the store holds', async () => {
    const jobId = await create();
    const running = await reach(jobId, 'Running');
    const jobs = controller!.store.jobs;
    const real = jobs.updateConfig.bind(jobs);
    let failures = 1;
    jobs.updateConfig = (...args) => (failures-- > 0 ? Promise.reject(new StoreUnavailableError('updateConfig')) : real(...args));
    const reply = await configure(jobId, { stop: 'immediate' });
    expect(reply.error?.code).toBe('unavailable');
    // The runtime had the update while its write was in flight, so the job began to stop; the stored
    // config (run) wins again and the job runs at the next generation.
    await eventually(() => expect(states.some((s) => s.job_id === jobId && s.state === 'Stopping')).toBe(true));
    const after = await eventually(
      async () => {
        const v = await view(jobId);
        expect(v.state).toBe('Running');
        expect(v.generation).toBeGreaterThan(running.generation);
        return v;
      },
      { timeoutMs: 15_000, intervalMs: 50 },
    );
    expect(after.config.stop).toBe('none');
    expect((await store.jobs.get(jobId))!.config.stop).toBe('none');
  });

  it('a config update is answered once stored, with its revision; the transition it causes is stored beside it', async () => {
    const jobId = await create();
    await reach(jobId, 'Running');
    const reply = await configure(jobId, { stop: 'immediate' });
    expect(reply.error).toBeUndefined();
    const record = (await store.jobs.get(jobId))!;
    expect(record.config.stop).toBe('immediate');
    expect(record.revisions.config).toBe(reply['revision']);
    await eventually(async () => expect((await store.jobs.get(jobId))!.status.state).toBe('Stopped'));
  });

  it("serves a job's checkpoint history and one checkpoint's operators and subtask spans; the CLI draws it; a restart keeps the history", async () => {
    const jobId = await create();
    await reach(jobId, 'Running');
    const history = await eventually(
      async () => {
        const reply = jobCheckpointsReplySchema.parse(await request(subjects.apiJobCheckpoints(jobId), { v: 1 }));
        expect(reply.data.filter((c) => c.status === 'ready').length).toBeGreaterThanOrEqual(2);
        return reply.data;
      },
      { timeoutMs: 15_000, intervalMs: 100 },
    );
    expect(history.map((c) => c.epoch)).toEqual([...history.map((c) => c.epoch)].sort((a, b) => b - a));
    const ready = history.find((c) => c.status === 'ready')!;
    expect(ready).toMatchObject({ backend: 'jetstream', checkpoint_type: 'scheduled', failure: null });
    expect(ready.events.map((e) => e.event)).toEqual(['Checkpointing', 'CheckpointingOperators', 'WritingMetadata']);
    expect(ready.events.every((e) => e.finish_time !== null && e.finish_time >= e.start_time)).toBe(true);

    const details = checkpointDetailsReplySchema.parse(await request(subjects.apiJobCheckpoint(jobId), { v: 1, epoch: ready.epoch }));
    expect(details.checkpoint.epoch).toBe(ready.epoch);
    expect(details.data.map((o) => o.operator_id).sort()).toEqual(['cnt', 'key', 'out', 'src']);
    for (const operator of details.data) {
      expect(operator.subtasks).toHaveLength(1);
      expect(operator.subtasks[0]!.worker_id).toBe('w1');
      expect(operator.subtasks[0]!.event_spans.map((s) => s.event)).toContain('Sync');
    }
    // Operators behind an input wait for the barrier on it: their subtasks show an Alignment span.
    expect(details.data.find((o) => o.operator_id === 'cnt')!.subtasks[0]!.event_spans.map((s) => s.event)).toContain('Alignment');
    expect(details.data.find((o) => o.operator_id === 'cnt')!.bytes).toBeGreaterThan(0);

    expect((await request(subjects.apiJobCheckpoint(jobId), { v: 1, epoch: 999_999 })).error?.code).toBe('unknown_checkpoint');
    expect((await request(subjects.apiJobCheckpoint(jobId), { v: 1, epoch: -1 })).error?.code).toBe('bad_schema');
    expect((await request(subjects.apiJobCheckpoints(jobId), 'not json')).error?.code).toBe('bad_json');
    expect((await request(subjects.apiJobCheckpoints('job-nope'), { v: 1 })).error?.code).toBe('unknown_job');

    const lines: string[] = [];
    const io = { out: (l: string) => lines.push(l), err: (l: string) => lines.push(l) };
    expect(await jobsCommand(['jobs', 'checkpoints', jobId, String(ready.epoch), '--nats', server.url], io)).toBe(0);
    expect(lines.join('\n')).toMatch(new RegExp(`^checkpoint ${ready.epoch} of ${jobId}`));
    expect(lines.join('\n')).toMatch(/\[0\] Sync\s+\|[ █>]+\|/);
    lines.length = 0;
    expect(await jobsCommand(['jobs', 'checkpoints', jobId, '--nats', server.url, '--json'], io)).toBe(0);
    expect(jobCheckpointsReplySchema.parse(JSON.parse(lines[0]!)).job_id).toBe(jobId);

    // A new controller knows the epochs from their records.
    await controller!.stop();
    await start();
    await eventually(async () => {
      const after = jobCheckpointsReplySchema.parse(await request(subjects.apiJobCheckpoints(jobId), { v: 1, include_failed: false }));
      expect(after.data.find((c) => c.epoch === ready.epoch)).toMatchObject({ status: 'ready', generation: ready.generation });
    });
  });

  it('resumes jobs after a controller restart: Running stays Running at its generation with its tasks, Stopped stays Stopped', async () => {
    const runningId = await create();
    const stoppedId = await create();
    await reach(runningId, 'Running');
    await reach(stoppedId, 'Running');
    await configure(stoppedId, { stop: 'checkpoint' });
    const stoppedBefore = await reach(stoppedId, 'Stopped');
    const before = (await store.jobs.get(runningId))!;
    expect(before.status.state).toBe('Running');

    await controller!.stop();
    states = [];
    await start();

    // Re-attached to its tasks: the same generation, no transition, the tasks never stopped.
    await eventually(async () => {
      const v = await view(runningId);
      expect(v.state).toBe('Running');
      expect(v.waiting).toBeNull();
    }, { timeoutMs: 20_000 });
    expect((await view(runningId)).generation).toBe(before.status.generation);
    expect(states.filter((s) => s.job_id === runningId)).toEqual([]);
    expect(worker!.running().get(runningId)).toBe(before.status.generation);

    const stoppedAfter = await view(stoppedId);
    expect(stoppedAfter.state).toBe('Stopped');
    expect(stoppedAfter.generation).toBe(stoppedBefore.generation);
    expect(stoppedAfter.finish_time).toBe(stoppedBefore.finish_time);
    expect(states.filter((s) => s.job_id === stoppedId)).toEqual([]);

    // The resumed Stopped job starts again on request.
    await configure(stoppedId, { stop: 'none' });
    const restarted = await reach(stoppedId, 'Running');
    expect(restarted.generation).toBe(stoppedBefore.generation + 1);

    // The event log has a row for every state change, a controller restart included: each row starts where the last ended.
    for (const jobId of [runningId, stoppedId]) {
      const rows = (await store.log.page(jobId, { kind: 'transition', limit: 100 })).data.reverse().flatMap((r) => (r.kind === 'transition' ? [r] : []));
      expect(rows[0]?.from).toBe('Created');
      for (let i = 1; i < rows.length; i++) expect(rows[i]!.from, `${jobId} row ${i}`).toBe(rows[i - 1]!.to);
      expect(rows.at(-1)?.to).toBe((await view(jobId)).state);
    }
  });

  it('a stop that arrives while a restarted controller reconciles with the workers: Stopped, its tasks end, and no slot stays booked', async () => {
    // Heartbeats every 2 s: the restarted controller reconciles until the worker's next one, so the stop below arrives meanwhile.
    await controller!.stop();
    await worker!.stop('immediate');
    await start({ heartbeatIntervalMs: 2_000 });
    worker = await startTestWorker(await connect('worker-slow-heartbeats'));
    const jobId = await create();
    const before = await reach(jobId, 'Running');

    await controller!.stop();
    await start({ heartbeatIntervalMs: 2_000 });
    const stopping = await configure(jobId, { stop: 'immediate' });
    expect(stopping.error).toBeUndefined();
    const stopped = await reach(jobId, 'Stopped');
    expect(stopped.generation).toBe(before.generation);
    // This controller did not know the worker yet (it registers again at its next heartbeat), so the stop found
    // nothing to stop: the tasks go as orphans once the worker has reported them for consecutive heartbeats.
    // The adoption the stop cut short took no slot, so nothing keeps them.
    await eventually(() => expect(worker!.running().has(jobId)).toBe(false), { timeoutMs: 12_000, intervalMs: 100 });
    await new Promise((resolve) => setTimeout(resolve, 4_500)); // two more heartbeats: the slots stay free
    const workers = listWorkersReplySchema.parse(await request(subjects.apiWorkersList(), { v: 1 })).data;
    expect(workers.map((w) => ({ allocations: w.allocations, free: w.free_slots === w.slots }))).toEqual([{ allocations: [], free: true }]);
    expect(worker.running().has(jobId)).toBe(false);
  }, 30_000);

  it('a restarted controller appends the transition row the previous one stored the state of but did not log', async () => {
    const jobId = await create();
    await reach(jobId, 'Running');
    await controller!.stop();
    // As if the controller had died between the status write of Running → Stopping and its log row.
    const at = Date.now();
    await store.jobs.updateStatus(jobId, (s) => ({ ...s, state: 'Stopping', updatedAt: at, transition: { from: 'Running', at } }));
    await start();
    const rows = (await store.log.page(jobId, { kind: 'transition', limit: 100 })).data.flatMap((r) => (r.kind === 'transition' ? [r] : []));
    // Newest first: the rewrite of the restart table (Stopping → Stopped) after the row that was missing.
    expect(rows.slice(0, 2).map((r) => [r.from, r.to])).toEqual([
      ['Stopping', 'Stopped'],
      ['Running', 'Stopping'],
    ]);
    expect(rows[1]!.at).toBe(at);
    // A log that has the row gets none twice.
    await controller!.stop();
    await start();
    expect((await store.log.page(jobId, { kind: 'transition', limit: 100 })).data).toHaveLength(rows.length);
  });
  it('hands every job actor to the inspector', async () => {
    await controller!.stop();
    const seen: string[] = [];
    const inspector = { inspect: { next: (e: InspectionEvent) => seen.push(e.type) }, stop: () => Promise.resolve() } as unknown as JobInspector;
    controller = await startController(nc, { log, heartbeatIntervalMs: 200, policy: POLICY, inspector });
    const jobId = await create();
    await reach(jobId, 'Running');
    expect(seen).toContain('@xstate.actor');
    expect(seen).toContain('@xstate.event');
  });
});

describe('controller helpers', () => {
  it('maps stored states per the takeover table', () => {
    expect(takeoverPlan('Created', false)).toEqual({ resumeState: undefined, rewrite: undefined });
    for (const s of ['Stopped', 'Finished', 'Failed'] as const) expect(takeoverPlan(s, false)).toEqual({ resumeState: s, rewrite: undefined });
    for (const s of ['Compiling', 'Scheduling', 'Recovering', 'Restarting'] as const) {
      expect(takeoverPlan(s, false)).toEqual({ resumeState: undefined, rewrite: undefined });
    }
    // The tasks of a Running (or Rescaling) job run on: its new owner re-attaches to them.
    for (const s of ['Running', 'Rescaling'] as const) expect(takeoverPlan(s, false)).toEqual({ resumeState: 'Running', rewrite: undefined });
    expect(takeoverPlan('Failing', false)).toEqual({ resumeState: 'Failed', rewrite: 'Failed' });
    expect(takeoverPlan('Stopping', false)).toEqual({ resumeState: 'Stopped', rewrite: 'Stopped' });
    expect(takeoverPlan('CheckpointStopping', false)).toEqual({ resumeState: 'Stopped', rewrite: 'Stopped' });
    expect(takeoverPlan('Finishing', false)).toEqual({ resumeState: 'Finished', rewrite: 'Finished' });
    // A last epoch still committing: a new generation restores it and sends its commits before finishing.
    expect(takeoverPlan('Finishing', true)).toEqual({ resumeState: undefined, rewrite: undefined });
  });

  it('makes time-ordered job ids', () => {
    const a = newJobId(1_000);
    const b = newJobId(2_000_000_000_000);
    expect(a < b).toBe(true);
    expect(a).toMatch(/^[A-Za-z0-9_-]{1,64}$/);
  });
});
