/**
 * The informational requests, which change nothing: a job's record counts and rates
 * (`weir.api.jobs.<job>.metrics`), the controller's Prometheus text (`weir.api.metrics`) and the
 * workers the registry knows (`weir.api.workers.list`).
 */
import type { Msg } from '@nats-io/transport-node';
import {
  PROTOCOL_VERSION,
  controllerMetricsRequestSchema,
  jobMetricsRequestSchema,
  listWorkersRequestSchema,
  type ControllerMetricsReply,
  type JobMetricsReply,
  type ListWorkersReply,
} from '../protocol/index.js';
import { microsFromMs } from '../shared/micros.js';
import type { ControllerMetrics } from './controller-metrics.js';
import type { JobMetrics } from './job-metrics.js';
import type { JobTable } from './job-table.js';
import type { WorkerRegistry } from './registry.js';
import { body, jobOf } from './request-parsing.js';

export interface InfoRequestsOptions {
  table: JobTable;
  registry: WorkerRegistry;
  jobMetrics: JobMetrics;
  metrics: ControllerMetrics;
  /** Largest accepted request. */
  maxMessageBytes: number;
}

export interface InfoRequests {
  job_metrics: (msg: Msg) => Promise<JobMetricsReply>;
  metrics: (msg: Msg) => Promise<ControllerMetricsReply>;
  workers: (msg: Msg) => Promise<ListWorkersReply>;
}

export function infoRequests(options: InfoRequestsOptions): InfoRequests {
  const { table, registry, jobMetrics, metrics, maxMessageBytes: maxBytes } = options;

  function jobMetricsOf(msg: Msg): Promise<JobMetricsReply> {
    const jobId = jobOf(msg);
    body(jobMetricsRequestSchema, msg, maxBytes);
    const runtime = table.runtimeOf(jobId);
    const parallelism = runtime.parallelism();
    const nodes = runtime.spec.graph.nodes.map((n) => ({ id: n.id, operator: n.operator, parallelism: parallelism.get(n.id) ?? n.parallelism }));
    return Promise.resolve({ v: PROTOCOL_VERSION, job_id: jobId, ...jobMetrics.view(jobId, runtime.actor.getSnapshot().context.generation, nodes) });
  }

  async function controllerMetrics(msg: Msg): Promise<ControllerMetricsReply> {
    body(controllerMetricsRequestSchema, msg, maxBytes);
    return { v: PROTOCOL_VERSION, text: await metrics.text() };
  }

  function workerList(msg: Msg): Promise<ListWorkersReply> {
    body(listWorkersRequestSchema, msg, maxBytes);
    const held = (g: { jobId: string; generation: number; slots: number }) => ({ job_id: g.jobId, generation: g.generation, slots: g.slots });
    const data = registry.list().map((w) => ({
      worker_id: w.workerId,
      slots: w.slots,
      free_slots: w.freeSlots,
      operators: w.operators,
      hostname: w.hostname ?? null,
      pid: w.pid ?? null,
      registered_at: microsFromMs(w.registeredAt),
      last_seen_at: microsFromMs(w.lastSeenAt),
      live: w.live,
      allocations: w.allocations.map(held),
      reported: w.reported.map(held),
    }));
    return Promise.resolve({ v: PROTOCOL_VERSION, data });
  }

  return { job_metrics: jobMetricsOf, metrics: controllerMetrics, workers: workerList };
}
