/**
 * The lifecycle fuzzer's model: what the user asked of each job, and what that implies once the system
 * settles. It knows nothing of how weir gets there; it only says where a job must end up.
 */
import type { JobState, StopMode } from '../../../machines/job/types.js';

export type PipelineKind = 'bounded' | 'unbounded';

export interface ModelJob {
  /** Where the job stands in the model's list (commands name jobs by it). */
  slot: number;
  id: string;
  kind: PipelineKind;
  /** The desired stop mode; `none` means run. */
  stop: StopMode;
  /** Every node's parallelism (the pipeline's default is 1). */
  parallelism: number;
  deleted: boolean;
  /** A bounded job once seen Finished: it stays Finished whatever is asked of it. */
  finished: boolean;
}

export interface LifecycleModel {
  jobs: ModelJob[];
  /** Slots of the workers the deployment keeps running (a killed worker is replaced). */
  capacity: number;
  /** Kept free for the probe job each settle point submits. */
  reserve: number;
  maxJobs: number;
}

export function newModel(capacity: number, maxJobs: number): LifecycleModel {
  return { jobs: [], capacity, reserve: 1, maxJobs };
}

export function liveJobs(model: LifecycleModel): ModelJob[] {
  return model.jobs.filter((job) => !job.deleted);
}

/** The job a command names by `pick`, among the jobs that exist; undefined when there is none. */
export function pickJob(model: LifecycleModel, pick: number): ModelJob | undefined {
  const live = liveJobs(model);
  return live.length === 0 ? undefined : live[pick % live.length];
}

/** Slots the jobs would hold if each ran as asked: a job asked to run, and not done, needs its parallelism. */
export function demand(model: LifecycleModel, change?: { job?: ModelJob; stop?: StopMode; parallelism?: number; extra?: number }): number {
  let total = change?.extra ?? 0;
  for (const job of liveJobs(model)) {
    const stop = job === change?.job && change.stop !== undefined ? change.stop : job.stop;
    const parallelism = job === change?.job && change.parallelism !== undefined ? change.parallelism : job.parallelism;
    if (stop === 'none' && !job.finished) total += parallelism;
  }
  return total;
}

/** Whether the jobs, so changed, still fit beside the probe's reserve (a job that cannot get slots would wait, and at last fail). */
export function fits(model: LifecycleModel, change: Parameters<typeof demand>[1]): boolean {
  return demand(model, change) + model.reserve <= model.capacity;
}

/** The states the job may settle in; empty for a deleted job (it must be gone). */
export function settledStates(job: ModelJob): readonly JobState[] {
  if (job.deleted) return [];
  if (job.finished) return ['Finished'];
  if (job.kind === 'bounded') return job.stop === 'none' ? ['Finished'] : ['Stopped', 'Finished'];
  return job.stop === 'none' ? ['Running'] : ['Stopped'];
}

/** States in which a job rests or runs: every other state waits for something, with a deadline. */
export const NOT_WAITING: readonly JobState[] = ['Created', 'Running', 'Stopped', 'Finished', 'Failed'];
