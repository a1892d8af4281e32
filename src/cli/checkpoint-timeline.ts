/** `weir jobs checkpoints`: the history as a table, one checkpoint's spans as a text timeline. */
import type { Checkpoint, CheckpointDetailsReply, CheckpointEventSpan } from '../protocol/index.js';
import { formatDuration, formatMicros, table } from './format.js';
import { nowMicros } from '../shared/micros.js';

const BAR_WIDTH = 48;

function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / (1024 * 1024)).toFixed(1)} MiB`;
}

export function checkpointListTable(checkpoints: readonly Checkpoint[]): string {
  if (checkpoints.length === 0) return 'no checkpoints';
  return table(
    ['EPOCH', 'GENERATION', 'TYPE', 'STATUS', 'STARTED', 'DURATION', 'BYTES'],
    checkpoints.map((c) => [
      String(c.epoch),
      String(c.generation),
      c.checkpoint_type,
      c.failure === null ? c.status : `${c.status}: ${c.failure.split('\n')[0] ?? ''}`,
      formatMicros(c.start_time),
      c.finish_time === null ? '-' : formatDuration(c.finish_time - c.start_time),
      bytes(c.bytes),
    ]),
  );
}

/**
 * Every span of one checkpoint on one time axis, from the checkpoint's start to the last finish (or
 * `now` for open spans, drawn ending in `>`): job spans first, then each operator's subtasks.
 */
export function checkpointTimeline(reply: CheckpointDetailsReply, now: number = nowMicros()): string {
  const { checkpoint, data: operators } = reply;
  const spans: CheckpointEventSpan[] = [...checkpoint.events, ...operators.flatMap((o) => o.subtasks.flatMap((s) => s.event_spans))];
  const start = Math.min(checkpoint.start_time, ...spans.map((s) => s.start_time));
  const end = Math.max(start + 1, ...spans.map((s) => s.finish_time ?? now), checkpoint.finish_time ?? start);
  const column = (t: number) => Math.min(BAR_WIDTH - 1, Math.floor(((t - start) / (end - start)) * BAR_WIDTH));
  const bar = (span: CheckpointEventSpan) => {
    const from = column(span.start_time);
    const to = Math.max(from, column(span.finish_time ?? end));
    const body = '█'.repeat(to - from + 1);
    return `${' '.repeat(from)}${span.finish_time === null ? `${body.slice(0, -1)}>` : body}`.padEnd(BAR_WIDTH);
  };
  const length = (span: CheckpointEventSpan) => (span.finish_time === null ? `${formatDuration(now - span.start_time)}+` : formatDuration(span.finish_time - span.start_time));
  const rows: Array<[string, string, string]> = checkpoint.events.map((span) => [span.event, bar(span), length(span)]);
  for (const operator of operators) {
    rows.push([`${operator.operator_id} (${bytes(operator.bytes)})`, '', '']);
    for (const subtask of operator.subtasks) {
      for (const span of subtask.event_spans) rows.push([`  [${subtask.index}] ${span.event}`, bar(span), length(span)]);
    }
  }
  const label = Math.max(...rows.map(([l]) => l.length));
  const header = [
    `checkpoint ${checkpoint.epoch} of ${reply.job_id} (generation ${checkpoint.generation}, ${checkpoint.checkpoint_type}, ${checkpoint.status}${checkpoint.failure === null ? '' : `: ${checkpoint.failure}`})`,
    `started ${formatMicros(checkpoint.start_time)}, ${checkpoint.finish_time === null ? 'still running' : `took ${formatDuration(checkpoint.finish_time - checkpoint.start_time)}`}, ${bytes(checkpoint.bytes)}`,
    `${''.padEnd(label)}  |${'0'.padEnd(BAR_WIDTH - formatDuration(end - start).length)}${formatDuration(end - start)}|`,
  ];
  return [...header, ...rows.map(([l, b, d]) => (b === '' ? l : `${l.padEnd(label)}  |${b}| ${d}`))].join('\n');
}
