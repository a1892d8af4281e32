import { effectiveParallelism, type Graph } from '../../protocol/index.js';
import type { SubtaskSpec } from './runner.js';

/** `node/subtask`, the key of per-subtask snapshots. */
export const subtaskKey = (nodeId: string, subtaskIndex: number) => `${nodeId}/${subtaskIndex}`;

/**
 * Every subtask of a resolved graph (parallelism already applied), with its inputs and outputs;
 * `restored` maps `node/subtask` to the snapshot to restore from.
 */
export function subtaskSpecs(graph: Graph, jobId: string, generation: number, restored: ReadonlyMap<string, unknown> = new Map()): SubtaskSpec[] {
  const parallelism = effectiveParallelism({ graph });
  const p = (id: string) => parallelism.get(id) ?? 1;
  const specs: SubtaskSpec[] = [];
  for (const node of graph.nodes) {
    const inputs = graph.edges.filter((e) => e.to === node.id).map((e) => ({ from: e.from, parallelism: p(e.from) }));
    const outputs = graph.edges.filter((e) => e.from === node.id).map((e) => ({ to: e.to, parallelism: p(e.to), kind: e.kind }));
    for (let i = 0; i < p(node.id); i++) {
      const state = restored.get(subtaskKey(node.id, i));
      specs.push({
        jobId,
        generation,
        nodeId: node.id,
        subtaskIndex: i,
        parallelism: p(node.id),
        operator: node.operator,
        config: node.config,
        inputs,
        outputs,
        ...(state === undefined ? {} : { restored: state }),
      });
    }
  }
  return specs;
}
