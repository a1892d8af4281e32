import { z } from 'zod';

/**
 * Every error code a weir reply can carry.
 * - Decoding (any receiver): `too_large`, `bad_json`, `unsupported_version`, `bad_schema`.
 * - Semantics (controller and workers): the rest.
 */
export const ERROR_CODES = [
  'too_large',
  'bad_json',
  'unsupported_version',
  'bad_schema',
  'invalid_pipeline',
  'unknown_job',
  'unknown_checkpoint',
  'corrupt_checkpoint',
  'unknown_worker',
  'stale_generation',
  'stale_owner',
  'conflict',
  'not_terminal',
  'not_running',
  'unavailable',
  'internal',
] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

/** The codes `decode` itself produces. */
export const DECODE_ERROR_CODES = ['too_large', 'bad_json', 'unsupported_version', 'bad_schema'] as const satisfies readonly ErrorCode[];
export type DecodeErrorCode = (typeof DECODE_ERROR_CODES)[number];

export const errorCodeSchema = z.enum(ERROR_CODES);

export interface ProtocolError<C extends ErrorCode = ErrorCode> {
  code: C;
  message: string;
}

/**
 * The reply to a request that failed. It is the one shape without `v`: a peer that cannot read our
 * version must still be able to say so.
 */
export const errorReplySchema = z.strictObject({
  error: z.strictObject({ code: errorCodeSchema, message: z.string() }),
});
export type ErrorReply = z.infer<typeof errorReplySchema>;

export function errorReply(code: ErrorCode, message: string): ErrorReply {
  return { error: { code, message } };
}

export function isErrorReply(value: unknown): value is ErrorReply {
  // Most replies are not errors, and a failed zod parse builds a ZodError: rule them out without one.
  if (typeof value !== 'object' || value === null || !Object.hasOwn(value, 'error')) return false;
  return errorReplySchema.safeParse(value).success;
}

/**
 * The error catalogue's one rule: an error that can cross a boundary says how it is reported, with a
 * `code` of ERROR_CODES. The store's and the checkpoint store's errors (src/jetstream/errors.ts and its
 * subclasses), RequestRejected and a worker's rejections all do; the controller answers with the code and
 * the HTTP API maps it to a status (src/api/errors.ts), so neither lists classes. Anything else is `internal`.
 */
export function errorCodeOf(err: unknown): ErrorCode {
  const code = err instanceof Error ? (err as { code?: unknown }).code : undefined;
  return typeof code === 'string' && (ERROR_CODES as readonly string[]).includes(code) ? (code as ErrorCode) : 'internal';
}

/** Thrown inside a request handler to answer with an error reply of this code. */
export class RequestRejected extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'RequestRejected';
  }
}
