/**
 * The job page's live data: the pipeline (`GET /pipelines/:id`, read again after every event of the
 * job's stream), the job's transitions (the whole history from the event log on open, then each one as
 * it happens: the stream is opened with `Last-Event-ID: 0`), and its newest errors (to say why a
 * transition into Recovering or Failing happened). No polling: everything is reloaded on stream events.
 *
 * The history arrives as a burst on each (re)connection. While it does, the state shown stays where it
 * was (at first the pipeline's): the page does not walk through old states. Once the stream is quiet
 * for REPLAY_QUIET_MS, the newest transition decides, and from then on each live one at once.
 */
import { useEffect, useState } from 'preact/hooks';
import { ApiError, followJobEvents, getPipeline, listErrors, type EventStream, type FollowHandlers } from '../../api.js';
import type { ErrorRow, JobEvent, JobState, PipelineResponse, TransitionEventData } from '../../types.js';

/** A burst of transitions (a replayed history, Created → Compiling → Scheduling → Running) costs one read. */
const REFRESH_DELAY_MS = 150;
/** A failure's error row is appended just after its transition: read the errors a little later. */
const ERRORS_DELAY_MS = 400;
/** Reads again, at most this many times in a row, of a pipeline older than the newest transition (the API caches reads). */
const MAX_STALE_READS = 8;
/** A replay is over once no transition came for this long. */
const REPLAY_QUIET_MS = 300;
/** How many errors are read to explain failures. */
const ERRORS_LIMIT = 50;
/** The history kept in memory (newest); a job in a restart loop can have many more. */
export const MAX_TRANSITIONS = 1000;
/** Transitions into these states carry a failure (an error row follows them in the log). */
export const FAILURE_STATES: readonly JobState[] = ['Recovering', 'Failing'];

export type StreamStatus = 'connecting' | 'live' | 'reconnecting' | 'off';

export interface LoadFailure {
  status: number;
  message: string;
}

export interface JobLive {
  pipeline: PipelineResponse | null;
  /** Why the pipeline cannot be shown (404: no such job). */
  failure: LoadFailure | null;
  /** Oldest first, at most MAX_TRANSITIONS. */
  transitions: readonly TransitionEventData[];
  /** Transitions dropped from the front of `transitions`. */
  trimmed: number;
  /** Newest first. */
  errors: readonly ErrorRow[];
  stream: StreamStatus;
  /** Why the stream gave up, when `stream` is `off`. */
  streamError: string | null;
  /** The state the page shows: the newest transition's target once replayed, else the pipeline's. */
  state: JobState | null;
  /** The transition into `state` (null until the history has been replayed). */
  last: TransitionEventData | null;
  /** Transitions up to this sequence came with the history; later ones arrived live (null: still replaying). */
  replayedUpTo: number | null;
  /** Replace the pipeline with an action's answer (the API answers the pipeline after the change). */
  setPipeline: (pipeline: PipelineResponse) => void;
  /** Read everything again (after a failure). */
  reload: () => void;
}

const messageOf = (err: unknown) => (err instanceof Error ? err.message : String(err));

export function useJobLive(id: string): JobLive {
  const [pipeline, setPipeline] = useState<PipelineResponse | null>(null);
  const [failure, setFailure] = useState<LoadFailure | null>(null);
  const [history, setHistory] = useState<{ rows: TransitionEventData[]; trimmed: number }>({ rows: [], trimmed: 0 });
  const [errors, setErrors] = useState<ErrorRow[]>([]);
  const [stream, setStream] = useState<StreamStatus>('connecting');
  const [streamError, setStreamError] = useState<string | null>(null);
  const [attempt, setAttempt] = useState(0);
  const [current, setCurrent] = useState<TransitionEventData | null>(null);
  const [replayedUpTo, setReplayedUpTo] = useState<number | null>(null);

  useEffect(() => {
    const abort = new AbortController();
    let reads = 0;
    let staleReads = 0;
    let errorReads = 0;
    let refreshTimer: ReturnType<typeof setTimeout> | undefined;
    let errorsTimer: ReturnType<typeof setTimeout> | undefined;
    let lastSeq = 0;
    let newest: TransitionEventData | null = null;
    let replaying = true;
    let quietTimer: ReturnType<typeof setTimeout> | undefined;
    setPipeline(null);
    setCurrent(null);
    setReplayedUpTo(null);
    setFailure(null);
    setHistory({ rows: [], trimmed: 0 });
    setErrors([]);
    setStream('connecting');
    setStreamError(null);

    function refresh(): void {
      const mine = ++reads;
      getPipeline(id, abort.signal)
        .then((next) => {
          if (mine !== reads) return;
          setPipeline(next);
          setFailure(null);
          follow();
          // An answer from before the newest transition (the API's read cache, or a read that crossed it) is
          // read again: the actions offered follow the pipeline, and would stay those of the state before.
          if (!replaying && newest !== null && next.job.state !== newest.to && staleReads++ < MAX_STALE_READS) refreshSoon();
          else if (replaying || newest === null || next.job.state === newest.to) staleReads = 0;
        })
        .catch((err: unknown) => {
          if (abort.signal.aborted || mine !== reads) return;
          // A job deleted while shown is gone; any other failure leaves the last answer on screen.
          const status = err instanceof ApiError ? err.status : 0;
          if (status === 404) setPipeline(null);
          setFailure({ status, message: messageOf(err) });
        });
    }

    function refreshSoon(): void {
      if (refreshTimer !== undefined) return;
      refreshTimer = setTimeout(() => {
        refreshTimer = undefined;
        refresh();
      }, REFRESH_DELAY_MS);
    }

    function loadErrors(): void {
      const mine = ++errorReads;
      listErrors(id, { limit: ERRORS_LIMIT }, abort.signal)
        .then((page) => {
          if (mine === errorReads) setErrors(page.data);
        })
        .catch(() => {
          // Only an explanation of transitions: the errors panel says why errors cannot be read.
        });
    }

    function loadErrorsSoon(): void {
      clearTimeout(errorsTimer);
      errorsTimer = setTimeout(loadErrors, ERRORS_DELAY_MS);
    }

    /** Called on each (re)connection and each replayed transition: the replay ends once the stream is quiet. */
    function replayUntilQuiet(): void {
      replaying = true;
      clearTimeout(quietTimer);
      quietTimer = setTimeout(() => {
        replaying = false;
        setCurrent(newest);
        const upTo = lastSeq;
        setReplayedUpTo((seen) => seen ?? upTo);
      }, REPLAY_QUIET_MS);
    }

    let events: EventStream | undefined;

    /** Once the job is known to exist (an unknown id is one 404, not three). */
    function follow(): void {
      if (events !== undefined || abort.signal.aborted) return;
      loadErrors();
      events = followJobEvents(id, handlers, '0');
    }

    const handlers: FollowHandlers<JobEvent> = {
      event(event) {
        switch (event.type) {
          case 'state':
            refreshSoon();
            return;
          case 'transition': {
            const row = event.data;
            if (row.seq <= lastSeq) return;
            lastSeq = row.seq;
            newest = row;
            if (replaying) replayUntilQuiet();
            else setCurrent(row);
            setHistory((current) => {
              const rows = [...current.rows, row];
              const excess = rows.length - MAX_TRANSITIONS;
              return excess > 0 ? { rows: rows.slice(excess), trimmed: current.trimmed + excess } : { rows, trimmed: current.trimmed };
            });
            if (FAILURE_STATES.includes(row.to)) loadErrorsSoon();
            refreshSoon();
            return;
          }
          case 'dropped':
          case 'end':
            // The stream ends after these and connects again by itself, resuming after the last transition.
            setStream('reconnecting');
            return;
        }
      },
      open() {
        replayUntilQuiet();
        setStream('live');
        setStreamError(null);
        refreshSoon();
      },
      error(err, retrying) {
        if (abort.signal.aborted) return;
        setStream(retrying ? 'reconnecting' : 'off');
        if (!retrying) setStreamError(err.message);
      },
    };

    refresh();

    return () => {
      abort.abort();
      events?.close();
      clearTimeout(refreshTimer);
      clearTimeout(errorsTimer);
      clearTimeout(quietTimer);
    };
  }, [id, attempt]);

  return {
    pipeline,
    failure,
    transitions: history.rows,
    trimmed: history.trimmed,
    errors,
    stream,
    streamError,
    state: current?.to ?? pipeline?.job.state ?? null,
    last: current,
    replayedUpTo,
    setPipeline,
    reload: () => setAttempt((n) => n + 1),
  };
}
