import { and, raise } from 'xstate';
import { generationOf, initialContext, jobSetup } from './setup.js';
import { RETRY_BUDGET } from './policy.js';
import { timeOf } from './time.js';
import type { CheckpointSchedule, JobContext } from './types.js';

/*
 * The job lifecycle: the 14 states of the reference design as top-level states, their mechanics
 * (retries, waits, the final checkpoint) as child states. Conventions:
 * - every wait is an `after` whose delay is computed from a deadline in context, so a restored actor
 *   resumes it (see `rearmTimers`);
 * - the machine reads no clock: the time of every decision comes from the event (see time.ts);
 * - a failure inside a state is fatal (→ Failing), retryable within a budget (→ the state's backoff,
 *   then the state again from scratch) or, once the budget is spent, a restart (→ Recovering);
 * - events that carry a generation are ignored unless they belong to the current one.
 */

function checkpointSchedule(context: JobContext): CheckpointSchedule {
  return { ...generationOf(context), intervalMs: context.config.checkpointIntervalMs, minEpoch: context.checkpoint.minEpoch };
}

/** StopR: how Running honours a stop request. */
const stopFromRunning = [
  { guard: { type: 'stopIs', params: { mode: 'checkpoint' } }, target: '#job.CheckpointStopping' },
  { guard: { type: 'stopIs', params: { mode: 'graceful' } }, target: '#job.Stopping.graceful' },
  { guard: { type: 'stopIs', params: { mode: 'immediate' } }, target: '#job.Stopping.immediate' },
  { guard: { type: 'stopIs', params: { mode: 'force' } }, target: '#job.Stopping.kill' },
] as const;

/** StopN: any other state has no consistent dataflow to drain, so every stop is immediate unless forced. */
const stopFromElsewhere = [
  { guard: { type: 'stopIs', params: { mode: 'force' } }, target: '#job.Stopping.kill' },
  { guard: 'stopRequested', target: '#job.Stopping.immediate' },
] as const;

/** What an invoked actor's rejection does: fail, retry after a backoff, or restart once the budget is spent. */
function onActorError(backoffState: string, budget: number) {
  return [
    { guard: 'errorIsFatal', target: '#job.Failing', actions: 'failFromError' },
    { guard: { type: 'errorExhaustsRetries', params: { budget } }, target: '#job.Recovering', reenter: true, actions: 'failFromError' },
    { target: backoffState, actions: 'countAttempt' },
  ] as const;
}

/** The same for a wait that ran out. */
function onTimeout(backoffState: string, budget: number, message: string) {
  return [
    {
      guard: { type: 'retriesExhausted', params: { budget } },
      target: '#job.Recovering',
      reenter: true,
      actions: { type: 'failWith', params: { message } },
    },
    { target: backoffState, actions: [{ type: 'countAttempt', params: { message } }, { type: 'warn', params: { message } }] },
  ] as const;
}

/** A task of the current generation failed: its retry hint decides between failing and restarting. */
/** How Running honours a changed deployment: restart, redeploy or rescale, in that order. */
function redeployReactions(apply: readonly ['applyConfig'] | readonly []) {
  return [
    { guard: 'restartRequested', target: '#job.Restarting', actions: [...apply, 'acceptRestart'] },
    { guard: 'redeployRequested', target: '#job.Restarting.safe', actions: [...apply, 'acceptRedeploy'] },
    { guard: 'rescaleRequested', target: '#job.Rescaling', actions: [...apply] },
  ] as const;
}

const taskFailure = [
  { guard: and(['isCurrent', 'failureIsFinal']), target: '#job.Failing', actions: 'failFromTask' },
  { guard: 'isCurrent', target: '#job.Recovering', actions: 'failFromTask' },
] as const;

/**
 * Rescaling, Restarting(safe) and CheckpointStopping end the run with a final checkpoint. The
 * checkpoint coordinator first waits for a periodic checkpoint still in flight (the reference's
 * Restarting(safe) could hang on one), so the state allows two checkpoint timeouts; the tasks' exit
 * after the checkpoint has a deadline of its own.
 */
function finalCheckpointStates(targets: { done: string; checkpointFailed: string; tasksStuck: string; label: string }) {
  return {
    checkpointing: {
      meta: { wait: 'final_checkpoint' },
      entry: { type: 'setWait', params: ({ context }: { context: JobContext }) => ({ ms: 2 * context.policy.checkpointTimeoutMs }) },
      invoke: {
        src: 'finalCheckpoint',
        input: ({ context }: { context: JobContext }) => generationOf(context),
        onDone: { target: 'awaitingTasks', actions: 'recordFinalCheckpoint' },
        onError: { target: targets.checkpointFailed, actions: { type: 'failFinalCheckpoint', params: { label: targets.label } } },
      },
      after: {
        WAIT: {
          target: targets.checkpointFailed,
          actions: { type: 'failWith', params: { message: `final checkpoint of ${targets.label} timed out` } },
        },
      },
    },
    awaitingTasks: {
      meta: { wait: 'tasks_stop_after_checkpoint' },
      entry: { type: 'setWait', params: ({ context }: { context: JobContext }) => ({ ms: context.policy.stopTimeoutMs }) },
      always: { guard: 'tasksFinished', target: targets.done },
      after: {
        WAIT: {
          target: targets.tasksStuck,
          actions: { type: 'warn', params: { message: `tasks did not stop after the final checkpoint of ${targets.label}` } },
        },
      },
    },
  } as const;
}

export const jobMachine = jobSetup.createMachine({
  id: 'job',
  context: ({ input }) => initialContext(input),
  initial: 'Created',
  on: {
    'config.update': { actions: 'applyConfig' },
    'job.resume': { actions: 'rearmTimers' },
    'clock.tick': { actions: 'advanceClock' },
  },
  states: {
    Created: {
      always: { target: 'Compiling' },
    },

    Compiling: {
      entry: ['resetRetry', 'syncRestartNonce'],
      initial: 'compiling',
      states: {
        compiling: {
          meta: { wait: 'compile' },
          entry: { type: 'setWait', params: ({ context }) => ({ ms: context.policy.compileTimeoutMs }) },
          invoke: {
            src: 'compileJob',
            input: ({ context }) => generationOf(context),
            onDone: { target: '#job.Scheduling' },
            onError: onActorError('#job.Compiling.backoff', RETRY_BUDGET.default),
          },
          after: { WAIT: onTimeout('#job.Compiling.backoff', RETRY_BUDGET.default, 'compiling timed out') },
        },
        backoff: { meta: { wait: 'retry' }, after: { BACKOFF: 'compiling' } },
      },
    },

    Scheduling: {
      entry: ['resetRetry', 'setWorkerStartupDeadline'],
      exit: 'clearWaits',
      always: stopFromElsewhere,
      initial: 'attempt',
      states: {
        attempt: {
          entry: 'newGeneration',
          on: {
            'task.failed': taskFailure,
            'worker.lost': { guard: 'isCurrent', target: '#job.Recovering', actions: 'failWorkerLost' },
          },
          initial: 'allocating',
          states: {
            allocating: {
              meta: { wait: 'start_generation' },
              invoke: {
                src: 'scheduleJob',
                input: ({ context }) => ({
                  ...generationOf(context),
                  parallelismOverrides: context.config.parallelismOverrides,
                  minEpoch: context.checkpoint.minEpoch,
                }),
                onDone: { target: 'starting', actions: 'assignParallelism' },
                onError: [
                  { guard: 'errorIsNotEnoughSlots', target: 'waitingForSlots', actions: 'noteProblem' },
                  ...onActorError('#job.Scheduling.backoff', RETRY_BUDGET.scheduler),
                ],
              },
              after: { WORKER_STARTUP: { target: '#job.Failing', actions: { type: 'failWith', params: { message: 'not enough slots' } } } },
            },
            waitingForSlots: {
              meta: { wait: 'slots' },
              entry: 'setSlotRetry',
              after: {
                WORKER_STARTUP: {
                  target: '#job.Failing',
                  actions: { type: 'failWith', params: { message: 'not enough slots before the worker startup timeout', domain: 'external' } },
                },
                BACKOFF: 'allocating',
              },
            },
            starting: {
              meta: { wait: 'tasks_start' },
              entry: { type: 'setWait', params: ({ context }) => ({ ms: context.policy.taskStartupTimeoutMs }) },
              on: { 'tasks.started': { guard: 'isCurrent', target: '#job.Running' } },
              after: { WAIT: onTimeout('#job.Scheduling.backoff', RETRY_BUDGET.startupTimeout, 'tasks did not start in time') },
            },
          },
        },
        backoff: { meta: { wait: 'retry' }, after: { BACKOFF: 'attempt' } },
      },
    },

    Running: {
      type: 'parallel',
      entry: [
        'enterRunning',
        { type: 'armCheckpoints', params: ({ context }) => checkpointSchedule(context) },
        raise(({ context, event }) => ({ type: 'job.reconcile' as const, at: timeOf(context, event) })),
      ],
      exit: ['leaveRunning', { type: 'disarmCheckpoints', params: ({ context }) => generationOf(context) }],
      on: {
        // Reactions are event-driven rather than eventless: Running sees thousands of events per
        // second across jobs, and eventless transitions would be re-checked in every region on each.
        'config.update': [
          ...stopFromRunning.map((t) => ({ ...t, actions: ['applyConfig'] as const })),
          ...redeployReactions(['applyConfig']),
          // Anything else applies live: the TTL timer re-arms, the coordinator re-bases the next checkpoint.
          // No target here: a transition of the parallel Running to one region's state re-enters every region
          // (a job reconciling after a takeover was sent back to polling, its tasks never adopted); the TTL
          // region re-arms itself on the raised event instead.
          {
            actions: [
              'applyConfig',
              { type: 'armCheckpoints', params: ({ context }) => checkpointSchedule(context) },
              raise(({ context, event }) => ({ type: 'ttl.rearm' as const, at: timeOf(context, event) })),
            ],
          },
        ],
        // A stop cannot be pending here (Scheduling honours it), but a restart or rescale asked for while starting can.
        'job.reconcile': redeployReactions([]),
        'task.failed': taskFailure,
        'worker.lost': { guard: 'isCurrent', target: 'Recovering', actions: 'failWorkerLost' },
        'source.finished': { guard: 'isCurrent', target: 'Finishing' },
        'tasks.finished': { guard: 'isCurrent', target: 'Finishing', actions: 'markTasksFinished' },
        'workers.heartbeat': { guard: 'isCurrent', actions: 'extendHeartbeat' },
      },
      states: {
        progress: {
          initial: 'polling',
          // A job restored as Running at a takeover: its tasks run on, and its new owner re-attaches to them.
          on: { 'job.adopt': '.reconciling' },
          states: {
            reconciling: {
              meta: { wait: 'reconcile' },
              entry: { type: 'setWait', params: ({ context }) => ({ ms: context.policy.taskStartupTimeoutMs }) },
              invoke: {
                src: 'adoptGeneration',
                input: ({ context }) => ({ ...generationOf(context), minEpoch: context.checkpoint.minEpoch }),
                onDone: {
                  target: 'polling',
                  actions: [
                    'enterRunning',
                    { type: 'armCheckpoints', params: ({ context }) => checkpointSchedule(context) },
                    raise(({ context, event }) => ({ type: 'job.reconcile' as const, at: timeOf(context, event) })),
                  ],
                },
                onError: [
                  // Nothing of the generation runs anywhere (weir was stopped as a whole): it starts again, as
                  // a stop and start would, without a failure or a restart counted.
                  { guard: 'errorIsTasksGone', target: '#job.Compiling' },
                  // Some tasks are missing: what is left is cleaned up and the job restarts.
                  { target: '#job.Recovering', actions: 'failFromError' },
                ],
              },
              after: {
                WAIT: { target: '#job.Recovering', actions: { type: 'failWith', params: { message: 'the tasks did not report in time after a takeover' } } },
              },
            },
            polling: {
              after: {
                PROGRESS: [
                  { guard: 'heartbeatExpired', target: '#job.Recovering', actions: 'failHeartbeat' },
                  { guard: 'healthyLongEnough', target: 'polling', reenter: true, actions: 'resetRestarts' },
                  { target: 'polling', reenter: true },
                ],
              },
            },
          },
        },
        logging: {
          initial: 'waiting',
          states: {
            waiting: {
              after: {
                LOG: {
                  target: 'waiting',
                  reenter: true,
                  actions: [
                    {
                      type: 'logStatus',
                      params: ({ context }) => ({ jobId: context.jobId, generation: context.generation, restarts: context.restarts }),
                    },
                    'scheduleNextLog',
                  ],
                },
              },
            },
          },
        },
        ttl: {
          initial: 'armed',
          on: { 'ttl.rearm': { target: '.armed' } },
          states: {
            // Without a TTL the timer sleeps for setTimeout's longest delay and re-arms: no guard runs per event.
            armed: {
              after: {
                TTL: [
                  {
                    guard: 'ttlExpired',
                    target: '#job.Stopping.immediate',
                    actions: { type: 'warn', params: { message: 'TTL expired: stopping' } },
                  },
                  { target: 'armed', reenter: true },
                ],
              },
            },
          },
        },
      },
    },

    Rescaling: {
      entry: ['resetRetry', 'resetFinalCheckpoint'],
      always: stopFromElsewhere,
      on: {
        'tasks.finished': { guard: 'isCurrent', actions: 'markTasksFinished' },
        'task.failed': { guard: 'isCurrent', target: 'Recovering', actions: 'failFromTask' },
        'worker.lost': { guard: 'isCurrent', target: 'Recovering', actions: 'failWorkerLost' },
      },
      initial: 'checkpointing',
      states: finalCheckpointStates({
        done: '#job.Scheduling',
        checkpointFailed: '#job.Recovering',
        tasksStuck: '#job.Restarting.force',
        label: 'the rescale',
      }),
    },

    Restarting: {
      entry: 'resetRetry',
      always: stopFromElsewhere,
      initial: 'safe',
      states: {
        safe: {
          entry: 'resetFinalCheckpoint',
          always: { guard: 'forceRestartRequested', target: 'force' },
          on: {
            'config.update': { actions: ['applyConfig', 'adoptForceRestart'] },
            'tasks.finished': { guard: 'isCurrent', actions: 'markTasksFinished' },
            'task.failed': { guard: 'isCurrent', target: '#job.Recovering', actions: 'failFromTask' },
            'worker.lost': { guard: 'isCurrent', target: '#job.Recovering', actions: 'failWorkerLost' },
          },
          initial: 'checkpointing',
          states: finalCheckpointStates({
            done: '#job.Scheduling',
            checkpointFailed: '#job.Recovering',
            tasksStuck: '#job.Restarting.force',
            label: 'the restart',
          }),
        },
        force: {
          initial: 'cleaning',
          states: {
            cleaning: {
              meta: { wait: 'cleanup' },
              entry: { type: 'setWait', params: ({ context }) => ({ ms: context.policy.cleanupTimeoutMs }) },
              invoke: {
                src: 'cleanupJob',
                input: ({ context }) => generationOf(context),
                onDone: { target: '#job.Scheduling' },
                onError: onActorError('#job.Restarting.force.backoff', RETRY_BUDGET.teardown),
              },
              after: { WAIT: onTimeout('#job.Restarting.force.backoff', RETRY_BUDGET.teardown, 'cleanup timed out') },
            },
            backoff: { meta: { wait: 'retry' }, after: { BACKOFF: 'cleaning' } },
          },
        },
      },
    },

    CheckpointStopping: {
      entry: ['resetRetry', 'resetFinalCheckpoint'],
      always: [
        { guard: { type: 'stopIs', params: { mode: 'immediate' } }, target: 'Stopping.immediate' },
        { guard: { type: 'stopIs', params: { mode: 'force' } }, target: 'Stopping.kill' },
      ],
      on: {
        'tasks.finished': { guard: 'isCurrent', actions: 'markTasksFinished' },
        'task.failed': {
          guard: 'isCurrent',
          target: 'Stopping.immediate',
          actions: { type: 'warn', params: { message: 'a task failed during the stop checkpoint' } },
        },
        'worker.lost': {
          guard: 'isCurrent',
          target: 'Stopping.immediate',
          actions: { type: 'warn', params: { message: 'a worker was lost during the stop checkpoint' } },
        },
      },
      initial: 'checkpointing',
      states: finalCheckpointStates({
        done: '#job.Stopped',
        checkpointFailed: '#job.Stopping.immediate',
        tasksStuck: '#job.Stopping.kill',
        label: 'the stop',
      }),
    },

    Recovering: {
      entry: ['resetRetry', 'countRestart'],
      always: [
        { guard: 'hasTtl', target: 'Failing', actions: 'failNoRestartsForTtl' },
        { guard: 'restartsExhausted', target: 'Failing', actions: 'failRestartsExhausted' },
        ...stopFromElsewhere,
      ],
      initial: 'backingOff',
      states: {
        backingOff: {
          meta: { wait: 'restart_backoff' },
          entry: 'setRestartBackoff',
          after: { BACKOFF: 'cleaning' },
        },
        cleaning: {
          meta: { wait: 'cleanup' },
          entry: { type: 'setWait', params: ({ context }) => ({ ms: context.policy.cleanupTimeoutMs }) },
          invoke: {
            src: 'cleanupJob',
            input: ({ context }) => generationOf(context),
            onDone: { target: '#job.Compiling' },
            onError: onActorError('#job.Recovering.backoff', RETRY_BUDGET.teardown),
          },
          after: { WAIT: onTimeout('#job.Recovering.backoff', RETRY_BUDGET.teardown, 'cleanup timed out') },
        },
        backoff: { meta: { wait: 'retry' }, after: { BACKOFF: 'cleaning' } },
      },
    },

    Stopping: {
      entry: 'resetRetry',
      on: {
        'tasks.finished': { guard: 'isCurrent', target: 'Stopped' },
      },
      initial: 'immediate',
      states: {
        graceful: {
          meta: { wait: 'stop' },
          entry: [
            { type: 'setStopKind', params: { kind: 'graceful' } },
            { type: 'setWait', params: ({ context }) => ({ ms: context.policy.stopTimeoutMs }) },
          ],
          always: [
            { guard: { type: 'stopIs', params: { mode: 'force' } }, target: 'kill' },
            { guard: { type: 'stopIs', params: { mode: 'immediate' } }, target: 'immediate' },
          ],
          invoke: {
            src: 'stopJob',
            input: ({ context }) => ({ ...generationOf(context), mode: 'graceful' as const }),
            onDone: { guard: 'nothingLeftRunning', target: '#job.Stopped' },
            onError: { target: 'kill', actions: { type: 'warn', params: { message: 'graceful stop failed: killing' } } },
          },
          after: { WAIT: { target: 'kill', actions: { type: 'warn', params: { message: 'graceful stop timed out: killing' } } } },
        },
        immediate: {
          meta: { wait: 'stop' },
          entry: [
            { type: 'setStopKind', params: { kind: 'immediate' } },
            { type: 'setWait', params: ({ context }) => ({ ms: context.policy.stopTimeoutMs }) },
          ],
          always: { guard: { type: 'stopIs', params: { mode: 'force' } }, target: 'kill' },
          invoke: {
            src: 'stopJob',
            input: ({ context }) => ({ ...generationOf(context), mode: 'immediate' as const }),
            onDone: { guard: 'nothingLeftRunning', target: '#job.Stopped' },
            onError: { target: 'kill', actions: { type: 'warn', params: { message: 'immediate stop failed: killing' } } },
          },
          after: { WAIT: { target: 'kill', actions: { type: 'warn', params: { message: 'immediate stop timed out: killing' } } } },
        },
        kill: {
          meta: { wait: 'kill' },
          entry: [
            { type: 'setStopKind', params: { kind: 'kill' } },
            { type: 'setWait', params: ({ context }) => ({ ms: context.policy.killTimeoutMs }) },
          ],
          invoke: {
            src: 'killJob',
            input: ({ context }) => generationOf(context),
            onDone: { target: '#job.Stopped' },
            onError: [
              { guard: { type: 'errorExhaustsRetries', params: { budget: RETRY_BUDGET.teardown } }, target: '#job.Stopped', actions: 'abandonGeneration' },
              { target: 'killBackoff', actions: 'countAttempt' },
            ],
          },
          after: {
            WAIT: [
              { guard: { type: 'retriesExhausted', params: { budget: RETRY_BUDGET.teardown } }, target: '#job.Stopped', actions: 'abandonGeneration' },
              {
                target: 'killBackoff',
                actions: [
                  { type: 'countAttempt', params: { message: 'killing the tasks timed out' } },
                  { type: 'warn', params: { message: 'killing the tasks timed out' } },
                ],
              },
            ],
          },
        },
        killBackoff: { meta: { wait: 'retry' }, after: { BACKOFF: 'kill' } },
      },
    },

    Finishing: {
      meta: { wait: 'finish' },
      entry: ['resetRetry', { type: 'setWait', params: ({ context }) => ({ ms: context.policy.finishTimeoutMs }) }],
      always: [
        { guard: 'tasksFinished', target: 'Finished' },
        { guard: { type: 'stopIs', params: { mode: 'force' } }, target: 'Stopping.kill' },
      ],
      on: {
        'tasks.finished': { guard: 'isCurrent', actions: 'markTasksFinished' },
        'task.failed': { guard: 'isCurrent', target: 'Recovering', actions: 'failFromTask' },
        'worker.lost': { guard: 'isCurrent', target: 'Recovering', actions: 'failWorkerLost' },
      },
      after: {
        WAIT: {
          target: 'Recovering',
          actions: { type: 'failWith', params: { message: 'tasks did not finish after the sources finished' } },
        },
      },
    },

    Finished: {
      type: 'final',
      entry: ['markFinished', { type: 'releaseGeneration', params: ({ context }) => generationOf(context) }],
    },

    Failing: {
      meta: { wait: 'cleanup' },
      entry: { type: 'setWait', params: ({ context }) => ({ ms: context.policy.cleanupTimeoutMs }) },
      invoke: {
        src: 'cleanupJob',
        input: ({ context }) => generationOf(context),
        onDone: { target: 'Failed' },
        onError: { target: 'Failed', actions: { type: 'warn', params: { message: 'cleanup of the failed job did not succeed' } } },
      },
      after: { WAIT: { target: 'Failed', actions: { type: 'warn', params: { message: 'cleanup of the failed job timed out' } } } },
    },

    Failed: {
      entry: ['markFinished', { type: 'releaseGeneration', params: ({ context }) => generationOf(context) }],
      always: { guard: 'restartRequested', target: 'Compiling', actions: ['clearFailure', 'resetRestarts'] },
    },

    Stopped: {
      entry: ['markFinished', { type: 'releaseGeneration', params: ({ context }) => generationOf(context) }],
      always: { guard: 'startRequested', target: 'Compiling' },
    },
  },
});

export type JobMachine = typeof jobMachine;
