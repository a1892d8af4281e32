/**
 * The job's pipeline graph: the shared SVG drawing (components/pipeline-graph.tsx: nodes in columns left
 * to right with id, operator and parallelism; edges labelled with their kind, shuffles dashed; it keeps its
 * size and scrolls sideways on a phone), with each node's parallelism as the job runs it, a line on what
 * the edge kinds mean, and the same graph as a list.
 */
import { PipelineGraph } from '../../components/pipeline-graph.js';
import type { PipelineResponse } from '../../types.js';

type GraphNode = PipelineResponse['graph']['nodes'][number];

/** The parallelism a node runs with: the job's override, else the shared value, else the node's own. */
export function parallelismOf(pipeline: PipelineResponse, node: GraphNode): number {
  return pipeline.parallelism_overrides[node.id] ?? pipeline.parallelism ?? node.parallelism;
}

export function JobGraph({ pipeline }: { pipeline: PipelineResponse }) {
  const { nodes, edges } = pipeline.graph;
  const views = nodes.map((node) => ({ id: node.id, operator: node.operator, parallelism: parallelismOf(pipeline, node) }));
  return (
    <section class="job-graph" aria-labelledby="job-graph-title">
      <h2 id="job-graph-title">Pipeline</h2>
      <p class="muted small">
        Each box: operator id, operator × parallelism. A <strong>forward</strong> edge feeds subtask i to subtask i; a{' '}
        <strong>shuffle</strong> edge (dashed) feeds every subtask, by key.
      </p>
      <PipelineGraph nodes={views} edges={edges} label={`Pipeline ${pipeline.name}`} />
      <details class="graph-list">
        <summary>As a list</summary>
        <ul class="small">
          {views.map((node) => {
            const out = edges.filter((edge) => edge.from === node.id);
            return (
              <li key={node.id}>
                <code>{node.id}</code>: {node.operator} × {node.parallelism}
                {out.length === 0 ? '' : ` → ${out.map((edge) => `${edge.to} (${edge.kind})`).join(', ')}`}
              </li>
            );
          })}
        </ul>
      </details>
    </section>
  );
}
