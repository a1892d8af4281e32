import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { decodeValue, pipelineSchema, validateGraph } from '../../src/protocol/index.js';
import { OPERATOR_CATALOGUE } from '../../src/protocol/index.js';

describe('examples/', () => {
  for (const file of ['counter.json', 'bounded.json']) {
    it(`${file} is a valid pipeline for the built-in operators`, () => {
      const decoded = decodeValue(pipelineSchema, JSON.parse(readFileSync(new URL(`../../examples/${file}`, import.meta.url), 'utf8')));
      if (!decoded.ok) throw new Error(decoded.error.message);
      expect(validateGraph(decoded.value, OPERATOR_CATALOGUE)).toEqual([]);
      expect(decoded.value.graph.nodes.map((n) => n.operator)).toEqual(['impulse', 'map-key', 'count', 'preview']);
      expect(decoded.value.graph.nodes[1]?.config).toEqual({ modulo: 10 });
      expect(decoded.value.graph.edges.find((e) => e.to === 'count')?.kind).toBe('shuffle');
    });
  }

  it('exactly-once.json writes its counts through the two-phase JetStream sink', () => {
    const decoded = decodeValue(pipelineSchema, JSON.parse(readFileSync(new URL('../../examples/exactly-once.json', import.meta.url), 'utf8')));
    if (!decoded.ok) throw new Error(decoded.error.message);
    expect(validateGraph(decoded.value, OPERATOR_CATALOGUE)).toEqual([]);
    expect(decoded.value.graph.nodes.map((n) => n.operator)).toEqual(['impulse', 'map-key', 'count', 'jetstream-sink']);
    expect(OPERATOR_CATALOGUE.get('jetstream-sink')?.twoPhase).toBe(true);
  });

  it('counter runs until stopped; bounded finishes by itself', () => {
    const impulse = (file: string) =>
      (JSON.parse(readFileSync(new URL(`../../examples/${file}`, import.meta.url), 'utf8')) as { graph: { nodes: Array<{ config?: Record<string, unknown> }> } }).graph
        .nodes[0]?.config;
    expect(impulse('counter.json')?.['events']).toBeUndefined();
    expect(impulse('counter.json')?.['rate_per_sec']).toBeGreaterThan(0);
    expect(impulse('bounded.json')?.['events']).toBeGreaterThan(0);
  });
});
