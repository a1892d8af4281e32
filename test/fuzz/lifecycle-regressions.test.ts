/**
 * What the lifecycle fuzzer found, each as the shrunk sequence it printed, run on real processes. The
 * seed it came from is in the name; the sequence is written out so that it stays the same whatever
 * becomes of the fuzzer's command weights.
 */
import { describe, it } from 'vitest';
import { Create, PauseController, Restart } from './lifecycle/commands.js';
import { runSequence } from './lifecycle/run.js';
import { newStats } from './lifecycle/system.js';

describe('lifecycle fuzzer findings', () => {
  it('seed 2119763712: two safe restarts in a row lost a transition row (two observations of one millisecond shared an event id)', async () => {
    await runSequence([new Create('unbounded', 38), new Restart(8, 'safe', false, 40), new Restart(11, 'safe', false, 381)], newStats());
  }, 120_000);

  it('seed 1010897344: a get that raced the rebalance after a paused controller came back was answered unknown_job (the job left the table mid-request)', async () => {
    // A race of real processes: it failed about one run in three before the fix.
    await runSequence([new Create('bounded', 44), new Create('unbounded', 0), new PauseController(0, 65)], newStats());
  }, 120_000);
});
