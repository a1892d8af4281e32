import { describe, expect, it } from 'vitest';
import { OutputBuffer, rowText } from '../../console/src/pages/job/output-buffer.js';

const batch = (rows: unknown[], operator = 'preview', subtask = 0) => ({ operator_id: operator, subtask_idx: subtask, rows, generation: 3 });

describe("the output panel's ring buffer", () => {
  it('keeps rows in arrival order with their operator, subtask and generation', () => {
    const buffer = new OutputBuffer(10);
    buffer.push(batch([{ a: 1 }, 'two'], 'p', 1));
    buffer.push(batch([3]));
    expect(buffer.entries()).toEqual([
      { seq: 1, operatorId: 'p', subtask: 1, generation: 3, text: '{"a":1}' },
      { seq: 2, operatorId: 'p', subtask: 1, generation: 3, text: 'two' },
      { seq: 3, operatorId: 'preview', subtask: 0, generation: 3, text: '3' },
    ]);
    expect(buffer.size).toBe(3);
    expect(buffer.received).toBe(3);
  });

  it('holds the last `capacity` rows, evicting the oldest', () => {
    const buffer = new OutputBuffer(3);
    for (let i = 1; i <= 7; i++) {
      buffer.push(batch([i]));
      buffer.markShown();
    }
    expect(buffer.entries().map((e) => e.text)).toEqual(['5', '6', '7']);
    expect(buffer.size).toBe(3);
    // Every evicted row had been shown: nothing dropped.
    expect(buffer.dropped).toEqual({ server: 0, browser: 0, total: 0 });
  });

  it('counts rows evicted before any render showed them as dropped by the browser', () => {
    const buffer = new OutputBuffer(3);
    buffer.push(batch([1, 2]));
    buffer.markShown();
    // Five more arrive before the next render: 1, 2 (shown) and 3, 4 (never shown) are evicted.
    buffer.push(batch([3, 4, 5, 6, 7]));
    expect(buffer.entries().map((e) => e.text)).toEqual(['5', '6', '7']);
    expect(buffer.dropped.browser).toBe(2);
    buffer.addServerDropped(10);
    buffer.addServerDropped(-1);
    buffer.addServerDropped(Number.NaN);
    expect(buffer.dropped).toEqual({ server: 10, browser: 2, total: 12 });
  });

  it('starts afresh on clear', () => {
    const buffer = new OutputBuffer(2);
    buffer.push(batch([1, 2, 3]));
    buffer.addServerDropped(4);
    buffer.clear();
    expect(buffer.entries()).toEqual([]);
    expect(buffer.dropped.total).toBe(0);
    buffer.push(batch(['x']));
    expect(buffer.entries()).toEqual([{ seq: 1, operatorId: 'preview', subtask: 0, generation: 3, text: 'x' }]);
  });

  it('refuses a capacity that is not a positive integer', () => {
    expect(() => new OutputBuffer(0)).toThrow(RangeError);
    expect(() => new OutputBuffer(1.5)).toThrow(RangeError);
  });

  it('writes a row as text, cut at the limit', () => {
    expect(rowText({ b: [1, 2] })).toBe('{"b":[1,2]}');
    expect(rowText('plain')).toBe('plain');
    expect(rowText(null)).toBe('null');
    expect(rowText(undefined)).toBe('undefined');
    expect(rowText('abcdef', 3)).toBe('abc…');
    const cyclic: Record<string, unknown> = {};
    cyclic['self'] = cyclic;
    expect(rowText(cyclic)).toBe('[object Object]');
  });
});
