import { jetstream } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { pino } from 'pino';
import { afterEach, describe, expect } from 'vitest';
import { DEFAULT_CONFIG } from '../../machines/job/policy.js';
import type { DesiredConfig, JobPolicy } from '../../machines/job/types.js';
import { createJobRuntime, type CheckpointRecord, type JobRuntime, type JobRuntimeOptions, type RuntimeSpec } from '../../src/controller/job-runtime.js';
import { JobRuntimes } from '../../src/controller/job-runtimes.js';
import { WorkerRegistry } from '../../src/controller/registry.js';
import { startWorkerService, type WorkerService } from '../../src/controller/worker-service.js';
import { decode, encode, jobStateEventSchema, subjects, type JobStateEvent, type TaskEvent } from '../../src/protocol/index.js';
import { openStore, StoreUnavailableError, type LogRow, type Store } from '../../src/store/index.js';
import { eventually } from '../support/nats.js';
import { testWithNatsServer } from '../support/nats-fixtures.js';
import { impulseToSinkGraph } from '../support/pipelines.js';
import { SimWorker, type SimWorkerOptions } from '../support/sim-worker.js';

const OPERATORS = ['impulse', 'log'];
const FAST_POLICY: Partial<JobPolicy> = {
  heartbeatTimeoutMs: 0,
  restartBackoff: { initialMs: 20, maxMs: 50, multiplier: 2, jitter: 0 },
  stateBackoff: { initialMs: 20, maxMs: 50, multiplier: 2, jitter: 0 },
  progressPollMs: 20,
};

/** impulse[p] → log[p] over a forward edge: slot k hosts impulse[k] and log[k]. */
function pipeline(parallelism = 2, operator = 'impulse'): RuntimeSpec {
  return { graph: impulseToSinkGraph({ source: operator, nodeParallelism: parallelism, rate: 'max' }) };
}

/** Only the pipelines' operators, and a state per subtask: the checkpoint history must leave it to the record. */
const SIM_OPTIONS: SimWorkerOptions = { operators: OPERATORS, tableMetadata: (s) => ({ node: s.node_id, index: s.subtask_index }) };

const it = testWithNatsServer();

describe('job runtime on a real server', () => {
  let nc: NatsConnection;
  let workerNc: NatsConnection;
  let observer: NatsConnection;
  let store: Store;
  let registry: WorkerRegistry;
  let service: WorkerService;
  const runtimes = new JobRuntimes();
  const log = pino({ level: 'silent' });
  let started: JobRuntime[] = [];
  let counter = 0;

  it.beforeAll(async ({ connect }) => {
    nc = await connect('controller');
    workerNc = await connect('workers');
    observer = await connect('observer');
    store = await openStore(nc, { requestTimeoutMs: 1_000, operationTimeoutMs: 8_000 });
  });

  afterEach(async () => {
    await Promise.all(started.map((r) => r.stop()));
    started = [];
    await service?.stop();
  });

  async function cluster(...workers: Array<[string, number]>): Promise<SimWorker[]> {
    registry = new WorkerRegistry();
    service = startWorkerService(nc, registry, { log, onLost: runtimes.onWorkerLost });
    await service.ready();
    const sims = workers.map(([id, slots]) => new SimWorker(workerNc, `${id}-${++counter}`, slots, SIM_OPTIONS));
    for (const sim of sims) await sim.start();
    return sims;
  }

  async function launch(spec: RuntimeSpec, config: Partial<DesiredConfig> = {}, storeFor: (real: Store) => Store = (real) => real, extra: Partial<JobRuntimeOptions> = {}) {
    const jobId = `job-${process.pid}-${++counter}`;
    const fullConfig = { ...DEFAULT_CONFIG, checkpointIntervalMs: 0, ...config };
    await store.jobs.create(jobId, { name: 'p', ...spec }, { ...fullConfig, ignoreStateBeforeEpoch: null });
    const states: JobStateEvent[] = [];
    const sub = observer.subscribe(subjects.jobState(jobId), {
      callback: (_e, m) => {
        const r = decode(jobStateEventSchema, m.data);
        if (r.ok) states.push(r.value);
      },
    });
    await observer.flush();
    const runtime = createJobRuntime({ nc, store: storeFor(store), registry, jobId, spec, config: fullConfig, policy: FAST_POLICY, log, requestTimeoutMs: 500, ...extra });
    runtimes.add(jobId, runtime);
    started.push(runtime);
    const state = () => runtime.actor.getSnapshot();
    const top = () => {
      const v = state().value;
      return typeof v === 'string' ? v : Object.keys(v)[0];
    };
    const rows = async (): Promise<LogRow[]> => (await store.log.since(jobId, 0, 1000)).data;
    return { jobId, runtime, states, sub, state, top, rows };
  }

  it('a status write the store cannot take is retried until it lands, and its log rows are appended once', async () => {
    await cluster(['a', 2]);
    let failures = 0;
    // The first three status writes find the store unavailable (as with NATS restarting).
    const flaky = (real: Store): Store => ({
      ...real,
      jobs: Object.assign(Object.create(real.jobs) as Store['jobs'], {
        updateStatus: (...args: Parameters<Store['jobs']['updateStatus']>) => {
          if (failures < 3) {
            failures++;
            return Promise.reject(new StoreUnavailableError('updateStatus'));
          }
          return real.jobs.updateStatus(...args);
        },
      }),
    });
    const job = await launch(pipeline(1), {}, flaky);
    await eventually(() => expect(job.top()).toBe('Running'));
    await eventually(async () => expect((await store.jobs.get(job.jobId))?.status.state).toBe('Running'), { timeoutMs: 10_000 });
    expect(failures).toBe(3);
    expect(job.runtime.stats().persistFailures).toBe(3);
    const transitions = (await job.rows()).filter((r) => r.kind === 'transition').map((r) => (r.kind === 'transition' ? r.to : ''));
    expect(transitions).toEqual(['Compiling', 'Scheduling', 'Running']);
  });

  it('write-ahead: the status naming a generation is stored before its start requests go out (a crash never leaves a started generation the store does not name)', async () => {
    await cluster(['a', 2]);
    /** When the store first held a status naming generation 1. */
    let storedGeneration1At: number | undefined;
    // Status writes are slow (200 ms each), as with a store under load.
    const slow = (real: Store): Store => ({
      ...real,
      jobs: Object.assign(Object.create(real.jobs) as Store['jobs'], {
        updateStatus: async (...args: Parameters<Store['jobs']['updateStatus']>) => {
          await new Promise((resolve) => setTimeout(resolve, 200));
          const written = await real.jobs.updateStatus(...args);
          if (written.value.generation >= 1) storedGeneration1At ??= performance.now();
          return written;
        },
      }),
    });
    const startsAt: number[] = [];
    const starts = observer.subscribe('weir.worker.*.start', { callback: () => void startsAt.push(performance.now()) });
    await observer.flush();
    try {
      const job = await launch(pipeline(1), {}, slow);
      await eventually(() => expect(job.top()).toBe('Running'), { timeoutMs: 10_000 });
      expect(startsAt.length).toBeGreaterThan(0);
      expect(storedGeneration1At).toBeDefined();
      expect(startsAt[0]!).toBeGreaterThanOrEqual(storedGeneration1At!);
    } finally {
      starts.unsubscribe();
    }
  });

  it('creates → Running: status, transitions and state events persisted; a periodic checkpoint is recorded', async () => {
    const sims = await cluster(['a', 1], ['b', 1]);
    const job = await launch(pipeline(2), { checkpointIntervalMs: 100 });
    await eventually(() => expect(job.top()).toBe('Running'));
    await job.runtime.flush();

    const record = await store.jobs.get(job.jobId);
    expect(record?.status).toMatchObject({ state: 'Running', generation: 1 });
    const transitions = (await job.rows()).filter((r) => r.kind === 'transition').map((r) => (r.kind === 'transition' ? `${r.from}>${r.to}` : ''));
    expect(transitions).toEqual(['Created>Compiling', 'Compiling>Scheduling', 'Scheduling>Running']);
    await eventually(() => expect(job.states.map((s) => s.state)).toEqual(['Compiling', 'Scheduling', 'Running']));
    expect(job.states.map((s) => s.seq)).toEqual([1, 2, 3]);
    expect(job.states[2]).toMatchObject({ previous: 'Scheduling', generation: 1 });
    expect(job.states[2]!.at).toBeGreaterThan(Date.now() * 100); // µs, not ms
    expect(registry.get(sims[0]!.id)?.allocations).toEqual([{ jobId: job.jobId, generation: 1, slots: 1 }]);

    // The periodic checkpoint: requests reach both (source-hosting) workers, completions record the epoch.
    await eventually(() => expect(job.runtime.coordinator.lastCompletedEpoch).toBeGreaterThanOrEqual(1), { timeoutMs: 5_000 });
    for (const sim of sims) expect(sim.checkpointRequests[0]).toMatchObject({ job_id: job.jobId, generation: 1, epoch: 1, then_stop: false });
    const kv = await new Kvm(jetstream(nc)).open('weir_checkpoints');
    const durable = (await kv.get(`${job.jobId}.1`))?.json<CheckpointRecord>();
    expect(durable).toMatchObject({ job_id: job.jobId, generation: 1, epoch: 1, kind: 'periodic' });
    expect(durable?.subtasks.map((s) => `${s.node_id}[${s.subtask_index}]`).sort()).toEqual(['out[0]', 'out[1]', 'src[0]', 'src[1]']);
    expect(durable?.operators.map((o) => [o.node_id, o.completed_subtasks])).toEqual([
      ['src', 2],
      ['out', 2],
    ]);
    expect(durable?.spans.map((s) => s.span)).toEqual(['Checkpointing', 'CheckpointingOperators', 'WritingMetadata']);
    // The record is written inside WritingMetadata: the spans that close after the write are open in it.
    expect(durable?.spans.map((s) => s.finish !== null)).toEqual([false, true, false]);
    // The history keeps only the newest completed checkpoint: at 100 ms, that may be a later epoch by now.
    const remembered = job.runtime.coordinator.history().find((c) => c.epoch === job.runtime.coordinator.lastCompletedEpoch);
    expect(remembered?.spans.map((s) => s.span)).toEqual(['Checkpointing', 'CheckpointingOperators', 'WritingMetadata']);
    for (const span of remembered?.spans ?? []) expect(span.finish).toBeGreaterThanOrEqual(span.start);
    // The history keeps sizes and times; the subtasks' state is in the record only.
    expect(remembered?.subtasks.every((s) => s.completed !== null && Object.keys(s.completed.table_metadata).length === 0)).toBe(true);

    expect(job.top()).toBe('Running');
  });

  it('periodic checkpoints start on the configured grid (10 ms unless told)', async () => {
    await cluster(['a', 4]);
    // 730 is no multiple of 10: only the configured grid puts the due time there.
    const coarse = await launch(pipeline(1), { checkpointIntervalMs: 1_000 }, undefined, { checkpointGridMs: 730 });
    const usual = await launch(pipeline(1), { checkpointIntervalMs: 1_000 });
    await eventually(() => expect([coarse.top(), usual.top()]).toEqual(['Running', 'Running']));
    await eventually(() => expect(coarse.runtime.coordinator.nextDue).not.toBeNull());
    await eventually(() => expect(usual.runtime.coordinator.nextDue).not.toBeNull());
    expect(coarse.runtime.coordinator.nextDue! % 730).toBe(0);
    expect(usual.runtime.coordinator.nextDue! % 10).toBe(0);
  });

  it('stop=checkpoint → CheckpointStopping → Stopped on the then_stop barrier; status persisted', async () => {
    const sims = await cluster(['a', 1], ['b', 1]);
    const job = await launch(pipeline(2));
    await eventually(() => expect(job.top()).toBe('Running'));
    job.runtime.send({ type: 'config.update', config: { ...job.state().context.config, stop: 'checkpoint' } });
    await eventually(() => expect(job.top()).toBe('Stopped'));
    await job.runtime.flush();

    for (const sim of sims) expect(sim.checkpointRequests.at(-1)).toMatchObject({ generation: 1, then_stop: true });
    const finalEpoch = job.state().context.checkpoint.finalEpoch;
    expect(finalEpoch).not.toBeNull();
    expect(job.runtime.coordinator.history().find((c) => c.epoch === finalEpoch)?.kind).toBe('final');
    expect((await store.jobs.get(job.jobId))?.status).toMatchObject({ state: 'Stopped', generation: 1 });
    expect((await job.rows()).filter((r) => r.kind === 'transition').map((r) => (r.kind === 'transition' ? r.to : ''))).toEqual([
      'Compiling',
      'Scheduling',
      'Running',
      'CheckpointStopping',
      'Stopped',
    ]);
    await eventually(() => expect(job.states.at(-1)).toMatchObject({ state: 'Stopped', previous: 'CheckpointStopping', seq: 5 }));
    await eventually(() => expect(registry.get(sims[0]!.id)?.allocations).toEqual([]));
  });

  it('an unknown operator → Failed with a user-domain error in the log', async () => {
    await cluster(['a', 2]);
    const job = await launch(pipeline(1, 'no_such_operator'));
    await eventually(() => expect(job.top()).toBe('Failed'));
    await job.runtime.flush();
    const status = (await store.jobs.get(job.jobId))?.status;
    expect(status).toMatchObject({ state: 'Failed', failure: { domain: 'user', hint: 'no_retry' } });
    expect(status?.failure?.message).toMatch(/unknown operator "no_such_operator"/);
    const errors = (await job.rows()).filter((r) => r.kind === 'error');
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ domain: 'user', hint: 'no_retry' });
    await eventually(() => expect(job.states.at(-1)).toMatchObject({ state: 'Failed', failure: { domain: 'user' } }));
  });

  it('a lost worker → Recovering → rescheduled on the remaining workers at generation + 1; stale messages ignored', async () => {
    const [a, b, c] = await cluster(['a', 1], ['b', 1], ['c', 2]);
    const job = await launch(pipeline(2));
    await eventually(() => expect(job.top()).toBe('Running'));
    expect(a!.hosted.get(job.jobId)?.generation).toBe(1);
    expect(b!.hosted.get(job.jobId)?.generation).toBe(1);
    expect(c!.hosted.has(job.jobId)).toBe(false);

    await b!.leave(); // deregister → worker-service onLost → runtimes.onWorkerLost
    await eventually(() => expect(job.state().context.restarts).toBe(1));
    await eventually(() => expect(job.top()).toBe('Running'));
    expect(job.state().context.generation).toBe(2);
    expect(a!.hosted.get(job.jobId)?.generation).toBe(2);
    expect(c!.hosted.get(job.jobId)?.generation).toBe(2);
    expect(a!.stopRequests).toContainEqual(expect.objectContaining({ generation: 1, mode: 'kill' }));
    await job.runtime.flush();
    expect((await store.jobs.get(job.jobId))?.status).toMatchObject({ state: 'Running', generation: 2, restarts: 1 });
    const to = (await job.rows()).flatMap((r) => (r.kind === 'transition' ? [r.to] : []));
    expect(to.slice(2)).toEqual(['Running', 'Recovering', 'Compiling', 'Scheduling', 'Running']);
    expect((await job.rows()).some((r) => r.kind === 'error' && /was lost/.test(r.message))).toBe(true);

    // Generation 1 is fenced: its failures, completions and finishes change nothing.
    const before = job.runtime.stats().stale;
    const old = { v: 1 as const, job_id: job.jobId, generation: 1, worker_id: a!.id, node_id: 'src', subtask_index: 0, at: Date.now() * 1000 };
    workerNc.publish(subjects.jobTasks(job.jobId), encode({ ...old, event: 'failed', domain: 'user', hint: 'no_retry', reason: 'boom' } satisfies TaskEvent));
    workerNc.publish(subjects.jobTasks(job.jobId), encode({ ...old, event: 'finished' } satisfies TaskEvent));
    workerNc.publish(subjects.jobTasks(job.jobId), encode({ v: 1, nonsense: true }));
    await workerNc.flush();
    await eventually(() => expect(job.runtime.stats().stale).toBe(before + 2));
    expect(job.runtime.stats().rejected).toBe(1);
    expect(job.top()).toBe('Running');
    // The machine keeps the last failure (the loss) while running again; the stale one did not replace it.
    expect(job.state().context.failure?.message).toMatch(/was lost/);

    // A current-generation failure is acted on (contrast).
    const cur = { ...old, generation: 2 };
    workerNc.publish(subjects.jobTasks(job.jobId), encode({ ...cur, event: 'failed', domain: 'user', hint: 'no_retry', reason: 'boom' } satisfies TaskEvent));
    await eventually(() => expect(job.top()).toBe('Failed'));
    expect(job.state().context.failure).toMatchObject({ domain: 'user', hint: 'no_retry' });
  });

  it('a stop while a generation is starting (lifecycle fuzzer, seed 450132480): the late start is killed, no slot stays booked', async () => {
    const [a] = await cluster(['a', 2]);
    let releaseStarts!: () => void;
    a!.holdStarts = new Promise<void>((resolve) => (releaseStarts = resolve));
    const job = await launch(pipeline(1));
    await eventually(() => expect(registry.get(a!.id)?.allocations).toEqual([{ jobId: job.jobId, generation: 1, slots: 1 }]));
    expect(job.top()).toBe('Scheduling');
    job.runtime.send({ type: 'config.update', config: { ...DEFAULT_CONFIG, checkpointIntervalMs: 0, stop: 'immediate' } });
    await eventually(() => expect(job.top()).toBe('Stopped'));
    releaseStarts();
    // The worker started the generation after the job had stopped: it must be told to kill it.
    await eventually(() => expect(a!.stopRequests).toContainEqual(expect.objectContaining({ job_id: job.jobId, generation: 1, mode: 'kill' })));
    await eventually(() => expect(a!.hosted.has(job.jobId)).toBe(false));
    expect(registry.get(a!.id)?.allocations).toEqual([]);
    expect(job.top()).toBe('Stopped');
  });

  it('a worker that rejects the start: slots released, the next attempt (generation + 1) runs', async () => {
    const [a, b] = await cluster(['a', 1], ['b', 1]);
    b!.rejectStarts = 1;
    const job = await launch(pipeline(2));
    await eventually(() => expect(job.top()).toBe('Running'));
    expect(job.state().context.generation).toBe(2);
    expect(a!.stopRequests).toContainEqual(expect.objectContaining({ generation: 1, mode: 'kill' }));
    for (const sim of [a!, b!]) expect(registry.get(sim.id)?.allocations).toEqual([{ jobId: job.jobId, generation: 2, slots: 1 }]);
  });
});
