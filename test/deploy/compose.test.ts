import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { parseApiArgs } from '../../src/cli/api.js';
import { assertSafeListen } from '../../src/api/server.js';
import { parseControllerArgs } from '../../src/cli/controller.js';
import { COMMANDS } from '../../src/cli/main.js';
import { parseWorkerArgs } from '../../src/cli/worker.js';

/*
 * No Docker engine runs here, so the deployment files are checked by reading them: the compose file
 * parses, its services run commands the CLI accepts with the arguments given, and the Dockerfile copies
 * what exists and runs the CLI. Where `docker compose` is installed, it validates the file too.
 */

interface Service {
  image?: string;
  build?: string;
  command?: string[];
  ports?: string[];
  volumes?: string[];
  depends_on?: Record<string, { condition: string }>;
  environment?: Record<string, string>;
  profiles?: string[];
  healthcheck?: { test: string[] };
}

const compose = parse(readFileSync('docker-compose.yml', 'utf8')) as { services: Record<string, Service>; volumes: Record<string, unknown> };
const dockerfile = readFileSync('Dockerfile', 'utf8');
const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as { engines: { node: string }; scripts: Record<string, string> };

describe('docker-compose.yml', () => {
  const NATS_NODES = ['nats1', 'nats2', 'nats3'];
  const NATS_URLS = 'nats://nats1:4222,nats://nats2:4222,nats://nats3:4222';
  const CONTROLLERS = ['controller-1', 'controller-2'];

  it('runs a 3-node NATS cluster with JetStream, each node on its own volume, reachable from the host on loopback only', () => {
    for (const name of NATS_NODES) {
      const nats = compose.services[name]!;
      expect(nats.image, name).toMatch(/^nats:2\.(1\d|[2-9]\d)/);
      expect(nats.command).toEqual(expect.arrayContaining(['--jetstream', '--store_dir', `/data/${name}`, '--server_name', name, '--cluster_name', 'weir']));
      // Every node routes to the whole cluster.
      expect(nats.command).toEqual(expect.arrayContaining(['--routes', NATS_NODES.map((n) => `nats://${n}:6222`).join(',')]));
      expect(nats.volumes).toEqual([`${name}-data:/data/${name}`]);
      expect(Object.keys(compose.volumes)).toContain(`${name}-data`);
      for (const port of nats.ports ?? []) expect(port).toMatch(/^127\.0\.0\.1:/);
    }
  });

  it('runs two controllers and workers from the weir image with commands the CLI accepts, every bucket and stream on 3 replicas', () => {
    const weirServices = Object.entries(compose.services).filter(([, s]) => s.build !== undefined);
    expect(weirServices.map(([name]) => name).sort()).toEqual(['api', 'cli', ...CONTROLLERS, 'worker']);
    for (const [, s] of weirServices) expect(s.image).toBe('weir:latest');

    const healthyNats = Object.fromEntries(NATS_NODES.map((n) => [n, { condition: 'service_healthy' }]));
    for (const name of CONTROLLERS) {
      const controller = compose.services[name]!;
      expect(controller.command?.[0]).toBe('controller');
      // A stable id each: a controller restarted under its name takes its jobs back at once.
      expect(parseControllerArgs(controller.command!.slice(1), {})).toMatchObject({ url: NATS_URLS, replicas: 3, controllerId: name, leaseTtlMs: 10_000 });
      expect(controller.depends_on).toEqual(healthyNats);
    }

    const worker = compose.services['worker']!;
    expect(worker.command?.[0]).toBe('worker');
    expect(parseWorkerArgs(worker.command!.slice(1), {})).toEqual({ slots: 4, id: undefined, url: NATS_URLS, incrementalState: {}, replicas: 3, shutdownTimeoutMs: 10_000 });

    for (const [name, s] of weirServices) {
      if (s.command !== undefined) expect(COMMANDS, name).toContain(s.command[0]);
    }
    // The one-off CLI finds NATS through the environment, as `weir jobs` does.
    expect(compose.services['cli']).toMatchObject({ profiles: ['cli'], environment: { NATS_URL: NATS_URLS } });
  });

  it('runs the HTTP API on every interface of its container only with a token, published on the host’s loopback', () => {
    const api = compose.services['api']!;
    expect(api.command?.[0]).toBe('api');
    const env = api.environment ?? {};
    // Unset or empty, WEIR_API_TOKEN reaches the API as '' and the API refuses to start, so it never
    // listens without one; other commands (`run --rm cli`) need no token.
    expect(env['WEIR_API_TOKEN']).toBe('${WEIR_API_TOKEN:-}');
    const unset = parseApiArgs(api.command!.slice(1), { ...env, WEIR_API_TOKEN: '' });
    expect(unset.token).toBeNull();
    expect(() => assertSafeListen(unset.host, null)).toThrow('refusing to listen on 0.0.0.0 without WEIR_API_TOKEN');
    const token = 'token-from-the-environment';
    const resolved = { ...env, WEIR_API_TOKEN: token };
    expect(parseApiArgs(api.command!.slice(1), resolved)).toEqual({ url: NATS_URLS, host: '0.0.0.0', port: 8000, token: { from: 'env' }, replicas: 3, shutdownTimeoutMs: 10_000 });
    expect(api.ports).toEqual(['127.0.0.1:8000:8000']);
    expect(api.depends_on).toEqual(Object.fromEntries(CONTROLLERS.map((n) => [n, { condition: 'service_started' }])));
    // The health check asks the route that needs no token, on the port the API listens on.
    expect(api.healthcheck?.test.join(' ')).toContain('http://127.0.0.1:8000/api/v1/ping');
    expect(dockerfile).toMatch(/^EXPOSE 8000$/m);
  });

  it('the commands its comments suggest exist, with files the image contains', () => {
    const suggested = readFileSync('docker-compose.yml', 'utf8').match(/run --rm cli (.+)$/gm) ?? [];
    expect(suggested.length).toBeGreaterThan(0);
    for (const line of suggested) {
      const [command, ...rest] = line.replace('run --rm cli ', '').split(' ');
      expect(COMMANDS).toContain(command);
      for (const arg of rest.filter((a) => a.endsWith('.json'))) {
        expect(existsSync(arg), arg).toBe(true);
        expect(dockerfile).toContain(`COPY ${arg.split('/')[0]} `);
      }
    }
  });

  it('is valid for `docker compose config` (or Debian’s `docker-compose config`) where one is installed', ({ skip }) => {
    const candidates: [string, string[]][] = [
      ['docker', ['compose']],
      ['docker-compose', []],
    ];
    const found = candidates.find(([cmd, pre]) => spawnSync(cmd, [...pre, 'version'], { encoding: 'utf8' }).status === 0);
    if (found === undefined) skip('neither docker compose nor docker-compose is installed here');
    const [cmd, pre] = found!;
    const result = spawnSync(cmd, [...pre, '-f', 'docker-compose.yml', 'config', '--quiet'], { encoding: 'utf8', env: { ...process.env, WEIR_API_TOKEN: 'x' } });
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    // Without a token it configures too: the one-off CLI needs none (the API itself refuses to start).
    const withoutToken = { ...process.env };
    delete withoutToken['WEIR_API_TOKEN'];
    const configured = spawnSync(cmd, [...pre, '-f', 'docker-compose.yml', 'config', '--quiet'], { encoding: 'utf8', env: withoutToken });
    expect(configured.status).toBe(0);
  });
});

describe('Dockerfile', () => {
  const lines = dockerfile.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));

  it('builds on a Node the package supports and runs the CLI', () => {
    const major = Number(/>=\s*(\d+)/.exec(pkg.engines.node)?.[1]);
    const bases = lines.filter((l) => l.startsWith('FROM ')).map((l) => /^FROM node:(\d+)/.exec(l)?.[1]);
    expect(bases.length).toBe(2);
    for (const base of bases) expect(Number(base)).toBeGreaterThanOrEqual(major);
    expect(lines).toContain('ENTRYPOINT ["node", "bin/weir.js"]');
    expect(lines).toContain('USER node');
    expect(readFileSync('bin/weir.js', 'utf8')).toContain('../dist/src/cli/main.js');
  });

  it('copies only what exists and builds with the package’s own build script', () => {
    for (const line of lines.filter((l) => l.startsWith('COPY ') && !l.includes('--from='))) {
      const sources = line.split(/\s+/).slice(1, -1);
      for (const source of sources) expect(existsSync(source), source).toBe(true);
    }
    expect(lines).toContain('RUN npm run build');
    expect(pkg.scripts['build']).toBeDefined();
    expect(lines).toContain('COPY --from=build /app/dist ./dist');
    expect(lines.some((l) => l.startsWith('RUN npm ci --omit=dev'))).toBe(true);
  });
});
