/** A job state as a coloured badge; the colour groups states by what they mean to an operator (style.css). */
import type { JobState } from '../types.js';

export type StateTone = 'running' | 'busy' | 'stopped' | 'finished' | 'failed';

const TONES: Record<JobState, StateTone> = {
  Created: 'busy',
  Compiling: 'busy',
  Scheduling: 'busy',
  Running: 'running',
  Rescaling: 'busy',
  CheckpointStopping: 'busy',
  Recovering: 'failed',
  Restarting: 'busy',
  Stopping: 'busy',
  Stopped: 'stopped',
  Finishing: 'busy',
  Finished: 'finished',
  Failing: 'failed',
  Failed: 'failed',
};

export function toneOf(state: JobState): StateTone {
  return TONES[state];
}

export function StateBadge({ state }: { state: JobState }) {
  return <span class={`badge tone-${toneOf(state)}`}>{state}</span>;
}
