import { describe, expect, test } from 'vitest';
import { JOB_STATES, availableActions } from '../../machines/index.js';
import type { JobState, StopMode } from '../../machines/index.js';

type Cell = [text: string, stop: StopMode | null, inProgress: boolean];

/** Reference §6, verbatim: [running desired, running not desired]. */
const EXPECTED: Record<JobState, [Cell, Cell]> = {
  Created: [['Stop', 'checkpoint', true], ['Start', 'none', false]],
  Compiling: [['Stop', 'checkpoint', true], ['Stopping', null, true]],
  Scheduling: [['Stop', 'checkpoint', true], ['Stopping', null, true]],
  Rescaling: [['Stop', 'checkpoint', true], ['Stopping', null, true]],
  Recovering: [['Stop', 'checkpoint', true], ['Stopping', null, true]],
  Restarting: [['Stop', 'checkpoint', true], ['Stopping', null, true]],
  Running: [['Stop', 'checkpoint', false], ['Stopping', null, true]],
  CheckpointStopping: [['Force Stop', 'immediate', true], ['Force Stop', 'immediate', true]],
  Stopping: [['Stopping', 'checkpoint', true], ['Stopping', null, true]],
  Stopped: [['Starting', null, true], ['Start', 'none', false]],
  Finishing: [['Finishing', null, true], ['Finishing', null, true]],
  Finished: [['Finished', null, false], ['Finished', null, false]],
  Failed: [['Failed', null, false], ['Start', 'none', false]],
  Failing: [['Failing', null, true], ['Failing', null, true]],
};

describe('availableActions covers every (state, running desired) cell', () => {
  const cells = JOB_STATES.flatMap((state) => [true, false].map((desired) => [state, desired] as const));
  test.each(cells)('%s, running desired = %s', (state, desired) => {
    const [text, stop, inProgress] = EXPECTED[state][desired ? 0 : 1];
    expect(availableActions(state, desired)).toEqual({ text, stop, inProgress });
  });

  test('the table has a row for each of the 14 states and callers get a copy', () => {
    expect(Object.keys(EXPECTED).sort()).toEqual([...JOB_STATES].sort());
    const a = availableActions('Running', true);
    a.text = 'mutated';
    expect(availableActions('Running', true).text).toBe('Stop');
  });
});
