/**
 * The job's errors, newest first, a page at a time with the API's cursor (the last row's `id`): Older
 * follows it, Newer goes back to the page before. Read again when the job page hands down a new state or
 * generation (a failure is a transition), and on Refresh.
 */
import { useEffect, useState } from 'preact/hooks';
import { listErrors } from '../../api.js';
import { ageOf, timeOf } from '../../format.js';
import type { ErrorRow } from '../../types.js';
import type { JobPanelProps } from './panel-props.js';

export const ERRORS_PAGE_SIZE = 20;

const HINTS: Record<ErrorRow['hint'], string> = {
  no_retry: 'not retried',
  with_backoff: 'retried with backoff',
};

const DOMAINS: Record<ErrorRow['error_domain'], string> = {
  user: 'user (the pipeline or its data)',
  external: 'external (a system the job talks to)',
  internal: 'internal (weir or a worker)',
};

export function ErrorsPanel({ id, job }: JobPanelProps) {
  /** The cursor of each page visited after the first: the last one is the page shown. */
  const [cursors, setCursors] = useState<number[]>([]);
  const [rows, setRows] = useState<ErrorRow[] | null>(null);
  const [hasMore, setHasMore] = useState(false);
  const [failure, setFailure] = useState<string | null>(null);
  const [tick, setTick] = useState(0);
  const cursor = cursors[cursors.length - 1];
  const state = job.job.state;
  const generation = job.job.run_id;

  useEffect(() => setCursors([]), [id]);

  useEffect(() => {
    const abort = new AbortController();
    listErrors(id, { limit: ERRORS_PAGE_SIZE, startingAfter: cursor }, abort.signal)
      .then((page) => {
        setRows(page.data);
        setHasMore(page.has_more);
        setFailure(null);
      })
      .catch((err: unknown) => {
        if (!abort.signal.aborted) setFailure(err instanceof Error ? err.message : String(err));
      });
    return () => abort.abort();
  }, [id, cursor, state, generation, tick]);

  const last = rows?.[rows.length - 1];

  return (
    <section class="panel errors-panel" aria-labelledby="errors-title">
      <div class="page-head">
        <h2 id="errors-title">Errors</h2>
        <div class="panel-controls">
          <button type="button" class="secondary" onClick={() => setTick((n) => n + 1)}>
            Refresh
          </button>
        </div>
      </div>
      {failure !== null && <p class="notice error">{failure}</p>}
      {rows === null && failure === null && <p class="muted">Loading…</p>}
      {rows !== null && rows.length === 0 && <p class="muted">{cursor === undefined ? 'No errors.' : 'No older errors.'}</p>}
      {rows !== null && rows.length > 0 && (
        <div class="table-wrap">
          <table class="errors" data-testid="errors">
            <thead>
              <tr>
                <th scope="col">Time</th>
                <th scope="col">Message</th>
                <th scope="col">Domain</th>
                <th scope="col">Retry</th>
                <th scope="col">Where</th>
              </tr>
            </thead>
            <tbody>
              {rows.map((row) => (
                <tr key={row.id}>
                  <td class="nowrap">
                    {timeOf(row.created_at)}
                    <div class="muted small">{ageOf(row.created_at)} ago</div>
                  </td>
                  <td class="error-message">{row.message}</td>
                  <td title={DOMAINS[row.error_domain]}>{row.error_domain}</td>
                  <td>{HINTS[row.hint]}</td>
                  <td>
                    {row.operator_id === null ? (
                      <span class="muted">the job</span>
                    ) : (
                      <>
                        <code>{row.operator_id}</code>
                        {row.task_index !== null && <span class="muted small"> subtask {row.task_index}</span>}
                      </>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {(cursors.length > 0 || hasMore) && (
        <nav class="pager" aria-label="Error pages">
          {cursors.length > 0 && (
            <button type="button" class="secondary" onClick={() => setCursors((c) => c.slice(0, -1))}>
              Newer
            </button>
          )}
          {hasMore && last !== undefined && (
            <button type="button" class="secondary" onClick={() => setCursors((c) => [...c, last.id])}>
              Older
            </button>
          )}
          {cursors.length > 0 && <span class="muted small">page {cursors.length + 1}</span>}
        </nav>
      )}
    </section>
  );
}
