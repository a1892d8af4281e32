/**
 * The pipelines the tests submit, built in one place: an impulse source feeding a count that a preview
 * sink shows, keyed through map-key or not, unbounded or bounded (the source stops after `events`).
 */
export interface TestPipelineOptions {
  name?: string;
  /** Impulse events per second. Default 50. */
  rate?: number;
  /** A bounded source: it sends this many events, then the job finishes. */
  events?: number;
  /** Key the events by `counter % modulo` through map-key before counting. */
  modulo?: number;
  /** Every node's parallelism (the pipeline-wide `parallelism`). */
  parallelism?: number;
  /** Default 1 s. */
  checkpointIntervalMs?: number;
}

/** impulse → [map-key →] count → preview, as `weir submit` takes it (with `v`). */
export function impulseCountPipeline(options: TestPipelineOptions = {}): Record<string, unknown> {
  const { name = 'counter', rate = 50, events, modulo, parallelism, checkpointIntervalMs = 1_000 } = options;
  const keyed = modulo !== undefined;
  const nodes = [
    { id: 'src', operator: 'impulse', config: { rate_per_sec: rate, ...(events === undefined ? {} : { events }) } },
    ...(keyed ? [{ id: 'key', operator: 'map-key', config: { modulo } }] : []),
    { id: 'cnt', operator: 'count' },
    { id: 'out', operator: 'preview' },
  ];
  const edges = [
    ...(keyed ? [{ from: 'src', to: 'key', kind: 'forward' }, { from: 'key', to: 'cnt', kind: 'shuffle' }] : [{ from: 'src', to: 'cnt', kind: 'shuffle' }]),
    { from: 'cnt', to: 'out', kind: 'shuffle' },
  ];
  return {
    v: 1,
    name,
    graph: { nodes, edges },
    ...(parallelism === undefined ? {} : { parallelism }),
    checkpoint_interval_micros: checkpointIntervalMs * 1000,
  };
}
