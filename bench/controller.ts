/**
 * The controller at scale: `npm run bench:controller [-- --jobs N --seconds D]`.
 *
 * A real nats-server (the test harness's, on a free port with its own store), `weir controller` in its own
 * process, and simulated workers in this one (the test kit's SimWorker) that answer the controller over
 * NATS as real workers do: they register, heartbeat with what runs on them, acknowledge start/stop/
 * checkpoint requests, report every subtask started, and complete the checkpoint of every subtask they run
 * (empty state) as soon as its barrier request arrives. The simulated workers' own CPU is not the
 * controller's.
 *
 * Printed, each beside its floor measured in the same run, under the same load (floor samples are
 * interleaved with weir's, after the CPU window):
 * - controller CPU (% of one core, from /proc/<pid>/stat over the window) and RSS with N jobs Running, each
 *   checkpointing every 10 s; its read and write system calls; and beside them the CPU floor of that load:
 *   the same NATS traffic (barrier requests, completion events, record puts) from plain nats.js in a process
 *   of its own (bench/checkpoint-traffic-floor.ts), run after the window while the load goes on;
 * - config update → persisted transition: from sending `stop: immediate` for a Running job to the KV
 *   watcher seeing its status record leave Running, beside one raw KV compare-and-set (update with the
 *   expected revision, acknowledged), and beside the path's own floor: a request to another process
 *   (bench/transition-floor.ts) that makes one compare-and-set and replies, seen by the same kind of watcher;
 * - a checkpoint of a 16-subtask job: from the barrier request reaching a worker to the KV watcher seeing
 *   the epoch's record, beside two raw request/reply round trips plus one KV put, back to back.
 *
 *   --jobs N            jobs Running during the window (env BENCH_JOBS, default 2000)
 *   --seconds D         length of the CPU window (default 60: every job's 60 s logging timer fires once in it,
 *                       where a shorter window over- or under-counts those bursts of jobs created together)
 *   --workers W         simulated workers (default 4)
 *   --samples S         config-update and floor samples (default 200)
 *   --checkpoint-jobs K 16-subtask jobs checkpointing every second for the checkpoint samples (default 10)
 *
 * The controller inherits the environment: WEIR_CHECKPOINT_GRID_MS=10 measures it on a 10 ms grid.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { jetstream } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { CHECKPOINTS_KV_BUCKET, JOBS_KV_BUCKET, subjects } from '../src/protocol/index.js';
import { startNatsServer } from '#test-kit/nats-server.js';
import { impulseToSinkPipeline } from '#test-kit/pipelines.js';
import { checkpointCompletion, SimWorker } from '#test-kit/sim-worker.js';
import { TRAFFIC_FLOOR } from './checkpoint-traffic-floor.js';
import { PATH_FLOOR } from './transition-floor.js';
import { positiveIntArg, quantiles, round, rssMiB } from './support.js';

const GOALS = { cpuPctAt10k: 25, transitionRatio: 2, checkpointRatio: 3 } as const;
/** Long enough for ≥ 50 checkpoints of the 16-subtask jobs (10 per second by default). */
const LATENCY_PHASE_MIN_MS = 6_000;
/** The steady load: jobs of one source and one sink subtask, each checkpointing every 10 s. */
const LOAD_SUBTASKS = 2;
const LOAD_INTERVAL_MICROS = 10_000_000;
const enc = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));
const dec = (d: Uint8Array) => JSON.parse(new TextDecoder().decode(d)) as Record<string, unknown>;
const nowUs = () => Date.now() * 1000;

interface Options {
  jobs: number;
  seconds: number;
  workers: number;
  samples: number;
  checkpointJobs: number;
}

function options(argv: string[]): Options {
  const value = (name: string, fallback: number) => positiveIntArg(argv, name, fallback);
  return {
    jobs: value('--jobs', Number(process.env['BENCH_JOBS'] ?? 2000)),
    seconds: value('--seconds', 60),
    workers: value('--workers', 4),
    samples: value('--samples', 200),
    checkpointJobs: value('--checkpoint-jobs', 10),
  };
}

const fmt = (q: { p50: number; p99: number }) => `p50 ${round(q.p50, 2)} ms, p99 ${round(q.p99, 2)} ms`;

// ─── Simulated workers ──────────────────────────────────────────────────────────────────────────────

/** The simulated workers, each on a connection of its own, and when each epoch's first barrier request arrived. */
class SimWorkers {
  /** `job.epoch` → when the first barrier request arrived (performance.now()). */
  readonly barrierAt = new Map<string, number>();
  private readonly workers: SimWorker[] = [];
  private readonly connections: NatsConnection[] = [];

  async add(url: string, workerId: string, slots: number): Promise<void> {
    const nc = await connect({ servers: url, name: `sim-${workerId}` });
    this.connections.push(nc);
    const worker = new SimWorker(nc, workerId, slots, {
      heartbeats: true,
      onCheckpointRequest: ({ job_id, epoch }) => {
        const key = `${job_id}.${epoch}`;
        // The job's other source workers get the same epoch's barrier.
        if (!this.barrierAt.has(key)) this.barrierAt.set(key, performance.now());
      },
    });
    this.workers.push(worker);
    await worker.start();
  }

  async close(): Promise<void> {
    for (const worker of this.workers) worker.stop();
    await Promise.all(this.connections.map((nc) => nc.close()));
  }
}

// ─── The controller process ─────────────────────────────────────────────────────────────────────────

const CLK_TCK = 100;

interface CpuTicks {
  user: number;
  system: number;
  /** user + system of the main (JavaScript) thread; the rest is GC helpers, libuv and the like. */
  mainThread: number;
}

function statTicks(path: string): { user: number; system: number } {
  const stat = readFileSync(path, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { user: Number(fields[11]), system: Number(fields[12]) };
}

/** Read and write system calls so far (sockets and files alike), from /proc/<pid>/io. */
function syscalls(pid: number): { reads: number; writes: number } {
  const io = readFileSync(`/proc/${pid}/io`, 'utf8');
  const count = (name: string) => Number(new RegExp(`^${name}: (\\d+)$`, 'm').exec(io)?.[1] ?? NaN);
  return { reads: count('syscr'), writes: count('syscw') };
}

function cpuTicks(pid: number): CpuTicks {
  const all = statTicks(`/proc/${pid}/stat`);
  const main = statTicks(`/proc/${pid}/task/${pid}/stat`);
  return { ...all, mainThread: main.user + main.system };
}

function startController(url: string): ChildProcess {
  // BENCH_CONTROLLER_NODE_OPTIONS: extra Node flags for the controller (e.g. --perf-basic-prof for perf).
  const extra = (process.env['BENCH_CONTROLLER_NODE_OPTIONS'] ?? '').split(' ').filter((a) => a !== '');
  // The built controller, as `npm start` runs it: under tsx, esbuild's keepNames wrappers alone add about
  // 15 KiB of heap per job.
  const child = spawn(process.execPath, [...extra, 'bin/weir.js', 'controller', '--nats', url], {
    env: { ...process.env, WEIR_LOG_LEVEL: 'warn', WEIR_INSPECT: '' },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  return child;
}

/** A floor's program (TypeScript, under tsx) in a process of its own, its output piped to this one. */
function spawnFloor(file: string, args: string[]): ChildProcess & { stdout: NodeJS.ReadableStream } {
  return spawn(process.execPath, ['--import', 'tsx', file, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
}

/** The path floor's process (bench/transition-floor.ts), once it answers. */
async function startPathFloor(url: string): Promise<ChildProcess> {
  const child = spawnFloor('bench/transition-floor.ts', [url]);
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => d.toString().includes('ready') && resolve());
    child.once('exit', (code) => reject(new Error(`bench/transition-floor.ts exited with ${code}`)));
  });
  return child;
}

/** The CPU floor's process (bench/checkpoint-traffic-floor.ts), run to its end. */
async function runTrafficFloor(url: string, rate: number, recordBytes: number, seconds: number): Promise<{ cpuPct: number; checkpointsPerSec: number }> {
  const child = spawnFloor('bench/checkpoint-traffic-floor.ts', [url, String(rate), String(LOAD_SUBTASKS), String(recordBytes), String(seconds)]);
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  if (code !== 0) throw new Error(`bench/checkpoint-traffic-floor.ts exited with ${code}`);
  return JSON.parse(out) as { cpuPct: number; checkpointsPerSec: number };
}

/** impulse[p] → log[p]: every slot hosts a source, so every worker of a job gets its barriers. */
function pipeline(name: string, parallelism: number, intervalMicros: number) {
  return impulseToSinkPipeline({ name, nodeParallelism: parallelism, rate: 'max', checkpointIntervalMs: intervalMicros / 1000 });
}

// ─── Main ───────────────────────────────────────────────────────────────────────────────────────────

async function main(): Promise<void> {
  const opts = options(process.argv.slice(2));
  console.log(`bench:controller  node ${process.version}, ${opts.jobs} jobs, ${opts.workers} simulated workers, ${opts.seconds} s window`);
  const server = await startNatsServer({ jetstream: true });
  const pathFloorProcess = await startPathFloor(server.url);
  const controller = startController(server.url);
  const nc = await connect({ servers: server.url, name: 'bench-client' });
  const cluster = new SimWorkers();
  try {
    // The controller answers once it is up.
    for (let i = 0; ; i++) {
      try {
        await nc.request(subjects.apiJobsList(), enc({ v: 1 }), { timeout: 1_000 });
        break;
      } catch (err) {
        if (i > 100) throw err;
        await sleep(200);
      }
    }
    const slots = Math.ceil((opts.jobs * 2 + opts.checkpointJobs * 16) / opts.workers) + 16;
    for (let w = 0; w < opts.workers; w++) await cluster.add(server.url, `sim-${w + 1}`, slots);

    // Watchers: job statuses (persisted transitions) and checkpoint records.
    const js = jetstream(nc);
    const kvm = new Kvm(js);
    const jobsKv = await kvm.open(JOBS_KV_BUCKET);
    const checkpointsKv = await kvm.create(CHECKPOINTS_KV_BUCKET, { history: 1 });
    const statusWaiters = new Map<string, (state: string) => void>();
    const running = new Set<string>();
    void (async () => {
      for await (const e of await jobsKv.watch({ key: '*.status' })) {
        if (e.operation !== 'PUT') continue;
        const jobId = e.key.slice(0, -'.status'.length);
        const state = String(e.json<{ state: string }>().state);
        if (state === 'Running') running.add(jobId);
        else running.delete(jobId);
        statusWaiters.get(jobId)?.(state);
      }
    })();
    const checkpointDone: number[] = [];
    const checkpointJobIds = new Set<string>();
    let recordsWritten = 0;
    /** Sizes of the 2-subtask jobs' records, for the CPU floor's puts. */
    let recordBytes = 0;
    let recordsMeasured = 0;
    void (async () => {
      for await (const e of await checkpointsKv.watch({ include: 'updates' })) {
        if (e.operation !== 'PUT') continue;
        recordsWritten++;
        // Keys are slots (epoch mod CHECKPOINT_SLOTS): the record names its job and epoch.
        const { job_id: jobId, epoch } = e.json<{ job_id: string; epoch: number }>();
        if (!checkpointJobIds.has(jobId)) {
          recordBytes += e.value.length;
          recordsMeasured++;
        }
        const key = `${jobId}.${epoch}`;
        const at = cluster.barrierAt.get(key);
        if (at !== undefined && checkpointJobIds.has(jobId)) checkpointDone.push(performance.now() - at);
        cluster.barrierAt.delete(key);
      }
    })();

    // Floors, on the same server and under the same load as weir's samples (interleaved with them below).
    const echo = await connect({ servers: server.url, name: 'bench-echo' });
    echo.subscribe('bench.echo', {
      callback: (_e, m) => {
        m.respond(m.data);
      },
    });
    // The barriers of the CPU floor's checkpoints, answered as the simulated workers answer weir's.
    echo.subscribe(TRAFFIC_FLOOR.barrier, {
      callback: (_e, m) => {
        m.respond(enc({ v: 1, ok: true }));
        const { job, epoch, generation } = dec(m.data);
        for (let subtask = 0; subtask < LOAD_SUBTASKS; subtask++) {
          const completion = { v: 1, job, job_id: `floor-${String(job)}`, generation, worker_id: 'sim-1', node_id: subtask === 0 ? 'src' : 'sink', subtask_index: 0, at: nowUs() };
          echo.publish(TRAFFIC_FLOOR.events, enc({ ...completion, ...checkpointCompletion(Number(epoch)) }));
        }
      },
    });
    await echo.flush();
    const floorKv: KV = await kvm.create('bench_floor', { history: 1 });
    let revision = await floorKv.put('k', enc({ n: 0 }));
    // The like-for-like floor of a persisted transition: a compare-and-set seen by a KV watcher, as weir's
    // status writes are seen.
    const seen = new Map<number, () => void>();
    void (async () => {
      for await (const e of await floorKv.watch({ key: 'k', include: 'updates' })) seen.get(e.revision)?.();
    })();
    const pathKv = await kvm.open(PATH_FLOOR.bucket);
    const pathSeen = new Map<number, () => void>();
    void (async () => {
      for await (const e of await pathKv.watch({ key: 'k', include: 'updates' })) pathSeen.get(e.json<{ n: number }>().n)?.();
    })();
    const pathFloor: number[] = [];
    const casWatchedFloor: number[] = [];
    const casFloor: number[] = [];
    const rttFloor: number[] = [];
    const checkpointFloor: number[] = [];
    let floorRound = 0;
    const sampleFloors = async (): Promise<void> => {
      const i = floorRound++;
      let t = performance.now();
      revision = await floorKv.update('k', enc({ n: i }), revision);
      casFloor.push(performance.now() - t);
      t = performance.now();
      const watched = new Promise<void>((resolve) => seen.set(revision + 1, resolve));
      revision = await floorKv.update('k', enc({ n: -i }), revision);
      await watched;
      casWatchedFloor.push(performance.now() - t);
      seen.delete(revision);
      t = performance.now();
      await nc.request('bench.echo', enc({ i }), { timeout: 5_000 });
      rttFloor.push(performance.now() - t);
      t = performance.now();
      await nc.request('bench.echo', enc({ i }), { timeout: 5_000 });
      await nc.request('bench.echo', enc({ i }), { timeout: 5_000 });
      await floorKv.put(`c.${i % 64}`, enc({ i }));
      checkpointFloor.push(performance.now() - t);
      t = performance.now();
      const pathWatched = new Promise<void>((resolve) => pathSeen.set(i, resolve));
      const pathReply = dec((await nc.request(PATH_FLOOR.subject, enc({ n: i }), { timeout: 5_000 })).data);
      if (pathReply['error'] !== undefined) throw new Error(`path floor failed: ${JSON.stringify(pathReply)}`);
      await pathWatched;
      pathFloor.push(performance.now() - t);
      pathSeen.delete(i);
    };
    // Warm both paths' code before anything is timed.
    for (let i = 0; i < 20; i++) await sampleFloors();
    casFloor.length = casWatchedFloor.length = rttFloor.length = checkpointFloor.length = pathFloor.length = 0;

    // The load: N jobs created with bounded concurrency, every one checkpointing every 10 s.
    const t0 = performance.now();
    const ids: string[] = [];
    let next = 0;
    await Promise.all(
      Array.from({ length: 32 }, async () => {
        while (next < opts.jobs) {
          const i = next++;
          const reply = dec((await nc.request(subjects.apiJobsCreate(), enc(pipeline(`job-${i}`, 1, LOAD_INTERVAL_MICROS)), { timeout: 30_000 })).data);
          if (typeof reply['job_id'] !== 'string') throw new Error(`create failed: ${JSON.stringify(reply)}`);
          ids.push(reply['job_id']);
        }
      }),
    );
    for (let i = 0; i < opts.checkpointJobs; i++) {
      const reply = dec((await nc.request(subjects.apiJobsCreate(), enc(pipeline(`ckpt-${i}`, 8, 1_000_000)), { timeout: 30_000 })).data);
      checkpointJobIds.add(String(reply['job_id']));
    }
    const total = opts.jobs + opts.checkpointJobs;
    for (let waited = 0; running.size < total; waited++) {
      if (waited > 1_200) throw new Error(`only ${running.size} of ${total} jobs reached Running`);
      await sleep(100);
    }
    const startupS = (performance.now() - t0) / 1000;
    console.log(`   ${total} jobs Running after ${round(startupS)} s (${round(total / startupS)} jobs/s created and started)`);
    // Warm-up: the first checkpoint of each job falls within [10, 20) s; after that every job is cycling.
    await sleep(21_000);

    const pid = controller.pid!;
    const ticks0 = cpuTicks(pid);
    const io0 = syscalls(pid);
    const records0 = recordsWritten;
    const w0 = performance.now();
    const monotonicUs = () => process.hrtime.bigint() / 1000n;
    const windowStartUs = monotonicUs();
    await sleep(opts.seconds * 1000);
    const windowS = (performance.now() - w0) / 1000;
    // CLOCK_MONOTONIC in µs, the clock of V8's CPU profiles: select the window in a --cpu-prof of the controller.
    if (process.env['BENCH_CONTROLLER_NODE_OPTIONS'] !== undefined) console.log(`   CPU window, monotonic µs: ${windowStartUs} ${monotonicUs()}`);
    const ticks1 = cpuTicks(pid);
    const io1 = syscalls(pid);
    const pctOf = (ticks: number) => (ticks / CLK_TCK / windowS) * 100;
    const cpuPct = pctOf(ticks1.user + ticks1.system - ticks0.user - ticks0.system);
    const systemPct = pctOf(ticks1.system - ticks0.system);
    const mainThreadPct = pctOf(ticks1.mainThread - ticks0.mainThread);
    const rss = rssMiB(pid);
    const checkpointsPerSec = (recordsWritten - records0) / windowS;
    const floorRate = Math.round((opts.jobs * 1_000_000) / LOAD_INTERVAL_MICROS);
    const meanRecordBytes = Math.round(recordBytes / Math.max(1, recordsMeasured));
    const trafficFloor = await runTrafficFloor(server.url, floorRate, meanRecordBytes, Math.min(opts.seconds, 20));

    // Latency phase: config update → persisted transition on jobs of the steady load, one at a time,
    // interleaved with the floors; the checkpoint samples are the 16-subtask jobs' checkpoints meanwhile.
    const transition: number[] = [];
    checkpointDone.length = 0;
    const phaseStart = performance.now();
    for (let i = 0; i < opts.samples || performance.now() - phaseStart < LATENCY_PHASE_MIN_MS; i++) {
      await sampleFloors();
      const jobId = ids[i];
      if (i < opts.samples && jobId !== undefined) {
        const left = new Promise<void>((resolve) => statusWaiters.set(jobId, (state) => state !== 'Running' && resolve()));
        const t = performance.now();
        const reply = dec((await nc.request(subjects.apiJobConfig(jobId), enc({ v: 1, stop: 'immediate' }), { timeout: 10_000 })).data);
        if (reply['error'] !== undefined) throw new Error(`config update failed: ${JSON.stringify(reply)}`);
        await left;
        transition.push(performance.now() - t);
        statusWaiters.delete(jobId);
      }
      await sleep(10);
    }

    const q = {
      cas: quantiles(casFloor),
      casWatched: quantiles(casWatchedFloor),
      path: quantiles(pathFloor),
      rtt: quantiles(rttFloor),
      ckptFloor: quantiles(checkpointFloor),
      transition: quantiles(transition),
      checkpoint: quantiles(checkpointDone),
    };
    const projected10k = (cpuPct * 10_000) / total;
    const lines = [
      `── controller with ${total} jobs Running (${opts.jobs} × ${LOAD_SUBTASKS} subtasks every ${LOAD_INTERVAL_MICROS / 1_000_000} s, ${opts.checkpointJobs} × 16 subtasks every 1 s)`,
      `   CPU            ${round(cpuPct)} % of one core over ${round(windowS, 1)} s (${round(checkpointsPerSec)} checkpoints/s completed)`,
      `                  of which kernel ${round(systemPct)} %; main thread ${round(mainThreadPct)} %, other threads (GC, libuv) ${round(cpuPct - mainThreadPct)} %`,
      `                  system calls per second: ${round((io1.reads - io0.reads) / windowS)} reads, ${round((io1.writes - io0.writes) / windowS)} writes`,
      `   RSS            ${round(rss)} MiB`,
      `   floor: the same NATS traffic without weir, from plain nats.js in a process of its own (${floorRate} checkpoints/s, each a barrier`,
      `          request, ${LOAD_SUBTASKS} completion events decoded, one KV put of a record of weir's size, ${meanRecordBytes} bytes): ${round(trafficFloor.cpuPct)} % of one core`,
      `          (${round(trafficFloor.checkpointsPerSec)} checkpoints/s completed); weir ${round(cpuPct / trafficFloor.cpuPct, 2)}× that`,
      `── config update → persisted transition (${q.transition.n} samples)`,
      `   weir           ${fmt(q.transition)}`,
      `   floor: one raw KV compare-and-set seen by a watcher  ${fmt(q.casWatched)}   (acknowledged: ${fmt(q.cas)})`,
      `   ratio p50      ${round(q.transition.p50 / q.casWatched.p50, 2)}×   p99 ${round(q.transition.p99 / q.casWatched.p99, 2)}×`,
      `   the path's floor: a request to another process that makes one KV CAS, seen by a watcher  ${fmt(q.path)}`,
      `                  ${round(q.path.p50 / q.casWatched.p50, 2)}× one CAS; weir ${round(q.transition.p50 / q.path.p50, 2)}× the path's floor (p99 ${round(q.transition.p99 / q.path.p99, 2)}×)`,
      `── checkpoint of a 16-subtask job, barrier request → durable record (${q.checkpoint.n} samples)`,
      `   weir           ${fmt(q.checkpoint)}`,
      `   floor: two raw round trips + one KV put  ${fmt(q.ckptFloor)}   (one round trip ${fmt(q.rtt)})`,
      `   ratio p50      ${round(q.checkpoint.p50 / q.ckptFloor.p50, 2)}×   p99 ${round(q.checkpoint.p99 / q.ckptFloor.p99, 2)}×`,
      '══ summary',
      `   CPU at ${total} jobs            ${round(cpuPct)} % (linear projection to 10,000 jobs: ${round(projected10k)} %; goal ≤ ${GOALS.cpuPctAt10k} % at 10,000 — ${total >= 10_000 ? (cpuPct <= GOALS.cpuPctAt10k ? 'PASS' : 'FAIL') : 'run with --jobs 10000 to check'})`,
      `   persisted transition p50     ${round(q.transition.p50 / q.casWatched.p50, 2)}× a raw KV CAS seen the same way (goal ≤ ${GOALS.transitionRatio}×: ${q.transition.p50 / q.casWatched.p50 <= GOALS.transitionRatio ? 'PASS' : 'FAIL'})`,
      `   checkpoint p50               ${round(q.checkpoint.p50 / q.ckptFloor.p50, 2)}× two round trips + one KV put (goal ≤ ${GOALS.checkpointRatio}×: ${q.checkpoint.p50 / q.ckptFloor.p50 <= GOALS.checkpointRatio ? 'PASS' : 'FAIL'})`,
    ];
    console.log(lines.join('\n'));
    await echo.close();
  } finally {
    controller.kill('SIGTERM');
    pathFloorProcess.kill('SIGTERM');
    await cluster.close().catch(() => {});
    await nc.close().catch(() => {});
    await new Promise((resolve) => (controller.exitCode === null ? controller.once('exit', resolve) : resolve(undefined)));
    await server.dispose();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
