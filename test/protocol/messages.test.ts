import { describe, expect, it } from 'vitest';
import {
  DECODE_ERROR_CODES,
  MAX_ERROR_TEXT_BYTES,
  MAX_MESSAGE_BYTES,
  PROTOCOL_VERSION,
  SCHEMAS,
  checkpointEventSchema,
  configUpdateSchema,
  dataMessageSchema,
  decode,
  decodeReply,
  decodeValue,
  encode,
  errorReply,
  isErrorReply,
  jobStateEventSchema,
  pipelineSchema,
  registerWorkerSchema,
  taskEventSchema,
  truncateErrorText,
  type SchemaName,
} from '../../src/protocol/index.js';
import { EXAMPLES, pipeline } from './examples.js';

const bytes = (text: string) => new TextEncoder().encode(text);
const clone = <T>(value: T): T => structuredClone(value);

function errorOf(result: ReturnType<typeof decode>) {
  if (result.ok) throw new Error(`expected a failure, got ${JSON.stringify(result.value)}`);
  return result.error;
}

describe('every schema', () => {
  const names = Object.keys(SCHEMAS) as SchemaName[];

  it.each(names)('%s accepts its example and round-trips it', (name) => {
    const result = decode(SCHEMAS[name], encode(EXAMPLES[name]));
    expect(result).toEqual({ ok: true, value: EXAMPLES[name] });
  });

  it.each(names.filter((name) => name !== 'errorReplySchema'))('%s rejects v: 2 and unknown fields', (name) => {
    const example = EXAMPLES[name] as Record<string, unknown>;
    expect(example['v']).toBe(PROTOCOL_VERSION);
    expect(errorOf(decode(SCHEMAS[name], encode({ ...example, v: 2 }))).code).toBe('unsupported_version');
    expect(errorOf(decode(SCHEMAS[name], encode({ ...example, surprise: 1 })))).toEqual({
      code: 'bad_schema',
      message: 'surprise: unknown field',
    });
  });
});

describe('decode', () => {
  it('rejects bytes that are not JSON, or not UTF-8, as bad_json', () => {
    for (const text of ['', '   ', '{"v":1', 'v=1', 'undefined']) {
      expect(errorOf(decode(pipelineSchema, bytes(text))).code).toBe('bad_json');
    }
    expect(errorOf(decode(pipelineSchema, new Uint8Array([0x7b, 0xff, 0x7d]))).message).toMatch(/UTF-8/);
  });

  it('checks the size before parsing', () => {
    const big = new Uint8Array(MAX_MESSAGE_BYTES + 1).fill(0x7b); // '{{{…': would be bad_json
    expect(errorOf(decode(pipelineSchema, big)).code).toBe('too_large');
    const small = encode(pipeline);
    expect(errorOf(decode(pipelineSchema, small, { maxBytes: small.byteLength - 1 })).code).toBe('too_large');
    expect(decode(pipelineSchema, small, { maxBytes: small.byteLength }).ok).toBe(true);
  });

  it('tells another version apart from a schema error', () => {
    expect(errorOf(decode(pipelineSchema, encode({ ...pipeline, v: 2 })))).toEqual({
      code: 'unsupported_version',
      message: 'unsupported protocol version 2; this peer speaks version 1',
    });
    // A non-number v is malformed, not a version.
    expect(errorOf(decode(pipelineSchema, encode({ ...pipeline, v: '1' }))).code).toBe('bad_schema');
  });

  it('names the offending field paths', () => {
    const bad = clone(pipeline) as Record<string, unknown> & typeof pipeline;
    (bad.graph.nodes[2] as Record<string, unknown>)['parallelism'] = 'two';
    (bad.graph.edges[0] as Record<string, unknown>)['kind'] = 'broadcast';
    (bad.graph.nodes[0] as Record<string, unknown>)['colour'] = 'red';
    delete (bad as Record<string, unknown>)['name'];
    const { code, message } = errorOf(decode(pipelineSchema, encode(bad)));
    expect(code).toBe('bad_schema');
    expect(message.split('; ').sort()).toEqual(
      [
        'name: expected string (missing)',
        'graph.nodes[0].colour: unknown field',
        'graph.nodes[2].parallelism: expected number, got string',
        'graph.edges[0].kind: expected one of "forward"|"shuffle"',
      ].sort(),
    );
  });

  it('rejects a non-integer or out-of-range number', () => {
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ ...pipeline, parallelism: 1.5 }, /^parallelism: expected int/],
      [{ ...pipeline, parallelism: 0 }, /^parallelism: expected number to be >=1/],
      [{ ...pipeline, checkpoint_interval_micros: 999_999 }, /^checkpoint_interval_micros: /],
      [{ ...pipeline, checkpoint_interval_micros: 86_400_000_001 }, /^checkpoint_interval_micros: /],
      [{ ...pipeline, ttl_micros: 0 }, /^ttl_micros: /],
    ];
    for (const [value, message] of cases) expect(errorOf(decode(pipelineSchema, encode(value))).message).toMatch(message);
  });

  it('applies pipeline defaults: v, node parallelism and config', () => {
    const minimal = { name: 'm', graph: { nodes: [{ id: 'a', operator: 'source' }], edges: [] } };
    expect(decodeValue(pipelineSchema, minimal)).toEqual({
      ok: true,
      value: { v: 1, name: 'm', graph: { nodes: [{ id: 'a', operator: 'source', parallelism: 1, config: {} }], edges: [] } },
    });
  });

  it('blocks ids that could inject subject tokens or wildcards', () => {
    for (const id of ['a.b', 'a*', '>', 'a b', '', 'x'.repeat(65), 'jöb']) {
      const value = { ...pipeline, graph: { ...pipeline.graph, nodes: [{ id, operator: 'source' }] } };
      expect(errorOf(decode(pipelineSchema, encode(value))).message).toMatch(/^graph\.nodes\[0\]\.id: expected an id/);
    }
  });

  it('never lets __proto__ through', () => {
    const text = `{"v":1,"name":"p","graph":{"nodes":[{"id":"a","operator":"s","config":{"__proto__":{"x":1}}}],"edges":[]}}`;
    const result = decode(pipelineSchema, bytes(text));
    expect(result.ok && Object.getPrototypeOf(result.value.graph.nodes[0]!.config)).toBe(Object.prototype);
    expect(errorOf(decode(pipelineSchema, bytes(`{"__proto__":{},${text.slice(1)}`)))).toEqual({
      code: 'bad_schema',
      message: '__proto__: unknown field',
    });
  });

  it('reports at most ten problems', () => {
    const nodes = Array.from({ length: 12 }, (_, i) => ({ id: `n${i}`, operator: 's', parallelism: -1 }));
    const message = errorOf(decode(pipelineSchema, encode({ ...pipeline, graph: { nodes, edges: [] } }))).message;
    expect(message.split('; ')).toHaveLength(11);
    expect(message).toMatch(/; \(2 more\)$/);
  });
});

describe('error replies', () => {
  it('have exactly the shape { error: { code, message } }', () => {
    expect(errorReply('unknown_job', 'no job "x"')).toStrictEqual({ error: { code: 'unknown_job', message: 'no job "x"' } });
    expect(isErrorReply(errorReply('internal', 'boom'))).toBe(true);
    for (const value of [null, 'x', { error: 'x' }, { error: { code: 'nope', message: '' } }, { v: 1, error: { code: 'internal', message: '' } }]) {
      expect(isErrorReply(value)).toBe(false);
    }
  });

  it('come back from decodeReply as remote failures; our own decode failures are local', () => {
    const schema = SCHEMAS.ackSchema;
    expect(decodeReply(schema, encode({ v: 1, ok: true }))).toEqual({ ok: true, value: { v: 1, ok: true } });
    expect(decodeReply(schema, encode(errorReply('stale_generation', 'generation 2 < 3')))).toEqual({
      ok: false,
      error: { code: 'stale_generation', message: 'generation 2 < 3' },
      remote: true,
    });
    expect(decodeReply(schema, bytes('nope'))).toMatchObject({ ok: false, error: { code: 'bad_json' }, remote: false });
    expect(decodeReply(schema, encode({ v: 1, ok: false }))).toMatchObject({ ok: false, error: { code: 'bad_schema' }, remote: false });
  });
});

describe('message rules', () => {
  const failed = EXAMPLES.taskEventSchema as Record<string, unknown>;

  it('caps error text at 64 KiB of UTF-8', () => {
    const fits = 'é'.repeat(MAX_ERROR_TEXT_BYTES / 2);
    expect(decodeValue(taskEventSchema, { ...failed, reason: fits }).ok).toBe(true);
    const result = decodeValue(taskEventSchema, { ...failed, reason: `${fits}x` });
    expect(result.ok ? '' : result.error.message).toBe('reason: longer than 65536 UTF-8 bytes');
    const cut = truncateErrorText(`${'€'.repeat(30_000)}`);
    expect(new TextEncoder().encode(cut).byteLength).toBeLessThanOrEqual(MAX_ERROR_TEXT_BYTES);
    expect(cut.endsWith('€…')).toBe(true);
    expect(truncateErrorText('short')).toBe('short');
  });

  it('discriminates task, checkpoint and data messages', () => {
    const { domain: _d, hint: _h, reason: _r, details: _x, ...base } = failed;
    expect(decodeValue(taskEventSchema, { ...base, event: 'started' }).ok).toBe(true);
    expect(decodeValue(taskEventSchema, { ...base, event: 'finished' }).ok).toBe(true);
    expect(decodeValue(taskEventSchema, { ...base, event: 'failed' })).toMatchObject({ ok: false, error: { code: 'bad_schema' } });
    expect(decodeValue(checkpointEventSchema, { ...base, event: 'finished_sync', epoch: 2 }).ok).toBe(true);
    const odd = decodeValue(checkpointEventSchema, { ...base, event: 'aligned', epoch: 2 });
    expect(odd.ok ? '' : odd.error.message).toMatch(/^event: Invalid discriminator value/);
    expect(decodeValue(dataMessageSchema, { v: 1, kind: 'barrier', from_subtask: 1, epoch: 3, then_stop: true }).ok).toBe(true);
    expect(decodeValue(dataMessageSchema, { v: 1, kind: 'end', from_subtask: 1 }).ok).toBe(true);
    expect(decodeValue(dataMessageSchema, { v: 1, kind: 'records', from_subtask: 1, records: [] }).ok).toBe(false);
  });

  it('checks commit data is base64 or an object', () => {
    const completed = EXAMPLES.checkpointEventSchema as Record<string, unknown>;
    expect(decodeValue(checkpointEventSchema, { ...completed, commit_data: { any: [1] } }).ok).toBe(true);
    expect(decodeValue(checkpointEventSchema, { ...completed, commit_data: 'not base64!' }).ok).toBe(false);
  });

  it('checks config updates for contradictions', () => {
    const message = (value: unknown) => {
      const result = decodeValue(configUpdateSchema, value);
      return result.ok ? 'ok' : result.error.message;
    };
    expect(message({ v: 1, restart: true, restart_mode: 'force', ignore_state: true })).toBe('ok');
    expect(message({ v: 1, restart_mode: 'force' })).toBe('ok');
    expect(message({ v: 1, ttl_micros: null })).toBe('ok');
    expect(message({ v: 1 })).toBe('(root): nothing to change');
    expect(message({ v: 1, expected_revision: 3 })).toBe('(root): nothing to change');
    expect(message({ v: 1, ignore_state: true })).toBe('ignore_state: needs restart: true');
    expect(message({ v: 1, parallelism: 2, parallelism_overrides: { a: 1 } })).toBe('parallelism_overrides: cannot be combined with parallelism');
    expect(message({ v: 1, parallelism_overrides: { 'a.b': 1 } })).toMatch(/^key parallelism_overrides\["a\.b"\]: expected an id/);
    expect(message({ v: 1, stop: 'pause' })).toMatch(/^stop: expected one of "none"\|"checkpoint"/);
  });

  it('uses the machine states and rejects others', () => {
    const event = EXAMPLES.jobStateEventSchema as Record<string, unknown>;
    expect(decodeValue(jobStateEventSchema, { ...event, previous: null }).ok).toBe(true);
    expect(decodeValue(jobStateEventSchema, { ...event, state: 'running' }).ok).toBe(false);
  });

  it('rejects a wrong type with bad_schema', () => {
    const register = EXAMPLES.registerWorkerSchema as Record<string, unknown>;
    expect(decodeValue(registerWorkerSchema, { ...register, slots: '4' })).toEqual({
      ok: false,
      error: { code: 'bad_schema', message: 'slots: expected number, got string' },
    });
    expect(DECODE_ERROR_CODES).toContain('bad_schema');
  });
});
