/**
 * The checkpoint timeline's geometry, pure (tested in test/console/gantt-layout.test.ts): one checkpoint's
 * job spans, then each operator and its subtasks, as rows of bars placed on one time axis in percent of
 * its width, with round-numbered ticks. Times are µs since the epoch, as the API gives them; an open span
 * (`finish_time: null`) runs to `now` and is marked `open`.
 */
import type { CheckpointList, OperatorCheckpointGroupList } from '../../types.js';

export type Checkpoint = CheckpointList['data'][number];
export type OperatorGroup = OperatorCheckpointGroupList['data'][number];

export interface SpanLike {
  start_time: number;
  finish_time: number | null;
  event: string;
  description: string;
}

export interface GanttBar {
  event: string;
  description: string;
  /** µs since the epoch; `finish` is `now` for an open span. */
  start: number;
  finish: number;
  open: boolean;
  /** Percent of the axis. */
  left: number;
  width: number;
}

export type GanttLevel = 'job' | 'operator' | 'subtask';

export interface GanttRow {
  key: string;
  level: GanttLevel;
  label: string;
  /** The worker of a subtask, when known. */
  detail: string | null;
  bytes: number | null;
  bars: GanttBar[];
}

export interface GanttTick {
  /** µs after the axis start. */
  offset: number;
  left: number;
  label: string;
}

export interface GanttLayout {
  start: number;
  end: number;
  rows: GanttRow[];
  ticks: GanttTick[];
  /** Every event name drawn, in order of first appearance (the legend). */
  events: string[];
}

/** The operator row's two parts: its subtasks snapshotting, then its metadata being written. */
export const OPERATOR_SNAPSHOT = 'Snapshotting';
export const OPERATOR_METADATA = 'OperatorMetadata';

const OPERATOR_DESCRIPTIONS: Record<string, string> = {
  [OPERATOR_SNAPSHOT]: 'from the first subtask span to the last subtask done',
  [OPERATOR_METADATA]: "writing the operator's metadata",
};

/** The axis: from the earliest start to the latest finish (open spans: `now`), never empty. */
export function timeRange(spans: readonly SpanLike[], now: number): { start: number; end: number } {
  let start = Infinity;
  let end = -Infinity;
  for (const span of spans) {
    start = Math.min(start, span.start_time);
    end = Math.max(end, span.start_time, span.finish_time ?? now);
  }
  if (!Number.isFinite(start)) return { start: now, end: now + 1 };
  return { start, end: end > start ? end : start + 1 };
}

/** A span's place on the axis, in percent, clamped to it. */
export function placeSpan(start: number, finish: number, range: { start: number; end: number }): { left: number; width: number } {
  const total = range.end - range.start;
  const clamp = (t: number) => Math.min(range.end, Math.max(range.start, t));
  const from = clamp(start);
  const to = Math.max(from, clamp(finish));
  return { left: ((from - range.start) / total) * 100, width: ((to - from) / total) * 100 };
}

/** The round step (1, 2 or 5 × 10^k µs, at least 1 µs) that cuts `duration` into at most `maxTicks` parts. */
export function niceStep(duration: number, maxTicks: number): number {
  const rough = Math.max(1, duration / Math.max(1, maxTicks));
  const power = 10 ** Math.floor(Math.log10(rough));
  for (const m of [1, 2, 5, 10]) {
    if (m * power >= rough) return m * power;
  }
  return 10 * power;
}

/** `0`, `850 µs`, `12 ms`, `1.5 s`, `2 min 3 s`, `1 h 2 min`. */
export function durationLabel(micros: number): string {
  const us = Math.max(0, Math.round(micros));
  if (us === 0) return '0';
  if (us < 1_000) return `${us} µs`;
  if (us < 1_000_000) return `${trim(us / 1_000)} ms`;
  if (us < 60_000_000) return `${trim(us / 1_000_000)} s`;
  const seconds = Math.round(us / 1_000_000);
  if (seconds < 3_600) return `${Math.floor(seconds / 60)} min${seconds % 60 === 0 ? '' : ` ${seconds % 60} s`}`;
  const minutes = Math.round(seconds / 60);
  return `${Math.floor(minutes / 60)} h${minutes % 60 === 0 ? '' : ` ${minutes % 60} min`}`;
}

/** Three significant digits at most, no trailing zeros: 1.5, 12.3, 250. */
function trim(value: number): string {
  const digits = value < 10 ? 2 : value < 100 ? 1 : 0;
  return String(Number(value.toFixed(digits)));
}

/** Ticks at round offsets from the axis start, the first at 0, none past the end. */
export function axisTicks(range: { start: number; end: number }, maxTicks = 6): GanttTick[] {
  const duration = range.end - range.start;
  const step = niceStep(duration, maxTicks);
  const ticks: GanttTick[] = [];
  for (let offset = 0; offset <= duration; offset += step) {
    ticks.push({ offset, left: (offset / duration) * 100, label: offset === 0 ? '0' : `+${durationLabel(offset)}` });
  }
  return ticks;
}

function bar(span: SpanLike, range: { start: number; end: number }, now: number): GanttBar {
  const open = span.finish_time === null;
  const finish = Math.max(span.start_time, span.finish_time ?? now);
  return { event: span.event, description: span.description, start: span.start_time, finish, open, ...placeSpan(span.start_time, finish, range) };
}

/** The operator's own spans, derived: its subtasks' first start to its metadata write, then the write. */
export function operatorSpans(group: OperatorGroup): SpanLike[] {
  const starts = group.subtasks.flatMap((s) => s.event_spans.map((e) => e.start_time));
  if (starts.length === 0) return [];
  const first = Math.min(...starts);
  const metadata = group.started_metadata_write;
  const spans: SpanLike[] = [];
  const snapshotEnd = metadata ?? group.finish_time;
  spans.push({ event: OPERATOR_SNAPSHOT, description: OPERATOR_DESCRIPTIONS[OPERATOR_SNAPSHOT] ?? '', start_time: first, finish_time: snapshotEnd });
  if (metadata !== null) {
    spans.push({ event: OPERATOR_METADATA, description: OPERATOR_DESCRIPTIONS[OPERATOR_METADATA] ?? '', start_time: metadata, finish_time: group.finish_time });
  }
  return spans;
}

/**
 * The whole timeline: one row per job span (they nest: Checkpointing holds the others), then per operator
 * (sorted by id) one row for the operator and one per subtask (by index), on one axis.
 */
export function layoutCheckpoint(checkpoint: Checkpoint, groups: readonly OperatorGroup[], now: number, maxTicks = 6): GanttLayout {
  const operators = [...groups].sort((a, b) => (a.operator_id < b.operator_id ? -1 : a.operator_id > b.operator_id ? 1 : 0));
  const checkpointSpan: SpanLike = { event: 'Checkpoint', description: '', start_time: checkpoint.start_time, finish_time: checkpoint.finish_time };
  const all: SpanLike[] = [checkpointSpan, ...checkpoint.events];
  for (const group of operators) {
    all.push(...operatorSpans(group));
    for (const subtask of group.subtasks) all.push(...subtask.event_spans);
  }
  const range = timeRange(all, now);
  const events: string[] = [];
  const note = (bars: GanttBar[]) => {
    for (const b of bars) if (!events.includes(b.event)) events.push(b.event);
    return bars;
  };

  const rows: GanttRow[] = [];
  for (const span of checkpoint.events) {
    rows.push({ key: `job:${span.event}:${span.start_time}`, level: 'job', label: span.event, detail: null, bytes: span.event === 'Checkpointing' ? checkpoint.bytes : null, bars: note([bar(span, range, now)]) });
  }
  if (checkpoint.events.length === 0) {
    rows.push({ key: 'job:checkpoint', level: 'job', label: `Checkpoint ${checkpoint.epoch}`, detail: null, bytes: checkpoint.bytes, bars: note([bar(checkpointSpan, range, now)]) });
  }
  for (const group of operators) {
    rows.push({
      key: `op:${group.operator_id}`,
      level: 'operator',
      label: group.operator_id,
      detail: null,
      bytes: group.bytes,
      bars: note(operatorSpans(group).map((s) => bar(s, range, now))),
    });
    const subtasks = [...group.subtasks].sort((a, b) => a.index - b.index);
    for (const subtask of subtasks) {
      rows.push({
        key: `sub:${group.operator_id}:${subtask.index}`,
        level: 'subtask',
        label: `subtask ${subtask.index}`,
        detail: subtask.worker_id,
        bytes: subtask.bytes,
        bars: note(subtask.event_spans.map((s) => bar(s, range, now))),
      });
    }
  }
  return { start: range.start, end: range.end, rows, ticks: axisTicks(range, maxTicks), events };
}

/** A CSS class name for an event (`gantt-ev-alignment`), so each kind of span has its colour. */
export function eventClass(event: string): string {
  return `gantt-ev-${event.toLowerCase().replace(/[^a-z0-9]+/g, '-')}`;
}
