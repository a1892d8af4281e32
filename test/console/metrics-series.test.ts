import { describe, expect, it } from 'vitest';
import { operatorTotals, rateSeries, ratesOf, sampleGrid, totalAt, typicalInterval, type OperatorMetrics } from '../../console/src/pages/job/metrics-series.js';

const S = 1_000_000;
const T0 = 1_700_000_000 * S;
const sample = (sec: number, recordsIn: number, recordsOut = recordsIn) => ({ at: T0 + sec * S, records_in: recordsIn, records_out: recordsOut });

function operator(id: string, subtasks: ReturnType<typeof sample>[][], name = 'map'): OperatorMetrics {
  return {
    node_id: id,
    operator: name,
    parallelism: subtasks.length,
    records_in: 0,
    records_out: 0,
    records_in_rate: 0,
    records_out_rate: 0,
    subtasks: subtasks.map((samples, i) => ({ subtask_index: i, records_in: 0, records_out: 0, records_in_rate: 0, records_out_rate: 0, samples })),
  };
}

describe("the metrics panel's series", () => {
  it('interpolates a subtask total between samples, holds it after the last, and is null before the first', () => {
    const samples = [sample(0, 0), sample(2, 100), sample(4, 100)];
    expect(totalAt(samples, T0 + 1 * S, 'records_in')).toBe(50);
    expect(totalAt(samples, T0 + 2 * S, 'records_in')).toBe(100);
    expect(totalAt(samples, T0 + 3 * S, 'records_in')).toBe(100);
    expect(totalAt(samples, T0 + 9 * S, 'records_in')).toBe(100);
    expect(totalAt(samples, T0 - 1, 'records_in')).toBeNull();
    expect(totalAt(samples, T0 - S, 'records_in', S)).toBe(0);
    expect(totalAt([], T0, 'records_in')).toBeNull();
  });

  it('takes the median gap between samples as the typical interval', () => {
    expect(typicalInterval([operator('a', [[sample(0, 0), sample(1, 1), sample(2, 2), sample(10, 3)]])])).toBe(S);
    expect(typicalInterval([operator('a', [[sample(0, 0)]])])).toBeNull();
  });

  it('builds a grid ending at the newest sample, no finer than the typical interval, at most maxPoints long', () => {
    const ops = [operator('a', [[sample(0, 0), sample(1, 1), sample(2, 2), sample(3, 3)]])];
    expect(sampleGrid(ops).map((t) => (t - T0) / S)).toEqual([0, 1, 2, 3]);
    const long = [operator('a', [Array.from({ length: 101 }, (_, i) => sample(i, i))])];
    const grid = sampleGrid(long, 11);
    expect(grid).toHaveLength(11);
    expect((grid.at(-1)! - T0) / S).toBe(100);
    expect((grid[1]! - grid[0]!) / S).toBe(10);
    expect(sampleGrid([operator('a', [[sample(0, 0)]])])).toEqual([]);
  });

  it('sums the subtasks of an operator, which report at their own moments', () => {
    const op = operator('a', [
      [sample(0, 0), sample(1, 10), sample(2, 20)],
      [sample(0.5, 0), sample(1.5, 100), sample(2.5, 200)],
    ]);
    const grid = [T0 + 0.5 * S, T0 + 1.5 * S, T0 + 2.5 * S];
    expect(operatorTotals(op, grid, 'records_in')).toEqual([5, 115, 220]);
    // Before a subtask's first sample: null, unless within the hold.
    expect(operatorTotals(op, [T0], 'records_in')).toEqual([null]);
    expect(operatorTotals(op, [T0], 'records_in', S)).toEqual([0]);
  });

  it('turns totals into per-second rates; none for the first point or across a gap; a reset reads 0', () => {
    const grid = [0, 2 * S, 4 * S, 6 * S, 8 * S];
    expect(ratesOf([0, 100, null, 300, 200], grid)).toEqual([null, 50, null, null, 0]);
  });

  it('gives uPlot seconds and one series pair per operator', () => {
    const series = rateSeries([
      operator('src', [[sample(0, 0, 0), sample(1, 0, 10), sample(2, 0, 30)]], 'source'),
      operator('sink', [[sample(0, 0, 0), sample(1, 10, 0), sample(2, 30, 0)]], 'sink'),
    ]);
    expect(series.x).toEqual([T0 / S, T0 / S + 1, T0 / S + 2]);
    expect(series.operators.map((o) => o.label)).toEqual(['src (source)', 'sink']);
    expect(series.operators[0]?.recordsOut).toEqual([null, 10, 20]);
    expect(series.operators[0]?.recordsIn).toEqual([null, 0, 0]);
    expect(series.operators[1]?.recordsIn).toEqual([null, 10, 20]);
  });
});

describe('the metrics grid with subtasks reporting at their own moments', () => {
  it('ends at the earliest last sample of the subtasks still reporting, so the newest rate is not cut short', () => {
    // Two subtasks at 100 records/s, reporting 0.4 s apart; a third stopped long ago (finished).
    const steady = (offset: number) => Array.from({ length: 11 }, (_, i) => sample(i + offset, 100 * (i + offset)));
    const finished = [sample(0, 0), sample(1, 50), sample(2, 60)];
    const op = operator('a', [steady(0), steady(0.4), finished]);
    const grid = sampleGrid([op]);
    expect((grid.at(-1)! - T0) / S).toBeCloseTo(10);
    // Whole steps back from the end, none before every steady subtask has reported (0.4 s).
    expect(grid.map((t) => Math.round((t - T0) / S))).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    const rates = rateSeries([op]).operators[0]!.recordsIn;
    // Past the finished subtask's last sample, only the two steady ones count: 200/s to the very end.
    expect(rates.at(-1)).toBeCloseTo(200);
    expect(rates[1]).toBeCloseTo(210);
    expect(rates.slice(2).every((r) => r !== null && Math.abs(r - 200) < 1e-6)).toBe(true);
  });
});
