/**
 * The HTTP face of every failure: `ApiError` carries a status and a message, and the body is always
 * `{"error": "..."}`. Protocol error codes from the controller map to statuses here, in one place.
 */
import type { ErrorCode } from '../protocol/index.js';

export class ApiError extends Error {
  constructor(
    readonly statusCode: number,
    message: string,
    /** Response headers the status calls for (`WWW-Authenticate` on 401, `Allow` on 405). */
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

/** What a controller error reply means to an HTTP client. */
export const STATUS_OF_CODE: Record<ErrorCode, number> = {
  too_large: 413,
  bad_json: 400,
  unsupported_version: 400,
  bad_schema: 400,
  invalid_pipeline: 400,
  unknown_job: 404,
  unknown_checkpoint: 404,
  corrupt_checkpoint: 500,
  unknown_worker: 404,
  stale_generation: 409,
  stale_owner: 409,
  conflict: 409,
  not_terminal: 409,
  not_running: 409,
  unavailable: 503,
  internal: 500,
};

export function apiErrorOf(code: ErrorCode, message: string): ApiError {
  return new ApiError(STATUS_OF_CODE[code], message);
}

export interface ErrorBody {
  error: string;
}
