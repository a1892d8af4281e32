/**
 * A short history of every job's record counts: the newest samples of each subtask of the job's current
 * generation, taken from the counts the workers' heartbeats and metrics messages carry, and the rates
 * derived from them (the `weir.api.jobs.<job>.metrics` reply).
 *
 * Cost: a report costs a few map lookups and three typed-array writes per subtask; nothing is allocated
 * once a subtask has its ring. Memory: `samples` × 3 numbers per subtask of each job's newest generation;
 * an older generation's rings are dropped when a newer one reports, a deleted job's by `forget`.
 */
import type { JobMetricsReply, MetricSample, OperatorMetricGroup, SubtaskMetricGroup, SubtaskMetrics } from '../protocol/index.js';

export const DEFAULT_METRIC_SAMPLES = 30;
/** Rates span at least this much time when the samples allow. */
export const DEFAULT_RATE_WINDOW_MS = 2_000;
/** A subtask not heard of for this long has stopped: its rates are 0. */
export const DEFAULT_STALE_MS = 12_000;

export interface JobMetricsOptions {
  /** Samples kept per subtask. Default 30. */
  samples?: number;
  rateWindowMs?: number;
  staleMs?: number;
  /** Controller clock (ms), for staleness. */
  now?: () => number;
  /** Only reports of jobs this accepts are kept (the controller's own jobs). */
  accept?: (jobId: string) => boolean;
}

/** What a heartbeat or metrics message reports (`at` in µs, the worker's clock). */
export interface CountsReport {
  at: number;
  jobs: ReadonlyArray<{ job_id: string; generation: number; subtasks: readonly SubtaskMetrics[] }>;
}

/** A node of the job's graph as the reply names it. */
export interface MetricNode {
  id: string;
  operator: string;
  parallelism: number;
}

/** Subtask indexes above this are not kept (a bad report cannot grow memory). */
const MAX_SUBTASK_INDEX = 4_096;

/** A ring of (at µs, records_in, records_out), oldest overwritten first. */
class Series {
  readonly ring: Float64Array;
  /** Next write position. */
  head = 0;
  count = 0;
  /** Controller clock (ms) of the newest sample. */
  receivedAt = 0;

  constructor(readonly capacity: number) {
    this.ring = new Float64Array(capacity * 3);
  }

  /** The i-th sample, 0 the oldest, as its slot in `ring`. */
  slot(i: number): number {
    return ((this.head - this.count + i + this.capacity) % this.capacity) * 3;
  }

  newestAt(): number {
    return this.count === 0 ? -Infinity : this.ring[this.slot(this.count - 1)]!;
  }

  push(at: number, recordsIn: number, recordsOut: number, receivedAt: number): void {
    const o = this.head * 3;
    this.ring[o] = at;
    this.ring[o + 1] = recordsIn;
    this.ring[o + 2] = recordsOut;
    this.head = (this.head + 1) % this.capacity;
    if (this.count < this.capacity) this.count++;
    this.receivedAt = receivedAt;
  }
}

interface JobSeries {
  generation: number;
  /** node id → subtask index → series. */
  nodes: Map<string, Map<number, Series>>;
  /** µs of the newest sample. */
  collectedAt: number | null;
}

export class JobMetrics {
  private readonly jobs = new Map<string, JobSeries>();
  private readonly capacity: number;
  private readonly rateWindowUs: number;
  private readonly staleMs: number;
  private readonly now: () => number;
  private readonly accept: (jobId: string) => boolean;

  constructor(options: JobMetricsOptions = {}) {
    this.capacity = Math.max(2, options.samples ?? DEFAULT_METRIC_SAMPLES);
    this.rateWindowUs = (options.rateWindowMs ?? DEFAULT_RATE_WINDOW_MS) * 1000;
    this.staleMs = options.staleMs ?? DEFAULT_STALE_MS;
    this.now = options.now ?? Date.now;
    this.accept = options.accept ?? (() => true);
  }

  /** Jobs with samples. */
  get size(): number {
    return this.jobs.size;
  }

  /**
   * Takes a sample of every subtask in the report. Reports of an older generation than the newest one
   * seen are ignored, a newer generation replaces the job's samples, and a sample not newer than the
   * subtask's newest (a heartbeat and a metrics message carrying the same counts, or one arriving late)
   * is skipped.
   */
  record(report: CountsReport): void {
    let receivedAt: number | undefined;
    for (const job of report.jobs) {
      if (job.subtasks.length === 0 || !this.accept(job.job_id)) continue;
      let entry = this.jobs.get(job.job_id);
      if (entry !== undefined && job.generation < entry.generation) continue;
      if (entry === undefined || job.generation > entry.generation) {
        entry = { generation: job.generation, nodes: new Map(), collectedAt: null };
        this.jobs.set(job.job_id, entry);
      }
      receivedAt ??= this.now();
      for (const s of job.subtasks) {
        if (s.subtask_index > MAX_SUBTASK_INDEX) continue;
        let node = entry.nodes.get(s.node_id);
        if (node === undefined) {
          node = new Map();
          entry.nodes.set(s.node_id, node);
        }
        let series = node.get(s.subtask_index);
        if (series === undefined) {
          series = new Series(this.capacity);
          node.set(s.subtask_index, series);
        }
        if (report.at <= series.newestAt()) continue;
        series.push(report.at, s.records_in, s.records_out, receivedAt);
        if (entry.collectedAt === null || report.at > entry.collectedAt) entry.collectedAt = report.at;
      }
    }
  }

  /** Drops a job's samples (deleted). */
  forget(jobId: string): void {
    this.jobs.delete(jobId);
  }

  /**
   * The reply's body for one generation of a job: every node in graph order with its subtasks
   * 0 … parallelism−1 (zeros for a subtask not reported yet), totals and rates summed over them.
   */
  view(jobId: string, generation: number, nodes: readonly MetricNode[]): Pick<JobMetricsReply, 'generation' | 'collected_at' | 'data'> {
    const entry = this.jobs.get(jobId);
    const current = entry?.generation === generation ? entry : undefined;
    const now = this.now();
    const data: OperatorMetricGroup[] = nodes.map((node) => {
      const series = current?.nodes.get(node.id);
      const subtasks: SubtaskMetricGroup[] = [];
      const group: OperatorMetricGroup = {
        node_id: node.id,
        operator: node.operator,
        parallelism: node.parallelism,
        records_in: 0,
        records_out: 0,
        records_in_rate: 0,
        records_out_rate: 0,
        subtasks,
      };
      for (let i = 0; i < node.parallelism; i++) {
        const subtask = this.subtaskView(i, series?.get(i), now);
        subtasks.push(subtask);
        group.records_in += subtask.records_in;
        group.records_out += subtask.records_out;
        group.records_in_rate += subtask.records_in_rate;
        group.records_out_rate += subtask.records_out_rate;
      }
      return group;
    });
    return { generation, collected_at: current?.collectedAt ?? null, data };
  }

  private subtaskView(index: number, series: Series | undefined, now: number): SubtaskMetricGroup {
    if (series === undefined || series.count === 0) {
      return { subtask_index: index, records_in: 0, records_out: 0, records_in_rate: 0, records_out_rate: 0, samples: [] };
    }
    const { ring } = series;
    const samples: MetricSample[] = [];
    for (let i = 0; i < series.count; i++) {
      const o = series.slot(i);
      samples.push({ at: ring[o]!, records_in: ring[o + 1]!, records_out: ring[o + 2]! });
    }
    const newest = samples[samples.length - 1]!;
    let inRate = 0;
    let outRate = 0;
    if (samples.length >= 2 && now - series.receivedAt < this.staleMs) {
      // The newest sample at least the window older than the newest one, else the oldest there is.
      let base = samples[0]!;
      for (let i = samples.length - 2; i >= 0; i--) {
        if (newest.at - samples[i]!.at >= this.rateWindowUs) {
          base = samples[i]!;
          break;
        }
      }
      const seconds = (newest.at - base.at) / 1e6;
      if (seconds > 0) {
        inRate = Math.max(0, (newest.records_in - base.records_in) / seconds);
        outRate = Math.max(0, (newest.records_out - base.records_out) / seconds);
      }
    }
    return { subtask_index: index, records_in: newest.records_in, records_out: newest.records_out, records_in_rate: inRate, records_out_rate: outRate, samples };
  }
}
