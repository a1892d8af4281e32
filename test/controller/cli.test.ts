import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, expect } from 'vitest';
import { jobPolicyOf, parseControllerArgs } from '../../src/cli/controller.js';
import { main } from '../../src/cli/main.js';
import { connectTo, eventually } from '../support/nats.js';
import type { NatsServerHandle } from '../support/nats-server.js';
import { testWithNatsServer } from '../support/nats-fixtures.js';

const it = testWithNatsServer();

describe('weir controller (CLI)', () => {
  let server: NatsServerHandle;

  it.beforeAll(({ natsServer }) => {
    server = natsServer;
  });

  it('parses its arguments', () => {
    expect(parseControllerArgs([], {})).toEqual({ url: 'nats://127.0.0.1:4222', heartbeatTimeoutMs: undefined, replicas: 1, shutdownTimeoutMs: 10_000 });
    expect(parseControllerArgs(['--shutdown-timeout', '2500'], {}).shutdownTimeoutMs).toBe(2_500);
    expect(parseControllerArgs([], { WEIR_SHUTDOWN_TIMEOUT_MS: '3000' }).shutdownTimeoutMs).toBe(3_000);
    expect(() => parseControllerArgs([], { WEIR_SHUTDOWN_TIMEOUT_MS: 'soon' })).toThrow('WEIR_SHUTDOWN_TIMEOUT_MS must be a positive integer, got "soon"');
    expect(parseControllerArgs([], { NATS_URL: 'nats://x:1' }).url).toBe('nats://x:1');
    expect(parseControllerArgs(['--nats', 'nats://y:2', '--heartbeat-timeout', '5000'], {})).toEqual({ url: 'nats://y:2', heartbeatTimeoutMs: 5000, replicas: 1, shutdownTimeoutMs: 10_000 });
    expect(() => parseControllerArgs(['--heartbeat-timeout', '0'], {})).toThrow(/positive integer/);
    expect(() => parseControllerArgs(['--heartbeat-timeout', '1.5'], {})).toThrow(/positive integer/);
    expect(() => parseControllerArgs(['--bogus'], {})).toThrow();
    expect(parseControllerArgs(['--heartbeat-interval', '300', '--allowed-restarts=-1'], {})).toMatchObject({ heartbeatIntervalMs: 300, allowedRestarts: -1 });
    expect(() => parseControllerArgs(['--allowed-restarts=-2'], {})).toThrow(/integer ≥ -1/);
    expect(parseControllerArgs(['--retained-checkpoints', '3'], {})).toMatchObject({ retainedCheckpoints: 3 });
    expect(() => parseControllerArgs(['--retained-checkpoints', '0'], {})).toThrow(/positive integer/);
    expect(() => parseControllerArgs(['--retained-checkpoints', '11'], {})).toThrow('--retained-checkpoints K must be at most 10, got 11');
    expect(parseControllerArgs(['--checkpoint-grid-ms', '5'], {})).toMatchObject({ checkpointGridMs: 5 });
    expect(parseControllerArgs([], { WEIR_CHECKPOINT_GRID_MS: '50' })).toMatchObject({ checkpointGridMs: 50 });
    expect(parseControllerArgs(['--checkpoint-grid-ms', '10'], { WEIR_CHECKPOINT_GRID_MS: '50' })).toMatchObject({ checkpointGridMs: 10 });
    expect(() => parseControllerArgs(['--checkpoint-grid-ms', '0'], {})).toThrow(/positive integer/);
    expect(() => parseControllerArgs(['--checkpoint-grid-ms', '1001'], {})).toThrow('--checkpoint-grid-ms MS must be at most 1000, got 1001');
    expect(parseControllerArgs(['--replicas', '3'], {}).replicas).toBe(3);
    expect(parseControllerArgs([], { WEIR_REPLICAS: '3' }).replicas).toBe(3);
    expect(parseControllerArgs(['--replicas', '1'], { WEIR_REPLICAS: '3' }).replicas).toBe(1);
    expect(() => parseControllerArgs(['--replicas', '6'], {})).toThrow('--replicas N must be at most 5, got 6');
    expect(() => parseControllerArgs([], { WEIR_REPLICAS: '0' })).toThrow('WEIR_REPLICAS must be a positive integer, got "0"');
  });

  it('reads job policy overrides from --policy-file (or WEIR_POLICY_FILE), with --allowed-restarts over them', () => {
    const files: Record<string, string> = {
      '/ok.json': JSON.stringify({ stopTimeoutMs: 5_000, restartBackoff: { maxMs: 1_000 }, allowedRestarts: 3 }),
      '/typo.json': JSON.stringify({ stopTimeoutMS: 5_000 }),
      '/bad.json': JSON.stringify({ restartBackoff: { initialMs: -1 } }),
      '/broken.json': '{',
    };
    const read = (path: string) => {
      const text = files[path];
      if (text === undefined) throw new Error(`ENOENT: no such file ${path}`);
      return text;
    };
    expect(parseControllerArgs(['--policy-file', '/ok.json'], {}).policyFile).toBe('/ok.json');
    expect(parseControllerArgs([], { WEIR_POLICY_FILE: '/ok.json' }).policyFile).toBe('/ok.json');
    const policy = jobPolicyOf({ policyFile: '/ok.json' }, read);
    expect(policy).toEqual({ stopTimeoutMs: 5_000, allowedRestarts: 3, restartBackoff: { initialMs: 500, maxMs: 1_000, multiplier: 2, jitter: 0.5 } });
    expect(jobPolicyOf({ policyFile: '/ok.json', allowedRestarts: -1 }, read).allowedRestarts).toBe(-1);
    expect(jobPolicyOf({}, read)).toEqual({});
    expect(() => jobPolicyOf({ policyFile: '/typo.json' }, read)).toThrow(/the policy file \/typo.json: .*stopTimeoutMS/);
    expect(() => jobPolicyOf({ policyFile: '/bad.json' }, read)).toThrow(/restartBackoff\.initialMs/);
    expect(() => jobPolicyOf({ policyFile: '/broken.json' }, read)).toThrow(/cannot read the policy file \/broken.json/);
    expect(() => jobPolicyOf({ policyFile: '/missing.json' }, read)).toThrow(/cannot read the policy file \/missing.json: ENOENT/);
  });

  it('rejects bad arguments with exit code 2 and one line that points to --help', async () => {
    const lines: string[] = [];
    expect(await main(['controller', '--heartbeat-timeout', 'soon'], (l) => lines.push(l))).toBe(2);
    expect(await main(['controller', '--bogus'], (l) => lines.push(l))).toBe(2);
    expect(await main(['controller', '--nats'], (l) => lines.push(l))).toBe(2);
    expect(await main(['controller', 'extra'], (l) => lines.push(l))).toBe(2);
    expect(await main(['worker', '--slots', '2', '--wat'], (l) => lines.push(l))).toBe(2);
    expect(await main(['worker'], (l) => lines.push(l))).toBe(2);
    expect(lines).toEqual([
      'weir controller: --heartbeat-timeout MS must be a positive integer, got "soon" (see weir controller --help)',
      'weir controller: unknown option --bogus (see weir controller --help)',
      'weir controller: --nats needs a value (see weir controller --help)',
      'weir controller: unexpected argument "extra" (see weir controller --help)',
      'weir worker: unknown option --wat (see weir worker --help)',
      'weir worker: --slots N (a positive integer) is required (see weir worker --help)',
    ]);
  });

  it('weir controller --help and weir worker --help print their own help and exit 0', async () => {
    for (const command of ['controller', 'worker']) {
      for (const flag of ['--help', '-h']) {
        const lines: string[] = [];
        // Help wins over anything else on the line, even a flag it would refuse.
        expect(await main([command, '--bogus', flag], (l) => lines.push(l))).toBe(0);
        expect(lines.join('\n')).toContain(`Usage: weir ${command} `);
        expect(lines.join('\n')).toContain('--shutdown-timeout MS');
      }
    }
  });

  it('serves the API until SIGTERM, then exits 0', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'controller', '--nats', server.url, '--heartbeat-timeout', '5000'], {
      cwd: process.cwd(),
      env: { ...process.env, WEIR_LOG_LEVEL: 'info', WEIR_INSPECT: '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const exited = once(child, 'exit');
    try {
      await eventually(() => expect(output).toContain('controller started'), { timeoutMs: 20_000, intervalMs: 100 });
      const nc = await connectTo(server.url);
      const reply = await nc.request('weir.api.jobs.list', new TextEncoder().encode('{"v":1}'), { timeout: 5_000 });
      expect(JSON.parse(new TextDecoder().decode(reply.data))).toEqual({ v: 1, data: [], has_more: false });
      await nc.close();
      child.kill('SIGTERM');
      const [code] = (await exited) as [number | null, NodeJS.Signals | null];
      expect(code).toBe(0);
      expect(output).toContain('controller stopped');
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  }, 30_000);
});
