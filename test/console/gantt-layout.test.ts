import { describe, expect, it } from 'vitest';
import {
  OPERATOR_METADATA,
  OPERATOR_SNAPSHOT,
  axisTicks,
  durationLabel,
  eventClass,
  layoutCheckpoint,
  niceStep,
  placeSpan,
  timeRange,
  type Checkpoint,
  type OperatorGroup,
} from '../../console/src/pages/job/gantt-layout.js';

const T0 = 1_700_000_000_000_000;
const span = (event: string, start: number, finish: number | null) => ({ event, description: `${event} text`, start_time: T0 + start, finish_time: finish === null ? null : T0 + finish });

function checkpoint(over: Partial<Checkpoint> = {}): Checkpoint {
  return {
    epoch: 7,
    generation: 1,
    backend: 'jetstream',
    checkpoint_type: 'scheduled',
    status: 'ready',
    start_time: T0,
    finish_time: T0 + 1_000_000,
    bytes: 4096,
    events: [span('Checkpointing', 0, 1_000_000), span('CheckpointingOperators', 100_000, 700_000), span('WritingMetadata', 700_000, 900_000)],
    failure: null,
    ...over,
  };
}

function group(id: string, subtasks: Array<{ index: number; spans: ReturnType<typeof span>[] }>, metadata: number | null, finish: number | null): OperatorGroup {
  return {
    operator_id: id,
    bytes: 1000,
    started_metadata_write: metadata === null ? null : T0 + metadata,
    finish_time: finish === null ? null : T0 + finish,
    subtasks: subtasks.map((s) => ({ index: s.index, worker_id: `w${s.index}`, bytes: 500, event_spans: s.spans })),
  };
}

describe('the checkpoint timeline layout', () => {
  it('places a span in percent of the axis, clamped to it', () => {
    const range = { start: 1000, end: 2000 };
    expect(placeSpan(1250, 1500, range)).toEqual({ left: 25, width: 25 });
    expect(placeSpan(500, 1100, range)).toEqual({ left: 0, width: 10 });
    expect(placeSpan(1900, 3000, range)).toEqual({ left: 90, width: 10 });
    expect(placeSpan(1500, 1400, range)).toEqual({ left: 50, width: 0 });
  });

  it('spans the axis from the first start to the last finish, open spans running to now', () => {
    expect(timeRange([span('a', 10, 20), span('b', 5, 15)], 0)).toEqual({ start: T0 + 5, end: T0 + 20 });
    expect(timeRange([span('a', 10, null)], T0 + 50)).toEqual({ start: T0 + 10, end: T0 + 50 });
    // Never empty: a zero-length axis gets 1 µs.
    expect(timeRange([span('a', 10, 10)], 0)).toEqual({ start: T0 + 10, end: T0 + 11 });
    expect(timeRange([], 99)).toEqual({ start: 99, end: 100 });
  });

  it('picks round steps of 1, 2 or 5 × 10^k', () => {
    expect(niceStep(1_000_000, 5)).toBe(200_000);
    expect(niceStep(1_000_000, 4)).toBe(500_000);
    expect(niceStep(1_000_000, 10)).toBe(100_000);
    expect(niceStep(7_300, 6)).toBe(2_000);
    expect(niceStep(3, 6)).toBe(1);
  });

  it('puts ticks at round offsets from 0, none past the end', () => {
    const ticks = axisTicks({ start: T0, end: T0 + 1_000_000 }, 5);
    expect(ticks.map((t) => t.offset)).toEqual([0, 200_000, 400_000, 600_000, 800_000, 1_000_000]);
    expect(ticks.map((t) => t.left)).toEqual([0, 20, 40, 60, 80, 100]);
    expect(ticks.map((t) => t.label)).toEqual(['0', '+200 ms', '+400 ms', '+600 ms', '+800 ms', '+1 s']);
    const odd = axisTicks({ start: 0, end: 7_300 }, 6);
    expect(odd.map((t) => t.offset)).toEqual([0, 2_000, 4_000, 6_000]);
    expect(odd.every((t) => t.left <= 100)).toBe(true);
  });

  it('writes durations in the unit that fits', () => {
    expect(durationLabel(0)).toBe('0');
    expect(durationLabel(850)).toBe('850 µs');
    expect(durationLabel(12_340)).toBe('12.3 ms');
    expect(durationLabel(1_500_000)).toBe('1.5 s');
    expect(durationLabel(123_000_000)).toBe('2 min 3 s');
    expect(durationLabel(120_000_000)).toBe('2 min');
    expect(durationLabel(3_720_000_000)).toBe('1 h 2 min');
  });

  it('lays out job spans, then each operator (by id) with its subtasks (by index), on one axis', () => {
    const groups = [
      group('sink', [{ index: 0, spans: [span('Alignment', 200_000, 300_000), span('Sync', 300_000, 400_000)] }], 450_000, 500_000),
      group(
        'map',
        [
          { index: 1, spans: [span('Alignment', 100_000, 150_000), span('Async', 150_000, 600_000)] },
          { index: 0, spans: [span('Sync', 120_000, 200_000)] },
        ],
        600_000,
        650_000,
      ),
    ];
    const layout = layoutCheckpoint(checkpoint(), groups, 0);
    expect(layout.start).toBe(T0);
    expect(layout.end).toBe(T0 + 1_000_000);
    expect(layout.rows.map((r) => `${r.level}:${r.label}`)).toEqual([
      'job:Checkpointing',
      'job:CheckpointingOperators',
      'job:WritingMetadata',
      'operator:map',
      'subtask:subtask 0',
      'subtask:subtask 1',
      'operator:sink',
      'subtask:subtask 0',
    ]);
    expect(layout.rows[0]?.bytes).toBe(4096);
    expect(layout.rows[1]?.bars[0]).toMatchObject({ left: 10, width: 60, open: false });
    // The operator's row: its subtasks' first start to the metadata write, then the write.
    const map = layout.rows[3];
    expect(map?.bytes).toBe(1000);
    expect(map?.bars.map((b) => [b.event, Math.round(b.left), Math.round(b.width)])).toEqual([
      [OPERATOR_SNAPSHOT, 10, 50],
      [OPERATOR_METADATA, 60, 5],
    ]);
    expect(layout.rows[5]).toMatchObject({ detail: 'w1', bytes: 500 });
    expect(layout.events).toEqual(['Checkpointing', 'CheckpointingOperators', 'WritingMetadata', OPERATOR_SNAPSHOT, OPERATOR_METADATA, 'Sync', 'Alignment', 'Async']);
    expect(layout.ticks[0]?.label).toBe('0');
  });

  it('runs open spans to now and marks them open', () => {
    const running = checkpoint({ status: 'inprogress', finish_time: null, events: [span('Checkpointing', 0, null)] });
    const groups = [group('map', [{ index: 0, spans: [span('Alignment', 100_000, null)] }], null, null)];
    const layout = layoutCheckpoint(running, groups, T0 + 400_000);
    expect(layout.end).toBe(T0 + 400_000);
    expect(layout.rows[0]?.bars[0]).toMatchObject({ open: true, left: 0, width: 100, finish: T0 + 400_000 });
    const op = layout.rows[1];
    expect(op?.bars).toHaveLength(1);
    expect(op?.bars[0]).toMatchObject({ event: OPERATOR_SNAPSHOT, open: true, left: 25, width: 75 });
    expect(layout.rows[2]?.bars[0]).toMatchObject({ open: true, left: 25, width: 75 });
  });

  it('still draws a checkpoint that has no spans, and an operator without subtask spans', () => {
    const bare = checkpoint({ events: [] });
    const layout = layoutCheckpoint(bare, [group('map', [], null, null)], 0);
    expect(layout.rows[0]).toMatchObject({ level: 'job', label: 'Checkpoint 7', bytes: 4096 });
    expect(layout.rows[0]?.bars[0]).toMatchObject({ left: 0, width: 100 });
    expect(layout.rows[1]).toMatchObject({ level: 'operator', label: 'map', bars: [] });
  });

  it('names a CSS class per event', () => {
    expect(eventClass('CheckpointingOperators')).toBe('gantt-ev-checkpointingoperators');
    expect(eventClass('Sync')).toBe('gantt-ev-sync');
    expect(eventClass('a b/c')).toBe('gantt-ev-a-b-c');
  });
});
