import { EventEmitter } from 'node:events';
import type { ServerResponse } from 'node:http';
import { describe, expect, it } from 'vitest';
import { SseConnection, formatComment, formatEvent } from '../../src/api/sse/connection.js';

/** A response whose socket accepts `room` writes, then reports back-pressure until `drain()`. */
class FakeResponse extends EventEmitter {
  chunks: string[] = [];
  head: { status: number; headers: Record<string, unknown> } | undefined;
  ended = false;
  destroyed = false;
  constructor(public room = Number.POSITIVE_INFINITY) {
    super();
  }
  writeHead(status: number, headers: Record<string, unknown>) {
    this.head = { status, headers };
    return this;
  }
  flushHeaders() {}
  write(chunk: string): boolean {
    this.chunks.push(chunk);
    this.room--;
    return this.room > 0;
  }
  end() {
    this.ended = true;
    this.emit('close');
  }
  destroy() {
    this.destroyed = true;
    this.emit('close');
  }
  drain(room: number) {
    this.room = room;
    this.emit('drain');
  }
  text(): string {
    return this.chunks.join('');
  }
}

const asRes = (r: FakeResponse) => r as unknown as ServerResponse;

describe('SSE framing', () => {
  it('formats fields in order and splits data on every kind of line break', () => {
    expect(formatEvent({ id: 3, event: 'transition', data: '{"a":1}' })).toBe('event: transition\nid: 3\ndata: {"a":1}\n\n');
    expect(formatEvent({ data: 'one\ntwo\r\nthree\rfour' })).toBe('data: one\ndata: two\ndata: three\ndata: four\n\n');
    expect(formatEvent({ data: '' })).toBe('data: \n\n');
    expect(formatEvent({ retry: 2000 })).toBe('retry: 2000\n\n');
    expect(formatComment('ping')).toBe(': ping\n\n');
    expect(formatComment('a\nb')).toBe(': a\n: b\n\n');
  });

  it('refuses ids and event names that would break the framing', () => {
    expect(() => formatEvent({ id: '1\n2' })).toThrow(/CR, LF or NUL/);
    expect(() => formatEvent({ event: 'x\ry' })).toThrow(/CR, LF or NUL/);
    expect(() => formatEvent({ id: 'a\0' })).toThrow(/CR, LF or NUL/);
  });
});

describe('SseConnection', () => {
  it('sends the SSE headers and whatever was queued before opening', () => {
    const res = new FakeResponse();
    const conn = new SseConnection(asRes(res), { capacity: 4 });
    conn.send({ event: 'a', data: '1' });
    expect(res.chunks).toEqual([]);
    conn.open({ 'x-request-id': 'r1' });
    expect(res.head?.status).toBe(200);
    expect(res.head?.headers).toMatchObject({ 'content-type': 'text/event-stream', 'cache-control': 'no-cache', 'x-accel-buffering': 'no', 'x-request-id': 'r1' });
    expect(res.text()).toBe('event: a\ndata: 1\n\n');
  });

  it('stops writing on back-pressure, bounds the queue, and reports drops as soon as there is room', () => {
    const res = new FakeResponse(2);
    const dropped: number[] = [];
    const conn = new SseConnection(asRes(res), { capacity: 3, onDropped: (n) => dropped.push(n) });
    conn.open({});
    for (let i = 0; i < 10; i++) conn.send({ id: i, data: String(i) });
    // Two writes reached the socket (the second returned false), three were queued, five were dropped.
    expect(res.chunks).toHaveLength(2);
    expect(conn.queued).toBe(3);
    expect(conn.maxQueued).toBe(3);
    expect(conn.dropped).toBe(5);
    expect(dropped).toHaveLength(5);
    res.drain(100);
    expect(conn.queued).toBe(0);
    expect(res.text()).toContain('event: dropped\ndata: {"count":5}\n\n');
    // The notice comes after the events queued before the loss, before anything newer.
    conn.send({ id: 10, data: '10' });
    const text = res.text();
    expect(text.indexOf('data: 4\n')).toBeLessThan(text.indexOf('event: dropped'));
    expect(text.indexOf('event: dropped')).toBeLessThan(text.indexOf('data: 10\n'));
    expect(text).not.toMatch(/data: [5-9]\n/);
    expect(conn.maxQueued).toBeLessThanOrEqual(3);
  });

  it('with overflow "end", reports the drop and then ends the stream', () => {
    const res = new FakeResponse(1);
    const conn = new SseConnection(asRes(res), { capacity: 2, overflow: 'end' });
    conn.open({});
    for (let i = 0; i < 6; i++) conn.send({ id: i, data: String(i) });
    expect(conn.dropped).toBe(3);
    expect(res.ended).toBe(false);
    res.drain(100);
    expect(res.text()).toMatch(/data: 2\n\nevent: dropped\ndata: \{"count":3\}\n\n$/);
    expect(res.ended).toBe(true);
    expect(conn.send({ data: 'late' })).toBe(false);
  });

  it('writes heartbeats only when idle, and ends after the queue is flushed', () => {
    const res = new FakeResponse(1);
    const conn = new SseConnection(asRes(res), { capacity: 8 });
    conn.open({});
    conn.send({ data: 'x' });
    conn.comment('ping');
    expect(res.text()).not.toContain(': ping');
    res.drain(100);
    conn.comment('ping');
    expect(res.text()).toContain(': ping\n\n');
    conn.send({ data: 'y' });
    conn.end({ event: 'end', data: '{"reason":"bye"}' });
    expect(res.text()).toMatch(/event: end\ndata: \{"reason":"bye"\}\n\n$/);
    expect(res.ended).toBe(true);
    expect(conn.closed).toBe(true);
  });

  it('calls onClose once when the client goes away', () => {
    const res = new FakeResponse();
    let closed = 0;
    const conn = new SseConnection(asRes(res), { onClose: () => closed++ });
    conn.open({});
    res.emit('close');
    res.emit('close');
    expect(closed).toBe(1);
    expect(conn.send({ data: 'x' })).toBe(false);
  });
});
