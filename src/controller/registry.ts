/**
 * The controller's worker registry: which workers exist, whether they are alive, and whose slots
 * they hold. Pure logic — no NATS, no timers; time comes from the injected clock.
 *
 * Liveness is tracked once per worker (docs/design-notes.md: forwarding every heartbeat to every job
 * costs an actor event per job). When a worker expires, deregisters or re-registers, the registry
 * hands back the (job, generation) pairs it held so the controller can send each job one
 * `worker.lost`.
 */
import type { Heartbeat, SubtaskMetrics } from '../protocol/index.js';
import { JobError } from '../../machines/job/types.js';

export const DEFAULT_START_GRACE_MS = 10_000;
/** The reference's `worker-heartbeat-timeout`. */
export const DEFAULT_HEARTBEAT_TIMEOUT_MS = 30_000;

export interface WorkerInfo {
  worker_id: string;
  slots: number;
  /** Operator names this worker can run. */
  operators: readonly string[];
  hostname?: string | undefined;
  pid?: number | undefined;
}

export interface JobGeneration {
  jobId: string;
  generation: number;
}

export interface LostWorker {
  workerId: string;
  /** Clock time of its last heartbeat (or registration). */
  lastSeenAt: number;
  /** The allocations it held, sorted by job id then generation. */
  jobs: JobGeneration[];
}

/**
 * Another live process holds this worker id: two workers started with the same `--id` would otherwise
 * take turns replacing each other, and every replacement drops the other's tasks.
 */
export class WorkerIdTakenError extends Error {
  constructor(readonly workerId: string, holder: string) {
    super(`worker id "${workerId}" is registered by a live process (${holder}); it is free once that one deregisters or stops heartbeating`);
    this.name = 'WorkerIdTakenError';
  }
}

function processOf(info: WorkerInfo): string | null {
  return info.hostname === undefined || info.pid === undefined ? null : `${info.hostname} pid ${info.pid}`;
}

export interface RegisterResult {
  /** A record with this id existed (live or not) and was replaced. */
  replaced: boolean;
  /** The allocations of the replaced record: a restarted worker no longer runs them. */
  lost: JobGeneration[];
}

/** What the scheduler needs to know about a worker. */
export interface Candidate {
  worker_id: string;
  free_slots: number;
  operators: readonly string[];
}

export interface SubtaskReport extends SubtaskMetrics {
  workerId: string;
  /** Clock time of the heartbeat that carried it. */
  reportedAt: number;
}

export interface WorkerView {
  workerId: string;
  slots: number;
  freeSlots: number;
  operators: string[];
  hostname: string | undefined;
  pid: number | undefined;
  registeredAt: number;
  lastSeenAt: number;
  live: boolean;
  /** Allocations held here: job, generation and slot count. */
  allocations: Array<JobGeneration & { slots: number }>;
  /** What the worker's last heartbeat said runs there (may include generations the controller no longer wants). */
  reported: JobGeneration[];
}

export interface WorkerRegistryOptions {
  now?: () => number;
  /** A worker whose last heartbeat is this old (or older) is expired. Default 30 s. */
  heartbeatTimeoutMs?: number;
  /** How long after an allocation a worker's heartbeats may leave the generation out (it is starting). Default 10 s. */
  startGraceMs?: number;
}

interface Allocation extends JobGeneration {
  slots: number;
  allocatedAt: number;
  /** Consecutive heartbeats, after the start grace, that did not report this generation. */
  unreported: number;
  /** Already returned by `vanished`: a generation is reported gone once. */
  gone: boolean;
}

/**
 * How many consecutive heartbeats must leave out a generation before it counts as gone: one could have
 * been sent just before the worker started it.
 */
const UNREPORTED_HEARTBEATS = 2;

interface WorkerRecord {
  info: WorkerInfo;
  operators: ReadonlySet<string>;
  registeredAt: number;
  lastSeenAt: number;
  /** Keyed by `allocationKey`. */
  allocations: Map<string, Allocation>;
  /** The last heartbeat's jobs, keyed by `allocationKey`. */
  reported: Map<string, { job: JobGeneration; subtasks: SubtaskMetrics[]; at: number }>;
  /** The latest metrics message's jobs, keyed by `allocationKey`. */
  metrics: Map<string, { job: JobGeneration; subtasks: SubtaskMetrics[]; at: number }>;
}

function allocationKey(jobId: string, generation: number): string {
  return `${jobId}\u0000${generation}`;
}

function byJobThenGeneration(a: JobGeneration, b: JobGeneration): number {
  return a.jobId < b.jobId ? -1 : a.jobId > b.jobId ? 1 : a.generation - b.generation;
}

function jobsOf(record: WorkerRecord): JobGeneration[] {
  return [...record.allocations.values()].map(({ jobId, generation }) => ({ jobId, generation })).sort(byJobThenGeneration);
}

export class WorkerRegistry {
  readonly heartbeatTimeoutMs: number;
  readonly startGraceMs: number;
  private readonly now: () => number;
  private readonly workers = new Map<string, WorkerRecord>();

  constructor(options: WorkerRegistryOptions = {}) {
    this.now = options.now ?? Date.now;
    this.heartbeatTimeoutMs = options.heartbeatTimeoutMs ?? DEFAULT_HEARTBEAT_TIMEOUT_MS;
    this.startGraceMs = options.startGraceMs ?? DEFAULT_START_GRACE_MS;
    if (!(this.heartbeatTimeoutMs > 0)) throw new RangeError(`heartbeatTimeoutMs must be positive, got ${this.heartbeatTimeoutMs}`);
  }

  /**
   * Adds a worker, or replaces the record of a known id. A worker that registers again has restarted
   * (or lost the controller): whatever it ran is gone, so its allocations are dropped and returned.
   * The new record starts with every slot free, which is what keeps a restarted worker from being
   * counted as still running a stale generation (the reference's PR #914).
   */
  register(info: WorkerInfo): RegisterResult {
    if (!Number.isSafeInteger(info.slots) || info.slots < 1) throw new RangeError(`slots must be a positive integer, got ${info.slots}`);
    const previous = this.workers.get(info.worker_id);
    const now = this.now();
    if (previous !== undefined && this.alive(previous, now)) {
      const holder = processOf(previous.info);
      const claimant = processOf(info);
      if (holder !== null && claimant !== null && holder !== claimant) throw new WorkerIdTakenError(info.worker_id, holder);
    }
    this.workers.set(info.worker_id, {
      info: { ...info, operators: [...info.operators] },
      operators: new Set(info.operators),
      registeredAt: now,
      lastSeenAt: now,
      allocations: new Map(),
      reported: new Map(),
      metrics: new Map(),
    });
    return { replaced: previous !== undefined, lost: previous === undefined ? [] : jobsOf(previous) };
  }

  /** Records a heartbeat (and the subtask metrics it carries). `unknown_worker`: it must register again. */
  heartbeat(workerId: string, report?: Pick<Heartbeat, 'jobs'>): 'ok' | 'unknown_worker' {
    const record = this.workers.get(workerId);
    if (record === undefined) return 'unknown_worker';
    const now = this.now();
    record.lastSeenAt = now;
    if (report !== undefined) {
      record.reported = new Map(
        report.jobs.map((job) => [
          allocationKey(job.job_id, job.generation),
          { job: { jobId: job.job_id, generation: job.generation }, subtasks: job.subtasks.map((s) => ({ ...s })), at: now },
        ]),
      );
      for (const [key, allocation] of record.allocations) {
        if (record.reported.has(key)) allocation.unreported = 0;
        else if (now - allocation.allocatedAt >= this.startGraceMs) allocation.unreported++;
      }
    }
    return 'ok';
  }

  /**
   * Records the per-subtask counts of a metrics message. Unlike a heartbeat it says nothing about
   * liveness or about which generations run: a metrics message may be lost or arrive late.
   */
  recordMetrics(workerId: string, report: Pick<Heartbeat, 'jobs'>): 'ok' | 'unknown_worker' {
    const record = this.workers.get(workerId);
    if (record === undefined) return 'unknown_worker';
    const now = this.now();
    record.metrics = new Map(
      report.jobs.map((job) => [
        allocationKey(job.job_id, job.generation),
        { job: { jobId: job.job_id, generation: job.generation }, subtasks: job.subtasks.map((s) => ({ ...s })), at: now },
      ]),
    );
    return 'ok';
  }

  /**
   * Generations this worker holds slots for but has stopped reporting in its heartbeats (after the start
   * grace, in consecutive heartbeats): their tasks ended without the controller hearing of it, e.g.
   * because the task events were published while the worker was disconnected. Each is returned once.
   */
  vanished(workerId: string): JobGeneration[] {
    const record = this.workers.get(workerId);
    if (record === undefined) return [];
    const gone: JobGeneration[] = [];
    for (const allocation of record.allocations.values()) {
      if (allocation.gone || allocation.unreported < UNREPORTED_HEARTBEATS) continue;
      allocation.gone = true;
      gone.push({ jobId: allocation.jobId, generation: allocation.generation });
    }
    return gone.sort(byJobThenGeneration);
  }

  /** Removes a worker that shut down cleanly; returns its allocations (empty for an unknown id). */
  deregister(workerId: string): JobGeneration[] {
    const record = this.workers.get(workerId);
    if (record === undefined) return [];
    this.workers.delete(workerId);
    return jobsOf(record);
  }

  /** Removes every expired worker (last heartbeat ≥ the timeout ago), sorted by worker id. */
  sweep(): LostWorker[] {
    const now = this.now();
    const lost: LostWorker[] = [];
    for (const [workerId, record] of this.workers) {
      if (this.alive(record, now)) continue;
      this.workers.delete(workerId);
      lost.push({ workerId, lastSeenAt: record.lastSeenAt, jobs: jobsOf(record) });
    }
    return lost.sort((a, b) => (a.workerId < b.workerId ? -1 : a.workerId > b.workerId ? 1 : 0));
  }

  /**
   * Workers that can take part of a job needing `operators`: live, with a free slot, offering every
   * one of the operators. Sorted by worker id, so scheduling is deterministic.
   */
  candidates(operators: Iterable<string> = []): Candidate[] {
    const needed = [...new Set(operators)];
    const now = this.now();
    const out: Candidate[] = [];
    for (const [workerId, record] of this.workers) {
      if (!this.alive(record, now)) continue;
      const free = this.free(record);
      if (free <= 0 || !needed.every((op) => record.operators.has(op))) continue;
      out.push({ worker_id: workerId, free_slots: free, operators: [...record.info.operators] });
    }
    return out.sort((a, b) => (a.worker_id < b.worker_id ? -1 : a.worker_id > b.worker_id ? 1 : 0));
  }

  /**
   * Takes `slots` on each named worker for one generation of a job, all or nothing. Throws
   * `JobError(not_enough_slots)` if a worker is unknown, expired or has fewer free slots than asked
   * (the candidates changed since the schedule was computed), and a plain Error if this generation
   * already holds slots (release it first).
   */
  allocate(jobId: string, generation: number, demand: ReadonlyMap<string, number>): void {
    const key = allocationKey(jobId, generation);
    const now = this.now();
    for (const [workerId, slots] of demand) {
      if (!Number.isSafeInteger(slots) || slots < 0) throw new RangeError(`slot demand on ${workerId} must be a non-negative integer, got ${slots}`);
      const record = this.workers.get(workerId);
      if (record?.allocations.has(key)) throw new Error(`job ${jobId} generation ${generation} already holds slots on worker ${workerId}`);
      if (slots === 0) continue;
      if (record === undefined || !this.alive(record, now)) {
        throw new JobError({ kind: 'not_enough_slots', message: `worker ${workerId} is gone; need ${slots} slots there` });
      }
      const free = this.free(record);
      if (free < slots) {
        throw new JobError({ kind: 'not_enough_slots', message: `worker ${workerId} has ${free} free slots; need ${slots}` });
      }
    }
    for (const [workerId, slots] of demand) {
      if (slots === 0) continue;
      this.workers.get(workerId)?.allocations.set(key, { jobId, generation, slots, allocatedAt: now, unreported: 0, gone: false });
    }
  }

  /** Frees every slot held by this generation of the job; returns how many. */
  release(jobId: string, generation: number): number {
    const key = allocationKey(jobId, generation);
    let freed = 0;
    for (const record of this.workers.values()) {
      const allocation = record.allocations.get(key);
      if (allocation === undefined) continue;
      freed += allocation.slots;
      record.allocations.delete(key);
    }
    return freed;
  }

  /** The workers (live or not yet swept) holding slots for this generation of the job, sorted by id. */
  holders(jobId: string, generation: number): string[] {
    const key = allocationKey(jobId, generation);
    const out: string[] = [];
    for (const [workerId, record] of this.workers) if (record.allocations.has(key)) out.push(workerId);
    return out.sort();
  }

  /** Free slots of a worker, `undefined` for an unknown id (expired but not yet swept workers still count). */
  freeSlots(workerId: string): number | undefined {
    const record = this.workers.get(workerId);
    return record === undefined ? undefined : this.free(record);
  }

  /** Whether the worker is known and heard from less than the timeout ago. */
  isLive(workerId: string): boolean {
    const record = this.workers.get(workerId);
    return record !== undefined && this.alive(record, this.now());
  }

  /** Every operator offered by a live worker (what `validateGraph` checks pipelines against). */
  operators(): Set<string> {
    const now = this.now();
    const out = new Set<string>();
    for (const record of this.workers.values()) if (this.alive(record, now)) record.operators.forEach((op) => out.add(op));
    return out;
  }

  get(workerId: string): WorkerView | undefined {
    const record = this.workers.get(workerId);
    return record === undefined ? undefined : this.view(workerId, record, this.now());
  }

  /** Every known worker (live or not yet swept), sorted by id. */
  list(): WorkerView[] {
    const now = this.now();
    return [...this.workers.keys()].sort().map((id) => this.view(id, this.workers.get(id)!, now));
  }

  get size(): number {
    return this.workers.size;
  }

  /** How many known workers are live, and how many expired but not yet swept. */
  liveness(): { live: number; expired: number } {
    const now = this.now();
    let live = 0;
    for (const record of this.workers.values()) if (this.alive(record, now)) live++;
    return { live, expired: this.workers.size - live };
  }

  /** The per-subtask record counts of one generation of a job, from each worker's latest heartbeat or metrics message. */
  subtaskMetrics(jobId: string, generation: number): SubtaskReport[] {
    const key = allocationKey(jobId, generation);
    const out: SubtaskReport[] = [];
    for (const [workerId, record] of this.workers) {
      // The newer of the heartbeat's and the metrics message's counts.
      const heartbeat = record.reported.get(key);
      const metrics = record.metrics.get(key);
      const entry = metrics !== undefined && (heartbeat === undefined || metrics.at >= heartbeat.at) ? metrics : heartbeat;
      if (entry !== undefined) for (const s of entry.subtasks) out.push({ ...s, workerId, reportedAt: entry.at });
    }
    return out.sort((a, b) => (a.node_id < b.node_id ? -1 : a.node_id > b.node_id ? 1 : a.subtask_index - b.subtask_index));
  }

  private alive(record: WorkerRecord, now: number): boolean {
    return now - record.lastSeenAt < this.heartbeatTimeoutMs;
  }

  private free(record: WorkerRecord): number {
    let used = 0;
    for (const allocation of record.allocations.values()) used += allocation.slots;
    return record.info.slots - used;
  }

  private view(workerId: string, record: WorkerRecord, now: number): WorkerView {
    return {
      workerId,
      slots: record.info.slots,
      freeSlots: this.free(record),
      operators: [...record.info.operators],
      hostname: record.info.hostname,
      pid: record.info.pid,
      registeredAt: record.registeredAt,
      lastSeenAt: record.lastSeenAt,
      live: this.alive(record, now),
      allocations: [...record.allocations.values()].map(({ jobId, generation, slots }) => ({ jobId, generation, slots })).sort(byJobThenGeneration),
      reported: [...record.reported.values()].map((r) => ({ ...r.job })).sort(byJobThenGeneration),
    };
  }
}
