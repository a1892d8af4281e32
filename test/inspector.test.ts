import net from 'node:net';
import os from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { createActor } from 'xstate';
import type { Actor, InspectionEvent } from 'xstate';
import { createJobInspector, inspectorFromEnv, keepInspectionEvent, type JobInspector } from '../src/inspect/index.js';
import { freePort } from '../src/shared/free-port.js';
import { providedMachine, topState } from './support/job-driver.js';

interface WireEvent {
  type: string;
  sessionId?: string;
  name?: string;
  definition?: string;
  snapshot?: { value?: unknown; context?: { jobId?: unknown } };
  event?: { type?: string };
}


async function waitFor(what: string, check: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Collects into `into` from the start: the relay's replay can arrive in the same read as the handshake, before an 'open' continuation would run. */
function openClient(url: string, options?: WebSocket.ClientOptions, into?: WireEvent[]): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, options);
    if (into) ws.on('message', (data: Buffer) => into.push(JSON.parse(data.toString('utf8')) as WireEvent));
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

/** 'connected' if a TCP connection to host:port succeeds, otherwise why it did not. */
function probe(host: string, port: number, timeoutMs = 2_000): Promise<'connected' | 'refused' | 'timeout'> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const done = (result: 'connected' | 'refused' | 'timeout') => {
      clearTimeout(timer);
      socket.destroy();
      resolve(result);
    };
    const timer = setTimeout(() => done('timeout'), timeoutMs);
    socket.once('connect', () => done('connected'));
    socket.once('error', () => done('refused'));
  });
}

function nonLoopbackAddresses(): string[] {
  return Object.values(os.networkInterfaces())
    .flatMap((infos) => infos ?? [])
    .filter((info) => !info.internal && !(info.family === 'IPv6' && info.scopeid)) // link-local IPv6 needs a zone
    .map((info) => info.address);
}

describe('job inspector', () => {
  let inspector: JobInspector;
  let client: WebSocket;
  let actor: Actor<ReturnType<typeof providedMachine>> | undefined;
  const received: WireEvent[] = [];

  beforeAll(async () => {
    const port = await freePort();
    inspector = await createJobInspector({ port });
    expect(inspector.port).toBe(port);
    expect(inspector.host).toBe('127.0.0.1');
    expect(inspector.url).toBe(`ws://127.0.0.1:${port}`);
    client = await openClient(inspector.url, {}, received);
  });

  afterAll(async () => {
    actor?.stop();
    client?.close();
    await inspector?.stop();
  });

  it('streams the job actor and its snapshots to a relay client', async () => {
    actor = createActor(providedMachine(), { input: { jobId: 'inspected-job', createdAt: Date.now() }, inspect: inspector.inspect });
    actor.start();
    const job = actor;
    await waitFor('the job to wait for its tasks', () => job.getSnapshot().matches({ Scheduling: { attempt: 'starting' } }));
    job.send({ type: 'tasks.started', generation: job.getSnapshot().context.generation, at: Date.now() });
    expect(topState(job.getSnapshot())).toBe('Running');

    const jobActor = () => received.find((ev) => ev.type === '@xstate.actor' && ev.name === 'job' && ev.definition?.includes('"id":"job"'));
    const jobSnapshot = (state?: string) =>
      received.find(
        (ev) =>
          ev.type === '@xstate.snapshot' &&
          ev.snapshot?.context?.jobId === 'inspected-job' &&
          (state === undefined || JSON.stringify(ev.snapshot.value).includes(state)),
      );
    await waitFor('an @xstate.actor event for the job machine', () => jobActor() !== undefined);
    await waitFor('an @xstate.snapshot event of the job in Running', () => jobSnapshot('Running') !== undefined);
    expect(jobSnapshot()!.sessionId).toBe(jobActor()!.sessionId);
    // Invoked actors are inspected too (the compile step is a fromPromise child).
    expect(received.some((ev) => ev.type === '@xstate.actor' && ev.sessionId !== jobActor()!.sessionId)).toBe(true);
    expect(received.some((ev) => ev.type === '@xstate.event' && ev.event?.type?.startsWith('xstate.after.'))).toBe(false);
  });

  it('replays earlier events to a client that joins late', async () => {
    const replayed: WireEvent[] = [];
    const late = await openClient(inspector.url, {}, replayed);
    try {
      await waitFor('replayed job snapshots', () => replayed.some((ev) => ev.type === '@xstate.snapshot' && ev.snapshot?.context?.jobId === 'inspected-job'));
    } finally {
      late.close();
    }
  });

  it('serves the bridge page and refuses WebSocket connections from foreign origins', async () => {
    const page = await fetch(inspector.uiUrl);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('https://stately.ai/inspect');

    await expect(openClient(inspector.url, { origin: 'http://evil.example' })).rejects.toThrow(/401/);
    const sameOrigin = await openClient(inspector.url, { origin: inspector.uiUrl });
    sameOrigin.close();
  });

  it('is not reachable on non-loopback addresses', async (ctx) => {
    const addresses = nonLoopbackAddresses();
    if (addresses.length === 0) ctx.skip();
    for (const address of addresses) {
      expect(await probe(address, inspector.port), address).not.toBe('connected');
    }
    expect(await probe('127.0.0.1', inspector.port)).toBe('connected');
  });

  it('drops xstate.after timer events before serialisation, keeps actor and snapshot events', () => {
    const ev = (type: string, eventType = 'x') => ({ type, event: { type: eventType } }) as unknown as InspectionEvent;
    expect(keepInspectionEvent(ev('@xstate.event', 'xstate.after.WAIT.job.Compiling.waiting'))).toBe(false);
    expect(keepInspectionEvent(ev('@xstate.event', 'tasks.started'))).toBe(true);
    expect(keepInspectionEvent(ev('@xstate.snapshot', 'xstate.after.WAIT.job.Compiling.waiting'))).toBe(true);
    expect(keepInspectionEvent(ev('@xstate.actor'))).toBe(true);
    expect(keepInspectionEvent(ev('@xstate.microstep'))).toBe(false);
  });
});

describe('inspectorFromEnv', () => {
  it('is off unless WEIR_INSPECT is set', async () => {
    await expect(inspectorFromEnv({})).resolves.toBeUndefined();
    await expect(inspectorFromEnv({ WEIR_INSPECT: '' })).resolves.toBeUndefined();
  });

  it('rejects a WEIR_INSPECT that is not a port, naming the variable', async () => {
    await expect(inspectorFromEnv({ WEIR_INSPECT: 'abc' })).rejects.toThrow(/WEIR_INSPECT/);
    await expect(inspectorFromEnv({ WEIR_INSPECT: '0' })).rejects.toThrow(/WEIR_INSPECT/);
    await expect(inspectorFromEnv({ WEIR_INSPECT: '70000' })).rejects.toThrow(/WEIR_INSPECT/);
  });

  it('starts an inspector on the given port and logs where', async () => {
    const port = await freePort();
    const lines: { obj: object; msg: string }[] = [];
    const inspector = await inspectorFromEnv({ WEIR_INSPECT: String(port) }, { info: (obj, msg) => lines.push({ obj, msg }) });
    try {
      expect(inspector?.url).toBe(`ws://127.0.0.1:${port}`);
      expect(lines).toHaveLength(1);
      expect(lines[0]!.msg).toContain(`http://127.0.0.1:${port}`);
    } finally {
      await inspector?.stop();
    }
    // Stopped means the port is free again.
    expect(await probe('127.0.0.1', port)).not.toBe('connected');
  });
});
