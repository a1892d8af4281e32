/**
 * Opt-in live view of job actors in the Stately inspector (https://stately.ai/inspect).
 *
 * `WEIR_INSPECT=<port>` starts a small relay on 127.0.0.1:<port> plus a `@statelyai/inspect`
 * WebSocket client connected to it; pass `inspector.inspect` to `createActor`. Opening
 * http://127.0.0.1:<port> in a browser loads a bridge page that embeds the Stately inspector UI and
 * forwards the relay's events to it. Nothing here is loaded unless inspection is enabled: the
 * relay, `ws` and `@statelyai/inspect` are imported dynamically inside `createJobInspector`.
 *
 * Why not `createInspectorServer` from `@statelyai/inspect/server`: it listens on every interface
 * (`listen(port)`, no host option, no way to pass a server), has no error listener (a port in use
 * becomes an uncaught exception), no ready signal, and its stop() neither waits nor closes
 * connected clients. The relay below does the same thing (broadcast each client's messages to the
 * others, replay the last 200 to late joiners, serve the bridge page) on a chosen host.
 */
import type { IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { RawData } from 'ws';
import type { InspectionEvent } from 'xstate';

export const DEFAULT_INSPECT_HOST = '127.0.0.1';
const STATELY_INSPECTOR_URL = 'https://stately.ai/inspect';
/** Same as `createInspectorServer`: how many messages a late joiner (the browser) is replayed. */
const REPLAY_LIMIT = 200;
const CONNECT_TIMEOUT_MS = 5_000;
const CLOSE_TIMEOUT_MS = 1_000;

export interface JobInspectorOptions {
  /** TCP port of the relay; 0 picks a free one (see `JobInspector.port`). */
  port: number;
  /** Interface to listen on. Default 127.0.0.1: the relay carries job context, keep it off the network. */
  host?: string;
}

export interface JobInspector {
  /** Pass as `createActor(machine, { inspect: inspector.inspect })`. */
  readonly inspect: { next(event: InspectionEvent): void };
  /** WebSocket URL of the relay (what inspector clients connect to). */
  readonly url: string;
  /** Page that embeds the Stately inspector UI and feeds it from the relay. */
  readonly uiUrl: string;
  readonly host: string;
  /** The port actually bound. */
  readonly port: number;
  /** Disconnects the inspector client and closes the relay (and any browser connected to it). */
  stop(): Promise<void>;
}

export interface InspectLogger {
  info(obj: object, msg: string): void;
}

/**
 * Which XState inspection events are worth shipping. Runs synchronously in the actor's own
 * dispatch, before `@statelyai/inspect` defers and serialises each event (one `setTimeout(0)` plus
 * a JSON round-trip apiece), so whatever is dropped here costs nothing.
 *
 * - `@xstate.actor` and `@xstate.snapshot`: always kept, for every actor (root and invoked).
 * - `@xstate.event`: kept, except the machine's own `xstate.after.*` timer events; the snapshot
 *   they cause is still shipped, so a timeout transition remains visible.
 * - `@xstate.microstep` / `@xstate.action` / `@xstate.transition`: the WebSocket inspector only
 *   forwards the three types above and discards the rest after deferring them, so drop them here.
 */
export function keepInspectionEvent(event: InspectionEvent): boolean {
  switch (event.type) {
    case '@xstate.actor':
    case '@xstate.snapshot':
      return true;
    case '@xstate.event':
      return !event.event.type.startsWith('xstate.after.');
    case '@xstate.microstep':
    case '@xstate.action':
    case '@xstate.transition':
      return false;
  }
}

export async function createJobInspector(options: JobInspectorOptions): Promise<JobInspector> {
  const host = options.host ?? DEFAULT_INSPECT_HOST;
  const { createWebSocketInspector } = await import('@statelyai/inspect');
  const relay = await startRelay(host, options.port);
  const url = `ws://${hostForUrl(connectHost(host))}:${relay.port}`;
  const client = createWebSocketInspector({ url });
  const socket = clientSocket(client.adapter);
  try {
    await whenOpen(socket);
  } catch (err) {
    client.stop();
    await relay.close();
    throw err;
  }

  let stopped = false;
  return {
    inspect: {
      next(event) {
        if (!stopped && keepInspectionEvent(event)) client.inspect.next?.(event);
      },
    },
    url,
    uiUrl: `http://${hostForUrl(connectHost(host))}:${relay.port}`,
    host,
    port: relay.port,
    async stop() {
      if (stopped) return;
      stopped = true;
      client.stop();
      // Let the client finish its closing handshake before the relay drops the TCP connection: a
      // reset seen by a client that is still closing is an 'error', which the library answers with
      // a reconnect every 5 s, forever (and a timer that keeps the process alive).
      await whenClosed(socket);
      await relay.close();
    },
  };
}

/**
 * `WEIR_INSPECT=<port>` (1-65535) enables inspection; `WEIR_INSPECT_HOST` overrides the listen
 * host. Unset or empty: returns undefined without loading anything.
 */
export async function inspectorFromEnv(
  env: Record<string, string | undefined> = process.env,
  log?: InspectLogger,
): Promise<JobInspector | undefined> {
  const raw = env.WEIR_INSPECT?.trim();
  if (!raw) return undefined;
  const port = /^\d{1,5}$/.test(raw) ? Number(raw) : NaN;
  if (!(port >= 1 && port <= 65_535)) {
    throw new Error(`WEIR_INSPECT must be a TCP port number (1-65535) for the XState inspector relay, got ${JSON.stringify(env.WEIR_INSPECT)}`);
  }
  const host = env.WEIR_INSPECT_HOST?.trim() || DEFAULT_INSPECT_HOST;
  const inspector = await createJobInspector({ port, host });
  log?.info(
    { host: inspector.host, port: inspector.port, url: inspector.url, ui: inspector.uiUrl },
    `XState inspector relay listening on ${inspector.url}; open ${inspector.uiUrl} for the Stately inspector UI (the browser needs internet access to load stately.ai/inspect)`,
  );
  return inspector;
}

// ---------------------------------------------------------------------------------------------
// Relay

interface Relay {
  port: number;
  close(): Promise<void>;
}

async function startRelay(host: string, port: number): Promise<Relay> {
  const { createServer } = await import('node:http');
  const { WebSocketServer, WebSocket } = await import('ws');

  const page = bridgePage();
  const server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
    res.end(page);
  });
  const wss = new WebSocketServer({ server, verifyClient: ({ req }: { req: IncomingMessage }) => originAllowed(req, host) });
  // ws re-emits the http server's errors; listen errors are reported through the promise below.
  wss.on('error', () => {});

  const replay: string[] = [];
  wss.on('connection', (ws) => {
    ws.on('error', () => {}); // a client going away must never take the controller down
    for (const msg of replay) ws.send(msg);
    ws.on('message', (data) => {
      const msg = rawToString(data);
      replay.push(msg);
      if (replay.length > REPLAY_LIMIT) replay.shift();
      for (const other of wss.clients) {
        if (other !== ws && other.readyState === WebSocket.OPEN) other.send(msg);
      }
    });
  });

  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error) => reject(new Error(`XState inspector relay cannot listen on ${host}:${port}: ${err.message}`, { cause: err }));
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve();
    });
  });

  return {
    port: (server.address() as AddressInfo).port,
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const ws of wss.clients) ws.terminate();
      wss.close();
      server.closeAllConnections();
      await closed;
    },
  };
}

/**
 * Non-browser clients send no Origin and are let in. Browsers always send one, and any web page
 * can open a WebSocket to 127.0.0.1, so a browser is let in only from a page of this relay itself
 * (Origin host === Host header) reached under a loopback name or the configured host; the latter
 * also defeats DNS rebinding (the Host header would be the attacker's name).
 */
function originAllowed(req: IncomingMessage, host: string): boolean {
  const origin = req.headers.origin;
  if (origin === undefined) return true;
  const requestHost = req.headers.host;
  if (!requestHost) return false;
  let originUrl: URL;
  let hostUrl: URL;
  try {
    originUrl = new URL(origin);
    hostUrl = new URL(`http://${requestHost}`);
  } catch {
    return false;
  }
  if (originUrl.host !== hostUrl.host) return false;
  const name = hostUrl.hostname.replace(/^\[|\]$/g, '');
  return name === 'localhost' || name === '127.0.0.1' || name === '::1' || name === host;
}

/** Same bridge as `createInspectorServer`'s, but it connects back to wherever it was loaded from (works through `ssh -L` on any local port). */
function bridgePage(): string {
  return `<!DOCTYPE html>
<html>
<head>
  <meta charset="utf-8">
  <title>weir · Stately Inspector</title>
  <style>* { margin: 0; padding: 0; } html, body { height: 100%; } iframe { width: 100%; height: 100%; border: none; }</style>
</head>
<body>
  <iframe id="inspector" src="${STATELY_INSPECTOR_URL}"></iframe>
  <script>
    const iframe = document.getElementById('inspector');
    const buffer = [];
    let connected = false;
    window.addEventListener('message', (e) => {
      if (e.data && e.data.type === '@statelyai.connected') {
        connected = true;
        for (const event of buffer) iframe.contentWindow.postMessage(event, '*');
        buffer.length = 0;
      }
    });
    const ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host);
    ws.onmessage = (event) => {
      const data = JSON.parse(event.data);
      if (connected) iframe.contentWindow.postMessage(data, '*');
      else buffer.push(data);
    };
  </script>
</body>
</html>`;
}

function rawToString(data: RawData): string {
  if (Buffer.isBuffer(data)) return data.toString('utf8');
  if (Array.isArray(data)) return Buffer.concat(data).toString('utf8');
  return Buffer.from(data).toString('utf8');
}

/** Where a local client should connect when the relay listens on a wildcard address. */
function connectHost(host: string): string {
  if (host === '0.0.0.0') return '127.0.0.1';
  if (host === '::' || host === '[::]') return '::1';
  return host;
}

function hostForUrl(host: string): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
}

// ---------------------------------------------------------------------------------------------
// The inspector client's socket. `WebSocketAdapter` keeps it in a private `ws` field (a `ws`
// WebSocket under Node); we only read it, to know when it is open and when it has closed. If a
// future version renames it, both waits degrade to no-ops. Until it first opens we also hold back
// its error handler (see whenOpen).

interface SocketLike {
  readyState: number;
  onerror: unknown;
  addEventListener(type: 'open' | 'error' | 'close', listener: () => void, options?: { once?: boolean }): void;
}

const CONNECTING = 0;
const CLOSED = 3;

function clientSocket(adapter: unknown): SocketLike | undefined {
  const ws = (adapter as { ws?: unknown } | undefined)?.ws;
  if (typeof ws === 'object' && ws !== null && 'readyState' in ws && 'onerror' in ws && 'addEventListener' in ws && typeof ws.addEventListener === 'function') {
    return ws as SocketLike;
  }
  return undefined;
}

async function whenOpen(socket: SocketLike | undefined): Promise<void> {
  if (!socket || socket.readyState !== CONNECTING) return;
  // Until the first open, errors are ours to report: the library answers any error with a
  // reconnect 5 s later, which against a relay that is not there repeats forever.
  const reconnect = socket.onerror;
  socket.onerror = null;
  socket.addEventListener('error', () => {}); // keeps a late error (e.g. from aborting the handshake) from being unhandled
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('XState inspector client did not connect to its relay')), CONNECT_TIMEOUT_MS);
    socket.addEventListener('open', () => (clearTimeout(timer), resolve()), { once: true });
    socket.addEventListener('error', () => (clearTimeout(timer), reject(new Error('XState inspector client could not connect to its relay'))), { once: true });
  });
  socket.onerror = reconnect;
}

function whenClosed(socket: SocketLike | undefined): Promise<void> {
  if (!socket || socket.readyState === CLOSED) return Promise.resolve();
  return new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, CLOSE_TIMEOUT_MS);
    socket.addEventListener('close', () => (clearTimeout(timer), resolve()), { once: true });
  });
}
