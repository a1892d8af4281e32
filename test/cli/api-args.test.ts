import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseApiArgs, readApiToken } from '../../src/cli/api.js';
import { COMMANDS, main } from '../../src/cli/main.js';
import { apiBaseUrl, apiChildArgs, consoleUrl, parseUpArgs } from '../../src/cli/up.js';

describe('weir api arguments', () => {
  it('defaults: loopback, port 8000, no token, NATS from $NATS_URL', () => {
    expect(parseApiArgs([], {})).toEqual({ url: 'nats://127.0.0.1:4222', host: '127.0.0.1', port: 8000, token: null, replicas: 1, shutdownTimeoutMs: 10_000 });
    expect(parseApiArgs([], { NATS_URL: 'nats://n:1' })).toMatchObject({ url: 'nats://n:1' });
  });

  it('flags win over the environment', () => {
    const env = { WEIR_API_PORT: '9000', WEIR_API_HOST: '0.0.0.0', WEIR_API_TOKEN_FILE: '/env/token', NATS_URL: 'nats://env:1' };
    expect(parseApiArgs([], env)).toEqual({ url: 'nats://env:1', host: '0.0.0.0', port: 9000, token: { from: 'file', path: '/env/token' }, replicas: 1, shutdownTimeoutMs: 10_000 });
    expect(parseApiArgs(['--api-port', '0', '--api-host', '::1', '--api-token-file', '/flag/token', '--nats', 'nats://flag:2'], env)).toEqual({
      url: 'nats://flag:2',
      host: '::1',
      port: 0,
      token: { from: 'file', path: '/flag/token' },
      replicas: 1,
      shutdownTimeoutMs: 10_000,
    });
  });

  it('takes the token from WEIR_API_TOKEN, without reading it into the arguments', () => {
    expect(parseApiArgs([], { WEIR_API_TOKEN: 's3cret' })).toEqual({ url: 'nats://127.0.0.1:4222', host: '127.0.0.1', port: 8000, token: { from: 'env' }, replicas: 1, shutdownTimeoutMs: 10_000 });
    expect(JSON.stringify(parseApiArgs([], { WEIR_API_TOKEN: 's3cret' }))).not.toContain('s3cret');
  });

  it('refuses a token on the command line, two token sources, bad ports and positionals', () => {
    expect(() => parseApiArgs(['--api-token', 'x'], {})).toThrow(/never taken on the command line; set WEIR_API_TOKEN or use --api-token-file/);
    expect(() => parseApiArgs(['--api-token=x'], {})).toThrow(/never taken on the command line/);
    expect(() => parseApiArgs(['--api-token-file', '/t'], { WEIR_API_TOKEN: 'x' })).toThrow('set one API token source');
    expect(() => parseApiArgs(['--api-port', '65536'], {})).toThrow('--api-port must be a port number (0–65535), got "65536"');
    expect(() => parseApiArgs(['--api-port', '-1'], {})).toThrow();
    expect(() => parseApiArgs([], { WEIR_API_PORT: 'http' })).toThrow('WEIR_API_PORT must be a port number');
    expect(() => parseApiArgs(['--api-host', ''], {})).toThrow('--api-host must not be empty');
    expect(() => parseApiArgs(['extra'], {})).toThrow();
    expect(() => parseApiArgs(['--bogus'], {})).toThrow();
  });
});

describe('the API token', () => {
  it('is read from the file and trimmed; an empty or unreadable file is an error', () => {
    const files: Record<string, string> = { '/t': '  tok-1\n', '/empty': ' \n\n' };
    const read = (path: string) => {
      const text = files[path];
      if (text === undefined) throw new Error('ENOENT: no such file');
      return text;
    };
    expect(readApiToken({ from: 'file', path: '/t' }, {}, read)).toBe('tok-1');
    expect(() => readApiToken({ from: 'file', path: '/empty' }, {}, read)).toThrow('the API token file /empty is empty');
    expect(() => readApiToken({ from: 'file', path: '/missing' }, {}, read)).toThrow('cannot read the API token file /missing: ENOENT');
  });

  it('is taken from WEIR_API_TOKEN, trimmed; a blank one is an error; none is null', () => {
    expect(readApiToken({ from: 'env' }, { WEIR_API_TOKEN: ' abc \n' })).toBe('abc');
    expect(() => readApiToken({ from: 'env' }, { WEIR_API_TOKEN: '   ' })).toThrow('WEIR_API_TOKEN is blank');
    expect(readApiToken(null, {})).toBeNull();
  });

  it('weir api with a bad flag exits 2 with one line pointing to --help, and never echoes a token', async () => {
    const lines: string[] = [];
    const err = console.error;
    console.error = (...args: unknown[]) => lines.push(args.map(String).join(' '));
    try {
      expect(await main(['api', '--api-token', 'hunter2'], (line) => lines.push(line))).toBe(2);
    } finally {
      console.error = err;
    }
    expect(lines).toEqual(['weir api: --api-token: a token is never taken on the command line; set WEIR_API_TOKEN or use --api-token-file F (see weir api --help)']);
    expect(lines.join('\n')).not.toContain('hunter2');
  });

  it('is a command the CLI lists', () => {
    expect(COMMANDS).toContain('api');
    expect(COMMANDS).toContain('pipelines');
  });
});

describe('weir up: the API flags', () => {
  it('defaults and flags, as for weir api', () => {
    expect(parseUpArgs([], {})).toEqual({
      controllers: 1,
      workers: 2,
      slots: 4,
      api: { host: '127.0.0.1', port: 8000, token: null },
      apiPortGiven: false,
      dataDir: resolve('.weir'),
      shutdownTimeoutMs: 10_000,
      logFormat: undefined,
    });
    expect(parseUpArgs(['--data-dir', '/tmp/w', '--shutdown-timeout', '4000'], {})).toMatchObject({ dataDir: '/tmp/w', shutdownTimeoutMs: 4_000 });
    expect(parseUpArgs([], { WEIR_DATA_DIR: '/var/lib/weir' })).toMatchObject({ dataDir: '/var/lib/weir' });
    expect(parseUpArgs(['--workers', '1', '--api-port', '0', '--api-token-file', '/t'], {})).toMatchObject({
      workers: 1,
      api: { port: 0, token: { from: 'file', path: '/t' } },
      apiPortGiven: true,
    });
    expect(parseUpArgs([], { WEIR_API_PORT: '8100', WEIR_API_TOKEN: 'x' })).toMatchObject({ api: { port: 8100, token: { from: 'env' } }, apiPortGiven: true });
    expect(() => parseUpArgs(['--api-token', 'x'], {})).toThrow(/never taken on the command line/);
    expect(parseUpArgs(['--controllers', '3'], {})).toMatchObject({ controllers: 3 });
    expect(() => parseUpArgs(['--controllers', '0'], {})).toThrow(/--controllers/);
    expect(() => parseUpArgs(['--controllers', '17'], {})).toThrow(/at most 16/);
  });

  it('starts the API child with an explicit port; the token stays in the environment or its file', () => {
    expect(apiChildArgs({ host: '127.0.0.1', port: 0, token: { from: 'env' } }, 8123)).toEqual(['api', '--api-port', '8123', '--api-host', '127.0.0.1']);
    expect(apiChildArgs({ host: '0.0.0.0', port: 8000, token: { from: 'file', path: '/run/t' } }, 8000)).toEqual([
      'api',
      '--api-port',
      '8000',
      '--api-host',
      '0.0.0.0',
      '--api-token-file',
      '/run/t',
    ]);
  });

  it('prints a URL that reaches the API, and the console at its root', () => {
    expect(consoleUrl('127.0.0.1', 8000)).toBe('http://127.0.0.1:8000/');
    expect(consoleUrl('0.0.0.0', 8000)).toBe('http://127.0.0.1:8000/');
    expect(apiBaseUrl('127.0.0.1', 8000)).toBe('http://127.0.0.1:8000/api/v1');
    expect(apiBaseUrl('0.0.0.0', 8000)).toBe('http://127.0.0.1:8000/api/v1');
    expect(apiBaseUrl('::1', 8001)).toBe('http://[::1]:8001/api/v1');
  });
});

describe('weir api --read-cache-ms', () => {
  it('takes the flag, else WEIR_API_READ_CACHE_MS, else leaves the default to the API', () => {
    expect(parseApiArgs(['--read-cache-ms', '0'], {}).readCacheMs).toBe(0);
    expect(parseApiArgs([], { WEIR_API_READ_CACHE_MS: '1000' }).readCacheMs).toBe(1000);
    expect(parseApiArgs(['--read-cache-ms', '5'], { WEIR_API_READ_CACHE_MS: '1000' }).readCacheMs).toBe(5);
    expect(parseApiArgs([], {})).not.toHaveProperty('readCacheMs');
  });

  it('refuses what is not a number of milliseconds, naming where it came from', () => {
    expect(() => parseApiArgs(['--read-cache-ms=-1'], {})).toThrow(/--read-cache-ms must be a number of milliseconds/);
    expect(() => parseApiArgs([], { WEIR_API_READ_CACHE_MS: '1s' })).toThrow(/WEIR_API_READ_CACHE_MS/);
  });
});
