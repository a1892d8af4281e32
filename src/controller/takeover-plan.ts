import type { JobState } from '../../machines/job/types.js';
import type { ResumeState } from './job-runtime.js';

/**
 * How a controller adopts a job found in the store: at a takeover (the job's shard had another owner) and
 * after a restart alike. docs/high-availability.md has this table with the reasons.
 */
export interface TakeoverPlan {
  /** Restore the actor in this state; undefined: a fresh actor (Created → Compiling → a new generation). */
  resumeState: ResumeState | undefined;
  /** The state to persist before resuming when it differs from the stored one. */
  rewrite: JobState | undefined;
}

/**
 * `newestRecordCommitting`: the job's newest restorable checkpoint record is still `committing` (its sinks
 * may not have made its output visible); asked for Finishing only.
 */
export function takeoverPlan(state: JobState, newestRecordCommitting: boolean): TakeoverPlan {
  switch (state) {
    case 'Stopped':
    case 'Finished':
    case 'Failed':
      return { resumeState: state, rewrite: undefined };
    case 'Running':
    case 'Rescaling':
      // Re-attach to the running tasks; a rescale then starts again from the desired parallelism.
      return { resumeState: 'Running', rewrite: undefined };
    case 'Failing':
      return { resumeState: 'Failed', rewrite: 'Failed' };
    case 'Stopping':
    case 'CheckpointStopping':
      // What is left of the generation is killed as an orphan; the newest completed checkpoint stands.
      return { resumeState: 'Stopped', rewrite: 'Stopped' };
    case 'Finishing':
      // The last epoch's output must become visible: a new generation restores it, commits it, and finishes.
      return newestRecordCommitting ? { resumeState: undefined, rewrite: undefined } : { resumeState: 'Finished', rewrite: 'Finished' };
    case 'Created':
    case 'Compiling':
    case 'Scheduling':
    case 'Recovering':
    case 'Restarting':
      return { resumeState: undefined, rewrite: undefined };
  }
}

/** The states `takeoverPlan` must read the checkpoint records for. */
export function needsNewestRecord(state: JobState): boolean {
  return state === 'Finishing';
}
