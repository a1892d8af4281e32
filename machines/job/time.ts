import type { EventObject } from 'xstate';
import type { JobContext, Settled } from './types.js';
import { Rejection } from './types.js';

/*
 * The machine's clock. The machine reads no clock of its own: every decision that depends on time takes it
 * from the event being processed, so the same events always lead to the same decisions, whatever the
 * wall clock says. Where the time comes from:
 * - the runtime's events (`Timed`): stamped with `at` at its single send point;
 * - an invoked actor's result or rejection (`Settled`, `Rejection`): stamped when it settled;
 * - the raised `job.reconcile`: the time of the event that raised it;
 * - eventless transitions and entry actions: the event of the step they run in;
 * - XState's own timer events (`after`) carry nothing, so the actor's clock sends a `clock.tick` just
 *   before each one and the machine keeps its time in `context.tickedAt` (src/controller/job-time.ts);
 * - the init event: `context.tickedAt`, which starts at the creation time given in the input.
 */

function isSettled(value: unknown): value is Settled<unknown> {
  return typeof value === 'object' && value !== null && 'value' in value && typeof (value as { at?: unknown }).at === 'number';
}

/** The time (epoch ms) of `event`, which the machine is processing now. */
export function timeOf(context: JobContext, event: EventObject): number {
  if ('at' in event && typeof event.at === 'number') return event.at;
  if ('output' in event && isSettled(event.output)) return event.output.at;
  if ('error' in event && event.error instanceof Rejection) return event.error.at;
  return context.tickedAt;
}

/** A Node timer can fire a millisecond before the clock reaches its deadline; that still counts as on time. */
const TIMER_SLACK_MS = 2;

/** Whether `deadline` has passed at `now`. */
export function isDue(deadline: number | null, now: number): boolean {
  return deadline !== null && now + TIMER_SLACK_MS >= deadline;
}
