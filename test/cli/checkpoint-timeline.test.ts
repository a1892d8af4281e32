import { describe, expect, it } from 'vitest';
import { checkpointListTable, checkpointTimeline } from '../../src/cli/checkpoint-timeline.js';
import type { Checkpoint, CheckpointDetailsReply } from '../../src/protocol/index.js';

const T = 1_753_000_000_000_000;
const checkpoint: Checkpoint = {
  epoch: 7,
  generation: 2,
  backend: 'jetstream',
  checkpoint_type: 'scheduled',
  status: 'ready',
  start_time: T,
  finish_time: T + 48_000,
  bytes: 3 * 1024,
  events: [
    { start_time: T, finish_time: T + 48_000, event: 'Checkpointing', description: '' },
    { start_time: T, finish_time: T + 24_000, event: 'CheckpointingOperators', description: '' },
    { start_time: T + 24_000, finish_time: T + 48_000, event: 'WritingMetadata', description: '' },
  ],
  failure: null,
};

describe('checkpoint output', () => {
  it('lists the history with status, duration and bytes', () => {
    const text = checkpointListTable([checkpoint, { ...checkpoint, epoch: 8, status: 'failed', finish_time: null, failure: 'timed out\nmore', bytes: 0 }]);
    const [header, first, second] = text.split('\n');
    expect(header).toMatch(/^EPOCH\s+GENERATION\s+TYPE\s+STATUS\s+STARTED\s+DURATION\s+BYTES$/);
    expect(first).toMatch(/^7\s+2\s+scheduled\s+ready\s+2025-07-20T08:26:40\.000Z\s+48\.0ms\s+3\.0 KiB$/);
    expect(second).toMatch(/^8\s+2\s+scheduled\s+failed: timed out\s+\S+\s+-\s+0 B$/);
    expect(checkpointListTable([])).toBe('no checkpoints');
  });

  it('draws every span on one axis: a span of half the checkpoint covers half the bar, at its offset', () => {
    const reply: CheckpointDetailsReply = {
      v: 1,
      job_id: 'job-1',
      checkpoint,
      data: [{ operator_id: 'count', bytes: 3072, started_metadata_write: T + 24_000, finish_time: T + 48_000, subtasks: [{ index: 0, worker_id: 'w1', bytes: 3072, event_spans: [{ start_time: T + 12_000, finish_time: T + 24_000, event: 'Sync', description: '' }] }] }],
    };
    const lines = checkpointTimeline(reply).split('\n');
    expect(lines[0]).toBe('checkpoint 7 of job-1 (generation 2, scheduled, ready)');
    const bar = (label: string) => {
      const line = lines.find((l) => l.trimStart().startsWith(label))!;
      return line.slice(line.indexOf('|') + 1, line.lastIndexOf('|'));
    };
    expect(bar('Checkpointing ')).toBe('█'.repeat(48));
    expect(bar('CheckpointingOperators').trimEnd()).toBe('█'.repeat(25));
    expect(bar('WritingMetadata').indexOf('█')).toBe(24);
    expect(bar('[0] Sync').indexOf('█')).toBe(12);
    expect(lines.some((l) => l.startsWith('count (3.0 KiB)'))).toBe(true);
    expect(lines.find((l) => l.includes('[0] Sync'))).toMatch(/12\.0ms$/);
  });

  it('marks open spans and says the checkpoint is still running', () => {
    const open: Checkpoint = { ...checkpoint, status: 'inprogress', finish_time: null, events: [{ start_time: T, finish_time: null, event: 'Checkpointing', description: '' }] };
    const text = checkpointTimeline({ v: 1, job_id: 'job-1', checkpoint: open, data: [] }, T + 10_000);
    expect(text).toContain('still running');
    expect(text).toMatch(/█>\| 10\.0ms\+$/m);
  });
});
