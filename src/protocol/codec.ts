import type { z } from 'zod';
import { isErrorReply, type DecodeErrorCode, type ProtocolError } from './errors.js';
import { MAX_MESSAGE_BYTES, PROTOCOL_VERSION } from './primitives.js';

export type DecodeResult<T> = { ok: true; value: T } | { ok: false; error: ProtocolError<DecodeErrorCode | 'internal'> };

/** A reply is either the expected message or an error reply; `remote` tells the peer's error from ours. */
export type ReplyResult<T> = { ok: true; value: T } | { ok: false; error: ProtocolError; remote: boolean };

export interface DecodeOptions {
  /** Default `MAX_MESSAGE_BYTES` (1 MiB). Checked before anything is parsed. */
  maxBytes?: number;
}

const MAX_REPORTED_ISSUES = 10;
const encoder = new TextEncoder();
const utf8 = new TextDecoder('utf-8', { fatal: true });

/** JSON bytes of a message. */
export function encode(value: unknown): Uint8Array {
  const json = JSON.stringify(value) as string | undefined;
  if (json === undefined) throw new TypeError(`cannot encode ${typeof value} as JSON`);
  return encoder.encode(json);
}

/**
 * Bytes → a checked message, never throwing: `too_large` (before parsing), `bad_json` (not UTF-8 or
 * not JSON), `unsupported_version` (`v` is a number other than PROTOCOL_VERSION), `bad_schema`
 * (message names the offending paths), or `internal` if a schema itself throws.
 */
export function decode<S extends z.ZodType>(schema: S, data: Uint8Array, options: DecodeOptions = {}): DecodeResult<z.output<S>> {
  const parsed = parseJson(data, options.maxBytes ?? MAX_MESSAGE_BYTES);
  return parsed.ok ? decodeValue(schema, parsed.value) : parsed;
}

/** `decode` for a value that is already parsed JSON (an HTTP body, a KV entry). */
export function decodeValue<S extends z.ZodType>(schema: S, value: unknown): DecodeResult<z.output<S>> {
  try {
    const version = versionOf(value);
    if (typeof version === 'number' && version !== PROTOCOL_VERSION) {
      return fail('unsupported_version', `unsupported protocol version ${version}; this peer speaks version ${PROTOCOL_VERSION}`);
    }
    const result = parseReportingInput(schema, value);
    if (result.success) return { ok: true, value: result.data };
    return fail('bad_schema', formatIssues(result.error.issues));
  } catch (err) {
    return fail('internal', `schema check failed: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/**
 * `schema.safeParse` whose issues carry the offending input (for messages that name what was got).
 * zod's compiled fast path does not report input, so the input is checked a second time with it only
 * when the first check fails: about 4× cheaper per accepted message than asking for it up front.
 */
export function parseReportingInput<S extends z.ZodType>(schema: S, value: unknown): z.ZodSafeParseResult<z.output<S>> {
  const result = schema.safeParse(value);
  return result.success ? result : schema.safeParse(value, { reportInput: true });
}

/** Decodes the reply to a request: an error reply comes back as `{ ok: false, remote: true }`. */
export function decodeReply<S extends z.ZodType>(schema: S, data: Uint8Array, options: DecodeOptions = {}): ReplyResult<z.output<S>> {
  const parsed = parseJson(data, options.maxBytes ?? MAX_MESSAGE_BYTES);
  if (!parsed.ok) return { ...parsed, remote: false };
  if (isErrorReply(parsed.value)) return { ok: false, error: parsed.value.error, remote: true };
  const result = decodeValue(schema, parsed.value);
  return result.ok ? result : { ...result, remote: false };
}

function parseJson(data: Uint8Array, maxBytes: number): DecodeResult<unknown> {
  if (data.byteLength > maxBytes) return fail('too_large', `message is ${data.byteLength} bytes; the limit is ${maxBytes}`);
  let text: string;
  try {
    text = utf8.decode(data);
  } catch {
    return fail('bad_json', 'message is not valid UTF-8');
  }
  if (text.trim() === '') return fail('bad_json', 'message is empty; expected a JSON object');
  try {
    return { ok: true, value: JSON.parse(text) as unknown };
  } catch (err) {
    return fail('bad_json', `message is not JSON: ${err instanceof Error ? err.message : String(err)}`);
  }
}

function versionOf(value: unknown): unknown {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
  return Object.hasOwn(value, 'v') ? (value as { v: unknown }).v : undefined;
}

function fail<C extends DecodeErrorCode | 'internal'>(code: C, message: string): { ok: false; error: ProtocolError<C> } {
  return { ok: false, error: { code, message } };
}

/** `graph.nodes[2].parallelism`; `(root)` for the message itself. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const key of path) {
    if (typeof key === 'number') out += `[${key}]`;
    else if (typeof key === 'string' && /^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) out += out === '' ? key : `.${key}`;
    else out += `[${JSON.stringify(String(key))}]`;
  }
  return out === '' ? '(root)' : out;
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  return typeof value;
}

/** One line per problem: `<path>: <what is wrong>`. */
export function issueLines(issues: readonly z.core.$ZodIssue[], prefix: readonly PropertyKey[] = []): string[] {
  const lines: string[] = [];
  for (const issue of issues) {
    const path = [...prefix, ...issue.path];
    switch (issue.code) {
      case 'invalid_type':
        lines.push(
          `${formatPath(path)}: expected ${issue.expected}` +
            (issue.input === undefined ? ' (missing)' : `, got ${describe(issue.input)}`),
        );
        break;
      case 'unrecognized_keys':
        for (const key of issue.keys) lines.push(`${formatPath([...path, key])}: unknown field`);
        break;
      case 'invalid_key':
        lines.push(...issueLines(issue.issues, path).map((line) => `key ${line}`));
        break;
      case 'invalid_element':
        lines.push(...issueLines(issue.issues, [...path, issue.key as PropertyKey]));
        break;
      case 'invalid_union':
        lines.push(
          `${formatPath(path)}: ` +
            (issue.discriminator !== undefined || issue.errors.length === 0 ? issue.message : 'matches none of the allowed forms'),
        );
        break;
      case 'invalid_value':
      case 'too_big':
      case 'too_small':
      case 'invalid_format':
      case 'not_multiple_of':
      case 'custom':
        lines.push(`${formatPath(path)}: ${issue.message.replace(/^(Invalid input|Invalid option|Too small|Too big): /, '')}`);
        break;
    }
  }
  return lines;
}

export function formatIssues(issues: readonly z.core.$ZodIssue[]): string {
  const lines = issueLines(issues);
  const shown = lines.slice(0, MAX_REPORTED_ISSUES).join('; ');
  return lines.length > MAX_REPORTED_ISSUES ? `${shown}; (${lines.length - MAX_REPORTED_ISSUES} more)` : shown;
}
