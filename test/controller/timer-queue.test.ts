import { afterEach, beforeEach, describe, expect, test, vi } from 'vitest';
import { TimerQueue } from '../../src/controller/timer-queue.js';

const T0 = 1_700_000_000_000;

describe('TimerQueue', () => {
  let queue: TimerQueue;
  beforeEach(() => {
    vi.useFakeTimers({ now: T0 });
    queue = new TimerQueue();
  });
  afterEach(() => {
    queue.close();
    vi.useRealTimers();
  });

  test('runs callbacks in deadline order, never before their deadline, on one Node timer', async () => {
    const fired: string[] = [];
    queue.schedule(T0 + 300, () => fired.push('c'));
    queue.schedule(T0 + 100, () => fired.push('a'));
    queue.schedule(T0 + 200, () => fired.push('b'));
    queue.schedule(T0 + 200, () => fired.push('b2'));
    expect(vi.getTimerCount()).toBe(1);
    await vi.advanceTimersByTimeAsync(99);
    expect(fired).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(fired).toEqual(['a']);
    await vi.advanceTimersByTimeAsync(200);
    expect(fired).toEqual(['a', 'b', 'b2', 'c']);
    expect(queue.size).toBe(0);
    expect(vi.getTimerCount()).toBe(0);
  });

  test('a cancelled callback never runs; an earlier deadline re-arms the timer', async () => {
    const fired: number[] = [];
    const late = queue.schedule(T0 + 1_000, () => fired.push(1_000));
    const handle = queue.schedule(T0 + 500, () => fired.push(500));
    handle.cancel();
    handle.cancel();
    queue.schedule(T0 + 10, () => fired.push(10));
    expect(queue.size).toBe(2);
    await vi.advanceTimersByTimeAsync(600);
    expect(fired).toEqual([10]);
    late.cancel();
    await vi.advanceTimersByTimeAsync(1_000);
    expect(fired).toEqual([10]);
    expect(queue.size).toBe(0);
  });

  test('callbacks may schedule more work; a throwing callback does not stop the others', async () => {
    const errors: unknown[] = [];
    const q = new TimerQueue({ onError: (err) => errors.push(err) });
    const fired: string[] = [];
    q.schedule(T0 + 10, () => {
      throw new Error('boom');
    });
    q.schedule(T0 + 10, () => {
      fired.push('first');
      q.schedule(T0 + 20, () => fired.push('second'));
    });
    await vi.advanceTimersByTimeAsync(20);
    expect(fired).toEqual(['first', 'second']);
    expect(errors).toHaveLength(1);
    q.close();
  });

  test('deadlines beyond the range of setTimeout wait in steps instead of firing at once', async () => {
    const fired: string[] = [];
    queue.schedule(T0 + 40 * 86_400_000, () => fired.push('late'));
    await vi.advanceTimersByTimeAsync(30 * 86_400_000);
    expect(fired).toEqual([]);
    await vi.advanceTimersByTimeAsync(10 * 86_400_000);
    expect(fired).toEqual(['late']);
  });

  test('many cancellations are compacted away', () => {
    const handles = Array.from({ length: 1_000 }, (_, i) => queue.schedule(T0 + 1_000 + i, () => {}));
    for (const h of handles.slice(0, 900)) h.cancel();
    expect(queue.size).toBe(100);
    expect((queue as unknown as { heap: unknown[] }).heap.length).toBeLessThan(300);
  });

  test('close cancels everything and refuses new work', async () => {
    const fired: number[] = [];
    queue.schedule(T0 + 10, () => fired.push(1));
    queue.close();
    await vi.advanceTimersByTimeAsync(100);
    expect(fired).toEqual([]);
    expect(() => queue.schedule(T0 + 10, () => {})).toThrow(/closed/);
  });
});
