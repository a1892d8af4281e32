/**
 * The CPU floor of bench:controller's steady load, run by it in a process of its own
 * (`tsx bench/checkpoint-traffic-floor.ts URL RATE SUBTASKS RECORD_BYTES SECONDS`): the NATS traffic of RATE
 * checkpoints a second, started on a 10 ms grid as weir starts them, each a barrier request answered by
 * the benchmark, SUBTASKS completion events decoded, and one KV put of a RECORD_BYTES record, acknowledged.
 * None of weir's bookkeeping: what nats.js and JSON cost for the same messages. Prints one JSON line with
 * its CPU (all threads, % of one core) over SECONDS after a 2 s warm-up.
 */
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { jetstream } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { connect } from '@nats-io/transport-node';
import { applyNatsRequestFix } from '../src/jetstream/request-fix.js';

export const TRAFFIC_FLOOR = { barrier: 'bench.traffic.barrier', events: 'bench.traffic.events', bucket: 'bench_traffic_floor' } as const;
const GRID_MS = 10;
const WARM_UP_MS = 2_000;
/** Record keys in use, as weir's ring of record slots spreads its puts over many keys. */
const RECORD_KEYS = 1_000;

async function main(url: string, rate: number, subtasks: number, recordBytes: number, seconds: number): Promise<void> {
  // weir's processes run with this fix; without it the floor would pay for nats.js's dead errors.
  applyNatsRequestFix();
  const nc = await connect({ servers: url, name: 'bench-traffic-floor' });
  const kv = await new Kvm(jetstream(nc)).create(TRAFFIC_FLOOR.bucket, { history: 1 });
  const record = JSON.stringify({ padding: 'x'.repeat(Math.max(0, recordBytes - 16)) });
  const pending = new Map<number, number>();
  let completed = 0;
  let failed = 0;
  nc.subscribe(TRAFFIC_FLOOR.events, {
    callback: (_err, msg) => {
      const event = msg.json<{ job: number }>();
      const left = (pending.get(event.job) ?? subtasks) - 1;
      if (left > 0) {
        pending.set(event.job, left);
        return;
      }
      pending.delete(event.job);
      kv.put(`r.${event.job % RECORD_KEYS}`, record).then(
        () => completed++,
        () => failed++,
      );
    },
  });
  await nc.flush();

  let next = 0;
  let owed = 0;
  let last = performance.now();
  const grid = setInterval(() => {
    // By the clock, not per tick: a late tick starts what came due meanwhile, as weir's grid does.
    const now = performance.now();
    owed += (rate * (now - last)) / 1000;
    last = now;
    for (; owed >= 1; owed--) {
      const job = next++;
      nc.request(TRAFFIC_FLOOR.barrier, JSON.stringify({ v: 1, job, epoch: 1, generation: 1 }), { timeout: 10_000 }).catch(() => failed++);
    }
  }, GRID_MS);

  await sleep(WARM_UP_MS);
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const completed0 = completed;
  await sleep(seconds * 1000);
  const cpu = process.cpuUsage(cpu0);
  const elapsedMs = performance.now() - t0;
  clearInterval(grid);
  const cpuPct = ((cpu.user + cpu.system) / 1000 / elapsedMs) * 100;
  process.stdout.write(`${JSON.stringify({ cpuPct, checkpointsPerSec: ((completed - completed0) * 1000) / elapsedMs, failed })}\n`);
  await nc.close();
}

// Run as a program, not when bench/controller.ts imports the subjects.
if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const [url, rate, subtasks, recordBytes, seconds] = process.argv.slice(2);
  if (url === undefined || seconds === undefined) throw new Error('usage: checkpoint-traffic-floor.ts URL RATE SUBTASKS RECORD_BYTES SECONDS');
  await main(url, Number(rate), Number(subtasks), Number(recordBytes), Number(seconds));
}
