/** Human-readable output of the job commands: tables, key/value blocks and one-line state events. */
import type { JobStateEvent, JobSummary, JobView, ListControllersReply, WorkerViewMessage } from '../protocol/index.js';
import type { ErrorRow } from '../api/schemas.js';
import { microsFromMs, msFromMicros } from '../shared/micros.js';

/** Left-aligned columns separated by two spaces; the header is the first row. */
export function table(header: readonly string[], rows: ReadonlyArray<readonly string[]>): string {
  const widths = header.map((title, i) => Math.max(title.length, ...rows.map((row) => (row[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((cell, i) => (i === cells.length - 1 ? cell : cell.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

/** µs since the epoch → ISO 8601 (UTC, ms precision); `-` for null. */
export function formatMicros(micros: number | null | undefined): string {
  if (micros === null || micros === undefined) return '-';
  return new Date(msFromMicros(micros)).toISOString();
}

/**
 * Every duration the CLI prints, in one precision: three significant digits below a minute (`350µs`,
 * `1.25ms`, `312ms`, `9.50s`), two whole units from a minute up (`2m05s`, `1h02m`, `3d04h`), so that
 * columns and messages read alike whatever their source (µs, ms or s).
 */
export function formatDuration(micros: number): string {
  const sign = micros < 0 ? '-' : '';
  const abs = Math.abs(Math.round(micros));
  if (abs < 1_000) return `${sign}${abs}µs`;
  // toPrecision rounds 999.6 up to 1.00e+3: such a value goes to the next unit instead.
  if (abs < 999_500) return `${sign}${(abs / 1_000).toPrecision(3)}ms`;
  if (abs < 59_950_000) return `${sign}${(abs / 1_000_000).toPrecision(3)}s`;
  const seconds = Math.round(abs / 1_000_000);
  const two = (n: number) => String(n).padStart(2, '0');
  if (seconds < 3_600) return `${sign}${Math.floor(seconds / 60)}m${two(seconds % 60)}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 24 * 60) return `${sign}${Math.floor(minutes / 60)}h${two(minutes % 60)}m`;
  const hours = Math.floor(minutes / 60);
  return `${sign}${Math.floor(hours / 24)}d${two(hours % 24)}h`;
}

/** A duration in ms, as `formatDuration` writes it; `-` for null. */
export function formatMs(ms: number | null): string {
  return ms === null ? '-' : formatDuration(microsFromMs(ms));
}

export interface JobListOptions {
  /** More columns: the desired stop mode, the owner, the action, the creation time, the wait, the failure. */
  wide?: boolean;
  /** Ages are counted to this time (ms since the epoch). */
  nowMs?: number;
}

/** `weir jobs list`: one row per job; AGE is the time since it was created. */
export function jobListTable(jobs: readonly JobSummary[], { wide = false, nowMs = Date.now() }: JobListOptions = {}): string {
  if (jobs.length === 0) return 'no jobs';
  const header = ['JOB', 'NAME', 'STATE', 'GENERATION', 'RESTARTS', 'AGE'];
  const rows = jobs.map((job) => [job.job_id, job.name, job.state, String(job.generation), String(job.restarts), formatDuration(microsFromMs(nowMs) - job.created_at)]);
  if (!wide) return table(header, rows);
  return table(
    [...header, 'STOP', 'OWNER', 'ACTION', 'CREATED', 'WAITING', 'FAILURE'],
    jobs.map((job, i) => [
      ...(rows[i] ?? []),
      job.stop,
      job.owner ?? '-',
      `${job.available_action.text}${job.available_action.in_progress ? ' (in progress)' : ''}`,
      formatMicros(job.created_at),
      job.waiting === null ? '-' : job.waiting.reason,
      job.failure === null ? '-' : (job.failure.message.split('\n')[0] ?? ''),
    ]),
  );
}

/** `job/generation×slots, …`, or `-`. */
function slotsText(held: WorkerViewMessage['allocations']): string {
  return held.length === 0 ? '-' : held.map((h) => `${h.job_id}/${h.generation}×${h.slots}`).join(', ');
}

/** The registry's workers: liveness, slots, and where booked and reported slots differ (they agree once jobs settle). */
export function workerListTable(workers: readonly WorkerViewMessage[]): string {
  if (workers.length === 0) return 'no workers';
  return table(
    ['WORKER', 'LIVE', 'SLOTS', 'FREE', 'BOOKED', 'REPORTED'],
    workers.map((w) => [w.worker_id, w.live ? 'yes' : 'no', String(w.slots), String(w.free_slots), slotsText(w.allocations), slotsText(w.reported)]),
  );
}

/**
 * The controllers sharing the jobs, as the one that answered sees them: liveness, shards and jobs owned,
 * and the age of each one's least recently renewed lease (near the TTL: it has stopped renewing).
 */
export function controllerListTable(reply: ListControllersReply): string {
  const footer = `answered by ${reply.answered_by}; ${reply.shards} shards, lease TTL ${formatMs(reply.lease_ttl_ms)}`;
  if (reply.data.length === 0) return `no controllers\n${footer}`;
  const rows = reply.data.map((c) => [c.controller_id, c.live ? 'yes' : 'no', String(c.shards), String(c.jobs), formatMs(c.oldest_lease_age_ms)]);
  return `${table(['CONTROLLER', 'LIVE', 'SHARDS', 'JOBS', 'LEASE AGE'], rows)}\n${footer}`;
}

/** What a user can do with the job now, with the command that does it. */
function actionText(job: string, action: JobView['available_action']): string {
  const busy = action.in_progress ? ' (in progress)' : '';
  if (action.stop === null) return `${action.text}${busy}`;
  if (action.stop === 'none') return `${action.text}${busy}: weir jobs start ${job}`;
  return `${action.text}${busy}: weir jobs stop ${job} --mode ${action.stop}`;
}

/** How long until `micros` (µs since the epoch): `in 9m58s`, or `overdue by 2.00s`. */
export function timeUntil(micros: number, nowMs: number): string {
  const left = micros - microsFromMs(nowMs);
  return left >= 0 ? `in ${formatDuration(left)}` : `overdue by ${formatDuration(-left)}`;
}

/** A job's wait: why, and the deadline after which its state falls back. */
export function waitText(waiting: JobView['waiting'], nowMs = Date.now()): string {
  if (waiting === null) return '-';
  if (waiting.until === null) return `${waiting.reason} (no deadline)`;
  return `${waiting.reason} (until ${formatMicros(waiting.until)}, ${timeUntil(waiting.until, nowMs)})`;
}

export function jobViewText(view: JobView, nowMs = Date.now()): string {
  const nodes = view.graph.nodes.map((node) => `${node.id}(${node.operator}×${view.config.parallelism_overrides[node.id] ?? node.parallelism})`);
  const rows: Array<[string, string]> = [
    ['job', view.job_id],
    ['name', view.name],
    ['state', view.state],
    ['waiting', waitText(view.waiting, nowMs)],
    ['generation', String(view.generation)],
    ['restarts', String(view.restarts)],
    ['failure', view.failure === null ? '-' : `${view.failure.message} (${view.failure.domain}, ${view.failure.hint}, at ${formatMicros(view.failure.at)})`],
    ['action', actionText(view.job_id, view.available_action)],
    ['desired', `stop=${view.config.stop} restart_mode=${view.config.restart_mode} restart_nonce=${view.config.restart_nonce}`],
    ['checkpoints', view.config.checkpoint_interval_micros === 0 ? 'off' : `every ${formatDuration(view.config.checkpoint_interval_micros)}`],
    ['ttl', view.config.ttl_micros === null ? '-' : formatDuration(view.config.ttl_micros)],
    ['graph', nodes.join(' ')],
    ['created', formatMicros(view.created_at)],
    ['started', formatMicros(view.start_time)],
    ['finished', formatMicros(view.finish_time)],
    ['revision', String(view.revision)],
  ];
  const width = Math.max(...rows.map(([key]) => key.length));
  return rows.map(([key, value]) => `${`${key}:`.padEnd(width + 2)}${value}`).join('\n');
}

/** One line per state event: `<time>  <job>  <previous> -> <state>  generation=G restarts=R [failure: …]`. */
export function stateEventLine(event: JobStateEvent): string {
  if (event.deleted === true) return `${formatMicros(event.at)}  ${event.job_id}  deleted (was ${event.state})`;
  const failure = event.failure === undefined ? '' : `  failure: ${event.failure.message.split('\n')[0] ?? ''}`;
  return `${formatMicros(event.at)}  ${event.job_id}  ${event.previous ?? '-'} -> ${event.state}  generation=${event.generation} restarts=${event.restarts}${failure}`;
}

/** The first line of `weir jobs watch`: where the job is now, and what it waits for. */
export function currentStateLine(view: JobView, nowMs = Date.now()): string {
  const failure = view.failure === null ? '' : `  failure: ${view.failure.message.split('\n')[0] ?? ''}`;
  const waiting = view.waiting === null ? '' : `  ${waitText(view.waiting, nowMs)}`;
  return `${formatMicros(microsFromMs(nowMs))}  ${view.job_id}  ${view.state} (now)  generation=${view.generation} restarts=${view.restarts}${waiting}${failure}`;
}

/** A job's errors: id (the cursor), time, operator/subtask, domain, the message's first line. */
export function errorListTable(rows: readonly ErrorRow[], empty = 'no errors'): string {
  if (rows.length === 0) return empty;
  return table(
    ['ID', 'TIME', 'OPERATOR', 'DOMAIN', 'MESSAGE'],
    rows.map((row) => [
      String(row.id),
      formatMicros(row.created_at),
      row.operator_id === null ? '-' : row.task_index === null ? row.operator_id : `${row.operator_id}/${row.task_index}`,
      row.error_domain,
      row.message.split('\n')[0] ?? '',
    ]),
  );
}
