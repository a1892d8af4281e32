import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import { pino } from 'pino';
import { afterAll, afterEach, describe, expect } from 'vitest';
import { WorkerRegistry } from '../../src/controller/registry.js';
import { startWorkerService, type WorkerService } from '../../src/controller/worker-service.js';
import {
  ackSchema,
  checkpointEventSchema,
  decode,
  decodeReply,
  encode,
  previewOutputSchema,
  subjects,
  taskEventSchema,
  type CheckpointEvent,
  type Graph,
  type PreviewOutput,
  type StartExecution,
  type TaskEvent,
} from '../../src/protocol/index.js';
import { startWorker, type WorkerHandle } from '../../src/worker/process.js';
import { startNatsServer, type NatsServerHandle } from '../support/nats-server.js';
import { openCheckpointStore } from '../../src/checkpoint/index.js';
import { restoreSnapshot } from '../../src/worker/subtask-state.js';
import { connectTo, eventually } from '../support/nats.js';
import { testWithNatsServer, type Connect } from '../support/nats-fixtures.js';
import { impulseCountGraph, impulseToSinkGraph } from '../support/pipelines.js';

const silent = pino({ level: 'silent' });

/** impulse → count → preview, one subtask each. */
function graph(events: number | undefined, rate: number): Graph {
  return impulseCountGraph({ events, rate, sinkEdge: 'forward' });
}

function startMessage(job: string, generation: number, g: Graph): StartExecution {
  return {
    v: 1,
    job_id: job,
    generation,
    program: { graph: g, assignments: g.nodes.map((n) => ({ node_id: n.id, subtasks: [0] })) },
    start_epoch: 0,
    min_epoch: 0,
    checkpoint_interval_micros: 0,
  };
}

/** Everything a job's worker publishes, each message checked against its protocol schema. */
interface Observed {
  tasks: TaskEvent[];
  checkpoints: CheckpointEvent[];
  outputs: PreviewOutput[];
  invalid: string[];
  subs: Subscription[];
}

function observe(nc: NatsConnection, job: string): Observed {
  const seen: Observed = { tasks: [], checkpoints: [], outputs: [], invalid: [], subs: [] };
  const watch = <T>(subject: string, schema: Parameters<typeof decode>[0], into: T[]) =>
    nc.subscribe(subject, {
      callback: (_err, msg) => {
        const result = decode(schema, msg.data);
        if (result.ok) into.push(result.value as T);
        else seen.invalid.push(`${subject}: ${result.error.message}`);
      },
    });
  seen.subs.push(
    watch(subjects.jobTasks(job), taskEventSchema, seen.tasks),
    watch(subjects.jobCheckpoints(job), checkpointEventSchema, seen.checkpoints),
    watch(subjects.jobOutput(job), previewOutputSchema, seen.outputs),
  );
  return seen;
}

const keys = (events: Array<{ node_id: string; subtask_index: number }>) => [...new Set(events.map((e) => `${e.node_id}/${e.subtask_index}`))].sort();

const it = testWithNatsServer();

describe('worker process on a real server', () => {
  let server: NatsServerHandle;
  let connect: Connect;
  let nc: NatsConnection;
  let registry: WorkerRegistry;
  let service: WorkerService;
  const workers: WorkerHandle[] = [];

  async function newWorker(workerId: string, slots = 4, extra: { maxMessageBytes?: number } = {}): Promise<WorkerHandle> {
    const conn = await connect(workerId);
    const worker = startWorker(conn, { workerId, slots, log: silent, metricsIntervalMs: 50, ...extra });
    workers.push(worker);
    await eventually(() => expect(registry.get(workerId)).toBeDefined());
    return worker;
  }

  async function ask(subject: string, body: unknown) {
    const reply = await nc.request(subject, body instanceof Uint8Array ? body : encode(body), { timeout: 5_000 });
    return decodeReply(ackSchema, reply.data);
  }

  async function expectError(subject: string, body: unknown, code: string): Promise<void> {
    const result = await ask(subject, body);
    expect(result.ok).toBe(false);
    if (!result.ok) {
      expect(result.remote).toBe(true);
      expect(result.error.code).toBe(code);
    }
  }

  it.beforeAll(async ({ natsServer, connect: connectToServer }) => {
    server = natsServer;
    connect = connectToServer;
    nc = await connect('controller');
    registry = new WorkerRegistry({ heartbeatTimeoutMs: 30_000 });
    service = startWorkerService(nc, registry, { log: silent, heartbeatIntervalMs: 100, metricsIntervalMs: 50 });
    await service.ready();
  });

  afterEach(async () => {
    await Promise.all(workers.splice(0).map((w) => w.stop()));
  });

  afterAll(async () => {
    await service?.stop();
  });

  it('registers, heartbeats, and registers again after unknown_worker', async () => {
    const worker = await newWorker('w-reg', 3);
    expect(registry.get('w-reg')).toMatchObject({ slots: 3, live: true });
    expect(registry.get('w-reg')?.operators).toEqual(expect.arrayContaining(['impulse', 'count', 'preview']));
    const before = service.stats().heartbeats;
    await eventually(() => expect(service.stats().heartbeats).toBeGreaterThan(before + 2));
    expect(worker.registered()).toBe(true);

    // A restarted controller forgets the worker: the next heartbeat gets unknown_worker.
    registry.deregister('w-reg');
    await eventually(() => expect(registry.get('w-reg')).toBeDefined());
    expect(worker.stats().registrations).toBe(2);
  });

  it('retries registration until a controller answers', async () => {
    await using other = await startNatsServer({ jetstream: true });
    const conn = await connectTo(other.url, 'w-late');
    const worker = startWorker(conn, { workerId: 'w-late', slots: 1, log: silent, requestTimeoutMs: 200 });
    await sleep(500);
    expect(worker.registered()).toBe(false);
    const controller = await connectTo(other.url, 'late-controller');
    const lateRegistry = new WorkerRegistry();
    const lateService = startWorkerService(controller, lateRegistry, { log: silent, heartbeatIntervalMs: 100 });
    try {
      await eventually(() => expect(lateRegistry.get('w-late')).toBeDefined(), { timeoutMs: 10_000 });
      // The registry has it as soon as the request is handled; the worker once the reply reaches it.
      await eventually(() => expect(worker.registered()).toBe(true));
      await worker.stop();
      await eventually(() => expect(lateRegistry.get('w-late')).toBeUndefined());
    } finally {
      await lateService.stop();
      await controller.close();
    }
  });

  it('runs a job: started, checkpoint, then_stop finishes every subtask, preview rows, metrics', async () => {
    const worker = await newWorker('w-run');
    const seen = observe(nc, 'job-a');
    await nc.flush();
    expect(await ask(subjects.workerStart('w-run'), startMessage('job-a', 1, graph(200, 100)))).toEqual({ ok: true, value: { v: 1, ok: true } });
    await eventually(() => expect(keys(seen.tasks.filter((e) => e.event === 'started'))).toEqual(['cnt/0', 'out/0', 'src/0']));
    expect(worker.running()).toEqual(new Map([['job-a', 1]]));

    // Heartbeats and, more often, metrics messages carry the record counts into the registry.
    await eventually(() => {
      const metrics = registry.subtaskMetrics('job-a', 1);
      expect(metrics.map((m) => `${m.node_id}/${m.subtask_index}`)).toEqual(['cnt/0', 'out/0', 'src/0']);
      expect(metrics.find((m) => m.node_id === 'cnt')?.records_in).toBeGreaterThan(0);
      expect(metrics.find((m) => m.node_id === 'src')?.records_out).toBeGreaterThan(0);
    });
    await eventually(() => expect(worker.stats().metricsSent).toBeGreaterThan(0));
    expect(service.stats().received.metrics).toBeGreaterThan(0);

    const checkpoint = (epoch: number, then_stop: boolean) =>
      ask(subjects.workerCheckpoint('w-run'), { v: 1, job_id: 'job-a', generation: 1, epoch, min_epoch: 0, then_stop, timestamp: Date.now() * 1000 });
    expect((await checkpoint(1, false)).ok).toBe(true);
    await eventually(() => expect(keys(seen.checkpoints.filter((e) => e.event === 'completed' && e.epoch === 1))).toEqual(['cnt/0', 'out/0', 'src/0']));
    const types = new Set(seen.checkpoints.map((e) => e.event));
    expect([...types]).toEqual(expect.arrayContaining(['started_checkpointing', 'finished_sync', 'completed']));
    const src = seen.checkpoints.find((e) => e.event === 'completed' && e.node_id === 'src');
    // The state went to the checkpoint store before the completion went out: the record names it.
    expect(src).toMatchObject({ worker_id: 'w-run', generation: 1, table_metadata: { state_ref: { run_id: 'job-a', node_id: 'src-0', epoch: 1 }, tables: null } });
    if (src?.event === 'completed') {
      expect(src.bytes).toBeGreaterThan(0);
      expect(src.finish_time).toBeGreaterThanOrEqual(src.start_time);
      const restored = await restoreSnapshot(await openCheckpointStore(nc), src.table_metadata);
      expect(restored.snapshot).toEqual({ next_counter: expect.any(Number) as number });
    }
    const cnt = seen.checkpoints.find((e) => e.event === 'completed' && e.node_id === 'cnt');
    expect(cnt).toMatchObject({ table_metadata: { tables: ['counts'] } });
    // The preview sink flushes its rows at every snapshot.
    await eventually(() => expect(seen.outputs.flatMap((o) => o.rows).length).toBeGreaterThan(0));

    // An epoch that is not newer is a conflict.
    const again = await checkpoint(1, false);
    expect(!again.ok && again.error.code).toBe('conflict');

    expect((await checkpoint(2, true)).ok).toBe(true);
    await eventually(() => expect(keys(seen.tasks.filter((e) => e.event === 'finished'))).toEqual(['cnt/0', 'out/0', 'src/0']));
    await eventually(() => expect(seen.outputs.some((o) => o.done === true)).toBe(true));
    expect(seen.tasks.filter((e) => e.event === 'failed')).toEqual([]);
    expect(seen.invalid).toEqual([]);
    await eventually(() => expect(worker.running().size).toBe(0));
    // Nothing of the job runs here any more.
    await expectError(subjects.workerStop('w-run'), { v: 1, job_id: 'job-a', generation: 1, mode: 'immediate' }, 'unknown_job');
    seen.subs.forEach((s) => s.unsubscribe());
  });

  it('answers malformed requests with error replies and changes nothing', async () => {
    const worker = await newWorker('w-bad', 4, { maxMessageBytes: 64 * 1024 });
    const start = subjects.workerStart('w-bad');
    await expectError(start, new TextEncoder().encode('{nope'), 'bad_json');
    await expectError(start, { ...startMessage('job-b', 1, graph(10, 100)), v: 2 }, 'unsupported_version');
    await expectError(start, { v: 1, job_id: 'job-b' }, 'bad_schema');
    await expectError(start, { ...startMessage('job-b', 1, graph(10, 100)), extra: true }, 'bad_schema');
    await expectError(start, encode({ v: 1, pad: 'x'.repeat(100 * 1024) }), 'too_large');
    const wrongNode = startMessage('job-b', 1, graph(10, 100));
    wrongNode.program.assignments = [{ node_id: 'nope', subtasks: [0] }];
    await expectError(start, wrongNode, 'bad_schema');
    const wrongSubtask = startMessage('job-b', 1, graph(10, 100));
    wrongSubtask.program.assignments = [{ node_id: 'src', subtasks: [3] }];
    await expectError(start, wrongSubtask, 'bad_schema');
    const unknownOperator = startMessage('job-b', 1, { nodes: [{ id: 'x', operator: 'kafka', parallelism: 1, config: {} }], edges: [] });
    await expectError(start, unknownOperator, 'unavailable');
    await expectError(subjects.workerStop('w-bad'), { v: 1, job_id: 'job-b', generation: 1, mode: 'sideways' }, 'bad_schema');
    await expectError(subjects.workerCheckpoint('w-bad'), { v: 1, job_id: 'job-b', generation: 1, epoch: 0, min_epoch: 0, then_stop: false, timestamp: 1 }, 'bad_schema');
    await expectError(subjects.workerCommit('w-bad'), { v: 1, job_id: 'job-b', generation: 1, epoch: 1, commits: [] }, 'unknown_job');
    await expectError(subjects.workerCheckpoint('w-bad'), { v: 1, job_id: 'job-b', generation: 1, epoch: 1, min_epoch: 0, then_stop: false, timestamp: 1 }, 'unknown_job');

    expect(worker.running().size).toBe(0);
    expect(worker.stats().rejected).toEqual({ bad_json: 1, unsupported_version: 1, bad_schema: 6, too_large: 1, unavailable: 1, unknown_job: 2 });
    // Still serving: a good start after all that works.
    expect((await ask(start, startMessage('job-b', 1, graph(10, 100)))).ok).toBe(true);
    // Too many slots for this worker.
    const wide = startMessage('job-c', 1, impulseToSinkGraph({ rate: 'max', nodeParallelism: 8 }));
    wide.program.assignments = [{ node_id: 'src', subtasks: [0, 1, 2, 3, 4] }];
    await expectError(start, wide, 'conflict');
    expect([...worker.running().keys()]).not.toContain('job-c');
  });

  it('answers a start whose restore epoch cannot be read with an error reply naming the epoch, not an empty start', async () => {
    const worker = await newWorker('w-restore');
    const start = subjects.workerStart('w-restore');
    // This server has no JetStream, so there is no checkpoint bucket to read.
    const result = await ask(start, { ...startMessage('job-r', 1, graph(10, 100)), restore_epoch: 3, start_epoch: 3 });
    expect(result.ok).toBe(false);
    if (!result.ok) {
      expect(result.error.code).toBe('unavailable');
      expect(result.error.message).toContain('cannot restore epoch 3');
      expect(result.error.message).toContain('weir_checkpoints');
    }
    expect(worker.running().size).toBe(0);
    // The generation was not taken: the controller may retry it.
    expect((await ask(start, startMessage('job-r', 1, graph(10, 100)))).ok).toBe(true);
  });

  it('fences generations: stale requests are rejected, a newer start stops the old one', async () => {
    const worker = await newWorker('w-gen');
    const seen = observe(nc, 'job-g');
    await nc.flush();
    const start = subjects.workerStart('w-gen');
    expect((await ask(start, startMessage('job-g', 2, graph(undefined, 200)))).ok).toBe(true);
    await eventually(() => expect(seen.tasks.filter((e) => e.generation === 2 && e.event === 'started')).toHaveLength(3));

    await expectError(subjects.workerStop('w-gen'), { v: 1, job_id: 'job-g', generation: 1, mode: 'immediate' }, 'stale_generation');
    await expectError(subjects.workerCheckpoint('w-gen'), { v: 1, job_id: 'job-g', generation: 1, epoch: 5, min_epoch: 0, then_stop: true, timestamp: 1 }, 'stale_generation');
    await expectError(start, startMessage('job-g', 1, graph(undefined, 200)), 'stale_generation');
    await expectError(start, startMessage('job-g', 2, graph(undefined, 200)), 'conflict');
    expect(worker.running()).toEqual(new Map([['job-g', 2]]));
    expect(worker.stats().rejected).toMatchObject({ stale_generation: 3, conflict: 1 });

    // Generation 3 fences generation 2 (PR #914): its runners stop before the start is answered, and
    // nothing more is heard of it. The worker publishes data, outputs and replies on one connection, and
    // the server hands them to this one in that order: what generation 2 sent before the fence has
    // arrived with the reply; anything it sent after would arrive among generation 3's data.
    const dataOf = (generation: number) => {
      let messages = 0;
      const sub = nc.subscribe(`weir.data.job-g.${generation}.>`, {
        callback: () => {
          messages++;
        },
      });
      return { messages: () => messages, sub };
    };
    const data2 = dataOf(2);
    await eventually(() => expect(data2.messages()).toBeGreaterThan(0));
    expect((await ask(start, startMessage('job-g', 3, graph(undefined, 200)))).ok).toBe(true);
    const fenced = data2.messages();
    const outputsOf2 = seen.outputs.filter((o) => o.generation === 2).length;
    expect(worker.running()).toEqual(new Map([['job-g', 3]]));
    await eventually(() => expect(seen.tasks.filter((e) => e.generation === 3 && e.event === 'started')).toHaveLength(3));
    await eventually(() => expect(registry.get('w-gen')?.reported).toEqual([{ jobId: 'job-g', generation: 3, slots: 1 }]));
    // Generation 3 runs the same graph at the same rate: while it sends these, a live generation 2 would too.
    const data3 = dataOf(3);
    await nc.flush();
    await eventually(() => expect(data3.messages()).toBeGreaterThanOrEqual(20));
    expect(data2.messages()).toBe(fenced);
    data2.sub.unsubscribe();
    data3.sub.unsubscribe();
    expect(seen.outputs.filter((o) => o.generation === 2).length).toBe(outputsOf2);
    expect(seen.tasks.filter((e) => e.generation === 2 && e.event !== 'started')).toEqual([]);
    await expectError(subjects.workerStop('w-gen'), { v: 1, job_id: 'job-g', generation: 2, mode: 'immediate' }, 'stale_generation');

    expect((await ask(subjects.workerCommit('w-gen'), { v: 1, job_id: 'job-g', generation: 3, epoch: 1, commits: [] })).ok).toBe(true);
    expect((await ask(subjects.workerStop('w-gen'), { v: 1, job_id: 'job-g', generation: 3, mode: 'immediate' })).ok).toBe(true);
    expect(worker.running().size).toBe(0);
    await eventually(() => expect(registry.get('w-gen')?.reported).toEqual([]));
    expect(seen.invalid).toEqual([]);
    seen.subs.forEach((s) => s.unsubscribe());
  });

  it('fences owners: a command with an older owner epoch than one seen for the job is refused, changing nothing', async () => {
    const worker = await newWorker('w-own');
    const start = subjects.workerStart('w-own');
    expect((await ask(start, { ...startMessage('job-o', 1, graph(undefined, 200)), owner_epoch: 2 })).ok).toBe(true);
    await expectError(subjects.workerStop('w-own'), { v: 1, job_id: 'job-o', generation: 1, owner_epoch: 1, mode: 'immediate' }, 'stale_owner');
    await expectError(subjects.workerCheckpoint('w-own'), { v: 1, job_id: 'job-o', generation: 1, owner_epoch: 1, epoch: 1, min_epoch: 0, then_stop: true, timestamp: 1 }, 'stale_owner');
    await expectError(subjects.workerCommit('w-own'), { v: 1, job_id: 'job-o', generation: 1, owner_epoch: 1, epoch: 1, commits: [] }, 'stale_owner');
    expect(worker.running()).toEqual(new Map([['job-o', 1]]));
    expect(worker.stats().rejected).toMatchObject({ stale_owner: 3 });
    // The owner of epoch 2, or a newer one, and a command without an epoch (a lone controller) are obeyed.
    expect((await ask(subjects.workerCommit('w-own'), { v: 1, job_id: 'job-o', generation: 1, owner_epoch: 3, epoch: 1, commits: [] })).ok).toBe(true);
    await expectError(subjects.workerStop('w-own'), { v: 1, job_id: 'job-o', generation: 1, owner_epoch: 2, mode: 'immediate' }, 'stale_owner');
    expect((await ask(subjects.workerStop('w-own'), { v: 1, job_id: 'job-o', generation: 1, mode: 'immediate' })).ok).toBe(true);
    expect(worker.running().size).toBe(0);
  });

  it('stops gracefully on a graceful stop request: every subtask finishes', async () => {
    const worker = await newWorker('w-grace');
    const seen = observe(nc, 'job-s');
    await nc.flush();
    expect((await ask(subjects.workerStart('w-grace'), startMessage('job-s', 1, graph(undefined, 500)))).ok).toBe(true);
    await eventually(() => expect(seen.tasks.filter((e) => e.event === 'started')).toHaveLength(3));
    expect((await ask(subjects.workerStop('w-grace'), { v: 1, job_id: 'job-s', generation: 1, mode: 'graceful' })).ok).toBe(true);
    await eventually(() => expect(keys(seen.tasks.filter((e) => e.event === 'finished'))).toEqual(['cnt/0', 'out/0', 'src/0']));
    await eventually(() => expect(worker.running().size).toBe(0));
    seen.subs.forEach((s) => s.unsubscribe());
  });

  it('runs as `weir worker`, registers, and exits 0 with a deregister on SIGTERM', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'worker', '--slots', '2', '--id', 'w-cli', '--nats', server.url], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, NATS_URL: 'nats://127.0.0.1:1' },
    });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      await eventually(() => expect(registry.get('w-cli')).toMatchObject({ slots: 2 }), { timeoutMs: 20_000 });
      const deregistered = service.stats().deregistered;
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
      // Gone at once, long before the 30 s heartbeat timeout.
      await eventually(() => expect(registry.get('w-cli')).toBeUndefined(), { timeoutMs: 2_000 });
      expect(service.stats().deregistered).toBe(deregistered + 1);
      const lines = output.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { msg: string });
      expect(lines.map((l) => l.msg)).toEqual(expect.arrayContaining(['registered with the controller', 'worker stopped']));
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });
});
