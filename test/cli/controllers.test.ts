/**
 * `weir controllers` against a real nats-server, with a tiny responder answering
 * `weir.api.controllers.list` as a controller would (the handler itself is tested in
 * test/controller/fleet-requests.test.ts).
 */
import type { NatsConnection } from '@nats-io/transport-node';
import { afterEach, beforeEach, describe, expect, vi, type MockInstance } from 'vitest';
import { main } from '../../src/cli/main.js';
import { encode, errorReply, subjects, type ListControllersReply } from '../../src/protocol/index.js';
import { startNatsServer, type NatsServerHandle } from '../support/nats-server.js';
import { testWithNatsServer } from '../support/nats-fixtures.js';

const REPLY: ListControllersReply = {
  v: 1,
  shards: 128,
  lease_ttl_ms: 10_000,
  answered_by: 'ctl-a',
  data: [
    { controller_id: 'ctl-a', jobs: 41, shards: 64, oldest_lease_age_ms: 3_120.4, presence_age_ms: 800, live: true },
    { controller_id: 'ctl-b.host-7', jobs: 0, shards: 64, oldest_lease_age_ms: 9_000, presence_age_ms: 12_000, live: false },
    { controller_id: 'ctl-c', jobs: 0, shards: 0, oldest_lease_age_ms: null, presence_age_ms: 15, live: true },
  ],
};

let server: NatsServerHandle;
let nc: NatsConnection;
/** What the responder answers. */
let answer: () => Uint8Array = () => encode(REPLY);
const received: unknown[] = [];
let out: string[];
let errSpy: MockInstance<(...args: unknown[]) => void>;
const errLines = () => errSpy.mock.calls.map((args) => args.map(String).join(' '));

async function weir(...argv: string[]): Promise<number> {
  return main([...argv, '--nats', server.url], (line) => out.push(line));
}

const it = testWithNatsServer();

it.beforeAll(async ({ natsServer, connect }) => {
  server = natsServer;
  nc = await connect('fake-controller');
  nc.subscribe(subjects.apiControllersList(), {
    callback: (_err, msg) => {
      received.push(msg.json());
      msg.respond(answer());
    },
  });
  await nc.flush();
});

beforeEach(() => {
  out = [];
  received.length = 0;
  answer = () => encode(REPLY);
  errSpy = vi.spyOn(console, 'error').mockImplementation(() => undefined);
});

afterEach(() => {
  errSpy.mockRestore();
});

describe('weir controllers', () => {
  it('a table: liveness, shards, jobs and the oldest lease age, then who answered', async () => {
    expect(await weir('controllers')).toBe(0);
    expect(received).toEqual([{ v: 1 }]);
    const lines = out.join('\n').split('\n');
    expect(lines).toHaveLength(5);
    expect(lines[0]).toMatch(/^CONTROLLER\s+LIVE\s+SHARDS\s+JOBS\s+LEASE AGE$/);
    expect(lines[1]).toMatch(/^ctl-a\s+yes\s+64\s+41\s+3\.12s$/);
    expect(lines[2]).toMatch(/^ctl-b\.host-7\s+no\s+64\s+0\s+9\.00s$/);
    expect(lines[3]).toMatch(/^ctl-c\s+yes\s+0\s+0\s+-$/);
    expect(lines[4]).toBe('answered by ctl-a; 128 shards, lease TTL 10.0s');
  });

  it('--json prints the reply as the controller sent it', async () => {
    expect(await weir('controllers', '--json')).toBe(0);
    expect(out).toHaveLength(1);
    expect(JSON.parse(out[0]!)).toEqual(REPLY);
  });

  it('no controllers yet', async () => {
    answer = () => encode({ ...REPLY, data: [] });
    expect(await weir('controllers')).toBe(0);
    expect(out.join('\n')).toBe('no controllers\nanswered by ctl-a; 128 shards, lease TTL 10.0s');
  });

  it('an error reply prints code and message and exits 1', async () => {
    answer = () => encode(errorReply('internal', 'the leases bucket is gone'));
    expect(await weir('controllers')).toBe(1);
    expect(errLines()).toEqual(['weir: internal: the leases bucket is gone']);
    expect(out).toEqual([]);
  });

  it.each([[['controllers', 'extra']], [['controllers', '--mode', 'force']], [['controllers', '--bogus']]])('weir %j exits 2 with one line', async (argv) => {
    expect(await main(argv, (line) => out.push(line))).toBe(2);
    expect(errLines()).toHaveLength(1);
    expect(errLines()[0]).toMatch(/^weir controllers: .+ \(see weir controllers --help\)$/);
    expect(received).toEqual([]);
  });

  it('is in the usage texts', async () => {
    expect(await main(['help'], (line) => out.push(line))).toBe(0);
    expect(out.join('\n')).toMatch(/^ {2}controllers {4}/m);
    out = [];
    expect(await main(['controllers', '--help'], (line) => out.push(line))).toBe(0);
    expect(out.join('\n')).toContain('weir controllers');
  });

  it('no controller running exits 3', async () => {
    await using lonely = await startNatsServer();
    expect(await main(['controllers', '--nats', lonely.url], (line) => out.push(line))).toBe(3);
    expect(errLines().join('\n')).toContain(`no controller answered on ${lonely.url}`);
    expect(out).toEqual([]);
  });
});
