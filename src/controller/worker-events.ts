/**
 * A job's task and checkpoint events from its workers, aggregated into machine events: each reaches the
 * actor once per generation (`tasks.started`, `tasks.finished`, `source.finished`, the first
 * `task.failed`), and checkpoint events go to the job's CheckpointCoordinator. Events that do not decode,
 * are of another generation than the actor's current one, or name a subtask it does not have are
 * counted and dropped.
 */
import type { Msg } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import type { z } from 'zod';
import type { UnstampedJobEvent } from '../../machines/job/types.js';
import { checkpointEventSchema, decode, taskEventSchema } from '../protocol/index.js';
import type { CheckpointCoordinator } from './checkpoint-coordinator.js';
import type { FinalCheckpoints } from './final-checkpoints.js';
import type { GenerationCommands } from './generation-commands.js';
import { subtaskKey, type GenerationState } from './generations.js';
import type { JobSnapshot } from './job-machines.js';

export interface WorkerEventStats {
  /** Undecodable task/checkpoint events. */
  rejected: number;
  /** Events of another generation than the current one. */
  stale: number;
  /** Events naming a subtask the generation does not have. */
  unknownSubtask: number;
}

/** What every worker event carries to be routed to one subtask of one generation. */
interface WorkerEventFields {
  job_id: string;
  generation: number;
  node_id: string;
  subtask_index: number;
}

export interface WorkerEventsOptions {
  jobId: string;
  log: Logger;
  /** The runtime's generations by number: what their workers reported is kept in them. */
  generations: ReadonlyMap<number, GenerationState>;
  /** The job actor's snapshot now. */
  snapshot: () => JobSnapshot;
  send: (event: UnstampedJobEvent) => void;
  coordinator: Pick<CheckpointCoordinator, 'onCompleted' | 'onProgress'>;
  /** A worker whose tasks all finished has ended the generation. */
  commands: Pick<GenerationCommands, 'endedOn'>;
  /** Exhausted sources wait for the final checkpoint. */
  finals: Pick<FinalCheckpoints, 'maybeFinishWithCheckpoint'>;
}

export class WorkerEvents {
  readonly stats: WorkerEventStats = { rejected: 0, stale: 0, unknownSubtask: 0 };

  constructor(private readonly options: WorkerEventsOptions) {}

  /** Once every subtask of the generation started, while the machine waits for them. */
  maybeSendStarted(): void {
    const ctx = this.options.snapshot();
    const gen = this.options.generations.get(ctx.context.generation);
    if (gen === undefined || gen.startedSent || gen.started.size < gen.owners.size) return;
    if (!ctx.matches({ Scheduling: { attempt: 'starting' } })) return;
    gen.startedSent = true;
    this.options.send({ type: 'tasks.started', generation: gen.generation });
  }

  onTask(msg: Msg): void {
    const { log, send, snapshot, commands, finals } = this.options;
    const accepted = this.acceptWorkerEvent(taskEventSchema, msg, 'task');
    if (accepted === undefined) return;
    const { event, gen, key } = accepted;
    switch (event.event) {
      case 'started':
        gen.started.add(key);
        this.maybeSendStarted();
        break;
      case 'exhausted':
        gen.exhausted.add(key);
        finals.maybeFinishWithCheckpoint();
        break;
      case 'finished': {
        gen.finished.add(key);
        const worker = gen.owners.get(key)!;
        if (gen.assignments.get(worker)?.every((ref) => gen.finished.has(subtaskKey(ref.nodeId, ref.subtaskIndex))) === true) commands.endedOn(gen.generation, worker);
        if (gen.finished.size >= gen.owners.size && !gen.finishedSent) {
          gen.finishedSent = true;
          send({ type: 'tasks.finished', generation: gen.generation });
        } else if (gen.sourceKeys.has(key) && !gen.sourceFinishedSent && snapshot().matches('Running')) {
          gen.sourceFinishedSent = true;
          send({ type: 'source.finished', generation: gen.generation });
        }
        break;
      }
      case 'failed':
        if (gen.failedSent) {
          log.warn({ generation: gen.generation, node: event.node_id, subtask: event.subtask_index, reason: event.reason }, 'another subtask failed');
          break;
        }
        gen.failedSent = true;
        send({
          type: 'task.failed',
          generation: gen.generation,
          message: `${event.node_id}[${event.subtask_index}] on ${event.worker_id}: ${event.reason}`,
          domain: event.domain,
          hint: event.hint,
        });
        break;
    }
  }

  onCheckpoint(msg: Msg): void {
    const accepted = this.acceptWorkerEvent(checkpointEventSchema, msg, 'checkpoint');
    if (accepted === undefined) return;
    const { event } = accepted;
    if (event.event === 'completed') this.options.coordinator.onCompleted(event);
    else this.options.coordinator.onProgress(event);
  }

  /** The generation, when it is the actor's current one and the runtime scheduled it; else counted stale. */
  private currentGeneration(generation: number): GenerationState | undefined {
    if (generation !== this.options.snapshot().context.generation) {
      this.stats.stale++;
      return undefined;
    }
    const gen = this.options.generations.get(generation);
    if (gen === undefined) this.stats.stale++;
    return gen;
  }

  /**
   * A worker event for this job, from a subtask the current generation planned; anything else is
   * counted and dropped. `wanted` filters before the generation check, so it does not count as stale.
   */
  private acceptWorkerEvent<T extends WorkerEventFields, U extends T = T>(
    schema: z.ZodType<T>,
    msg: Msg,
    label: string,
    wanted: (event: T) => event is U = (_event): _event is U => true,
  ): { event: U; gen: GenerationState; key: string } | undefined {
    const decoded = decode(schema, msg.data);
    if (!decoded.ok || decoded.value.job_id !== this.options.jobId) {
      this.stats.rejected++;
      this.options.log.warn({ reason: decoded.ok ? 'job_id does not match the subject' : decoded.error.message }, `rejected ${label} event`);
      return undefined;
    }
    const event = decoded.value;
    if (!wanted(event)) return undefined;
    const gen = this.currentGeneration(event.generation);
    if (gen === undefined) return undefined;
    const key = subtaskKey(event.node_id, event.subtask_index);
    if (!gen.owners.has(key)) {
      this.stats.unknownSubtask++;
      return undefined;
    }
    return { event, gen, key };
  }
}
