import { getStateNodes } from 'xstate';
import type { AnyMachineSnapshot, AnyStateNode, AnyTransitionDefinition, StateValue } from 'xstate';

/*
 * One walk over a statechart, through XState's public API (`StateNode.states`, `.transitions`,
 * `.always`, `.after`, `.invoke`; `getStateNodes`), for everything that looks at the machine's shape:
 * the lifecycle diagram (scripts/diagram.ts), the transition-coverage test and the re-arming of timers
 * after a restore (setup.ts, `rearmTimers`).
 */

export type TransitionKind = 'event' | 'always' | 'after' | 'done' | 'error' | 'snapshot' | 'stateDone';

/** One transition of a machine. */
export interface MachineTransition {
  /** XState's own definition: the very object `@xstate.microstep` inspection events list when it is taken. */
  definition: AnyTransitionDefinition;
  source: AnyStateNode;
  kind: TransitionKind;
  /** The event type it handles, as XState names it ('' for `always`). */
  eventType: string;
  /** `after`: the delay, a name from setup's `delays` or ms. */
  delay: string | number | undefined;
  /** `done`, `error`, `snapshot`: the invoke whose result it handles. */
  invoke: { id: string; src: string } | undefined;
  targets: AnyStateNode[];
  reenter: boolean;
}

/** A timer a state arms on entry (an `after` delay): the event it raises, and after which delay. */
export interface StateTimer {
  eventType: string;
  delay: string | number;
}

/** Every state node below `root`, depth first in definition order. */
export function stateNodesOf(root: AnyStateNode): AnyStateNode[] {
  return Object.values(root.states).flatMap((child) => [child, ...stateNodesOf(child)]);
}

/** The name an invoke is known by: its `src` when that names an actor from setup, else its id. */
function invokeName(invoke: AnyStateNode['invoke'][number]): string {
  return typeof invoke.src === 'string' && !invoke.src.startsWith('xstate.invoke.') ? invoke.src : invoke.id;
}

/**
 * What a transition of `node` reacts to. The event types of invoke results and of a compound state's
 * completion are XState's documented `xstate.done.actor.<id>`, `xstate.error.actor.<id>`,
 * `xstate.snapshot.<id>` and `xstate.done.state.<id>`.
 */
function classify(node: AnyStateNode, t: AnyTransitionDefinition, delayed: Set<AnyTransitionDefinition>): Pick<MachineTransition, 'kind' | 'invoke'> {
  if (delayed.has(t)) return { kind: 'after', invoke: undefined };
  if (t.eventType === `xstate.done.state.${node.id}`) return { kind: 'stateDone', invoke: undefined };
  for (const def of node.invoke) {
    const invoke = { id: def.id, src: invokeName(def) };
    if (t.eventType === `xstate.done.actor.${def.id}`) return { kind: 'done', invoke };
    if (t.eventType === `xstate.error.actor.${def.id}`) return { kind: 'error', invoke };
    if (t.eventType === `xstate.snapshot.${def.id}`) return { kind: 'snapshot', invoke };
  }
  return { kind: 'event', invoke: undefined };
}

/** The transitions of one state node: its `transitions` map in XState's order (`on`, `onDone`, invokes, `after`), then `always`. */
export function transitionsOfNode(node: AnyStateNode): MachineTransition[] {
  const delays = new Map(node.after.map((t) => [t as AnyTransitionDefinition, t.delay]));
  const delayed = new Set(delays.keys());
  const result: MachineTransition[] = [];
  for (const t of [...node.transitions.values()].flat()) {
    const delay = delays.get(t);
    if (typeof delay === 'function') throw new Error(`${node.id}: an inline delay expression cannot be introspected; name it in setup's delays`);
    const eventType = String(t.eventType);
    result.push({ definition: t, source: node, ...classify(node, t, delayed), eventType, delay, targets: [...(t.target ?? [])], reenter: t.reenter });
  }
  for (const t of node.always ?? []) {
    result.push({ definition: t, source: node, kind: 'always', eventType: '', delay: undefined, invoke: undefined, targets: [...(t.target ?? [])], reenter: t.reenter });
  }
  return result;
}

/** Every transition of the machine under `root`: the root's first, then each state's, depth first in definition order. */
export function transitionsOf(root: AnyStateNode): MachineTransition[] {
  return [root, ...stateNodesOf(root)].flatMap(transitionsOfNode);
}

/** The state nodes active in `snapshot` (the root included), each once. */
export function activeStateNodes(snapshot: AnyMachineSnapshot): AnyStateNode[] {
  return [...new Set(getStateNodes(snapshot.machine.root, snapshot.value as StateValue))];
}

/** The timers the active states of `snapshot` armed on entry: one per `after` delay of each, whatever its guards. */
export function activeTimers(snapshot: AnyMachineSnapshot): StateTimer[] {
  const timers = new Map<string, StateTimer>();
  for (const node of activeStateNodes(snapshot)) {
    for (const t of transitionsOfNode(node)) {
      if (t.kind === 'after' && t.delay !== undefined) timers.set(t.eventType, { eventType: t.eventType, delay: t.delay });
    }
  }
  return [...timers.values()];
}
