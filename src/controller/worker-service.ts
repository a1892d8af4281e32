/**
 * The NATS face of the worker registry: register, heartbeat and deregister requests from workers,
 * and the periodic sweep that turns expired workers into `worker.lost` for their jobs.
 *
 * - Every message is decoded with the protocol schemas; bad input is answered with an error reply
 *   (when the sender asked for one), logged at warn and counted per code, and changes nothing.
 * - A handler never throws: an unexpected error is answered with `internal`.
 * - Deregister is a publish in the protocol; a sender that uses a request gets an ack (or an error
 *   reply). Deregistering an unknown worker is acknowledged: it is already gone.
 */
import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import type { z } from 'zod';
import {
  MAX_MESSAGE_BYTES,
  PROTOCOL_VERSION,
  SUBJECTS,
  decode,
  deregisterWorkerSchema,
  workerMetricsSchema,
  errorReply,
  heartbeatSchema,
  registerWorkerSchema,
  type Ack,
  type ErrorCode,
  type RegisterWorkerReply,
  RequestRejected,
  replyTo,
  rejectionOf,
} from '../protocol/index.js';
import { WorkerIdTakenError, type JobGeneration, type ReportedGeneration, type WorkerRegistry } from './registry.js';
import type { CountsReport } from './job-metrics.js';

export const CONTROLLER_QUEUE = 'weir-controller';
/** The reference's worker heartbeat cadence. */
export const DEFAULT_HEARTBEAT_INTERVAL_MS = 5_000;
export const DEFAULT_SWEEP_INTERVAL_MS = 1_000;
/** A sweep this much later than its interval ran after the event loop stalled (timer jitter is far less). */
const STALL_MS = 1_000;
/** The reference collects worker metrics every 2 s. */
export const DEFAULT_METRICS_INTERVAL_MS = 2_000;

/** `vanished`: the worker is alive but its heartbeats no longer report the generation's tasks. */
export type LostReason = 'expired' | 'deregistered' | 're-registered' | 'vanished';

export interface WorkerServiceOptions {
  log: Logger;
  /** How often `registry.sweep()` runs. Default 1 s. */
  sweepIntervalMs?: number;
  /** Called once per (job, generation) a lost worker held. May be async; failures are logged. */
  onLost?: (jobId: string, generation: number, workerId: string, reason: LostReason) => void | Promise<void>;
  /**
   * Called at each heartbeat for every generation the worker runs without slots held for it in the
   * registry (`WorkerRegistry.orphans`): the controller stops it. May be async; failures are logged.
   */
  onOrphan?: (workerId: string, orphan: ReportedGeneration) => void | Promise<void>;
  /** Told to workers in the register reply. Default 5 s. */
  heartbeatIntervalMs?: number;
  /** How often workers send their record counts, told in the register reply. Default 2 s, as the reference collects them. */
  metricsIntervalMs?: number;
  /** Largest accepted message. Default `MAX_MESSAGE_BYTES`. */
  maxMessageBytes?: number;
  /** Default `weir-controller`; null: no queue group, every controller hears every worker. */
  queue?: string | null;
  /** The record counts of an accepted heartbeat or metrics message (the job metrics history). Must be cheap. */
  onCounts?: (report: CountsReport) => void;
}

export type WorkerSubject = 'register' | 'heartbeat' | 'deregister' | 'metrics';

export interface WorkerServiceStats {
  received: Record<WorkerSubject, number>;
  /** RequestRejected messages by error code. */
  rejected: Partial<Record<ErrorCode, number>>;
  registered: number;
  heartbeats: number;
  deregistered: number;
  /** Workers removed by the sweep. */
  expired: number;
  /** `onLost` calls, and how many of them failed. */
  lostNotified: number;
  onLostFailures: number;
  /** `onOrphan` calls. */
  orphansNotified: number;
}

export interface WorkerService {
  stats(): WorkerServiceStats;
  /** Resolves once the server has the subscriptions (a round trip on the connection). */
  ready(): Promise<void>;
  /** Runs one sweep now (the timer does this every `sweepIntervalMs`). */
  sweep(): void;
  /** Stops the sweep, drains the subscriptions and waits for pending `onLost` calls. Idempotent. */
  stop(): Promise<void>;
}


export function startWorkerService(nc: NatsConnection, registry: WorkerRegistry, options: WorkerServiceOptions): WorkerService {
  const log = options.log.child({ component: 'worker-service' });
  // `null` asks for no queue group, which `??` would turn into the default one.
  const queue = options.queue === undefined ? CONTROLLER_QUEUE : options.queue;
  const maxBytes = options.maxMessageBytes ?? MAX_MESSAGE_BYTES;
  const heartbeatIntervalMs = options.heartbeatIntervalMs ?? DEFAULT_HEARTBEAT_INTERVAL_MS;
  const metricsIntervalMs = options.metricsIntervalMs ?? DEFAULT_METRICS_INTERVAL_MS;
  const sweepIntervalMs = options.sweepIntervalMs ?? DEFAULT_SWEEP_INTERVAL_MS;
  const onLost = options.onLost;
  const stats: WorkerServiceStats = {
    received: { register: 0, heartbeat: 0, deregister: 0, metrics: 0 },
    rejected: {},
    registered: 0,
    heartbeats: 0,
    deregistered: 0,
    expired: 0,
    lostNotified: 0,
    onLostFailures: 0,
    orphansNotified: 0,
  };
  const pending = new Set<Promise<void>>();
  let stopping: Promise<void> | undefined;

  function body<S extends z.ZodType>(schema: S, msg: Msg): z.output<S> {
    const result = decode(schema, msg.data, { maxBytes });
    if (!result.ok) throw new RequestRejected(result.error.code, result.error.message);
    return result.value;
  }

  /** The `<worker>` token of `weir.ctl.workers.<worker>.<verb>` must name the body's worker. */
  function checkSubjectWorker(msg: Msg, workerId: string): void {
    const token = msg.subject.split('.')[3];
    if (token !== workerId) {
      throw new RequestRejected('bad_schema', `worker_id: "${workerId}" does not match the subject's worker "${token ?? ''}"`);
    }
  }

  /** Runs a callback off the message handler; `stop()` waits for it, and a failure is logged. */
  function track(what: string, fields: Record<string, unknown>, callback: () => void | Promise<void>, onFailure?: () => void): void {
    const call = Promise.resolve()
      .then(callback)
      .catch((err: unknown) => {
        onFailure?.();
        log.error({ err, ...fields }, `${what} failed`);
      })
      .finally(() => pending.delete(call));
    pending.add(call);
  }

  function notifyLost(workerId: string, jobs: readonly JobGeneration[], reason: LostReason): void {
    if (onLost === undefined) return;
    for (const { jobId, generation } of jobs) {
      stats.lostNotified++;
      track('onLost', { jobId, generation, workerId, reason }, () => onLost(jobId, generation, workerId, reason), () => stats.onLostFailures++);
    }
  }

  function notifyOrphans(workerId: string): void {
    const onOrphan = options.onOrphan;
    if (onOrphan === undefined) return;
    for (const orphan of registry.orphans(workerId)) {
      stats.orphansNotified++;
      track('onOrphan', { workerId, jobId: orphan.jobId, generation: orphan.generation }, () => onOrphan(workerId, orphan));
    }
  }

  const respond = (msg: Msg, reply: unknown): void => replyTo(msg, reply, log);

  function counts(report: CountsReport): void {
    try {
      options.onCounts?.(report);
    } catch (err) {
      log.warn({ err }, 'onCounts failed');
    }
  }

  function handle(kind: WorkerSubject, msg: Msg, work: () => unknown): void {
    stats.received[kind]++;
    try {
      respond(msg, work());
    } catch (err) {
      const rejected = rejectionOf(err);
      stats.rejected[rejected.code] = (stats.rejected[rejected.code] ?? 0) + 1;
      const fields = { subject: msg.subject, code: rejected.code, reason: rejected.message, bytes: msg.data.byteLength };
      if (rejected.code === 'internal') log.error({ ...fields, err }, 'worker message failed');
      else log.warn(fields, 'rejected worker message');
      respond(msg, errorReply(rejected.code, rejected.message));
    }
  }

  const onRegister = (msg: Msg): unknown => {
    const info = body(registerWorkerSchema, msg);
    const { v: _v, jobs, ...worker } = info;
    let registration: ReturnType<WorkerRegistry['register']>;
    try {
      registration = registry.register(worker, jobs);
    } catch (err) {
      if (err instanceof WorkerIdTakenError) throw new RequestRejected('conflict', err.message);
      throw err;
    }
    const { replaced, lost } = registration;
    stats.registered++;
    log.info({ workerId: worker.worker_id, slots: worker.slots, replaced, lostJobs: lost.length, runningJobs: jobs?.length ?? 0 }, 'worker registered');
    notifyLost(worker.worker_id, lost, 're-registered');
    return { v: PROTOCOL_VERSION, heartbeat_interval_ms: heartbeatIntervalMs, metrics_interval_ms: metricsIntervalMs } satisfies RegisterWorkerReply;
  };

  const onHeartbeat = (msg: Msg): unknown => {
    const beat = body(heartbeatSchema, msg);
    checkSubjectWorker(msg, beat.worker_id);
    if (registry.heartbeat(beat.worker_id, beat) === 'unknown_worker') {
      throw new RequestRejected('unknown_worker', `unknown worker "${beat.worker_id}"; register again`);
    }
    stats.heartbeats++;
    counts(beat);
    const vanished = registry.vanished(beat.worker_id);
    if (vanished.length > 0) {
      log.warn({ workerId: beat.worker_id, jobs: vanished }, 'the worker no longer reports tasks it was given: their slots are free');
      notifyLost(beat.worker_id, vanished, 'vanished');
    }
    notifyOrphans(beat.worker_id);
    return { v: PROTOCOL_VERSION, ok: true } satisfies Ack;
  };

  /** A publish: nothing answers it, and an unknown worker's metrics are dropped (it will register). */
  const onMetrics = (msg: Msg): unknown => {
    const report = body(workerMetricsSchema, msg);
    checkSubjectWorker(msg, report.worker_id);
    if (registry.recordMetrics(report.worker_id, report) === 'unknown_worker') throw new RequestRejected('unknown_worker', `unknown worker "${report.worker_id}"`);
    counts(report);
    return { v: PROTOCOL_VERSION, ok: true } satisfies Ack;
  };

  const onDeregister = (msg: Msg): unknown => {
    const bye = body(deregisterWorkerSchema, msg);
    checkSubjectWorker(msg, bye.worker_id);
    const known = registry.get(bye.worker_id) !== undefined;
    const lost = registry.deregister(bye.worker_id);
    if (known) {
      stats.deregistered++;
      log.info({ workerId: bye.worker_id, reason: bye.reason, lostJobs: lost.length }, 'worker deregistered');
    }
    notifyLost(bye.worker_id, lost, 'deregistered');
    return { v: PROTOCOL_VERSION, ok: true } satisfies Ack;
  };

  const subscribe = (subject: string, kind: WorkerSubject, work: (msg: Msg) => unknown): Subscription =>
    nc.subscribe(subject, {
      ...(queue === null ? {} : { queue }),
      callback: (err, msg) => {
        if (err !== null) {
          log.error({ err, subject }, 'worker subscription failed');
          return;
        }
        handle(kind, msg, () => work(msg));
      },
    });

  const subscriptions = [
    subscribe(SUBJECTS.workerRegister.wildcard, 'register', onRegister),
    subscribe(SUBJECTS.workerHeartbeat.wildcard, 'heartbeat', onHeartbeat),
    subscribe(SUBJECTS.workerDeregister.wildcard, 'deregister', onDeregister),
    subscribe(SUBJECTS.workerMetrics.wildcard, 'metrics', onMetrics),
  ];

  /** Monotonic time of the last timed sweep. */
  let lastSweepAt = performance.now();

  /**
   * A sweep that runs late found the event loop stalled (a takeover adopting many jobs, a GC pause, a
   * paused process): heartbeats that arrived meanwhile still wait in the socket, so nobody is judged
   * expired until the next sweep, which runs after them.
   */
  function timedSweep(): void {
    const now = performance.now();
    const sinceLast = now - lastSweepAt;
    lastSweepAt = now;
    if (sinceLast > sweepIntervalMs + Math.max(sweepIntervalMs, STALL_MS)) {
      log.info({ stalledMs: Math.round(sinceLast) }, 'the worker sweep ran late: judging expiry at the next one');
      return;
    }
    sweep();
  }

  function sweep(): void {
    try {
      for (const lost of registry.sweep()) {
        stats.expired++;
        log.warn({ workerId: lost.workerId, lastSeenAt: lost.lastSeenAt, lostJobs: lost.jobs.length }, 'worker expired');
        notifyLost(lost.workerId, lost.jobs, 'expired');
      }
    } catch (err) {
      log.error({ err }, 'worker sweep failed');
    }
  }

  const timer = setInterval(timedSweep, sweepIntervalMs);
  timer.unref();

  return {
    stats: () => structuredClone(stats),
    ready: () => nc.flush(),
    sweep,
    stop() {
      stopping ??= (async () => {
        clearInterval(timer);
        const drained = await Promise.allSettled(subscriptions.map((sub) => sub.drain()));
        for (const result of drained) if (result.status === 'rejected') log.warn({ err: result.reason as unknown }, 'drain failed');
        while (pending.size > 0) await Promise.allSettled([...pending]);
      })();
      return stopping;
    },
  };
}
