/**
 * The job page (`/jobs/:id`, loaded on first visit): the header (name, state, generation, restarts, owner,
 * age, what the job waits for), the actions, the pipeline graph, the lifecycle statechart with the job's
 * state, the transition history, then the data panels (checkpoints, metrics, output, errors). Live without
 * polling: live.ts follows the job's event stream and reads the pipeline again on each event; every panel
 * gets that latest pipeline (`JobPanelProps`).
 */
import { useEffect, useState } from 'preact/hooks';
import { StateBadge } from '../../components/state-badge.js';
import { ageOf, timeOf } from '../../format.js';
import { Link, type PageProps } from '../../router.js';
import type { PipelineResponse } from '../../types.js';
import { JobActions } from './actions.js';
import { CheckpointsPanel } from './checkpoints.js';
import { ErrorsPanel } from './errors.js';
import { JobGraph } from './graph.js';
import { useJobLive, type JobLive, type StreamStatus } from './live.js';
import { MetricsPanel } from './metrics.js';
import { OutputPanel } from './output.js';
import { Statechart } from './statechart.js';
import { Transitions } from './transitions.js';

/** Ages move on with the clock, not with the API. */
const CLOCK_TICK_MS = 15_000;

const STREAM_TEXT: Record<StreamStatus, string> = {
  connecting: 'connecting…',
  live: 'live',
  reconnecting: 'reconnecting…',
  off: 'not live',
};

function useClock(ms: number): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(timer);
  }, [ms]);
  return now;
}

function Header({ id, pipeline, live, now }: { id: string; pipeline: PipelineResponse; live: JobLive; now: number }) {
  const { job } = pipeline;
  const state = live.state ?? job.state;
  return (
    <header class="job-head">
      <div class="page-head">
        <h1>
          {pipeline.name} <StateBadge state={state} />
        </h1>
        <span class={`live live-${live.stream}`} title={live.streamError ?? undefined}>
          {STREAM_TEXT[live.stream]}
        </span>
      </div>
      <dl class="job-facts">
        <div>
          <dt>Id</dt>
          <dd>
            <code>{id}</code>
          </dd>
        </div>
        <div>
          <dt>Generation</dt>
          <dd>{job.run_id}</dd>
        </div>
        <div>
          <dt>Restarts</dt>
          <dd>{job.restarts}</dd>
        </div>
        <div>
          <dt>Owner</dt>
          <dd>{job.owner === null ? <span class="muted">none (a takeover is under way)</span> : <code>{job.owner}</code>}</dd>
        </div>
        <div>
          <dt>Age</dt>
          <dd title={timeOf(pipeline.created_at)}>{ageOf(pipeline.created_at, now)}</dd>
        </div>
        {job.start_time === null ? null : (
          <div>
            <dt>Started</dt>
            <dd>{timeOf(job.start_time)}</dd>
          </div>
        )}
        {job.finish_time === null ? null : (
          <div>
            <dt>Ended</dt>
            <dd>{timeOf(job.finish_time)}</dd>
          </div>
        )}
      </dl>
      {job.waiting === null ? null : (
        <p class="notice small job-waiting">
          Waiting: {job.waiting.reason}
          {job.waiting.until === null ? '' : ` (until ${timeOf(job.waiting.until)})`}
        </p>
      )}
      {job.failure === null ? null : (
        <p class="notice error small job-failure">
          Failure ({job.failure.domain}): {job.failure.message}
        </p>
      )}
      {live.failure === null ? null : (
        <p class="notice error small" role="alert">
          Could not read the job again: {live.failure.message}{' '}
          <button type="button" class="secondary" onClick={live.reload}>
            Retry
          </button>
        </p>
      )}
    </header>
  );
}

export default function JobPage({ params }: PageProps) {
  const id = params['id'] ?? '';
  const live = useJobLive(id);
  const now = useClock(CLOCK_TICK_MS);
  const [showAll, setShowAll] = useState(false);
  const [changes, setChanges] = useState(0);
  const { pipeline, failure } = live;

  useEffect(() => {
    document.title = pipeline === null ? `Job ${id} · weir` : `${pipeline.name} · weir`;
  }, [id, pipeline?.name]);

  if (pipeline === null) {
    return (
      <section class="job-page">
        <p>
          <Link href="/jobs">← Jobs</Link>
        </p>
        {failure === null ? (
          <p class="muted" aria-busy="true">
            Loading job <code>{id}</code>…
          </p>
        ) : failure.status === 404 ? (
          <div class="notice error" role="alert">
            <h1>
              No job <code>{id}</code>
            </h1>
            <p>
              There is no job with this id (it may have been deleted). <Link href="/jobs">Back to the jobs</Link>.
            </p>
          </div>
        ) : (
          <div class="notice error" role="alert">
            <h1>
              Job <code>{id}</code>
            </h1>
            <p>Could not read the job: {failure.message}</p>
            <p>
              <button type="button" onClick={live.reload}>
                Retry
              </button>{' '}
              <Link href="/jobs">Back to the jobs</Link>
            </p>
          </div>
        )}
      </section>
    );
  }

  const state = live.state ?? pipeline.job.state;
  return (
    <section class="job-page">
      <p class="job-back">
        <Link href="/jobs">← Jobs</Link>
      </p>
      <Header id={id} pipeline={pipeline} live={live} now={now} />
      <JobActions id={id} pipeline={pipeline} state={state} onPipeline={live.setPipeline} onChanged={() => setChanges((n) => n + 1)} />
      <JobGraph pipeline={pipeline} />
      <Statechart state={state} last={live.last} />
      <Transitions
        transitions={live.transitions}
        trimmed={live.trimmed}
        replayedUpTo={live.replayedUpTo}
        errors={live.errors}
        showAll={showAll}
        onShowAll={() => setShowAll(true)}
      />
      <div class="job-panels">
        <CheckpointsPanel id={id} job={pipeline} changes={changes} />
        <MetricsPanel id={id} job={pipeline} changes={changes} />
        <OutputPanel id={id} job={pipeline} changes={changes} />
        <ErrorsPanel id={id} job={pipeline} changes={changes} />
      </div>
    </section>
  );
}
