import { Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect } from 'vitest';
import {
  ConflictError,
  openStore,
  PartialJobError,
  StoreValidationError,
  UnknownJobError,
  type ConfigChange,
  type JobConfigRecord,
  type Store,
} from '../../src/store/index.js';
import { connectTo, eventually } from '../support/nats.js';
import { testWithNatsServer } from '../support/nats-fixtures.js';
import type { NatsServerHandle } from '../support/nats-server.js';
import { closeAll, config, FAST, jobId, spec } from './helpers.js';

const it = testWithNatsServer();

describe('JobStore', () => {
  let server: NatsServerHandle;
  let nc: NatsConnection;
  let store: Store;

  it.beforeAll(async ({ natsServer, connect }) => {
    server = natsServer;
    nc = await connect('job-store');
    store = await openStore(nc, FAST);
  });

  it('opens idempotently, also from several connections at once', async () => {
    const others = await Promise.all([1, 2, 3].map((i) => connectTo(server.url, `open-${i}`)));
    try {
      await Promise.all(others.map((other) => openStore(other, FAST)));
      await openStore(nc, FAST);
      const kv = await new Kvm(nc).open('weir_jobs');
      const status = await kv.status();
      expect(status.history).toBe(5);
      expect(status.storage).toBe('file');
    } finally {
      await closeAll(...others);
    }
  });

  it('creates, gets, lists and deletes a job', async () => {
    const id = jobId();
    const created = await store.jobs.create(id, spec('first'), config({ restartNonce: 3 }));
    expect(created.spec).toMatchObject({ name: 'first', parallelism: 2 });
    expect(created.spec.created_at).toBeGreaterThan(Date.now() * 1000 - 60_000_000);
    expect(created.config).toEqual(config({ restartNonce: 3 }));
    expect(created.status).toMatchObject({ state: 'Created', generation: 0, restarts: 0, appliedRestartNonce: 3, failure: null });
    expect(created.revisions.spec).toBeLessThan(created.revisions.config);
    expect(created.revisions.config).toBeLessThan(created.revisions.status);

    expect(await store.jobs.get(id)).toEqual(created);
    expect(await store.jobs.list()).toContain(id);

    await store.jobs.delete(id);
    expect(await store.jobs.get(id)).toBeNull();
    expect(await store.jobs.list()).not.toContain(id);
    // The id is free again (its keys now end in purge markers, which create accepts).
    const again = await store.jobs.create(id, spec('second'), config());
    expect(again.spec['name']).toBe('second');
  });

  it('rejects a second create of the same id with ConflictError(exists)', async () => {
    const id = jobId();
    await store.jobs.create(id, spec(), config());
    const err = await store.jobs.create(id, spec('other'), config()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConflictError);
    expect(err).toMatchObject({ reason: 'exists', jobId: id });
    expect((await store.jobs.get(id))?.spec['name']).toBe('pipeline');
  });

  it('lets only one of several concurrent creates of an id win', async () => {
    const id = jobId();
    const results = await Promise.allSettled([1, 2, 3, 4].map((n) => store.jobs.create(id, spec(`racer-${n}`), config())));
    const won = results.filter((r) => r.status === 'fulfilled');
    expect(won).toHaveLength(1);
    for (const r of results) if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(ConflictError);
    expect(await store.jobs.get(id)).toEqual(won[0]?.value);
  });

  it('finishes a repeated create with the same requestId instead of conflicting with it', async () => {
    const id = jobId();
    const first = await store.jobs.create(id, spec(), config(), { requestId: 'req-1' });
    const repeat = await store.jobs.create(id, spec(), config(), { requestId: 'req-1' });
    expect(repeat).toEqual(first);
    await expect(store.jobs.create(id, spec(), config(), { requestId: 'req-2' })).rejects.toBeInstanceOf(ConflictError);
  });

  it('detects and reports a partial job left by a crashed create', async () => {
    const id = jobId('partial');
    // What a create that crashed after its first write leaves behind.
    const kv = await new Kvm(nc).open('weir_jobs');
    await kv.create(`${id}.spec`, JSON.stringify({ ...spec(), created_at: 1 }));

    const getErr = await store.jobs.get(id).catch((e: unknown) => e);
    expect(getErr).toBeInstanceOf(PartialJobError);
    expect(getErr).toMatchObject({ present: ['spec'], missing: ['config', 'status'] });

    const createErr = await store.jobs.create(id, spec(), config()).catch((e: unknown) => e);
    expect(createErr).toBeInstanceOf(ConflictError);
    expect(createErr).toMatchObject({ reason: 'partial', present: ['spec'] });

    expect(await store.jobs.list()).toContain(id);
    await store.jobs.delete(id);
    await store.jobs.create(id, spec(), config());
    expect((await store.jobs.get(id))?.status.state).toBe('Created');
  });

  it('throws UnknownJobError for an unknown job and StoreValidationError for a bad id', async () => {
    const id = jobId('ghost');
    expect(await store.jobs.get(id)).toBeNull();
    await expect(store.jobs.updateConfig(id, (c) => c)).rejects.toBeInstanceOf(UnknownJobError);
    await expect(store.jobs.updateStatus(id, (s) => s)).rejects.toBeInstanceOf(UnknownJobError);
    await expect(store.jobs.delete(id)).rejects.toBeInstanceOf(UnknownJobError);
    for (const bad of ['', 'a.b', 'a*', 'a>', 'x'.repeat(65), 'sp ace']) {
      await expect(store.jobs.get(bad)).rejects.toBeInstanceOf(StoreValidationError);
    }
  });

  it('updates config and status with compare-and-set, returning the new value and revision', async () => {
    const id = jobId();
    const { revisions } = await store.jobs.create(id, spec(), config());
    const cfg = await store.jobs.updateConfig(id, (c) => ({ ...c, stop: 'graceful' }));
    expect(cfg.value.stop).toBe('graceful');
    expect(cfg.revision).toBeGreaterThan(revisions.status);
    const st = await store.jobs.updateStatus(id, (s) => ({ ...s, state: 'Running', generation: 1, startTime: 5, updatedAt: 6 }));
    expect(st.value).toMatchObject({ state: 'Running', generation: 1, startTime: 5 });
    const got = await store.jobs.get(id);
    expect(got?.config.stop).toBe('graceful');
    expect(got?.status.state).toBe('Running');
    expect(got?.revisions).toMatchObject({ config: cfg.revision, status: st.revision });
  });

  it('writes on a known value and revision without reading; a stale one fails the set and is re-read', async () => {
    const id = jobId();
    await store.jobs.create(id, spec(), config());
    const first = await store.jobs.updateConfig(id, (c) => ({ ...c, restartNonce: c.restartNonce + 1 }));
    // On what the caller knows: one write.
    const second = await store.jobs.updateConfig(id, (c) => ({ ...c, restartNonce: c.restartNonce + 1 }), first);
    expect(second.value.restartNonce).toBe(2);
    expect(first.value.restartNonce).toBe(1);
    // `first` is stale now: the set on it fails and the update is applied to the fresh value instead.
    const third = await store.jobs.updateConfig(id, (c) => ({ ...c, restartNonce: c.restartNonce + 1 }), first);
    expect(third.value.restartNonce).toBe(3);
    expect((await store.jobs.get(id))?.config.restartNonce).toBe(3);
  });

  it('rejects an invalid mutate result and leaves the stored value alone', async () => {
    const id = jobId();
    await store.jobs.create(id, spec(), config());
    await expect(store.jobs.updateConfig(id, (c) => ({ ...c, stop: 'sideways' as JobConfigRecord['stop'] }))).rejects.toBeInstanceOf(
      StoreValidationError,
    );
    await expect(store.jobs.updateStatus(id, (s) => ({ ...s, extra: 1 }))).rejects.toBeInstanceOf(StoreValidationError);
    expect((await store.jobs.get(id))?.config.stop).toBe('none');
  });

  it('loses no update when 20 writers on 4 connections increment a counter concurrently', async () => {
    const id = jobId('cas');
    await store.jobs.create(id, spec(), config({ restartNonce: 0 }));
    const conns = await Promise.all([1, 2, 3, 4].map((i) => connectTo(server.url, `cas-${i}`)));
    try {
      const stores = await Promise.all(conns.map((c) => openStore(c, { ...FAST, casAttempts: 64, operationTimeoutMs: 20_000 })));
      let calls = 0;
      const results = await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          stores[i % 4]!.jobs.updateConfig(id, (c) => {
            calls++;
            return { ...c, restartNonce: c.restartNonce + 1 };
          }),
        ),
      );
      expect((await store.jobs.get(id))?.config.restartNonce).toBe(20);
      // Every writer committed a distinct value at a distinct revision.
      expect(new Set(results.map((r) => r.value.restartNonce)).size).toBe(20);
      expect(new Set(results.map((r) => r.revision)).size).toBe(20);
      expect(calls).toBeGreaterThan(20); // there was contention, and it was resolved by re-applying
    } finally {
      await closeAll(...conns);
    }
  });

  it('re-applies a stale writer on the fresh value instead of overwriting it', async () => {
    const id = jobId('stale');
    await store.jobs.create(id, spec(), config());
    const other = await connectTo(server.url, 'fast-writer');
    try {
      const otherStore = await openStore(other, FAST);
      const seen: JobConfigRecord[] = [];
      let release!: () => void;
      const gate = new Promise<void>((resolve) => (release = resolve));
      const slow = store.jobs.updateConfig(id, async (c) => {
        seen.push(c);
        if (seen.length === 1) await gate; // hold the first read while somebody else commits
        return { ...c, env: { ...c.env, SLOW: '1' } };
      });
      await eventually(() => expect(seen).toHaveLength(1));
      await otherStore.jobs.updateConfig(id, (c) => ({ ...c, stop: 'checkpoint', env: { ...c.env, FAST: '1' } }));
      release();
      const result = await slow;
      expect(seen).toHaveLength(2);
      expect(seen[0]).toMatchObject({ stop: 'none', env: {} });
      expect(seen[1]).toMatchObject({ stop: 'checkpoint', env: { FAST: '1' } });
      expect(result.value).toMatchObject({ stop: 'checkpoint', env: { FAST: '1', SLOW: '1' } });
      expect((await store.jobs.get(id))?.config).toEqual(result.value);
    } finally {
      await closeAll(other);
    }
  });

  it('gives up with ConflictError(contention) after casAttempts lost races', async () => {
    const id = jobId('hot');
    await store.jobs.create(id, spec(), config());
    const impatient = await openStore(nc, { ...FAST, casAttempts: 2 });
    let calls = 0;
    const err = await impatient.jobs
      .updateStatus(id, async (s) => {
        calls++;
        // Somebody else always commits between our read and our write.
        await store.jobs.updateStatus(id, (t) => ({ ...t, restarts: t.restarts + 1 }));
        return { ...s, state: 'Failed' };
      })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConflictError);
    expect(err).toMatchObject({ reason: 'contention' });
    expect(calls).toBe(2);
    expect((await store.jobs.get(id))?.status).toMatchObject({ state: 'Created', restarts: 2 });
  });

  it('deletes only at the status revision the caller checked, if given', async () => {
    const id = jobId();
    await store.jobs.create(id, spec(), config());
    const checked = await store.jobs.updateStatus(id, (s) => ({ ...s, state: 'Stopped' }));
    await store.jobs.updateStatus(id, (s) => ({ ...s, state: 'Created' })); // restarted meanwhile
    await expect(store.jobs.delete(id, { statusRevision: checked.revision })).rejects.toBeInstanceOf(ConflictError);
    expect(await store.jobs.get(id)).not.toBeNull();
    const current = await store.jobs.get(id);
    await store.jobs.delete(id, { statusRevision: current!.revisions.status });
    expect(await store.jobs.get(id)).toBeNull();
  });

  it('watchConfigs sees changes made from another connection, and current() the values before', async () => {
    const before = jobId('watched');
    const after = jobId('watched');
    await store.jobs.create(before, spec(), config({ restartNonce: 7 }));
    const changes: ConfigChange[] = [];
    const watcher = await store.jobs.watchConfigs((change) => {
      changes.push(change);
    });
    const other = await connectTo(server.url, 'watch-writer');
    try {
      const otherStore = await openStore(other, FAST);
      const snapshot = await watcher.current();
      expect(snapshot.find((s) => s.jobId === before)).toMatchObject({ config: { restartNonce: 7 } });
      expect(changes).toEqual([]); // updates only: nothing from before the watch

      const updated = await otherStore.jobs.updateConfig(before, (c) => ({ ...c, stop: 'graceful' }));
      await otherStore.jobs.create(after, spec(), config({ restartNonce: 1 }));
      await otherStore.jobs.delete(after);
      await eventually(() => expect(changes.length).toBeGreaterThanOrEqual(3));
      expect(changes[0]).toEqual({ jobId: before, config: updated.value, revision: updated.revision });
      expect(changes[1]).toMatchObject({ jobId: after, config: { restartNonce: 1 } });
      expect(changes[2]).toMatchObject({ jobId: after, config: null });
    } finally {
      watcher.stop();
      await watcher.closed;
      await closeAll(other);
    }
  });

  it('keeps a watcher going when its callback throws', async () => {
    const id = jobId('watched');
    await store.jobs.create(id, spec(), config());
    const errors: unknown[] = [];
    const seen: number[] = [];
    const watcher = await store.jobs.watchConfigs(
      (change) => {
        seen.push(change.config?.restartNonce ?? -1);
        if (seen.length === 1) throw new Error('boom');
      },
      { onError: (err) => errors.push(err) },
    );
    try {
      await store.jobs.updateConfig(id, (c) => ({ ...c, restartNonce: 1 }));
      await store.jobs.updateConfig(id, (c) => ({ ...c, restartNonce: 2 }));
      await eventually(() => expect(seen).toEqual([1, 2]));
      expect(errors).toHaveLength(1);
    } finally {
      watcher.stop();
    }
    await sleep(0);
  });
});
