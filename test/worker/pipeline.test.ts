import type { NatsConnection } from '@nats-io/transport-node';
import { afterAll, describe, expect } from 'vitest';
import { encode, subjects, type DataRecord, type Graph } from '../../src/protocol/index.js';
import {
  InputGate,
  natsTransport,
  SubtaskRunner,
  subtaskKey,
  subtaskSpecs,
  type CheckpointCompletion,
  type DataTransport,
  type FailureReport,
} from '../../src/worker/index.js';
import type { NatsServerHandle } from '../support/nats-server.js';
import { connectTo, eventually } from '../support/nats.js';
import { testWithNatsServer } from '../support/nats-fixtures.js';
import { impulseCountGraph, impulseToSinkGraph } from '../support/pipelines.js';

const JOB = 'job1';

/** impulse ×2 → map-key ×2 → count ×2 → preview, `events` in all, as fast as it goes unless `rate` is given. */
function graph(events: number, rate: number | 'max' = 'max'): Graph {
  return impulseCountGraph({ events, rate, modulo: 10, nodeParallelism: { src: 2, key: 2, cnt: 2 } });
}

interface Run {
  runners: SubtaskRunner[];
  rows: Array<{ key: string; count: number }>;
  completions: Map<string, Array<{ epoch: number } & CheckpointCompletion>>;
  events: string[];
  failures: Array<{ subtask: string } & FailureReport>;
  finished: Set<string>;
  previewDone: Promise<void>;
}

async function runGraph(nc: NatsConnection, transport: DataTransport, g: Graph, generation: number, restored?: ReadonlyMap<string, unknown>): Promise<Run> {
  const run: Run = { runners: [], rows: [], completions: new Map(), events: [], failures: [], finished: new Set(), previewDone: Promise.resolve() };
  const sub = nc.subscribe(subjects.jobOutput(JOB));
  run.previewDone = (async () => {
    for await (const msg of sub) {
      const out = msg.json<{ generation: number; rows: Array<{ value: { key: string; count: number } }>; done?: boolean }>();
      if (out.generation !== generation) continue;
      run.rows.push(...out.rows.map((r) => r.value));
      if (out.done === true) break;
    }
  })();
  await nc.flush();
  for (const spec of subtaskSpecs(g, JOB, generation, restored)) {
    const id = subtaskKey(spec.nodeId, spec.subtaskIndex);
    const runner = new SubtaskRunner(transport, spec, {
      onCheckpointEvent: (epoch, type) => run.events.push(`${id}:${epoch}:${type}`),
      onCheckpointCompleted: (epoch, c) => run.completions.set(id, [...(run.completions.get(id) ?? []), { epoch, ...c }]),
      onFinished: () => run.finished.add(id),
      onFailed: (f) => run.failures.push({ subtask: id, ...f }),
    });
    run.runners.push(runner);
  }
  // Downstream first, so every subscription exists before a source publishes.
  const sources = run.runners.filter((r) => r.spec.operator === 'impulse');
  for (const r of run.runners.filter((r) => !sources.includes(r)).reverse()) await r.start();
  for (const r of sources) await r.start();
  return run;
}

function finalCounts(rows: Array<{ key: string; count: number }>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const { key, count } of rows) out[key] = Math.max(out[key] ?? 0, count);
  return out;
}

const hundredEach = Object.fromEntries([...'0123456789'].map((k) => [k, 100]));

const it = testWithNatsServer({ jetstream: false });

describe('data plane on a real nats-server', () => {
  let server: NatsServerHandle;
  let nc: NatsConnection;
  let transport: ReturnType<typeof natsTransport>;

  it.beforeAll(async ({ natsServer, connect }) => {
    server = natsServer;
    nc = await connect('worker-test');
    transport = natsTransport(nc);
  });
  afterAll(() => {
    transport?.close();
  });

  it('checkpoints at a barrier mid-stream, and a restore from it gives exactly the uninterrupted result', async () => {
    const g = graph(1000, 2000);
    const first = await runGraph(nc, transport, g, 1);
    await eventually(() => expect(first.rows.length).toBeGreaterThan(100), { timeoutMs: 10_000 });
    for (const r of first.runners.filter((r) => r.spec.operator === 'impulse')) expect(r.injectBarrier(1, false)).toBe(true);
    const outcomes = await Promise.all(first.runners.map((r) => r.done));
    await first.previewDone;
    expect(first.failures).toEqual([]);
    expect(outcomes.every((o) => o === 'finished')).toBe(true);
    expect(first.finished.size).toBe(7);

    // Every subtask completed epoch 1 exactly once, with a snapshot.
    expect([...first.completions.keys()].sort()).toEqual(['cnt/0', 'cnt/1', 'key/0', 'key/1', 'out/0', 'src/0', 'src/1']);
    for (const [id, list] of first.completions) {
      expect(list.map((c) => c.epoch), id).toEqual([1]);
      expect(list[0]!.bytes).toBe(Buffer.byteLength(JSON.stringify(list[0]!.state)));
      expect(list[0]!.finish_time_us).toBeGreaterThanOrEqual(list[0]!.start_time_us);
    }
    expect(first.events).toContain('cnt/0:1:started_alignment');
    expect(first.events).toContain('src/0:1:finished_sync');

    const counts = finalCounts(first.rows);
    expect(counts).toEqual(hundredEach);
    expect(first.rows).toHaveLength(1000);

    // The epoch-1 snapshots are a consistent cut: records the sources emitted before the barrier
    // are exactly those the counts hold.
    const snaps = new Map([...first.completions].map(([id, list]) => [id, list[0]!.state]));
    const nextCounters = [0, 1].map((i) => (snaps.get(`src/${i}`) as { next_counter: number }).next_counter);
    const emittedBefore = nextCounters.reduce((n, next, i) => n + (next - i) / 2, 0);
    const restoredCounts = [0, 1].map((i) => (snaps.get(`cnt/${i}`) as { counts: Record<string, number> }).counts);
    const countedBefore = restoredCounts.flatMap((c) => Object.values(c)).reduce((a, b) => a + b, 0);
    expect(emittedBefore).toBeGreaterThan(0);
    expect(emittedBefore).toBeLessThan(1000);
    expect(countedBefore).toBe(emittedBefore);
    // And the positions recorded with them say the same: each key subtask saw exactly what its source
    // emitted before the barrier, and the count subtasks together saw all of that.
    const seen = (id: string) => first.completions.get(id)![0]!.versionsSeen;
    for (const i of [0, 1]) expect(seen(`key/${i}`)[`src/${i}`]).toBe((nextCounters[i]! - i) / 2);
    expect([0, 1].flatMap((i) => Object.values(seen(`key/${i}`))).reduce((a, b) => a + b, 0)).toBe(emittedBefore);
    expect(seen('src/0')).toEqual({});
    const seenByCount = [0, 1].flatMap((i) => Object.values(seen(`cnt/${i}`))).reduce((a, b) => a + b, 0);
    expect(seenByCount).toBe(emittedBefore);

    // Restart everything (new generation) from epoch 1.
    const second = await runGraph(nc, transport, g, 2, snaps);
    await Promise.all(second.runners.map((r) => r.done));
    await second.previewDone;
    expect(second.failures).toEqual([]);
    expect(second.rows).toHaveLength(1000 - emittedBefore);
    expect(finalCounts(second.rows)).toEqual(hundredEach);
    // Per key, the restored run continues the count exactly: no gap (loss), no repeat (duplicate).
    const before: Record<string, number> = {};
    for (const c of restoredCounts) for (const [k, n] of Object.entries(c)) before[k] = n;
    for (const key of Object.keys(hundredEach)) {
      const seen = second.rows.filter((r) => r.key === key).map((r) => r.count).sort((a, b) => a - b);
      const start = before[key] ?? 0;
      expect(seen, key).toEqual(Array.from({ length: 100 - start }, (_, i) => start + 1 + i));
    }
  });

  it('then_stop: the barrier checkpoints and stops every subtask', async () => {
    const run = await runGraph(nc, transport, graph(1_000_000), 3);
    await eventually(() => expect(run.rows.length).toBeGreaterThan(50), { timeoutMs: 10_000 });
    for (const r of run.runners.filter((r) => r.spec.operator === 'impulse')) r.injectBarrier(5, true);
    expect(await Promise.all(run.runners.map((r) => r.done))).toEqual(Array(7).fill('finished'));
    expect([...run.completions.values()].map((l) => l.map((c) => c.epoch))).toEqual(Array(7).fill([5]));
  });

  it('graceful stop drains; immediate stop stops now', async () => {
    const run = await runGraph(nc, transport, graph(1_000_000, 5000), 4);
    await eventually(() => expect(run.rows.length).toBeGreaterThan(10), { timeoutMs: 10_000 });
    for (const r of run.runners) r.stop('graceful');
    expect(await Promise.all(run.runners.map((r) => r.done))).toEqual(Array(7).fill('finished'));
    await run.previewDone;
    const emitted = run.runners.filter((r) => r.spec.operator === 'impulse').reduce((n, r) => n + r.metrics().records_out, 0);
    expect(run.rows).toHaveLength(emitted);

    const other = await runGraph(nc, transport, graph(1_000_000, 5000), 5);
    for (const r of other.runners) r.stop('immediate');
    expect(await Promise.all(other.runners.map((r) => r.done))).toEqual(Array(7).fill('stopped'));
  });

  it('ignores data of a stale generation', async () => {
    const got: DataRecord[] = [];
    const gate = new InputGate(
      transport,
      { jobId: JOB, generation: 7, node: 'b', subtask: 0, inputs: [{ from: 'a', parallelism: 1 }] },
      { record: (r) => void got.push(r), barrier: () => undefined, end: () => undefined, error: (e) => { throw e; } },
    );
    gate.start();
    await nc.flush();
    nc.publish(subjects.data(JOB, 6, 'a', 'b', 0), encode({ v: 1, kind: 'records', from_subtask: 0, records: [{ value: 'old', ts: 0 }] }));
    nc.publish(subjects.data(JOB, 7, 'a', 'b', 0), encode({ v: 1, kind: 'records', from_subtask: 0, records: [{ value: 'new', ts: 0 }] }));
    await eventually(() => expect(got.map((r) => r.value)).toEqual(['new']));
    gate.stop();
  });

  it('a lost connection fails the tasks (external, retry) instead of losing records silently', async () => {
    const own = await connectTo(server.url, 'worker-disconnect');
    const t = natsTransport(own);
    const g = impulseToSinkGraph({ rate: 1000 });
    const failures: FailureReport[] = [];
    const runners = subtaskSpecs(g, JOB, 9).map((spec) => new SubtaskRunner(t, spec, { onFailed: (f) => failures.push(f) }));
    await runners[1]!.start();
    await runners[0]!.start();
    await eventually(() => expect(runners[1]!.metrics().records_in).toBeGreaterThan(20), { timeoutMs: 5_000 });
    await server.restart();
    expect(await Promise.all(runners.map((r) => r.done))).toEqual(['failed', 'failed']);
    expect(failures).toHaveLength(2);
    for (const f of failures) expect(f).toMatchObject({ domain: 'external', hint: 'with_backoff', reason: expect.stringMatching(/disconnect/) as unknown });
    t.close();
    await own.close();
    // The shared connection reconnects; later tests on it would need a fresh transport.
  });
});
