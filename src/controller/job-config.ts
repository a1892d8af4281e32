/**
 * The job's desired config as the controller keeps it (JobConfigRecord), and how requests change it:
 * from a pipeline, by a partial update, and whether an update changes anything at all. Pure mapping.
 */
import { randomBytes } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import { DEFAULT_CONFIG } from '../../machines/job/policy.js';
import { TERMINAL_STATES, type DesiredConfig, type JobState } from '../../machines/job/types.js';
import { pipelineSchema, RequestRejected, type ConfigUpdate, type Pipeline } from '../protocol/index.js';
import type { JobConfigRecord, JobRecord } from '../store/index.js';
import { durationMsFromMicros } from '../shared/micros.js';
import type { RuntimeSpec } from './job-runtime.js';

/** Time-ordered job ids: `job-` + base36 ms (fixed width) + random. */
export function newJobId(now = Date.now()): string {
  return `job-${now.toString(36).padStart(9, '0')}-${randomBytes(5).toString('hex')}`;
}

export function desired(config: JobConfigRecord): DesiredConfig {
  const { ignoreStateBeforeEpoch: _ignored, ...rest } = config;
  return rest;
}

/** The desired config of a new job. */
export function configFromPipeline(pipeline: Pipeline): JobConfigRecord {
  return {
    ...DEFAULT_CONFIG,
    parallelismOverrides: {},
    env: {},
    ...(pipeline.checkpoint_interval_micros === undefined ? {} : { checkpointIntervalMs: durationMsFromMicros(pipeline.checkpoint_interval_micros) }),
    ttlMs: pipeline.ttl_micros === undefined ? null : durationMsFromMicros(pipeline.ttl_micros),
    ignoreStateBeforeEpoch: null,
  };
}

/**
 * A partial config update applied to the current config. Throws `RequestRejected(invalid_pipeline)` for
 * nodes the graph lacks. `latestEpoch` is the newest epoch the job has started: a restart that ignores
 * state restores nothing older than the one after it, so the new run begins a new lineage.
 */
export function applyUpdate(current: JobConfigRecord, update: ConfigUpdate, nodeIds: readonly string[], latestEpoch: number): JobConfigRecord {
  const next: JobConfigRecord = { ...current, parallelismOverrides: { ...current.parallelismOverrides } };
  if (update.stop !== undefined) next.stop = update.stop;
  if (update.restart === true) {
    next.restartNonce = current.restartNonce + 1;
    next.restartMode = update.restart_mode ?? (update.ignore_state === true ? 'force' : 'safe');
    if (update.ignore_state === true) next.ignoreStateBeforeEpoch = latestEpoch + 1;
  } else if (update.restart_mode !== undefined) {
    next.restartMode = update.restart_mode;
  }
  if (update.parallelism !== undefined) {
    next.parallelismOverrides = Object.fromEntries(nodeIds.map((id) => [id, update.parallelism!]));
  }
  if (update.parallelism_overrides !== undefined) {
    const unknown = Object.keys(update.parallelism_overrides).filter((id) => !nodeIds.includes(id));
    if (unknown.length > 0) throw new RequestRejected('invalid_pipeline', `parallelism_overrides: no such node: ${unknown.join(', ')}`);
    next.parallelismOverrides = { ...update.parallelism_overrides };
  }
  if (update.checkpoint_interval_micros !== undefined) next.checkpointIntervalMs = durationMsFromMicros(update.checkpoint_interval_micros);
  if (update.ttl_micros !== undefined) next.ttlMs = update.ttl_micros === null ? null : durationMsFromMicros(update.ttl_micros);
  return next;
}

/**
 * Whether a config update would change nothing the job acts on: the same config, or (for a job resting in
 * Stopped, Finished or Failed) only another way to stop, which a job that is not running has no use for.
 */
export function changesNothing(current: JobConfigRecord, next: JobConfigRecord, state: JobState | undefined): boolean {
  if (isDeepStrictEqual(current, next)) return true;
  if (state === undefined || !TERMINAL_STATES.includes(state) || current.stop === 'none' || next.stop === 'none') return false;
  return isDeepStrictEqual({ ...current, stop: next.stop }, next);
}

export function specOf(record: JobRecord): { pipeline: Pipeline; runtime: RuntimeSpec } {
  const { created_at: _createdAt, ...body } = record.spec;
  const decoded = pipelineSchema.safeParse(body);
  if (!decoded.success) throw new Error(`stored spec does not decode as a pipeline: ${decoded.error.message}`);
  return { pipeline: decoded.data, runtime: { graph: decoded.data.graph, parallelism: decoded.data.parallelism } };
}
