import { vi } from 'vitest';
import { createActor } from 'xstate';
import type { Actor, SnapshotFrom } from 'xstate';
import { jobMachine } from '../../machines/job/machine.js';
import type { StopResult } from '../../machines/job/setup.js';
import type { AdoptInput, CheckpointSchedule, FinalCheckpointResult, GenerationInput, JobInput, JobState, ScheduleInput, ScheduleResult, StopInput, UnstampedJobEvent } from '../../machines/job/types.js';
import { settledActor, stamp, tickingClock } from '../../src/controller/job-time.js';

type Impl<I, O> = (input: I) => O | Promise<O>;

/** Test doubles for the machine's invoked actors; each defaults to an instant success. */
export interface DriverImpl {
  compileJob: Impl<GenerationInput, void>;
  scheduleJob: Impl<ScheduleInput, ScheduleResult>;
  stopJob: Impl<StopInput, StopResult>;
  killJob: Impl<GenerationInput, void>;
  cleanupJob: Impl<GenerationInput, void>;
  /** Default: completes at once with the next epoch (1, 2, …). */
  finalCheckpoint: Impl<GenerationInput, FinalCheckpointResult>;
  /** Default: the generation's tasks are adopted at once. */
  adoptGeneration: Impl<AdoptInput, void>;
}

export type Call =
  | { type: 'compileJob' | 'killJob' | 'cleanupJob' | 'releaseGeneration' | 'finalCheckpoint' | 'disarmCheckpoints'; input: GenerationInput }
  | { type: 'adoptGeneration'; input: AdoptInput }
  | { type: 'armCheckpoints'; input: CheckpointSchedule }
  | { type: 'scheduleJob'; input: ScheduleInput }
  | { type: 'stopJob'; input: StopInput }
  | { type: 'logStatus'; input: unknown };

export const DEFAULT_PARALLELISM = { source: 1, sink: 1 };

export function providedMachine(impl: Partial<DriverImpl> = {}, calls: Call[] = []) {
  const record = <T extends Call['type'], I>(type: T, input: I) => calls.push({ type, input } as Call);
  return jobMachine.provide({
    actors: {
      compileJob: settledActor<void, GenerationInput>(async (input) => {
        record('compileJob', input);
        await impl.compileJob?.(input);
      }),
      scheduleJob: settledActor<ScheduleResult, ScheduleInput>(async (input) => {
        record('scheduleJob', input);
        return impl.scheduleJob ? impl.scheduleJob(input) : { parallelism: { ...DEFAULT_PARALLELISM, ...input.parallelismOverrides } };
      }),
      stopJob: settledActor<StopResult, StopInput>(async (input) => {
        record('stopJob', input);
        return impl.stopJob ? impl.stopJob(input) : { finished: false };
      }),
      killJob: settledActor<void, GenerationInput>(async (input) => {
        record('killJob', input);
        await impl.killJob?.(input);
      }),
      cleanupJob: settledActor<void, GenerationInput>(async (input) => {
        record('cleanupJob', input);
        await impl.cleanupJob?.(input);
      }),
      finalCheckpoint: settledActor<FinalCheckpointResult, GenerationInput>(async (input) => {
        record('finalCheckpoint', input);
        return impl.finalCheckpoint ? impl.finalCheckpoint(input) : { epoch: calls.filter((c) => c.type === 'finalCheckpoint').length };
      }),
      adoptGeneration: settledActor<void, AdoptInput>(async (input) => {
        record('adoptGeneration', input);
        await impl.adoptGeneration?.(input);
      }),
    },
    actions: {
      armCheckpoints: (_, params) => record('armCheckpoints', params),
      disarmCheckpoints: (_, params) => record('disarmCheckpoints', params),
      logStatus: (_, params) => record('logStatus', params),
      releaseGeneration: (_, params) => record('releaseGeneration', params),
    },
  });
}

export type JobSnapshot = SnapshotFrom<typeof jobMachine>;

export function topState(snapshot: JobSnapshot): JobState {
  const value = snapshot.value;
  return (typeof value === 'string' ? value : Object.keys(value)[0]) as JobState;
}

/**
 * Drives one job actor under vitest's fake timers, as the job runtime does: events stamped with Date.now()
 * (faked), timers announced by clock ticks (src/controller/job-time.ts).
 */
export class JobDriver {
  readonly calls: Call[] = [];
  readonly states: JobState[] = [];
  readonly actor: Actor<ReturnType<typeof providedMachine>>;

  constructor(input: Partial<JobInput> = {}, impl: Partial<DriverImpl> = {}, snapshot?: unknown) {
    const machine = providedMachine(impl, this.calls);
    // Microsteps, not snapshots: a state entered and left within one macrostep must show in the path.
    const record = (s: JobSnapshot) => {
      const top = topState(s);
      if (this.states.at(-1) !== top) this.states.push(top);
    };
    this.actor = createActor(machine, {
      input: { jobId: 'job-1', seed: 7, createdAt: Date.now(), ...input },
      clock: tickingClock(() => this.send({ type: 'clock.tick' })),
      ...(snapshot ? { snapshot: snapshot as never } : {}),
      inspect: (ev) => {
        const isJob = ev.actorRef.sessionId === ev.rootId;
        if (isJob && (ev.type === '@xstate.microstep' || ev.type === '@xstate.snapshot')) record(ev.snapshot as JobSnapshot);
      },
    });
    this.actor.start();
  }

  get snapshot(): JobSnapshot {
    return this.actor.getSnapshot();
  }
  get state(): JobState {
    return topState(this.snapshot);
  }
  get context() {
    return this.snapshot.context;
  }
  matches(value: string): boolean {
    return this.snapshot.matches(value as never);
  }
  /** Sends `event` stamped with the time now. */
  send(event: UnstampedJobEvent): void {
    this.actor.send(stamp(event));
  }
  /** Sends an event of the current generation. */
  sendCurrent(event: Record<string, unknown> & { type: UnstampedJobEvent['type'] }): void {
    this.send({ ...event, generation: this.context.generation } as UnstampedJobEvent);
  }
  update(config: Partial<JobSnapshot['context']['config']>): void {
    this.send({ type: 'config.update', config: { ...this.context.config, ...config } });
  }
  async advance(ms: number): Promise<void> {
    await vi.advanceTimersByTimeAsync(ms);
  }
  async settle(): Promise<void> {
    await vi.advanceTimersByTimeAsync(0);
  }
  callsOf<T extends Call['type']>(type: T): (Call & { type: T })[] {
    return this.calls.filter((c): c is Call & { type: T } => c.type === type);
  }
  /** Created → Running, with the tasks reporting started. */
  async toRunning(): Promise<void> {
    await this.settle();
    this.sendCurrent({ type: 'tasks.started' });
    await this.settle();
  }
  stop(): void {
    this.actor.stop();
  }
}
