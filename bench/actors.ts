/**
 * Timer cost of many job actors: `npm run bench:actors [-- --jobs N --seconds D]`.
 *
 * Phase A is the naive design (a 200 ms `after` self-loop per actor); phase B is weir's jobMachine in
 * Running as the controller runs it: each job's CheckpointCoordinator (on one shared TimerQueue) takes a
 * checkpoint every 10 s whose two subtask completions arrive 5–20 ms later, and worker liveness is kept by
 * the controller's registry (no per-job heartbeat events; `--heartbeat-every 10000` forwards them to every
 * job instead).
 * `--checkpoint-interval 2000` is a stress run. Each phase runs in its
 * own child process so that its RSS is its own; the parent prints one block per phase and a summary.
 *
 *   --jobs N        actors per phase (env BENCH_JOBS, default 10000)
 *   --seconds D     length of the measured window (env BENCH_SECONDS, default 10)
 *   --warmup S      seconds between "all actors in steady state" and the window (default: A 2, B 2 intervals + 1)
 *   --phase a|b     run one phase in this process and print its block (the parent runs each phase this way
 *                   in a forked child and collects the result over IPC)
 *   --checkpoint-interval MS   phase B's checkpoint interval (default 10000, the production default)
 *   --heartbeat-every MS       forward worker liveness to every job this often (default 0: the registry keeps it)
 *   --json          also print the results as one JSON line (e.g. windowMonoUs, to cut a --cpu-prof profile)
 *
 * CPU is process.cpuUsage() (user + system, all threads) over the window divided by the window's wall
 * time, so 100 % is one core. Setup and warm-up are excluded; the driver's own work (timers that answer
 * checkpoints, the heartbeat ticker) is included, as it would be in a controller.
 */
import { fork } from 'node:child_process';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { createActor, setup } from 'xstate';
import type { Actor } from 'xstate';
import { jobMachine } from '../machines/job/machine.js';
import type { StopResult } from '../machines/job/setup.js';
import type { CheckpointSchedule, FinalCheckpointResult, GenerationInput, ScheduleInput, ScheduleResult, StopInput } from '../machines/job/types.js';
import { CheckpointCoordinator, type CheckpointTrigger } from '../src/controller/checkpoint-coordinator.js';
import { TimerQueue } from '../src/controller/timer-queue.js';
import { settledActor, stamp, tickingClock } from '../src/controller/job-time.js';
import { argValue, round } from './support.js';

const NAIVE_POLL_MS = 200;
let CHECKPOINT_INTERVAL_MS = 10_000;
const HEARTBEAT_TIMEOUT_MS = 30_000;
/** 0: liveness stays with the controller's worker registry, as `weir controller` runs it; no per-job deadline. */
let HEARTBEAT_EVERY_MS = 0;
/** Checkpoint acknowledgements arrive this long after `startCheckpoint` (spread uniformly over the range). */
const ACK_MIN_MS = 5;
const ACK_SPREAD_MS = 16;
const GOALS = { cpuPct: 10, rssMiB: 512, latenessMs: 50 } as const;

type Phase = 'a' | 'b';

interface Options {
  jobs: number;
  seconds: number;
  warmup: number | null;
  phase: Phase | null;
  json: boolean;
}

interface LatenessStats {
  count: number;
  min: number;
  p50: number;
  p99: number;
  p999: number;
  max: number;
  /** Share of samples ≤ GOALS.latenessMs. */
  within50: number;
  /** Samples < 0 (fired before the deadline, by Date.now()). */
  early: number;
}

interface PhaseResult {
  phase: Phase;
  label: string;
  jobs: number;
  windowMs: number;
  /** The window on CLOCK_MONOTONIC (µs), for cutting a --cpu-prof profile. */
  windowMonoUs: [number, number];
  loadAvg: { before: number; after: number };
  setupMs: number;
  warmupMs: number;
  cpuPct: number;
  cpuUserPct: number;
  cpuSystemPct: number;
  rssMiB: number;
  rssBeforeMiB: number;
  heapUsedMiB: number;
  heapUsedAfterGcMiB: number | null;
  /** Progress checks (timer firings of the poll) in the window. */
  checks: number;
  checksPerSec: number;
  /** Events processed by the actors in the window (timer firings + events sent). */
  eventsPerSec: number;
  cpuUsPerEvent: number;
  /** A: fire − (previous fire + 200). B: checkpoint start − nextDueAt, as the machine saw them. */
  lateness: LatenessStats;
  /** B: every poll's fire time − the time its timer was armed for (negative = early). */
  pollLateness: LatenessStats | null;
  eventLoopDelay: { p50: number; p99: number; max: number };
  counters: Record<string, number>;
  notRunningAtEnd: number;
}

// ---------------------------------------------------------------------------------------------------
// Small utilities

function parseOptions(argv: string[]): Options {
  const value = (name: string): string | undefined => argValue(argv, name);
  const num = (raw: string | undefined, fallback: number, what: string): number => {
    if (raw === undefined || raw === '') return fallback;
    const n = Number(raw);
    if (!Number.isFinite(n) || n <= 0) throw new Error(`${what} must be a positive number, got ${raw}`);
    return n;
  };
  const phase = value('--phase');
  if (phase !== undefined && phase !== 'a' && phase !== 'b') throw new Error(`--phase must be a or b, got ${phase}`);
  const warmup = value('--warmup');
  CHECKPOINT_INTERVAL_MS = num(value('--checkpoint-interval') ?? process.env.BENCH_CHECKPOINT_INTERVAL, CHECKPOINT_INTERVAL_MS, '--checkpoint-interval');
  const heartbeatEvery = value('--heartbeat-every') ?? process.env.BENCH_HEARTBEAT_EVERY;
  HEARTBEAT_EVERY_MS = heartbeatEvery === '0' ? 0 : num(heartbeatEvery, HEARTBEAT_EVERY_MS, '--heartbeat-every');
  return {
    jobs: Math.floor(num(value('--jobs') ?? process.env.BENCH_JOBS, 10_000, '--jobs')),
    seconds: num(value('--seconds') ?? process.env.BENCH_SECONDS, 10, '--seconds'),
    warmup: warmup === undefined ? null : Number(warmup),
    phase: phase ?? null,
    json: argv.includes('--json'),
  };
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const tick = () => new Promise<void>((resolve) => setImmediate(resolve));
/** CLOCK_MONOTONIC in µs: the clock of --cpu-prof's timestamps, to cut a profile down to the window. */
const monoUs = () => Number(process.hrtime.bigint() / 1000n);
const mib = (bytes: number) => bytes / 1_048_576;

function gc(): boolean {
  const collect = (globalThis as { gc?: () => void }).gc;
  if (!collect) return false;
  collect();
  return true;
}

/**
 * Integer-millisecond histogram (every clock involved is Date.now()), fixed size whatever the number
 * of samples: [-OFFSET, SIZE-OFFSET) ms in 1 ms buckets, clamped at the ends; min and max are exact.
 */
class Histogram {
  private static readonly OFFSET = 1_000;
  private static readonly SIZE = 61_000;
  private readonly buckets = new Uint32Array(Histogram.SIZE);
  count = 0;
  min = Infinity;
  max = -Infinity;

  record(ms: number): void {
    const i = Math.min(Histogram.SIZE - 1, Math.max(0, Math.round(ms) + Histogram.OFFSET));
    this.buckets[i]!++;
    this.count++;
    if (ms < this.min) this.min = ms;
    if (ms > this.max) this.max = ms;
  }

  reset(): void {
    this.buckets.fill(0);
    this.count = 0;
    this.min = Infinity;
    this.max = -Infinity;
  }

  private quantile(q: number): number {
    if (this.count === 0) return NaN;
    const rank = Math.max(1, Math.ceil(q * this.count));
    let seen = 0;
    for (let i = 0; i < Histogram.SIZE; i++) {
      seen += this.buckets[i]!;
      if (seen >= rank) return Math.min(this.max, Math.max(this.min, i - Histogram.OFFSET));
    }
    return this.max;
  }

  stats(): LatenessStats {
    let within = 0;
    let early = 0;
    const limit = Math.min(Histogram.SIZE - 1, GOALS.latenessMs + Histogram.OFFSET);
    for (let i = 0; i <= limit; i++) within += this.buckets[i]!;
    for (let i = 0; i < Histogram.OFFSET; i++) early += this.buckets[i]!;
    return {
      count: this.count,
      min: this.count ? this.min : NaN,
      p50: this.quantile(0.5),
      p99: this.quantile(0.99),
      p999: this.quantile(0.999),
      max: this.count ? this.max : NaN,
      within50: this.count ? within / this.count : NaN,
      early,
    };
  }
}

/** Runs `window` seconds after warm-up and measures CPU, memory and event-loop delay over it only. */
async function measureWindow(
  seconds: number,
  resetCounters: () => void,
): Promise<{ windowMs: number; monoUs: [number, number]; user: number; system: number; eld: { p50: number; p99: number; max: number } }> {
  resetCounters();
  const eld = monitorEventLoopDelay({ resolution: 10 });
  eld.enable();
  const mono0 = monoUs();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await sleep(seconds * 1000);
  const cpu = process.cpuUsage(cpu0);
  const windowMs = performance.now() - t0;
  eld.disable();
  return {
    windowMs,
    monoUs: [mono0, monoUs()],
    user: cpu.user / 1000,
    system: cpu.system / 1000,
    eld: { p50: eld.percentile(50) / 1e6, p99: eld.percentile(99) / 1e6, max: eld.max / 1e6 },
  };
}

function memory(): { rssMiB: number; heapUsedMiB: number; heapUsedAfterGcMiB: number | null } {
  const m = process.memoryUsage();
  const after = gc() ? mib(process.memoryUsage().heapUsed) : null;
  return { rssMiB: mib(m.rss), heapUsedMiB: mib(m.heapUsed), heapUsedAfterGcMiB: after };
}

type Window = Awaited<ReturnType<typeof measureWindow>>;

/** The fields both phases measure the same way over their window. */
function windowFields(
  w: Window,
  mem: ReturnType<typeof memory>,
  setup: { rssBefore: number; loadBefore: number; setupMs: number; warmupMs: number },
  events: number,
) {
  return {
    windowMs: w.windowMs,
    windowMonoUs: w.monoUs,
    loadAvg: { before: setup.loadBefore, after: os.loadavg()[0] ?? NaN },
    setupMs: setup.setupMs,
    warmupMs: setup.warmupMs,
    cpuPct: ((w.user + w.system) / w.windowMs) * 100,
    cpuUserPct: (w.user / w.windowMs) * 100,
    cpuSystemPct: (w.system / w.windowMs) * 100,
    rssMiB: mem.rssMiB,
    rssBeforeMiB: setup.rssBefore,
    heapUsedMiB: mem.heapUsedMiB,
    heapUsedAfterGcMiB: mem.heapUsedAfterGcMiB,
    eventsPerSec: events / (w.windowMs / 1000),
    cpuUsPerEvent: events ? ((w.user + w.system) * 1000) / events : NaN,
    eventLoopDelay: w.eld,
  };
}

// ---------------------------------------------------------------------------------------------------
// Phase A: the naive design, one 200 ms re-entering timer per actor

async function phaseA(opts: Options): Promise<PhaseResult> {
  const n = opts.jobs;
  const loadBefore = os.loadavg()[0] ?? NaN;
  gc();
  const rssBefore = mib(process.memoryUsage().rss);
  const lastFire = new Float64Array(n);
  const lateness = new Histogram();
  let fires = 0;

  const naive = setup({
    types: { context: {} as { i: number }, input: {} as { i: number } },
    actions: {
      poll: ({ context }) => {
        const now = Date.now();
        const last = lastFire[context.i]!;
        if (last > 0) {
          lateness.record(now - (last + NAIVE_POLL_MS));
          fires++;
        }
        lastFire[context.i] = now;
      },
    },
  }).createMachine({
    id: 'naive',
    context: ({ input }) => ({ i: input.i }),
    initial: 'Running',
    states: {
      Running: {
        entry: 'poll',
        after: { [NAIVE_POLL_MS]: { target: 'Running', reenter: true } },
      },
    },
  });

  // Jobs start at different times: spread the starts over one period rather than aligning all timers.
  const t0 = performance.now();
  const actors: Actor<typeof naive>[] = [];
  const batches = 20;
  for (let b = 0; b < batches; b++) {
    for (let i = Math.floor((b * n) / batches); i < Math.floor(((b + 1) * n) / batches); i++) {
      const actor = createActor(naive, { input: { i } });
      actor.start();
      actors.push(actor);
    }
    await sleep(NAIVE_POLL_MS / batches);
  }
  const setupMs = performance.now() - t0;

  const warmupMs = (opts.warmup ?? 2) * 1000;
  await sleep(warmupMs);

  const w = await measureWindow(opts.seconds, () => {
    lateness.reset();
    fires = 0;
  });
  const mem = memory();
  const checks = fires;
  let notRunning = 0;
  for (const actor of actors) {
    if (actor.getSnapshot().status !== 'active') notRunning++;
    actor.stop();
  }
  return {
    phase: 'a',
    label: `A: naive baseline (${NAIVE_POLL_MS} ms after self-loop, reenter)`,
    jobs: n,
    ...windowFields(w, mem, { rssBefore, loadBefore, setupMs, warmupMs }, checks),
    checks,
    checksPerSec: checks / (w.windowMs / 1000),
    lateness: lateness.stats(),
    pollLateness: null,
    counters: { fires: checks },
    notRunningAtEnd: notRunning,
  };
}

// ---------------------------------------------------------------------------------------------------
// Phase B: weir's jobMachine in Running, with the checkpoint coordinator beside each actor

async function phaseB(opts: Options): Promise<PhaseResult> {
  const n = opts.jobs;
  const loadBefore = os.loadavg()[0] ?? NaN;
  gc();
  const rssBefore = mib(process.memoryUsage().rss);
  const checkpointLateness = new Histogram();
  const c = {
    checkpointsStarted: 0,
    checkpointsCompleted: 0,
    checkpointsFailed: 0,
    subtaskEventsSent: 0,
    heartbeatsSent: 0,
    logs: 0,
  };
  let ackSpread = 0;
  const timers = new TimerQueue({ onError: (err) => console.error(err) });
  const coordinators = new Array<CheckpointCoordinator>(n);
  const SUBTASKS = new Map([
    ['source', 1],
    ['sink', 1],
  ]);

  const machine = jobMachine.provide({
    actors: {
      compileJob: settledActor<void, GenerationInput>(() => Promise.resolve()),
      scheduleJob: settledActor<ScheduleResult, ScheduleInput>((input) => {
        coordinators[Number(input.jobId.slice(4))]!.beginGeneration({ generation: input.generation, subtasks: SUBTASKS });
        return Promise.resolve({ parallelism: { source: 1, sink: 1 } });
      }),
      stopJob: settledActor<StopResult, StopInput>(() => Promise.resolve({ finished: true })),
      killJob: settledActor<void, GenerationInput>(() => Promise.resolve()),
      cleanupJob: settledActor<void, GenerationInput>(() => Promise.resolve()),
      finalCheckpoint: settledActor<FinalCheckpointResult, GenerationInput>((input) => coordinators[Number(input.jobId.slice(4))]!.final(input.generation)),
    },
    actions: {
      armCheckpoints: (_, p: CheckpointSchedule) => coordinators[Number(p.jobId.slice(4))]!.arm(p.generation, p.intervalMs, p.minEpoch),
      disarmCheckpoints: (_, p: GenerationInput) => coordinators[Number(p.jobId.slice(4))]!.disarm(p.generation),
      logStatus: () => {
        c.logs++;
      },
      releaseGeneration: () => {},
    },
  });

  const t0 = performance.now();
  const actors = new Array<ReturnType<typeof createActor<typeof machine>>>(n);
  for (let i = 0; i < n; i++) {
    const jobId = `job-${i}`;
    const coordinator: CheckpointCoordinator = new CheckpointCoordinator({
      jobId,
      timers,
      timeoutMs: 600_000,
      // As the job runtime does: the barrier request goes out, and each subtask's completion comes back
      // as one message a few ms later (the worker's round trip), fed to the coordinator.
      trigger: (request: CheckpointTrigger) => {
        c.checkpointsStarted++;
        const due = coordinator.nextDue;
        if (due !== null) checkpointLateness.record(Date.now() - due);
        ackSpread = (ackSpread + 7) % ACK_SPREAD_MS;
        setTimeout(() => {
          for (const node_id of SUBTASKS.keys()) {
            c.subtaskEventsSent++;
            const now = Date.now() * 1000;
            coordinator.onCompleted({
              v: 1,
              job_id: jobId,
              generation: request.generation,
              worker_id: 'w',
              node_id,
              subtask_index: 0,
              event: 'completed',
              epoch: request.epoch,
              bytes: 0,
              start_time: now,
              finish_time: now,
              table_metadata: {},
              at: now,
            });
          }
        }, ACK_MIN_MS + ackSpread);
        return Promise.resolve();
      },
      persist: () => Promise.resolve(),
      onOutcome: (outcome) => {
        if (outcome.kind === 'completed') c.checkpointsCompleted++;
        else c.checkpointsFailed++;
      },
    });
    coordinators[i] = coordinator;
    // As the job runtime does: events stamped with the time, timers announced by clock ticks.
    const actor = createActor(machine, {
      input: {
        jobId,
        createdAt: Date.now(),
        config: { checkpointIntervalMs: CHECKPOINT_INTERVAL_MS },
        policy: { heartbeatTimeoutMs: HEARTBEAT_EVERY_MS > 0 ? HEARTBEAT_TIMEOUT_MS : 0 },
      },
      clock: tickingClock(() => actor.send(stamp({ type: 'clock.tick' }))),
    });
    actors[i] = actor;
    actor.start();
  }
  // Created → Compiling → Scheduling run on promise callbacks; wait until every job awaits its tasks.
  for (let waited = 0; ; waited++) {
    let pending = 0;
    for (const actor of actors) if (!actor.getSnapshot().matches({ Scheduling: { attempt: 'starting' } })) pending++;
    if (pending === 0) break;
    if (waited > 10_000) throw new Error(`${pending} jobs never reached Scheduling.attempt.starting`);
    await tick();
  }
  const generation = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const actor = actors[i]!;
    generation[i] = actor.getSnapshot().context.generation;
    actor.send(stamp({ type: 'tasks.started', generation: generation[i]! }));
  }
  const notRunning = actors.filter((a) => !a.getSnapshot().matches('Running')).length;
  if (notRunning > 0) throw new Error(`${notRunning} jobs are not Running after tasks.started`);
  const setupMs = performance.now() - t0;
  // Setup garbage is not the steady state's. Collect it now: no checkpoint is due for one interval yet, so
  // the pause delays no check (a pause later would bunch the jobs it delayed, see the checkpoint schedule).
  gc();

  // Heartbeats: every job gets one every HEARTBEAT_EVERY_MS, staggered evenly (job i at offset i/n).
  const hbStart = Date.now();
  let hbSent = 0;
  const heartbeats = setInterval(() => {
    if (HEARTBEAT_EVERY_MS === 0) return;
    const target = Math.floor(((Date.now() - hbStart) / HEARTBEAT_EVERY_MS) * n);
    for (; hbSent < target; hbSent++) {
      const i = hbSent % n;
      actors[i]!.send(stamp({ type: 'workers.heartbeat', generation: generation[i]! }));
      c.heartbeatsSent++;
    }
  }, 50);

  // The first checkpoint is jittered over [interval, 2·interval): after that every job is cycling.
  const warmupMs = (opts.warmup ?? (2 * CHECKPOINT_INTERVAL_MS + 1000) / 1000) * 1000;
  await sleep(warmupMs);

  const w = await measureWindow(opts.seconds, () => {
    checkpointLateness.reset();
    for (const k of Object.keys(c) as (keyof typeof c)[]) c[k] = 0;
  });
  clearInterval(heartbeats);
  const counters = { ...c };
  const mem = memory();
  let notRunningAtEnd = 0;
  for (const actor of actors) {
    if (!actor.getSnapshot().matches('Running')) notRunningAtEnd++;
    actor.stop();
  }
  for (const coordinator of coordinators) coordinator.close();
  timers.close();
  const secs = w.windowMs / 1000;
  // Work items: actor events (the 60 s status line, heartbeats; nothing else is due in Running) and
  // coordinator work (checkpoint starts, subtask completions).
  const events = counters.logs + counters.heartbeatsSent + counters.checkpointsStarted + counters.subtaskEventsSent;
  return {
    phase: 'b',
    label: `B: weir jobMachine in Running + checkpoint coordinator (checkpoint ${CHECKPOINT_INTERVAL_MS / 1000} s, ${HEARTBEAT_EVERY_MS > 0 ? `liveness forwarded every ${HEARTBEAT_EVERY_MS / 1000} s` : 'liveness from the worker registry'})`,
    jobs: n,
    ...windowFields(w, mem, { rssBefore, loadBefore, setupMs, warmupMs }, events),
    checks: counters.checkpointsStarted,
    checksPerSec: counters.checkpointsStarted / secs,
    lateness: checkpointLateness.stats(),
    pollLateness: null,
    counters,
    notRunningAtEnd,
  };
}

// ---------------------------------------------------------------------------------------------------
// Reporting and the parent process

function latenessLine(s: LatenessStats): string {
  if (s.count === 0) return 'no samples';
  return (
    `n=${s.count}  min ${s.min}  p50 ${s.p50}  p99 ${s.p99}  p99.9 ${s.p999}  max ${s.max} ms  (≤ ${GOALS.latenessMs} ms: ${round(s.within50 * 100, 3)} %` +
    (s.early > 0 ? `, ${s.early} early)` : ')')
  );
}

function printPhase(r: PhaseResult): void {
  const lines = [
    `── ${r.label}`,
    `   jobs ${r.jobs}, window ${round(r.windowMs / 1000, 2)} s (setup ${round(r.setupMs)} ms, warm-up ${round(r.warmupMs / 1000, 1)} s excluded)` +
      `; host load avg ${round(r.loadAvg.before, 2)} → ${round(r.loadAvg.after, 2)} on ${os.availableParallelism()} cores`,
    `   CPU            ${round(r.cpuPct)} % of one core (user ${round(r.cpuUserPct)} %, system ${round(r.cpuSystemPct)} %)`,
    `   RSS            ${round(r.rssMiB)} MiB at window end (${round(r.rssBeforeMiB)} MiB before creating actors)`,
    `   heap used      ${round(r.heapUsedMiB)} MiB${r.heapUsedAfterGcMiB === null ? '' : ` (${round(r.heapUsedAfterGcMiB)} MiB after a full GC)`}`,
    r.phase === 'a'
      ? `   progress checks ${r.checks} fired (${round(r.checksPerSec)} /s); actor events ${round(r.eventsPerSec)} /s, ${round(r.cpuUsPerEvent, 2)} µs CPU per event`
      : `   checkpoints    ${r.checks} started (${round(r.checksPerSec)} /s); work items ${round(r.eventsPerSec)} /s (actor events, checkpoint starts, subtask completions), ${round(r.cpuUsPerEvent, 2)} µs CPU per item`,
    r.phase === 'a'
      ? `   lateness       ${latenessLine(r.lateness)}   [fire − (previous fire + ${NAIVE_POLL_MS})]`
      : `   checkpoint lateness ${latenessLine(r.lateness)}   [start − nextDueAt]`,
    ...(r.pollLateness ? [`   poll lateness  ${latenessLine(r.pollLateness)}   [fire − armed-for time; < 0 = early]`] : []),
    `   event loop delay p50 ${round(r.eventLoopDelay.p50, 2)}  p99 ${round(r.eventLoopDelay.p99, 2)}  max ${round(r.eventLoopDelay.max, 2)} ms`,
    ...(r.phase === 'b' ? [`   counters       ${Object.entries(r.counters).map(([k, v]) => `${k}=${v}`).join(' ')}`] : []),
    ...(r.notRunningAtEnd > 0 ? [`   WARNING: ${r.notRunningAtEnd} actors were not running at the end`] : []),
  ];
  console.log(lines.join('\n'));
}

function runChild(phase: Phase, opts: Options): Promise<PhaseResult> {
  const script = fileURLToPath(import.meta.url);
  const args = ['--phase', phase, '--jobs', String(opts.jobs), '--seconds', String(opts.seconds)];
  args.push('--checkpoint-interval', String(CHECKPOINT_INTERVAL_MS), '--heartbeat-every', String(HEARTBEAT_EVERY_MS));
  if (opts.warmup !== null) args.push('--warmup', String(opts.warmup));
  // process.execArgv carries tsx's loader; --expose-gc lets the child settle its heap before measuring.
  const execArgv = [...process.execArgv.filter((a) => a !== '--expose-gc'), '--expose-gc'];
  return new Promise((resolve, reject) => {
    const child = fork(script, args, { execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    let result: PhaseResult | undefined;
    child.on('message', (m) => {
      result = m as PhaseResult;
    });
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      if (result) resolve(result);
      else reject(new Error(`phase ${phase} exited with ${signal ?? code} and no result`));
    });
  });
}

function summary(a: PhaseResult, b: PhaseResult): string {
  const verdict = (ok: boolean) => (ok ? 'PASS' : 'FAIL');
  const lat = b.lateness;
  const latOk = lat.count > 0 && lat.max <= GOALS.latenessMs;
  const lines = [
    '══ summary',
    `   baseline CPU        ${round(a.cpuPct)} % of one core (${a.jobs} naive actors)`,
    `   weir CPU            ${round(b.cpuPct)} % of one core (${b.jobs} jobs)`,
    `   ratio weir/baseline ${round(b.cpuPct / a.cpuPct, 3)}`,
    `   weir RSS            ${round(b.rssMiB)} MiB`,
    `   weir lateness       p50 ${lat.p50}  p99 ${lat.p99}  max ${lat.max} ms over ${lat.count} due checkpoints`,
    `   goal CPU ≤ ${GOALS.cpuPct} % of one core        ${verdict(b.cpuPct <= GOALS.cpuPct)} (${round(b.cpuPct)} %)`,
    `   goal RSS ≤ ${GOALS.rssMiB} MiB               ${verdict(b.rssMiB <= GOALS.rssMiB)} (${round(b.rssMiB)} MiB)`,
    `   goal every due check ≤ ${GOALS.latenessMs} ms    ${verdict(latOk)} (max ${lat.max} ms` +
      (latOk ? ')' : `, exceeds ${GOALS.latenessMs} ms; ${round((1 - lat.within50) * lat.count, 0)} of ${lat.count} checks late)`),
  ];
  if (b.pollLateness && b.pollLateness.count > 0) {
    lines.push(`   (poll timers: max ${b.pollLateness.max} ms late, earliest ${b.pollLateness.min} ms vs. the time they were armed for;`);
    lines.push(`    ${b.counters.pollsNothingDue ?? 0} polls found nothing due and re-armed for ≥ progressPollMs)`);
  }
  return lines.join('\n');
}

async function main(): Promise<void> {
  const opts = parseOptions(process.argv.slice(2));
  if (opts.phase) {
    const result = opts.phase === 'a' ? await phaseA(opts) : await phaseB(opts);
    if (process.send) process.send(result, () => process.exit(0));
    else {
      printPhase(result);
      if (opts.json) console.log(JSON.stringify(result));
      process.exit(0);
    }
    return;
  }
  console.log(`bench:actors  node ${process.version}, ${opts.jobs} actors per phase, ${opts.seconds} s window, each phase in its own process`);
  const a = await runChild('a', opts);
  printPhase(a);
  const b = await runChild('b', opts);
  printPhase(b);
  console.log(summary(a, b));
  if (opts.json) console.log(JSON.stringify({ a, b }));
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
