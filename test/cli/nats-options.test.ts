import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from '@nats-io/transport-node';
import { createUser } from '@nats-io/nkeys';
import { afterAll, beforeAll, describe, expect } from 'vitest';
import { natsOptions, natsServers } from '../../src/cli/nats-options.js';
import { freePort } from '../../src/shared/free-port.js';
import { testWithNatsServer } from '../support/nats-fixtures.js';

/** The only user the server lets in. */
const user = createUser();
const it = testWithNatsServer({ jetstream: false, config: `authorization { users = [ { nkey: ${user.getPublicKey()} } ] }\n` });

describe('natsOptions', () => {
  it('takes user/password and token from the environment, nothing by default', () => {
    expect(natsOptions('nats://h:1', {})).toEqual({ servers: ['nats://h:1'], maxReconnectAttempts: -1, waitOnFirstConnect: true, noAsyncTraces: true });
    expect(natsOptions('nats://h:1', { NATS_USER: 'u', NATS_PASSWORD: 'p' })).toMatchObject({ user: 'u', pass: 'p' });
    expect(natsOptions('nats://h:1', { NATS_TOKEN: 't' })).toMatchObject({ token: 't' });
  });

  it('takes a comma-separated list of servers, as the nats CLI does', () => {
    expect(natsServers('nats://a:4222, nats://b:4222 ,tls://c:4223')).toEqual(['nats://a:4222', 'nats://b:4222', 'tls://c:4223']);
    expect(natsOptions('nats://a:1,nats://b:2', {}).servers).toEqual(['nats://a:1', 'nats://b:2']);
    expect(() => natsServers(' , ')).toThrow(/no NATS server/);
  });

  it('refuses two authentication methods at once', () => {
    expect(() => natsOptions('nats://h:1', { NATS_USER: 'u', NATS_TOKEN: 't' })).toThrow(/one NATS authentication method, not NATS_USER and NATS_TOKEN/);
  });

  it('maps the TLS variables to file options and wants a key with a certificate', () => {
    expect(natsOptions('tls://h:1', { NATS_TLS_CA: '/ca.pem' }).tls).toEqual({ caFile: '/ca.pem' });
    expect(natsOptions('tls://h:1', { NATS_TLS_CERT: '/c.pem', NATS_TLS_KEY: '/k.pem' }).tls).toEqual({ certFile: '/c.pem', keyFile: '/k.pem' });
    expect(() => natsOptions('tls://h:1', { NATS_TLS_CERT: '/c.pem' })).toThrow(/NATS_TLS_KEY/);
  });

  describe('against a server that wants an nkey', () => {
    let dir: string;

    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'weir-nkey-'));
      await writeFile(join(dir, 'user.nk'), `${new TextDecoder().decode(user.getSeed())}\n`);
    });

    afterAll(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    it('reaches the server through a list whose first entry answers nothing', async ({ natsServer: server }) => {
      const dead = `nats://127.0.0.1:${await freePort()}`;
      const options = natsOptions(`${dead}, ${server.url}`, { NATS_NKEY_SEED_FILE: join(dir, 'user.nk') });
      const nc = await connect({ ...options, noRandomize: true, reconnectTimeWait: 50 });
      expect(nc.getServer()).toBe(new URL(server.url).host);
      await nc.close();
    });

    it('connects with NATS_NKEY_SEED_FILE and is refused without it', async ({ natsServer: server }) => {
      const nc = await connect({ ...natsOptions(server.url, { NATS_NKEY_SEED_FILE: join(dir, 'user.nk') }), waitOnFirstConnect: false, maxReconnectAttempts: 0 });
      await nc.flush();
      await nc.close();
      await expect(connect({ ...natsOptions(server.url, {}), waitOnFirstConnect: false, maxReconnectAttempts: 0 })).rejects.toThrow(/authorization/i);
    });
  });
});
