/**
 * One provided job machine for many job runtimes. `machine.provide()` builds a whole new machine (every
 * state node, transition and action object): once per job, that was about 40 % of the controller's heap
 * (bench:controller, heap snapshot at 1,000 jobs). Here the machine is provided once, and its actors and
 * side effects find the runtime they belong to by the job id every one of them carries.
 */
import type { SnapshotFrom } from 'xstate';
import { jobMachine } from '../../machines/job/machine.js';
import type { StopResult } from '../../machines/job/setup.js';
import {
  JobError,
  type AdoptInput,
  type CheckpointSchedule,
  type FinalCheckpointResult,
  type GenerationInput,
  type ScheduleInput,
  type ScheduleResult,
  type StopInput,
} from '../../machines/job/types.js';
import { settledActor } from './job-time.js';

/** A job actor's snapshot. */
export type JobSnapshot = SnapshotFrom<typeof jobMachine>;

/** What one job runtime implements for the machine. */
export interface JobHooks {
  compileJob(input: GenerationInput): Promise<void>;
  /** `signal`: aborted when the machine no longer wants this generation (it left Scheduling). */
  scheduleJob(input: ScheduleInput, signal: AbortSignal): Promise<ScheduleResult>;
  stopJob(input: StopInput): Promise<StopResult>;
  killJob(input: GenerationInput): Promise<void>;
  cleanupJob(input: GenerationInput): Promise<void>;
  finalCheckpoint(input: GenerationInput): Promise<FinalCheckpointResult>;
  /** `signal`: aborted when the machine stopped waiting for the adoption (a stop, a timeout). */
  adoptGeneration(input: AdoptInput, signal: AbortSignal): Promise<void>;
  armCheckpoints(schedule: CheckpointSchedule): void;
  disarmCheckpoints(input: GenerationInput): void;
  releaseGeneration(input: GenerationInput): void;
  logStatus(status: { jobId: string; generation: number; restarts: number }): void;
}

export class JobMachines {
  private readonly hooks = new Map<string, JobHooks>();

  readonly machine = jobMachine.provide({
    actors: {
      compileJob: settledActor<void, GenerationInput>(async (input) => this.of(input.jobId).compileJob(input)),
      scheduleJob: settledActor<ScheduleResult, ScheduleInput>(async (input, signal) => this.of(input.jobId).scheduleJob(input, signal)),
      stopJob: settledActor<StopResult, StopInput>(async (input) => this.of(input.jobId).stopJob(input)),
      killJob: settledActor<void, GenerationInput>(async (input) => this.of(input.jobId).killJob(input)),
      cleanupJob: settledActor<void, GenerationInput>(async (input) => this.of(input.jobId).cleanupJob(input)),
      finalCheckpoint: settledActor<FinalCheckpointResult, GenerationInput>(async (input) => this.of(input.jobId).finalCheckpoint(input)),
      adoptGeneration: settledActor<void, AdoptInput>(async (input, signal) => this.of(input.jobId).adoptGeneration(input, signal)),
    },
    actions: {
      armCheckpoints: (_, params: CheckpointSchedule) => this.hooks.get(params.jobId)?.armCheckpoints(params),
      disarmCheckpoints: (_, params: GenerationInput) => this.hooks.get(params.jobId)?.disarmCheckpoints(params),
      releaseGeneration: (_, params: GenerationInput) => this.hooks.get(params.jobId)?.releaseGeneration(params),
      logStatus: (_, params: { jobId: string; generation: number; restarts: number }) => this.hooks.get(params.jobId)?.logStatus(params),
    },
  });

  /** Routes the machine's work for `jobId` to `hooks` until the returned function is called. */
  register(jobId: string, hooks: JobHooks): () => void {
    if (this.hooks.has(jobId)) throw new Error(`job ${jobId} already has a runtime`);
    this.hooks.set(jobId, hooks);
    return () => {
      if (this.hooks.get(jobId) === hooks) this.hooks.delete(jobId);
    };
  }

  private of(jobId: string): JobHooks {
    const hooks = this.hooks.get(jobId);
    // A runtime that stopped while its actor still ran a step: the step fails, nothing else happens.
    if (hooks === undefined) throw new JobError({ kind: 'retryable', message: `job ${jobId} has no runtime in this controller` });
    return hooks;
  }
}
