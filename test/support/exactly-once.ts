/**
 * The exactly-once pipeline of the fault tests (test/faults/processes.test.ts) and its check, for tests
 * elsewhere: impulse → map-key (counter % 7) → count → jetstream-sink, every node at parallelism 2, each
 * event ending as one message `{key, value: {key, count}, ts}`; the output is exact when every key's
 * counts are 1..n, each once, n being how many of the events have that key.
 */
import { jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { expect } from 'vitest';
import type { PipelineInput } from '../../src/protocol/index.js';
import { impulseCountPipeline } from './pipelines.js';

export const EXACTLY_ONCE_MODULO = 7;

export interface ExactlyOnceOptions {
  /** The bounded source's event count. */
  events: number;
  subject: string;
  /** The stream the sink creates when missing (R1); a test may create it itself first. */
  stream?: string;
  /** Events per second over the source's subtasks. Default 150. */
  rate?: number;
  /** Default 1 s. */
  checkpointIntervalMs?: number;
}

export function exactlyOncePipeline({ events, subject, stream, rate = 150, checkpointIntervalMs }: ExactlyOnceOptions): PipelineInput {
  return impulseCountPipeline({
    name: 'exactly-once',
    events,
    rate,
    modulo: EXACTLY_ONCE_MODULO,
    nodeParallelism: { src: 2, key: 2, cnt: 2, out: 2 },
    sink: { operator: 'jetstream-sink', config: { subject, ...(stream === undefined ? {} : { stream }) } },
    sinkEdge: 'forward',
    ...(checkpointIntervalMs === undefined ? {} : { checkpointIntervalMs }),
  });
}

export interface CountRow {
  key: string;
  count: number;
}

/** Every message of the stream, in order. */
export async function streamRows(nc: NatsConnection, stream: string): Promise<CountRow[]> {
  const jsm = await jetstreamManager(nc, { timeout: 5_000 });
  const { state } = await jsm.streams.info(stream);
  const rows: CountRow[] = [];
  for (let seq = state.first_seq; seq <= state.last_seq && state.messages > 0; seq++) {
    const msg = await jsm.streams.getMessage(stream, { seq });
    if (msg !== null) rows.push(msg.json<{ value: CountRow }>().value);
  }
  return rows;
}

/** Per key, the counts missing from the output and those in it more than once: empty when exact. */
export function countDefects(rows: readonly CountRow[], events: number): { key: string; missing: number[]; duplicated: number[]; unexpected: number[] }[] {
  const defects = [];
  for (let k = 0; k < EXACTLY_ONCE_MODULO; k++) {
    const n = Math.ceil((events - k) / EXACTLY_ONCE_MODULO);
    const seen = new Map<number, number>();
    for (const r of rows) if (r.key === String(k)) seen.set(r.count, (seen.get(r.count) ?? 0) + 1);
    const missing = Array.from({ length: n }, (_, i) => i + 1).filter((c) => !seen.has(c));
    const duplicated = [...seen].filter(([, times]) => times > 1).map(([c]) => c);
    const unexpected = [...seen.keys()].filter((c) => c < 1 || c > n);
    if (missing.length + duplicated.length + unexpected.length > 0) defects.push({ key: String(k), missing, duplicated, unexpected });
  }
  return defects;
}

/** Exactly once: `events` rows, and every key's counts 1..n, each once. */
export function expectExactCounts(rows: readonly CountRow[], events: number): void {
  expect(countDefects(rows, events), 'counts missing, duplicated or out of range, by key').toEqual([]);
  expect(rows).toHaveLength(events);
}
