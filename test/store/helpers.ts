import type { NatsConnection } from '@nats-io/transport-node';
import { DEFAULT_CONFIG } from '../../machines/job/policy.js';
import type { JobConfigRecord, LogEvent, StoreOptions } from '../../src/store/index.js';

/** Short deadlines so failures show up fast; generous enough for a loaded 2-core CI box. */
export const FAST: StoreOptions = { requestTimeoutMs: 1_000, operationTimeoutMs: 8_000 };

export function config(overrides: Partial<JobConfigRecord> = {}): JobConfigRecord {
  return { ...DEFAULT_CONFIG, ignoreStateBeforeEpoch: null, ...overrides };
}

export function spec(name = 'pipeline') {
  return { name, graph: { nodes: [{ id: 'src', operator: 'kafka_source' }], edges: [] }, parallelism: 2, checkpoint_interval_micros: 10_000_000 };
}

let counter = 0;
/** A job id unique within the test run (tests of one file share a server). */
export function jobId(prefix = 'job'): string {
  counter++;
  return `${prefix}-${process.pid}-${counter}`;
}

export function transition(generation: number, at = Date.now()): LogEvent {
  return { kind: 'transition', from: 'Scheduling', to: 'Running', generation, at };
}

export function error(message: string, at = Date.now()): LogEvent {
  return { kind: 'error', message, domain: 'user', hint: 'no_retry', operator_id: 'src', subtask_index: 0, at };
}

export function warning(message: string, at = Date.now()): LogEvent {
  return { kind: 'warning', message, at };
}

export async function closeAll(...ncs: (NatsConnection | undefined)[]): Promise<void> {
  await Promise.all(
    ncs.map(async (nc) => {
      if (nc !== undefined) await nc.close().catch(() => undefined);
    }),
  );
}
