/**
 * Server-Sent Events read over `fetch`, so that the token goes in the `Authorization` header: the
 * browser's EventSource cannot send headers, and a token in the URL would end up in logs and history.
 * Like EventSource it reconnects when the stream ends or drops, sending `Last-Event-ID` so that the API
 * replays what was missed; unlike it, it gives up on a client error (a 4xx other than the 401 that
 * http.ts answers with a token prompt) and says why.
 */
import { ApiError, apiFetch } from './http.js';
import { SseParser, type SseMessage } from './sse-parser.js';

export type { SseMessage } from './sse-parser.js';

export interface StreamHandlers {
  message(message: SseMessage): void;
  /** Each time the stream is (re)connected: a page may reload what a gap could have hidden. */
  open?(): void;
  /** A failure; `retrying` says whether the stream will connect again by itself. */
  error?(error: ApiError, retrying: boolean): void;
}

export interface StreamOptions {
  /** Resume after this event id. */
  lastEventId?: string;
  /** Connect again when the stream ends (default true). */
  reconnect?: boolean;
}

export interface EventStream {
  /** Stops reading and reconnecting. */
  close(): void;
  /** The id to resume from. */
  readonly lastEventId: string;
}

const DEFAULT_RETRY_MS = 2_000;
const MAX_RETRY_MS = 30_000;

/** Follows the SSE route at `path` (under /api/v1) until `close()`. */
export function openStream(path: string, handlers: StreamHandlers, options: StreamOptions = {}): EventStream {
  const parser = new SseParser(options.lastEventId ?? '');
  const reconnect = options.reconnect ?? true;
  let abort: AbortController | null = null;
  let closed = false;
  let failures = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;

  async function connect(): Promise<void> {
    abort = new AbortController();
    const headers: Record<string, string> = { accept: 'text/event-stream' };
    if (parser.lastEventId !== '') headers['last-event-id'] = parser.lastEventId;
    const res = await apiFetch('GET', path, { headers, signal: abort.signal });
    if (res.body === null) throw new ApiError(res.status, 'the event stream has no body');
    failures = 0;
    handlers.open?.();
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    parser.reset();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done || closed) return;
        for (const message of parser.push(value)) {
          handlers.message(message);
          if (closed) return;
        }
      }
    } finally {
      reader.releaseLock();
    }
  }

  function schedule(): void {
    const base = parser.retryMs ?? DEFAULT_RETRY_MS;
    const delay = Math.min(MAX_RETRY_MS, base * 2 ** Math.min(failures, 4));
    timer = setTimeout(() => void run(), delay);
  }

  async function run(): Promise<void> {
    if (closed) return;
    try {
      await connect();
      if (closed) return;
      if (!reconnect) return;
    } catch (err) {
      if (closed) return;
      const error = err instanceof ApiError ? err : new ApiError(0, `the event stream broke: ${err instanceof Error ? err.message : String(err)}`);
      // A client error will not go away by asking again; the API or the network being away will.
      const retrying = reconnect && (error.status === 0 || error.status >= 500);
      handlers.error?.(error, retrying);
      if (!retrying) return;
      failures++;
    }
    schedule();
  }

  void run();
  return {
    close() {
      closed = true;
      clearTimeout(timer);
      abort?.abort();
    },
    get lastEventId() {
      return parser.lastEventId;
    },
  };
}
