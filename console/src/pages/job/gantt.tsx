/**
 * One checkpoint's timeline: the job's spans, then each operator's and its subtasks' spans, as bars on
 * one time axis (HTML, placed in percent by gantt-layout.ts), with the bytes each wrote. A table, so that
 * a screen reader reads it row by row; on a phone it scrolls sideways with the names kept in view.
 */
import { useEffect, useState } from 'preact/hooks';
import { getCheckpointDetails } from '../../api.js';
import { bytesOf, timeOf } from '../../format.js';
import type { OperatorCheckpointGroupList } from '../../types.js';
import { durationLabel, eventClass, layoutCheckpoint, type Checkpoint, type GanttBar } from './gantt-layout.js';

type Groups = OperatorCheckpointGroupList['data'];

export interface CheckpointTimelineProps {
  id: string;
  /** The checkpoint from the history (its job spans); its details are loaded here. */
  checkpoint: Checkpoint;
  onClose?: () => void;
}

export function CheckpointTimeline({ id, checkpoint, onClose }: CheckpointTimelineProps) {
  const [groups, setGroups] = useState<Groups | null>(null);
  const [failure, setFailure] = useState<string | null>(null);
  const [tick, setTick] = useState(0);
  const { epoch, status, finish_time: finishTime } = checkpoint;

  // Loaded again when the history shows the checkpoint changed (a status, a finish) or on Reload.
  useEffect(() => {
    const abort = new AbortController();
    setFailure(null);
    getCheckpointDetails(id, epoch, abort.signal)
      .then(({ data }) => setGroups(data))
      .catch((err: unknown) => {
        if (!abort.signal.aborted) setFailure(err instanceof Error ? err.message : String(err));
      });
    return () => abort.abort();
  }, [id, epoch, status, finishTime, tick]);

  const layout = groups === null ? null : layoutCheckpoint(checkpoint, groups, Date.now() * 1000);
  const duration = checkpoint.finish_time === null ? null : checkpoint.finish_time - checkpoint.start_time;

  return (
    <section class="gantt" data-testid="checkpoint-timeline" data-epoch={String(epoch)} aria-labelledby={`gantt-title-${epoch}`}>
      <div class="page-head">
        <h3 id={`gantt-title-${epoch}`}>Checkpoint {epoch}</h3>
        <div class="gantt-actions">
          <button type="button" class="secondary" onClick={() => setTick((n) => n + 1)}>
            Reload
          </button>
          {onClose !== undefined && (
            <button type="button" class="secondary" onClick={onClose}>
              Close
            </button>
          )}
        </div>
      </div>
      <p class="muted small">
        {checkpoint.checkpoint_type}, {checkpoint.status}, started {timeOf(checkpoint.start_time)}
        {duration !== null ? `, took ${durationLabel(duration)}` : ', still running'}, {bytesOf(checkpoint.bytes)}
        {checkpoint.failure !== null && ` — ${checkpoint.failure}`}
      </p>
      {failure !== null && <p class="notice error">{failure}</p>}
      {layout === null && failure === null && <p class="muted">Loading…</p>}
      {layout !== null && (
        <>
          <ul class="gantt-legend" aria-label="Spans">
            {layout.events.map((event) => (
              <li key={event}>
                <span class={`gantt-swatch ${eventClass(event)}`} aria-hidden="true" />
                {event}
              </li>
            ))}
          </ul>
          <div class="table-wrap gantt-scroll">
            <table class="gantt-table">
              <thead>
                <tr>
                  <th scope="col" class="gantt-name">
                    Span
                  </th>
                  <th scope="col" class="num gantt-bytes">
                    Bytes
                  </th>
                  <th scope="col" class="gantt-track">
                    <span class="visually-hidden">Time from the start</span>
                    <span class="gantt-ticks" aria-hidden="true">
                      {layout.ticks.map((t) => (
                        <span key={t.offset} class="gantt-tick" style={{ left: `${t.left}%` }}>
                          {t.label}
                        </span>
                      ))}
                    </span>
                  </th>
                </tr>
              </thead>
              <tbody>
                {layout.rows.map((row) => (
                  <tr key={row.key} class={`gantt-${row.level}`}>
                    <th scope="row" class="gantt-name">
                      {row.label}
                      {row.detail !== null && <span class="muted small"> {row.detail}</span>}
                    </th>
                    <td class="num gantt-bytes">{row.bytes === null ? '' : bytesOf(row.bytes)}</td>
                    <td class="gantt-track">
                      <span class="gantt-lane">
                        {layout.ticks.map((t) => (
                          <span key={t.offset} class="gantt-gridline" style={{ left: `${t.left}%` }} aria-hidden="true" />
                        ))}
                        {row.bars.length === 0 && <span class="muted small gantt-empty">no spans</span>}
                        {row.bars.map((bar) => (
                          <Bar key={`${bar.event}:${bar.start}`} bar={bar} origin={layout.start} />
                        ))}
                      </span>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </>
      )}
    </section>
  );
}

function Bar({ bar, origin }: { bar: GanttBar; origin: number }) {
  const text = `${bar.event}: from +${durationLabel(bar.start - origin)}, ${bar.open ? 'running for' : 'took'} ${durationLabel(bar.finish - bar.start)}`;
  return (
    <span
      class={`gantt-bar ${eventClass(bar.event)}${bar.open ? ' gantt-open' : ''}`}
      style={{ left: `${bar.left}%`, width: `${bar.width}%` }}
      title={bar.description === '' ? text : `${text} (${bar.description})`}
    >
      <span class="visually-hidden">{text}</span>
    </span>
  );
}
