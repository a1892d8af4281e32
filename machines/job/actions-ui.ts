import type { JobState, StopMode } from './types.js';

/** The one action a UI may offer for a job now: the button text, the `stop` value it sends, and whether the job is busy. */
export interface AvailableAction {
  text: string;
  /** The `stop` value to send; null when the button sends nothing (it only shows progress). */
  stop: StopMode | null;
  inProgress: boolean;
}

const action = (text: string, stop: StopMode | null, inProgress: boolean): AvailableAction => ({ text, stop, inProgress });

const STOP_WHILE_STARTING = action('Stop', 'checkpoint', true);
const STOPPING = action('Stopping', null, true);

/** [when running is desired, when it is not] for every state. */
const TABLE: Record<JobState, readonly [AvailableAction, AvailableAction]> = {
  Created: [STOP_WHILE_STARTING, action('Start', 'none', false)],
  Compiling: [STOP_WHILE_STARTING, STOPPING],
  Scheduling: [STOP_WHILE_STARTING, STOPPING],
  Rescaling: [STOP_WHILE_STARTING, STOPPING],
  Recovering: [STOP_WHILE_STARTING, STOPPING],
  Restarting: [STOP_WHILE_STARTING, STOPPING],
  Running: [action('Stop', 'checkpoint', false), STOPPING],
  CheckpointStopping: [action('Force Stop', 'immediate', true), action('Force Stop', 'immediate', true)],
  Stopping: [action('Stopping', 'checkpoint', true), STOPPING],
  Stopped: [action('Starting', null, true), action('Start', 'none', false)],
  Finishing: [action('Finishing', null, true), action('Finishing', null, true)],
  Finished: [action('Finished', null, false), action('Finished', null, false)],
  Failed: [action('Failed', null, false), action('Start', 'none', false)],
  Failing: [action('Failing', null, true), action('Failing', null, true)],
};

/** `runningDesired` is `stop === 'none'` in the job's desired config. */
export function availableActions(state: JobState, runningDesired: boolean): AvailableAction {
  const [desired, notDesired] = TABLE[state];
  return { ...(runningDesired ? desired : notDesired) };
}
