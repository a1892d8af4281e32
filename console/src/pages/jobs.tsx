/**
 * The jobs list (`/` and `/jobs`): every pipeline's job, newest first, a page at a time, with the one
 * action the API says a UI may offer now.
 */
import { useEffect, useState } from 'preact/hooks';
import { listCheckpoints, listPipelines, patchPipeline } from '../api.js';
import { showError } from '../components/error-banner.js';
import { StateBadge } from '../components/state-badge.js';
import { ageOf, timeOf } from '../format.js';
import { Link, navigate, type PageProps } from '../router.js';
import type { PipelineResponse } from '../types.js';

export const PAGE_SIZE = 20;

export function JobsPage({ query }: PageProps) {
  const after = query.get('after') ?? undefined;
  const [rows, setRows] = useState<PipelineResponse[] | null>(null);
  const [hasMore, setHasMore] = useState(false);
  const [failure, setFailure] = useState<string | null>(null);

  useEffect(() => {
    const abort = new AbortController();
    listPipelines({ limit: PAGE_SIZE, startingAfter: after }, abort.signal)
      .then((page) => {
        setRows(page.data);
        setHasMore(page.has_more);
        setFailure(null);
      })
      .catch((err: unknown) => {
        if (!abort.signal.aborted) setFailure(err instanceof Error ? err.message : String(err));
      });
    return () => abort.abort();
  }, [after]);

  const replace = (next: PipelineResponse) => setRows((current) => current?.map((row) => (row.id === next.id ? next : row)) ?? null);

  return (
    <section>
      <div class="page-head">
        <h1>Jobs</h1>
        <Link class="button" href="/create">
          Create a pipeline
        </Link>
      </div>
      {failure !== null && <p class="notice error">{failure}</p>}
      {rows === null && failure === null && <p class="muted">Loading…</p>}
      {rows !== null && rows.length === 0 && (
        <p class="muted">{after === undefined ? 'No jobs yet.' : 'No older jobs.'}</p>
      )}
      {rows !== null && rows.length > 0 && (
        <div class="table-wrap">
          <table class="jobs">
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">State</th>
                <th scope="col" class="num">Generation</th>
                <th scope="col" class="num">Restarts</th>
                <th scope="col">Age</th>
                <th scope="col">Last checkpoint</th>
                <th scope="col">Action</th>
              </tr>
            </thead>
            <tbody>
              {rows.map((row) => (
                <JobRow key={row.id} row={row} onChange={replace} />
              ))}
            </tbody>
          </table>
        </div>
      )}
      <nav class="pager" aria-label="Pages">
        {after !== undefined && <Link href="/jobs">Newest</Link>}
        {hasMore && rows !== null && rows.length > 0 && (
          <button type="button" class="secondary" onClick={() => navigate(`/jobs?after=${encodeURIComponent(rows[rows.length - 1]?.id ?? '')}`)}>
            Older
          </button>
        )}
      </nav>
    </section>
  );
}

function JobRow({ row, onChange }: { row: PipelineResponse; onChange: (next: PipelineResponse) => void }) {
  const job = row.job;
  return (
    <tr>
      <td>
        <Link href={`/jobs/${encodeURIComponent(row.id)}`}>{row.name}</Link>
        <div class="muted small">
          <code>{row.id}</code>
        </div>
      </td>
      <td title={job.failure?.message}>
        <StateBadge state={job.state} />
      </td>
      <td class="num">{job.run_id}</td>
      <td class="num">{job.restarts}</td>
      <td title={timeOf(row.created_at)}>{ageOf(row.created_at)}</td>
      <td>
        <LastCheckpoint id={row.id} generation={job.run_id} />
      </td>
      <td>
        <ActionButton row={row} onChange={onChange} />
      </td>
    </tr>
  );
}

function LastCheckpoint({ id, generation }: { id: string; generation: number }) {
  const [text, setText] = useState<{ label: string; title: string } | null>(null);
  useEffect(() => {
    const abort = new AbortController();
    listCheckpoints(id, {}, abort.signal)
      .then(({ data }) => {
        const newest = data.find((c) => c.status !== 'inprogress');
        setText(newest === undefined ? { label: '—', title: 'none yet' } : { label: `#${newest.epoch}, ${ageOf(newest.finish_time ?? newest.start_time)} ago`, title: `${newest.status}, ${timeOf(newest.start_time)}` });
      })
      .catch(() => {
        if (!abort.signal.aborted) setText({ label: '?', title: 'could not be read' });
      });
    return () => abort.abort();
  }, [id, generation]);
  if (text === null) return <span class="muted">…</span>;
  return <span title={text.title}>{text.label}</span>;
}

/**
 * The API's one action for the job as a button (`action`: the `stop` value to PATCH). `action_in_progress`
 * marks a job that is busy (starting, stopping): its button still works (Stop while starting, Force Stop
 * while a final checkpoint runs), and shows that something is under way.
 */
function ActionButton({ row, onChange }: { row: PipelineResponse; onChange: (next: PipelineResponse) => void }) {
  const [busy, setBusy] = useState(false);
  const stop = row.action;
  if (stop === null) return <span class={row.action_in_progress ? 'in-progress' : 'muted'}>{row.action_text}</span>;
  return (
    <button
      type="button"
      class={row.action_in_progress ? 'secondary in-progress' : 'secondary'}
      aria-busy={busy || row.action_in_progress}
      disabled={busy}
      onClick={() => {
        setBusy(true);
        patchPipeline(row.id, { stop })
          .then(onChange)
          .catch(showError)
          .finally(() => setBusy(false));
      }}
    >
      {row.action_text}
    </button>
  );
}
