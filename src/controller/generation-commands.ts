/**
 * A job's commands to the workers of one of its generations: start, stop, kill (and release the
 * slots), checkpoint barriers and two-phase commits. Each is a request per worker; what the answers say
 * about where the generation still runs is kept in the generation (`goneWorkers`) and the registry.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { JobError } from '../../machines/job/types.js';
import { PROTOCOL_VERSION, subjects, type CheckpointRequest, type CommitRequest, type StartExecution, type StopExecution } from '../protocol/index.js';
import type { CheckpointCoordinator, CheckpointTrigger, CommitTrigger } from './checkpoint-coordinator.js';
import { subtaskKey, type GenerationState } from './generations.js';
import type { WorkerRegistry } from './registry.js';
import { askWorker, type WorkerAnswer } from './worker-requests.js';
import { microsFromMs } from '../shared/micros.js';

/** A commit request waits for the sinks' writes (one publish per output row), not just for an ack. */
const COMMIT_REQUEST_TIMEOUT_MS = 30_000;

export interface GenerationCommandsOptions {
  nc: NatsConnection;
  jobId: string;
  registry: WorkerRegistry;
  log: Logger;
  /** Deadline of one controller → worker request. */
  requestTimeoutMs: number;
  /** The runtime's generations by number: read for their workers, updated as workers end them. */
  generations: Map<number, GenerationState>;
  /** A torn-down generation's checkpoints end with it. */
  coordinator: Pick<CheckpointCoordinator, 'endGeneration'>;
  /**
   * This controller's lease epoch on the job's shard while it owns the job, else null: every command carries
   * it (`owner_epoch`, which workers check against the newest they have seen), and none goes out without it.
   * Undefined: commands carry no epoch.
   */
  ownerEpoch?: () => number | null;
}

export class GenerationCommands {
  constructor(private readonly options: GenerationCommandsOptions) {}

  private ask(subject: string, body: object, timeout = this.options.requestTimeoutMs): Promise<WorkerAnswer> {
    const epoch = this.options.ownerEpoch?.();
    if (epoch === null) return Promise.reject(new Error(`stale_owner: this controller no longer owns job ${this.options.jobId}`));
    return askWorker(this.options.nc, subject, epoch === undefined ? body : { ...body, owner_epoch: epoch }, timeout);
  }

  /** The workers that may still run the generation. */
  workersOf(generation: number): string[] {
    const { generations, registry, jobId } = this.options;
    const gen = generations.get(generation);
    const fromPlan = gen === undefined ? [] : [...gen.assignments.keys()].filter((w) => !gen.goneWorkers.has(w));
    // A generation scheduled by an earlier incarnation is only known to the registry: booked there, or, while
    // a takeover has not adopted it yet (a stop that arrives during reconciling), only in the workers' heartbeats.
    const fromRegistry = registry.holders(jobId, generation);
    const reporting = gen === undefined ? [...registry.reportedBy(jobId, generation).keys()] : [];
    return [...new Set([...fromPlan, ...fromRegistry, ...reporting])].sort();
  }

  /** Starts the worker's part of the generation; rejects when the worker no longer takes it. */
  start(workerId: string, body: StartExecution): Promise<void> {
    return this.ask(subjects.workerStart(workerId), body).then((r) => {
      if (r === 'gone') throw new Error('stale_generation');
    });
  }

  /**
   * A worker acknowledges an immediate stop or a kill only once the generation's runners there have
   * stopped, and answers `gone` when nothing of it runs there: either way its slots there are free.
   */
  async stopWorkers(generation: number, mode: StopExecution['mode'], workers = this.workersOf(generation)) {
    const body: StopExecution = { v: PROTOCOL_VERSION, job_id: this.options.jobId, generation, mode };
    const results = await Promise.allSettled(workers.map((w) => this.ask(subjects.workerStop(w), body)));
    workers.forEach((workerId, i) => {
      if (results[i]?.status === 'fulfilled' && (mode !== 'graceful' || results[i].value === 'gone')) this.endedOn(generation, workerId);
    });
    return workers.map((workerId, i) => ({ workerId, result: results[i]! }));
  }

  /** Nothing of the generation runs on the worker any more: its slots there are free now. */
  endedOn(generation: number, workerId: string): void {
    this.options.generations.get(generation)?.goneWorkers.add(workerId);
    this.options.registry.ended(workerId, this.options.jobId, generation);
  }

  /** Kill, then release the slots. `strict`: reject when a live worker did not confirm. */
  async teardown(generation: number, strict: boolean): Promise<void> {
    const { registry, log, jobId, generations, coordinator } = this.options;
    const results = await this.stopWorkers(generation, 'kill');
    const failed = results.filter((r) => r.result.status === 'rejected' && registry.isLive(r.workerId));
    for (const r of results) {
      if (r.result.status === 'rejected') log.warn({ generation, workerId: r.workerId, err: r.result.reason as unknown }, 'kill request failed');
    }
    if (strict && failed.length > 0) {
      throw new JobError({ kind: 'retryable', message: `kill of generation ${generation} not confirmed by ${failed.map((r) => r.workerId).join(', ')}` });
    }
    registry.release(jobId, generation);
    generations.delete(generation);
    coordinator.endGeneration(generation);
  }

  /** Barriers go to the workers that run sources; each must accept the request. */
  async triggerCheckpoint(request: CheckpointTrigger): Promise<void> {
    const gen = this.options.generations.get(request.generation);
    const workers = gen === undefined ? [] : [...gen.sourceWorkers].filter((w) => !gen.goneWorkers.has(w));
    if (workers.length === 0) throw new Error('no source workers known for this generation');
    const body: CheckpointRequest = {
      v: PROTOCOL_VERSION,
      job_id: this.options.jobId,
      generation: request.generation,
      epoch: request.epoch,
      min_epoch: request.minEpoch,
      then_stop: request.thenStop,
      timestamp: microsFromMs(Date.now()),
    };
    const results = await Promise.allSettled(workers.map((w) => this.ask(subjects.workerCheckpoint(w), body)));
    const failed = workers.filter((_, i) => results[i]?.status === 'rejected');
    if (failed.length > 0) throw new Error(`checkpoint request not accepted by ${failed.join(', ')}`);
  }

  /** Commits grouped by the worker that runs each subtask; resolves once every worker confirmed. */
  async sendCommits(request: CommitTrigger): Promise<void> {
    const gen = this.options.generations.get(request.generation);
    if (gen === undefined) throw new Error(`generation ${request.generation} is not running`);
    const byWorker = new Map<string, CommitRequest['commits']>();
    for (const commit of request.commits) {
      const owner = gen.owners.get(subtaskKey(commit.node_id, commit.subtask_index));
      if (owner === undefined) throw new Error(`no worker runs ${commit.node_id}[${commit.subtask_index}] in generation ${request.generation}`);
      byWorker.set(owner, [...(byWorker.get(owner) ?? []), commit]);
    }
    const timeout = Math.max(this.options.requestTimeoutMs, COMMIT_REQUEST_TIMEOUT_MS);
    const results = await Promise.allSettled(
      [...byWorker].map(async ([workerId, commits]) => {
        const body: CommitRequest = { v: PROTOCOL_VERSION, job_id: this.options.jobId, generation: request.generation, epoch: request.epoch, commits };
        if ((await this.ask(subjects.workerCommit(workerId), body, timeout)) === 'gone') throw new Error(`${workerId} no longer runs generation ${request.generation}`);
      }),
    );
    const failed = results.flatMap((r) => (r.status === 'rejected' ? [r.reason instanceof Error ? r.reason.message : String(r.reason)] : []));
    if (failed.length > 0) throw new Error(failed.join('; '));
  }
}
