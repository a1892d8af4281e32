/**
 * One seed of the lifecycle fuzzer: fast-check generates a sequence of commands from the seed, runs it
 * against a fresh deployment (its own nats-server, two controllers and workers), settles and checks every
 * invariant at the end; a failing sequence is shrunk, each try on a fresh deployment again, within a time
 * budget. The report names the seed and the path of the shrunk sequence, which replays it.
 */
import fc from 'fast-check';
import { command, Settle, type FuzzCommand } from './commands.js';
import { newModel } from './model.js';
import { FUZZ_SETTINGS, LifecycleSystem, type FuzzSettings, type FuzzStats } from './system.js';

export interface SeedOptions {
  seed: number;
  /** The path of a counterexample and its commands' replay path: replays exactly that sequence, without shrinking. */
  path?: string;
  replayPath?: string;
  /** Commands in a sequence at most. */
  maxCommands: number;
  /** How long shrinking a failure may take. */
  shrinkMs: number;
  settings?: FuzzSettings;
  stats: FuzzStats;
  /** Told when a sequence (a run or a shrinking try) starts and how it ended. */
  progress?: (line: string) => void;
}

export interface SeedResult {
  failed: boolean;
  seed: number;
  /** Sequences run: the generated one, then the shrinking tries. */
  sequences: number;
  /** fast-check's report: the seed, the path, the shrunk commands and the error (with what happened). */
  report: string;
  replay: string | null;
}

/**
 * Runs one given sequence of commands on a fresh deployment, then a settle point: the fuzzer's findings,
 * kept as regression tests. Throws the first broken invariant, with what happened.
 */
export async function runSequence(commands: readonly FuzzCommand[], stats: FuzzStats, settings: FuzzSettings = FUZZ_SETTINGS): Promise<void> {
  const system = await LifecycleSystem.start(settings, stats);
  const model = newModel(settings.workers * settings.slotsPerWorker, settings.maxJobs);
  try {
    for (const next of [...commands, new Settle()]) await next.run(model, system);
  } catch (err) {
    throw new Error(`${errorText(err)}\n--- what happened ---\n${system.history.join('\n')}\n${system.tails()}`, { cause: err });
  } finally {
    await system.stop();
  }
}

export async function fuzzSeed(options: SeedOptions): Promise<SeedResult> {
  const settings = options.settings ?? FUZZ_SETTINGS;
  let sequences = 0;
  /** Set by the first failure: shrinking stops trying once it has passed. */
  let shrinkUntil = Number.POSITIVE_INFINITY;
  const property = fc.asyncProperty(fc.commands([command], { maxCommands: options.maxCommands, size: 'max', ...(options.replayPath === undefined ? {} : { replayPath: options.replayPath }) }), async (commands) => {
    // Out of shrinking time: a try that is not run does not fail, so fast-check keeps the smallest failure so far.
    // A replay runs its one sequence only.
    if (Date.now() > shrinkUntil || (options.path !== undefined && sequences > 0)) return;
    sequences++;
    const system = await LifecycleSystem.start(settings, options.stats);
    const model = newModel(settings.workers * settings.slotsPerWorker, settings.maxJobs);
    try {
      await fc.asyncModelRun(() => ({ model, real: system }), commands);
      await new Settle().run(model, system);
      options.progress?.(`sequence ${sequences} passed: ${[...commands].length} commands`);
      // WEIR_FUZZ_VERBOSE=1: what happened in a sequence that passed too (a slow settle point, say).
      if (process.env['WEIR_FUZZ_VERBOSE'] === '1') options.progress?.(`what happened:\n${system.history.join('\n')}\n${system.tails()}`);
    } catch (err) {
      if (shrinkUntil === Number.POSITIVE_INFINITY) shrinkUntil = Date.now() + options.shrinkMs;
      options.progress?.(`sequence ${sequences} failed: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`);
      throw new Error(`${errorText(err)}\n--- what happened ---\n${system.history.join('\n')}\n${system.tails()}`, { cause: err });
    } finally {
      await system.stop();
    }
  });
  const details = await fc.check(property, {
    seed: options.seed,
    numRuns: 1,
    ...(options.path === undefined ? {} : { path: options.path, endOnFailure: true }),
  });
  // fast-check needs the commands' own replay path too, which it prints inside the counterexample.
  const replayPath = /replayPath="([^"]*)"/.exec(details.counterexample === null ? '' : fc.stringify(details.counterexample))?.[1];
  const replay = details.failed
    ? `npm run fuzz:lifecycle -- --seed ${details.seed} --path ${details.counterexamplePath ?? ''}${replayPath === undefined ? '' : ` --replay-path '${replayPath}'`} --commands ${options.maxCommands}`
    : null;
  return {
    failed: details.failed,
    seed: details.seed,
    sequences,
    report: details.failed ? `${fc.defaultReportMessage(details) ?? 'failed'}\nreplay: ${replay ?? ''}\n\n${errorText(details.errorInstance)}` : 'passed',
    replay,
  };
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
