/**
 * A normal start and stop of a worker logs no warning: waiting for a controller that starts beside it,
 * and a stop of tasks that already ended by themselves, are no failures. A real failure still warns.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { afterEach, describe, expect } from 'vitest';
import { WorkerRegistry } from '../../src/controller/registry.js';
import { startWorkerService } from '../../src/controller/worker-service.js';
import { ackSchema, decodeReply, encode, subjects } from '../../src/protocol/index.js';
import { startWorker, type WorkerHandle } from '../../src/worker/process.js';
import { eventually } from '../support/nats.js';
import { testWithNatsServerPerTest } from '../support/nats-fixtures.js';

interface Line {
  level: number;
  msg: string;
  [field: string]: unknown;
}

/** A logger at debug whose lines land in `lines`. */
function capture(): { log: pino.Logger; lines: Line[]; warnings: () => Line[] } {
  const lines: Line[] = [];
  const log = pino({ level: 'debug' }, { write: (line: string) => void lines.push(JSON.parse(line) as Line) });
  return { log, lines, warnings: () => lines.filter((l) => l.level >= 40) };
}

const it = testWithNatsServerPerTest();
const workers: WorkerHandle[] = [];

afterEach(async () => {
  await Promise.all(workers.splice(0).map((w) => w.stop()));
});

describe('worker logs', () => {
  it('waits quietly for a controller that starts after it, then registers', async ({ connect }) => {
    const { log, lines, warnings } = capture();
    workers.push(startWorker(await connect('worker'), { workerId: 'w-early', slots: 1, log, requestTimeoutMs: 500 }));
    // Several attempts with no controller at all.
    await eventually(() => expect(lines.filter((l) => l.msg === 'no controller answers yet').length).toBeGreaterThan(1), { timeoutMs: 10_000 });
    expect(lines.filter((l) => l.msg === 'no controller answers yet: waiting for one')).toHaveLength(1);
    expect(lines.find((l) => l.msg === 'no controller answers yet: waiting for one')?.level).toBe(30);
    const registry = new WorkerRegistry();
    const service = startWorkerService(await connect('controller'), registry, { log: pino({ level: 'silent' }), heartbeatIntervalMs: 100 });
    try {
      await eventually(() => expect(lines.some((l) => l.msg === 'registered with the controller')).toBe(true), { timeoutMs: 10_000 });
      expect(warnings()).toEqual([]);
    } finally {
      await service.stop();
    }
  });

  it('warns once no controller has answered for longer than controllerWaitMs', async ({ connect }) => {
    const { log, warnings } = capture();
    workers.push(startWorker(await connect('worker'), { workerId: 'w-alone', slots: 1, log, controllerWaitMs: 300 }));
    await eventually(() => expect(warnings().map((l) => l.msg)).toContain('registration failed; retrying'), { timeoutMs: 10_000 });
  });

  it('one heartbeat no controller hears is info (a controller stopping); the next one in a row warns', async ({ connect }) => {
    const { log, lines, warnings } = capture();
    const service = startWorkerService(await connect('controller'), new WorkerRegistry(), { log: pino({ level: 'silent' }), heartbeatIntervalMs: 100 });
    workers.push(startWorker(await connect('worker'), { workerId: 'w-beat', slots: 1, log }));
    await eventually(() => expect(lines.some((l) => l.msg === 'registered with the controller')).toBe(true));
    await service.stop();
    await eventually(() => expect(warnings().map((l) => l.msg)).toContain('heartbeat failed'), { timeoutMs: 10_000 });
    const unheard = lines.findIndex((l) => l.msg === 'no controller heard the heartbeat: trying again at the next one');
    expect(lines[unheard]?.level).toBe(30);
    expect(lines.findIndex((l) => l.level >= 40)).toBeGreaterThan(unheard);
  });

  it('a stop of a generation that ended by itself is no warning; a bad request still is', async ({ connect }) => {
    const { log, lines, warnings } = capture();
    const nc = await connect('controller');
    const service = startWorkerService(nc, new WorkerRegistry(), { log: pino({ level: 'silent' }) });
    try {
      workers.push(startWorker(await connect('worker'), { workerId: 'w-stop', slots: 1, log }));
      await eventually(() => expect(lines.some((l) => l.msg === 'registered with the controller')).toBe(true));
      const ask = async (body: unknown) => decodeReply(ackSchema, (await nc.request(subjects.workerStop('w-stop'), encode(body), { timeout: 5_000 })).data);
      const gone = await ask({ v: 1, job_id: 'job-done', generation: 1, mode: 'kill' });
      // The reply is as before (the controller reads it as "gone"), only the log line is quieter.
      expect(!gone.ok && gone.error.code).toBe('unknown_job');
      expect(lines.find((l) => l.msg === 'nothing of the generation to stop runs here')).toMatchObject({ level: 20, code: 'unknown_job' });
      expect(warnings()).toEqual([]);
      const bad = await ask({ v: 1, job_id: 'job-done', generation: 1, mode: 'whenever' });
      expect(!bad.ok && bad.error.code).toBe('bad_schema');
      await sleep(50);
      expect(warnings().map((l) => [l.msg, l['code']])).toEqual([['rejected controller request', 'bad_schema']]);
    } finally {
      await service.stop();
    }
  });
});
