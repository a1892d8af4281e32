/** What the lifecycle fuzzer says of a run: commands, their rate, and the invariants it checked. */
import type { FuzzStats } from './system.js';

export function commandsRun(stats: FuzzStats): number {
  return Object.values(stats.commands).reduce((sum, n) => sum + n, 0);
}

export function summary(stats: FuzzStats, elapsedMs: number, seeds: number): string {
  const commands = commandsRun(stats);
  const settle = [...stats.settleMs].sort((a, b) => a - b);
  const at = (q: number) => (settle.length === 0 ? 0 : settle[Math.min(settle.length - 1, Math.floor(q * settle.length))]!);
  const perKind = Object.entries(stats.commands)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([kind, n]) => `${kind} ${n}`)
    .join(', ');
  const invariants = Object.entries(stats.invariants)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([name, n]) => `  ${name}: ${n}`)
    .join('\n');
  return [
    `${(elapsedMs / 60_000).toFixed(1)} min, ${seeds} seed${seeds === 1 ? '' : 's'}: ${commands} commands on real processes (${(commands / (elapsedMs / 1000)).toFixed(2)}/s), ${stats.skipped} skipped, ${stats.unavailable} answers unavailable (asked again)`,
    `  ${perKind}`,
    `settle points: ${settle.length}, settled in p50 ${(at(0.5) / 1000).toFixed(1)} s, max ${(at(1) / 1000).toFixed(1)} s`,
    'invariants checked:',
    invariants,
  ].join('\n');
}
