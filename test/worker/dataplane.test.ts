import fc from 'fast-check';
import { setImmediate as tick } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { subjects, type DataRecord } from '../../src/protocol/index.js';
import { BufferOverflowError, InputGate, OutputChannel, classifyError, fnv1a, shufflePartition, UserError, DataplaneError } from '../../src/worker/index.js';
import { FakeTransport } from './fake-transport.js';

const rec = (n: number, key?: string): DataRecord => ({ ...(key === undefined ? {} : { key }), value: n, ts: n });

describe('shuffle routing', () => {
  it('is a stable FNV-1a of the key JSON', () => {
    // FNV-1a 32 reference values: "" → 0x811c9dc5, "a" → 0xe40c292c.
    expect(fnv1a('')).toBe(0x811c9dc5);
    expect(fnv1a('a')).toBe(0xe40c292c);
    expect([...'0123456789'].map((k) => shufflePartition(k, 2))).toEqual([...'0123456789'].map((k) => fnv1a(JSON.stringify(k)) % 2));
  });

  it('always picks the same subtask in range for a key', () => {
    fc.assert(
      fc.property(fc.string(), fc.integer({ min: 1, max: 64 }), (key, p) => {
        const part = shufflePartition(key, p);
        return part >= 0 && part < p && Number.isInteger(part) && part === shufflePartition(key, p);
      }),
    );
  });

  it('OutputChannel sends each key to its partition, batches, and flushes before a barrier', async () => {
    const t = new FakeTransport();
    const ch = new OutputChannel(t, { jobId: 'j', generation: 3, fromNode: 'a', fromSubtask: 1, toNode: 'b', toParallelism: 3, kind: 'shuffle', batchSize: 2, lingerMs: 1000 });
    const keys = ['x', 'y', 'z', 'x', 'w'];
    keys.forEach((k, i) => void ch.send(rec(i, k)));
    await ch.barrier(1, false);
    for (let sub = 0; sub < 3; sub++) {
      const msgs = t.messagesOn(subjects.data('j', 3, 'a', 'b', sub)) as Array<{ kind: string; from_subtask: number; records?: DataRecord[] }>;
      expect(msgs.at(-1)).toEqual({ v: 1, kind: 'barrier', from_subtask: 1, epoch: 1, then_stop: false });
      const got = msgs.flatMap((m) => m.records ?? []).map((r) => r.key);
      expect(got).toEqual(keys.filter((k) => shufflePartition(k, 3) === sub));
      expect(msgs.every((m) => m.from_subtask === 1)).toBe(true);
    }
  });

  it('forward goes to the same subtask index; backpressure waits on a flush', async () => {
    const t = new FakeTransport();
    const ch = new OutputChannel(t, { jobId: 'j', generation: 0, fromNode: 'a', fromSubtask: 1, toNode: 'b', toParallelism: 2, kind: 'forward', batchSize: 2, maxUnflushed: 4 });
    const waits = [0, 1, 2, 3].map((i) => ch.send(rec(i)));
    expect(waits.slice(0, 3)).toEqual([undefined, undefined, undefined]);
    expect(waits[3]).toBeInstanceOf(Promise);
    await waits[3];
    expect(t.flushes).toBe(1);
    await ch.end();
    expect(t.messagesOn(subjects.data('j', 0, 'a', 'b', 0))).toEqual([{ v: 1, kind: 'end', from_subtask: 1 }]);
    expect(t.messagesOn(subjects.data('j', 0, 'a', 'b', 1))).toHaveLength(3);
    expect(() => ch.send(rec(9))).toThrow(DataplaneError);
  });
});

describe('InputGate', () => {
  function gate(opts: { maxBufferedRecords?: number } = {}) {
    const t = new FakeTransport();
    const events: string[] = [];
    const errors: Error[] = [];
    const g = new InputGate(
      t,
      { jobId: 'j', generation: 2, node: 'b', subtask: 0, inputs: [{ from: 'a', parallelism: 2 }], ...opts },
      {
        record: (r) => void events.push(`r${JSON.stringify(r.value)}`),
        alignmentStarted: (e) => void events.push(`align${e}`),
        barrier: async (e, stop) => {
          await tick();
          events.push(`barrier${e}${stop ? '!' : ''}`);
        },
        end: () => void events.push('end'),
        error: (err) => void errors.push(err),
      },
    );
    g.start();
    const subject = subjects.data('j', 2, 'a', 'b', 0);
    const send = (from: number, msg: object) => t.publish(subject, new TextEncoder().encode(JSON.stringify({ v: 1, from_subtask: from, ...msg })));
    return { t, g, events, errors, subject, send };
  }
  const records = (...ns: number[]) => ({ kind: 'records', records: ns.map((n) => rec(n)) });

  it('holds records after a barrier until the barrier arrived from every upstream subtask', async () => {
    const { events, send } = gate();
    send(0, records(1));
    send(0, { kind: 'barrier', epoch: 1, then_stop: false });
    send(0, records(2, 3)); // after subtask 0's barrier: must wait
    send(1, records(10)); // before subtask 1's barrier: flows
    await tick();
    expect(events).toEqual(['r1', 'align1', 'r10']);
    send(1, { kind: 'barrier', epoch: 1, then_stop: false });
    send(1, records(11));
    await tick();
    await tick();
    expect(events).toEqual(['r1', 'align1', 'r10', 'barrier1', 'r2', 'r3', 'r11']);
    send(0, { kind: 'end' });
    send(1, { kind: 'end' });
    await tick();
    expect(events.at(-1)).toBe('end');
    expect(events.filter((e) => e === 'barrier1')).toHaveLength(1);
  });

  it('counts an ended upstream as aligned and handles back-to-back epochs', async () => {
    const { events, send } = gate();
    send(1, { kind: 'end' });
    send(0, { kind: 'barrier', epoch: 1, then_stop: false });
    send(0, records(5));
    send(0, { kind: 'barrier', epoch: 2, then_stop: true });
    for (let i = 0; i < 5; i++) await tick();
    expect(events).toEqual(['align1', 'barrier1', 'r5', 'align2', 'barrier2!']);
  });

  it('ignores another generation and malformed or unknown-channel messages', async () => {
    const { t, events, subject, g } = gate();
    t.inject(subject, subjects.data('j', 1, 'a', 'b', 0), { v: 1, kind: 'records', from_subtask: 0, records: [rec(99)] });
    t.inject(subject, subject, { v: 1, kind: 'records', from_subtask: 7, records: [rec(98)] });
    t.inject(subject, subject, { v: 1, kind: 'nonsense' });
    t.inject(subject, subject, { v: 1, kind: 'records', from_subtask: 0, records: [rec(1)] });
    await tick();
    expect(events).toEqual(['r1']);
    expect(g.dropped).toBe(3);
  });

  it('fails clearly when alignment buffers exceed their bound', async () => {
    const { errors, events, send } = gate({ maxBufferedRecords: 3 });
    send(0, { kind: 'barrier', epoch: 1, then_stop: false });
    send(0, records(1, 2));
    send(0, records(3, 4));
    await tick();
    expect(errors[0]).toBeInstanceOf(BufferOverflowError);
    expect(errors[0]!.message).toMatch(/more than 3 records while aligning barrier 1/);
    expect(events).toEqual(['align1']);
  });
});

describe('classifyError', () => {
  it('maps user, NATS/IO and other errors', () => {
    expect(classifyError(new UserError('bad'))).toMatchObject({ domain: 'user', hint: 'no_retry' });
    expect(classifyError(new DataplaneError('gone'))).toMatchObject({ domain: 'external', hint: 'with_backoff' });
    expect(classifyError(Object.assign(new Error('x'), { code: 'ECONNRESET' }))).toMatchObject({ domain: 'external' });
    expect(classifyError(new TypeError('oops'))).toMatchObject({ domain: 'internal', hint: 'with_backoff' });
    expect(new TextEncoder().encode(classifyError(new Error('x'.repeat(100_000))).reason).byteLength).toBeLessThanOrEqual(64 * 1024);
  });
});
