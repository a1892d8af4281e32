/**
 * The jobs list (`/` and `/jobs`): every pipeline's job, newest first, a page at a time, with the one
 * action the API says a UI may offer now. Live without polling: the page follows every job's transitions
 * (`GET /jobs/events`), shows each one at once, and reads the rows it touched again for what a
 * transition does not carry (restarts, the action, the last checkpoint).
 */
import { useEffect, useRef, useState } from 'preact/hooks';
import { ApiError, followAllJobEvents, getPipeline, listCheckpoints, listPipelines, patchPipeline } from '../api.js';
import { showError } from '../components/error-banner.js';
import { StateBadge } from '../components/state-badge.js';
import { ageOf, timeOf } from '../format.js';
import { Link, navigate, type PageProps } from '../router.js';
import type { JobState, JobsEvent, PipelineResponse } from '../types.js';

export const PAGE_SIZE = 20;
/**
 * Transitions come in bursts (Created → Compiling → Scheduling → Running): rows are read again once per
 * burst. Longer than the API's read cache (250 ms by default), so a second read is not the first's answer.
 */
const REFRESH_DELAY_MS = 300;
/** Reads of a row that still shows an older state than its last transition, before the page gives up. */
const MAX_STALE_READS = 8;
/** The ages shown move on with the clock, not with the API. */
const CLOCK_TICK_MS = 15_000;

type Live = 'connecting' | 'live' | 'reconnecting' | 'off';

export function JobsPage({ query }: PageProps) {
  const after = query.get('after') ?? undefined;
  const [rows, setRows] = useState<PipelineResponse[] | null>(null);
  const [hasMore, setHasMore] = useState(false);
  const [failure, setFailure] = useState<string | null>(null);
  const [live, setLive] = useState<Live>('connecting');
  // Rows are not memoised: each tick renders them again, with their ages.
  useTick(CLOCK_TICK_MS);
  /** The ids on the page, for the stream's handler (which outlives renders). */
  const shown = useRef(new Set<string>());

  useEffect(() => {
    const abort = new AbortController();
    let loads = 0;
    let loaded = false;
    const stale = new Set<string>();
    let refreshTimer: ReturnType<typeof setTimeout> | undefined;
    let reloadTimer: ReturnType<typeof setTimeout> | undefined;
    /** Each job's last transition seen: a read that shows an older state (a cached or overtaken answer) is not shown. */
    const latest = new Map<string, { state: JobState; generation: number }>();
    const staleReads = new Map<string, number>();

    /** Whether `row` is at least as new as the job's last transition; if not, it is read again. */
    function current(row: PipelineResponse): boolean {
      const last = latest.get(row.id);
      if (last === undefined || (row.job.state === last.state && row.job.run_id === last.generation)) {
        staleReads.delete(row.id);
        return true;
      }
      const reads = (staleReads.get(row.id) ?? 0) + 1;
      staleReads.set(row.id, reads);
      if (reads < MAX_STALE_READS) refreshSoon(row.id);
      return false;
    }

    const show = (next: PipelineResponse[]) => {
      shown.current = new Set(next.map((row) => row.id));
      // A row read before its last transition keeps the transition's state until it is read again.
      setRows(next.map((row) => (current(row) ? row : withState(row, latest.get(row.id)))));
    };

    function load(): void {
      const mine = ++loads;
      listPipelines({ limit: PAGE_SIZE, startingAfter: after }, abort.signal)
        .then((page) => {
          if (mine !== loads) return;
          loaded = true;
          show(page.data);
          setHasMore(page.has_more);
          setFailure(null);
        })
        .catch((err: unknown) => {
          if (!abort.signal.aborted && mine === loads) setFailure(messageOf(err));
        });
    }

    /** A new job on the first page, or a row gone: the page is read again (once per burst). */
    function reloadSoon(): void {
      clearTimeout(reloadTimer);
      reloadTimer = setTimeout(load, REFRESH_DELAY_MS);
    }

    function refreshSoon(id: string): void {
      stale.add(id);
      if (refreshTimer !== undefined) return;
      refreshTimer = setTimeout(() => {
        refreshTimer = undefined;
        const ids = [...stale];
        stale.clear();
        for (const rowId of ids) {
          getPipeline(rowId, abort.signal)
            .then((row) => {
              if (current(row)) setRows((rows) => rows?.map((r) => (r.id === row.id ? row : r)) ?? null);
            })
            .catch((err: unknown) => {
              if (err instanceof ApiError && err.status === 404) reloadSoon();
            });
        }
      }, REFRESH_DELAY_MS);
    }

    function onEvent(event: JobsEvent): void {
      switch (event.type) {
        case 'ready':
          // Every transition after this point reaches the page: read the list now, and nothing falls between.
          setLive('live');
          load();
          break;
        case 'transition': {
          const { job_id, to, generation } = event.data;
          latest.set(job_id, { state: to, generation });
          staleReads.delete(job_id);
          if (shown.current.has(job_id)) {
            setRows((rows) => rows?.map((r) => (r.id === job_id ? withState(r, { state: to, generation }) : r)) ?? null);
            refreshSoon(job_id);
          } else if (after === undefined) {
            reloadSoon();
          }
          break;
        }
        case 'deleted':
          if (shown.current.has(event.data.job_id)) reloadSoon();
          break;
        case 'dropped':
        case 'end':
          // The stream ends after these and reconnects by itself (`ready` again).
          setLive('reconnecting');
          break;
      }
    }

    setRows(null);
    setLive('connecting');
    const stream = followAllJobEvents({
      event: onEvent,
      error(err, retrying) {
        setLive(retrying ? 'reconnecting' : 'off');
        if (err instanceof ApiError && err.status === 401) {
          // The token prompt was cancelled: asking again at once would only reopen it.
          setFailure('The API needs its token: reload the page to enter it.');
          return;
        }
        // Without the stream the page still shows the list, just not live.
        if (!loaded) load();
        if (!retrying) setFailure(`Live updates stopped: ${err.message}`);
      },
    });
    return () => {
      abort.abort();
      stream.close();
      clearTimeout(refreshTimer);
      clearTimeout(reloadTimer);
    };
  }, [after]);

  const replace = (next: PipelineResponse) => setRows((current) => current?.map((row) => (row.id === next.id ? next : row)) ?? null);

  return (
    <section>
      <div class="page-head">
        <h1>Jobs</h1>
        <span class={`live live-${live}`} role="status">
          {LIVE_TEXT[live]}
        </span>
        <Link class="button" href="/create">
          Create a pipeline
        </Link>
      </div>
      {failure !== null && <p class="notice error">{failure}</p>}
      {rows === null && failure === null && <p class="muted">Loading…</p>}
      {rows !== null && rows.length === 0 && <p class="muted">{after === undefined ? 'No jobs yet.' : 'No older jobs.'}</p>}
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

const LIVE_TEXT: Record<Live, string> = {
  connecting: 'Connecting…',
  live: 'Live',
  reconnecting: 'Reconnecting…',
  off: 'Not live',
};

/** `row` with the state of a transition seen after it was read. */
function withState(row: PipelineResponse, last: { state: JobState; generation: number } | undefined): PipelineResponse {
  if (last === undefined) return row;
  return { ...row, job: { ...row.job, state: last.state, run_id: last.generation } };
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Renders again every `ms`: ages change with the clock, not with the data (nothing is fetched). */
function useTick(ms: number): void {
  const [, setTicks] = useState(0);
  useEffect(() => {
    const timer = setInterval(() => setTicks((n) => n + 1), ms);
    return () => clearInterval(timer);
  }, [ms]);
}

/** One job; `data-label`s name the cells where a phone shows the row as a card (style.css). */
function JobRow({ row, onChange }: { row: PipelineResponse; onChange: (next: PipelineResponse) => void }) {
  const job = row.job;
  return (
    <tr>
      <td class="name">
        <Link href={`/jobs/${encodeURIComponent(row.id)}`}>{row.name}</Link>
        <div class="muted small">
          <code>{row.id}</code>
        </div>
      </td>
      <td data-label="State">
        <StateBadge state={job.state} />
        {job.failure !== null && <div class="small failure">{job.failure.message}</div>}
      </td>
      <td data-label="Generation" class="num">
        {job.run_id}
      </td>
      <td data-label="Restarts" class="num">
        {job.restarts}
      </td>
      <td data-label="Age" title={timeOf(row.created_at)}>
        {ageOf(row.created_at)}
      </td>
      <td data-label="Last checkpoint">
        <LastCheckpoint id={row.id} state={job.state} generation={job.run_id} />
      </td>
      <td data-label="Action">
        <ActionButton row={row} onChange={onChange} />
      </td>
    </tr>
  );
}

/**
 * The newest checkpoint that is not in progress, read when the row appears and again when its job moves
 * (a stop or a restart takes one). Checkpoints between transitions are not streamed to lists.
 */
function LastCheckpoint({ id, state, generation }: { id: string; state: string; generation: number }) {
  const [newest, setNewest] = useState<{ epoch: number; status: string; start: number; end: number } | null | 'none' | 'unreadable'>(null);
  const first = useRef(true);
  useEffect(() => {
    const abort = new AbortController();
    const read = () =>
      listCheckpoints(id, {}, abort.signal)
        .then(({ data }) => {
          const found = data.find((c) => c.status !== 'inprogress');
          setNewest(found === undefined ? 'none' : { epoch: found.epoch, status: found.status, start: found.start_time, end: found.finish_time ?? found.start_time });
        })
        .catch(() => {
          if (!abort.signal.aborted) setNewest('unreadable');
        });
    // After a transition, wait out the API's read cache: the read before it may still be served.
    const timer = setTimeout(() => void read(), first.current ? 0 : REFRESH_DELAY_MS);
    first.current = false;
    return () => {
      clearTimeout(timer);
      abort.abort();
    };
  }, [id, state, generation]);
  if (newest === null) return <span class="muted">…</span>;
  if (newest === 'none') return <span class="muted">none yet</span>;
  if (newest === 'unreadable') return <span class="muted" title="The checkpoints could not be read">?</span>;
  return (
    <span title={`${newest.status}, started ${timeOf(newest.start)}`}>
      #{newest.epoch}, {ageOf(newest.end)} ago
    </span>
  );
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
