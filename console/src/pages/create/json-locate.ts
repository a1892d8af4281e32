/**
 * Where each part of a JSON text is, by the path the API names it with in its errors
 * (`graph.nodes[2].parallelism`, src/protocol/codec.ts `formatPath`): the create page shows an error on
 * its line. A small scanner of its own, because JSON.parse keeps no positions; it also says where a text
 * that is not JSON goes wrong.
 */

export interface JsonLocation {
  /** 1-based. */
  line: number;
  /** 1-based. */
  column: number;
  offset: number;
}

export class JsonSyntaxError extends Error {
  constructor(
    message: string,
    readonly location: JsonLocation,
  ) {
    super(`line ${location.line}, column ${location.column}: ${message}`);
    this.name = 'JsonSyntaxError';
  }
}

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** The API's path of `key` under `parent` (`(root)` is the whole text). */
export function childPath(parent: string, key: string | number): string {
  const base = parent === '(root)' ? '' : parent;
  if (typeof key === 'number') return `${base}[${key}]`;
  if (IDENTIFIER.test(key)) return base === '' ? key : `${base}.${key}`;
  return `${base}[${JSON.stringify(key)}]`;
}

export function locationOf(text: string, offset: number): JsonLocation {
  let line = 1;
  let lineStart = 0;
  for (let i = 0; i < offset && i < text.length; i++) {
    if (text.charCodeAt(i) === 10) {
      line++;
      lineStart = i + 1;
    }
  }
  return { line, column: offset - lineStart + 1, offset };
}

/**
 * Every path of `text` → where it starts: an object member at its key, an array element at its value,
 * `(root)` at the first value. Throws `JsonSyntaxError` when the text is not JSON.
 */
export function locatePaths(text: string): Map<string, JsonLocation> {
  const offsets = new Map<string, number>();
  let i = 0;

  const fail = (message: string, at = i): never => {
    throw new JsonSyntaxError(message, locationOf(text, at));
  };
  const skip = () => {
    while (i < text.length && (text[i] === ' ' || text[i] === '\n' || text[i] === '\r' || text[i] === '\t')) i++;
  };
  const describe = () => (i >= text.length ? 'the end of the text' : `'${text[i]}'`);

  function readString(): string {
    const start = i;
    i++; // the opening quote
    while (i < text.length) {
      const c = text[i];
      if (c === '"') {
        i++;
        return JSON.parse(text.slice(start, i)) as string;
      }
      if (c === '\\') {
        const next = text[i + 1];
        if (next === 'u') {
          if (!/^[0-9a-fA-F]{4}$/.test(text.slice(i + 2, i + 6))) fail('bad \\u escape in a string');
          i += 6;
        } else if (next !== undefined && '"\\/bfnrt'.includes(next)) i += 2;
        else fail('bad escape in a string');
      } else if (c !== undefined && c.charCodeAt(0) < 0x20) fail('a string may not hold a line break or control character (escape it)');
      else i++;
    }
    return fail('a string is not closed', start);
  }

  function readValue(path: string): void {
    skip();
    offsets.set(path, i);
    const c = text[i];
    if (c === '{') {
      i++;
      skip();
      if (text[i] === '}') {
        i++;
        return;
      }
      for (;;) {
        skip();
        if (text[i] !== '"') fail(`expected a field name in double quotes, found ${describe()}`);
        const keyAt = i;
        const key = readString();
        skip();
        if (text[i] !== ':') fail(`expected ':' after "${key}", found ${describe()}`);
        i++;
        const child = childPath(path, key);
        readValue(child);
        offsets.set(child, keyAt);
        skip();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === '}') {
          i++;
          return;
        }
        fail(`expected ',' or '}' after the value of "${key}", found ${describe()}`);
      }
    }
    if (c === '[') {
      i++;
      skip();
      if (text[i] === ']') {
        i++;
        return;
      }
      for (let index = 0; ; index++) {
        readValue(childPath(path, index));
        skip();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === ']') {
          i++;
          return;
        }
        fail(`expected ',' or ']' after an array element, found ${describe()}`);
      }
    }
    if (c === '"') {
      readString();
      return;
    }
    const literal = /^(?:true|false|null|-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)/.exec(text.slice(i, i + 400));
    if (literal === null) fail(i >= text.length ? 'expected a value, found the end of the text' : `expected a value, found ${describe()}`);
    else i += literal[0].length;
  }

  readValue('(root)');
  skip();
  if (i < text.length) fail(`unexpected ${describe()} after the end of the JSON value`);
  return new Map([...offsets].map(([path, offset]) => [path, locationOf(text, offset)]));
}

/**
 * The location of `path`, or of its nearest ancestor that the text has (a missing field is reported
 * where its object is).
 */
export function findPath(locations: ReadonlyMap<string, JsonLocation>, path: string): JsonLocation | undefined {
  for (let p: string | null = path; p !== null; p = parentPath(p)) {
    const found = locations.get(p);
    if (found !== undefined) return found;
  }
  return undefined;
}

/** `graph.nodes[2].id` → `graph.nodes[2]` → `graph.nodes` → `graph` → `(root)` → null. */
export function parentPath(path: string): string | null {
  if (path === '(root)') return null;
  const m = /^(.*?)(?:\.[A-Za-z_][A-Za-z0-9_]*|\[(?:\d+|"(?:[^"\\]|\\.)*")\])$/.exec(path);
  if (m === null) return '(root)';
  return m[1] === '' ? '(root)' : (m[1] ?? '(root)');
}
