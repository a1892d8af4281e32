import type { NatsConnection } from '@nats-io/transport-node';
import { afterEach, describe, expect } from 'vitest';
import { openStore, StoreUnavailableError, type ConfigChange, type LogRow, type Store } from '../../src/store/index.js';
import { connectTo, eventually } from '../support/nats.js';
import { testWithNatsServer } from '../support/nats-fixtures.js';
import type { NatsServerHandle } from '../support/nats-server.js';
import { config, FAST, jobId, spec, transition, warning } from './helpers.js';

/** Deadlines of the "server is gone" checks: the operation must fail within this, never hang. */
const SHORT = { requestTimeoutMs: 200, operationTimeoutMs: 1_000 };
const SLACK_MS = 700;

async function failsFast(what: () => Promise<unknown>): Promise<number> {
  const started = Date.now();
  const err = await what().then(
    () => undefined,
    (e: unknown) => e,
  );
  const elapsed = Date.now() - started;
  expect(err).toBeInstanceOf(StoreUnavailableError);
  expect(elapsed).toBeLessThan(SHORT.operationTimeoutMs + SLACK_MS);
  return elapsed;
}

const it = testWithNatsServer();

describe('store across server restarts and outages', () => {
  let server: NatsServerHandle;
  let nc: NatsConnection;
  let store: Store;

  it.beforeAll(async ({ natsServer, connect }) => {
    server = natsServer;
    nc = await connect('resilience');
    // The restart takes a second or two; the default-ish budget rides it out without help.
    store = await openStore(nc, { ...FAST, operationTimeoutMs: 15_000 });
  });

  afterEach(async () => {
    // A test that stopped the server brings it back for the next one.
    await server.restart();
  });

  it('keeps jobs and events across a restart and goes on working on the same connection', async () => {
    const id = jobId('durable');
    const created = await store.jobs.create(id, spec(), config());
    await store.jobs.updateStatus(id, (s) => ({ ...s, state: 'Running', generation: 1 }));
    const seqs = [await store.log.append(id, transition(1)), await store.log.append(id, warning('before restart'), { id: 'w-1' })];

    const changes: ConfigChange[] = [];
    const watcher = await store.jobs.watchConfigs((change) => {
      changes.push(change);
    });
    const tail = await store.log.tail(id);
    const tailed: LogRow[] = [];
    const tailing = (async () => {
      for await (const row of tail) tailed.push(row);
    })();

    try {
      await server.restart();

      // No eventually(): the store's own bounded retries carry these over the reconnect.
      const got = await store.jobs.get(id);
      expect(got?.spec).toEqual(created.spec);
      expect(got?.status).toMatchObject({ state: 'Running', generation: 1 });
      expect((await store.log.page(id, { limit: 10 })).data.map((r) => r.seq)).toEqual([...seqs].reverse());
      // The duplicate window survives the restart too: a retried append is still recognised.
      expect(await store.log.append(id, warning('before restart'), { id: 'w-1' })).toBe(seqs[1]);

      const cfg = await store.jobs.updateConfig(id, (c) => ({ ...c, stop: 'graceful' }));
      const after = await store.log.append(id, warning('after restart'));
      expect(after).toBeGreaterThan(seqs[1]!);
      expect(await store.jobs.list()).toContain(id);

      // Watchers and tails re-create their consumers after the restart, without replaying the past.
      await eventually(() => expect(changes).toEqual([{ jobId: id, config: cfg.value, revision: cfg.revision }]), { timeoutMs: 15_000 });
      await eventually(() => expect(tailed.map((r) => r.seq)).toEqual([after]), { timeoutMs: 15_000 });
    } finally {
      watcher.stop();
      tail.stop();
      await tailing;
    }
  });

  it('keeps every acknowledged write across a server crash (SIGKILL)', async () => {
    const id = jobId('crash');
    await store.jobs.create(id, spec(), config());
    const seqs = await Promise.all(Array.from({ length: 100 }, (_, i) => store.log.append(id, transition(i))));
    const last = await store.jobs.updateStatus(id, (s) => ({ ...s, state: 'Running', generation: 7 }));
    // Acknowledged means written to the OS; fsync is another matter (docs/operations.md).
    await server.kill();
    await server.restart();
    const got = await store.jobs.get(id);
    expect(got?.status.generation).toBe(7);
    expect(got?.revisions.status).toBe(last.revision);
    const rows = await store.log.since(id, 0, 1000);
    expect(rows.data.map((r) => r.seq)).toEqual([...seqs].sort((a, b) => a - b));
  });

  it('fails with StoreUnavailableError within its deadline while the server is down', async () => {
    const id = jobId('outage');
    await store.jobs.create(id, spec(), config());
    const short = await openStore(nc, SHORT);
    await server.stop();

    // All at once: each must fail on its own deadline, none may hang.
    await Promise.all([
      failsFast(() => short.jobs.updateConfig(id, (c) => ({ ...c, stop: 'immediate' }))),
      failsFast(() => short.jobs.create(jobId('outage'), spec(), config())),
      failsFast(() => short.jobs.get(id)),
      failsFast(() => short.jobs.list()),
      failsFast(() => short.jobs.delete(id)),
      failsFast(() => short.log.append(id, warning('lost?'))),
      failsFast(() => short.log.page(id, { limit: 5 })),
      failsFast(() => short.log.since(id, 0, 5)),
      failsFast(() => short.log.tail(id)),
      failsFast(() => short.jobs.watchConfigs(() => undefined)),
      failsFast(() => openStore(nc, SHORT)),
    ]);

    await server.restart();
    // Nothing was half-applied, and the same store object works again.
    await eventually(async () => expect((await short.jobs.get(id))?.config.stop).toBe('none'), { timeoutMs: 10_000 });
    const updated = await store.jobs.updateConfig(id, (c) => ({ ...c, stop: 'immediate' }));
    expect(updated.value.stop).toBe('immediate');
  });

  it('fails fast on a closed connection', async () => {
    const closed = await connectTo(server.url, 'closing');
    const doomed = await openStore(closed, SHORT);
    await closed.close();
    await failsFast(() => doomed.jobs.get(jobId()));
    await failsFast(() => doomed.log.append(jobId(), warning('x')));
  });
});
