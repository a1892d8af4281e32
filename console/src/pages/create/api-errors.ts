/**
 * The API's validation errors, one per problem. A 400 from `POST /pipelines` is one message,
 * `<path>: <what is wrong>` problems joined by `; ` (src/protocol/codec.ts, src/controller/job-requests.ts),
 * e.g. `graph.nodes[1].operator: node "key": unknown operator "x"; known operators: count, impulse`.
 * A problem's own text may hold `; ` too, so problems are split only where a path follows.
 */

export interface FieldError {
  /** The API's path (`graph.nodes[1].operator`; `(root)` for the whole body), or null when it names none. */
  path: string | null;
  message: string;
}

const PATH = String.raw`(?:\(root\)|body|[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*|\[\d+\]|\["(?:[^"\\]|\\.)*"\])*)`;
const PROBLEM_START = new RegExp(String.raw`(?:^|; )(${PATH}): `, 'g');

export function splitApiError(message: string): FieldError[] {
  const starts = [...message.matchAll(PROBLEM_START)];
  if (starts.length === 0 || starts[0]?.index !== 0) return [{ path: null, message }];
  return starts.map((match, k) => {
    const next = starts[k + 1];
    const from = (match.index ?? 0) + match[0].length;
    const path = match[1] ?? '(root)';
    return { path: path === 'body' ? '(root)' : path, message: message.slice(from, next?.index ?? message.length) };
  });
}

/** The graph node (by index) or edge a path is about: `graph.nodes[2].config.x` → node 2. */
export function graphPartOf(path: string | null): { kind: 'node' | 'edge'; index: number } | null {
  const m = path === null ? null : /^graph\.(nodes|edges)\[(\d+)\]/.exec(path);
  if (m === null) return null;
  return { kind: m[1] === 'nodes' ? 'node' : 'edge', index: Number(m[2]) };
}
