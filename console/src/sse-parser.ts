/**
 * The Server-Sent Events wire format (the WHATWG "event stream interpretation"), fed text as it arrives:
 * lines end with CRLF, LF or CR; `event:`, `data:`, `id:` and `retry:` fields; a blank line dispatches.
 * Pure, so it is tested without a browser (test/console/sse-parser.test.ts).
 */

export interface SseMessage {
  /** `message` when the server named none. */
  event: string;
  /** The `data:` lines joined with LF. */
  data: string;
  /** The last event id seen so far (the one to resume from), or '' before any. */
  lastEventId: string;
}

export class SseParser {
  private buffer = '';
  /** A CR ended the previous chunk: an LF at the start of the next belongs to it. */
  private afterCr = false;
  private event = '';
  private data: string[] = [];
  private hasData = false;
  /** The id to resume from (`Last-Event-ID`). */
  lastEventId = '';
  /** The reconnection delay the server asked for with `retry:`, if it did. */
  retryMs: number | undefined;

  constructor(lastEventId = '') {
    this.lastEventId = lastEventId;
  }

  /** Parses a chunk; returns the messages it completed. */
  push(chunk: string): SseMessage[] {
    let text = chunk;
    if (this.afterCr && text.startsWith('\n')) text = text.slice(1);
    this.afterCr = false;
    this.buffer += text;
    const out: SseMessage[] = [];
    let start = 0;
    for (let i = 0; i < this.buffer.length; i++) {
      const c = this.buffer[i];
      if (c !== '\n' && c !== '\r') continue;
      const line = this.buffer.slice(start, i);
      if (c === '\r') {
        if (i + 1 === this.buffer.length) this.afterCr = true;
        else if (this.buffer[i + 1] === '\n') i++;
      }
      start = i + 1;
      const message = this.line(line);
      if (message !== null) out.push(message);
    }
    this.buffer = this.buffer.slice(start);
    return out;
  }

  /** Forgets a half-received event (the connection dropped); the last event id stays. */
  reset(): void {
    this.buffer = '';
    this.afterCr = false;
    this.event = '';
    this.data = [];
    this.hasData = false;
  }

  private line(line: string): SseMessage | null {
    if (line === '') return this.dispatch();
    if (line.startsWith(':')) return null;
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    switch (field) {
      case 'event':
        this.event = value;
        break;
      case 'data':
        this.data.push(value);
        this.hasData = true;
        break;
      case 'id':
        if (!value.includes('\0')) this.lastEventId = value;
        break;
      case 'retry':
        if (/^[0-9]+$/.test(value)) this.retryMs = Number(value);
        break;
      default:
        // Unknown fields are ignored, as the format says.
        break;
    }
    return null;
  }

  private dispatch(): SseMessage | null {
    const message = this.hasData ? { event: this.event === '' ? 'message' : this.event, data: this.data.join('\n'), lastEventId: this.lastEventId } : null;
    this.event = '';
    this.data = [];
    this.hasData = false;
    return message;
  }
}
