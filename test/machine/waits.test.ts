import { afterEach, beforeEach, describe, expect, test, vi } from 'vitest';
import type { AnyStateNode } from 'xstate';
import { JobError, jobMachine, waitOf, type JobState } from '../../machines/index.js';
import { JobDriver } from '../support/job-driver.js';

const T0 = 1_700_000_000_000;
/** States a job rests in (or passes through) without waiting for anything. */
const NOT_WAITING: readonly JobState[] = ['Created', 'Running', 'Stopped', 'Finished', 'Failed'];

function leaves(node: AnyStateNode): AnyStateNode[] {
  const children = Object.values(node.states);
  return children.length === 0 ? [node] : children.flatMap(leaves);
}

const topOf = (node: AnyStateNode) => node.id.split('.')[1] as JobState;

describe('every wait says why and until when', () => {
  test('each leaf state a job can wait in declares a wait; Running (but for its takeover) and the resting states declare none', () => {
    const all = leaves(jobMachine.root);
    const waiting = all.filter((n) => !NOT_WAITING.includes(topOf(n)));
    expect(waiting.length).toBeGreaterThan(20);
    for (const node of waiting) expect((node.meta as { wait?: string } | undefined)?.wait, node.id).toBeDefined();
    // Running waits only while a new owner re-attaches to its tasks after a takeover.
    const reconciling = 'job.Running.progress.reconciling';
    for (const node of all.filter((n) => NOT_WAITING.includes(topOf(n)) && n.id !== reconciling)) expect((node.meta as { wait?: string } | undefined)?.wait, node.id).toBeUndefined();
    expect(all.find((n) => n.id === reconciling)?.meta).toEqual({ wait: 'reconcile' });
  });

  describe('the reason and deadline of a wait', () => {
    let driver: JobDriver | undefined;
    beforeEach(() => {
      vi.useFakeTimers({ now: T0 });
    });
    afterEach(() => {
      driver?.stop();
      vi.useRealTimers();
    });

    test('too few slots: the scheduler says what it needs, until the worker startup deadline', async () => {
      driver = new JobDriver(
        { policy: { workerStartupTimeoutMs: 600_000 } },
        { scheduleJob: () => Promise.reject(new JobError({ kind: 'not_enough_slots', message: 'need 2 slots, 0 free on 2 workers' })) },
      );
      await driver.settle();
      expect(driver.matches('Scheduling.attempt.waitingForSlots')).toBe(true);
      expect(waitOf(driver.snapshot)).toEqual({ kind: 'slots', reason: 'waiting for slots: need 2 slots, 0 free on 2 workers', until: T0 + 600_000 });
      await driver.advance(5_000);
      // Still the same deadline: the slot retries do not move it.
      expect(waitOf(driver.snapshot)?.until).toBe(T0 + 600_000);
    });

    test('a failed attempt: the retry names the problem and waits for its backoff', async () => {
      driver = new JobDriver({}, { compileJob: () => Promise.reject(new Error('registry unavailable')) });
      await driver.settle();
      expect(driver.matches('Compiling.backoff')).toBe(true);
      const wait = waitOf(driver.snapshot)!;
      expect(wait.kind).toBe('retry');
      expect(wait.reason).toBe('retry 1 after: registry unavailable');
      expect(wait.until).toBe(driver.context.deadlines.backoff);
      expect(wait.until).toBeGreaterThan(T0);
    });

    test('the tasks of a generation starting, and Running, which waits for nothing', async () => {
      driver = new JobDriver({ policy: { taskStartupTimeoutMs: 120_000 } });
      await driver.settle();
      expect(waitOf(driver.snapshot)).toEqual({ kind: 'tasks_start', reason: 'waiting for the tasks of generation 1 to start', until: T0 + 120_000 });
      driver.sendCurrent({ type: 'tasks.started' });
      await driver.settle();
      expect(driver.state).toBe('Running');
      expect(waitOf(driver.snapshot)).toBeNull();
    });
  });
});
