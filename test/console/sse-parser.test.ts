import { describe, expect, it } from 'vitest';
import { SseParser } from '../../console/src/sse-parser.js';

describe("the console's SSE parser", () => {
  it('reads events with ids, names and multi-line data, as the API frames them', () => {
    const parser = new SseParser();
    const text = 'retry: 2000\n\nevent: state\nid: 7\ndata: {"state":"Running"}\n\n: ping\n\nevent: transition\nid: 9\ndata: a\ndata: b\n\n';
    expect(parser.push(text)).toEqual([
      { event: 'state', data: '{"state":"Running"}', lastEventId: '7' },
      { event: 'transition', data: 'a\nb', lastEventId: '9' },
    ]);
    expect(parser.retryMs).toBe(2000);
    expect(parser.lastEventId).toBe('9');
  });

  it('takes any split of the stream, CRLF and CR line ends included', () => {
    const text = 'event: x\r\nid: 1\r\ndata: one\r\n\r\ndata: two\r\rdata:three\n\n';
    const whole = new SseParser().push(text);
    expect(whole.map((m) => m.data)).toEqual(['one', 'two', 'three']);
    for (let cut = 1; cut < text.length; cut++) {
      const parser = new SseParser();
      const messages = [...parser.push(text.slice(0, cut)), ...parser.push(text.slice(cut))];
      expect(messages, `cut at ${cut}`).toEqual(whole);
    }
  });

  it('names unnamed events "message", skips events without data, and keeps the resume id across a reset', () => {
    const parser = new SseParser('3');
    expect(parser.push('id: 4\n\ndata: x\n\n')).toEqual([{ event: 'message', data: 'x', lastEventId: '4' }]);
    parser.push('event: half\ndata: cut off');
    parser.reset();
    expect(parser.push('\n\n')).toEqual([]);
    expect(parser.lastEventId).toBe('4');
  });
});
