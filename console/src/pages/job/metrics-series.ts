/**
 * The metrics panel's data, pure (tested in test/console/metrics-series.test.ts): each operator's records
 * in and out per second over time, from its subtasks' samples. A sample is a subtask's running totals at
 * `at` (µs); subtasks report at their own moments, so each subtask's totals are interpolated onto one
 * shared grid, summed per operator, and the rate is the difference between grid points. The grid step is
 * never finer than the subtasks' usual sample interval, so the rates do not saw-tooth between reports.
 */
import type { OperatorMetricGroupList } from '../../types.js';

export type OperatorMetrics = OperatorMetricGroupList['data'][number];
export type MetricSample = OperatorMetrics['subtasks'][number]['samples'][number];
type Counter = 'records_in' | 'records_out';

export interface OperatorRates {
  id: string;
  /** `node (operator)`. */
  label: string;
  recordsIn: (number | null)[];
  recordsOut: (number | null)[];
}

export interface RateSeries {
  /** Seconds since the epoch (uPlot's time scale), one per point. */
  x: number[];
  operators: OperatorRates[];
}

export const DEFAULT_MAX_POINTS = 120;

/**
 * A subtask's running total at `t`, interpolated between its samples (oldest first). After its last
 * sample it holds that total (a subtask that finished counts no more; one about to report is at most an
 * interval behind); before its first it is null, unless within `holdBefore` µs of it.
 */
export function totalAt(samples: readonly MetricSample[], t: number, counter: Counter, holdBefore = 0): number | null {
  const first = samples[0];
  const last = samples[samples.length - 1];
  if (first === undefined || last === undefined) return null;
  if (t < first.at) return first.at - t <= holdBefore ? first[counter] : null;
  if (t >= last.at) return last[counter];
  // Binary search for the last sample at or before t.
  let lo = 0;
  let hi = samples.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if ((samples[mid] as MetricSample).at <= t) lo = mid;
    else hi = mid - 1;
  }
  const a = samples[lo] as MetricSample;
  const b = samples[lo + 1];
  if (b === undefined || b.at === a.at || a.at === t) return a[counter];
  return a[counter] + ((b[counter] - a[counter]) * (t - a.at)) / (b.at - a.at);
}

/** The median gap between consecutive samples of any subtask (µs), or null with fewer than two samples. */
export function typicalInterval(groups: readonly OperatorMetrics[]): number | null {
  const gaps: number[] = [];
  for (const group of groups) {
    for (const subtask of group.subtasks) {
      for (let i = 1; i < subtask.samples.length; i++) {
        const gap = (subtask.samples[i] as MetricSample).at - (subtask.samples[i - 1] as MetricSample).at;
        if (gap > 0) gaps.push(gap);
      }
    }
  }
  if (gaps.length === 0) return null;
  gaps.sort((a, b) => a - b);
  return gaps[Math.floor(gaps.length / 2)] as number;
}

/**
 * The grid: over the span every reporting subtask covers, in steps of at least the typical interval, at
 * most `maxPoints` points. It ends at the earliest last sample among the subtasks still reporting (whose
 * last sample is within two intervals of the newest), so the newest point is not read while some of
 * them have yet to report it; a subtask that stopped long ago (finished) holds its total instead. The
 * start is chosen the same way.
 */
export function sampleGrid(groups: readonly OperatorMetrics[], maxPoints = DEFAULT_MAX_POINTS): number[] {
  const interval = typicalInterval(groups);
  if (interval === null) return [];
  const firsts: number[] = [];
  const lasts: number[] = [];
  for (const group of groups) {
    for (const subtask of group.subtasks) {
      const first = subtask.samples[0];
      const last = subtask.samples[subtask.samples.length - 1];
      if (first !== undefined && last !== undefined) {
        firsts.push(first.at);
        lasts.push(last.at);
      }
    }
  }
  const newest = Math.max(...lasts);
  const oldest = Math.min(...firsts);
  const end = Math.min(...lasts.filter((t) => t >= newest - 2 * interval));
  const start = Math.max(...firsts.filter((t) => t <= oldest + 2 * interval));
  if (!(end > start)) return [];
  const step = Math.max(interval, (end - start) / Math.max(1, maxPoints - 1));
  const grid: number[] = [];
  // From the end backwards, so the newest point is the end.
  for (let t = end; t >= start - 1e-6; t -= step) grid.push(t);
  return grid.reverse();
}

/**
 * An operator's running total at each grid point: the sum over its subtasks, null where any has no data
 * yet (`holdBefore`: how far before a subtask's first sample its first total still counts, so that
 * subtasks reporting a moment apart do not blank the first point).
 */
export function operatorTotals(group: OperatorMetrics, grid: readonly number[], counter: Counter, holdBefore = 0): (number | null)[] {
  return grid.map((t) => {
    let sum = 0;
    for (const subtask of group.subtasks) {
      const v = totalAt(subtask.samples, t, counter, holdBefore);
      if (v === null) return null;
      sum += v;
    }
    return group.subtasks.length === 0 ? null : sum;
  });
}

/** Per-second rates between consecutive points (the first point has none; a reset counter reads 0). */
export function ratesOf(totals: readonly (number | null)[], grid: readonly number[]): (number | null)[] {
  return totals.map((total, i) => {
    const before = totals[i - 1];
    if (i === 0 || total === null || before === null || before === undefined) return null;
    const dt = ((grid[i] as number) - (grid[i - 1] as number)) / 1_000_000;
    return dt > 0 ? Math.max(0, (total - before) / dt) : null;
  });
}

/** Everything the charts draw; operators in the order the API lists them. */
export function rateSeries(groups: readonly OperatorMetrics[], maxPoints = DEFAULT_MAX_POINTS): RateSeries {
  const grid = sampleGrid(groups, maxPoints);
  const hold = typicalInterval(groups) ?? 0;
  return {
    x: grid.map((t) => t / 1_000_000),
    operators: groups.map((group) => ({
      id: group.node_id,
      label: group.node_id === group.operator ? group.node_id : `${group.node_id} (${group.operator})`,
      recordsIn: ratesOf(operatorTotals(group, grid, 'records_in', hold), grid),
      recordsOut: ratesOf(operatorTotals(group, grid, 'records_out', hold), grid),
    })),
  };
}
