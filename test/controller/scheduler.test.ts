import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { assignSubtasks, toStartAssignments, type ScheduleInputGraph } from '../../src/controller/scheduler.js';
import type { Candidate } from '../../src/controller/registry.js';
import { JobError } from '../../machines/job/types.js';

const OPS = ['source', 'count', 'sink'];

const node = (id: string, operator: string, parallelism: number) => ({ id, operator, parallelism, config: {} });

const pipeline: ScheduleInputGraph = {
  graph: {
    nodes: [node('clicks', 'source', 2), node('by_user', 'count', 2), node('out', 'sink', 1)],
    edges: [
      { from: 'clicks', to: 'by_user', kind: 'forward' },
      { from: 'by_user', to: 'out', kind: 'shuffle' },
    ],
  },
};

const cand = (worker_id: string, free_slots: number, operators = OPS): Candidate => ({ worker_id, free_slots, operators });

function thrown(fn: () => unknown): JobError {
  try {
    fn();
  } catch (err) {
    if (err instanceof JobError) return err;
    throw err;
  }
  throw new Error('expected a JobError');
}

describe('assignSubtasks', () => {
  it('puts subtask i of every node in slot i and fills workers in id order', () => {
    const plan = assignSubtasks(pipeline, {}, [cand('w2', 4), cand('w1', 1)]);
    expect(plan.slotsNeeded).toBe(2);
    expect(plan.parallelism).toEqual({ clicks: 2, by_user: 2, out: 1 });
    expect(plan.slots).toEqual(new Map([['w1', 1], ['w2', 1]]));
    expect(plan.assignments).toEqual(
      new Map([
        [
          'w1',
          [
            { nodeId: 'clicks', subtaskIndex: 0 },
            { nodeId: 'by_user', subtaskIndex: 0 },
            { nodeId: 'out', subtaskIndex: 0 },
          ],
        ],
        [
          'w2',
          [
            { nodeId: 'clicks', subtaskIndex: 1 },
            { nodeId: 'by_user', subtaskIndex: 1 },
          ],
        ],
      ]),
    );
    expect(toStartAssignments(plan.assignments.get('w2')!)).toEqual([
      { node_id: 'clicks', subtasks: [1] },
      { node_id: 'by_user', subtasks: [1] },
    ]);
  });

  it('applies the pipeline-wide parallelism, then the per-node overrides', () => {
    const plan = assignSubtasks({ ...pipeline, parallelism: 3 }, { out: 5 }, [cand('w1', 8)]);
    expect(plan.parallelism).toEqual({ clicks: 3, by_user: 3, out: 5 });
    expect(plan.slotsNeeded).toBe(5);
    expect(plan.slots).toEqual(new Map([['w1', 5]]));
    expect(toStartAssignments(plan.assignments.get('w1')!)).toEqual([
      { node_id: 'clicks', subtasks: [0, 1, 2] },
      { node_id: 'by_user', subtasks: [0, 1, 2] },
      { node_id: 'out', subtasks: [0, 1, 2, 3, 4] },
    ]);
  });

  it('throws not_enough_slots naming what it needs and what is free on the workers offering every operator', () => {
    const err = thrown(() => assignSubtasks(pipeline, { clicks: 4, by_user: 4 }, [cand('w1', 2), cand('w2', 1), cand('w3', 9, ['source']), cand('w4', 0)]));
    expect(err.kind).toBe('not_enough_slots');
    expect(err.message).toBe('need 4 slots, 3 free on 3 workers');
    expect(thrown(() => assignSubtasks(pipeline, {}, [])).message).toBe('need 2 slots, 0 free on 0 workers');
    expect(thrown(() => assignSubtasks(pipeline, {}, [cand('w1', 0)])).message).toBe('need 2 slots, 0 free on 1 worker');
    expect(thrown(() => assignSubtasks({ graph: { nodes: [{ id: 'a', operator: 'source', parallelism: 1, config: {} }] } }, {}, [])).message).toBe('need 1 slot, 0 free on 0 workers');
  });

  it('skips workers lacking an operator or without free slots', () => {
    const plan = assignSubtasks(pipeline, {}, [cand('a', 5, ['source', 'sink']), cand('b', 0), cand('c', 2)]);
    expect([...plan.slots]).toEqual([['c', 2]]);
  });

  it('rejects overrides for unknown nodes and forward edges they break', () => {
    const unknown = thrown(() => assignSubtasks(pipeline, { nope: 2 }, [cand('w1', 8)]));
    expect(unknown).toMatchObject({ kind: 'fatal', domain: 'user' });
    const broken = thrown(() => assignSubtasks(pipeline, { clicks: 3 }, [cand('w1', 8)]));
    expect(broken.kind).toBe('fatal');
    expect(broken.message).toMatch(/forward edge clicks → by_user/);
  });

  it('is deterministic whatever the candidate order', () => {
    const a = assignSubtasks(pipeline, { out: 3 }, [cand('x', 1), cand('y', 1), cand('z', 1)]);
    const b = assignSubtasks(pipeline, { out: 3 }, [cand('z', 1), cand('x', 1), cand('y', 1)]);
    expect([...b.assignments]).toEqual([...a.assignments]);
  });
});

// ─── Properties ────────────────────────────────────────────────────────────────────────────────

/** A random DAG: forward edges only between equal-parallelism nodes (as validateGraph demands). */
const graphArb = fc
  .array(fc.record({ operator: fc.constantFrom(...OPS), parallelism: fc.integer({ min: 1, max: 6 }) }), { minLength: 1, maxLength: 6 })
  .chain((specs) => {
    const nodes = specs.map((s, i) => node(`n${i}`, s.operator, s.parallelism));
    const pairs: Array<[number, number]> = [];
    for (let i = 0; i < nodes.length; i++) for (let j = i + 1; j < nodes.length; j++) pairs.push([i, j]);
    return fc.subarray(pairs).chain((chosen) =>
      fc.tuple(...chosen.map(() => fc.boolean())).map((forwardWish) => ({
        nodes,
        edges: chosen.map(([i, j], k) => ({
          from: nodes[i]!.id,
          to: nodes[j]!.id,
          kind: forwardWish[k] === true && nodes[i]!.parallelism === nodes[j]!.parallelism ? ('forward' as const) : ('shuffle' as const),
        })),
      })),
    );
  });

const workersArb = fc.uniqueArray(
  fc.record({
    worker_id: fc.stringMatching(/^[a-z0-9]{1,4}$/),
    free_slots: fc.integer({ min: 0, max: 5 }),
    operators: fc.subarray(OPS),
  }),
  { selector: (w) => w.worker_id, maxLength: 6 },
);

describe('assignSubtasks properties', () => {
  it('places every subtask once, within free slots, forward edges local; NotEnoughSlots exactly when short', () => {
    fc.assert(
      fc.property(graphArb, workersArb, (graph, workers) => {
        const needed = Math.max(...graph.nodes.map((n) => n.parallelism));
        const used = new Set(graph.nodes.map((n) => n.operator));
        const offering = workers.filter((w) => [...used].every((op) => w.operators.includes(op)));
        const totalFree = offering.reduce((s, w) => s + w.free_slots, 0);

        let plan;
        try {
          plan = assignSubtasks({ graph }, {}, workers);
        } catch (err) {
          expect(err).toBeInstanceOf(JobError);
          expect((err as JobError).kind).toBe('not_enough_slots');
          expect(totalFree).toBeLessThan(needed);
          expect((err as JobError).message).toBe(`need ${needed} slot${needed === 1 ? '' : 's'}, ${totalFree} free on ${offering.length} worker${offering.length === 1 ? '' : 's'}`);
          return;
        }
        expect(totalFree).toBeGreaterThanOrEqual(needed);
        expect(plan.slotsNeeded).toBe(needed);

        // Every subtask exactly once.
        const where = new Map<string, string>();
        for (const [workerId, refs] of plan.assignments) {
          for (const ref of refs) {
            const key = `${ref.nodeId}/${ref.subtaskIndex}`;
            expect(where.has(key)).toBe(false);
            where.set(key, workerId);
          }
        }
        const expected = graph.nodes.flatMap((n) => Array.from({ length: n.parallelism }, (_, i) => `${n.id}/${i}`));
        expect([...where.keys()].sort()).toEqual(expected.sort());

        // Within each worker's free slots: slots = distinct subtask indexes, at most one per node per slot.
        let totalSlots = 0;
        for (const [workerId, refs] of plan.assignments) {
          const worker = offering.find((w) => w.worker_id === workerId && w.free_slots > 0);
          expect(worker).toBeDefined();
          const indexes = new Set(refs.map((r) => r.subtaskIndex));
          expect(plan.slots.get(workerId)).toBe(indexes.size);
          expect(indexes.size).toBeLessThanOrEqual(worker!.free_slots);
          totalSlots += indexes.size;
        }
        expect(totalSlots).toBe(needed);

        // Forward edges stay on one worker.
        for (const edge of graph.edges.filter((e) => e.kind === 'forward')) {
          const p = graph.nodes.find((n) => n.id === edge.from)!.parallelism;
          for (let i = 0; i < p; i++) expect(where.get(`${edge.to}/${i}`)).toBe(where.get(`${edge.from}/${i}`));
        }

        // Deterministic: same input (in any order), same output.
        const again = assignSubtasks({ graph }, {}, [...workers].reverse());
        expect([...again.assignments]).toEqual([...plan.assignments]);
      }),
      { numRuns: 300 },
    );
  });
});
