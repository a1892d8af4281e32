/**
 * The controller's checkpoint bookkeeping (in-memory summaries, durable records) seen through the API
 * types of src/protocol/checkpoints.ts: what the history and details requests answer.
 */
import {
  CHECKPOINT_BACKEND,
  JobCheckpointSpan,
  subtaskSpans,
  type Checkpoint,
  type CheckpointState,
  type OperatorCheckpointGroup,
  type SubtaskCheckpointGroup,
  type SubtaskProgressTimes,
} from '../protocol/index.js';
import type { CheckpointKind, CheckpointRecord, CheckpointSummary, JobSpan, RecordedSubtask, SubtaskProgress } from './checkpoint-coordinator.js';

const CHECKPOINT_TYPE: Record<CheckpointKind, Checkpoint['checkpoint_type']> = { periodic: 'scheduled', final: 'stopping', manual: 'manual' };
const typeOf = (kind: CheckpointKind): Checkpoint['checkpoint_type'] => CHECKPOINT_TYPE[kind] ?? 'scheduled';
const eventSpans = (spans: readonly JobSpan[]) => spans.map((s) => JobCheckpointSpan.of(s.span, s.start, s.finish).toEventSpan());

export function checkpointFromSummary(summary: CheckpointSummary): Checkpoint {
  return {
    epoch: summary.epoch,
    generation: summary.generation,
    backend: CHECKPOINT_BACKEND,
    checkpoint_type: typeOf(summary.kind),
    status: summary.status satisfies CheckpointState,
    start_time: summary.start_time,
    finish_time: summary.finish_time,
    bytes: summary.bytes,
    events: eventSpans(summary.spans),
    failure: summary.failure,
  };
}

/**
 * A stored record with the spans its write closed: it is written while `WritingMetadata` (and, unless it
 * still awaits its commits, `Checkpointing`) are open, since they end with the write. The server's time
 * of the write (the KV entry's) is when they ended; a record read back says so rather than leave them
 * open forever.
 */
export function withWriteClosed(record: CheckpointRecord, writtenAtMicros: number): CheckpointRecord {
  const closes = (span: JobSpan) => span.finish === null && (span.span === 'WritingMetadata' || record.status === 'ready');
  if (!record.spans.some(closes)) return record;
  return { ...record, spans: record.spans.map((span) => (closes(span) ? { ...span, finish: Math.max(span.start, writtenAtMicros) } : span)) };
}

export function checkpointFromRecord(record: CheckpointRecord): Checkpoint {
  const spans = record.spans.length > 0 ? record.spans : [{ span: 'Checkpointing' as const, start: record.start_time, finish: record.completed_at }];
  return {
    epoch: record.epoch,
    generation: record.generation,
    backend: CHECKPOINT_BACKEND,
    checkpoint_type: typeOf(record.kind),
    status: record.status,
    start_time: record.start_time,
    finish_time: spans.find((s) => s.span === 'Checkpointing')?.finish ?? record.completed_at,
    bytes: record.operators.reduce((sum, o) => sum + o.bytes, 0),
    events: eventSpans(spans),
    failure: null,
  };
}

function progressTimes(events: SubtaskProgress['events'], start: number, finish: number | null): SubtaskProgressTimes {
  const times: SubtaskProgressTimes = { start_time: start, finish_time: finish };
  for (const e of events) {
    if (e.event === 'finished_operator_setup') continue;
    times[e.event] ??= e.at;
  }
  return times;
}

function subtaskGroup(index: number, workerId: string | null, bytes: number, times: SubtaskProgressTimes): SubtaskCheckpointGroup {
  return { index, worker_id: workerId, bytes, event_spans: subtaskSpans(times) };
}

/** Subtasks by node, each node's in subtask order. */
function byNode<T extends { node_id: string; subtask_index: number }>(subtasks: readonly T[]): Map<string, T[]> {
  const out = new Map<string, T[]>();
  for (const s of subtasks) out.set(s.node_id, [...(out.get(s.node_id) ?? []), s]);
  for (const list of out.values()) list.sort((a, b) => a.subtask_index - b.subtask_index);
  return out;
}

/** A completed epoch's operators, each with its subtasks' bytes and spans, in the record's operator order. */
export function operatorGroupsFromRecord(record: CheckpointRecord): OperatorCheckpointGroup[] {
  const subtasks = byNode<RecordedSubtask>(record.subtasks);
  return record.operators.map((o) => ({
    operator_id: o.node_id,
    bytes: o.bytes,
    started_metadata_write: o.finish_time,
    finish_time: record.completed_at,
    subtasks: (subtasks.get(o.node_id) ?? []).map((s) => subtaskGroup(s.subtask_index, s.worker_id, s.bytes, progressTimes(s.progress ?? [], s.start_time, s.finish_time))),
  }));
}

/**
 * A remembered checkpoint's operators: what each subtask got to. Once the metadata write started, an
 * operator finishes with it, as in the record (`completed_at`).
 */
export function operatorGroupsFromSummary(summary: CheckpointSummary): OperatorCheckpointGroup[] {
  const subtasks = byNode(summary.subtasks);
  const metadataWrite = summary.spans.find((s) => s.span === 'WritingMetadata')?.start ?? null;
  return summary.operators.map((o) => ({
    operator_id: o.node_id,
    bytes: o.bytes,
    started_metadata_write: o.completed_subtasks === o.subtasks ? o.finish_time : null,
    finish_time: o.completed_subtasks === o.subtasks ? (metadataWrite ?? o.finish_time) : null,
    subtasks: (subtasks.get(o.node_id) ?? []).map((s) => {
      const start = s.completed?.start_time ?? s.events[0]?.at ?? summary.start_time;
      return subtaskGroup(s.subtask_index, s.completed?.worker_id ?? null, s.completed?.bytes ?? 0, progressTimes(s.events, start, s.completed?.finish_time ?? null));
    }),
  }));
}
