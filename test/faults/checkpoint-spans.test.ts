/**
 * Older checkpoints read back from their records have every span closed, as the newest does from memory:
 * over NATS, and as `weir jobs checkpoints <id> <epoch>` draws them.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { checkpointDetailsReplySchema, jobCheckpointsReplySchema, subjects } from '../../src/protocol/index.js';
import { main } from '../../src/cli/main.js';
import { Deployment } from '../support/deployment.js';
import { eventually } from '../support/nats.js';
import { impulseCountPipeline } from '../support/pipelines.js';

const pipeline = impulseCountPipeline({ name: 'spans', rate: 100 });

describe('the spans of older checkpoints', () => {
  let d: Deployment;

  beforeEach(async () => {
    d = await Deployment.start();
  });

  afterEach(async () => {
    await d.stop();
  });

  it('are closed in the history and in one checkpoint’s details, and the timeline agrees with its header', async () => {
    await d.controller();
    await d.worker('w1', 2);
    const jobId = await d.create(pipeline);
    await d.reach(jobId, 'Running');
    const history = await eventually(
      async () => {
        const reply = jobCheckpointsReplySchema.parse(await d.request(subjects.apiJobCheckpoints(jobId), { v: 1 }));
        expect(reply.data.filter((c) => c.status === 'ready').length).toBeGreaterThanOrEqual(3);
        return reply.data;
      },
      { timeoutMs: 20_000, intervalMs: 200 },
    );
    // Newest first: all but the newest are read back from their records.
    for (const checkpoint of history.slice(1)) {
      expect(checkpoint.finish_time, `epoch ${checkpoint.epoch}`).not.toBeNull();
      for (const span of checkpoint.events) {
        expect(span.finish_time, `epoch ${checkpoint.epoch} ${span.event}`).not.toBeNull();
        expect(span.finish_time!).toBeGreaterThanOrEqual(span.start_time);
      }
      const whole = checkpoint.events.find((s) => s.event === 'Checkpointing')!;
      expect(whole.finish_time).toBe(checkpoint.finish_time);
      const metadata = checkpoint.events.find((s) => s.event === 'WritingMetadata')!;
      expect(metadata.finish_time!).toBeLessThanOrEqual(whole.finish_time!);
      // A metadata write on this machine takes milliseconds, not the seconds until the next checkpoint.
      expect(whole.finish_time! - checkpoint.start_time).toBeLessThan(1_000_000);
    }

    const oldest = history.at(-1)!;
    const details = checkpointDetailsReplySchema.parse(await d.request(subjects.apiJobCheckpoint(jobId), { v: 1, epoch: oldest.epoch }));
    expect(details.checkpoint.events.every((s) => s.finish_time !== null)).toBe(true);

    const out: string[] = [];
    expect(await main(['jobs', 'checkpoints', jobId, String(oldest.epoch), '--nats', d.server.url], (line) => out.push(line))).toBe(0);
    const text = out.join('\n');
    // The header's duration as formatDuration prints it (`25.0ms`, `1.25s`, `2m05s`).
    const took = /took ([0-9][0-9.a-zµ]*),/.exec(text)?.[1];
    expect(took, text).toBeDefined();
    // No span is drawn as still open, and the whole checkpoint's span is as long as the header says.
    expect(text).not.toMatch(/(ms|s|µs)\+/);
    expect(new RegExp(`^Checkpointing .*\\| ${took!.replace('.', '\\.')}$`, 'm').test(text), text).toBe(true);
  }, 60_000);
});
