/**
 * The rows the job's preview sinks emit, live (`followJobOutput`), newest at the top. Only the last
 * DEFAULT_OUTPUT_CAPACITY rows are kept (output-buffer.ts); rows arriving faster than the screen redraws
 * are rendered once per animation frame, and those that were evicted before ever being shown are counted
 * as dropped, beside the ones the server says it dropped. The stream closes itself after `done` (every
 * preview subtask finished) or `end` (the job left Running); it is opened again for a new run.
 */
import { useEffect, useRef, useState } from 'preact/hooks';
import { followJobOutput, type EventStream } from '../../api.js';
import { DEFAULT_OUTPUT_CAPACITY, OutputBuffer, type OutputEntry } from './output-buffer.js';
import type { JobPanelProps } from './panel-props.js';

/** The operator of a preview sink (src/protocol/graph.ts, PREVIEW_OPERATOR: the console imports no server values). */
const PREVIEW_OPERATOR = 'preview';

type Status = { kind: 'idle' } | { kind: 'connecting' } | { kind: 'live' } | { kind: 'retrying'; message: string } | { kind: 'done' } | { kind: 'ended'; reason: string } | { kind: 'failed'; message: string };

export function OutputPanel({ id, job }: JobPanelProps) {
  const hasPreview = job.graph.nodes.some((node) => node.operator === PREVIEW_OPERATOR);
  const running = job.job.state === 'Running';
  const generation = job.job.run_id;
  const buffer = useRef(new OutputBuffer(DEFAULT_OUTPUT_CAPACITY));
  const [shown, setShown] = useState<OutputEntry[]>([]);
  const [dropped, setDropped] = useState({ server: 0, browser: 0, total: 0 });
  const [received, setReceived] = useState(0);
  const [status, setStatus] = useState<Status>({ kind: 'idle' });
  const [paused, setPaused] = useState(false);
  const [attempt, setAttempt] = useState(0);
  const pausedRef = useRef(paused);
  pausedRef.current = paused;
  const frame = useRef<number | undefined>(undefined);

  /** Redraws at most once per frame; a paused view keeps its rows but still counts what comes in. */
  const schedule = () => {
    if (frame.current !== undefined) return;
    frame.current = requestAnimationFrame(() => {
      frame.current = undefined;
      const b = buffer.current;
      if (!pausedRef.current) {
        setShown(b.entries().reverse());
        b.markShown();
      }
      setDropped(b.dropped);
      setReceived(b.received);
    });
  };

  // One stream per run: a new job, a new generation or "Follow again" closes the old one. It is opened
  // while the job is Running, and not closed when the job leaves Running: the last rows and `done` may
  // still come (the server ends the stream itself, with `end`, once they have).
  const stream = useRef<EventStream | null>(null);
  useEffect(
    () => () => {
      stream.current?.close();
      stream.current = null;
    },
    [id, generation, attempt, hasPreview],
  );
  useEffect(() => {
    if (!running || !hasPreview || stream.current !== null) return;
    setStatus({ kind: 'connecting' });
    stream.current = followJobOutput(id, {
      open: () => setStatus({ kind: 'live' }),
      event(event) {
        switch (event.type) {
          case 'output':
            buffer.current.push(event.data);
            break;
          case 'dropped':
            buffer.current.addServerDropped(event.data.count);
            break;
          case 'done':
            setStatus({ kind: 'done' });
            break;
          case 'end':
            setStatus({ kind: 'ended', reason: event.data.reason });
            break;
        }
        schedule();
      },
      error(err, retrying) {
        setStatus(retrying ? { kind: 'retrying', message: err.message } : { kind: 'failed', message: err.message });
      },
    });
  }, [id, generation, attempt, hasPreview, running]);

  useEffect(
    () => () => {
      if (frame.current !== undefined) cancelAnimationFrame(frame.current);
    },
    [],
  );

  const togglePause = () => {
    const next = !paused;
    setPaused(next);
    pausedRef.current = next;
    schedule();
  };
  const clear = () => {
    buffer.current.clear();
    setShown([]);
    setDropped(buffer.current.dropped);
    setReceived(0);
  };
  const canFollowAgain = running && hasPreview && (status.kind === 'failed' || status.kind === 'done' || status.kind === 'ended');

  return (
    <section class="panel output-panel" aria-labelledby="output-title">
      <div class="page-head">
        <h2 id="output-title">Output</h2>
        <div class="panel-controls">
          <button type="button" class="secondary" aria-pressed={paused} onClick={togglePause} disabled={received === 0 && !paused}>
            {paused ? 'Resume' : 'Pause'}
          </button>
          <button type="button" class="secondary" onClick={clear} disabled={received === 0}>
            Clear
          </button>
          {canFollowAgain && (
            <button type="button" class="secondary" onClick={() => setAttempt((n) => n + 1)}>
              Follow again
            </button>
          )}
        </div>
      </div>
      <p class="small output-status" role="status">
        <StatusText status={status} hasPreview={hasPreview} running={running} />
        {received > 0 && (
          <span class="muted">
            {' '}
            {received} rows received, the last {Math.min(received, DEFAULT_OUTPUT_CAPACITY)} kept{paused ? '; paused' : ''}.
          </span>
        )}
      </p>
      {dropped.total > 0 && (
        <p class="notice output-dropped" data-testid="output-dropped" title={`${dropped.server} by the server, ${dropped.browser} by this page`}>
          {dropped.total} {dropped.total === 1 ? 'row' : 'rows'} dropped
        </p>
      )}
      <div class="table-wrap output-scroll">
        <table class="output" data-testid="output">
          <thead>
            <tr>
              <th scope="col" class="num">
                #
              </th>
              <th scope="col">Sink</th>
              <th scope="col">Row</th>
            </tr>
          </thead>
          <tbody>
            {shown.length === 0 && (
              <tr>
                <td colSpan={3} class="muted">
                  No rows yet.
                </td>
              </tr>
            )}
            {shown.map((entry) => (
              <tr key={entry.seq} data-testid="output-row">
                <td class="num muted">{entry.seq}</td>
                <td class="nowrap">
                  <code>{entry.operatorId}</code>
                  <span class="muted small"> [{entry.subtask}]</span>
                </td>
                <td>
                  <code class="output-text">{entry.text}</code>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </section>
  );
}

function StatusText({ status, hasPreview, running }: { status: Status; hasPreview: boolean; running: boolean }) {
  if (!hasPreview) return <span class="muted">This pipeline has no preview sink (a node with operator "{PREVIEW_OPERATOR}"), so it has no output to show.</span>;
  switch (status.kind) {
    case 'idle':
      return <span class="muted">{running ? 'Not following.' : 'Output is streamed while the job is Running.'}</span>;
    case 'connecting':
      return <span class="in-progress">Connecting</span>;
    case 'live':
      return <span>Live.</span>;
    case 'retrying':
      return <span class="in-progress">Reconnecting ({status.message})</span>;
    case 'done':
      return <span>Done: every preview subtask has finished.</span>;
    case 'ended':
      return <span>Ended: {status.reason}.</span>;
    case 'failed':
      return <span class="error-text">Cannot follow the output: {status.message}</span>;
  }
}
