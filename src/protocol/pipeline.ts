/**
 * The pipeline: the body of `weir.api.jobs.create` (and of the HTTP create call). Only the shapes
 * live here; `validateGraph` (graph.ts) checks a pipeline against the available operators.
 */
import { z } from 'zod';
import {
  checkpointIntervalSchema,
  idSchema,
  jsonObjectSchema,
  operatorNameSchema,
  parallelismSchema,
  ttlSchema,
  versionField,
} from './primitives.js';

export const EDGE_KINDS = ['forward', 'shuffle'] as const;
export const edgeKindSchema = z.enum(EDGE_KINDS);

export const graphNodeSchema = z.strictObject({
  id: idSchema,
  /** The operator's name, looked up among the workers' operators. */
  operator: operatorNameSchema,
  parallelism: parallelismSchema.default(1),
  config: jsonObjectSchema.default({}),
});

/** `forward`: subtask i feeds subtask i (equal parallelism). `shuffle`: every subtask feeds every subtask, by key. */
export const graphEdgeSchema = z.strictObject({
  from: idSchema,
  to: idSchema,
  kind: edgeKindSchema,
});

export const graphSchema = z.strictObject({
  nodes: z.array(graphNodeSchema).min(1),
  edges: z.array(graphEdgeSchema),
});

export const pipelineSchema = z.strictObject({
  /** Optional here only: a hand-written body may leave it out. */
  v: versionField.default(1),
  name: z.string().min(1).max(256),
  graph: graphSchema,
  /** Overrides the parallelism of every node. */
  parallelism: parallelismSchema.optional(),
  checkpoint_interval_micros: checkpointIntervalSchema.optional(),
  /** Previews: the job is stopped this long after it first started. */
  ttl_micros: ttlSchema.optional(),
});

export type EdgeKind = z.infer<typeof edgeKindSchema>;
export type GraphNode = z.infer<typeof graphNodeSchema>;
export type GraphEdge = z.infer<typeof graphEdgeSchema>;
export type Graph = z.infer<typeof graphSchema>;
/** A checked pipeline, defaults applied. */
export type Pipeline = z.infer<typeof pipelineSchema>;
/** What a client may send. */
export type PipelineInput = z.input<typeof pipelineSchema>;
