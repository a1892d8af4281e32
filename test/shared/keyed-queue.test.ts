import { describe, expect, it } from 'vitest';
import { KeyedQueue } from '../../src/shared/keyed-queue.js';

function gate(): { open(): void; opened: Promise<void> } {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  return { open, opened };
}

describe('KeyedQueue', () => {
  it('runs one key’s tasks one at a time, in order, and other keys’ meanwhile', async () => {
    const queue = new KeyedQueue();
    const log: string[] = [];
    const first = gate();
    const a1 = queue.run('a', async () => {
      log.push('a1 start');
      await first.opened;
      log.push('a1 end');
      return 1;
    });
    const a2 = queue.run('a', () => {
      log.push('a2');
      return 2;
    });
    const b1 = queue.run('b', () => {
      log.push('b1');
      return 'b';
    });
    await b1;
    expect(log).toEqual(['a1 start', 'b1']);
    first.open();
    await expect(Promise.all([a1, a2, b1])).resolves.toEqual([1, 2, 'b']);
    expect(log).toEqual(['a1 start', 'b1', 'a1 end', 'a2']);
  });

  it('goes on after a failed task, which fails only its own caller', async () => {
    const queue = new KeyedQueue();
    const failed = queue.run('a', () => Promise.reject(new Error('boom')));
    const next = queue.run('a', () => 'after');
    await expect(failed).rejects.toThrow('boom');
    await expect(next).resolves.toBe('after');
  });

  it('forgets a key once its last task settled, and idle() waits for every task', async () => {
    const queue = new KeyedQueue();
    const slow = gate();
    let done = false;
    void queue.run('a', async () => {
      await slow.opened;
      done = true;
    });
    expect(queue.size).toBe(1);
    const idle = queue.idle();
    slow.open();
    await idle;
    expect(done).toBe(true);
    await Promise.resolve();
    expect(queue.size).toBe(0);
  });
});
