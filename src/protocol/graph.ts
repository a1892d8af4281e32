/**
 * Checks a pipeline's graph against the operators the workers offer. Pure: no I/O, never throws;
 * returns user-facing problems, empty when the graph can run.
 */
import type { z } from 'zod';
import { formatPath, issueLines, parseReportingInput } from './codec.js';
import type { GraphEdge, Pipeline } from './pipeline.js';

export type OperatorKind = 'source' | 'operator' | 'sink';

export interface OperatorSpec {
  kind: OperatorKind;
  /** Absent: no limit. */
  maxParallelism?: number;
  /** Checks a node's `config`; absent: any object. */
  config?: z.ZodType;
  /** A sink whose output becomes visible only when its checkpoint's commit arrives (two-phase commit). */
  twoPhase?: boolean;
}

export type GraphProblemCode =
  | 'duplicate_node'
  | 'unknown_operator'
  | 'bad_config'
  | 'parallelism_too_high'
  | 'unknown_node'
  | 'duplicate_edge'
  | 'source_with_inputs'
  | 'missing_inputs'
  | 'sink_with_outputs'
  | 'parallelism_mismatch'
  | 'cycle';

export interface GraphProblem {
  code: GraphProblemCode;
  /** One sentence for the user; names the nodes and operators involved. */
  message: string;
  /** Where in the pipeline, e.g. `graph.nodes[2].config.topic`. */
  path: string;
  /** The node ids involved. */
  nodes: string[];
}

export type GraphInput = Pick<Pipeline, 'graph'> & { parallelism?: number | undefined };

/** Node id → the parallelism it will run with: the pipeline's `parallelism` overrides every node. */
export function effectiveParallelism(pipeline: GraphInput): Map<string, number> {
  return new Map(pipeline.graph.nodes.map((node) => [node.id, pipeline.parallelism ?? node.parallelism]));
}

/** What a job view says about parallelism: the pipeline's for every node, and the overrides set since. */
export interface JobParallelism {
  parallelism: number | null;
  config: { parallelism_overrides: Readonly<Record<string, number>> };
}

/** The parallelism a node of a job runs with: its override, else the pipeline's, else the node's own. */
export function nodeParallelism(job: JobParallelism, node: { id: string; parallelism: number }): number {
  return job.config.parallelism_overrides[node.id] ?? job.parallelism ?? node.parallelism;
}

/** The operator whose rows a job publishes on its output subject. */
export const PREVIEW_OPERATOR = 'preview';

/** A job's preview sinks and the parallelism each runs with now; empty when the graph has none. */
export function previewParallelism(job: JobParallelism & { graph: { nodes: ReadonlyArray<{ id: string; operator: string; parallelism: number }> } }): Map<string, number> {
  return new Map(job.graph.nodes.filter((node) => node.operator === PREVIEW_OPERATOR).map((node) => [node.id, nodeParallelism(job, node)]));
}

export function validateGraph(pipeline: GraphInput, availableOperators: ReadonlyMap<string, OperatorSpec>): GraphProblem[] {
  const problems: GraphProblem[] = [];
  const add = (code: GraphProblemCode, path: readonly PropertyKey[], nodes: string[], message: string) =>
    problems.push({ code, message, path: formatPath(path), nodes });
  const { nodes, edges } = pipeline.graph;
  const parallelism = effectiveParallelism(pipeline);
  const known = [...availableOperators.keys()].sort();

  // Nodes: ids, operators, config, parallelism.
  const firstIndex = new Map<string, number>();
  const specs = new Map<string, OperatorSpec>();
  nodes.forEach((node, i) => {
    const at = ['graph', 'nodes', i];
    const first = firstIndex.get(node.id);
    if (first !== undefined) {
      add('duplicate_node', [...at, 'id'], [node.id], `duplicate node id "${node.id}" (graph.nodes[${first}] and graph.nodes[${i}])`);
      return;
    }
    firstIndex.set(node.id, i);
    const spec = availableOperators.get(node.operator);
    if (spec === undefined) {
      const choices = known.length === 0 ? 'no operators are available' : `known operators: ${known.join(', ')}`;
      add('unknown_operator', [...at, 'operator'], [node.id], `node "${node.id}": unknown operator "${node.operator}"; ${choices}`);
      return;
    }
    specs.set(node.id, spec);
    if (spec.config !== undefined) {
      for (const line of configProblems(spec.config, node.config, [...at, 'config'])) {
        add('bad_config', [...at, 'config'], [node.id], `node "${node.id}" (operator "${node.operator}"): bad config: ${line}`);
      }
    }
    const p = parallelism.get(node.id) ?? 1;
    if (spec.maxParallelism !== undefined && p > spec.maxParallelism) {
      add(
        'parallelism_too_high',
        [...at, 'parallelism'],
        [node.id],
        `node "${node.id}": parallelism ${p} exceeds the maximum of ${spec.maxParallelism} for operator "${node.operator}"`,
      );
    }
  });

  // Edges: endpoints, duplicates, forward parallelism.
  const valid: GraphEdge[] = [];
  const seen = new Map<string, number>();
  edges.forEach((edge, k) => {
    const at = ['graph', 'edges', k];
    const label = `edge ${edge.from} → ${edge.to}`;
    const missing = [edge.from, edge.to].filter((id, j, ends) => !firstIndex.has(id) && ends.indexOf(id) === j);
    if (missing.length > 0) {
      const names = missing.map((id) => `"${id}"`).join(' and ');
      add('unknown_node', at, missing, `${label} (graph.edges[${k}]) refers to unknown node ${names}`);
      return;
    }
    const key = `${edge.from}\u0000${edge.to}`;
    const previous = seen.get(key);
    if (previous !== undefined) {
      add('duplicate_edge', at, [edge.from, edge.to], `${label} appears twice (graph.edges[${previous}] and graph.edges[${k}])`);
      return;
    }
    seen.set(key, k);
    valid.push(edge);
    const from = parallelism.get(edge.from) ?? 1;
    const to = parallelism.get(edge.to) ?? 1;
    if (edge.kind === 'forward' && from !== to) {
      add(
        'parallelism_mismatch',
        at,
        [edge.from, edge.to],
        `forward ${label} joins nodes of different parallelism (${from} and ${to}); use a shuffle edge or equal parallelism`,
      );
    }
  });

  // Inputs and outputs by operator kind.
  const inputs = new Map<string, string[]>();
  const outputs = new Map<string, string[]>();
  for (const edge of valid) {
    pushTo(inputs, edge.to, edge.from);
    pushTo(outputs, edge.from, edge.to);
  }
  for (const [id, spec] of specs) {
    const at = ['graph', 'nodes', firstIndex.get(id) ?? 0];
    const ins = inputs.get(id) ?? [];
    const outs = outputs.get(id) ?? [];
    if (spec.kind === 'source' && ins.length > 0) {
      add('source_with_inputs', at, [id], `source node "${id}" has inputs (from ${ins.join(', ')}); a source cannot have inputs`);
    }
    if (spec.kind !== 'source' && ins.length === 0) {
      add('missing_inputs', at, [id], `node "${id}" has no inputs; only a source may have no inputs`);
    }
    if (spec.kind === 'sink' && outs.length > 0) {
      add('sink_with_outputs', at, [id], `sink node "${id}" has outputs (to ${outs.join(', ')}); a sink cannot have outputs`);
    }
  }

  for (const cycle of findCycles([...firstIndex.keys()], valid)) {
    const at = ['graph', 'nodes', firstIndex.get(cycle[0] ?? '') ?? 0];
    add('cycle', at, cycle, `the graph has a cycle: ${[...cycle, cycle[0]].join(' → ')}`);
  }
  return problems;
}

function pushTo(map: Map<string, string[]>, key: string, value: string): void {
  const list = map.get(key);
  if (list === undefined) map.set(key, [value]);
  else list.push(value);
}

function configProblems(schema: z.ZodType, config: unknown, path: readonly PropertyKey[]): string[] {
  try {
    const result = parseReportingInput(schema, config);
    return result.success ? [] : issueLines(result.error.issues, path);
  } catch (err) {
    return [`${formatPath(path)}: config check failed: ${err instanceof Error ? err.message : String(err)}`];
  }
}

/**
 * One cycle per strongly connected component that has one (Tarjan, iterative so deep graphs do not
 * overflow the stack). Each cycle lists its nodes in edge order, starting from the first in the graph.
 */
export function findCycles(nodeIds: readonly string[], edges: readonly GraphEdge[]): string[][] {
  const successors = new Map<string, string[]>(nodeIds.map((id) => [id, []]));
  for (const edge of edges) successors.get(edge.from)?.push(edge.to);
  const order = new Map(nodeIds.map((id, i) => [id, i]));
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const onStack = new Set<string>();
  const stack: string[] = [];
  const components: string[][] = [];
  let counter = 0;

  for (const root of nodeIds) {
    if (index.has(root)) continue;
    const work: Array<{ id: string; next: number }> = [{ id: root, next: 0 }];
    index.set(root, counter);
    low.set(root, counter++);
    stack.push(root);
    onStack.add(root);
    while (work.length > 0) {
      const frame = work[work.length - 1]!;
      const succ = successors.get(frame.id) ?? [];
      if (frame.next < succ.length) {
        const to = succ[frame.next++]!;
        if (!index.has(to)) {
          index.set(to, counter);
          low.set(to, counter++);
          stack.push(to);
          onStack.add(to);
          work.push({ id: to, next: 0 });
        } else if (onStack.has(to)) {
          low.set(frame.id, Math.min(low.get(frame.id)!, index.get(to)!));
        }
        continue;
      }
      work.pop();
      const parent = work[work.length - 1];
      if (parent !== undefined) low.set(parent.id, Math.min(low.get(parent.id)!, low.get(frame.id)!));
      if (low.get(frame.id) === index.get(frame.id)) {
        const component: string[] = [];
        let id: string | undefined;
        do {
          id = stack.pop()!;
          onStack.delete(id);
          component.push(id);
        } while (id !== frame.id);
        components.push(component);
      }
    }
  }

  const cycles: string[][] = [];
  for (const component of components) {
    const members = new Set(component);
    const start = component.reduce((a, b) => ((order.get(a) ?? 0) <= (order.get(b) ?? 0) ? a : b));
    if (component.length === 1 && !(successors.get(start) ?? []).includes(start)) continue;
    cycles.push(shortestCycle(start, members, successors));
  }
  return cycles.sort((a, b) => (order.get(a[0]!) ?? 0) - (order.get(b[0]!) ?? 0));
}

/** Breadth-first from `start` back to itself inside its component. */
function shortestCycle(start: string, members: ReadonlySet<string>, successors: ReadonlyMap<string, string[]>): string[] {
  const parent = new Map<string, string>();
  const queue = [start];
  for (let head = 0; head < queue.length; head++) {
    const id = queue[head]!;
    for (const to of successors.get(id) ?? []) {
      if (!members.has(to)) continue;
      if (to === start) {
        const path = [id];
        while (path[0] !== start) path.unshift(parent.get(path[0]!)!);
        return path;
      }
      if (!parent.has(to)) {
        parent.set(to, id);
        queue.push(to);
      }
    }
  }
  return [start];
}
