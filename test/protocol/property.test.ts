import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DECODE_ERROR_CODES, decode, encode, pipelineSchema, type DecodeResult } from '../../src/protocol/index.js';
import { pipeline } from './examples.js';

const typed = (result: DecodeResult<unknown>) =>
  result.ok || ((DECODE_ERROR_CODES as readonly string[]).includes(result.error.code) && result.error.message.length > 0);

/** Replaces the value at a random path of the example with random JSON: near-misses reach deep checks. */
const mutated = fc
  .tuple(fc.array(fc.nat(), { maxLength: 6 }), fc.jsonValue({ maxDepth: 3 }))
  .map(([steps, replacement]) => {
    const root = structuredClone(pipeline) as unknown as Record<string, unknown>;
    let parent: Record<string, unknown> = root;
    let key = 'name';
    for (const step of steps) {
      const value = parent[key];
      if (typeof value !== 'object' || value === null) break;
      const keys = Object.keys(value);
      if (keys.length === 0) break;
      parent = value as Record<string, unknown>;
      key = keys[step % keys.length]!;
    }
    parent[key] = replacement;
    return root;
  });

describe('decode(pipelineSchema, …) on random input', () => {
  it('never throws: random JSON values give ok or a typed error', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        expect(typed(decode(pipelineSchema, encode(value)))).toBe(true);
      }),
      { numRuns: 2_000 },
    );
  });

  it('never throws: near-miss pipelines give ok or a typed error, and ok values round-trip', () => {
    fc.assert(
      fc.property(mutated, (value) => {
        const result = decode(pipelineSchema, encode(value));
        expect(typed(result)).toBe(true);
        if (result.ok) expect(decode(pipelineSchema, encode(result.value))).toEqual(result);
      }),
      { numRuns: 2_000 },
    );
  });

  it('never throws: random bytes give ok or a typed error', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 256 }), (bytes) => {
        expect(typed(decode(pipelineSchema, bytes))).toBe(true);
      }),
      { numRuns: 2_000 },
    );
  });
});
