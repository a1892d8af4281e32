/**
 * The operator API of a worker. An `OperatorFactory` is an `OperatorSpec` (kind + config schema), so
 * the `OPERATORS` registry is directly the `availableOperators` map of `validateGraph`. A factory makes
 * one `OperatorInstance` per subtask.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import type { z } from 'zod';
import type { CommitData, DataRecord, JsonValue, OperatorKind, OperatorSpec } from '../../protocol/index.js';

export interface OperatorContext {
  jobId: string;
  nodeId: string;
  subtaskIndex: number;
  parallelism: number;
  /** What `snapshot()` returned at the checkpoint this run restores from; absent on a fresh start. */
  restored?: unknown;
  /** Sends one record downstream (to every output edge). Not available to sinks. */
  emit(record: DataRecord): void;
  /** Preview rows: the runtime publishes them on `weir.jobs.<job>.output`. */
  output?(rows: JsonValue[]): void;
  /** The worker's connection, for sinks that write to NATS themselves. */
  nats?: NatsConnection;
  logger?: Logger;
}

export interface OperatorInstance {
  open(ctx: OperatorContext): void | Promise<void>;
  /** Non-sources: one input record. */
  process?(record: DataRecord): void | Promise<void>;
  /**
   * Sources: produce the next record(s) with `ctx.emit`, at most one record boundary per call, so the
   * runner can inject a barrier between two calls. Returns `false` once the source is exhausted.
   */
  next?(): boolean | Promise<boolean>;
  /** JSON-serialisable state at a barrier (nothing in flight inside the operator). */
  snapshot(): unknown;
  /**
   * Two-phase sinks, first phase: right after `snapshot()`, hands over what epoch `epoch` must make
   * visible (null: nothing). It travels in the checkpoint record until the epoch is committed.
   */
  prepareCommit?(epoch: number): CommitData | null;
  /**
   * Second phase, once the epoch's record is durable: makes `data` visible. It is sent again after a
   * restore that finds the epoch still committing, possibly to a new instance: it must be idempotent.
   */
  commit?(epoch: number, data: CommitData): Promise<void>;
  close(): void | Promise<void>;
}

export interface OperatorFactory<C = unknown> extends OperatorSpec {
  readonly name: string;
  readonly kind: OperatorKind;
  readonly config: z.ZodType<C>;
  create(config: C): OperatorInstance;
}

/** Helper so each operator file keeps its config type. */
export function defineOperator<C>(factory: OperatorFactory<C>): OperatorFactory<C> {
  return factory;
}
