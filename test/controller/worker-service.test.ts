import { RequestError, type NatsConnection } from '@nats-io/transport-node';
import { pino } from 'pino';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect } from 'vitest';
import { WorkerRegistry } from '../../src/controller/registry.js';
import { startWorkerService, type LostReason, type WorkerService, type WorkerServiceOptions } from '../../src/controller/worker-service.js';
import {
  ackSchema,
  decodeReply,
  encode,
  registerWorkerReplySchema,
  subjects,
  type ErrorCode,
  type Heartbeat,
  type RegisterWorker,
} from '../../src/protocol/index.js';
import { eventually } from '../support/nats.js';
import { testWithNatsServer } from '../support/nats-fixtures.js';

const MAX_BYTES = 4096;

interface LogLine {
  level: number;
  msg: string;
  code?: string;
  subject?: string;
}

interface Lost {
  jobId: string;
  generation: number;
  workerId: string;
  reason: LostReason;
  at: number;
}

const registration = (worker_id: string, slots = 4): RegisterWorker => ({ v: 1, worker_id, slots, operators: ['source', 'count', 'sink'] });
const heartbeat = (worker_id: string, jobs: Heartbeat['jobs'] = []): Heartbeat => ({ v: 1, worker_id, at: Date.now() * 1000, jobs });

const it = testWithNatsServer({ jetstream: false });

describe('worker service on a real server', () => {
  let nc: NatsConnection;
  let worker: NatsConnection;
  let registry: WorkerRegistry;
  let service: WorkerService;
  let lines: LogLine[];
  let lost: Lost[];

  it.beforeAll(async ({ connect }) => {
    nc = await connect('controller');
    worker = await connect('worker');
  });

  async function start(options: Partial<WorkerServiceOptions> & { timeoutMs?: number } = {}): Promise<void> {
    lines = [];
    lost = [];
    registry = new WorkerRegistry({ heartbeatTimeoutMs: options.timeoutMs ?? 1_000 });
    const log = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as LogLine) });
    service = startWorkerService(nc, registry, {
      log,
      sweepIntervalMs: 200,
      maxMessageBytes: MAX_BYTES,
      onLost: (jobId, generation, workerId, reason) => void lost.push({ jobId, generation, workerId, reason, at: Date.now() }),
      ...options,
    });
    await service.ready();
  }

  afterEach(async () => {
    await service?.stop();
  });

  async function request(subject: string, body: Uint8Array | object): Promise<Uint8Array> {
    await worker.flush();
    const reply = await worker.request(subject, body instanceof Uint8Array ? body : encode(body), { timeout: 2_000 });
    return reply.data;
  }

  async function register(id: string, slots = 4): Promise<void> {
    const reply = decodeReply(registerWorkerReplySchema, await request(subjects.workerRegister(), registration(id, slots)));
    expect(reply).toEqual({ ok: true, value: { v: 1, heartbeat_interval_ms: 5_000, metrics_interval_ms: 2_000 } });
  }

  async function expectError(subject: string, body: Uint8Array | object, code: ErrorCode, message?: RegExp): Promise<void> {
    const reply = decodeReply(ackSchema, await request(subject, body));
    expect(reply).toMatchObject({ ok: false, remote: true, error: { code } });
    if (message !== undefined && !reply.ok) expect(reply.error.message).toMatch(message);
  }

  it('registers a worker and acknowledges its heartbeats, recording their metrics', async () => {
    await start({ heartbeatIntervalMs: 5_000 });
    await register('w-1', 3);
    expect(registry.get('w-1')).toMatchObject({ slots: 3, freeSlots: 3, live: true, operators: ['source', 'count', 'sink'] });
    const jobs = [{ job_id: 'job-1', generation: 2, subtasks: [{ node_id: 'src', subtask_index: 0, records_in: 0, records_out: 9 }] }];
    const reply = decodeReply(ackSchema, await request(subjects.workerHeartbeat('w-1'), heartbeat('w-1', jobs)));
    expect(reply).toEqual({ ok: true, value: { v: 1, ok: true } });
    expect(registry.subtaskMetrics('job-1', 2)).toMatchObject([{ workerId: 'w-1', node_id: 'src', records_out: 9 }]);
    expect(service.stats()).toMatchObject({ received: { register: 1, heartbeat: 1, deregister: 0 }, registered: 1, heartbeats: 1, rejected: {} });

    // Between heartbeats, metrics messages (plain publishes) carry newer counts.
    const newer = [{ job_id: 'job-1', generation: 2, subtasks: [{ node_id: 'src', subtask_index: 0, records_in: 0, records_out: 42 }] }];
    nc.publish(subjects.workerMetrics('w-1'), encode({ v: 1, worker_id: 'w-1', at: 2, jobs: newer }));
    nc.publish(subjects.workerMetrics('w-nobody'), encode({ v: 1, worker_id: 'w-nobody', at: 2, jobs: newer }));
    nc.publish(subjects.workerMetrics('w-1'), encode({ v: 1, worker_id: 'w-1', jobs: 'nope' }));
    await eventually(() => expect(registry.subtaskMetrics('job-1', 2)).toMatchObject([{ workerId: 'w-1', records_out: 42 }]));
    await eventually(() => expect(service.stats()).toMatchObject({ received: { metrics: 3 }, rejected: { unknown_worker: 1, bad_schema: 1 } }));
    expect(registry.get('w-nobody')).toBeUndefined();
  });

  it('answers a worker id held by another live process with conflict and keeps the holder', async () => {
    await start({ heartbeatIntervalMs: 5_000 });
    const holder = { v: 1, worker_id: 'w-same', slots: 2, operators: ['source'], hostname: 'host-a', pid: 100 };
    expect(decodeReply(registerWorkerReplySchema, await request(subjects.workerRegister(), holder)).ok).toBe(true);
    const reply = decodeReply(registerWorkerReplySchema, await request(subjects.workerRegister(), { ...holder, hostname: 'host-b', pid: 200 }));
    expect(reply.ok ? null : reply.error.code).toBe('conflict');
    expect(registry.get('w-same')).toMatchObject({ hostname: 'host-a', pid: 100 });
    expect(service.stats().rejected).toMatchObject({ conflict: 1 });
  });

  it('reports a worker that stops heartbeating as lost within timeout + sweep interval; a heartbeating one stays', async () => {
    await start({ timeoutMs: 1_000 });
    await register('w-quiet');
    await register('w-busy');
    registry.allocate('job-1', 3, new Map([['w-quiet', 2], ['w-busy', 1]]));
    registry.allocate('job-2', 1, new Map([['w-quiet', 1]]));
    const since = Date.now();
    let beating = true;
    const beats = (async () => {
      while (beating) {
        await request(subjects.workerHeartbeat('w-busy'), heartbeat('w-busy'));
        await sleep(200);
      }
    })();
    try {
      await eventually(() => expect(lost).toHaveLength(2), { timeoutMs: 3_000, intervalMs: 20 });
    } finally {
      beating = false;
      await beats;
    }
    expect(lost.map(({ at: _at, ...rest }) => rest)).toEqual([
      { jobId: 'job-1', generation: 3, workerId: 'w-quiet', reason: 'expired' },
      { jobId: 'job-2', generation: 1, workerId: 'w-quiet', reason: 'expired' },
    ]);
    const elapsed = Math.max(...lost.map((l) => l.at)) - since;
    expect(elapsed).toBeGreaterThanOrEqual(900);
    expect(elapsed).toBeLessThanOrEqual(1_000 + 200 + 400); // timeout + sweep interval + scheduling slack
    expect(registry.get('w-quiet')).toBeUndefined();
    expect(registry.get('w-busy')).toMatchObject({ live: true, freeSlots: 3 });
    expect(service.stats().expired).toBe(1);
    expect(lines.some((l) => l.msg === 'worker expired' && l.level === 40)).toBe(true);
    // The lost worker's next heartbeat tells it to register again.
    await expectError(subjects.workerHeartbeat('w-quiet'), heartbeat('w-quiet'), 'unknown_worker', /register again/);
  });

  it('answers a heartbeat from an unregistered worker with unknown_worker and keeps no record', async () => {
    await start();
    await expectError(subjects.workerHeartbeat('ghost'), heartbeat('ghost'), 'unknown_worker');
    expect(registry.size).toBe(0);
    expect(service.stats().rejected).toEqual({ unknown_worker: 1 });
    expect(lines).toContainEqual(expect.objectContaining({ level: 40, msg: 'rejected worker message', code: 'unknown_worker' }));
  });

  it('tells the jobs of a re-registered or deregistered worker that it is lost', async () => {
    await start();
    await register('w-1');
    registry.allocate('job-1', 5, new Map([['w-1', 2]]));
    await register('w-1');
    await eventually(() => expect(lost.map((l) => [l.jobId, l.generation, l.reason])).toEqual([['job-1', 5, 're-registered']]));
    expect(registry.get('w-1')).toMatchObject({ freeSlots: 4, allocations: [] });

    registry.allocate('job-1', 6, new Map([['w-1', 1]]));
    // Deregister is a publish in the protocol.
    worker.publish(subjects.workerDeregister('w-1'), encode({ v: 1, worker_id: 'w-1', reason: 'shutdown' }));
    await eventually(() => expect(lost).toHaveLength(2));
    expect(lost[1]).toMatchObject({ jobId: 'job-1', generation: 6, reason: 'deregistered' });
    expect(registry.get('w-1')).toBeUndefined();
    // As a request it is acked, also for a worker that is already gone.
    expect(decodeReply(ackSchema, await request(subjects.workerDeregister('w-1'), { v: 1, worker_id: 'w-1' }))).toMatchObject({ ok: true });
    expect(service.stats()).toMatchObject({ deregistered: 1, rejected: {} });
  });

  it('rejects malformed input on every subject with the right code, changes nothing, and keeps working', async () => {
    await start();
    await register('w-1', 2);
    registry.allocate('job-1', 1, new Map([['w-1', 1]]));
    const before = JSON.stringify(registry.list().map(({ lastSeenAt: _l, live: _v, ...rest }) => rest));

    const big = (body: object) => encode({ ...body, pad: 'x'.repeat(MAX_BYTES) });
    const cases: Array<[string, Uint8Array | object, ErrorCode, RegExp?]> = [
      // register
      [subjects.workerRegister(), encode('{ not json').subarray(1), 'bad_json'],
      [subjects.workerRegister(), new Uint8Array(0), 'bad_json'],
      [subjects.workerRegister(), { v: 1, worker_id: 'w-1', slots: 0, operators: [] }, 'bad_schema', /slots/],
      [subjects.workerRegister(), { v: 1, worker_id: 'w.1', slots: 1, operators: [] }, 'bad_schema', /worker_id/],
      [subjects.workerRegister(), { ...registration('w-1', 8), extra: true }, 'bad_schema', /extra: unknown field/],
      [subjects.workerRegister(), { ...registration('w-1', 8), v: 2 }, 'unsupported_version'],
      [subjects.workerRegister(), big(registration('w-1', 8)), 'too_large'],
      // heartbeat
      [subjects.workerHeartbeat('w-1'), new TextEncoder().encode('hello'), 'bad_json'],
      [subjects.workerHeartbeat('w-1'), { v: 1, worker_id: 'w-1', at: -1, jobs: [] }, 'bad_schema', /at/],
      [subjects.workerHeartbeat('w-1'), { ...heartbeat('w-1'), v: 2 }, 'unsupported_version'],
      [subjects.workerHeartbeat('w-1'), big(heartbeat('w-1')), 'too_large'],
      [subjects.workerHeartbeat('w-2'), heartbeat('w-1'), 'bad_schema', /does not match the subject's worker "w-2"/],
      [subjects.workerHeartbeat('w-1'), heartbeat('w-2'), 'bad_schema', /"w-2" does not match/],
      // deregister (answered because it is sent as a request)
      [subjects.workerDeregister('w-1'), new TextEncoder().encode('[1,'), 'bad_json'],
      [subjects.workerDeregister('w-1'), { v: 1 }, 'bad_schema', /worker_id/],
      [subjects.workerDeregister('w-1'), { v: 2, worker_id: 'w-1' }, 'unsupported_version'],
      [subjects.workerDeregister('w-1'), big({ v: 1, worker_id: 'w-1' }), 'too_large'],
      [subjects.workerDeregister('other'), { v: 1, worker_id: 'w-1' }, 'bad_schema', /does not match/],
    ];
    for (const [subject, body, code, message] of cases) await expectError(subject, body, code, message);

    const after = JSON.stringify(registry.list().map(({ lastSeenAt: _l, live: _v, ...rest }) => rest));
    expect(after).toBe(before);
    expect(lost).toEqual([]);
    const stats = service.stats();
    expect(stats.rejected).toEqual({ bad_json: 4, bad_schema: 8, unsupported_version: 3, too_large: 3 });
    expect(stats).toMatchObject({ registered: 1, heartbeats: 0, deregistered: 0 });
    expect(lines.filter((l) => l.msg === 'rejected worker message' && l.level === 40)).toHaveLength(cases.length);

    // Malformed publishes (no reply subject) are logged and counted too.
    worker.publish(subjects.workerDeregister('w-1'), encode({ v: 1, worker_id: 'zzz' }));
    await eventually(() => expect(service.stats().rejected.bad_schema).toBe(9));
    expect(registry.get('w-1')).toBeDefined();

    // Still working.
    expect(decodeReply(ackSchema, await request(subjects.workerHeartbeat('w-1'), heartbeat('w-1')))).toMatchObject({ ok: true });
    await register('w-2', 1);
    expect(registry.list().map((w) => w.workerId)).toEqual(['w-1', 'w-2']);
  });

  it('survives an onLost that throws or rejects, and stop() waits for pending calls then stops answering', async () => {
    const seen: string[] = [];
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    await start({
      onLost: async (jobId) => {
        seen.push(jobId);
        if (jobId === 'job-sync') throw new Error('boom');
        if (jobId === 'job-async') return Promise.reject(new Error('async boom'));
        await gate;
      },
    });
    await register('w-1');
    registry.allocate('job-sync', 1, new Map([['w-1', 1]]));
    registry.allocate('job-async', 1, new Map([['w-1', 1]]));
    registry.allocate('job-slow', 1, new Map([['w-1', 1]]));
    await register('w-1');
    await eventually(() => expect(service.stats().onLostFailures).toBe(2));
    expect(seen.sort()).toEqual(['job-async', 'job-slow', 'job-sync']);
    expect(lines.filter((l) => l.msg === 'onLost failed')).toHaveLength(2);

    let stopped = false;
    const stopping = service.stop().then(() => (stopped = true));
    await sleep(100);
    expect(stopped).toBe(false);
    release();
    await stopping;
    await service.stop(); // idempotent

    const err = await worker.request(subjects.workerHeartbeat('w-1'), encode(heartbeat('w-1')), { timeout: 1_000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RequestError);
    expect((err as RequestError).isNoResponders()).toBe(true);
  });
});
