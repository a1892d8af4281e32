/**
 * weir on real processes for fault tests and the lifecycle fuzzer: a nats-server from the harness, a
 * `weir controller` and `weir worker` processes (killed, paused and restarted at will), and a client that
 * talks to them over NATS only, as any user would.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import { expect } from 'vitest';
import type { JobState } from '../../machines/job/types.js';
import { jobViewSchema, listJobViewsReplySchema, listWorkersReplySchema, subjects, type JobView, type WorkerViewMessage } from '../../src/protocol/index.js';
import { requestJson, untilState, type Reply } from './cluster.js';
import { connectTo, eventually } from './nats.js';
import { startNatsServer, type NatsServerHandle } from './nats-server.js';
import { killAll, WeirProcess } from './processes.js';

export interface DeploymentOptions {
  /** Extra `weir controller` flags. */
  controllerArgs?: string[];
  /** A worker silent this long is lost. Default 1,500 ms. */
  heartbeatTimeoutMs?: number;
  /** How often workers heartbeat. Default 300 ms. */
  heartbeatIntervalMs?: number;
  /** Environment of every weir process. */
  env?: Record<string, string>;
  /** The controllers' shard lease TTL. Default 1,500 ms: a controller killed and started again takes its jobs back soon. */
  leaseTtlMs?: number;
}

/**
 * The server configuration weir's processes are tested against: the API limit is 1 MiB, the server takes
 * 2 MiB so that an oversized request reaches weir.
 */
export const SERVER_CONFIG = 'max_payload: 2MB\n';

export class Deployment {
  readonly processes = new Set<WeirProcess>();
  private controllers = 0;

  private constructor(
    readonly server: NatsServerHandle,
    readonly client: NatsConnection,
    private readonly options: DeploymentOptions,
  ) {}

  static async start(options: DeploymentOptions = {}): Promise<Deployment> {
    const server = await startNatsServer({ jetstream: true, config: SERVER_CONFIG });
    const client = await connectTo(server.url, 'deployment-client');
    return new Deployment(server, client, options);
  }

  /** A `weir` process against this deployment's server; not waited for. */
  spawn(name: string, args: readonly string[], env: Record<string, string> = {}): WeirProcess {
    const p = new WeirProcess(name, [...args, '--nats', this.server.url], { ...this.options.env, ...env });
    this.processes.add(p);
    return p;
  }

  /** A controller, once it logs that it started. */
  controller(...extra: string[]): Promise<WeirProcess> {
    return this.startController(`controller-${++this.controllers}`, extra);
  }

  /**
   * A controller whose process is named `name` (in reports and tails; `controller` names them
   * `controller-1`, `controller-2`, …), once it logs that it started. Its `--id` is still given in `extra`.
   */
  controllerNamed(name: string, ...extra: string[]): Promise<WeirProcess> {
    return this.startController(name, extra);
  }

  private async startController(name: string, extra: readonly string[]): Promise<WeirProcess> {
    const args = [
      'controller',
      '--heartbeat-timeout',
      String(this.options.heartbeatTimeoutMs ?? 1_500),
      '--heartbeat-interval',
      String(this.options.heartbeatIntervalMs ?? 300),
      '--lease-ttl',
      String(this.options.leaseTtlMs ?? 1_500),
      ...(this.options.controllerArgs ?? []),
      ...extra,
    ];
    const p = this.spawn(name, args);
    await p.waitForLog('controller started');
    return p;
  }

  /** A worker with this id, once the controller registered it. */
  async worker(id: string, slots = 4): Promise<WeirProcess> {
    const p = this.spawn(id, ['worker', '--slots', String(slots), '--id', id]);
    await p.waitForLog('registered with the controller');
    return p;
  }

  request(subject: string, body: unknown, timeoutMs = 5_000): Promise<Reply> {
    return requestJson(this.client, subject, body, timeoutMs);
  }

  /** Creates a job; fails the test on an error reply. */
  async create(pipeline: unknown): Promise<string> {
    const reply = await this.request(subjects.apiJobsCreate(), pipeline);
    expect(reply.error, JSON.stringify(reply.error)).toBeUndefined();
    return reply['job_id'] as string;
  }

  /** Changes the desired config; fails the test on an error reply. */
  async configure(jobId: string, update: Record<string, unknown>): Promise<Reply> {
    const reply = await this.request(subjects.apiJobConfig(jobId), { v: 1, ...update });
    expect(reply.error).toBeUndefined();
    return reply;
  }

  async view(jobId: string): Promise<JobView> {
    return jobViewSchema.parse(await this.request(subjects.apiJobGet(jobId), { v: 1 }));
  }

  /** Polls the job (a restarting controller may not answer for a moment) until it is in `state` and `extra` holds. */
  reach(jobId: string, state: JobState, timeoutMs = 20_000, extra: (v: JobView) => boolean = () => true): Promise<JobView> {
    return untilState(() => this.view(jobId), state, { timeoutMs, intervalMs: 100 }, (v) => expect(extra(v)).toBe(true));
  }

  /**
   * Every job's view, all pages, from whichever controller answers (the listing covers every owner's jobs);
   * `request` asks for each page (default: this deployment's plain request).
   */
  async views(request: (subject: string, body: unknown) => Promise<Reply> = (subject, body) => this.request(subject, body)): Promise<JobView[]> {
    const out: JobView[] = [];
    let after: string | undefined;
    for (;;) {
      const reply = listJobViewsReplySchema.parse(await request(subjects.apiJobsViews(), { v: 1, limit: 100, ...(after === undefined ? {} : { starting_after: after }) }));
      out.push(...reply.data);
      if (!reply.has_more || reply.data.length === 0) return out;
      after = reply.data.at(-1)!.job_id;
    }
  }

  /** The controller registry's workers. */
  async workers(): Promise<WorkerViewMessage[]> {
    return listWorkersReplySchema.parse(await this.request(subjects.apiWorkersList(), { v: 1 })).data;
  }

  /** Waits until every worker's booked slots are exactly what its heartbeats report running. */
  slotsSettled(timeoutMs = 10_000): Promise<WorkerViewMessage[]> {
    return eventually(
      async () => {
        const workers = await this.workers();
        for (const w of workers) expect(w.allocations, `worker ${w.worker_id}: booked slots against what it reports`).toEqual(w.reported);
        return workers;
      },
      { timeoutMs, intervalMs: 100 },
    );
  }

  async stop(): Promise<void> {
    await killAll(this.processes);
    await this.client.close();
    await this.server.dispose();
  }
}
