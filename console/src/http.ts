/**
 * Requests to the weir API from the browser: same origin, JSON, the bearer token from token.ts in the
 * `Authorization` header (never in a URL). A 401 forgets the token, asks the user for one and sends the
 * request again; every other failure is an `ApiError` carrying the API's own `{"error"}` message.
 */
import { askForToken, clearToken, currentToken, TokenCancelledError } from './token.js';

export const API_BASE = '/api/v1';

export class ApiError extends Error {
  constructor(
    /** The HTTP status; 0 when the API could not be reached at all. */
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

export type QueryValue = string | number | boolean | undefined;

export interface RequestOptions {
  query?: Record<string, QueryValue>;
  /** Sent as JSON. */
  body?: unknown;
  headers?: Record<string, string>;
  signal?: AbortSignal;
}

/** `/pipelines` + `{limit: 20}` → `/api/v1/pipelines?limit=20` (undefined values are left out). */
export function apiUrl(path: string, query: Record<string, QueryValue> = {}): string {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query)) if (value !== undefined) params.set(name, String(value));
  const search = params.toString();
  return `${API_BASE}${path}${search === '' ? '' : `?${search}`}`;
}

/** The API's `{"error": "..."}`, or the status text when the body is something else (a proxy's page). */
async function errorOf(res: Response): Promise<ApiError> {
  let message = `${res.status} ${res.statusText}`.trim();
  try {
    const body = (await res.json()) as { error?: unknown };
    if (typeof body.error === 'string') message = body.error;
  } catch {
    // Not JSON: the status says enough.
  }
  return new ApiError(res.status, message);
}

/**
 * Sends the request and returns the response once it is a success (2xx). A 401 asks for a token and
 * tries again, as often as the user answers; cancelling the prompt fails with a 401 `ApiError`.
 */
export async function apiFetch(method: string, path: string, options: RequestOptions = {}): Promise<Response> {
  if (currentToken() === null && tokenRequired()) await tokenOrApiError('The weir API needs its bearer token.');
  for (;;) {
    const headers: Record<string, string> = { accept: 'application/json', ...options.headers };
    const token = currentToken();
    if (token !== null) headers['authorization'] = `Bearer ${token}`;
    let body: string | undefined;
    if (options.body !== undefined) {
      body = JSON.stringify(options.body);
      headers['content-type'] = 'application/json';
    }
    let res: Response;
    try {
      res = await fetch(apiUrl(path, options.query), { method, headers, body, signal: options.signal ?? null, credentials: 'same-origin' });
    } catch (err) {
      if (options.signal?.aborted === true) throw err;
      throw new ApiError(0, `the weir API cannot be reached: ${err instanceof Error ? err.message : String(err)}`);
    }
    if (res.ok) return res;
    const error = await errorOf(res);
    if (res.status !== 401) throw error;
    clearToken();
    await tokenOrApiError(token === null ? 'The weir API needs its bearer token.' : `The token was refused: ${error.message}.`);
  }
}

/**
 * Whether the page says the API wants a token (the server adds `<meta name="weir-auth" content="bearer">`
 * then): asking before the first request spares the browser a 401, which it would log as an error.
 */
function tokenRequired(): boolean {
  return document.querySelector('meta[name="weir-auth"]')?.getAttribute('content') === 'bearer';
}

/** The user's answer to the token prompt; cancelling it is a 401. */
async function tokenOrApiError(reason: string): Promise<void> {
  try {
    await askForToken(reason);
  } catch (err) {
    if (err instanceof TokenCancelledError) throw new ApiError(401, err.message);
    throw err;
  }
}

/** `apiFetch`, then the body as JSON (`undefined` for a 204). */
export async function apiJson<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
  const res = await apiFetch(method, path, options);
  if (res.status === 204) return undefined as T;
  return (await res.json()) as T;
}
