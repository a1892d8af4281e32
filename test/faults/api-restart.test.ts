/**
 * A fault test on real processes: `weir api` is killed with SIGKILL and restarted on the same port while
 * EventSource clients follow a job's state transitions over SSE. The job is driven through transitions
 * (over the controller's NATS API) while the API is dead; when it is back, every client has reconnected
 * by itself with Last-Event-ID and has every transition of the job's event log since it started
 * following, each once and in order, and a resumed stream sends no `state` snapshot. A client that saw
 * only the snapshot resumes from the position it carries, even while the controller is down too.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import { EventSource } from 'eventsource';
import { afterAll, describe, expect } from 'vitest';
import type { JobState } from '../../machines/job/types.js';
import { controllerClient, type ControllerClient } from '../../src/api/controller-client.js';
import type { TransitionEventData } from '../../src/api/routes/streams.js';
import { freePort } from '../../src/shared/free-port.js';
import { openStore, type LogRow, type Store } from '../../src/store/index.js';
import { counterPipeline } from '../api/harness.js';
import { eventually } from '../support/nats.js';
import { testWithNatsServer } from '../support/nats-fixtures.js';
import type { NatsServerHandle } from '../support/nats-server.js';
import { killAll, WeirProcess } from '../support/processes.js';

const CLIENTS = 3;

type Transition = TransitionEventData;

/** One EventSource on the job's events, and everything it saw. */
class Follower {
  readonly es: EventSource;
  readonly transitions: Array<Transition & { id: string; receivedAt: number }> = [];
  readonly states: Array<{ data: string; receivedAt: number }> = [];
  readonly ends: string[] = [];
  opens = 0;
  errors = 0;

  constructor(url: string) {
    this.es = new EventSource(url);
    this.es.addEventListener('open', () => this.opens++);
    this.es.addEventListener('error', () => this.errors++);
    this.on('state', (data) => this.states.push({ data, receivedAt: Date.now() }));
    this.on('end', (data) => this.ends.push(data));
    this.on('transition', (data, id) => this.transitions.push({ ...(JSON.parse(data) as Transition), id, receivedAt: Date.now() }));
  }

  private on(type: string, fn: (data: string, id: string) => void): void {
    this.es.addEventListener(type, (e) => {
      const m = e as unknown as { data: string; lastEventId: string };
      fn(m.data, m.lastEventId);
    });
  }

  get seqs(): number[] {
    return this.transitions.map((t) => t.seq);
  }

  close(): void {
    this.es.close();
  }
}

const it = testWithNatsServer();

describe('weir api killed and restarted under SSE clients', () => {
  let server: NatsServerHandle;
  let nc: NatsConnection;
  let client: ControllerClient;
  let store: Store;
  const processes = new Set<WeirProcess>();

  it.beforeAll(async ({ natsServer, connect }) => {
    server = natsServer;
    nc = await connect('api-restart-test');
    client = controllerClient(nc);
  });

  afterAll(async () => {
    await killAll(processes);
  });

  function spawn(name: string, args: string[], ready: (p: WeirProcess) => Promise<unknown>): Promise<WeirProcess> {
    const p = new WeirProcess(name, args);
    processes.add(p);
    return ready(p).then(() => p);
  }

  /** `weir api` on `port`, resolved once it answers HTTP. */
  function api(name: string, port: number): Promise<WeirProcess> {
    return spawn(name, ['api', '--nats', server.url, '--api-port', String(port)], (p) =>
      eventually(
        async () => {
          if (!p.running) throw new Error(`${name} exited:\n${p.output().slice(-2_000)}`);
          const res = await fetch(`http://127.0.0.1:${port}/api/v1/ping`, { signal: AbortSignal.timeout(2_000) });
          expect(res.status).toBe(200);
        },
        { timeoutMs: 20_000, intervalMs: 100 },
      ),
    );
  }

  function reach(jobId: string, state: JobState, timeoutMs = 20_000): Promise<void> {
    return eventually(async () => expect((await client.get(jobId)).state).toBe(state), { timeoutMs, intervalMs: 100 });
  }

  /** The job's transition rows after `after`, oldest first, from the event log. */
  async function transitionsAfter(jobId: string, after: number): Promise<Array<Extract<LogRow, { kind: 'transition' }>>> {
    const rows: Array<Extract<LogRow, { kind: 'transition' }>> = [];
    let cursor = after;
    for (;;) {
      const page = await store.log.since(jobId, cursor, 1000);
      for (const row of page.data) {
        if (row.kind === 'transition') rows.push(row);
        cursor = row.seq;
      }
      if (!page.hasMore) return rows;
    }
  }

  /** Stop with a checkpoint, wait for Stopped, start again, wait for Running; all over NATS. */
  async function cycle(jobId: string): Promise<void> {
    await client.config(jobId, { stop: 'checkpoint' });
    await reach(jobId, 'Stopped');
    await client.config(jobId, { stop: 'none' });
    await reach(jobId, 'Running');
  }

  it('misses no transition and gets none twice across an API SIGKILL and restart', async () => {
    const started = Date.now();
    const [, , port] = await Promise.all([
      spawn('controller', ['controller', '--nats', server.url, '--heartbeat-timeout', '1500', '--heartbeat-interval', '300'], (p) => p.waitForLog('controller started')),
      spawn('w1', ['worker', '--slots', '8', '--id', 'w1', '--nats', server.url], (p) => p.waitForLog('registered with the controller')),
      freePort(),
    ]);
    let apiProcess = await api('api-1', port);
    store = await openStore(nc);
    const base = `http://127.0.0.1:${port}/api/v1`;

    const created = await fetch(`${base}/pipelines`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(counterPipeline('api-restart')),
    });
    expect(created.status).toBe(201);
    const jobId = ((await created.json()) as { id: string }).id;
    await reach(jobId, 'Running');
    const before = await eventually(async () => {
      const rows = await transitionsAfter(jobId, 0);
      expect(rows.at(-1)?.to).toBe('Running');
      return rows.at(-1)!.seq;
    });

    const followers: Follower[] = [];
    try {
      for (let i = 0; i < CLIENTS; i++) followers.push(new Follower(`${base}/pipelines/${jobId}/jobs/${jobId}/events`));
      await eventually(() => {
        for (const f of followers) expect(f.states.map((s) => JSON.parse(s.data) as unknown)).toEqual([{ job_id: jobId, state: 'Running', generation: 1 }]);
      });

      // A cycle with the API up, so that every client has a Last-Event-ID to resume from.
      await cycle(jobId);
      const seenBeforeKill = await transitionsAfter(jobId, before);
      await eventually(() => {
        for (const f of followers) expect(f.seqs).toEqual(seenBeforeKill.map((r) => r.seq));
      }, { timeoutMs: 10_000 });

      const killed = await apiProcess.kill('SIGKILL');
      expect(killed.signal).toBe('SIGKILL');
      const killedAt = Date.now();

      // While the API is dead the job goes through a whole cycle.
      await cycle(jobId);
      const whileDead = (await transitionsAfter(jobId, seenBeforeKill.at(-1)!.seq)).map((r) => r.seq);
      expect(whileDead.length).toBeGreaterThanOrEqual(4);
      for (const f of followers) expect(f.seqs).toEqual(seenBeforeKill.map((r) => r.seq));

      const restartedAt = Date.now();
      apiProcess = await api('api-2', port);
      const caughtUp = await transitionsAfter(jobId, before);
      await eventually(() => {
        for (const f of followers) expect(f.seqs).toEqual(caughtUp.map((r) => r.seq));
      }, { timeoutMs: 15_000 });

      // One more cycle with the new API up: live again.
      await cycle(jobId);
      const expected = await transitionsAfter(jobId, before);
      expect(expected.length).toBeGreaterThan(caughtUp.length);
      await eventually(() => {
        for (const f of followers) expect(f.seqs).toEqual(expected.map((r) => r.seq));
      }, { timeoutMs: 10_000 });

      const wire = expected.map((r) => ({ seq: r.seq, job_id: jobId, from: r.from, to: r.to, generation: r.generation, at: Math.round(r.at * 1000) }));
      for (const [i, f] of followers.entries()) {
        const what = `client ${i}`;
        // None twice, none missed (each seq strictly after the last, and the log's list exactly), payloads as in the log.
        expect(f.seqs.every((s, k) => k === 0 || s > f.seqs[k - 1]!), what).toBe(true);
        expect(f.transitions.map(({ id: _id, receivedAt: _at, ...t }) => t), what).toEqual(wire);
        expect(f.transitions.map((t) => t.id), what).toEqual(expected.map((r) => String(r.seq)));
        // The transitions of the dead API's time came after the restart, through the reconnect.
        for (const t of f.transitions.filter((t) => whileDead.includes(t.seq))) expect(t.receivedAt, what).toBeGreaterThanOrEqual(restartedAt);
        expect(f.transitions.filter((t) => t.receivedAt < killedAt).map((t) => t.seq), what).toEqual(seenBeforeKill.map((r) => r.seq));
        // It reconnected (the EventSource opened again), and only the first connection sent a snapshot.
        expect(f.opens, what).toBeGreaterThanOrEqual(2);
        expect(f.errors, what).toBeGreaterThanOrEqual(1);
        expect(f.states, what).toHaveLength(1);
        expect(f.states[0]!.receivedAt, what).toBeLessThan(killedAt);
        // A SIGKILLed server says nothing; the new one had no reason to end a stream.
        expect(f.ends, what).toEqual([]);
        expect(f.es.readyState, what).toBe(EventSource.OPEN);
      }
      expect(expected.map((r) => r.to)).toEqual(expect.arrayContaining(['CheckpointStopping', 'Stopped', 'Running']));
      expect(apiProcess.running).toBe(true);
      expect(Date.now() - started).toBeLessThan(60_000);
    } finally {
      for (const f of followers) f.close();
    }
  }, 90_000);

  it('resumes a client that saw only the snapshot, with the controller down as well when the API comes back', async () => {
    const running = (name: string) => [...processes].find((p) => p.name === name && p.running);
    const controllerArgs = ['controller', '--nats', server.url, '--heartbeat-timeout', '1500', '--heartbeat-interval', '300'];
    if (running('controller') === undefined) await spawn('controller', controllerArgs, (p) => p.waitForLog('controller started'));
    if (running('w1') === undefined) await spawn('w1', ['worker', '--slots', '8', '--id', 'w1', '--nats', server.url], (p) => p.waitForLog('registered with the controller'));
    const port = await freePort();
    const apiProcess = await api('api-3', port);
    store ??= await openStore(nc);
    const base = `http://127.0.0.1:${port}/api/v1`;
    const created = await fetch(`${base}/pipelines`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(counterPipeline('snapshot-only')) });
    expect(created.status).toBe(201);
    const jobId = ((await created.json()) as { id: string }).id;
    await reach(jobId, 'Running');

    const followers: Follower[] = [];
    try {
      for (let i = 0; i < CLIENTS; i++) followers.push(new Follower(`${base}/pipelines/${jobId}/jobs/${jobId}/events`));
      await eventually(() => {
        for (const f of followers) expect(f.states).toHaveLength(1);
      });
      // The snapshot's id is the log position it covers: resuming from it misses nothing.
      const covered = (await transitionsAfter(jobId, 0)).at(-1)!.seq;
      for (const f of followers) expect(f.transitions).toEqual([]);

      await apiProcess.kill('SIGKILL');
      await running('controller')!.kill('SIGKILL');
      // The API comes back first: with no controller to answer, resuming clients are let in all the same.
      const restarted = await api('api-4', port);
      await eventually(() => {
        for (const f of followers) expect(f.opens).toBeGreaterThanOrEqual(2);
      }, { timeoutMs: 15_000 });
      for (const f of followers) expect(f.es.readyState).toBe(EventSource.OPEN);

      // The controller's restart resumes the job (a new run), then it goes through a cycle.
      await spawn('controller', controllerArgs, (p) => p.waitForLog('controller started'));
      await reach(jobId, 'Running');
      await cycle(jobId);
      const expected = (await transitionsAfter(jobId, covered)).map((r) => r.seq);
      expect(expected.length).toBeGreaterThanOrEqual(4);
      await eventually(() => {
        for (const f of followers) expect(f.seqs).toEqual(expected);
      }, { timeoutMs: 15_000 });
      for (const f of followers) {
        expect(f.states).toHaveLength(1);
        expect(f.ends).toEqual([]);
      }
      expect(restarted.running).toBe(true);
    } finally {
      for (const f of followers) f.close();
    }
  }, 90_000);
});
