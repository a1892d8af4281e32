/**
 * What a user can do to the job: stop (in each mode), start, restart (safe or force, optionally from no
 * state), rescale, trigger a checkpoint, delete. Each control is disabled, with the reason shown beside
 * it and as its tooltip, when the job's state makes it pointless or the API would refuse it; the rules
 * (`rulesOf`) follow the API (routes/pipelines.ts, routes/checkpoints.ts: delete only at rest, a
 * checkpoint only while Running) and the statechart (what each state does with a stop, a start, a
 * restart request: docs/job-lifecycle.md). A failed request shows the API's message inline.
 */
import { useEffect, useRef, useState } from 'preact/hooks';
import { deletePipeline, restartPipeline, startPipeline, stopPipeline, patchPipeline, triggerCheckpoint } from '../../api.js';
import { navigate } from '../../router.js';
import type { JobState, PipelineResponse, StopMode } from '../../types.js';

export type StopChoice = Exclude<StopMode, 'none'>;

/** The stop modes, mildest first (the API's STOP_MODES without `none`), and what each does. */
export const STOP_CHOICES: ReadonlyArray<{ mode: StopChoice; text: string }> = [
  { mode: 'checkpoint', text: 'Takes a final checkpoint, then stops: the next start resumes exactly there.' },
  { mode: 'graceful', text: 'Stops the sources and lets in-flight records drain through the dataflow (no final checkpoint).' },
  { mode: 'immediate', text: 'Stops every task at once; the next start replays from the last checkpoint.' },
  { mode: 'force', text: 'Kills the tasks without waiting for them: for a stop that hangs.' },
];

const RANK: Record<StopMode, number> = { none: 0, checkpoint: 1, graceful: 2, immediate: 3, force: 4 };
const AT_REST: readonly JobState[] = ['Stopped', 'Finished', 'Failed'];

/** Why a control is disabled, or null when it is enabled. */
type Rule = string | null;

export interface ActionRules {
  stop(mode: StopChoice): Rule;
  /** A note on what the chosen stop does in this state (not a reason to disable it). */
  stopNote(mode: StopChoice): string | null;
  start: Rule;
  restart(force: boolean): Rule;
  rescale(parallelism: number): Rule;
  checkpoint: Rule;
  delete: Rule;
}

/** The rules for a job in `state` (the live one) with the pipeline `p`. */
export function rulesOf(p: PipelineResponse, state: JobState): ActionRules {
  const stop = p.stop;
  const runningDesired = stop === 'none';
  const hasTtl = p.ttl_micros !== null;
  return {
    stop(mode) {
      if (AT_REST.includes(state)) return `The job is ${state}: there is nothing to stop.`;
      if (state === 'Failing') return 'The job is failing: it cleans up and becomes Failed by itself.';
      if (state === 'Finishing' && mode !== 'force') return 'The job is finishing by itself: only a force stop interrupts it.';
      if (state === 'CheckpointStopping' && RANK[mode] < RANK.immediate) {
        return 'The job is already stopping with a final checkpoint: only immediate or force hurries it.';
      }
      if (!runningDesired && RANK[mode] <= RANK[stop]) return `A ${stop} stop is already under way: only a harder stop changes it.`;
      return null;
    },
    stopNote(mode) {
      if (state === 'Running' || mode === 'force' || mode === 'immediate' || AT_REST.includes(state)) return null;
      return `Outside Running there is no dataflow to drain: in ${state} a ${mode} stop stops immediately.`;
    },
    start: (() => {
      if (state === 'Finished') return 'Finished is final: the job cannot run again.';
      if (runningDesired) return state === 'Running' ? 'The job is running.' : `The job is already meant to run (it is ${state}).`;
      if (p.action !== 'none') return `The job is ${state}: it can start once it is Stopped.`;
      if (state === 'Stopped' && hasTtl) return 'A job with a TTL (a preview) never starts again.';
      return null;
    })(),
    restart(force) {
      switch (state) {
        case 'Running':
        case 'Created':
        case 'Compiling':
        case 'Scheduling':
        case 'Rescaling':
          return runningDesired ? null : 'The job is stopping.';
        case 'Failed':
          return runningDesired ? null : `Start it first: the job is meant to stay stopped (stop: ${stop}).`;
        case 'Restarting':
          return force ? null : 'The job is already restarting: check Force to skip its final checkpoint.';
        case 'Recovering':
          return 'The job is already restarting after a failure (Recovering).';
        case 'Stopped':
          return 'The job is Stopped: Start runs it again.';
        case 'Finished':
          return 'Finished is final: the job cannot run again.';
        case 'Finishing':
          return 'The job is finishing by itself.';
        case 'Failing':
          return 'The job is failing: restart it once it is Failed.';
        case 'Stopping':
        case 'CheckpointStopping':
          return 'The job is stopping: start it once it is Stopped.';
      }
    },
    rescale(parallelism) {
      if (state === 'Finished' || state === 'Finishing') return 'The job is finishing or finished: it never runs again.';
      if (!Number.isSafeInteger(parallelism) || parallelism < 1) return 'Enter a parallelism: a whole number, 1 or more.';
      if (p.parallelism === parallelism) return `Every operator already runs with parallelism ${parallelism}.`;
      return null;
    },
    checkpoint: state === 'Running' && runningDesired ? null : `Checkpoints can be triggered only while the job is Running (it is ${state}).`,
    delete: AT_REST.includes(state) ? null : `Only a Stopped, Finished or Failed job can be deleted (it is ${state}): stop it first.`,
  };
}

const messageOf = (err: unknown) => (err instanceof Error ? err.message : String(err));

type Outcome = { ok: true; text: string } | { ok: false; text: string };

/** A disabled control's reason, visible and tied to the control (`aria-describedby`). */
function Why({ id, rule, note }: { id: string; rule: Rule; note?: string | null }) {
  if (rule === null && (note === null || note === undefined)) return null;
  return (
    <p id={id} class={rule === null ? 'action-why small muted' : 'action-why small'}>
      {rule ?? note}
    </p>
  );
}

export interface JobActionsProps {
  id: string;
  pipeline: PipelineResponse;
  state: JobState;
  /** The API answers a change with the pipeline after it. */
  onPipeline: (pipeline: PipelineResponse) => void;
  /** After each action the API accepted (the page tells its panels: `JobPanelProps.changes`). */
  onChanged: () => void;
}

export function JobActions({ id, pipeline, state, onPipeline, onChanged }: JobActionsProps) {
  const rules = rulesOf(pipeline, state);
  const [mode, setMode] = useState<StopChoice>('checkpoint');
  const [force, setForce] = useState(false);
  const [ignoreState, setIgnoreState] = useState(false);
  const [parallelism, setParallelism] = useState(String(pipeline.parallelism ?? ''));
  const [busy, setBusy] = useState<string | null>(null);
  const [outcome, setOutcome] = useState<Outcome | null>(null);
  const dialog = useRef<HTMLDialogElement>(null);
  const [deleteError, setDeleteError] = useState<string | null>(null);

  // The field follows the job's parallelism until the user types another.
  const shared = pipeline.parallelism;
  useEffect(() => {
    if (shared !== null) setParallelism(String(shared));
  }, [shared]);

  async function run(what: string, action: () => Promise<string>): Promise<void> {
    setBusy(what);
    setOutcome(null);
    try {
      setOutcome({ ok: true, text: await action() });
      onChanged();
    } catch (err) {
      setOutcome({ ok: false, text: `${what} failed: ${messageOf(err)}` });
    } finally {
      setBusy(null);
    }
  }

  const wanted = Number(parallelism.trim() === '' ? Number.NaN : parallelism);
  const sending = busy === null ? null : `Sending ${busy.toLowerCase()}…`;
  const disabled = (rule: Rule) => busy !== null || rule !== null;
  const tip = (rule: Rule) => rule ?? sending ?? undefined;
  const stopRule = rules.stop(mode);
  const restartRule = rules.restart(force || ignoreState);
  const rescaleRule = rules.rescale(wanted);
  const modeText = STOP_CHOICES.find((choice) => choice.mode === mode)?.text ?? '';

  return (
    <section class="job-actions" aria-labelledby="job-actions-title">
      <h2 id="job-actions-title">Actions</h2>
      <p class="small muted">
        The API suggests: <strong class={pipeline.action_in_progress ? 'in-progress' : undefined}>{pipeline.action_text}</strong>
      </p>
      <div class="action-grid">
        <div class="action">
          <div class="action-row">
            <select aria-label="Stop mode" value={mode} onChange={(e) => setMode(e.currentTarget.value as StopChoice)} disabled={busy !== null}>
              {STOP_CHOICES.map((choice) => (
                <option key={choice.mode} value={choice.mode}>
                  {choice.mode}
                </option>
              ))}
            </select>
            <button
              type="button"
              disabled={disabled(stopRule)}
              title={tip(stopRule)}
              aria-describedby="action-stop-mode action-stop-why"
              onClick={() =>
                void run('Stop', async () => {
                  onPipeline(await stopPipeline(id, mode));
                  return `Stop (${mode}) sent.`;
                })
              }
            >
              Stop
            </button>
          </div>
          <p id="action-stop-mode" class="small muted">
            {mode}: {modeText}
          </p>
          <Why id="action-stop-why" rule={stopRule} note={rules.stopNote(mode)} />
        </div>

        <div class="action">
          <div class="action-row">
            <button
              type="button"
              disabled={disabled(rules.start)}
              title={tip(rules.start)}
              aria-describedby="action-start-why"
              onClick={() =>
                void run('Start', async () => {
                  onPipeline(await startPipeline(id));
                  return 'Start sent.';
                })
              }
            >
              Start
            </button>
          </div>
          <Why id="action-start-why" rule={rules.start} />
        </div>

        <div class="action">
          <div class="action-row">
            <label class="check">
              <input type="checkbox" checked={force} onChange={(e) => setForce(e.currentTarget.checked)} disabled={busy !== null} />
              Force
            </label>
            <label class="check">
              <input type="checkbox" checked={ignoreState} onChange={(e) => setIgnoreState(e.currentTarget.checked)} disabled={busy !== null} />
              Ignore state
            </label>
            <button
              type="button"
              disabled={disabled(restartRule)}
              title={tip(restartRule)}
              aria-describedby="action-restart-what action-restart-why"
              onClick={() =>
                void run('Restart', async () => {
                  onPipeline(await restartPipeline(id, { ...(force ? { force: true } : {}), ...(ignoreState ? { ignore_state: true } : {}) }));
                  return `Restart${force || ignoreState ? ' (force)' : ''}${ignoreState ? ' from no state' : ''} sent.`;
                })
              }
            >
              Restart
            </button>
          </div>
          <p id="action-restart-what" class="small muted">
            {ignoreState
              ? 'Ignore state: the new run starts from no state, without a final checkpoint (a force restart).'
              : force
                ? 'Force: tears the tasks down without a final checkpoint; the new run restores the last one.'
                : 'Safe: a final checkpoint first, then the new run resumes from it.'}
          </p>
          <Why id="action-restart-why" rule={restartRule} />
        </div>

        <div class="action">
          <div class="action-row">
            <input
              type="number"
              min="1"
              step="1"
              inputMode="numeric"
              aria-label="Parallelism"
              class="parallelism"
              value={parallelism}
              onInput={(e) => setParallelism(e.currentTarget.value)}
              disabled={busy !== null}
            />
            <button
              type="button"
              disabled={disabled(rescaleRule)}
              title={tip(rescaleRule)}
              aria-describedby="action-rescale-what action-rescale-why"
              onClick={() =>
                void run('Rescale', async () => {
                  onPipeline(await patchPipeline(id, { parallelism: wanted }));
                  return `Rescale to ${wanted} sent.`;
                })
              }
            >
              Rescale
            </button>
          </div>
          <p id="action-rescale-what" class="small muted">
            Every operator{' '}
            {state === 'Running' ? 'rescales now (a final checkpoint, then the new parallelism).' : 'runs with it from the next start.'}
            {pipeline.parallelism === null ? ' Operators differ now.' : ` Now ${pipeline.parallelism}.`}
          </p>
          <Why id="action-rescale-why" rule={rescaleRule} />
        </div>

        <div class="action">
          <div class="action-row">
            <button
              type="button"
              disabled={disabled(rules.checkpoint)}
              title={tip(rules.checkpoint)}
              aria-describedby="action-checkpoint-why"
              onClick={() =>
                void run('Trigger checkpoint', async () => {
                  const answer = await triggerCheckpoint(id);
                  return answer.started ? `Checkpoint ${answer.epoch} started.` : `Checkpoint ${answer.epoch} was already started.`;
                })
              }
            >
              Trigger checkpoint
            </button>
          </div>
          <Why id="action-checkpoint-why" rule={rules.checkpoint} />
        </div>

        <div class="action">
          <div class="action-row">
            <button
              type="button"
              class="danger"
              disabled={disabled(rules.delete)}
              title={tip(rules.delete)}
              aria-describedby="action-delete-why"
              onClick={() => {
                setDeleteError(null);
                dialog.current?.showModal();
              }}
            >
              Delete
            </button>
          </div>
          <Why id="action-delete-why" rule={rules.delete} />
        </div>
      </div>

      <div aria-live="polite">
        {outcome === null ? null : outcome.ok ? (
          <p class="notice small" role="status">
            {outcome.text}
          </p>
        ) : (
          <p class="notice error" role="alert">
            {outcome.text}
          </p>
        )}
      </div>

      <dialog ref={dialog} class="confirm-delete" aria-labelledby="confirm-delete-title" onClose={() => setDeleteError(null)}>
        <h2 id="confirm-delete-title">Delete this job?</h2>
        <p>
          <strong>{pipeline.name}</strong> (<code>{id}</code>) is {state}. Deleting it removes the pipeline, its job, its event log and its
          checkpoints. This cannot be undone.
        </p>
        {deleteError === null ? null : (
          <p class="notice error" role="alert">
            Delete failed: {deleteError}
          </p>
        )}
        <div class="actions">
          <button type="button" class="secondary" onClick={() => dialog.current?.close()}>
            Cancel
          </button>
          <button
            type="button"
            class="danger"
            disabled={busy !== null}
            onClick={() => {
              setBusy('Delete');
              deletePipeline(id)
                .then(() => {
                  dialog.current?.close();
                  navigate('/jobs');
                })
                .catch((err: unknown) => setDeleteError(messageOf(err)))
                .finally(() => setBusy(null));
            }}
          >
            Delete job
          </button>
        </div>
      </dialog>
    </section>
  );
}
