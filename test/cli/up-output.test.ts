/** How `weir up` shows its children's logs, and which NATS port it starts nats-server on. */
import { stripVTControlCharacters } from 'node:util';
import { describe, expect, it } from 'vitest';
import { childLineFormatter } from '../../src/cli/child-logs.js';
import { localNatsPort, parseUpArgs, wantsColour } from '../../src/cli/up.js';

const pinoLine = JSON.stringify({ level: 30, time: Date.UTC(2026, 0, 2, 3, 4, 5, 678), pid: 12, hostname: 'vm', name: 'weir-controller', controllerId: 'weir-up-1', msg: 'controller started' });
const warnLine = JSON.stringify({ level: 40, time: Date.UTC(2026, 0, 2, 3, 4, 5, 678), pid: 12, hostname: 'vm', name: 'weir-worker', msg: 'heartbeat failed' });
const natsInfo = '[12063] 2026/12/08 00:43:56.816536 [INF] Listening for client connections on 127.0.0.1:14777';
const natsWarn = '[12063] 2026/12/08 00:43:57.000001 [WRN] Slow consumer detected';

describe('weir up: the children’s log lines', () => {
  it('pretty: one readable line per entry behind the child’s name, coloured on request', () => {
    const plain = childLineFormatter({ format: 'pretty', colour: false, nameWidth: 10 });
    const line = plain('controller', pinoLine);
    expect(line).toMatch(/^controller \[\d\d:04:05\.678\] INFO: controller started \{"controllerId":"weir-up-1"\}$/);
    expect(plain('worker-1', warnLine)).toMatch(/^worker-1 {3}\[[\d:.]+\] WARN: heartbeat failed$/);
    expect(line).not.toContain('\x1b[');
    const coloured = childLineFormatter({ format: 'pretty', colour: true, nameWidth: 10 })('controller', pinoLine)!;
    expect(coloured).toContain('\x1b[');
    expect(stripVTControlCharacters(coloured)).toBe(line);
  });

  it('pretty: nats-server’s lines in the same shape, its info chatter left out; other text as it is', () => {
    const plain = childLineFormatter({ format: 'pretty', colour: false, nameWidth: 6 });
    expect(plain('nats', natsInfo)).toBeUndefined();
    expect(plain('nats', natsWarn)).toBe('nats   [00:43:57.000] WARN: Slow consumer detected');
    expect(plain('api', 'weir api: listening on http://127.0.0.1:8000/api/v1')).toBe('api    weir api: listening on http://127.0.0.1:8000/api/v1');
  });

  it('pretty: an error’s stack stays with its child', () => {
    const plain = childLineFormatter({ format: 'pretty', colour: false, nameWidth: 3 });
    const line = JSON.stringify({ level: 50, time: 0, msg: 'boom', err: { type: 'Error', message: 'x', stack: 'Error: x\n    at a' } });
    const lines = plain('api', line)!.split('\n');
    expect(lines.length).toBeGreaterThan(1);
    for (const l of lines) expect(l.startsWith('api ')).toBe(true);
  });

  it('json: each JSON line as it came, with the child’s name as proc; other lines prefixed', () => {
    const json = childLineFormatter({ format: 'json', colour: true, nameWidth: 10 });
    expect(JSON.parse(json('worker-2', pinoLine)!)).toEqual({ proc: 'worker-2', ...(JSON.parse(pinoLine) as object) });
    expect(json('nats', natsInfo)).toBe(`[nats] ${natsInfo}`);
    expect(json('api', '{not json}')).toBe('[api] {not json}');
  });

  it('--log-format, WEIR_LOG_FORMAT, and the colours', () => {
    expect(parseUpArgs(['--log-format', 'json'], {}).logFormat).toBe('json');
    expect(parseUpArgs([], { WEIR_LOG_FORMAT: 'pretty' }).logFormat).toBe('pretty');
    expect(parseUpArgs([], {}).logFormat).toBeUndefined();
    expect(() => parseUpArgs(['--log-format', 'xml'], {})).toThrow('--log-format must be pretty or json, got "xml"');
    expect(() => parseUpArgs([], { WEIR_LOG_FORMAT: 'text' })).toThrow('WEIR_LOG_FORMAT must be pretty or json, got "text"');
    expect(wantsColour({}, true)).toBe(true);
    expect(wantsColour({}, false)).toBe(false);
    expect(wantsColour({ NO_COLOR: '1' }, true)).toBe(false);
    expect(wantsColour({ FORCE_COLOR: '1' }, false)).toBe(true);
    expect(wantsColour({ FORCE_COLOR: '0' }, true)).toBe(true);
  });
});

describe('weir up: the port NATS_URL names', () => {
  it.each([
    ['nats://127.0.0.1:4333', 4333],
    ['nats://localhost:4334', 4334],
    ['localhost:4335', 4335],
    ['127.0.0.1:4336', 4336],
    ['nats://[::1]:4337', 4337],
    ['nats://127.0.0.1', 4222],
    ['localhost', 4222],
    ['nats://user:pass@127.0.0.1:4338', 4338],
    ['nats://nats.example:4222', undefined],
    ['nats://127.0.0.1:4222,nats://127.0.0.1:4223', undefined],
  ])('%s → %s', (url, port) => {
    expect(localNatsPort(url)).toBe(port);
  });
});
