/**
 * How time reaches the job machine, which reads no clock itself (machines/job/time.ts): the events sent
 * to it are stamped with the time, the results of its invoked actors carry the time they settled, and its
 * XState clock announces every timer with a `clock.tick` just before XState delivers the timer's event.
 * `now` is read at each call (never captured), so that tests' fake clocks apply.
 */
import { fromPromise, type ActorOptions, type AnyActorLogic } from 'xstate';
import { Rejection, type JobEvent, type Settled, type UnstampedJobEvent } from '../../machines/job/types.js';

export type Now = () => number;

const wallClock: Now = () => Date.now();

/** `event`, stamped with the time it is sent. */
export function stamp(event: UnstampedJobEvent, now: Now = wallClock): JobEvent {
  return { ...event, at: now() };
}

/**
 * An invoked actor of the job machine: `run`'s result, or its rejection, with the time it settled. `run`
 * gets XState's signal, aborted when the machine leaves the state that invoked it: a promise cannot be
 * cancelled, so work that takes resources (a generation's slots) checks it and gives them back.
 */
export function settledActor<T, I>(run: (input: I, signal: AbortSignal) => Promise<T>, now: Now = wallClock) {
  return fromPromise<Settled<T>, I>(async ({ input, signal }) => {
    let value: T;
    try {
      value = await run(input, signal);
    } catch (error) {
      throw new Rejection(error, now());
    }
    return { value, at: now() };
  });
}

export type Clock = NonNullable<ActorOptions<AnyActorLogic>['clock']>;

/** The timers of the default XState clock: the global ones, looked up at each call (fake timers replace them). */
const globalTimers: Clock = {
  setTimeout: (fire: () => void, ms: number) => setTimeout(fire, ms),
  clearTimeout: (handle: ReturnType<typeof setTimeout>) => clearTimeout(handle),
};

interface Timer {
  handle: unknown;
  cancelled: boolean;
}

/**
 * An XState clock that calls `tick` (which sends the actor a stamped `clock.tick`) each time a timer fires,
 * just before XState delivers the timer's event: XState's timer events carry no time, and the machine
 * takes the tick's as theirs. Should the tick's step cancel the timer (an observer reacted with an event
 * that left the state), its event is not delivered, as it would not have been had the cancel come first.
 */
export function tickingClock(tick: () => void, timers: Clock = globalTimers): Clock {
  return {
    setTimeout(fire: () => void, ms: number): Timer {
      const timer: Timer = { handle: undefined, cancelled: false };
      timer.handle = timers.setTimeout(() => {
        tick();
        if (!timer.cancelled) fire();
      }, ms);
      return timer;
    },
    clearTimeout(timer: Timer) {
      timer.cancelled = true;
      timers.clearTimeout(timer.handle);
    },
  };
}
