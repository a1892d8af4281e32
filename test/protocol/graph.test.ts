import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { pipelineSchema, validateGraph, type OperatorSpec, type Pipeline, type PipelineInput } from '../../src/protocol/index.js';
import { pipeline as example } from './examples.js';

const OPERATORS = new Map<string, OperatorSpec>([
  ['source', { kind: 'source', maxParallelism: 4, config: z.strictObject({ topic: z.string() }) }],
  ['count', { kind: 'operator' }],
  ['join', { kind: 'operator' }],
  ['sink', { kind: 'sink', maxParallelism: 1 }],
]);

type Nodes = PipelineInput['graph']['nodes'];
type Edges = PipelineInput['graph']['edges'];

function build(nodes: Nodes, edges: Edges, extra: Partial<PipelineInput> = {}): Pipeline {
  return pipelineSchema.parse({ name: 'p', graph: { nodes, edges }, ...extra });
}

const src = (id: string, parallelism = 1) => ({ id, operator: 'source', parallelism, config: { topic: 't' } });
const op = (id: string, parallelism = 1, operator = 'count') => ({ id, operator, parallelism });
const sink = (id: string) => ({ id, operator: 'sink' });
const fwd = (from: string, to: string) => ({ from, to, kind: 'forward' as const });
const shuffle = (from: string, to: string) => ({ from, to, kind: 'shuffle' as const });

const problems = (pipeline: Pipeline) => validateGraph(pipeline, OPERATORS);

describe('validateGraph', () => {
  it('accepts a valid graph', () => {
    expect(problems(pipelineSchema.parse(example))).toEqual([]);
    expect(problems(build([src('a', 2), op('b', 3), sink('c')], [shuffle('a', 'b'), shuffle('b', 'c')]))).toEqual([]);
  });

  it('names an unknown operator and lists the known ones', () => {
    const found = problems(build([src('a'), op('b', 1, 'flatmap'), sink('c')], [fwd('a', 'b'), fwd('b', 'c')]));
    expect(found).toEqual([
      {
        code: 'unknown_operator',
        message: 'node "b": unknown operator "flatmap"; known operators: count, join, sink, source',
        path: 'graph.nodes[1].operator',
        nodes: ['b'],
      },
    ]);
    expect(validateGraph(build([src('a')], []), new Map())[0]?.message).toBe('node "a": unknown operator "source"; no operators are available');
  });

  it('finds duplicate node ids', () => {
    const found = problems(build([src('a'), op('a'), sink('c')], [fwd('a', 'c')]));
    expect(found[0]).toMatchObject({ code: 'duplicate_node', path: 'graph.nodes[1].id', nodes: ['a'] });
    expect(found[0]?.message).toBe('duplicate node id "a" (graph.nodes[0] and graph.nodes[1])');
  });

  it('finds edges to or from unknown nodes', () => {
    const found = problems(build([src('a'), sink('c')], [fwd('a', 'c'), fwd('a', 'ghost'), fwd('nowhere', 'void')]));
    expect(found.map((p) => [p.code, p.path, p.message])).toEqual([
      ['unknown_node', 'graph.edges[1]', 'edge a → ghost (graph.edges[1]) refers to unknown node "ghost"'],
      ['unknown_node', 'graph.edges[2]', 'edge nowhere → void (graph.edges[2]) refers to unknown node "nowhere" and "void"'],
    ]);
  });

  it('finds duplicate edges', () => {
    const found = problems(build([src('a'), sink('c')], [fwd('a', 'c'), shuffle('a', 'c')]));
    expect(found).toMatchObject([{ code: 'duplicate_edge', message: 'edge a → c appears twice (graph.edges[0] and graph.edges[1])' }]);
  });

  it('finds cycles and names the nodes on them', () => {
    const nodes = [src('s'), op('a'), op('b'), op('c'), op('d'), sink('z')];
    const edges = [fwd('s', 'a'), fwd('a', 'b'), fwd('b', 'c'), fwd('c', 'a'), fwd('c', 'z'), fwd('d', 'd')];
    const found = problems(build(nodes, edges)).filter((p) => p.code === 'cycle');
    expect(found.map((p) => [p.message, p.nodes])).toEqual([
      ['the graph has a cycle: a → b → c → a', ['a', 'b', 'c']],
      ['the graph has a cycle: d → d', ['d']],
    ]);
  });

  it('finds a long chain cycle without overflowing the stack', () => {
    const n = 20_000;
    const nodes = Array.from({ length: n }, (_, i) => op(`n${i}`));
    const edges = nodes.map((_, i) => fwd(`n${i}`, `n${(i + 1) % n}`));
    const found = problems(build(nodes, edges));
    expect(found).toHaveLength(1);
    expect(found[0]).toMatchObject({ code: 'cycle' });
    expect(found[0]?.nodes).toHaveLength(n);
  });

  it('requires inputs on every node but a source, and none on a source', () => {
    const found = problems(build([src('a'), src('b'), op('lonely'), sink('c')], [fwd('a', 'b'), fwd('b', 'c')]));
    expect(found.map((p) => [p.code, p.message])).toEqual([
      ['source_with_inputs', 'source node "b" has inputs (from a); a source cannot have inputs'],
      ['missing_inputs', 'node "lonely" has no inputs; only a source may have no inputs'],
    ]);
  });

  it('forbids outputs on a sink', () => {
    const found = problems(build([src('a'), sink('b'), op('c')], [fwd('a', 'b'), fwd('b', 'c')]));
    expect(found).toMatchObject([{ code: 'sink_with_outputs', message: 'sink node "b" has outputs (to c); a sink cannot have outputs' }]);
  });

  it('reports a bad config with the node id and the zod issue path', () => {
    const bad = { id: 'in', operator: 'source', config: { topic: 7, extra: true } };
    const found = problems(build([bad, sink('out')], [fwd('in', 'out')]));
    expect(found.map((p) => [p.code, p.message])).toEqual([
      ['bad_config', 'node "in" (operator "source"): bad config: graph.nodes[0].config.topic: expected string, got number'],
      ['bad_config', 'node "in" (operator "source"): bad config: graph.nodes[0].config.extra: unknown field'],
    ]);
  });

  it('survives a config schema that throws', () => {
    const throwing = new Map(OPERATORS).set('source', {
      kind: 'source',
      config: z.custom(() => {
        throw new Error('kaput');
      }),
    });
    const found = validateGraph(build([src('a'), sink('b')], [fwd('a', 'b')]), throwing);
    expect(found).toMatchObject([{ code: 'bad_config', message: expect.stringContaining('config check failed: kaput') as unknown }]);
  });

  it('finds forward edges between nodes of different parallelism', () => {
    const found = problems(build([src('a', 2), op('b', 3), sink('c')], [fwd('a', 'b'), shuffle('b', 'c')]));
    expect(found).toEqual([
      {
        code: 'parallelism_mismatch',
        message: 'forward edge a → b joins nodes of different parallelism (2 and 3); use a shuffle edge or equal parallelism',
        path: 'graph.edges[0]',
        nodes: ['a', 'b'],
      },
    ]);
  });

  it('finds parallelism above an operator maximum, counting the pipeline-wide override', () => {
    expect(problems(build([src('a', 5), sink('c')], [shuffle('a', 'c')]))).toMatchObject([
      { code: 'parallelism_too_high', message: 'node "a": parallelism 5 exceeds the maximum of 4 for operator "source"' },
    ]);
    const overridden = problems(build([src('a'), op('b'), sink('c')], [fwd('a', 'b'), fwd('b', 'c')], { parallelism: 2 }));
    expect(overridden.map((p) => p.code)).toEqual(['parallelism_too_high']);
    expect(overridden[0]?.nodes).toEqual(['c']);
  });

  it('reports every problem of a bad graph at once', () => {
    const nodes = [src('a', 9), op('b', 1, 'nope'), op('b'), op('d'), sink('e')];
    const edges = [fwd('a', 'd'), fwd('d', 'x'), fwd('d', 'd'), fwd('e', 'd')];
    expect(problems(build(nodes, edges)).map((p) => p.code)).toEqual([
      'parallelism_too_high', // a
      'unknown_operator', // b
      'duplicate_node', // b again
      'parallelism_mismatch', // a → d
      'unknown_node', // d → x
      'missing_inputs', // e
      'sink_with_outputs', // e → d
      'cycle', // d → d
    ]);
  });
});
