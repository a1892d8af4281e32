/**
 * A bounded slice of the lifecycle fuzzer (test/fuzz/lifecycle/): fixed seeds, so a change that breaks one
 * fails the same way every time, and one random seed, printed, so every run also looks somewhere new.
 * `npm run fuzz:lifecycle -- --minutes N` runs it for longer.
 */
import { describe, expect, it } from 'vitest';
import { fuzzSeed } from './lifecycle/run.js';
import { summary } from './lifecycle/report.js';
import { newStats } from './lifecycle/system.js';

const FIXED_SEEDS = [1, 2, 3];
const RANDOM_SEEDS = [0, 1].map(() => Math.floor(Math.random() * 2 ** 31));
const COMMANDS = 25;
/** Enough for a sequence of 25 commands and its settle points; a failure gets two minutes of shrinking. */
const SEED_TIMEOUT_MS = 8 * 60_000;

describe('lifecycle fuzzer (real nats-server, controller and workers)', () => {
  it.each([...FIXED_SEEDS, ...RANDOM_SEEDS])('seed %i: every invariant holds', async (seed) => {
    const stats = newStats();
    const started = Date.now();
    const result = await fuzzSeed({ seed, maxCommands: COMMANDS, shrinkMs: 2 * 60_000, stats });
    console.log(`seed ${seed}: ${summary(stats, Date.now() - started, 1)}`);
    expect(result.failed, result.report).toBe(false);
  }, SEED_TIMEOUT_MS);
});
