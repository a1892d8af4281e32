/**
 * A pipeline's dataflow graph as a small SVG: each node a box with its id, operator and parallelism, each
 * edge an arrow labelled with its kind (shuffle dashed). Nodes are laid out in columns by their distance
 * from a source, left to right. Nodes and edges with a problem are outlined and carry it as a title.
 * Used by the create page's preview; any page that shows a graph may use it.
 */

export interface GraphNodeView {
  id: string;
  operator: string;
  parallelism: number;
  /** Shown on the node (outline, ⚠ and a title): what is wrong with it. */
  problem?: string | undefined;
}

export interface GraphEdgeView {
  from: string;
  to: string;
  kind: string;
  problem?: string | undefined;
}

export interface PipelineGraphProps {
  nodes: readonly GraphNodeView[];
  edges: readonly GraphEdgeView[];
  /** The accessible name; default "Pipeline graph". */
  label?: string;
}

const NODE_W = 168;
const NODE_H = 58;
const GAP_X = 84;
const GAP_Y = 26;
const PAD = 12;

interface Placed {
  node: GraphNodeView;
  x: number;
  y: number;
}

/** Column of each node: the longest path from a node without inputs (a cycle is cut where it closes). */
export function layers(nodes: readonly GraphNodeView[], edges: readonly GraphEdgeView[]): Map<string, number> {
  const ids = new Set(nodes.map((n) => n.id));
  const inputs = new Map<string, string[]>();
  for (const edge of edges) {
    if (!ids.has(edge.from) || !ids.has(edge.to)) continue;
    inputs.set(edge.to, [...(inputs.get(edge.to) ?? []), edge.from]);
  }
  const layer = new Map<string, number>();
  const visiting = new Set<string>();
  const depth = (id: string): number => {
    const known = layer.get(id);
    if (known !== undefined) return known;
    if (visiting.has(id)) return 0;
    visiting.add(id);
    let d = 0;
    for (const from of inputs.get(id) ?? []) d = Math.max(d, depth(from) + 1);
    visiting.delete(id);
    layer.set(id, d);
    return d;
  };
  for (const node of nodes) depth(node.id);
  return layer;
}

function place(nodes: readonly GraphNodeView[], edges: readonly GraphEdgeView[]): { placed: Map<string, Placed>; width: number; height: number } {
  const layerOf = layers(nodes, edges);
  const columns: GraphNodeView[][] = [];
  const seen = new Set<string>();
  for (const node of nodes) {
    if (seen.has(node.id)) continue; // a duplicate id: drawn once
    seen.add(node.id);
    const l = layerOf.get(node.id) ?? 0;
    (columns[l] ??= []).push(node);
  }
  const rows = Math.max(1, ...columns.map((c) => c?.length ?? 0));
  const height = PAD * 2 + rows * NODE_H + (rows - 1) * GAP_Y;
  const placed = new Map<string, Placed>();
  columns.forEach((column, l) => {
    if (column === undefined) return;
    const columnHeight = column.length * NODE_H + (column.length - 1) * GAP_Y;
    const top = (height - columnHeight) / 2;
    column.forEach((node, r) => placed.set(node.id, { node, x: PAD + l * (NODE_W + GAP_X), y: top + r * (NODE_H + GAP_Y) }));
  });
  const width = PAD * 2 + columns.length * NODE_W + Math.max(0, columns.length - 1) * GAP_X;
  return { placed, width, height };
}

/** `count` with 15+ characters of id: cut with an ellipsis so the box holds it. */
const fit = (text: string, max: number) => (text.length > max ? `${text.slice(0, max - 1)}…` : text);

export function PipelineGraph({ nodes, edges, label = 'Pipeline graph' }: PipelineGraphProps) {
  if (nodes.length === 0) return null;
  const { placed, width, height } = place(nodes, edges);
  const summary = `${label}: ${nodes.length} ${nodes.length === 1 ? 'node' : 'nodes'}, ${edges.length} ${edges.length === 1 ? 'edge' : 'edges'}`;
  return (
    <div class="pipeline-graph">
      <svg viewBox={`0 0 ${width} ${height}`} width={width} height={height} role="img" aria-label={summary}>
        <defs>
          <marker id="pg-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">
            <path d="M 0 0 L 10 5 L 0 10 z" class="pg-arrowhead" />
          </marker>
        </defs>
        {edges.map((edge, k) => {
          const from = placed.get(edge.from);
          const to = placed.get(edge.to);
          if (from === undefined || to === undefined) return null;
          const x1 = from.x + NODE_W;
          const y1 = from.y + NODE_H / 2;
          const x2 = to.x;
          const y2 = to.y + NODE_H / 2;
          // A backward edge (a cycle) bends below the boxes instead of crossing them.
          const back = x2 <= x1;
          const d = back
            ? `M ${x1} ${y1} C ${x1 + 40} ${y1 + NODE_H}, ${x2 - 40} ${y2 + NODE_H}, ${x2} ${y2}`
            : `M ${x1} ${y1} C ${(x1 + x2) / 2} ${y1}, ${(x1 + x2) / 2} ${y2}, ${x2} ${y2}`;
          const mx = (x1 + x2) / 2;
          const my = back ? Math.max(y1, y2) + NODE_H * 0.75 : (y1 + y2) / 2 - 6;
          const cls = `pg-edge pg-${edge.kind === 'shuffle' ? 'shuffle' : 'forward'}${edge.problem === undefined ? '' : ' pg-problem'}`;
          return (
            <g key={`e${k}`} class={cls} data-edge={`${edge.from}->${edge.to}`}>
              {edge.problem !== undefined && <title>{edge.problem}</title>}
              <path d={d} marker-end="url(#pg-arrow)" />
              <text x={mx} y={my} text-anchor="middle">
                {edge.problem === undefined ? edge.kind : `⚠ ${edge.kind}`}
              </text>
            </g>
          );
        })}
        {[...placed.values()].map(({ node, x, y }) => (
          <g key={node.id} class={node.problem === undefined ? 'pg-node' : 'pg-node pg-problem'} data-node={node.id} transform={`translate(${x} ${y})`}>
            <title>{node.problem === undefined ? `${node.id}: ${node.operator}, parallelism ${node.parallelism}` : `${node.id}: ${node.problem}`}</title>
            <rect width={NODE_W} height={NODE_H} rx="6" />
            <text x="10" y="23" class="pg-id">
              {node.problem === undefined ? fit(node.id, 18) : `⚠ ${fit(node.id, 16)}`}
            </text>
            <text x="10" y="44" class="pg-op">
              {fit(node.operator, 14)} ×{node.parallelism}
            </text>
          </g>
        ))}
      </svg>
    </div>
  );
}
