/**
 * `npm run fuzz:lifecycle -- [--minutes N] [--commands N] [--seed S [--path P --replay-path R]] [--shrink-minutes M]`: the
 * lifecycle fuzzer on real processes for as long as asked. Seeds follow one another (the first is --seed,
 * or random); each prints how it went, and every 30 s the commands per second and the invariants checked.
 * A failure prints its seed, the shrunk sequence and the command that replays it, and exits 1.
 * `WEIR_FUZZ_TAIL_LINES=N` shows N log lines of each process in a report (default 40);
 * `WEIR_FUZZ_VERBOSE=1` prints what happened in sequences that passed too.
 */
import { parseArgs } from 'node:util';
import { fuzzSeed } from './lifecycle/run.js';
import { summary } from './lifecycle/report.js';
import { newStats } from './lifecycle/system.js';

const { values } = parseArgs({
  options: {
    minutes: { type: 'string' },
    commands: { type: 'string' },
    seed: { type: 'string' },
    path: { type: 'string' },
    'replay-path': { type: 'string' },
    'shrink-minutes': { type: 'string' },
  },
  strict: true,
});

function number(raw: string | undefined, fallback: number, flag: string): number {
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) {
    console.error(`fuzz:lifecycle: ${flag} must be a positive number, got ${JSON.stringify(raw)}`);
    process.exit(2);
  }
  return n;
}

const minutes = number(values.minutes, 5, '--minutes');
const maxCommands = Math.round(number(values.commands, 80, '--commands'));
const shrinkMs = number(values['shrink-minutes'], 15, '--shrink-minutes') * 60_000;
const replaying = values.path !== undefined;
let seed = values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : Math.round(number(values.seed, 1, '--seed'));

const stats = newStats();
const started = Date.now();
const deadline = started + minutes * 60_000;
const stamp = () => new Date().toISOString().slice(11, 19);
let seeds = 0;
const progress = setInterval(() => console.log(`${stamp()} ${summary(stats, Date.now() - started, seeds).split('\n')[0]}`), 30_000);
progress.unref();

console.log(`${stamp()} lifecycle fuzzer: ${replaying ? `replaying seed ${seed} path ${values.path}` : `${minutes} min from seed ${seed}`}, up to ${maxCommands} commands a sequence`);
let failed = false;
do {
  seeds++;
  const result = await fuzzSeed({
    seed,
    ...(values.path === undefined ? {} : { path: values.path }),
    ...(values['replay-path'] === undefined ? {} : { replayPath: values['replay-path'] }),
    maxCommands,
    shrinkMs,
    stats,
    progress: (line) => console.log(`${stamp()} seed ${seed}: ${line}`),
  });
  if (result.failed) {
    console.log(`\n${result.report}\n`);
    failed = true;
    break;
  }
  seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
} while (!replaying && Date.now() < deadline);
clearInterval(progress);
console.log(`\n${summary(stats, Date.now() - started, seeds)}`);
process.exit(failed ? 1 : 0);
