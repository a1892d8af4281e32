import type { Graph, OperatorSpec } from '../protocol/index.js';

/**
 * What a pipeline may use: the operators the live workers offer, known ones with their catalogue entry,
 * unknown ones (a worker's own operators) with the kind their place in `graph` implies. With no worker
 * registered yet (a controller that just restarted) it is the whole catalogue, so Scheduling waits for
 * slots rather than failing the job for operators nobody offers yet.
 */
export function offeredOperatorSpecs(
  offered: ReadonlySet<string>,
  catalogue: ReadonlyMap<string, OperatorSpec>,
  graph: Pick<Graph, 'nodes' | 'edges'>,
): Map<string, OperatorSpec> {
  if (offered.size === 0) return new Map(catalogue);
  const inputs = new Set(graph.edges.map((e) => e.to));
  const outputs = new Set(graph.edges.map((e) => e.from));
  const out = new Map<string, OperatorSpec>();
  for (const name of offered) {
    const known = catalogue.get(name);
    if (known !== undefined) {
      out.set(name, known);
      continue;
    }
    const nodes = graph.nodes.filter((n) => n.operator === name);
    const kind = nodes.length > 0 && nodes.every((n) => !inputs.has(n.id)) ? 'source' : nodes.length > 0 && nodes.every((n) => !outputs.has(n.id)) ? 'sink' : 'operator';
    out.set(name, { kind });
  }
  return out;
}
