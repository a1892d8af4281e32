/**
 * Building blocks shared by every weir message: the protocol version, ids, times and limits.
 * Nothing here knows about subjects or about a particular message.
 */
import { z } from 'zod';
import type { ErrorDomain, RetryHint } from '../../machines/job/types.js';

/** The one version this code speaks. Every message carries it as `v`. */
export const PROTOCOL_VERSION = 1;

/** The `v` field of every message. */
export const versionField = z.literal(PROTOCOL_VERSION);

/** Largest message accepted by `decode` (and NATS's default `max_payload`). */
export const MAX_MESSAGE_BYTES = 1024 * 1024;

/** Error text (task failure reason and details) is capped at this many UTF-8 bytes, as in the reference. */
export const MAX_ERROR_TEXT_BYTES = 64 * 1024;

/** API bounds of a checkpoint interval, as in the reference (1 s … 24 h). */
export const MIN_CHECKPOINT_INTERVAL_MICROS = 1_000_000;
export const MAX_CHECKPOINT_INTERVAL_MICROS = 86_400_000_000;

export const DEFAULT_LIST_LIMIT = 10;
export const MAX_LIST_LIMIT = 100;

/**
 * Ids (jobs, workers, graph nodes) become subject tokens, so they are restricted to characters that
 * can never form a separator (`.`) or a wildcard (`*`, `>`), nor whitespace.
 */
export const ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

export const idSchema = z.string().regex(ID_PATTERN, { error: 'expected an id of 1–64 characters from A-Z a-z 0-9 _ -' });

export function isValidId(value: unknown): value is string {
  return typeof value === 'string' && ID_PATTERN.test(value);
}

/** A non-negative safe integer: generations, epochs, subtask indexes, counters. */
export const countSchema = z.int().nonnegative();

/** Microseconds since the Unix epoch (the wire unit of every time, as in the reference API). */
export const microsSchema = z.int().nonnegative();

export const parallelismSchema = z.int().min(1);

export const checkpointIntervalSchema = z.int().min(MIN_CHECKPOINT_INTERVAL_MICROS).max(MAX_CHECKPOINT_INTERVAL_MICROS);

export const ttlSchema = z.int().positive();

/** Operator names (`kafka_source`, `window.tumbling`) are not subject tokens, only labels. */
export const operatorNameSchema = z.string().min(1).max(128);

export const errorDomainSchema = z.enum(['user', 'external', 'internal']);
export const retryHintSchema = z.enum(['no_retry', 'with_backoff']);

/** JSON as it comes out of JSON.parse. */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

/**
 * Any JSON value. Decoded bytes are JSON by construction, so this only rejects a missing value; it
 * does not walk the value (record batches are the hot path).
 */
export const jsonValueSchema = z.custom<JsonValue>((value) => value !== undefined, { error: 'expected a JSON value' });

/** An opaque JSON object (operator config, table metadata). */
export const jsonObjectSchema = z.record(z.string(), z.custom<JsonValue>((value) => value !== undefined));

/**
 * Two-phase-commit data: opaque base64 bytes or an opaque JSON object. Here rather than with the messages:
 * the checkpoint record format carries it too, and it must not load the messages (they load the machines).
 */
export const commitDataSchema = z.union([z.base64(), jsonObjectSchema]);

const encoder = new TextEncoder();

function fitsErrorText(text: string): boolean {
  // A UTF-16 code unit is at most 3 UTF-8 bytes, so short strings need no encoding.
  return text.length * 3 <= MAX_ERROR_TEXT_BYTES || encoder.encode(text).byteLength <= MAX_ERROR_TEXT_BYTES;
}

export const errorTextSchema = z.string().refine(fitsErrorText, { error: `longer than ${MAX_ERROR_TEXT_BYTES} UTF-8 bytes` });

/** Cuts error text to fit `MAX_ERROR_TEXT_BYTES` on a character boundary, marking the cut with `…`. */
export function truncateErrorText(text: string, maxBytes = MAX_ERROR_TEXT_BYTES): string {
  const bytes = encoder.encode(text);
  if (bytes.byteLength <= maxBytes) return text;
  const ellipsis = '…';
  let end = Math.max(0, maxBytes - encoder.encode(ellipsis).byteLength);
  // Step back over UTF-8 continuation bytes (10xxxxxx) so no character is split.
  while (end > 0 && ((bytes[end] ?? 0) & 0xc0) === 0x80) end--;
  return new TextDecoder().decode(bytes.subarray(0, end)) + ellipsis;
}

// The wire enums must stay the machine's types.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
type Assert<T extends true> = T;
type _WireEnumsMatchMachine = [
  Assert<Same<z.infer<typeof errorDomainSchema>, ErrorDomain>>,
  Assert<Same<z.infer<typeof retryHintSchema>, RetryHint>>,
];
