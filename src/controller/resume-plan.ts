import type { JobState } from '../../machines/job/types.js';
import type { ResumeState } from './job-runtime.js';

/** How a job found in the store resumes after a controller restart (reference §1.1). */
export interface ResumePlan {
  /** Restore the actor in this terminal state; undefined: a fresh actor (Created → Compiling). */
  resumeState: ResumeState | undefined;
  /** The state to persist before resuming when it differs from the stored one. */
  rewrite: JobState | undefined;
}

export function resumePlan(state: JobState): ResumePlan {
  switch (state) {
    case 'Stopped':
    case 'Finished':
    case 'Failed':
      return { resumeState: state, rewrite: undefined };
    case 'Failing':
      return { resumeState: 'Failed', rewrite: 'Failed' };
    case 'Stopping':
    case 'CheckpointStopping':
      return { resumeState: 'Stopped', rewrite: 'Stopped' };
    case 'Finishing':
      return { resumeState: 'Finished', rewrite: 'Finished' };
    case 'Created':
    case 'Compiling':
    case 'Scheduling':
    case 'Running':
    case 'Recovering':
    case 'Rescaling':
    case 'Restarting':
      return { resumeState: undefined, rewrite: undefined };
  }
}
