/**
 * The API's bearer token in the browser: kept in sessionStorage (gone when the tab closes, never in a URL
 * or a cookie), and asked for when the API answers 401. Every request that meets a 401 waits on the same
 * prompt, so a page that makes five requests asks once.
 */

export const TOKEN_KEY = 'weir.token';

/** What the prompt is asked: why (the API's message), and how to answer. */
export interface TokenRequest {
  reason: string;
  submit(token: string): void;
  cancel(): void;
}

export class TokenCancelledError extends Error {
  constructor() {
    super('the API needs a token, and none was given');
    this.name = 'TokenCancelledError';
  }
}

type Listener = (request: TokenRequest | null) => void;

const listeners = new Set<Listener>();
/** The token when sessionStorage is unavailable (privacy settings): it then lives as long as the page. */
let memoryToken: string | null = null;
let pending: { request: TokenRequest; answer: Promise<string> } | null = null;

export function currentToken(): string | null {
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return memoryToken;
  }
}

export function storeToken(token: string): void {
  memoryToken = token;
  try {
    sessionStorage.setItem(TOKEN_KEY, token);
  } catch {
    // Storage is off: memoryToken serves.
  }
}

export function clearToken(): void {
  memoryToken = null;
  try {
    sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // Storage is off: memoryToken serves.
  }
}

function notify(): void {
  for (const listener of listeners) listener(pending?.request ?? null);
}

/**
 * Resolves with the token the user enters; rejects with `TokenCancelledError` if they cancel. Callers
 * that arrive while a prompt is open share it.
 */
export function askForToken(reason: string): Promise<string> {
  if (pending !== null) return pending.answer;
  let resolve!: (token: string) => void;
  let reject!: (err: Error) => void;
  const answer = new Promise<string>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  const request: TokenRequest = {
    reason,
    submit(token) {
      const trimmed = token.trim();
      if (trimmed === '' || pending?.request !== request) return;
      storeToken(trimmed);
      pending = null;
      notify();
      resolve(trimmed);
    },
    cancel() {
      if (pending?.request !== request) return;
      pending = null;
      notify();
      reject(new TokenCancelledError());
    },
  };
  pending = { request, answer };
  notify();
  return answer;
}

/** Calls `listener` with the open prompt (or null) now and on every change; returns the unsubscribe. */
export function watchTokenRequests(listener: Listener): () => void {
  listeners.add(listener);
  listener(pending?.request ?? null);
  return () => listeners.delete(listener);
}
