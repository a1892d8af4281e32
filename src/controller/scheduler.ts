/**
 * Placing a generation's subtasks on workers. Pure and deterministic.
 *
 * The slot model (the reference's, `states/scheduling.rs`):
 * - A job needs S = the largest node parallelism slots (after overrides).
 * - Slot k hosts subtask k of every node whose parallelism is greater than k. So a slot runs one
 *   subtask of each node, and the two ends of a forward edge (equal parallelism, subtask i → i)
 *   always share a slot — and thus a worker, keeping forward edges local.
 * - Slots 0 … S−1 are laid over the eligible workers in worker-id order, each worker taking as many
 *   consecutive slots as it has free. That is exactly "each node's subtasks fill the workers in
 *   order, up to each worker's slot count".
 * - Eligible: at least one free slot and every operator the graph uses. Too few free slots in
 *   total → `JobError(not_enough_slots)`, which the job machine retries until its startup deadline.
 */
import type { Assignment, Graph } from '../protocol/index.js';
import { effectiveParallelism } from '../protocol/index.js';
import { JobError } from '../../machines/job/types.js';
import type { Candidate } from './registry.js';

export interface SubtaskRef {
  nodeId: string;
  subtaskIndex: number;
}

export interface ScheduleInputGraph {
  graph: Pick<Graph, 'nodes'> & { edges?: Graph['edges'] };
  /** A pipeline-wide parallelism, as in `pipelineSchema`. */
  parallelism?: number | undefined;
}

export interface SubtaskPlan {
  /** Worker id → its subtasks, by node (graph order) then subtask index. Only workers that got work. */
  assignments: Map<string, SubtaskRef[]>;
  /** Worker id → slots it hosts (what `WorkerRegistry.allocate` takes). */
  slots: Map<string, number>;
  /** Node id → parallelism this generation runs with. */
  parallelism: Record<string, number>;
  slotsNeeded: number;
}

/**
 * Resolves the parallelism (graph, then pipeline-wide `parallelism`, then per-node overrides) and
 * places every subtask. Throws `JobError`: `fatal` (domain user) for an override naming an unknown
 * node or a forward edge whose ends end up with different parallelism; `not_enough_slots` with
 * `need N slots, M free on K workers` (K: the workers offering every operator) when they cannot host the job.
 */
export function assignSubtasks(
  pipeline: ScheduleInputGraph,
  overrides: Readonly<Record<string, number>>,
  candidates: readonly Candidate[],
): SubtaskPlan {
  const resolved = effectiveParallelism({ graph: { nodes: pipeline.graph.nodes, edges: [] }, parallelism: pipeline.parallelism });
  for (const [nodeId, p] of Object.entries(overrides)) {
    if (!resolved.has(nodeId)) {
      throw new JobError({ kind: 'fatal', domain: 'user', message: `parallelism override for unknown node "${nodeId}"` });
    }
    if (!Number.isSafeInteger(p) || p < 1) {
      throw new JobError({ kind: 'fatal', domain: 'user', message: `parallelism override for node "${nodeId}" must be an integer ≥ 1, got ${p}` });
    }
    resolved.set(nodeId, p);
  }
  for (const edge of pipeline.graph.edges ?? []) {
    const from = resolved.get(edge.from);
    const to = resolved.get(edge.to);
    if (edge.kind === 'forward' && from !== undefined && to !== undefined && from !== to) {
      throw new JobError({
        kind: 'fatal',
        domain: 'user',
        message: `forward edge ${edge.from} → ${edge.to} joins nodes of different parallelism (${from} and ${to})`,
      });
    }
  }
  const parallelism = Object.fromEntries(resolved);
  const slotsNeeded = Math.max(...resolved.values());

  const needed = new Set(pipeline.graph.nodes.map((node) => node.operator));
  const seen = new Set<string>();
  /** Workers offering every operator the graph uses; those with a free slot are eligible. */
  let offering = 0;
  const eligible: Array<{ workerId: string; free: number }> = [];
  for (const candidate of candidates) {
    if (seen.has(candidate.worker_id)) throw new Error(`worker ${candidate.worker_id} appears twice among the candidates`);
    seen.add(candidate.worker_id);
    const free = Number.isSafeInteger(candidate.free_slots) ? candidate.free_slots : 0;
    const offers = new Set(candidate.operators);
    if (![...needed].every((op) => offers.has(op))) continue;
    offering++;
    if (free > 0) eligible.push({ workerId: candidate.worker_id, free });
  }
  eligible.sort((a, b) => (a.workerId < b.workerId ? -1 : a.workerId > b.workerId ? 1 : 0));
  const totalFree = eligible.reduce((sum, w) => sum + w.free, 0);
  if (totalFree < slotsNeeded) {
    throw new JobError({
      kind: 'not_enough_slots',
      message: `need ${slotsNeeded} slot${slotsNeeded === 1 ? '' : 's'}, ${totalFree} free on ${offering} worker${offering === 1 ? '' : 's'}`,
    });
  }

  const assignments = new Map<string, SubtaskRef[]>();
  const slots = new Map<string, number>();
  let next = 0;
  for (const { workerId, free } of eligible) {
    if (next >= slotsNeeded) break;
    const take = Math.min(free, slotsNeeded - next);
    const first = next;
    next += take;
    const refs: SubtaskRef[] = [];
    for (const node of pipeline.graph.nodes) {
      const p = resolved.get(node.id) ?? 1;
      for (let k = first; k < first + take && k < p; k++) refs.push({ nodeId: node.id, subtaskIndex: k });
    }
    assignments.set(workerId, refs);
    slots.set(workerId, take);
  }
  return { assignments, slots, parallelism, slotsNeeded };
}

/** One worker's subtasks in the shape of `startExecutionSchema`'s `program.assignments`. */
export function toStartAssignments(refs: readonly SubtaskRef[]): Assignment[] {
  const byNode = new Map<string, number[]>();
  for (const { nodeId, subtaskIndex } of refs) {
    const list = byNode.get(nodeId);
    if (list === undefined) byNode.set(nodeId, [subtaskIndex]);
    else list.push(subtaskIndex);
  }
  return [...byNode].map(([node_id, subtasks]) => ({ node_id, subtasks: subtasks.sort((a, b) => a - b) }));
}
