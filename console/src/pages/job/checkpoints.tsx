/**
 * The job's checkpoint history, newest first (failed ones on request), and the timeline of the one
 * selected (`?checkpoint=<epoch>`, so a link or a reload keeps it).
 *
 * When it reloads: the API has no event for checkpoints, so the list is read again whenever the job page
 * hands down a new state or generation (it follows the job's events and refetches the pipeline on each:
 * panel-props.ts; a second event stream per panel would spend the browser's six connections per origin),
 * on Refresh, after "Checkpoint now", and, while a checkpoint shown is still in progress, a few times more
 * with growing delays while the page is visible (2, 4, 8, 16 s, then no more until something else
 * reloads), so that one which finishes does not stay "inprogress" on screen. That is a bounded follow-up,
 * not a polling loop.
 */
import { useEffect, useRef, useState } from 'preact/hooks';
import { listCheckpoints, triggerCheckpoint } from '../../api.js';
import { showError } from '../../components/error-banner.js';
import { ageOf, bytesOf, timeOf } from '../../format.js';
import { navigate, useLocation } from '../../router.js';
import { CheckpointTimeline } from './gantt.js';
import { durationLabel, type Checkpoint } from './gantt-layout.js';
import type { JobPanelProps } from './panel-props.js';

const QUERY_KEY = 'checkpoint';
const FOLLOW_UP_DELAYS_MS = [2_000, 4_000, 8_000, 16_000];
const UNSETTLED: ReadonlySet<Checkpoint['status']> = new Set(['inprogress', 'committing']);

const STATUS_TONES: Record<Checkpoint['status'], string> = {
  inprogress: 'tone-busy',
  committing: 'tone-busy',
  ready: 'tone-running',
  failed: 'tone-failed',
  compacting: 'tone-stopped',
  compacted: 'tone-stopped',
};

export function CheckpointsPanel({ id, job, changes }: JobPanelProps) {
  const { path, query } = useLocation();
  const selectedParam = query.get(QUERY_KEY);
  const selected = selectedParam !== null && /^[0-9]+$/.test(selectedParam) ? Number(selectedParam) : null;
  const [rows, setRows] = useState<Checkpoint[] | null>(null);
  const [failure, setFailure] = useState<string | null>(null);
  const [includeFailed, setIncludeFailed] = useState(false);
  const [tick, setTick] = useState(0);
  const [triggering, setTriggering] = useState(false);
  const followUps = useRef(0);
  const state = job.job.state;
  const generation = job.job.run_id;

  useEffect(() => {
    const abort = new AbortController();
    listCheckpoints(id, { includeFailed }, abort.signal)
      .then(({ data }) => {
        setRows(data);
        setFailure(null);
      })
      .catch((err: unknown) => {
        if (!abort.signal.aborted) setFailure(err instanceof Error ? err.message : String(err));
      });
    return () => abort.abort();
    // `changes`: an action of the page (a checkpoint triggered there) changed the history without a state event.
  }, [id, includeFailed, state, generation, tick, changes]);

  // Something other than a follow-up reloaded: a new round of follow-ups may start.
  const reload = () => {
    followUps.current = 0;
    setTick((n) => n + 1);
  };
  useEffect(() => {
    followUps.current = 0;
  }, [id, includeFailed, state, generation, changes]);

  const unsettled = rows?.some((c) => UNSETTLED.has(c.status)) ?? false;
  useEffect(() => {
    if (!unsettled) {
      followUps.current = 0;
      return;
    }
    const delay = FOLLOW_UP_DELAYS_MS[followUps.current];
    if (delay === undefined) return;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const arm = () => {
      if (timer !== undefined || document.visibilityState !== 'visible') return;
      timer = setTimeout(() => {
        followUps.current++;
        setTick((n) => n + 1);
      }, delay);
    };
    arm();
    document.addEventListener('visibilitychange', arm);
    return () => {
      clearTimeout(timer);
      document.removeEventListener('visibilitychange', arm);
    };
  }, [unsettled, rows]);

  const select = (epoch: number | null) => {
    const next = new URLSearchParams(query);
    if (epoch === null) next.delete(QUERY_KEY);
    else next.set(QUERY_KEY, String(epoch));
    const search = next.toString();
    navigate(search === '' ? path : `${path}?${search}`, { replace: true });
  };

  const checkpointNow = () => {
    setTriggering(true);
    triggerCheckpoint(id)
      .then(({ epoch }) => {
        reload();
        select(epoch);
      })
      .catch(showError)
      .finally(() => setTriggering(false));
  };

  const selectedRow = selected === null ? undefined : rows?.find((c) => c.epoch === selected);

  return (
    <section class="panel checkpoints-panel" aria-labelledby="checkpoints-title">
      <div class="page-head">
        <h2 id="checkpoints-title">Checkpoints</h2>
        <div class="panel-controls">
          <label class="inline">
            <input type="checkbox" checked={includeFailed} onChange={(e) => setIncludeFailed(e.currentTarget.checked)} />
            Show failed
          </label>
          <button type="button" class="secondary" onClick={reload}>
            Refresh
          </button>
          {state === 'Running' && (
            <button type="button" class={triggering ? 'in-progress' : undefined} disabled={triggering} aria-busy={triggering} onClick={checkpointNow}>
              Checkpoint now
            </button>
          )}
        </div>
      </div>
      {failure !== null && <p class="notice error">{failure}</p>}
      {rows === null && failure === null && <p class="muted">Loading…</p>}
      {rows !== null && rows.length === 0 && <p class="muted">No checkpoints{includeFailed ? '' : ' (failed ones are hidden)'}.</p>}
      {rows !== null && rows.length > 0 && (
        <div class="table-wrap">
          <table class="checkpoints" data-testid="checkpoints">
            <thead>
              <tr>
                <th scope="col" class="num">
                  Epoch
                </th>
                <th scope="col">Kind</th>
                <th scope="col">Status</th>
                <th scope="col">Started</th>
                <th scope="col" class="num">
                  Duration
                </th>
                <th scope="col" class="num">
                  Bytes
                </th>
              </tr>
            </thead>
            <tbody>
              {rows.map((c) => (
                <tr key={c.epoch} class={c.epoch === selected ? 'selected' : undefined}>
                  <td class="num">
                    <button
                      type="button"
                      class="link"
                      aria-label={`Checkpoint ${c.epoch}`}
                      aria-pressed={c.epoch === selected}
                      onClick={() => select(c.epoch === selected ? null : c.epoch)}
                    >
                      {c.epoch}
                    </button>
                  </td>
                  <td>{c.checkpoint_type}</td>
                  <td>
                    <span class={`badge ${STATUS_TONES[c.status]}`}>{c.status}</span>
                    {c.failure !== null && <div class="small checkpoint-failure">{c.failure}</div>}
                  </td>
                  <td title={timeOf(c.start_time)}>{ageOf(c.start_time)} ago</td>
                  <td class="num">{c.finish_time === null ? <span class="in-progress">running</span> : durationLabel(c.finish_time - c.start_time)}</td>
                  <td class="num">{bytesOf(c.bytes)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {selected !== null && rows !== null && selectedRow === undefined && (
        <p class="notice">
          Checkpoint {selected} is not in this list{includeFailed ? '' : ' (it may have failed: tick "Show failed")'}.{' '}
          <button type="button" class="secondary" onClick={() => select(null)}>
            Close
          </button>
        </p>
      )}
      {selectedRow !== undefined && <CheckpointTimeline key={selectedRow.epoch} id={id} checkpoint={selectedRow} onClose={() => select(null)} />}
    </section>
  );
}
