/**
 * Two-phase commit on the worker side, on a real nats-server with JetStream: the `jetstream-sink`
 * operator, and the runner's final checkpoint (exhausted sources wait for it, sinks finish only once
 * their last epoch is committed).
 */
import { jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { describe, expect } from 'vitest';
import {
  instantiate,
  natsTransport,
  SubtaskRunner,
  subtaskSpecs,
  UserError,
  type CheckpointCompletion,
  type FailureReport,
  type OperatorContext,
  type RunnerOutcome,
} from '../../src/worker/index.js';
import { eventually } from '../support/nats.js';
import { testWithNatsServer } from '../support/nats-fixtures.js';
import { impulseToSinkGraph } from '../support/pipelines.js';

const it = testWithNatsServer();
let nc: NatsConnection;

it.beforeAll(async ({ connect }) => {
  nc = await connect('two-phase-test');
});

async function streamMessages(stream: string): Promise<number> {
  return (await (await jetstreamManager(nc)).streams.info(stream)).state.messages;
}

async function openSink(config: Record<string, unknown>, subtaskIndex = 0) {
  const { instance } = instantiate('jetstream-sink', config);
  const ctx: OperatorContext = { jobId: 'job-1', nodeId: 'out', subtaskIndex, parallelism: 2, emit: () => {}, nats: nc };
  await instance.open(ctx);
  return instance;
}

describe('jetstream-sink', () => {
  it('publishes nothing before the commit, and a repeated commit (even by a new instance) adds nothing', async () => {
    const sink = await openSink({ subject: 'sink1.out', stream: 'SINK1' });
    for (let i = 0; i < 5; i++) await sink.process!({ key: `k${i}`, value: { i }, ts: i });
    expect(await streamMessages('SINK1')).toBe(0);
    const data = sink.prepareCommit!(3);
    expect(data).toEqual({ rows: [0, 1, 2, 3, 4].map((i) => ({ key: `k${i}`, value: { i }, ts: i })) });
    // The epoch's rows left with its commit data: the next epoch starts empty.
    expect(sink.prepareCommit!(4)).toBeNull();
    expect(await streamMessages('SINK1')).toBe(0);

    await sink.commit!(3, data!);
    expect(await streamMessages('SINK1')).toBe(5);
    await sink.commit!(3, data!);
    const restored = await openSink({ subject: 'sink1.out', stream: 'SINK1' });
    await restored.commit!(3, data!);
    expect(await streamMessages('SINK1')).toBe(5);
    // Another subtask's rows of the same epoch are other messages.
    const other = await openSink({ subject: 'sink1.out', stream: 'SINK1' }, 1);
    await other.commit!(3, data!);
    expect(await streamMessages('SINK1')).toBe(10);
  });

  it('creates its stream with the configured duplicate window, and uses an existing one as it is', async () => {
    await openSink({ subject: 'sink2.out', stream: 'SINK2', duplicate_window_ms: 120_000 });
    const jsm = await jetstreamManager(nc);
    expect((await jsm.streams.info('SINK2')).config).toMatchObject({ subjects: ['sink2.out'], duplicate_window: 120_000_000_000 });
    await openSink({ subject: 'sink2.out', stream: 'SINK2', duplicate_window_ms: 900_000 });
    expect((await jsm.streams.info('SINK2')).config.duplicate_window).toBe(120_000_000_000);
  });

  it('refuses bad config, bad commit data, and more output in an epoch than it may hold', async () => {
    expect(() => instantiate('jetstream-sink', { subject: 'a.*' })).toThrow(UserError);
    expect(() => instantiate('jetstream-sink', {})).toThrow(/subject/);
    const sink = await openSink({ subject: 'sink3.out', stream: 'SINK3', max_epoch_bytes: 1_024 });
    await expect(sink.commit!(1, { something: 'else' })).rejects.toThrow(/commit data of epoch 1 is not \{rows\}/);
    expect(() => {
      for (let i = 0; i < 100; i++) void sink.process!({ value: 'x'.repeat(50), ts: i });
    }).toThrow(/more than 1024 bytes of output in one epoch/);
  });

  it('a commit without a stream for its subject fails, so the epoch stays committing', async () => {
    const sink = await openSink({ subject: 'nowhere.out' });
    await sink.process!({ value: 1, ts: 1 });
    await expect(sink.commit!(1, sink.prepareCommit!(1)!)).rejects.toThrow();
  });
});

describe('a final checkpoint through the runners', () => {
  const graph = (subject: string, stream: string) => impulseToSinkGraph({ events: 20, rate: 'max', sink: 'jetstream-sink', sinkConfig: { subject, stream } });

  async function start(generation: number, subject: string, stream: string, finalCommitTimeoutMs?: number) {
    const transport = natsTransport(nc);
    const seen = { exhausted: 0, committed: [] as number[], completions: [] as Array<{ node: string; epoch: number } & CheckpointCompletion>, failures: [] as FailureReport[] };
    const runners = subtaskSpecs(graph(subject, stream), 'job-2', generation).map(
      (spec) =>
        new SubtaskRunner(
          transport,
          { ...spec, finalCheckpoint: true },
          {
            onExhausted: () => seen.exhausted++,
            onCommitted: (epoch) => seen.committed.push(epoch),
            onCheckpointCompleted: (epoch, c) => seen.completions.push({ node: spec.nodeId, epoch, ...c }),
            onFailed: (f) => seen.failures.push(f),
          },
          { nats: nc, ...(finalCommitTimeoutMs === undefined ? {} : { finalCommitTimeoutMs }) },
        ),
    );
    const [src, out] = [runners.find((r) => r.spec.nodeId === 'src')!, runners.find((r) => r.spec.nodeId === 'out')!];
    await out.start();
    await src.start();
    return { src, out, seen, transport };
  }

  it('an exhausted source waits for the then-stop barrier; the sink finishes only once that epoch is committed', async () => {
    const { src, out, seen, transport } = await start(1, 'final1.out', 'FINAL1');
    await eventually(() => expect(seen.exhausted).toBe(1));
    expect(src.outcome).toBe('running');
    expect(out.outcome).toBe('running');

    expect(src.injectBarrier(1, true)).toBe(true);
    await eventually(() => expect(seen.completions.map((c) => c.node).sort()).toEqual(['out', 'src']));
    expect(await src.done).toBe('finished');
    const sinkCompletion = seen.completions.find((c) => c.node === 'out')!;
    expect((sinkCompletion.commitData as { rows: unknown[] }).rows).toHaveLength(20);
    // Still running: its output is not visible yet.
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(out.outcome).toBe('running');
    expect(await streamMessages('FINAL1')).toBe(0);

    await out.commit(1, sinkCompletion.commitData!);
    expect(await out.done).toBe('finished');
    expect(seen.committed).toEqual([1]);
    expect(await streamMessages('FINAL1')).toBe(20);
    expect(seen.failures).toEqual([]);
    await expect(out.commit(1, sinkCompletion.commitData!)).rejects.toThrow(/cannot commit epoch 1: it has finished/);
    transport.close();
  });

  it('a final commit that never arrives fails the sink after its deadline, so the job recovers and commits on restore', async () => {
    const { src, out, seen, transport } = await start(2, 'final2.out', 'FINAL2', 300);
    await eventually(() => expect(seen.exhausted).toBe(1));
    src.injectBarrier(1, true);
    const outcome: RunnerOutcome = await out.done;
    expect(outcome).toBe('failed');
    expect(seen.failures).toMatchObject([{ domain: 'external', hint: 'with_backoff' }]);
    expect(seen.failures[0]!.reason).toMatch(/the commit of final epoch 1 did not arrive within 300 ms/);
    expect(await streamMessages('FINAL2')).toBe(0);
    transport.close();
  });
});
