import type { Deadlines, JobContext, JobState, JobStateMeta, JobWait, WaitKind } from './types.js';

/** The deadline that bounds each kind of wait: when it runs out, the state's fallback transition is taken. */
export const DEADLINE_OF: Record<WaitKind, keyof Deadlines> = {
  compile: 'wait',
  start_generation: 'workerStartup',
  slots: 'workerStartup',
  tasks_start: 'wait',
  retry: 'backoff',
  final_checkpoint: 'wait',
  tasks_stop_after_checkpoint: 'wait',
  cleanup: 'wait',
  restart_backoff: 'backoff',
  stop: 'wait',
  kill: 'wait',
  finish: 'wait',
  reconcile: 'wait',
};

const FINAL_CHECKPOINT_OF: Partial<Record<JobState, string>> = { Rescaling: 'rescale', Restarting: 'restart', CheckpointStopping: 'stop' };

function reasonOf(kind: WaitKind, context: JobContext, state: JobState): string {
  const generation = `generation ${context.generation}`;
  switch (kind) {
    case 'compile':
      return 'compiling the pipeline';
    case 'start_generation':
      return `starting ${generation} on the workers`;
    case 'slots':
      return `waiting for slots: ${context.retry.problem ?? 'none free'}`;
    case 'tasks_start':
      return `waiting for the tasks of ${generation} to start`;
    case 'retry':
      return `retry ${context.retry.attempts} after: ${context.retry.problem ?? 'a failed attempt'}`;
    case 'final_checkpoint':
      return `taking the final checkpoint of the ${FINAL_CHECKPOINT_OF[state] ?? 'run'}`;
    case 'tasks_stop_after_checkpoint':
      return `waiting for the tasks of ${generation} to stop after the final checkpoint`;
    case 'cleanup':
      return `stopping what is left of ${generation}`;
    case 'restart_backoff':
      return `restart ${context.restarts} after: ${context.failure?.message ?? 'a failure'}`;
    case 'stop':
      return `waiting for the tasks of ${generation} to stop (${context.stopKind ?? 'immediate'})`;
    case 'kill':
      return `killing the tasks of ${generation}`;
    case 'finish':
      return `waiting for the tasks of ${generation} to finish after its sources did`;
    case 'reconcile':
      return `re-attaching to the running tasks of ${generation} after a takeover`;
  }
}

/** The part of a job actor's snapshot `waitOf` reads. */
export interface WaitingSnapshot {
  context: JobContext;
  value: unknown;
  getMeta(): Record<string, JobStateMeta | undefined>;
}

/**
 * Why the job waits now and until when, from the wait its active state declares (`JobStateMeta`); null
 * when it does not wait: Running, and the states it rests in until a user acts.
 */
export function waitOf(snapshot: WaitingSnapshot): JobWait | null {
  for (const meta of Object.values(snapshot.getMeta())) {
    const kind = meta?.wait;
    if (kind === undefined) continue;
    const state = (typeof snapshot.value === 'string' ? snapshot.value : Object.keys(snapshot.value as object)[0]) as JobState;
    return { kind, reason: reasonOf(kind, snapshot.context, state), until: snapshot.context.deadlines[DEADLINE_OF[kind]] };
  }
  return null;
}
