/**
 * Server-Sent Events on a raw Node response: how an event is framed, and the bounded per-client queue
 * that stands between the server's event sources and a client that may read slowly or not at all.
 *
 * The queue holds at most `capacity` frames (events and the notices below). Frames are written to the
 * response while it accepts them: when `res.write()` returns false the queue stops writing and waits for
 * 'drain', so Node's own buffer never holds more than its high-water mark plus one frame. An event that
 * finds the queue full is not queued: it is counted, and as soon as there is room again the client gets
 * `event: dropped` with `data: {"count": n}` before anything newer, so a loss is always explicit.
 * With `overflow: 'end'` (for streams a client can resume from a durable log) the notice is the stream's
 * last event: the response ends after it and the client reconnects with Last-Event-ID.
 */
import type { ServerResponse } from 'node:http';

export interface SseEvent {
  /** `id:`; must not contain CR, LF or NUL. */
  id?: string | number;
  /** `event:`; must not contain CR, LF or NUL. */
  event?: string;
  /** Split into one `data:` line per line (CRLF, CR and LF all end a line). */
  data?: string;
  /** `retry:`, the client's reconnection delay in ms. */
  retry?: number;
}

const LINE_BREAK = /\r\n|\r|\n/;
const FIELD_FORBIDDEN = /[\r\n\0]/;

function field(name: string, value: string): string {
  if (FIELD_FORBIDDEN.test(value)) throw new TypeError(`SSE ${name} must not contain CR, LF or NUL: ${JSON.stringify(value)}`);
  return `${name}: ${value}\n`;
}

/** One event as it goes on the wire, ending with the blank line that dispatches it. */
export function formatEvent(event: SseEvent): string {
  let out = '';
  if (event.event !== undefined) out += field('event', event.event);
  if (event.id !== undefined) out += field('id', String(event.id));
  if (event.retry !== undefined) {
    if (!Number.isSafeInteger(event.retry) || event.retry < 0) throw new TypeError(`SSE retry must be a non-negative integer, got ${event.retry}`);
    out += `retry: ${event.retry}\n`;
  }
  if (event.data !== undefined) {
    for (const line of event.data.split(LINE_BREAK)) out += `data: ${line}\n`;
  }
  return `${out}\n`;
}

/** A comment (`: text`), one line per line of `text`; clients ignore it, proxies see traffic. */
export function formatComment(text: string): string {
  return `${text
    .split(LINE_BREAK)
    .map((line) => `: ${line}\n`)
    .join('')}\n`;
}

export const DEFAULT_CAPACITY = 1024;
/** How long an ending response may take to flush its last frames to a client that does not read. */
const END_TIMEOUT_MS = 10_000;

export interface SseConnectionOptions {
  /** Frames the queue holds at most. Default 1024. */
  capacity?: number;
  /** `notify` (default): count dropped events and report them. `end`: report them and end the stream. */
  overflow?: 'notify' | 'end';
  /** Every event that did not fit, as it happens (for totals across connections). */
  onDropped?: (count: number) => void;
  /** Once, when the response is closed (ended and flushed, destroyed, or the client went away). */
  onClose?: () => void;
}

export class SseConnection {
  readonly capacity: number;
  private readonly overflow: 'notify' | 'end';
  private readonly queue: string[] = [];
  private head = 0;
  private opened = false;
  private blocked = false;
  /** Dropped events not reported yet. */
  private unreported = 0;
  /** Frames that wait for room (the dropped notice, a final event), in order. */
  private readonly control: string[] = [];
  private ending = false;
  private endTimer: NodeJS.Timeout | undefined;
  private isClosed = false;
  /** The deepest the queue has been (a test hook for the bound). */
  maxQueued = 0;
  /** Events dropped over the connection's life. */
  dropped = 0;

  constructor(
    readonly res: ServerResponse,
    private readonly options: SseConnectionOptions = {},
  ) {
    this.capacity = Math.max(1, options.capacity ?? DEFAULT_CAPACITY);
    this.overflow = options.overflow ?? 'notify';
    res.on('drain', () => {
      this.blocked = false;
      this.pump();
    });
    res.on('close', () => this.onClosed());
    res.on('error', () => this.onClosed());
  }

  /** False once the stream is ending or closed: nothing more will be queued. */
  get active(): boolean {
    return !this.isClosed && !this.ending;
  }

  get closed(): boolean {
    return this.isClosed;
  }

  /** Frames waiting in the queue. */
  get queued(): number {
    return this.queue.length - this.head;
  }

  /** Sends the status line and headers; frames queued before this go out right after. */
  open(headers: Record<string, string | number | readonly string[]>): void {
    if (this.opened || this.isClosed) return;
    this.opened = true;
    this.res.writeHead(200, {
      ...headers,
      'content-type': 'text/event-stream',
      'cache-control': 'no-cache',
      'x-accel-buffering': 'no',
      // The socket is not reused after a stream: it closes with the response, so nothing holds a server's close.
      connection: 'close',
    });
    this.res.flushHeaders();
    this.pump();
  }

  /**
   * Queues an event; false if it was dropped (queue full, the stream ending or closed). A closed or
   * ending stream does not count it: nothing more was going to reach that client anyway.
   */
  send(event: SseEvent): boolean {
    if (this.isClosed || this.ending) return false;
    this.settleControl();
    if (this.ending) return false;
    if (this.unreported > 0 || this.control.length > 0 || this.queued >= this.capacity) {
      this.drop();
      return false;
    }
    this.push(formatEvent(event));
    this.pump();
    return true;
  }

  /** True while the queue has room for `n` more frames (catch-up readers wait for this instead of dropping). */
  hasRoom(n = 1): boolean {
    return !this.isClosed && !this.ending && this.unreported === 0 && this.control.length === 0 && this.queued + n <= this.capacity;
  }

  /** Resolves when the queue is at most half full (or the connection is closed or ending). */
  async room(): Promise<void> {
    while (!this.isClosed && !this.ending && (this.queued > this.capacity / 2 || this.unreported > 0 || this.control.length > 0)) {
      await new Promise<void>((resolve) => {
        const done = () => {
          this.res.off('drain', done);
          this.res.off('close', done);
          resolve();
        };
        this.res.on('drain', done);
        this.res.on('close', done);
      });
    }
  }

  /** A heartbeat: written only when nothing is queued or blocked (otherwise the connection is busy anyway). */
  comment(text: string): void {
    if (!this.opened || this.isClosed || this.ending || this.blocked || this.queued > 0) return;
    if (!this.res.write(formatComment(text))) this.blocked = true;
  }

  /**
   * Ends the stream after what is queued, with `last` as its final event (it waits for room like a
   * notice does). A client that does not take the rest within 10 s is disconnected.
   */
  end(last?: SseEvent): void {
    if (this.isClosed || this.ending) return;
    if (last !== undefined) this.control.push(formatEvent(last));
    this.ending = true;
    this.endTimer = setTimeout(() => this.destroy(), END_TIMEOUT_MS);
    this.endTimer.unref();
    this.settleControl();
    this.pump();
  }

  destroy(): void {
    if (this.isClosed) return;
    this.res.destroy();
    this.onClosed();
  }

  private drop(): void {
    this.unreported++;
    this.dropped++;
    this.options.onDropped?.(1);
  }

  /** Moves the dropped notice and waiting frames into the queue while it has room. */
  private settleControl(): void {
    if (this.unreported > 0 && this.queued < this.capacity) {
      this.push(formatEvent({ event: 'dropped', data: JSON.stringify({ count: this.unreported }) }));
      this.unreported = 0;
      if (this.overflow === 'end' && !this.ending) {
        this.ending = true;
        this.endTimer = setTimeout(() => this.destroy(), END_TIMEOUT_MS);
        this.endTimer.unref();
      }
    }
    while (this.control.length > 0 && this.unreported === 0 && this.queued < this.capacity) {
      this.push(this.control.shift() as string);
    }
  }

  private push(frame: string): void {
    this.queue.push(frame);
    if (this.queued > this.maxQueued) this.maxQueued = this.queued;
  }

  private pump(): void {
    if (!this.opened || this.isClosed) return;
    for (;;) {
      while (!this.blocked && this.head < this.queue.length) {
        const frame = this.queue[this.head] as string;
        this.queue[this.head++] = '';
        if (!this.res.write(frame)) this.blocked = true;
      }
      if (this.head === this.queue.length) {
        this.queue.length = 0;
        this.head = 0;
      } else if (this.head > 1024 && this.head * 2 > this.queue.length) {
        this.queue.splice(0, this.head);
        this.head = 0;
      }
      const before = this.queued;
      this.settleControl();
      if (this.blocked || this.queued === before) break;
    }
    if (this.ending && !this.blocked && this.queued === 0 && this.unreported === 0 && this.control.length === 0) {
      this.res.end();
    }
  }

  private onClosed(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.ending = true;
    if (this.endTimer !== undefined) clearTimeout(this.endTimer);
    this.queue.length = 0;
    this.head = 0;
    this.control.length = 0;
    this.options.onClose?.();
  }
}
