/**
 * A whole job checkpoint with big state, beside writing that state to the object store alone:
 * `npx tsx bench/job-checkpoint.ts [-- --subtasks 16 --mib 1 --checkpoints 12]` (also the last section of
 * `npm run bench:checkpoint-store`).
 *
 * A real nats-server (the test harness's, on a free port with its own store), a controller and a worker in
 * this process, and a job whose 16 source subtasks each hold 1 MiB of state that changes completely every
 * epoch (so the incremental writer has a full MiB to write each time, as a first checkpoint would). A
 * checkpoint runs from the coordinator's start to its record being durable: barrier requests, the
 * snapshots, the state blobs through the checkpoint store (run CAS, object store put, record, latest
 * pointer), the completion events and the record. The floor, measured in the same run on the same server,
 * half before the job starts and half after it stopped (never beside one of its checkpoints, which would
 * slow the floor down): 16 concurrent 1 MiB puts to a JetStream object store. Goal: < 2× the floor.
 */
import { parseArgs } from 'node:util';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Objm } from '@nats-io/obj';
import type { NatsConnection } from '@nats-io/transport-node';
import { pino } from 'pino';
import { z } from 'zod';
import { startController } from '../src/controller/controller.js';
import { applyNatsRequestFix } from '../src/jetstream/request-fix.js';
import { encode, subjects } from '../src/protocol/index.js';
import { defineOperator, OPERATORS, type OperatorFactory, type OperatorInstance } from '../src/worker/operators/index.js';
import { startWorker } from '../src/worker/process.js';
import { connectTo } from '#test-kit/nats.js';
import { startNatsServer } from '#test-kit/nats-server.js';
import { storedRecords } from '#test-kit/checkpoints.js';

export const JOB_CHECKPOINT_GOAL = 2;

export interface JobCheckpointFigures {
  subtasks: number;
  bytesPerSubtask: number;
  /** ms, one per checkpoint after the first (which also creates the run's blobs' first chains). */
  checkpoints: number[];
  /** ms, one per repetition of the raw object store writes (`putBlob`). */
  floor: number[];
  /** ms, one per repetition: the same bytes as bare JetStream publishes, all in flight (the stricter floor). */
  publishFloor: number[];
}

const CHUNKS = 16;
const FLOOR_ROUNDS = 6;

/**
 * A source that emits nothing and holds `bytes` of state, all of it new at every snapshot. The values come
 * from a pool made once, so the operator's own cost (making random data) stays out of the measurement.
 */
function ballast(bytes: number): OperatorFactory<unknown> {
  const chunk = Math.ceil(bytes / CHUNKS / 2); // hex doubles the bytes
  const pool = Array.from({ length: CHUNKS * 4 }, () => randomBytes(chunk).toString('hex'));
  class Ballast implements OperatorInstance {
    private turn = Math.floor(Math.random() * pool.length);
    open(): void {}
    async next(): Promise<boolean> {
      await sleep(5);
      return true;
    }
    snapshot(): { data: Record<string, string> } {
      // Every key gets another value than at the last snapshot.
      this.turn += CHUNKS + 1;
      return { data: Object.fromEntries(Array.from({ length: CHUNKS }, (_, i) => [`c${i}`, pool[(this.turn + i) % pool.length]!])) };
    }
    close(): void {}
  }
  return defineOperator({ name: 'ballast', kind: 'source', config: z.strictObject({}), create: () => new Ballast() });
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[Math.floor(s.length / 2)]!;
};

const PUBLISH_CHUNK = 128 * 1024;

/** The floors: `putBlob` of each subtask's state, and the same bytes as 128 KiB JetStream publishes all in flight. */
async function rawFloor(nc: NatsConnection, subtasks: number, bytes: number, round: number): Promise<{ putBlob: number; publish: number }> {
  const os = await new Objm(nc).create('bench_raw_state');
  const blobs = Array.from({ length: subtasks }, () => randomBytes(bytes));
  let start = performance.now();
  await Promise.all(blobs.map((blob, i) => os.putBlob({ name: `r${round}/${i}` }, blob)));
  const putBlob = performance.now() - start;
  await Promise.all(blobs.map((_, i) => os.delete(`r${round}/${i}`)));
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: 'BENCH_RAW', subjects: ['bench.raw.>'] }).catch(() => undefined);
  const js = jetstream(nc);
  start = performance.now();
  await Promise.all(
    blobs.flatMap((blob, i) => Array.from({ length: Math.ceil(blob.byteLength / PUBLISH_CHUNK) }, (_, c) => js.publish(`bench.raw.${i}`, blob.subarray(c * PUBLISH_CHUNK, (c + 1) * PUBLISH_CHUNK)))),
  );
  const publish = performance.now() - start;
  await jsm.streams.purge('BENCH_RAW');
  return { putBlob, publish };
}

export async function measureJobCheckpoint(opts: { subtasks?: number; mib?: number; checkpoints?: number } = {}): Promise<JobCheckpointFigures> {
  // As `weir controller` and `weir worker` run (src/cli/main.ts).
  applyNatsRequestFix();
  const subtasks = opts.subtasks ?? 16;
  const bytes = Math.round((opts.mib ?? 1) * 1024 * 1024);
  const wanted = opts.checkpoints ?? 12;
  await using server = await startNatsServer({ jetstream: true });
  const log = pino({ level: 'warn' });
  const [controllerNc, workerNc, client] = await Promise.all([connectTo(server.url, 'controller'), connectTo(server.url, 'worker'), connectTo(server.url, 'client')]);
  const controller = await startController(controllerNc, { log, heartbeatIntervalMs: 1_000, inspector: null });
  const worker = startWorker(workerNc, { workerId: 'bench-w', slots: subtasks, log, operators: new Map([...OPERATORS, ['ballast', ballast(bytes)]]) });
  try {
    while (!worker.registered()) await sleep(20);
    const floor: number[] = [];
    const publishFloor: number[] = [];
    const measureFloor = async (round: number) => {
      const f = await rawFloor(client, subtasks, bytes, round);
      floor.push(f.putBlob);
      publishFloor.push(f.publish);
    };
    for (let round = 0; round < FLOOR_ROUNDS; round++) await measureFloor(round);
    const pipeline = {
      v: 1,
      name: 'ballast',
      graph: {
        nodes: [
          { id: 'src', operator: 'ballast', parallelism: subtasks },
          { id: 'out', operator: 'log', parallelism: subtasks },
        ],
        edges: [{ from: 'src', to: 'out', kind: 'forward' }],
      },
      checkpoint_interval_micros: 1_000_000,
    };
    const reply = (await client.request(subjects.apiJobsCreate(), encode(pipeline), { timeout: 10_000 })).json<{ job_id?: string; error?: unknown }>();
    if (reply.job_id === undefined) throw new Error(`create failed: ${JSON.stringify(reply.error)}`);
    // By epoch; the ring keeps only the newest 10 records, so they are read as they come.
    const durations = new Map<number, number>();
    for (let round = 0; durations.size < wanted + 1; round++) {
      await sleep(500);
      for (const r of await storedRecords(client, reply.job_id)) if (r.status === 'ready') durations.set(r.epoch, (r.completed_at - r.start_time) / 1000);
      if (round > wanted * 4) throw new Error(`only ${durations.size} checkpoints completed`);
    }
    // The first writes every table's first chain; the rest are the steady state.
    const checkpoints = [...durations].sort(([a], [b]) => a - b).slice(1).map(([, ms]) => ms);
    const stop = (await client.request(subjects.apiJobConfig(reply.job_id), encode({ v: 1, stop: 'immediate' }), { timeout: 10_000 })).json<{ error?: unknown }>();
    if (stop.error !== undefined) throw new Error(`stop failed: ${JSON.stringify(stop.error)}`);
    await sleep(1_500);
    for (let round = 0; round < FLOOR_ROUNDS; round++) await measureFloor(FLOOR_ROUNDS + round);
    return { subtasks, bytesPerSubtask: bytes, checkpoints, floor, publishFloor };
  } finally {
    await worker.stop();
    await controller.stop();
    await Promise.all([controllerNc.close(), workerNc.close(), client.close()]);
  }
}

export function printJobCheckpoint(f: JobCheckpointFigures): boolean {
  const ratio = median(f.checkpoints) / median(f.floor);
  const mib = (f.bytesPerSubtask / 1024 / 1024).toFixed(2);
  console.log(`\nA checkpoint of a ${f.subtasks}-subtask job with ${mib} MiB of state per subtask (${f.checkpoints.length} checkpoints, floor ×${f.floor.length}):`);
  console.log(`  whole checkpoint (start → record durable)   p50 ${median(f.checkpoints).toFixed(1)} ms   max ${Math.max(...f.checkpoints).toFixed(1)} ms`);
  console.log(`  floor: ${f.subtasks} × ${mib} MiB object store puts    p50 ${median(f.floor).toFixed(1)} ms   max ${Math.max(...f.floor).toFixed(1)} ms`);
  console.log(`  for scale: the same bytes as bare JetStream publishes  p50 ${median(f.publishFloor).toFixed(1)} ms (the checkpoint is ${(median(f.checkpoints) / median(f.publishFloor)).toFixed(2)}× that)`);
  const met = ratio < JOB_CHECKPOINT_GOAL;
  console.log(`  ratio ${ratio.toFixed(2)}× the object store floor (goal < ${JOB_CHECKPOINT_GOAL}×): ${met ? 'MET' : 'NOT MET'}`);
  return met;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({ options: { subtasks: { type: 'string' }, mib: { type: 'string' }, checkpoints: { type: 'string' } }, allowPositionals: true });
  const figures = await measureJobCheckpoint({
    ...(values.subtasks === undefined ? {} : { subtasks: Number(values.subtasks) }),
    ...(values.mib === undefined ? {} : { mib: Number(values.mib) }),
    ...(values.checkpoints === undefined ? {} : { checkpoints: Number(values.checkpoints) }),
  });
  printJobCheckpoint(figures);
}
