/**
 * The controller's Prometheus metrics, in a registry of its own (never prom-client's global one), served
 * as exposition text on `weir.api.metrics`.
 *
 * Updates on hot paths are O(1): label children are bound once and kept, so a transition or a request
 * costs one increment. Gauges of current counts (jobs by state, workers) are computed when scraped.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { JOB_STATES, type JobState } from '../../machines/job/types.js';
import type { ErrorCode } from '../protocol/index.js';
import type { CheckpointKind, CheckpointOutcome } from './checkpoint-coordinator.js';

export interface ControllerMetricsSources {
  /** The state of every job the controller runs, read at each scrape. */
  jobStates(): Iterable<JobState>;
  /** Known workers, live and expired (not yet swept), read at each scrape. */
  workers(): { live: number; expired: number };
  /** Jobs by the controller that owns them, as this controller sees the leases, read at each scrape. */
  jobsByOwner(): Promise<Map<string, number>>;
}

export interface ControllerMetrics {
  readonly registry: Registry;
  /** A job changed its state. */
  transition(to: JobState): void;
  /** A checkpoint ended (completed, failed or its commit failed). */
  checkpoint(outcome: CheckpointOutcome): void;
  /** An API request of this kind was received. */
  request(kind: string): void;
  /** An API request was answered with this error code. */
  rejection(code: ErrorCode): void;
  /** The NATS connection reconnected. */
  reconnect(): void;
  /** This controller took over a job from another owner (or from its own earlier run), in the state it found it in. */
  takeover(state: JobState): void;
  /** The exposition text (Prometheus text format 0.0.4). */
  text(): Promise<string>;
}

const CHECKPOINT_TYPE: Record<CheckpointKind, string> = { periodic: 'scheduled', final: 'stopping', manual: 'manual' };

/** Binds label children on first use, so an increment afterwards is one map lookup. */
function children<T>(make: (label: string) => T): (label: string) => T {
  const bound = new Map<string, T>();
  return (label) => {
    let child = bound.get(label);
    if (child === undefined) {
      child = make(label);
      bound.set(label, child);
    }
    return child;
  };
}

export function createControllerMetrics(sources: ControllerMetricsSources): ControllerMetrics {
  const registry = new Registry();

  new Gauge({
    name: 'weir_jobs',
    help: 'Jobs by lifecycle state.',
    labelNames: ['state'],
    registers: [registry],
    collect() {
      const counts = new Map<JobState, number>(JOB_STATES.map((s) => [s, 0]));
      for (const state of sources.jobStates()) counts.set(state, (counts.get(state) ?? 0) + 1);
      for (const [state, n] of counts) this.set({ state }, n);
    },
  });
  new Gauge({
    name: 'weir_workers',
    help: 'Registered workers, by whether their heartbeats are current.',
    labelNames: ['live'],
    registers: [registry],
    collect() {
      const { live, expired } = sources.workers();
      this.set({ live: 'true' }, live);
      this.set({ live: 'false' }, expired);
    },
  });
  const transitions = new Counter({ name: 'weir_job_transitions_total', help: 'Job state transitions, by the state entered.', labelNames: ['to'], registers: [registry] });
  const checkpoints = new Counter({
    name: 'weir_checkpoints_total',
    help: 'Checkpoints that ended, by outcome (completed, failed, commit_failed) and type (scheduled, stopping, manual).',
    labelNames: ['outcome', 'type'],
    registers: [registry],
  });
  const duration = new Histogram({
    name: 'weir_checkpoint_duration_seconds',
    help: 'Duration of completed checkpoints, from the first barrier to the durable (and committed) record.',
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300],
    registers: [registry],
  });
  const bytes = new Histogram({
    name: 'weir_checkpoint_bytes',
    help: 'State bytes of completed checkpoints, summed over their subtasks.',
    buckets: [1024, 16 * 1024, 256 * 1024, 1024 ** 2, 16 * 1024 ** 2, 256 * 1024 ** 2, 1024 ** 3, 16 * 1024 ** 3],
    registers: [registry],
  });
  new Gauge({
    name: 'weir_jobs_by_owner',
    help: 'Jobs by the controller that owns them (the leases as this controller sees them; "" while a takeover is under way).',
    labelNames: ['owner'],
    registers: [registry],
    async collect() {
      this.reset();
      for (const [owner, n] of await sources.jobsByOwner()) this.set({ owner }, n);
    },
  });
  const takeovers = new Counter({
    name: 'weir_takeovers_total',
    help: 'Jobs this controller took over from another owner or from its own earlier run, by the state it found them in.',
    labelNames: ['state'],
    registers: [registry],
  });
  const reconnects = new Counter({ name: 'weir_nats_reconnects_total', help: 'Reconnects of the controller’s NATS connection.', registers: [registry] });
  const requests = new Counter({ name: 'weir_controller_requests_total', help: 'API requests received, by kind.', labelNames: ['kind'], registers: [registry] });
  const rejections = new Counter({ name: 'weir_controller_rejections_total', help: 'API requests answered with an error, by code.', labelNames: ['code'], registers: [registry] });

  const transitionTo = children((to) => transitions.labels(to));
  const requestOf = children((kind) => requests.labels(kind));
  const rejectionOf = children((code) => rejections.labels(code));
  const checkpointOf = children((key) => {
    const [outcome, type] = key.split('/') as [string, string];
    return checkpoints.labels(outcome, type);
  });

  return {
    registry,
    transition: (to) => transitionTo(to).inc(),
    checkpoint(outcome) {
      if (outcome.kind === 'completed') {
        const { record } = outcome;
        checkpointOf(`completed/${CHECKPOINT_TYPE[record.kind]}`).inc();
        let finish = record.completed_at;
        for (const span of record.spans) if (span.span === 'Checkpointing' && span.finish !== null) finish = span.finish;
        duration.observe(Math.max(0, finish - record.start_time) / 1e6);
        let total = 0;
        for (const o of record.operators) total += o.bytes;
        bytes.observe(total);
        return;
      }
      checkpointOf(`${outcome.kind}/${CHECKPOINT_TYPE[outcome.checkpoint]}`).inc();
    },
    request: (kind) => requestOf(kind).inc(),
    rejection: (code) => rejectionOf(code).inc(),
    reconnect: () => reconnects.inc(),
    takeover: (state) => takeovers.labels(state).inc(),
    text: () => registry.metrics(),
  };
}
