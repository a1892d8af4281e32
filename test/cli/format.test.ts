import { describe, expect, it } from 'vitest';
import { formatDuration, formatMs, timeUntil } from '../../src/cli/format.js';

describe('formatDuration: one precision for every duration the CLI prints', () => {
  it.each([
    [0, '0µs'],
    [350, '350µs'],
    [999, '999µs'],
    [1_000, '1.00ms'],
    [1_250, '1.25ms'],
    [12_345, '12.3ms'],
    [312_400, '312ms'],
    // Rounding up to the next unit goes to that unit, not to "1.00e+3ms".
    [999_600, '1.00s'],
    [9_500_000, '9.50s'],
    [10_000_000, '10.0s'],
    [45_300_000, '45.3s'],
    [59_960_000, '1m00s'],
    [60_000_000, '1m00s'],
    [125_000_000, '2m05s'],
    [3_599_000_000, '59m59s'],
    [3_600_000_000, '1h00m'],
    [3_720_000_000, '1h02m'],
    [86_400_000_000, '1d00h'],
    [273_600_000_000, '3d04h'],
    [-2_000_000, '-2.00s'],
  ])('%d µs → %s', (micros, text) => {
    expect(formatDuration(micros)).toBe(text);
  });

  it('ms inputs and relative times go through the same function', () => {
    expect(formatMs(3_120)).toBe('3.12s');
    expect(formatMs(null)).toBe('-');
    expect(timeUntil(1_000_000_000 + 598_000_000, 1_000_000)).toBe('in 9m58s');
    expect(timeUntil(1_000_000_000 - 2_000_000, 1_000_000)).toBe('overdue by 2.00s');
  });
});
