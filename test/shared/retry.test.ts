import { describe, expect, it, vi } from 'vitest';
import { retry } from '../../src/shared/retry.js';

describe('retry', () => {
  it('tries again until the attempt succeeds, pausing as told', async () => {
    const pauses: number[] = [];
    let calls = 0;
    const value = await retry(
      (n) => {
        calls++;
        return n < 3 ? Promise.reject(new Error(`attempt ${n}`)) : Promise.resolve('done');
      },
      { pauseMs: (n) => n, onRetry: (_err, _n, pause) => pauses.push(pause) },
    );
    expect(value).toBe('done');
    expect(calls).toBe(3);
    expect(pauses).toEqual([1, 2]);
  });

  it('throws the last failure when the attempts run out, and asks retryable about every failure', async () => {
    const asked: number[] = [];
    const attempt = vi.fn((n: number) => Promise.reject(new Error(`attempt ${n}`)));
    await expect(retry(attempt, { attempts: 3, retryable: (_e, n) => (asked.push(n), true) })).rejects.toThrow('attempt 3');
    expect(attempt).toHaveBeenCalledTimes(3);
    expect(asked).toEqual([1, 2, 3]);
  });

  it('stops at a failure that is not worth retrying', async () => {
    const attempt = vi.fn((n: number) => Promise.reject(new Error(n === 2 ? 'fatal' : 'transient')));
    await expect(retry(attempt, { retryable: (err) => (err as Error).message === 'transient' })).rejects.toThrow('fatal');
    expect(attempt).toHaveBeenCalledTimes(2);
  });

  it('ends a pause when the signal aborts, throwing the failure it was pausing after', async () => {
    const abort = new AbortController();
    const attempt = vi.fn(() => Promise.reject(new Error('down')));
    const running = retry(attempt, { pauseMs: () => 60_000, signal: abort.signal, onRetry: () => queueMicrotask(() => abort.abort()) });
    await expect(running).rejects.toThrow('down');
    expect(attempt).toHaveBeenCalledTimes(1);
  });
});
