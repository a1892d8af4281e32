/**
 * vitest fixtures for a nats-server of the tests' own and the connections to it. `natsServer` is a
 * server on a free loopback port with its own store directory; `connect(name)` opens a connection to it
 * (reconnecting forever, as `connectTo`). Whatever a scope opened is closed when it ends: its
 * connections first, then the server is killed and its directory removed, after the scope's own
 * after-hooks have run.
 *
 * One server for the whole file, set up when a test or hook of the file first asks for it:
 *
 *     const it = testWithNatsServer({ jetstream: false });
 *     it.beforeAll(async ({ connect }) => { nc = await connect('worker-test'); });
 *
 * A fresh server for every test: `testWithNatsServerPerTest()`, its fixtures taken in tests and in
 * beforeEach/afterEach hooks. Suite hooks (beforeAll/afterAll) must be the returned API's own
 * (`it.beforeAll`), not vitest's, to receive fixtures.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import { test } from 'vitest';
import { connectTo } from './nats.js';
import { startNatsServer, type NatsServerHandle, type NatsServerOptions } from './nats-server.js';

/** Opens a connection to the fixture's server; `name` is the client name the server shows. */
export type Connect = (name?: string) => Promise<NatsConnection>;

async function serverFor(options: NatsServerOptions, onCleanup: (fn: () => Promise<void>) => void): Promise<NatsServerHandle> {
  const server = await startNatsServer(options);
  onCleanup(() => server.dispose());
  return server;
}

function connectionsTo(server: NatsServerHandle, onCleanup: (fn: () => Promise<void>) => void): Connect {
  const opened: NatsConnection[] = [];
  onCleanup(async () => {
    await Promise.all(opened.map((nc) => nc.close()));
  });
  return async (name) => {
    const nc = await connectTo(server.url, name);
    opened.push(nc);
    return nc;
  };
}

/** A test API whose `natsServer` and `connect` last for the whole file. */
export function testWithNatsServer(options: NatsServerOptions = {}) {
  return test
    .extend('natsServerOptions', { scope: 'file' }, options)
    .extend('natsServer', { scope: 'file' }, ({ natsServerOptions }, { onCleanup }) => serverFor(natsServerOptions, onCleanup))
    .extend('connect', { scope: 'file' }, ({ natsServer }, { onCleanup }) => connectionsTo(natsServer, onCleanup));
}

/** A test API whose `natsServer` and `connect` are new for every test. */
export function testWithNatsServerPerTest(options: NatsServerOptions = {}) {
  return test
    .extend('natsServerOptions', options)
    .extend('natsServer', ({ natsServerOptions }, { onCleanup }) => serverFor(natsServerOptions, onCleanup))
    .extend('connect', ({ natsServer }, { onCleanup }) => connectionsTo(natsServer, onCleanup));
}
