import { afterAll, beforeAll, expect, test, vi } from 'vitest';
import { createActor, fromPromise } from 'xstate';
import type { AnyActorLogic, AnyMachineSnapshot, AnyTransitionDefinition } from 'xstate';
import { getShortestPaths } from 'xstate/graph';
import { activeStateNodes, activeTimers, transitionsOf, transitionsOfNode, type MachineTransition } from '../../machines/introspect.js';
import { jobMachine, Rejection } from '../../machines/index.js';
import type { DesiredConfig, JobContext, JobEvent, JobInput, Settled } from '../../machines/index.js';

/*
 * Transition coverage (reference/xstate-nats.md §A5): list every transition of the machine, generate
 * paths with xstate/graph (the shortest path to each state, then each event from it), replay every path
 * in a real actor and collect the transitions taken from `@xstate.microstep` inspection events. The
 * machine is walked by machines/introspect.ts, as scripts/diagram.ts walks it.
 *
 * The machine reads no clock: time comes with the events. Both the traversal and the replay stamp each
 * event with the time the path has reached, and treat a timer event as "time passes by exactly its
 * delay": a `clock.tick` at the machine's own computed deadline comes first, as the runtime's clock sends it.
 */

const T0 = 1_700_000_000_000;
type AnyEvent = { type: string; [k: string]: unknown };

/** Actors that never settle: the paths deliver done/error events themselves. */
const never = <T, I>() => fromPromise<Settled<T>, I>(() => new Promise(() => {}));
const machine = jobMachine.provide({
  actors: { compileJob: never(), scheduleJob: never(), stopJob: never(), killJob: never(), cleanupJob: never(), finalCheckpoint: never(), adoptGeneration: never() },
});

/** Input profiles that make each time guard the earliest deadline somewhere. */
const PROFILES: Record<string, Partial<JobInput>> = {
  checkpoints: { config: { checkpointIntervalMs: 1_000 }, policy: { allowedRestarts: 1, checkpointTimeoutMs: 500, heartbeatTimeoutMs: 60_000 } },
  heartbeat: { config: { checkpointIntervalMs: 0 }, policy: { allowedRestarts: 1 } },
  healthy: { config: { checkpointIntervalMs: 0 }, policy: { allowedRestarts: 1, healthyDurationMs: 1_000, heartbeatTimeoutMs: 0 } },
  preview: { config: { checkpointIntervalMs: 0, ttlMs: 60_000 }, policy: { allowedRestarts: 0, heartbeatTimeoutMs: 0 } },
  /** A TTL beyond setTimeout's range: the timer fires early and re-arms. */
  quiet: { config: { checkpointIntervalMs: 0, ttlMs: 40 * 86_400_000 }, policy: { allowedRestarts: 0, heartbeatTimeoutMs: 0 } },
};

function topOf(s: AnyMachineSnapshot): string {
  const value = s.value as string | Record<string, unknown>;
  return typeof value === 'string' ? value : Object.keys(value)[0]!;
}

function label({ definition: t, kind }: MachineTransition): string {
  const targets = (t.target ?? []).map((n) => n.id).join(',') || '(internal)';
  const guard = typeof t.guard === 'string' ? t.guard : typeof t.guard === 'object' && t.guard ? (t.guard as { type: string }).type : t.guard ? 'guard' : '';
  return `${t.source.id} --${kind === 'always' ? 'always' : String(t.eventType)}${guard ? ` [${guard}]` : ''}--> ${targets}`;
}

/** Every transition of the machine, by XState's own definition (the objects microstep events report). */
const staticTransitions = new Map<AnyTransitionDefinition, MachineTransition>(transitionsOf(machine.root).map((t) => [t.definition, t]));

/** Timer event type → its delay's name, from the machine's `after` transitions. */
const delayNames = new Map(transitionsOf(machine.root).flatMap((t) => (t.kind === 'after' ? [[t.eventType, String(t.delay)] as const] : [])));

function isTimer(event: AnyEvent): boolean {
  return delayNames.has(event.type);
}

/** How long after `now` the timer that raises `event` fires, as the machine computes it when it arms the timer. */
function delayOf(snapshot: AnyMachineSnapshot, event: AnyEvent, now: number): number {
  const delays = machine.implementations.delays as unknown as Record<string, (a: { context: JobContext; event: AnyEvent }) => number>;
  return delays[delayNames.get(event.type)!]!({ context: snapshot.context as JobContext, event: { type: 'clock.tick', at: now } });
}

/** `event` as it reaches the machine at `at`: a runtime event stamped, an invoked actor's result or rejection dated. */
function stamped(event: AnyEvent, at: number): AnyEvent {
  if (event.type.startsWith('xstate.done.actor.')) return { ...event, output: { value: event.output, at } };
  if (event.type.startsWith('xstate.error.actor.')) return { ...event, error: new Rejection(event.error, at) };
  return { ...event, at };
}

const clockOf = new WeakMap<object, number>();

/** Which transitions the traversal saw each edge take, keyed by (abstract state, event). */
let onTraversalStep: ((from: AnyMachineSnapshot, event: AnyEvent, transitions: unknown[]) => void) | undefined;

/**
 * The machine's logic, with each snapshot carrying the time it was reached at, and the transitions of
 * each step reported through the actor scope's inspection hook.
 */
const timedLogic: AnyActorLogic = Object.assign(Object.create(machine) as AnyActorLogic, {
  getInitialSnapshot: (scope: never, input: JobInput) => {
    const s = machine.getInitialSnapshot(scope, { ...input, createdAt: T0 });
    clockOf.set(s, T0);
    return s;
  },
  transition: (snapshot: AnyMachineSnapshot, event: AnyEvent, scope: { system: object }) => {
    const now = clockOf.get(snapshot) ?? T0;
    const taken: unknown[] = [];
    const system = Object.assign(Object.create(scope.system) as object, {
      _sendInspectionEvent: (ev: { type: string; _transitions?: unknown[] }) => {
        if (ev.type === '@xstate.microstep') taken.push(...(ev._transitions ?? []));
      },
    });
    const step = (s: AnyMachineSnapshot, e: AnyEvent) => machine.transition(s as never, e as never, { ...scope, system } as never) as AnyMachineSnapshot;
    let next: AnyMachineSnapshot;
    let at = now;
    if (isTimer(event)) {
      at = now + delayOf(snapshot, event, now);
      next = step(step(snapshot, { type: 'clock.tick', at }), event);
    } else {
      next = step(snapshot, stamped(event, now));
    }
    clockOf.set(next, at);
    onTraversalStep?.(snapshot, event, taken);
    return next;
  },
});

function parallelismDiffers(c: JobContext): boolean {
  return Object.entries(c.config.parallelismOverrides).some(([n, p]) => c.parallelism[n] !== undefined && c.parallelism[n] !== p);
}

/**
 * The abstract state: the state value plus only the context the current state reads. Dropping the rest
 * is sound because each dimension is reset before another state reads it: retry attempts on entry to
 * every retrying state, parallelism, env and the in-flight checkpoint when a generation is scheduled,
 * the restart nonce when compiling.
 */
function keyOf(s: AnyMachineSnapshot): string {
  const c = s.context as JobContext;
  const top = topOf(s);
  const finalCheckpoint = ['Rescaling', 'Restarting', 'CheckpointStopping'].includes(top);
  const retries = ['Compiling', 'Scheduling', 'Stopping', 'Recovering', 'Restarting'].includes(top);
  return JSON.stringify([
    s.value,
    s.status,
    c.config.stop,
    c.config.ttlMs,
    c.restarts,
    retries ? c.retry.attempts : 0,
    top === 'Running' || top === 'Failed' || top === 'Scheduling' ? c.config.restartNonce !== c.appliedRestartNonce : null,
    top === 'Restarting' ? [c.config.restartMode, c.restartMode] : null,
    top === 'Running' || top === 'Scheduling'
      ? [parallelismDiffers(c), Object.keys(c.config.env).length !== Object.keys(c.appliedEnv).length, c.config.checkpointIntervalMs]
      : null,
    finalCheckpoint || top === 'Finishing' ? c.tasksFinished : null,
  ]);
}

function eventsFor(s: AnyMachineSnapshot): AnyEvent[] {
  const c = s.context as JobContext;
  const generation = c.generation;
  const config = (patch: Partial<DesiredConfig>): AnyEvent => ({ type: 'config.update', config: { ...c.config, ...patch } });
  const events: AnyEvent[] = [
    { type: 'tasks.started', generation },
    { type: 'tasks.started', generation: generation + 1_000 },
    { type: 'tasks.finished', generation },
    { type: 'source.finished', generation },
    { type: 'task.failed', generation, message: 'user bug', domain: 'user', hint: 'no_retry' },
    { type: 'task.failed', generation, message: 'flaky', domain: 'external', hint: 'with_backoff' },
    { type: 'worker.lost', generation, workerId: 'w-1' },
    { type: 'workers.heartbeat', generation },
    { type: 'job.resume' },
    { type: 'job.adopt' },
  ];
  // Config changes are offered only where a guard reads them; elsewhere they would only multiply
  // states that behave alike.
  const top = topOf(s);
  const readsStop = !['Compiling', 'Failing', 'Failed', 'Finished'].includes(top) && !s.matches({ Stopping: 'kill' }) && !s.matches({ Stopping: 'killBackoff' });
  if (readsStop) {
    for (const stop of ['none', 'checkpoint', 'graceful', 'immediate', 'force'] as const) if (stop !== c.config.stop) events.push(config({ stop }));
  }
  // While starting: a change the job must act on once Running (its entry reconciles).
  const starting = s.matches({ Scheduling: { attempt: 'starting' } });
  if (top === 'Running' || top === 'Failed' || starting) {
    events.push(config({ restartNonce: c.config.restartNonce + 1, restartMode: 'safe' }));
    events.push(config({ restartNonce: c.config.restartNonce + 1, restartMode: 'force' }));
  }
  if (top === 'Restarting') events.push(config({ restartMode: c.config.restartMode === 'force' ? 'safe' : 'force' }));
  if (starting) {
    events.push(config({ parallelismOverrides: { source: (c.parallelism['source'] ?? 1) + 1 } }));
    events.push(config({ env: Object.keys(c.config.env).length ? {} : { MODE: 'debug' } }));
  }
  if (top === 'Running') {
    events.push(config({ parallelismOverrides: { source: (c.parallelism['source'] ?? 1) + 1 } }));
    events.push(config({ env: Object.keys(c.config.env).length ? {} : { MODE: 'debug' } }));
    events.push(config({ checkpointIntervalMs: c.config.checkpointIntervalMs === 0 ? 1_000 : 0 }));
    if (c.config.ttlMs !== null) events.push(config({ ttlMs: null }));
  }
  for (const timer of activeTimers(s)) events.push({ type: timer.eventType });
  // Each invoke's result and rejection, once per event type however many guarded transitions handle it.
  const results = new Map<string, MachineTransition>();
  for (const t of activeStateNodes(s).flatMap(transitionsOfNode)) if (t.kind === 'done' || t.kind === 'error') results.set(t.eventType, t);
  for (const { kind, eventType: type, invoke } of results.values()) {
    const src = invoke?.src;
    if (kind === 'done') {
      const scheduled = { parallelism: { source: 1, sink: 1, ...c.config.parallelismOverrides } };
      const outputs = src === 'stopJob' ? [{ finished: true }, { finished: false }] : src === 'scheduleJob' ? [scheduled] : src === 'finalCheckpoint' ? [{ epoch: 1 }] : [undefined];
      for (const output of outputs) events.push({ type, output });
    } else {
      events.push({ type, error: { kind: 'fatal', message: 'fatal', domain: 'user' } });
      events.push({ type, error: { kind: 'retryable', message: 'transient' } });
      events.push({ type, error: { kind: 'retryable', message: 'last try', retries: 1 } });
      if (src === 'scheduleJob') events.push({ type, error: { kind: 'not_enough_slots', message: 'no slots' } });
      if (src === 'adoptGeneration') events.push({ type, error: { kind: 'tasks_gone', message: 'no task runs' } });
    }
  }
  return events;
}

interface Path {
  profile: string;
  events: AnyEvent[];
}

/** Candidate paths per transition, shortest first; replay falls back to the next when the first misses. */
const CANDIDATES_PER_TRANSITION = 4;

/**
 * For each machine transition, a few paths that take it: the shortest path (xstate/graph) to an abstract
 * state from which the traversal saw an event take the transition, followed by that event.
 */
function generateCandidates(): { candidates: Map<unknown, Path[]>; states: number } {
  const candidates = new Map<unknown, Path[]>();
  let states = 0;
  for (const [profile, input] of Object.entries(PROFILES)) {
    const witnesses: { from: string; event: AnyEvent; transitions: unknown[] }[] = [];
    const seen = new Map<unknown, number>();
    onTraversalStep = (from, event, transitions) => {
      if (!transitions.some((t) => (seen.get(t) ?? 0) < CANDIDATES_PER_TRANSITION)) return;
      for (const t of transitions) seen.set(t, (seen.get(t) ?? 0) + 1);
      witnesses.push({ from: keyOf(from), event, transitions });
    };
    const shortest = getShortestPaths(timedLogic, {
      input: { jobId: 'job-cov', seed: 3, ...input },
      events: eventsFor as never,
      serializeState: keyOf as never,
      serializeEvent: (e: AnyEvent) => JSON.stringify(e),
    });
    onTraversalStep = undefined;
    states += shortest.length;
    const pathTo = new Map(shortest.map((p) => [keyOf(p.state as AnyMachineSnapshot), p.steps.map((s) => s.event as AnyEvent)]));
    for (const w of witnesses) {
      const prefix = pathTo.get(w.from);
      if (!prefix) continue;
      for (const t of w.transitions) {
        const list = candidates.get(t) ?? [];
        list.push({ profile, events: [...prefix, w.event] });
        candidates.set(t, list);
      }
    }
  }
  for (const list of candidates.values()) list.sort((a, b) => a.events.length - b.events.length);
  return { candidates, states };
}

function replay(path: Path, taken: Set<unknown>): void {
  let now = T0;
  const actor = createActor(machine, {
    input: { jobId: 'job-cov', seed: 3, ...PROFILES[path.profile], createdAt: now },
    inspect: (ev) => {
      if (ev.type === '@xstate.microstep') for (const t of (ev as unknown as { _transitions: unknown[] })._transitions) taken.add(t);
    },
  });
  actor.start();
  for (const event of path.events) {
    if (actor.getSnapshot().status !== 'active') break;
    if (isTimer(event)) {
      now += delayOf(actor.getSnapshot(), event, now);
      actor.send({ type: 'clock.tick', at: now });
      actor.send(event as unknown as JobEvent);
    } else {
      actor.send(stamped(event, now) as unknown as JobEvent);
    }
  }
  actor.stop();
}

// The actors' own timers never fire here: the paths deliver timer events themselves. The system time is far
// from the times the events carry, which the machine must not mind.
beforeAll(() => {
  vi.useFakeTimers({ now: 0 });
});
afterAll(() => {
  vi.useRealTimers();
});

test('every transition of the job machine is taken by some generated path', () => {
  const { candidates, states } = generateCandidates();
  const taken = new Set<unknown>();
  let replayed = 0;
  for (let round = 0; round < CANDIDATES_PER_TRANSITION * Object.keys(PROFILES).length; round++) {
    const pending = [...staticTransitions.keys()].filter((t) => !taken.has(t) && (candidates.get(t)?.length ?? 0) > round);
    if (pending.length === 0) break;
    for (const t of pending) {
      if (taken.has(t)) continue;
      replay(candidates.get(t)![round]!, taken);
      replayed++;
    }
  }
  const missing = [...staticTransitions.values()].filter((t) => !taken.has(t.definition));
  const covered = staticTransitions.size - missing.length;
  const percent = ((100 * covered) / staticTransitions.size).toFixed(1);
  console.log(`transition coverage: ${covered}/${staticTransitions.size} (${percent}%) from ${replayed} replayed paths over ${states} abstract states`);
  if (missing.length) console.log(`not taken:\n${missing.map(label).join('\n')}`);
  expect(missing.map(label), 'transitions no path takes').toEqual([]);
  expect(staticTransitions.size).toBeGreaterThan(100);
}, 120_000);
