import { Kvm } from '@nats-io/kv';
import { existsSync } from 'node:fs';
import { dirname } from 'node:path';
import type { NatsConnection } from '@nats-io/transport-node';
import { describe, expect } from 'vitest';
import { eventually } from './support/nats.js';
import { testWithNatsServer, testWithNatsServerPerTest } from './support/nats-fixtures.js';
import { findNatsServer } from './support/nats-server.js';

const SYSTEM_NATS_PORT = 4222;

const it = testWithNatsServer();

describe('nats-server harness', () => {
  let nc: NatsConnection;

  it.beforeAll(async ({ natsServer, connect }) => {
    // Guard against ever talking to the shared system server.
    expect(natsServer.port).not.toBe(SYSTEM_NATS_PORT);
    expect(natsServer.url).toBe(`nats://127.0.0.1:${natsServer.port}`);
    nc = await connect('harness-smoke');
    expect(nc.getServer()).toBe(`127.0.0.1:${natsServer.port}`);
    nc.subscribe('smoke.upper', {
      callback: (_err, msg) => {
        msg.respond(msg.string().toUpperCase());
      },
    });
  });

  async function upper(text: string, timeout = 1_000): Promise<string> {
    return (await nc.request('smoke.upper', text, { timeout })).string();
  }

  // nats.js drops whatever is published while it is disconnected, so a request
  // racing the reconnect is lost; retry with short timeouts instead of one long one.
  const retryFast = { timeoutMs: 10_000, intervalMs: 50 };

  it('does request/reply', async () => {
    expect(await upper('hello')).toBe('HELLO');
  });

  it('does KV compare-and-set', async () => {
    const kv = await new Kvm(nc).create('smoke', { history: 5 });
    const rev1 = await kv.create('k', 'v1');
    const rev2 = await kv.update('k', 'v2', rev1);
    expect(rev2).toBeGreaterThan(rev1);
    await expect(kv.update('k', 'v3', rev1)).rejects.toThrow();
    expect((await kv.get('k'))?.string()).toBe('v2');
  });

  it('keeps clients, port and JetStream data across restart()', async ({ natsServer: server }) => {
    const { port, storeDir } = server;
    const pidBefore = server.pid;
    await server.restart();
    expect(server.port).toBe(port);
    expect(server.storeDir).toBe(storeDir);
    expect(server.pid).not.toBe(pidBefore);

    expect(await eventually(() => upper('again', 250), retryFast)).toBe('AGAIN');
    expect(nc.getServer()).toBe(`127.0.0.1:${port}`);
    const value = await eventually(
      async () => {
        const kv = await new Kvm(nc).open('smoke');
        return (await kv.get('k'))?.string();
      },
      retryFast,
    );
    expect(value).toBe('v2');
  });

  it('comes back on the same port after kill()', async ({ natsServer: server }) => {
    const { port, pid } = server;
    await server.kill();
    expect(() => process.kill(pid, 0)).toThrow();
    await server.restart();
    expect(server.port).toBe(port);
    expect(await eventually(() => upper('back', 250), retryFast)).toBe('BACK');
  });
});

const each = testWithNatsServerPerTest({ jetstream: false });

describe('a server per test', () => {
  let first: { pid: number; dir: string; nc: NatsConnection } | undefined;

  each('gets a server and connections of its own', async ({ natsServer, connect }) => {
    first = { pid: natsServer.pid, dir: dirname(natsServer.storeDir), nc: await connect('first') };
    expect(existsSync(first.dir)).toBe(true);
  });

  each('and the next test another, the first one closed, killed and removed', ({ natsServer }) => {
    expect(first).toBeDefined();
    expect(natsServer.pid).not.toBe(first!.pid);
    expect(first!.nc.isClosed()).toBe(true);
    expect(() => process.kill(first!.pid, 0)).toThrow();
    expect(existsSync(first!.dir)).toBe(false);
  });
});

describe('findNatsServer', () => {
  it('throws a one-line install hint when WEIR_NATS_SERVER is missing', () => {
    const saved = process.env['WEIR_NATS_SERVER'];
    process.env['WEIR_NATS_SERVER'] = '/nonexistent/weir/nats-server';
    try {
      expect(() => findNatsServer()).toThrow(
        new Error(
          'nats-server not found: install it (Debian/Ubuntu: apt-get install nats-server; macOS: brew install nats-server) or set WEIR_NATS_SERVER to its path',
        ),
      );
    } finally {
      if (saved === undefined) delete process.env['WEIR_NATS_SERVER'];
      else process.env['WEIR_NATS_SERVER'] = saved;
    }
  });
});
