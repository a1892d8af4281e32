import { describe, expect, it } from 'vitest';
import { WorkerIdTakenError, WorkerRegistry, type WorkerInfo } from '../../src/controller/registry.js';
import { JobError } from '../../machines/job/types.js';

function setup(timeoutMs = 30_000) {
  const clock = { t: 1_000_000 };
  const registry = new WorkerRegistry({ now: () => clock.t, heartbeatTimeoutMs: timeoutMs });
  return { clock, registry };
}

const worker = (id: string, slots = 4, operators: string[] = ['source', 'count', 'sink']): WorkerInfo => ({
  worker_id: id,
  slots,
  operators,
});

describe('WorkerRegistry', () => {
  it('defaults to the reference timeout of 30 s', () => {
    expect(new WorkerRegistry().heartbeatTimeoutMs).toBe(30_000);
    expect(() => new WorkerRegistry({ heartbeatTimeoutMs: 0 })).toThrow(RangeError);
  });

  it('expires a worker exactly at the timeout, not a millisecond before', () => {
    const { clock, registry } = setup(30_000);
    registry.register(worker('w1'));
    clock.t += 29_999;
    expect(registry.isLive('w1')).toBe(true);
    expect(registry.sweep()).toEqual([]);
    clock.t += 1;
    expect(registry.isLive('w1')).toBe(false);
    expect(registry.candidates()).toEqual([]);
    const lost = registry.sweep();
    expect(lost).toEqual([{ workerId: 'w1', lastSeenAt: 1_000_000, jobs: [] }]);
    expect(registry.size).toBe(0);
    expect(registry.sweep()).toEqual([]);
  });

  it('a heartbeat pushes the deadline out; a sweep reports the allocations of each expired worker', () => {
    const { clock, registry } = setup(10_000);
    registry.register(worker('w1'));
    registry.register(worker('w2'));
    registry.allocate('job-b', 2, new Map([['w1', 1]]));
    registry.allocate('job-a', 7, new Map([['w1', 2], ['w2', 1]]));
    registry.allocate('job-a', 6, new Map([['w1', 1]]));
    clock.t += 9_000;
    expect(registry.heartbeat('w2')).toBe('ok');
    clock.t += 1_000;
    expect(registry.sweep()).toEqual([
      {
        workerId: 'w1',
        lastSeenAt: 1_000_000,
        jobs: [
          { jobId: 'job-a', generation: 6 },
          { jobId: 'job-a', generation: 7 },
          { jobId: 'job-b', generation: 2 },
        ],
      },
    ]);
    expect(registry.isLive('w2')).toBe(true);
    clock.t += 8_999; // w2's heartbeat is now 9 999 ms old
    expect(registry.sweep()).toEqual([]);
    clock.t += 1;
    expect(registry.sweep().map((l) => [l.workerId, l.jobs])).toEqual([['w2', [{ jobId: 'job-a', generation: 7 }]]]);
  });

  it('answers a heartbeat from an unknown worker with unknown_worker and records nothing', () => {
    const { registry } = setup();
    expect(registry.heartbeat('ghost', { jobs: [] })).toBe('unknown_worker');
    expect(registry.size).toBe(0);
    expect(registry.get('ghost')).toBeUndefined();
  });

  it('a re-registration replaces the record and loses its assignments (a restarted worker runs nothing)', () => {
    const { clock, registry } = setup();
    expect(registry.register(worker('w1', 4))).toEqual({ replaced: false, lost: [] });
    registry.allocate('job-1', 3, new Map([['w1', 3]]));
    expect(registry.freeSlots('w1')).toBe(1);
    clock.t += 5_000;
    const again = registry.register({ ...worker('w1', 2, ['sink']), pid: 42 });
    expect(again).toEqual({ replaced: true, lost: [{ jobId: 'job-1', generation: 3 }] });
    const view = registry.get('w1')!;
    expect(view).toMatchObject({ slots: 2, freeSlots: 2, operators: ['sink'], pid: 42, registeredAt: clock.t, allocations: [] });
    // Releasing the old generation later is harmless.
    expect(registry.release('job-1', 3)).toBe(0);
    expect(registry.freeSlots('w1')).toBe(2);
  });

  it('refuses a worker id a different live process holds, until that one expires or deregisters', () => {
    const { clock, registry } = setup(10_000);
    const first = { ...worker('w1'), hostname: 'a', pid: 1 };
    registry.register(first);
    expect(() => registry.register({ ...worker('w1'), hostname: 'b', pid: 2 })).toThrow(WorkerIdTakenError);
    expect(() => registry.register({ ...worker('w1'), hostname: 'a', pid: 3 })).toThrow(/registered by a live process \(a pid 1\)/);
    // The same process registering again (after unknown_worker) is no conflict.
    expect(registry.register(first).replaced).toBe(true);
    clock.t += 10_000;
    expect(registry.register({ ...worker('w1'), hostname: 'b', pid: 2 }).replaced).toBe(true);
    registry.deregister('w1');
    expect(registry.register({ ...worker('w1'), hostname: 'c', pid: 9 }).replaced).toBe(false);
  });

  it('deregister removes the worker and returns its allocations; unknown ids give nothing', () => {
    const { registry } = setup();
    registry.register(worker('w1'));
    registry.allocate('job-1', 1, new Map([['w1', 2]]));
    expect(registry.deregister('w1')).toEqual([{ jobId: 'job-1', generation: 1 }]);
    expect(registry.get('w1')).toBeUndefined();
    expect(registry.deregister('w1')).toEqual([]);
    expect(registry.heartbeat('w1')).toBe('unknown_worker');
  });

  it('accounts slots per worker and frees them on release', () => {
    const { registry } = setup();
    registry.register(worker('w1', 4));
    registry.register(worker('w2', 2));
    registry.allocate('job-1', 1, new Map([['w1', 3], ['w2', 2]]));
    expect(registry.freeSlots('w1')).toBe(1);
    expect(registry.freeSlots('w2')).toBe(0);
    expect(registry.candidates().map((c) => [c.worker_id, c.free_slots])).toEqual([['w1', 1], ['w2', 0]]);
    expect(registry.get('w1')!.allocations).toEqual([{ jobId: 'job-1', generation: 1, slots: 3 }]);

    // All or nothing: w1 could take 1, w2 nothing, so neither changes.
    expect(() => registry.allocate('job-2', 1, new Map([['w1', 1], ['w2', 1]]))).toThrow(JobError);
    try {
      registry.allocate('job-2', 1, new Map([['w1', 1], ['w2', 1]]));
    } catch (err) {
      expect((err as JobError).kind).toBe('not_enough_slots');
    }
    expect(registry.freeSlots('w1')).toBe(1);
    // The same generation cannot allocate twice.
    expect(() => registry.allocate('job-1', 1, new Map([['w1', 1]]))).toThrow(/already holds slots/);
    // Unknown workers cannot be allocated.
    expect(() => registry.allocate('job-3', 1, new Map([['nope', 1]]))).toThrow(JobError);

    expect(registry.release('job-1', 1)).toBe(5);
    expect(registry.freeSlots('w1')).toBe(4);
    expect(registry.freeSlots('w2')).toBe(2);
    expect(registry.release('job-1', 1)).toBe(0);
    expect(registry.freeSlots('nope')).toBeUndefined();
  });

  it('keeps generations of one job apart: releasing the old one keeps the new one', () => {
    const { registry } = setup();
    registry.register(worker('w1', 4));
    registry.allocate('job-1', 1, new Map([['w1', 2]]));
    registry.allocate('job-1', 2, new Map([['w1', 2]]));
    expect(registry.freeSlots('w1')).toBe(0);
    expect(registry.release('job-1', 1)).toBe(2);
    expect(registry.get('w1')!.allocations).toEqual([{ jobId: 'job-1', generation: 2, slots: 2 }]);
  });

  it('names the holders of one generation of a job, sorted, and forgets them on release', () => {
    const { registry } = setup();
    registry.register(worker('w2', 4));
    registry.register(worker('w1', 4));
    registry.register(worker('w3', 4));
    registry.allocate('job-1', 1, new Map([['w2', 1], ['w1', 1], ['w3', 0]]));
    registry.allocate('job-2', 1, new Map([['w3', 1]]));
    expect(registry.holders('job-1', 1)).toEqual(['w1', 'w2']);
    expect(registry.holders('job-1', 2)).toEqual([]);
    expect(registry.holders('job-2', 1)).toEqual(['w3']);
    registry.release('job-1', 1);
    expect(registry.holders('job-1', 1)).toEqual([]);
  });

  it('offers as candidates only live workers that have every needed operator, full ones with no free slot', () => {
    const { clock, registry } = setup(10_000);
    registry.register(worker('w-old', 4, ['source', 'sink']));
    clock.t += 6_000;
    registry.register(worker('w-c', 2, ['source', 'sink', 'count']));
    registry.register(worker('w-b', 3, ['source']));
    registry.register(worker('w-a', 1, ['sink', 'source', 'count']));
    registry.register(worker('w-full', 1, ['source', 'sink']));
    registry.allocate('job-x', 1, new Map([['w-full', 1]]));

    expect(registry.candidates(['source', 'sink']).map((c) => [c.worker_id, c.free_slots])).toEqual([['w-a', 1], ['w-c', 2], ['w-full', 0], ['w-old', 4]]);
    expect(registry.candidates(['source', 'count', 'sink', 'source'])).toEqual([
      { worker_id: 'w-a', free_slots: 1, operators: ['sink', 'source', 'count'] },
      { worker_id: 'w-c', free_slots: 2, operators: ['source', 'sink', 'count'] },
    ]);
    expect(registry.candidates().map((c) => c.worker_id)).toEqual(['w-a', 'w-b', 'w-c', 'w-full', 'w-old']);
    expect([...registry.operators()].sort()).toEqual(['count', 'sink', 'source']);

    clock.t += 4_000; // w-old's heartbeat is now exactly 10 s old
    expect(registry.candidates(['source']).map((c) => c.worker_id)).toEqual(['w-a', 'w-b', 'w-c', 'w-full']);
    expect(() => registry.allocate('job-y', 1, new Map([['w-old', 1]]))).toThrow(/gone/);
    registry.heartbeat('w-b');
    clock.t += 6_000;
    expect(registry.candidates(['source']).map((c) => c.worker_id)).toEqual(['w-b']);
    expect([...registry.operators()]).toEqual(['source']);
  });

  it('records the per-subtask metrics of the latest heartbeat', () => {
    const { clock, registry } = setup();
    registry.register(worker('w1'));
    registry.register(worker('w2'));
    const job = (records: number) => ({
      job_id: 'job-1',
      generation: 4,
      subtasks: [
        { node_id: 'src', subtask_index: 0, records_in: 0, records_out: records },
        { node_id: 'agg', subtask_index: 0, records_in: records, records_out: 1 },
      ],
    });
    registry.heartbeat('w1', { jobs: [job(10)] });
    clock.t += 100;
    registry.heartbeat('w1', { jobs: [job(20)] });
    registry.heartbeat('w2', { jobs: [{ job_id: 'job-1', generation: 4, subtasks: [{ node_id: 'src', subtask_index: 1, records_in: 0, records_out: 5 }] }] });
    expect(registry.subtaskMetrics('job-1', 4)).toEqual([
      { workerId: 'w1', node_id: 'agg', subtask_index: 0, records_in: 20, records_out: 1, reportedAt: clock.t },
      { workerId: 'w1', node_id: 'src', subtask_index: 0, records_in: 0, records_out: 20, reportedAt: clock.t },
      { workerId: 'w2', node_id: 'src', subtask_index: 1, records_in: 0, records_out: 5, reportedAt: clock.t },
    ]);
    // Without a slot count (an older worker), a generation takes its subtasks' distinct indexes.
    expect(registry.get('w1')!.reported).toEqual([{ jobId: 'job-1', generation: 4, slots: 1 }]);
    expect(registry.subtaskMetrics('job-1', 3)).toEqual([]);
    // A heartbeat without a report keeps the last one.
    registry.heartbeat('w1');
    expect(registry.subtaskMetrics('job-1', 4)).toHaveLength(3);
    registry.heartbeat('w1', { jobs: [] });
    expect(registry.subtaskMetrics('job-1', 4)).toHaveLength(1);
  });

  it('a generation the heartbeats stop reporting (after the start grace, twice in a row) has vanished, once', () => {
    const clock = { t: 1_000_000 };
    const registry = new WorkerRegistry({ now: () => clock.t, startGraceMs: 5_000 });
    registry.register(worker('w1'));
    registry.allocate('job-1', 1, new Map([['w1', 2]]));
    registry.allocate('job-2', 1, new Map([['w1', 1]]));
    const beat = (...jobs: [string, number][]) =>
      registry.heartbeat('w1', { jobs: jobs.map(([job_id, generation]) => ({ job_id, generation, subtasks: [] })) });
    // Still starting: the heartbeats may leave them out.
    beat();
    beat();
    expect(registry.vanished('w1')).toEqual([]);
    clock.t += 5_000;
    beat(['job-1', 1], ['job-2', 1]);
    beat(['job-2', 1]);
    expect(registry.vanished('w1')).toEqual([]);
    // A report in between resets the count: one miss is not enough.
    beat(['job-1', 1], ['job-2', 1]);
    beat(['job-2', 1]);
    expect(registry.vanished('w1')).toEqual([]);
    beat(['job-2', 1]);
    expect(registry.freeSlots('w1')).toBe(1);
    expect(registry.vanished('w1')).toEqual([{ jobId: 'job-1', generation: 1 }]);
    // Its slots are free again: the worker does not run it.
    expect(registry.freeSlots('w1')).toBe(3);
    expect(registry.holders('job-1', 1)).toEqual([]);
    beat(['job-2', 1]);
    expect(registry.vanished('w1')).toEqual([]);
    expect(registry.vanished('nobody')).toEqual([]);
    // A heartbeat without a report (an older worker) counts nothing.
    registry.heartbeat('w1');
    registry.heartbeat('w1');
    expect(registry.vanished('w1')).toEqual([]);
  });

  it('a generation a worker reports without an allocation takes its slots, and twice in a row is an orphan until it ends', () => {
    const { registry } = setup();
    registry.register(worker('w1', 4));
    const beat = (...jobs: [string, number, number][]) =>
      registry.heartbeat('w1', { jobs: jobs.map(([job_id, generation, slots]) => ({ job_id, generation, slots, subtasks: [] })) });
    registry.allocate('job-1', 2, new Map([['w1', 2]]));
    beat(['job-1', 2, 2], ['job-old', 7, 1]);
    // The worker refuses starts beyond its slots, so what it runs counts, allocated or not.
    expect(registry.freeSlots('w1')).toBe(1);
    expect(registry.candidates().map((c) => c.free_slots)).toEqual([1]);
    expect(() => registry.allocate('job-2', 1, new Map([['w1', 2]]))).toThrow(JobError);
    // Once is not enough: it may have ended just after the heartbeat was sent.
    expect(registry.orphans('w1')).toEqual([]);
    beat(['job-1', 2, 2], ['job-old', 7, 1]);
    expect(registry.orphans('w1')).toEqual([{ jobId: 'job-old', generation: 7, slots: 1 }]);
    // Returned again at the next heartbeat while it runs: a kill that got lost is sent again.
    beat(['job-1', 2, 2], ['job-old', 7, 1]);
    expect(registry.orphans('w1')).toEqual([{ jobId: 'job-old', generation: 7, slots: 1 }]);
    // The worker confirmed the kill: free at once, without waiting for the next heartbeat.
    expect(registry.ended('w1', 'job-old', 7)).toBe(1);
    expect(registry.orphans('w1')).toEqual([]);
    expect(registry.freeSlots('w1')).toBe(2);
    // A report that is larger than the allocation counts with its own size.
    beat(['job-1', 2, 3]);
    expect(registry.freeSlots('w1')).toBe(1);
    expect(registry.ended('w1', 'job-1', 2)).toBe(3);
    expect(registry.get('w1')!.allocations).toEqual([]);
    expect(registry.ended('w1', 'job-1', 2)).toBe(0);
    expect(registry.ended('ghost', 'job-1', 2)).toBe(0);
  });

  it('a worker that registers again with what it runs keeps those allocations; the others are lost', () => {
    const { registry } = setup();
    registry.register(worker('w1', 4));
    registry.allocate('job-1', 1, new Map([['w1', 2]]));
    registry.allocate('job-2', 1, new Map([['w1', 1]]));
    const running = [{ job_id: 'job-1', generation: 1, slots: 2, subtasks: [] }, { job_id: 'job-9', generation: 3, slots: 1, subtasks: [] }];
    expect(registry.register(worker('w1', 4), running)).toEqual({ replaced: true, lost: [{ jobId: 'job-2', generation: 1 }] });
    expect(registry.get('w1')!.allocations).toEqual([{ jobId: 'job-1', generation: 1, slots: 2 }]);
    // What it runs counts at once: the registry does not wait for a heartbeat to learn it.
    expect(registry.freeSlots('w1')).toBe(1);
    expect(registry.orphans('w1')).toEqual([]);
    registry.heartbeat('w1', { jobs: running });
    expect(registry.orphans('w1')).toEqual([{ jobId: 'job-9', generation: 3, slots: 1 }]);
  });

  it('rejects a registration without slots', () => {
    const { registry } = setup();
    expect(() => registry.register(worker('w1', 0))).toThrow(RangeError);
    expect(registry.size).toBe(0);
  });
});
