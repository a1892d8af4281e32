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

/** A generation a worker reports running, with the slots it takes there. */
export interface ReportedGeneration extends JobGeneration {
  slots: number;
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
  reported: ReportedGeneration[];
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
}

/** A generation as the worker's last heartbeat (or registration) reported it. */
interface Report {
  job: JobGeneration;
  slots: number;
  subtasks: SubtaskMetrics[];
  at: number;
  /** Consecutive reports of it while this worker holds no allocation for it. */
  unallocated: number;
}

/**
 * How many consecutive heartbeats must leave out a generation before it counts as gone (one could have
 * been sent just before the worker started it), and how many must report a generation the registry
 * holds no slots for before it counts as an orphan (one could have been sent just before its tasks ended).
 */
const CONSECUTIVE_HEARTBEATS = 2;

type RunningJobs = Pick<Heartbeat, 'jobs'>['jobs'];

/** Slots a reported generation takes: as the worker says, or (older workers) its subtasks' distinct indexes. */
function reportedSlots(job: RunningJobs[number]): number {
  return job.slots ?? new Set(job.subtasks.map((s) => s.subtask_index)).size;
}

interface WorkerRecord {
  info: WorkerInfo;
  operators: ReadonlySet<string>;
  registeredAt: number;
  lastSeenAt: number;
  /** Keyed by `allocationKey`. */
  allocations: Map<string, Allocation>;
  /** The last heartbeat's jobs, keyed by `allocationKey`. */
  reported: Map<string, Report>;
  /** The worker refused a start for want of slots: none count as free until its next heartbeat says what it runs. */
  full: boolean;
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
   * Adds a worker, or replaces the record of a known id. `running` is what the worker says runs there
   * already: its slots count as taken at once, so a controller that restarted does not book them twice.
   * An allocation of the replaced record that the worker no longer reports is gone (the worker restarted):
   * it is dropped and returned. A generation the worker reports, this registry keeps; one it holds no
   * slots for is an orphan (`orphans`). A restarted worker reports nothing, so it is never counted as
   * still running a stale generation (the reference's PR #914).
   */
  register(info: WorkerInfo, running: RunningJobs = []): RegisterResult {
    if (!Number.isSafeInteger(info.slots) || info.slots < 1) throw new RangeError(`slots must be a positive integer, got ${info.slots}`);
    const previous = this.workers.get(info.worker_id);
    const now = this.now();
    if (previous !== undefined && this.alive(previous, now)) {
      const holder = processOf(previous.info);
      const claimant = processOf(info);
      if (holder !== null && claimant !== null && holder !== claimant) throw new WorkerIdTakenError(info.worker_id, holder);
    }
    const reported = this.reports(running, now, new Map());
    const allocations = new Map<string, Allocation>();
    const lost: JobGeneration[] = [];
    for (const [key, allocation] of previous?.allocations ?? []) {
      if (reported.has(key)) allocations.set(key, allocation);
      else lost.push({ jobId: allocation.jobId, generation: allocation.generation });
    }
    this.workers.set(info.worker_id, {
      info: { ...info, operators: [...info.operators] },
      operators: new Set(info.operators),
      registeredAt: now,
      lastSeenAt: now,
      allocations,
      reported: this.countUnallocated(reported, allocations, new Map()),
      full: false,
      metrics: new Map(),
    });
    return { replaced: previous !== undefined, lost: lost.sort(byJobThenGeneration) };
  }

  private reports(jobs: RunningJobs, now: number, previous: ReadonlyMap<string, Report>): Map<string, Report> {
    return new Map(
      jobs.map((job) => {
        const key = allocationKey(job.job_id, job.generation);
        const report: Report = {
          job: { jobId: job.job_id, generation: job.generation },
          slots: reportedSlots(job),
          // Decoded for this call alone: kept as it is (every controller hears every heartbeat, so a copy per
          // subtask would cost each one in proportion to the whole fleet).
          subtasks: job.subtasks,
          at: now,
          unallocated: previous.get(key)?.unallocated ?? 0,
        };
        return [key, report];
      }),
    );
  }

  /** Counts, per report, the consecutive reports without an allocation here. */
  private countUnallocated(reported: Map<string, Report>, allocations: ReadonlyMap<string, Allocation>, previous: ReadonlyMap<string, Report>): Map<string, Report> {
    for (const [key, report] of reported) report.unallocated = allocations.has(key) ? 0 : (previous.get(key)?.unallocated ?? 0) + 1;
    return reported;
  }

  /** Records a heartbeat (and the subtask metrics it carries). `unknown_worker`: it must register again. */
  heartbeat(workerId: string, report?: Pick<Heartbeat, 'jobs'>): 'ok' | 'unknown_worker' {
    const record = this.workers.get(workerId);
    if (record === undefined) return 'unknown_worker';
    const now = this.now();
    record.lastSeenAt = now;
    if (report !== undefined) {
      record.full = false;
      const previous = record.reported;
      record.reported = this.countUnallocated(this.reports(report.jobs, now, previous), record.allocations, previous);
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
        { job: { jobId: job.job_id, generation: job.generation }, subtasks: job.subtasks, at: now },
      ]),
    );
    return 'ok';
  }

  /**
   * Generations this worker holds slots for but has stopped reporting in its heartbeats (after the start
   * grace, in consecutive heartbeats): their tasks ended without the controller hearing of it, e.g.
   * because the task events were published while the worker was disconnected. Their slots there are
   * free again: the allocations are released and returned (so each is returned once).
   */
  vanished(workerId: string): JobGeneration[] {
    const record = this.workers.get(workerId);
    if (record === undefined) return [];
    const gone: JobGeneration[] = [];
    for (const [key, allocation] of record.allocations) {
      if (allocation.unreported < CONSECUTIVE_HEARTBEATS) continue;
      record.allocations.delete(key);
      gone.push({ jobId: allocation.jobId, generation: allocation.generation });
    }
    return gone.sort(byJobThenGeneration);
  }

  /**
   * Generations this worker reports running, in consecutive heartbeats, while the registry holds no slots
   * for them there: tasks the controller no longer wants (a generation it gave up, a controller that
   * restarted). Their slots stay taken until the worker stops reporting them; the caller stops them.
   * Returned at every heartbeat while they last, so a stop that got lost is sent again.
   */
  orphans(workerId: string): ReportedGeneration[] {
    const record = this.workers.get(workerId);
    if (record === undefined) return [];
    const out: ReportedGeneration[] = [];
    for (const report of record.reported.values()) {
      if (report.unallocated >= CONSECUTIVE_HEARTBEATS) out.push({ ...report.job, slots: report.slots });
    }
    return out.sort(byJobThenGeneration);
  }

  /**
   * The worker confirmed that the generation's tasks there are gone (it acknowledged their kill, or every
   * one of them reported finished): its allocation and its report there are dropped, so the slots are
   * free without waiting for the next heartbeat. Returns the slots freed.
   */
  ended(workerId: string, jobId: string, generation: number): number {
    const record = this.workers.get(workerId);
    if (record === undefined) return 0;
    const key = allocationKey(jobId, generation);
    const freed = Math.max(record.allocations.get(key)?.slots ?? 0, record.reported.get(key)?.slots ?? 0);
    record.allocations.delete(key);
    record.reported.delete(key);
    return freed;
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
   * Workers that could take part of a job needing `operators`: live and offering every one of the
   * operators, each with its free slots (none, when it is full: the scheduler says how many workers it
   * looked at). Sorted by worker id, so scheduling is deterministic.
   */
  candidates(operators: Iterable<string> = []): Candidate[] {
    const needed = [...new Set(operators)];
    const now = this.now();
    const out: Candidate[] = [];
    for (const [workerId, record] of this.workers) {
      if (!this.alive(record, now)) continue;
      if (!needed.every((op) => record.operators.has(op))) continue;
      out.push({ worker_id: workerId, free_slots: Math.max(0, this.free(record)), operators: [...record.info.operators] });
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
      this.workers.get(workerId)?.allocations.set(key, { jobId, generation, slots, allocatedAt: now, unreported: 0 });
    }
  }

  /**
   * What live workers report running of this generation of the job, by worker: the subtasks and the slots
   * they take. A new owner of the job re-attaches to its tasks from this (`adopt`).
   */
  reportedBy(jobId: string, generation: number): Map<string, { subtasks: { nodeId: string; subtaskIndex: number; exhausted: boolean }[]; slots: number }> {
    const key = allocationKey(jobId, generation);
    const now = this.now();
    const out = new Map<string, { subtasks: { nodeId: string; subtaskIndex: number; exhausted: boolean }[]; slots: number }>();
    for (const [workerId, record] of this.workers) {
      const report = record.reported.get(key);
      if (report === undefined || !this.alive(record, now)) continue;
      out.set(workerId, { subtasks: report.subtasks.map((s) => ({ nodeId: s.node_id, subtaskIndex: s.subtask_index, exhausted: s.exhausted === true })), slots: report.slots });
    }
    return out;
  }

  /**
   * The slots of a generation that already runs (started by an earlier owner of the job), taken on each
   * worker as it reports them, whatever else is free there: they are in use. Its reports stop counting as
   * an orphan's.
   */
  adopt(jobId: string, generation: number, slotsByWorker: ReadonlyMap<string, number>): void {
    const key = allocationKey(jobId, generation);
    const now = this.now();
    for (const [workerId, slots] of slotsByWorker) {
      const record = this.workers.get(workerId);
      if (record === undefined) continue;
      record.allocations.set(key, { jobId, generation, slots, allocatedAt: now, unreported: 0 });
      const report = record.reported.get(key);
      if (report !== undefined) report.unallocated = 0;
    }
  }

  /**
   * The worker refused a start for want of slots: another controller's tasks took them, and this registry
   * has not heard of them yet. It counts as full until its next heartbeat reports what it runs.
   */
  markFull(workerId: string): void {
    const record = this.workers.get(workerId);
    if (record !== undefined) record.full = true;
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

  /**
   * Slots neither allocated nor reported taken: a generation the worker still runs counts whether or not
   * the registry holds slots for it, since the worker refuses a start beyond its slots.
   */
  private free(record: WorkerRecord): number {
    if (record.full) return 0;
    let used = 0;
    for (const [key, allocation] of record.allocations) used += Math.max(allocation.slots, record.reported.get(key)?.slots ?? 0);
    for (const [key, report] of record.reported) if (!record.allocations.has(key)) used += report.slots;
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
      reported: [...record.reported.values()].map((r) => ({ ...r.job, slots: r.slots })).sort(byJobThenGeneration),
    };
  }
}
