/** The create page's pure parts: where a path of the API's errors is in the JSON, and the errors split per problem. */
import { describe, expect, it } from 'vitest';
import { graphPartOf, splitApiError } from '../../console/src/pages/create/api-errors.js';
import { findPath, JsonSyntaxError, locatePaths, parentPath } from '../../console/src/pages/create/json-locate.js';

const TEXT = `{
  "name": "counter",
  "graph": {
    "nodes": [
      { "id": "impulse", "operator": "impulse" },
      { "id": "key",
        "operator": "map-key", "config": { "a b": [1, {"x": null}] } }
    ],
    "edges": []
  }
}`;

describe('locatePaths', () => {
  it('finds every path, as the API writes it, on its line', () => {
    const at = locatePaths(TEXT);
    expect(at.get('(root)')?.line).toBe(1);
    expect(at.get('name')?.line).toBe(2);
    expect(at.get('graph.nodes')?.line).toBe(4);
    expect(at.get('graph.nodes[0]')?.line).toBe(5);
    expect(at.get('graph.nodes[1].id')).toMatchObject({ line: 6, column: 9 });
    expect(at.get('graph.nodes[1].operator')?.line).toBe(7);
    expect(at.get('graph.nodes[1].config["a b"][1].x')?.line).toBe(7);
    expect(at.get('graph.edges')?.line).toBe(9);
  });

  it('places a missing field at its nearest ancestor', () => {
    const at = locatePaths(TEXT);
    expect(findPath(at, 'graph.nodes[1].parallelism')?.line).toBe(6);
    expect(findPath(at, 'ttl_micros')?.line).toBe(1);
    expect(parentPath('graph.nodes[2].config["a b"]')).toBe('graph.nodes[2].config');
    expect(parentPath('name')).toBe('(root)');
    expect(parentPath('(root)')).toBeNull();
  });

  it('says where a text that is not JSON goes wrong', () => {
    for (const [text, line] of [
      ['{\n  "a": 1\n  "b": 2\n}', 3],
      ['{\n  "a": [1, 2,\n]}', 3],
      ['{"a": "unclosed\n}', 1],
      ['', 1],
      ['{} x', 1],
    ] as const) {
      let error: unknown;
      try {
        locatePaths(text);
      } catch (err) {
        error = err;
      }
      expect(error, text).toBeInstanceOf(JsonSyntaxError);
      expect((error as JsonSyntaxError).location.line, text).toBe(line);
      expect(() => void JSON.parse(text), text).toThrow();
    }
    for (const text of ['{"a": "\\u00e9\\n", "b": -1.5e3, "c": [true, false, null], "d": {}}', '[]', ' "x" ']) {
      expect(() => locatePaths(text), text).not.toThrow();
    }
  });
});

describe('splitApiError', () => {
  it("splits at each path, not at a problem's own semicolons", () => {
    expect(splitApiError('graph.nodes[1].operator: node "key": unknown operator "x"; known operators: count, impulse; graph.edges[0]: edge a → b refers to unknown node "a"')).toEqual([
      { path: 'graph.nodes[1].operator', message: 'node "key": unknown operator "x"; known operators: count, impulse' },
      { path: 'graph.edges[0]', message: 'edge a → b refers to unknown node "a"' },
    ]);
    expect(splitApiError('body: expected object, got array')).toEqual([{ path: '(root)', message: 'expected object, got array' }]);
    expect(splitApiError('the weir API cannot be reached')).toEqual([{ path: null, message: 'the weir API cannot be reached' }]);
    expect(splitApiError('graph.nodes[0].config["a b"]: expected number')[0]?.path).toBe('graph.nodes[0].config["a b"]');
  });

  it('names the graph part a path is about', () => {
    expect(graphPartOf('graph.nodes[2].config.x')).toEqual({ kind: 'node', index: 2 });
    expect(graphPartOf('graph.edges[0]')).toEqual({ kind: 'edge', index: 0 });
    expect(graphPartOf('name')).toBeNull();
    expect(graphPartOf(null)).toBeNull();
  });
});
