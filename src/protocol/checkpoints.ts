/**
 * The checkpoint API types (reference §7), shared by the controller, the CLI and the HTTP layer, and the
 * requests that read a job's checkpoint history and one checkpoint's details over NATS. Times are µs
 * since the Unix epoch; an open span has `finish_time: null`.
 */
import { z } from 'zod';
import { countSchema, idSchema, microsSchema, versionField } from './primitives.js';
import { nowMicros } from '../shared/micros.js';

/** The job-level spans of one checkpoint. */
export const JOB_CHECKPOINT_EVENT_TYPES = ['Checkpointing', 'CheckpointingOperators', 'WritingMetadata', 'Compacting', 'Committing'] as const;
export type JobCheckpointEventType = (typeof JOB_CHECKPOINT_EVENT_TYPES)[number];

/** The per-subtask spans, derived from the subtask's progress events. */
export const SUBTASK_CHECKPOINT_EVENT_TYPES = ['Alignment', 'Sync', 'Async', 'Committing'] as const;
export type SubtaskCheckpointEventType = (typeof SUBTASK_CHECKPOINT_EVENT_TYPES)[number];

const DESCRIPTIONS: Record<JobCheckpointEventType | SubtaskCheckpointEventType, string> = {
  Checkpointing: 'the whole checkpoint, from the first barrier to the durable record',
  CheckpointingOperators: 'every operator snapshotting its state',
  WritingMetadata: 'writing the checkpoint record',
  Compacting: 'merging older state',
  Committing: 'sinks committing their pending output (two-phase commit)',
  Alignment: 'waiting for the barrier on every input',
  Sync: 'the synchronous part of the snapshot',
  Async: 'uploading the snapshot',
};

/** `manual`: triggered by a client (POST …/checkpoints), beyond the reference's two. */
export const CHECKPOINT_TYPES = ['scheduled', 'stopping', 'manual'] as const;
export type CheckpointType = (typeof CHECKPOINT_TYPES)[number];

/** A checkpoint's life: inprogress → (committing →) ready, or failed; retention later compacts it. */
export const CHECKPOINT_STATUSES = ['inprogress', 'committing', 'ready', 'failed', 'compacting', 'compacted'] as const;
export type CheckpointState = (typeof CHECKPOINT_STATUSES)[number];

/** The storage behind weir's checkpoints. */
export const CHECKPOINT_BACKEND = 'jetstream';

export const checkpointEventSpanSchema = z.strictObject({
  start_time: microsSchema,
  finish_time: microsSchema.nullable(),
  event: z.string(),
  description: z.string(),
});
export type CheckpointEventSpan = z.infer<typeof checkpointEventSpanSchema>;

export const checkpointSchema = z.strictObject({
  epoch: countSchema,
  generation: countSchema,
  backend: z.string(),
  checkpoint_type: z.enum(CHECKPOINT_TYPES),
  status: z.enum(CHECKPOINT_STATUSES),
  start_time: microsSchema,
  finish_time: microsSchema.nullable(),
  bytes: countSchema,
  events: z.array(checkpointEventSpanSchema),
  failure: z.string().nullable(),
});
export type Checkpoint = z.infer<typeof checkpointSchema>;

export const subtaskCheckpointGroupSchema = z.strictObject({
  index: countSchema,
  worker_id: idSchema.nullable(),
  bytes: countSchema,
  event_spans: z.array(checkpointEventSpanSchema),
});
export type SubtaskCheckpointGroup = z.infer<typeof subtaskCheckpointGroupSchema>;

export const operatorCheckpointGroupSchema = z.strictObject({
  operator_id: idSchema,
  bytes: countSchema,
  /** When the operator's last subtask completed, so its metadata could be written. */
  started_metadata_write: microsSchema.nullable(),
  finish_time: microsSchema.nullable(),
  subtasks: z.array(subtaskCheckpointGroupSchema),
});
export type OperatorCheckpointGroup = z.infer<typeof operatorCheckpointGroupSchema>;

/** Body of `weir.api.jobs.<job>.checkpoints`: the job's checkpoints, newest first. */
export const jobCheckpointsRequestSchema = z.strictObject({ v: versionField.default(1), include_failed: z.boolean().default(true) });
export const jobCheckpointsReplySchema = z.strictObject({ v: versionField, job_id: idSchema, data: z.array(checkpointSchema) });

/** Body of `weir.api.jobs.<job>.checkpoint`: one checkpoint with its per-operator, per-subtask details. */
export const checkpointDetailsRequestSchema = z.strictObject({ v: versionField.default(1), epoch: countSchema });
export const checkpointDetailsReplySchema = z.strictObject({
  v: versionField,
  job_id: idSchema,
  checkpoint: checkpointSchema,
  data: z.array(operatorCheckpointGroupSchema),
});

export type JobCheckpointsReply = z.infer<typeof jobCheckpointsReplySchema>;
export type CheckpointDetailsReply = z.infer<typeof checkpointDetailsReplySchema>;

/** A span being timed: `JobCheckpointSpan.now(event)` opens it, `finish()` closes it once. */
export class JobCheckpointSpan<E extends string = JobCheckpointEventType> {
  private constructor(
    readonly event: E,
    readonly startTime: number,
    private finishTime: number | null,
  ) {}

  /** Opens a span now (or at `at`, µs). */
  static now<E extends string = JobCheckpointEventType>(event: E, at: number = nowMicros()): JobCheckpointSpan<E> {
    return new JobCheckpointSpan(event, at, null);
  }

  /** A span known from its times (e.g. read back from a record). */
  static of<E extends string>(event: E, start: number, finish: number | null): JobCheckpointSpan<E> {
    return new JobCheckpointSpan(event, start, finish);
  }

  get finished(): boolean {
    return this.finishTime !== null;
  }

  get finish_time(): number | null {
    return this.finishTime;
  }

  /** Closes the span now (or at `at`, µs); a second call keeps the first finish. */
  finish(at: number = nowMicros()): this {
    if (this.finishTime === null) this.finishTime = Math.max(at, this.startTime);
    return this;
  }

  toEventSpan(): CheckpointEventSpan {
    return { start_time: this.startTime, finish_time: this.finishTime, event: this.event, description: describeSpan(this.event) };
  }
}

export function describeSpan(event: string): string {
  return (DESCRIPTIONS as Record<string, string>)[event] ?? event;
}

/** A subtask's progress as the controller saw it: worker times (µs) of each progress event. */
export interface SubtaskProgressTimes {
  started_alignment?: number;
  started_checkpointing?: number;
  finished_sync?: number;
  finished_commit?: number;
  /** The subtask's own start and finish of the checkpoint (from its completion). */
  start_time: number;
  finish_time: number | null;
}

/**
 * The reference's subtask spans: Alignment (alignment start → checkpoint start), Sync (checkpoint start →
 * sync done), Async (sync done → finish), Committing (finish → commit done). A span whose events are
 * missing (a source has no alignment; a subtask that is still running) is left out or open.
 */
export function subtaskSpans(p: SubtaskProgressTimes): CheckpointEventSpan[] {
  const spans: CheckpointEventSpan[] = [];
  const done = p.finish_time !== null;
  // A subtask that began aligning and reported nothing since is still waiting for its barriers.
  const checkpointStart = p.started_checkpointing ?? (done || p.started_alignment === undefined ? p.start_time : null);
  if (p.started_alignment !== undefined) spans.push(JobCheckpointSpan.of('Alignment', p.started_alignment, checkpointStart).toEventSpan());
  if (checkpointStart === null) return spans;
  if (p.finished_sync !== undefined) {
    spans.push(JobCheckpointSpan.of('Sync', checkpointStart, p.finished_sync).toEventSpan());
    spans.push(JobCheckpointSpan.of('Async', p.finished_sync, p.finish_time).toEventSpan());
  } else {
    spans.push(JobCheckpointSpan.of('Sync', checkpointStart, p.finish_time).toEventSpan());
  }
  if (p.finished_commit !== undefined && p.finish_time !== null) spans.push(JobCheckpointSpan.of('Committing', p.finish_time, p.finished_commit).toEventSpan());
  return spans;
}
