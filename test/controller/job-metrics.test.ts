import { describe, expect, test } from 'vitest';
import { JobMetrics, type CountsReport } from '../../src/controller/job-metrics.js';
import { jobMetricsReplySchema } from '../../src/protocol/index.js';

const S = 1_000_000; // µs per second
const NODES = [
  { id: 'src', operator: 'impulse', parallelism: 2 },
  { id: 'out', operator: 'preview', parallelism: 1 },
];

function report(at: number, generation: number, counts: Record<string, [number, number]>, job = 'job-1'): CountsReport {
  return {
    at,
    jobs: [
      {
        job_id: job,
        generation,
        subtasks: Object.entries(counts).map(([key, [records_in, records_out]]) => {
          const [node_id, index] = key.split('/') as [string, string];
          return { node_id, subtask_index: Number(index), records_in, records_out };
        }),
      },
    ],
  };
}

describe('JobMetrics', () => {
  test('no samples: every node and subtask with zeros, collected_at null', () => {
    const m = new JobMetrics();
    const view = m.view('job-1', 1, NODES);
    expect(view).toEqual({
      generation: 1,
      collected_at: null,
      data: [
        { node_id: 'src', operator: 'impulse', parallelism: 2, records_in: 0, records_out: 0, records_in_rate: 0, records_out_rate: 0, subtasks: [0, 1].map((i) => ({ subtask_index: i, records_in: 0, records_out: 0, records_in_rate: 0, records_out_rate: 0, samples: [] })) },
        { node_id: 'out', operator: 'preview', parallelism: 1, records_in: 0, records_out: 0, records_in_rate: 0, records_out_rate: 0, subtasks: [{ subtask_index: 0, records_in: 0, records_out: 0, records_in_rate: 0, records_out_rate: 0, samples: [] }] },
      ],
    });
    expect(jobMetricsReplySchema.safeParse({ v: 1, job_id: 'job-1', ...view }).success).toBe(true);
  });

  test('totals from the newest sample, rates over ≥ 2 s, sums per operator; one sample: rate 0', () => {
    let now = 1_000;
    const m = new JobMetrics({ now: () => now });
    m.record(report(10 * S, 1, { 'src/0': [0, 100], 'src/1': [0, 50], 'out/0': [150, 0] }));
    let view = m.view('job-1', 1, NODES);
    expect(view.data[0]).toMatchObject({ records_out: 150, records_out_rate: 0 });
    m.record(report(11 * S, 1, { 'src/0': [0, 200], 'src/1': [0, 100], 'out/0': [300, 0] }));
    m.record(report(12 * S, 1, { 'src/0': [0, 300], 'src/1': [0, 150], 'out/0': [450, 0] }));
    m.record(report(13 * S, 1, { 'src/0': [0, 500], 'src/1': [0, 200], 'out/0': [700, 0] }));
    view = m.view('job-1', 1, NODES);
    expect(view.collected_at).toBe(13 * S);
    const [src, out] = view.data;
    // src/0: newest (13 s, 500); the newest ≥ 2 s older is (11 s, 200) → 150/s.
    expect(src!.subtasks[0]).toMatchObject({ records_out: 500, records_out_rate: 150 });
    expect(src!.subtasks[1]).toMatchObject({ records_out: 200, records_out_rate: 50 });
    expect(src).toMatchObject({ records_out: 700, records_out_rate: 200, parallelism: 2 });
    expect(out).toMatchObject({ records_in: 700, records_in_rate: 200 });
    expect(src!.subtasks[0]!.samples).toEqual([
      { at: 10 * S, records_in: 0, records_out: 100 },
      { at: 11 * S, records_in: 0, records_out: 200 },
      { at: 12 * S, records_in: 0, records_out: 300 },
      { at: 13 * S, records_in: 0, records_out: 500 },
    ]);
    // Samples within the window only: the oldest is the base.
    const short = new JobMetrics();
    short.record(report(10 * S, 1, { 'src/0': [0, 0] }));
    short.record(report(10.5 * S, 1, { 'src/0': [0, 100] }));
    expect(short.view('job-1', 1, NODES).data[0]!.subtasks[0]!.records_out_rate).toBe(200);
    // Not heard of for a while: rates 0, counts stay.
    now += 60_000;
    expect(m.view('job-1', 1, NODES).data[0]).toMatchObject({ records_out: 700, records_out_rate: 0 });
  });

  test('keeps the newest samples only; skips samples not newer than the last; a newer generation replaces, an older one is ignored; forget drops', () => {
    const m = new JobMetrics({ samples: 3 });
    for (let t = 1; t <= 5; t++) m.record(report(t * S, 1, { 'src/0': [0, t * 10] }));
    m.record(report(5 * S, 1, { 'src/0': [0, 999] }));
    m.record(report(4 * S, 1, { 'src/0': [0, 999] }));
    expect(m.view('job-1', 1, NODES).data[0]!.subtasks[0]!.samples.map((s) => s.records_out)).toEqual([30, 40, 50]);
    m.record(report(6 * S, 2, { 'src/0': [0, 7] }));
    expect(m.view('job-1', 1, NODES).collected_at).toBeNull();
    expect(m.view('job-1', 2, NODES).data[0]!.subtasks[0]!.samples).toEqual([{ at: 6 * S, records_in: 0, records_out: 7 }]);
    m.record(report(7 * S, 1, { 'src/0': [0, 1] }));
    expect(m.view('job-1', 2, NODES).data[0]!.subtasks[0]!.samples).toHaveLength(1);
    m.forget('job-1');
    expect(m.size).toBe(0);
  });

  test('only accepted jobs and sensible subtask indexes are kept; reports without subtasks create nothing', () => {
    const m = new JobMetrics({ accept: (id) => id === 'job-1' });
    m.record(report(S, 1, { 'src/0': [0, 1] }, 'job-2'));
    m.record({ at: S, jobs: [{ job_id: 'job-1', generation: 1, subtasks: [] }] });
    expect(m.size).toBe(0);
    m.record(report(S, 1, { 'src/100000': [0, 1] }));
    expect(m.view('job-1', 1, NODES).data[0]!.subtasks.every((s) => s.samples.length === 0)).toBe(true);
  });
});
