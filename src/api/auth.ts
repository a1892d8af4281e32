/**
 * Bearer-token auth for the paths the server guards (the JSON API and the metrics, not the web console's
 * files), except routes marked `config: { public: true }` (the liveness ping, the API docs page).
 * The check is constant-time: both sides are hashed first, so neither the comparison nor the digest
 * lengths reveal how much of a guess was right. The token itself is never logged.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { ApiError } from './errors.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Answered without a token. */
    public?: boolean;
  }
}

const digest = (value: string): Buffer => createHash('sha256').update(value, 'utf8').digest();

const CHALLENGE = { 'www-authenticate': 'Bearer realm="weir"' };

export function tokenMatches(expected: string, authorization: string | undefined): boolean {
  const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(authorization ?? '');
  // Hashing even a missing token keeps the time the same whether the header was there or not.
  return timingSafeEqual(digest(match?.[1] ?? ''), digest(expected)) && match !== null;
}

/** An empty token (an unset variable expanded to '') is no token, not one that an empty header matches. */
export function authEnabled(token: string | null | undefined): token is string {
  return token !== null && token !== undefined && token !== '';
}

/**
 * Adds the auth hook to `app` (and so to every plugin registered on it); no token: nothing to check.
 * `guarded(path)` says which paths need the token (default: all), whether a route serves them or not: an
 * unknown API path is a 401 before it is a 404.
 */
export function installAuth(app: FastifyInstance, token: string | null | undefined, guarded: (path: string) => boolean = () => true): void {
  if (!authEnabled(token)) return;
  app.addHook('onRequest', (request, _reply, done) => {
    const authorization = request.headers.authorization;
    if (request.routeOptions.config.public === true || !guarded(routedPath(request.routeOptions.url, request.url)) || tokenMatches(token, authorization)) return done();
    done(new ApiError(401, authorization === undefined ? 'missing bearer token' : 'invalid bearer token', CHALLENGE));
  });
}

/**
 * The path a request is judged by: the pattern of the route it reached, else its path decoded as the
 * router decodes it. The raw URL alone would let `/%61pi/v1/jobs` (which the router serves as
 * `/api/v1/jobs`) pass as a console path. An undecodable path is judged as it is (a 404 either way).
 */
function routedPath(routeUrl: string | undefined, url: string): string {
  if (routeUrl !== undefined) return routeUrl;
  const raw = url.split('?')[0] ?? url;
  try {
    return decodeURIComponent(raw);
  } catch {
    return raw;
  }
}
