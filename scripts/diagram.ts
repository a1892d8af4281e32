/**
 * Generates docs/job-lifecycle.md from the job statechart itself (`npm run diagram`).
 *
 * The machine is walked by machines/introspect.ts, as the coverage test walks it: every state node
 * under `jobMachine.root`, and for each node its transitions (`on` events, invoke `onDone`/`onError`/
 * `onSnapshot`, state `onDone`, `after` delays, then `always`). Nothing about the lifecycle is written by
 * hand here, so the document follows the machine; test/diagram.test.ts fails while the committed file is
 * stale.
 */
import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { and, not, or, stateIn } from 'xstate';
import type { AnyStateNode } from 'xstate';
import { stateNodesOf, transitionsOf, type MachineTransition, type TransitionKind } from '../machines/introspect.js';
import { jobMachine } from '../machines/job/machine.js';
import type { JobStateMeta } from '../machines/job/types.js';
import { DEADLINE_OF } from '../machines/job/waits.js';

/** Where the generated document lives, relative to this file. */
export const LIFECYCLE_DOC = fileURLToPath(new URL('../docs/job-lifecycle.md', import.meta.url));

export type { TransitionKind };

/** One transition of the machine, in readable form. */
export interface LifecycleTransition {
  source: AnyStateNode;
  kind: TransitionKind;
  /** XState's internal event type, e.g. `xstate.after.WAIT.job.Compiling.compiling` ('' for `always`). */
  eventType: string;
  /** Readable event: `config.update`, `after WAIT`, `done: scheduleJob`, `error: compileJob`, `always`. */
  event: string;
  /** Readable guard (`isCurrent && failureIsFinal`, `!hasTtl`, `stopIs(mode=force)`), if any. */
  guard: string | undefined;
  targets: AnyStateNode[];
  reenter: boolean;
  /** Action types in order. */
  actions: string[];
}

// ---------------------------------------------------------------------------------------------
// The machine's shape
// ---------------------------------------------------------------------------------------------

function childrenOf(node: AnyStateNode): AnyStateNode[] {
  return Object.values(node.states);
}

/** `Scheduling.attempt.allocating`; '' for the root. */
function pathOf(node: AnyStateNode): string {
  return node.path.join('.');
}

function isCompound(node: AnyStateNode): boolean {
  return childrenOf(node).length > 0;
}

/** True when `node` is `ancestor` or lies inside it. */
function isWithin(node: AnyStateNode, ancestor: AnyStateNode): boolean {
  for (let n: AnyStateNode | undefined = node; n; n = n.parent) if (n === ancestor) return true;
  return false;
}

/** The top-level state containing `node` (undefined for the root). */
function topOf(node: AnyStateNode): AnyStateNode | undefined {
  let n = node;
  while (n.parent && n.parent.parent) n = n.parent;
  return n.parent ? n : undefined;
}

/**
 * The transition's domain as XState computes it (`getTransitionDomain`, ignoring history): the
 * states below the domain are exited. Undefined means the root itself.
 */
function domainOf(t: LifecycleTransition): AnyStateNode | undefined {
  if (t.targets.length === 0) return t.source;
  if (!t.reenter && t.targets.every((target) => isWithin(target, t.source))) return t.source;
  const [head, ...rest] = t.targets;
  const tail = [...rest, t.source];
  for (let ancestor = head?.parent; ancestor; ancestor = ancestor.parent) {
    if (tail.every((n) => n !== ancestor && isWithin(n, ancestor))) return ancestor;
  }
  return undefined;
}

/** Whether taking `t` exits (and so re-enters or leaves) the top-level state containing its source. */
function exitsTopLevel(t: LifecycleTransition): boolean {
  const domain = domainOf(t);
  return domain === undefined || domain.parent === undefined;
}

// ---------------------------------------------------------------------------------------------
// Readable labels for guards, actions and events
// ---------------------------------------------------------------------------------------------

interface GuardCombinator {
  check?: unknown;
  guards?: unknown[];
  stateValue?: unknown;
  name?: string;
}

/*
 * `and`/`or`/`not`/`stateIn` return a bare function carrying `check` (the evaluator) and `guards`
 * (the operands) or `stateValue`. The evaluators are shared, so identify a combinator by its
 * `check` rather than by its (minifiable) function name.
 */
const CHECKS = {
  and: (and([]) as unknown as GuardCombinator).check,
  or: (or([]) as unknown as GuardCombinator).check,
  not: (not('x') as unknown as GuardCombinator).check,
  stateIn: (stateIn('x') as unknown as GuardCombinator).check,
};

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function formatValue(value: unknown): string {
  if (typeof value === 'function') return '(dynamic)';
  if (Array.isArray(value)) return `[${value.map(formatValue).join(', ')}]`;
  if (isPlainObject(value)) {
    return `{${Object.entries(value)
      .map(([k, v]) => `${k}=${formatValue(v)}`)
      .join(', ')}}`;
  }
  if (typeof value === 'string') return value;
  return String(value);
}

function formatParams(params: unknown): string {
  if (isPlainObject(params)) {
    return Object.entries(params)
      .map(([k, v]) => `${k}=${formatValue(v)}`)
      .join(', ');
  }
  return formatValue(params);
}

/** A function's own name, unless it is only the property it was assigned to (`guard: () => …`). */
function ownName(fn: { name?: string }): string | undefined {
  const name = fn.name;
  return name && !['guard', 'actions', 'anonymous'].includes(name) ? name : undefined;
}

function isBinaryCombinator(guard: unknown): boolean {
  if (typeof guard !== 'function') return false;
  const check = (guard as GuardCombinator).check;
  return check === CHECKS.and || check === CHECKS.or;
}

export function guardLabel(guard: unknown): string {
  if (typeof guard === 'string') return guard;
  if (typeof guard === 'function') {
    const fn = guard as GuardCombinator;
    if (Array.isArray(fn.guards)) {
      const operand = (g: unknown) => (isBinaryCombinator(g) ? `(${guardLabel(g)})` : guardLabel(g));
      const operands = fn.guards.map(operand);
      if (fn.check === CHECKS.and) return operands.join(' && ');
      if (fn.check === CHECKS.or) return operands.join(' || ');
      if (fn.check === CHECKS.not) return `!${operands[0] ?? ''}`;
      return `${ownName(fn) ?? 'guard'}(${operands.join(', ')})`;
    }
    if (fn.check === CHECKS.stateIn) return `in(${formatValue(fn.stateValue)})`;
    return ownName(fn) ?? 'inline';
  }
  if (isPlainObject(guard) && typeof guard.type === 'string') {
    return guard.params === undefined ? guard.type : `${guard.type}(${formatParams(guard.params)})`;
  }
  return 'unknown';
}

export function actionLabel(action: unknown): string {
  if (typeof action === 'string') return action;
  if (typeof action === 'function') {
    // Built-in action creators (assign, raise, sendTo, enqueueActions, …) carry their type.
    const type = (action as { type?: unknown }).type;
    return typeof type === 'string' ? type : (ownName(action) ?? 'inline');
  }
  if (isPlainObject(action) && typeof action.type === 'string') return action.type;
  return 'unknown';
}

/** A transition's event, readably: `config.update`, `after WAIT`, `done: scheduleJob`, `error: compileJob`, `always`. */
function eventLabel(t: MachineTransition): string {
  switch (t.kind) {
    case 'after':
      return `after ${typeof t.delay === 'number' ? `${t.delay}ms` : formatValue(t.delay)}`;
    case 'stateDone':
      return 'done';
    case 'done':
    case 'error':
    case 'snapshot':
      return `${t.kind}: ${t.invoke?.src ?? '?'}`;
    case 'always':
      return 'always';
    case 'event':
      return t.eventType;
  }
}

/**
 * Every transition of the machine: per state node (root first, then depth first in definition order)
 * its `on` events, state `onDone`, invoke callbacks and `after` delays in XState's order, then its
 * `always` list.
 */
export function collectTransitions(root: AnyStateNode = jobMachine.root): LifecycleTransition[] {
  return transitionsOf(root).map((t) => ({
    source: t.source,
    kind: t.kind,
    eventType: t.eventType,
    event: eventLabel(t),
    guard: t.definition.guard === undefined ? undefined : guardLabel(t.definition.guard),
    targets: t.targets,
    reenter: t.reenter,
    actions: t.definition.actions.map(actionLabel),
  }));
}

// ---------------------------------------------------------------------------------------------
// Mermaid
// ---------------------------------------------------------------------------------------------

/*
 * Mermaid state-diagram ids: letters, digits and '_' only (dots break the generated CSS selectors,
 * '-' and ':' break the parser), and not a word the (case-insensitive) lexer treats as a keyword.
 */
const MERMAID_KEYWORDS = new Set([
  'state', 'note', 'end', 'as', 'class', 'classdef', 'style', 'scale', 'click', 'href', 'direction', 'hide', 'acctitle', 'accdescr',
]);

class MermaidIds {
  private readonly byKey = new Map<string, string>();
  private readonly used = new Set<string>();

  id(key: string, base: string): string {
    const known = this.byKey.get(key);
    if (known) return known;
    let safe = base.replace(/[^A-Za-z0-9_]/g, '_') || 's';
    if (/^[0-9]/.test(safe) || /^default/i.test(safe) || MERMAID_KEYWORDS.has(safe.toLowerCase())) safe = `s_${safe}`;
    let id = safe;
    for (let n = 2; this.used.has(id); n++) id = `${safe}_${n}`;
    this.used.add(id);
    this.byKey.set(key, id);
    return id;
  }
}

/**
 * A transition label must stay on one line and cannot contain ':' or ';' (they end it) or '#'
 * (entity codes); '<br>' joins several labels of one edge.
 */
function mermaidLabel(text: string): string {
  return text
    .replace(/[\r\n]+/g, ' ')
    .replace(/:/g, '')
    .replace(/;/g, ',')
    .replace(/#/g, '')
    .replace(/</g, '‹')
    .replace(/>/g, '›');
}

function mermaidName(text: string): string {
  return text.replace(/"/g, "'").replace(/[\r\n]+/g, ' ');
}

/** `id`, or `state "label" as id` when the label is not the id. */
function declaration(id: string, label: string): string {
  return label === id ? id : `state "${mermaidName(label)}" as ${id}`;
}

function edgeLabel(t: LifecycleTransition): string {
  return t.guard === undefined ? t.event : `${t.event} [${t.guard}]`;
}

/** Edges in order of first appearance, identical ones merged and the labels of one pair joined. */
class Edges {
  private readonly edges = new Map<string, { from: string; to: string; labels: string[] }>();

  add(from: string, to: string, label: string): void {
    const key = `${from} ${to}`;
    const edge = this.edges.get(key) ?? { from, to, labels: [] };
    this.edges.set(key, edge);
    if (!edge.labels.includes(label)) edge.labels.push(label);
  }

  lines(indent: string, labelled = true): string[] {
    return this.list().map(({ from, to, labels }) => (labelled ? `${indent}${from} --> ${to} : ${labels.map(mermaidLabel).join('<br>')}` : `${indent}${from} --> ${to}`));
  }

  list(): Array<{ from: string; to: string; labels: string[] }> {
    return [...this.edges.values()];
  }
}

interface Model {
  root: AnyStateNode;
  topLevel: AnyStateNode[];
  states: AnyStateNode[];
  transitions: LifecycleTransition[];
  ids: MermaidIds;
}

function nodeId(model: Model, node: AnyStateNode): string {
  return model.ids.id(`node:${pathOf(node)}`, node.parent ? node.path.join('_') : String(model.root.id));
}

function reenterId(model: Model, node: AnyStateNode): string {
  return model.ids.id(`reenter:${pathOf(node)}`, `${node.path.join('_')}__reenter`);
}

/** The overview's edges between top-level states (Mermaid ids), each with the labels of the transitions it stands for. */
function overviewEdges(model: Model): Edges {
  const edges = new Edges();
  for (const t of model.transitions) {
    const from = topOf(t.source);
    if (!from) continue;
    for (const target of t.targets) {
      const to = topOf(target);
      if (!to || (to === from && !exitsTopLevel(t))) continue;
      edges.add(nodeId(model, from), nodeId(model, to), edgeLabel(t));
    }
  }
  return edges;
}

/** The overview's Mermaid text, without the fences; `labelled: false` leaves the transition labels out. */
function overviewDiagram(model: Model, labelled: boolean): string[] {
  const lines = ['stateDiagram-v2'];
  const initial = model.root.initial?.target[0];
  if (initial) lines.push(`  [*] --> ${nodeId(model, initial)}`);
  for (const state of model.topLevel) lines.push(`  ${declaration(nodeId(model, state), state.key)}`);
  lines.push(...overviewEdges(model).lines('  ', labelled));
  for (const state of model.topLevel) if (state.type === 'final') lines.push(`  ${nodeId(model, state)} --> [*]`);
  return lines;
}

function renderOverview(model: Model): string[] {
  return ['```mermaid', ...overviewDiagram(model, true), '```'];
}

/** The detailed diagram of one compound top-level state. */
function renderDetail(model: Model, top: AnyStateNode): string[] {
  const transitions = model.transitions.filter((t) => t.targets.length > 0 && isWithin(t.source, top));
  const edges = new Edges();
  const outside = new Map<string, string>(); // id → label, declared outside the state
  const reentered = new Map<AnyStateNode, string>(); // compound state strictly inside `top` → its re-entry node id

  for (const t of transitions) {
    const from = nodeId(model, t.source);
    for (const target of t.targets) {
      let to: string;
      if (isCompound(target) && isWithin(t.source, target)) {
        // Re-entering a composite from inside it: an edge to the enclosing box does not render,
        // so point at a separate "re-entered" node.
        to = reenterId(model, target);
        if (target !== top && isWithin(target, top) && target.type === 'compound') reentered.set(target, to);
        else outside.set(to, `${pathOf(target) || String(model.root.id)} (re-entered)`);
      } else {
        to = nodeId(model, target);
        if (!isWithin(target, top)) outside.set(to, pathOf(target) || String(model.root.id));
      }
      edges.add(from, to, edgeLabel(t));
    }
  }

  const block = (node: AnyStateNode, indent: string): string[] => {
    const id = nodeId(model, node);
    const children = childrenOf(node);
    if (children.length === 0) return [`${indent}${declaration(id, node.key)}`];
    const inner = `${indent}  `;
    const out = [`${indent}${node.key === id ? `state ${id}` : `state "${mermaidName(node.key)}" as ${id}`} {`];
    const initial = node.type === 'parallel' ? undefined : node.initial?.target[0];
    if (initial) out.push(`${inner}[*] --> ${nodeId(model, initial)}`);
    children.forEach((child, i) => {
      if (node.type === 'parallel' && i > 0) out.push(`${inner}--`);
      out.push(...block(child, inner));
    });
    for (const child of children) if (child.type === 'final') out.push(`${inner}${nodeId(model, child)} --> [*]`);
    const reentry = reentered.get(node);
    if (reentry) out.push(`${inner}state "${mermaidName(`${node.key} (re-entered)`)}" as ${reentry}`);
    out.push(`${indent}}`);
    return out;
  };

  return [
    '```mermaid',
    'stateDiagram-v2',
    ...block(top, '  '),
    ...[...outside].map(([id, label]) => `  ${declaration(id, label)}`),
    // Edges go last, at the top level, so that no state is first mentioned (and so placed) in the
    // wrong box; each edge joins the states wherever they were declared.
    ...edges.lines('  '),
    '```',
  ];
}

function code(text: string): string {
  return `\`${text.replace(/\|/g, '\\|')}\``;
}

function displayPath(node: AnyStateNode): string {
  return pathOf(node) || '(root)';
}

function targetCell(t: LifecycleTransition): string {
  if (t.targets.length === 0) return '—';
  return t.targets.map((target) => code(displayPath(target))).join(', ') + (t.reenter ? ' (reenter)' : '');
}

function targetlessList(transitions: LifecycleTransition[]): string[] {
  return transitions.map((t) => {
    const guard = t.guard === undefined ? '' : ` [${code(t.guard)}]`;
    const actions = t.actions.length > 0 ? ` / ${t.actions.map(code).join(', ')}` : '';
    return `- ${code(displayPath(t.source))}: ${code(t.event)}${guard}${actions}`;
  });
}

function renderTable(model: Model): string[] {
  const rows = model.transitions.map((t, i) =>
    [
      String(i + 1),
      code(displayPath(t.source)),
      code(t.event),
      t.guard === undefined ? '' : code(t.guard),
      targetCell(t),
      t.actions.map(code).join(', '),
    ].join(' | '),
  );
  return ['| # | Source | Event | Guard | Target | Actions |', '|---|---|---|---|---|---|', ...rows.map((row) => `| ${row} |`)];
}

/** `WAIT` → `wait`, `WORKER_STARTUP` → `workerStartup`: the deadline in context a delay is computed from. */
function deadlineOfDelay(delay: string): string {
  return delay.toLowerCase().replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
}

/**
 * Every state that waits (its `meta.wait`), the deadline that bounds it, and the transitions its expiry
 * takes: the `after` transitions of that deadline's delay on the state or its ancestors.
 */
function renderWaits(model: Model): string[] {
  const rows = model.states.flatMap((node) => {
    const kind = (node.meta as JobStateMeta | undefined)?.wait;
    if (kind === undefined) return [];
    const deadline = DEADLINE_OF[kind];
    const expiries = model.transitions.filter((t) => t.kind === 'after' && isWithin(node, t.source) && deadlineOfDelay(t.event.replace(/^after /, '')) === deadline);
    const then = expiries.map((t) => `${t.guard === undefined ? '' : `[${code(t.guard)}] `}${targetCell(t)}`).join('; ');
    return [`| ${code(displayPath(node))} | ${code(kind)} | ${code(`deadlines.${deadline}`)} | ${then} |`];
  });
  return [
    '## Waits',
    '',
    'Every state a job can rest in, other than Running and the terminal states, waits for something until a deadline kept in ' +
      'its context, and says so in its view (`waiting`: the kind, a reason in words and the deadline). When the deadline passes ' +
      'the state falls back as listed.',
    '',
    '| State | Waits for | Deadline | When it passes |',
    '|---|---|---|---|',
    ...rows,
  ];
}

function buildModel(): Model {
  const root = jobMachine.root as AnyStateNode;
  const model: Model = {
    root,
    topLevel: childrenOf(root),
    states: stateNodesOf(root),
    transitions: collectTransitions(root),
    ids: new MermaidIds(),
  };
  // Fix every state's id up front, in definition order, so ids never depend on rendering order.
  for (const state of model.states) nodeId(model, state);
  return model;
}

/** An edge of the overview: top-level states by name, and the `event [guard]` label of every transition it stands for. */
export interface LifecycleEdge {
  from: string;
  to: string;
  labels: string[];
}

/**
 * The overview diagram of docs/job-lifecycle.md as data, for the web console (console/vite.config.ts
 * builds it into the bundle): the top-level states in definition order with their Mermaid ids, the
 * initial and final ones, the edges in the diagram's order, and the Mermaid text itself. Its relations
 * come in this order: `[*] --> initial`, the edges, then `final --> [*]` for each final state.
 */
export interface LifecycleOverview {
  states: Array<{ name: string; id: string; final: boolean }>;
  initial: string | null;
  edges: LifecycleEdge[];
  /** `stateDiagram-v2` text without the fences; transition labels only when asked for. */
  mermaid: string;
}

export function lifecycleOverview(options: { labelled?: boolean } = {}): LifecycleOverview {
  const model = buildModel();
  const nameOf = new Map(model.topLevel.map((state) => [nodeId(model, state), state.key]));
  const name = (id: string) => nameOf.get(id) ?? id;
  const initial = model.root.initial?.target[0];
  return {
    states: model.topLevel.map((state) => ({ name: state.key, id: nodeId(model, state), final: state.type === 'final' })),
    initial: initial === undefined ? null : (topOf(initial)?.key ?? null),
    edges: overviewEdges(model)
      .list()
      .map(({ from, to, labels }) => ({ from: name(from), to: name(to), labels: [...labels] })),
    mermaid: overviewDiagram(model, options.labelled ?? false).join('\n'),
  };
}

/** The number of state nodes and transitions the document describes. */
export function lifecycleCounts(): { states: number; topLevel: number; transitions: number } {
  const model = buildModel();
  return { states: model.states.length, topLevel: model.topLevel.length, transitions: model.transitions.length };
}

/** The full text of docs/job-lifecycle.md. */
export function renderLifecycleDiagram(): string {
  const model = buildModel();
  const rootTransitions = model.transitions.filter((t) => t.source === model.root);
  const out: string[] = [
    '# Job lifecycle',
    '',
    'This file is generated by `npm run diagram` (scripts/diagram.ts) from the statechart in `machines/job/machine.ts` ' +
      'and must not be edited by hand: change the machine and run `npm run diagram` again ' +
      '(test/diagram.test.ts fails while this file is stale).',
    '',
    `The machine has ${model.topLevel.length} top-level states, ${model.states.length} states in all, ` +
      `and ${model.transitions.length} transitions. Transition labels read \`event [guard]\`: \`always\` is an eventless ` +
      'transition, `after X` fires once the delay `X` has passed, `done: actor` / `error: actor` follow an invoked actor ' +
      '(the colon is dropped inside the diagrams, where Mermaid does not allow it).',
    '',
    '## Overview',
    '',
    'Top-level states only; an edge stands for every transition from anywhere inside one state to anywhere inside another ' +
      '(or back into the same state from inside it, re-entering it).',
    '',
    ...renderOverview(model),
  ];
  if (rootTransitions.length > 0) {
    out.push('', 'Handled at the machine root, in every state:', '');
    for (const t of rootTransitions) {
      const guard = t.guard === undefined ? '' : ` [${code(t.guard)}]`;
      const target = t.targets.length > 0 ? ` → ${targetCell(t)}` : ' (no state change)';
      const actions = t.actions.length > 0 ? ` / ${t.actions.map(code).join(', ')}` : '';
      out.push(`- ${code(t.event)}${guard}${target}${actions}`);
    }
  }

  const compound = model.topLevel.filter(isCompound);
  const atomic = model.topLevel.filter((state) => !isCompound(state));
  out.push('', '## States', '', 'One diagram per top-level state with child states, showing the transitions inside it and those leaving it.');
  if (atomic.length > 0) {
    out.push(`The others (${atomic.map((state) => `\`${state.key}\``).join(', ')}) have no child states: see the overview and the table.`);
  }
  out.push('');
  for (const top of compound) {
    const initial = top.type === 'parallel' ? undefined : top.initial?.target[0];
    const kind = top.type === 'parallel' ? 'parallel: its regions run side by side' : `compound, initially \`${initial?.key ?? '?'}\``;
    out.push(`### ${top.key}`, '', `\`${top.key}\` (${kind}).`, '', ...renderDetail(model, top));
    const targetless = model.transitions.filter((t) => t.targets.length === 0 && isWithin(t.source, top));
    if (targetless.length > 0) {
      out.push('', 'Transitions without a target (their actions run, the state does not change):', '', ...targetlessList(targetless));
    }
    out.push('');
  }

  out.push(...renderWaits(model), '');

  out.push(
    '## Transitions',
    '',
    'Every transition, in definition order: per state, its events, invoked-actor results and delays, then its `always` transitions. ' +
      'Guards are tried top to bottom among the rows of one source and event.',
    '',
    ...renderTable(model),
    '',
  );
  return out.join('\n');
}

function isMain(): boolean {
  const entry = process.argv[1];
  return entry !== undefined && import.meta.url === pathToFileURL(resolve(entry)).href;
}

if (isMain()) {
  writeFileSync(LIFECYCLE_DOC, renderLifecycleDiagram());
  const counts = lifecycleCounts();
  console.log(
    `wrote ${LIFECYCLE_DOC}: ${counts.states} states (${counts.topLevel} top-level), ${counts.transitions} transitions`,
  );
}
