import { RequestError, TimeoutError } from '@nats-io/nats-core';
import { RequestOne } from '@nats-io/nats-core/internal';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, describe, expect, vi } from 'vitest';
import { applyNatsRequestFix, natsCoreVersion, REQUEST_FIX_MEASURED_ON } from '../../src/jetstream/request-fix.js';
import { testWithNatsServer } from '../support/nats-fixtures.js';
import type { NatsServerHandle } from '../support/nats-server.js';

type Spied = { deferred: { reject: (err: unknown) => void } };

const originalCancel = RequestOne.prototype.cancel;
const it = testWithNatsServer();

describe('the nats.js request fix', () => {
  let server: NatsServerHandle;
  let nc: NatsConnection;
  const rejects: ReturnType<typeof vi.fn>[] = [];

  it.beforeAll(async ({ natsServer }) => {
    expect(applyNatsRequestFix('3.5.0')).toBe(false); // another version: left alone
    expect(RequestOne.prototype.cancel).toBe(originalCancel);
    expect(applyNatsRequestFix()).toBe(true);
    expect(RequestOne.prototype.cancel).not.toBe(originalCancel);
    expect(applyNatsRequestFix()).toBe(true); // idempotent
    // Outermost wrapper: watch every request's deferred rejection.
    const proto = RequestOne.prototype as unknown as { resolver: (this: Spied, ...args: unknown[]) => void };
    const patched = proto.resolver;
    proto.resolver = function (this: Spied, ...args: unknown[]) {
      const original = this.deferred.reject;
      const spy = vi.fn((err: unknown) => original(err));
      this.deferred.reject = spy;
      rejects.push(spy);
      patched.apply(this, args);
    };
    server = natsServer;
    nc = await connect({ servers: server.url, noAsyncTraces: true });
    nc.subscribe('echo', {
      callback: (_err, msg) => {
        msg.respond(msg.data);
      },
    });
    await nc.flush();
  });

  afterAll(async () => {
    await nc?.close();
  });

  it('is measured on the installed nats.js: when this fails, measure the new version and move REQUEST_FIX_MEASURED_ON', () => {
    expect(natsCoreVersion()).toBe(REQUEST_FIX_MEASURED_ON);
  });

  it('a replied request resolves and builds no cancellation error', async () => {
    rejects.length = 0;
    const reply = await nc.request('echo', 'hello', { timeout: 2_000 });
    expect(reply.string()).toBe('hello');
    expect(rejects).toHaveLength(1);
    expect(rejects[0]).not.toHaveBeenCalled();
  });

  it('a request nobody answers still times out', async () => {
    nc.subscribe('silent', { callback: () => {} });
    await expect(nc.request('silent', 'x', { timeout: 200 })).rejects.toBeInstanceOf(TimeoutError);
  });

  it('a request to no responders still fails with the no-responders cause', async () => {
    const err = (await nc.request('nobody.here', 'x', { timeout: 2_000 }).catch((e: unknown) => e)) as RequestError;
    expect(err).toBeInstanceOf(RequestError);
    expect(err.isNoResponders()).toBe(true);
  });

  it('a request pending when the connection closes is rejected', async () => {
    const other = await connect({ servers: server.url, noAsyncTraces: true });
    other.subscribe('slow', { callback: () => {} });
    await other.flush();
    const pending = other.request('slow', 'x', { timeout: 10_000 });
    await other.close();
    await expect(pending).rejects.toBeInstanceOf(RequestError);
  });
});
