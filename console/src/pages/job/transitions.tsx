/**
 * The job's transition history, newest first: the whole event log on open, then each transition as it
 * happens (live.ts). Each row: when, from → to, the generation, and why: for a failure (into Recovering
 * or Failing) the error the controller logged with it (message, domain, retry hint), otherwise the
 * machine's transitions the edge stands for (`event [guard]`, from the same build-time statechart data as
 * the diagram). A row that arrives live is marked `is-new` (it flashes). Test hook: `data-testid="transitions"`,
 * each row with `data-from`, `data-to` and `data-seq`.
 */
import { edges } from 'virtual:job-lifecycle';
import { StateBadge } from '../../components/state-badge.js';
import { timeOf } from '../../format.js';
import type { ErrorRow, TransitionEventData } from '../../types.js';
import { FAILURE_STATES } from './live.js';

/** Rows shown at first; the rest behind "Show all". */
const SHOWN = 50;

const LABELS = new Map(edges.map((edge) => [`${edge.from}→${edge.to}`, edge.labels]));

/**
 * The error logged with a failure transition: the controller appends it right after the transition (the
 * same step), so it is the first error row after the transition and before the next one.
 */
export function errorOf(row: TransitionEventData, next: TransitionEventData | undefined, errors: readonly ErrorRow[]): ErrorRow | undefined {
  if (!FAILURE_STATES.includes(row.to)) return undefined;
  let found: ErrorRow | undefined;
  for (const error of errors) {
    if (error.id > row.seq && (next === undefined || error.id < next.seq) && (found === undefined || error.id < found.id)) found = error;
  }
  return found;
}

function Reason({ row, error }: { row: TransitionEventData; error: ErrorRow | undefined }) {
  if (error !== undefined) {
    return (
      <div>
        <div class="transition-error">{error.message}</div>
        <div class="small">
          <span class="transition-tag">domain: {error.error_domain}</span> <span class="transition-tag">hint: {error.hint}</span>
          {error.operator_id === null ? null : (
            <span class="muted">
              {' '}
              at {error.operator_id}
              {error.task_index === null ? '' : `/${error.task_index}`}
            </span>
          )}
        </div>
      </div>
    );
  }
  const labels = LABELS.get(`${row.from}→${row.to}`);
  if (labels === undefined) return <span class="muted small">not a transition of the statechart</span>;
  return (
    <span class="small transition-causes">
      {FAILURE_STATES.includes(row.to) ? <span class="muted">a failure (its error is not in the newest errors): </span> : null}
      {labels.map((label, i) => (
        <span key={label}>
          {i === 0 ? '' : <span class="muted"> or </span>}
          <code>{label}</code>
        </span>
      ))}
    </span>
  );
}

export interface TransitionsProps {
  /** Oldest first. */
  transitions: readonly TransitionEventData[];
  /** Older transitions not kept. */
  trimmed: number;
  /** Rows after this sequence arrived live and are marked as new (null: the history is still arriving). */
  replayedUpTo: number | null;
  errors: readonly ErrorRow[];
  showAll: boolean;
  onShowAll: () => void;
}

export function Transitions({ transitions, trimmed, replayedUpTo, errors, showAll, onShowAll }: TransitionsProps) {
  const newestFirst = [...transitions].reverse();
  const shown = showAll ? newestFirst : newestFirst.slice(0, SHOWN);
  return (
    <section class="job-transitions" aria-labelledby="job-transitions-title" data-testid="transitions">
      <h2 id="job-transitions-title">Transitions</h2>
      {transitions.length === 0 ? (
        <p class="muted">No transitions yet.</p>
      ) : (
        <div class="table-wrap">
          <table>
            <thead>
              <tr>
                <th scope="col">Time</th>
                <th scope="col">From → to</th>
                <th scope="col" class="num">
                  Gen.
                </th>
                <th scope="col">Reason</th>
              </tr>
            </thead>
            <tbody>
              {shown.map((row, i) => {
                // `newestFirst[i - 1]` is the transition after this one.
                const next = i === 0 ? undefined : newestFirst[i - 1];
                const live = replayedUpTo !== null && row.seq > replayedUpTo;
                return (
                  <tr key={row.seq} class={live ? 'transition-row is-new' : 'transition-row'} data-seq={row.seq} data-from={row.from} data-to={row.to}>
                    <td class="nowrap">{timeOf(row.at)}</td>
                    <td class="nowrap">
                      <StateBadge state={row.from} /> <span aria-label="to">→</span> <StateBadge state={row.to} />
                    </td>
                    <td class="num">{row.generation}</td>
                    <td>
                      <Reason row={row} error={errorOf(row, next, errors)} />
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
      {shown.length < newestFirst.length || trimmed > 0 ? (
        <p class="small muted">
          Showing the newest {shown.length} of {newestFirst.length + trimmed}.{' '}
          {shown.length < newestFirst.length ? (
            <button type="button" class="secondary" onClick={onShowAll}>
              Show all {newestFirst.length}
            </button>
          ) : null}
        </p>
      ) : null}
    </section>
  );
}
