/**
 * The pipelines the tests and benches run, built in one place. Two shapes:
 * - impulse → [map-key →] count → sink (preview unless told): keyed through map-key or not, unbounded or
 *   bounded (the source stops after `events`);
 * - impulse → sink (log unless told) over a forward edge, so that slot k hosts impulse[k] and the sink's k.
 * Node ids are `src`, `key`, `cnt` and `out`. Every node carries its parallelism and config, so the graphs
 * are `Graph`s as the workers take them as well as pipelines as `weir submit` takes them.
 */
import type { EdgeKind, Graph, GraphNode, JsonValue, PipelineInput } from '../../src/protocol/index.js';

type Config = Record<string, JsonValue>;

export interface SourceOptions {
  /** Impulse events per second over all its subtasks; `'max'`: as fast as the job goes. Default 50. */
  rate?: number | 'max';
  /** A bounded source: it sends this many events, then the job finishes. */
  events?: number;
}

export interface ImpulseCountOptions extends SourceOptions {
  /** Key the events by `counter % modulo` through map-key before counting. */
  modulo?: number;
  /** map-key's whole config, for keys other than `modulo`; implies map-key. */
  mapKey?: Config;
  /** The sink after count: its operator and config. Default preview. */
  sink?: { operator: string; config?: Config };
  /** The edge from count into the sink. Default shuffle. */
  sinkEdge?: EdgeKind;
  /** A node's own parallelism (default 1), by node id. */
  nodeParallelism?: Partial<Record<'src' | 'key' | 'cnt' | 'out', number>>;
}

export interface ImpulseToSinkOptions extends SourceOptions {
  /** Default log. */
  sink?: string;
  sinkConfig?: Config;
  /** The source's operator, to name one no worker has. Default impulse. */
  source?: string;
  /** Both nodes' own parallelism. Default 1. */
  nodeParallelism?: number;
}

export interface PipelineOptions {
  name?: string;
  /** Every node's parallelism (the pipeline-wide `parallelism`, over the nodes' own). */
  parallelism?: number;
  /** Default 1 s. */
  checkpointIntervalMs?: number;
}

function impulseConfig({ rate = 50, events }: SourceOptions): Config {
  return { ...(rate === 'max' ? {} : { rate_per_sec: rate }), ...(events === undefined ? {} : { events }) };
}

/** impulse → [map-key →] count → preview (or `sink`). */
export function impulseCountGraph(options: ImpulseCountOptions = {}): Graph {
  const { modulo, mapKey = modulo === undefined ? undefined : { modulo }, sink = { operator: 'preview' }, sinkEdge = 'shuffle', nodeParallelism = {} } = options;
  const node = (id: keyof typeof nodeParallelism, operator: string, config: Config = {}): GraphNode => ({ id, operator, parallelism: nodeParallelism[id] ?? 1, config });
  const nodes = [
    node('src', 'impulse', impulseConfig(options)),
    ...(mapKey === undefined ? [] : [node('key', 'map-key', mapKey)]),
    node('cnt', 'count'),
    node('out', sink.operator, sink.config),
  ];
  const edges: Graph['edges'] = [
    ...(mapKey === undefined
      ? [{ from: 'src', to: 'cnt', kind: 'shuffle' as const }]
      : [
          { from: 'src', to: 'key', kind: 'forward' as const },
          { from: 'key', to: 'cnt', kind: 'shuffle' as const },
        ]),
    { from: 'cnt', to: 'out', kind: sinkEdge },
  ];
  return { nodes, edges };
}

/** impulse → log (or `sink`) over a forward edge. */
export function impulseToSinkGraph(options: ImpulseToSinkOptions = {}): Graph {
  const { sink = 'log', sinkConfig = {}, source = 'impulse', nodeParallelism: parallelism = 1 } = options;
  return {
    nodes: [
      { id: 'src', operator: source, parallelism, config: impulseConfig(options) },
      { id: 'out', operator: sink, parallelism, config: sinkConfig },
    ],
    edges: [{ from: 'src', to: 'out', kind: 'forward' }],
  };
}

/** `graph` as `weir submit` takes it (with `v`). */
export function pipelineOf(graph: Graph, { name = 'counter', parallelism, checkpointIntervalMs = 1_000 }: PipelineOptions = {}): PipelineInput {
  return { v: 1, name, graph, ...(parallelism === undefined ? {} : { parallelism }), checkpoint_interval_micros: checkpointIntervalMs * 1000 };
}

/** impulse → [map-key →] count → preview (or `sink`), as `weir submit` takes it. */
export function impulseCountPipeline(options: ImpulseCountOptions & PipelineOptions = {}): PipelineInput {
  return pipelineOf(impulseCountGraph(options), options);
}

/** impulse → log (or `sink`), as `weir submit` takes it. */
export function impulseToSinkPipeline(options: ImpulseToSinkOptions & PipelineOptions = {}): PipelineInput {
  return pipelineOf(impulseToSinkGraph(options), options);
}
