import { describe, expect, it } from 'vitest';
import { eventually } from '../support/nats.js';
import { validateGraph, type DataRecord, type JsonValue } from '../../src/protocol/index.js';
import { instantiate, OPERATORS, UserError, type OperatorContext, type OperatorInstance } from '../../src/worker/index.js';
import { impulseCountGraph } from '../support/pipelines.js';

function open(operator: string, config: unknown, ctx: Partial<OperatorContext> = {}) {
  const emitted: DataRecord[] = [];
  const rows: JsonValue[] = [];
  const { instance } = instantiate(operator, config);
  const context: OperatorContext = {
    jobId: 'job',
    nodeId: 'n',
    subtaskIndex: 0,
    parallelism: 1,
    emit: (r) => emitted.push(r),
    output: (r) => rows.push(...r),
    ...ctx,
  };
  return { instance, emitted, rows, ready: Promise.resolve(instance.open(context)) };
}

async function drain(source: OperatorInstance, max = 10_000): Promise<void> {
  for (let i = 0; i < max && (await source.next!()); i++);
}

const counters = (records: DataRecord[]) => records.map((r) => (r.value as { counter: number }).counter);

describe('impulse', () => {
  it('splits counters across subtasks: subtask i emits i, i+p, …', async () => {
    const all: number[] = [];
    for (let i = 0; i < 3; i++) {
      const s = open('impulse', { events: 10 }, { subtaskIndex: i, parallelism: 3 });
      await s.ready;
      await drain(s.instance);
      expect(counters(s.emitted)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9].filter((c) => c % 3 === i));
      all.push(...counters(s.emitted));
      expect(s.instance.snapshot()).toEqual({ next_counter: counters(s.emitted).at(-1)! + 3 });
    }
    expect(all.sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  it('restores from its snapshot and continues exactly', async () => {
    const first = open('impulse', { events: 20 }, { subtaskIndex: 1, parallelism: 2 });
    await first.ready;
    for (let i = 0; i < 4; i++) await first.instance.next!();
    const snap = first.instance.snapshot();
    expect(snap).toEqual({ next_counter: 9 });
    const second = open('impulse', { events: 20 }, { subtaskIndex: 1, parallelism: 2, restored: snap });
    await second.ready;
    await drain(second.instance);
    expect([...counters(first.emitted), ...counters(second.emitted)]).toEqual([1, 3, 5, 7, 9, 11, 13, 15, 17, 19]);
  });

  it('records carry {counter, ts} and honour rate_per_sec', async () => {
    const s = open('impulse', { events: 6, rate_per_sec: 200 });
    await s.ready;
    const t0 = performance.now();
    await drain(s.instance);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(20);
    expect(s.emitted[0]!.value).toMatchObject({ counter: 0, ts: s.emitted[0]!.ts });
  });

  it('rejects a foreign snapshot as a user error', () => {
    expect(() => open('impulse', {}, { subtaskIndex: 0, parallelism: 2, restored: { next_counter: 3 } })).toThrow(UserError);
  });
});

describe('map-key', () => {
  it('keys by counter % modulo or by a field', async () => {
    const m = open('map-key', { modulo: 10 });
    await m.ready;
    await m.instance.process!({ value: { counter: 123 }, ts: 1 });
    expect(m.emitted[0]).toEqual({ key: '3', value: { counter: 123 }, ts: 1 });
    const f = open('map-key', { field: 'user' });
    await f.ready;
    await f.instance.process!({ value: { user: 'ada' }, ts: 1 });
    await f.instance.process!({ value: { user: 7 }, ts: 1 });
    expect(f.emitted.map((r) => r.key)).toEqual(['ada', '7']);
  });

  it('needs field or modulo', () => {
    expect(() => instantiate('map-key', {})).toThrow(UserError);
  });

  it('with required, a record without the field is a user error; without it, the key is null', async () => {
    const strict = open('map-key', { field: 'user', required: true });
    await strict.ready;
    expect(() => strict.instance.process!({ value: { counter: 1 }, ts: 1 })).toThrow(/no field "user"/);
    const lax = open('map-key', { field: 'user' });
    await lax.ready;
    await lax.instance.process!({ value: { counter: 1 }, ts: 1 });
    expect(lax.emitted[0]?.key).toBe('null');
  });
});

describe('count', () => {
  it('counts per key and continues from a restored snapshot', async () => {
    const c = open('count', {});
    await c.ready;
    for (const key of ['a', 'b', 'a']) await c.instance.process!({ key, value: null, ts: 0 });
    expect(c.emitted.map((r) => r.value)).toEqual([
      { key: 'a', count: 1 },
      { key: 'b', count: 1 },
      { key: 'a', count: 2 },
    ]);
    const snap = JSON.parse(JSON.stringify(c.instance.snapshot())) as unknown;
    expect(snap).toEqual({ counts: { a: 2, b: 1 } });
    const d = open('count', {}, { restored: snap });
    await d.ready;
    await d.instance.process!({ key: 'a', value: null, ts: 0 });
    expect(d.emitted[0]!.value).toEqual({ key: 'a', count: 3 });
  });
});

describe('sinks', () => {
  it('preview hands rows to ctx.output in batches and on snapshot/close', async () => {
    const p = open('preview', { batch_size: 2 });
    await p.ready;
    for (let i = 0; i < 3; i++) await p.instance.process!({ key: 'k', value: i, ts: i });
    expect(p.rows).toHaveLength(2);
    expect(p.instance.snapshot()).toEqual({ count: 3 });
    expect(p.rows).toEqual([0, 1, 2].map((i) => ({ key: 'k', value: i, ts: i })));
    await p.instance.close();
  });

  it('preview sends a batch that is not full once its first row has waited linger_ms', async () => {
    const p = open('preview', { batch_size: 100, linger_ms: 20 });
    await p.ready;
    await p.instance.process!({ value: 1, ts: 1 });
    await p.instance.process!({ value: 2, ts: 2 });
    expect(p.rows).toEqual([]);
    await eventually(() => expect(p.rows).toEqual([{ value: 1, ts: 1 }, { value: 2, ts: 2 }]), { timeoutMs: 1_000, intervalMs: 5 });
    // A full batch goes at once, and leaves no timer behind.
    const q = open('preview', { batch_size: 1, linger_ms: 60_000 });
    await q.ready;
    await q.instance.process!({ value: 3, ts: 3 });
    expect(q.rows).toEqual([{ value: 3, ts: 3 }]);
    await p.instance.close();
    await q.instance.close();
  });

  it('log counts records', async () => {
    const l = open('log', {});
    await l.ready;
    await l.instance.process!({ value: 1, ts: 0 });
    expect(l.instance.snapshot()).toEqual({ count: 1 });
  });
});

describe('OPERATORS registry', () => {
  const graph = impulseCountGraph({ events: 10, rate: 'max', modulo: 10, nodeParallelism: { src: 2, key: 2, cnt: 2 } });

  it('is a valid availableOperators map for validateGraph', () => {
    expect(validateGraph({ graph }, OPERATORS)).toEqual([]);
    expect([...OPERATORS.keys()].sort()).toEqual(['count', 'impulse', 'jetstream-sink', 'log', 'map-key', 'preview']);
  });

  it('reports bad config and kinds', () => {
    const bad = structuredClone(graph);
    bad.nodes[0]!.config = { events: -1 };
    bad.edges.push({ from: 'out', to: 'src', kind: 'shuffle' });
    const codes = validateGraph({ graph: bad }, OPERATORS).map((p) => p.code);
    expect(codes).toEqual(expect.arrayContaining(['bad_config', 'source_with_inputs', 'sink_with_outputs']));
  });
});
