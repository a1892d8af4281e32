import { describe, expect, it } from 'vitest';
import { JobCheckpointSpan, checkpointSchema, describeSpan, subtaskSpans } from '../../src/protocol/index.js';

describe('JobCheckpointSpan', () => {
  it('opens now, finishes once, and serialises with a description', () => {
    const span = JobCheckpointSpan.now('WritingMetadata', 1_000);
    expect(span.finished).toBe(false);
    expect(span.toEventSpan()).toEqual({ start_time: 1_000, finish_time: null, event: 'WritingMetadata', description: describeSpan('WritingMetadata') });
    span.finish(5_000).finish(9_000);
    expect(span.finish_time).toBe(5_000);
    expect(span.toEventSpan().finish_time).toBe(5_000);
  });

  it('never finishes before it started, and defaults to the clock', () => {
    expect(JobCheckpointSpan.now('Committing', 10_000).finish(3_000).finish_time).toBe(10_000);
    const before = Date.now() * 1000;
    const span = JobCheckpointSpan.now('Checkpointing').finish();
    expect(span.startTime).toBeGreaterThanOrEqual(before);
    expect(span.finish_time).toBeGreaterThanOrEqual(span.startTime);
  });

  it('describes every job and subtask span, and passes unknown names through', () => {
    for (const event of ['Checkpointing', 'CheckpointingOperators', 'WritingMetadata', 'Compacting', 'Committing', 'Alignment', 'Sync', 'Async']) {
      expect(describeSpan(event)).not.toBe(event);
    }
    expect(describeSpan('Other')).toBe('Other');
  });
});

describe('subtaskSpans', () => {
  it('builds Alignment, Sync, Async and Committing from the progress events, as the reference does', () => {
    const spans = subtaskSpans({ started_alignment: 100, started_checkpointing: 200, finished_sync: 300, start_time: 150, finish_time: 400, finished_commit: 450 });
    expect(spans.map((s) => [s.event, s.start_time, s.finish_time])).toEqual([
      ['Alignment', 100, 200],
      ['Sync', 200, 300],
      ['Async', 300, 400],
      ['Committing', 400, 450],
    ]);
  });

  it('a source (no alignment) without progress events has one Sync span over its start and finish', () => {
    expect(subtaskSpans({ start_time: 10, finish_time: 20 }).map((s) => [s.event, s.start_time, s.finish_time])).toEqual([['Sync', 10, 20]]);
  });

  it('leaves the span of a subtask still at work open', () => {
    const spans = subtaskSpans({ started_checkpointing: 10, finished_sync: 15, start_time: 10, finish_time: null });
    expect(spans.at(-1)).toMatchObject({ event: 'Async', start_time: 15, finish_time: null });
  });
});

describe('checkpointSchema', () => {
  it('rejects unknown types and statuses', () => {
    const ok = { epoch: 1, generation: 1, backend: 'jetstream', checkpoint_type: 'scheduled', status: 'ready', start_time: 1, finish_time: 2, bytes: 0, events: [], failure: null };
    expect(checkpointSchema.safeParse(ok).success).toBe(true);
    expect(checkpointSchema.safeParse({ ...ok, checkpoint_type: 'manual' }).success).toBe(true);
    expect(checkpointSchema.safeParse({ ...ok, checkpoint_type: 'savepoint' }).success).toBe(false);
    expect(checkpointSchema.safeParse({ ...ok, status: 'done' }).success).toBe(false);
  });
});

describe('subtaskSpans while aligning', () => {
  it('keeps the alignment open and starts no Sync span until the checkpoint starts', () => {
    expect(subtaskSpans({ started_alignment: 5, start_time: 5, finish_time: null }).map((s) => [s.event, s.finish_time])).toEqual([['Alignment', null]]);
  });
});
