/**
 * How every failure reaches an HTTP client: one body shape, `{"error": "..."}`, with the status that says
 * whose fault it is. Schema failures name the offending field the way the NATS protocol does
 * (`graph.nodes[0].parallelism: expected int`), so a message reads the same whichever door it came through.
 */
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest, FastifySchemaCompiler } from 'fastify';
import type { z } from 'zod';
import { formatIssues, parseReportingInput } from '../protocol/codec.js';
import { errorCodeOf } from '../protocol/index.js';
import { StoreUnavailableError } from '../store/index.js';
import { ApiError, STATUS_OF_CODE, type ErrorBody } from './errors.js';
import { noteRejection } from './request-log.js';

/**
 * fastify-type-provider-zod's compiler, but failing with an `ApiError` whose message is the formatted
 * issues: Fastify passes an `Error` result through as the validation error, status included.
 */
export const validatorCompiler: FastifySchemaCompiler<z.ZodType> =
  ({ schema, httpPart }) =>
  (data) => {
    const result = parseReportingInput(schema, data);
    if (result.success) return { value: result.data };
    const part = httpPart === 'querystring' ? 'query' : (httpPart ?? 'request');
    return { error: new ApiError(400, formatIssues(result.error.issues).replaceAll('(root)', part)) };
  };

/** The status and message of any error a route, hook or Fastify itself raised. */
function describe(err: unknown): { status: number; message: string; headers: Readonly<Record<string, string>> } {
  if (err instanceof ApiError) return { status: err.statusCode, message: err.message, headers: err.headers };
  if (err instanceof StoreUnavailableError) return { status: 503, message: `the job log is unavailable: ${err.message}`, headers: {} };
  // weir's own errors say how they are reported (src/protocol/errors.ts, errorCodeOf); a bug is `internal`.
  const code = errorCodeOf(err);
  if (code !== 'internal') return { status: STATUS_OF_CODE[code], message: (err as Error).message, headers: {} };
  const status = (err as Partial<FastifyError>).statusCode;
  // Fastify's own client errors (bad JSON, body too large, unsupported media type) carry their status.
  if (typeof status === 'number' && status >= 400 && status < 500) return { status, message: (err as Error).message, headers: {} };
  return { status: 500, message: 'internal error', headers: {} };
}

export function sendError(reply: FastifyReply, status: number, message: string, headers: Readonly<Record<string, string>> = {}): FastifyReply {
  const body: ErrorBody = { error: message };
  return reply.code(status).headers(headers).type('application/json; charset=utf-8').send(body);
}

export function errorHandler(err: unknown, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  const { status, message, headers } = describe(err);
  // A bug is an error; a controller or store that is away is expected weather, and a client's mistake is its own.
  if (status === 500) request.log.error({ err }, 'request failed');
  else if (status >= 500) request.log.warn({ status, message }, 'request failed');
  else noteRejection(request, message);
  return sendError(reply, status, message, headers);
}

/** `/pipelines/:id/jobs` → a matcher for concrete paths, so an unknown method on a known path is a 405. */
function matcherOf(url: string): RegExp {
  const pattern = url
    .split('/')
    .map((segment) => (segment.startsWith(':') ? '[^/]+' : segment === '*' ? '.*' : segment.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
    .join('/');
  return new RegExp(`^${pattern}/?$`);
}

export interface RouteEntry {
  method: string;
  url: string;
  matcher: RegExp;
  /** Left out of the OpenAPI document (the console's files, the docs page). */
  hidden: boolean;
}

const ROUTES = new WeakMap<FastifyInstance, RouteEntry[]>();

/** Every route of an app set up by `installNotFound`, whatever plugin added it (the OpenAPI test checks them all). */
export function routesOf(app: FastifyInstance): readonly RouteEntry[] {
  return ROUTES.get(app) ?? [];
}

/**
 * Registers the 404/405 handler. Routes are collected as they are added (onRoute), so the handler knows
 * every path whatever plugin registered it. `fallback` answers first when it can (the web console's pages);
 * it returns false to leave the request to the 404/405.
 */
export function installNotFound(app: FastifyInstance, fallback: (request: FastifyRequest, reply: FastifyReply) => boolean = () => false): void {
  const routes: RouteEntry[] = [];
  ROUTES.set(app, routes);
  app.addHook('onRoute', (route) => {
    const hidden = route.schema?.hide === true;
    for (const method of [route.method].flat()) routes.push({ method, url: route.url, matcher: matcherOf(route.url), hidden });
  });
  app.setNotFoundHandler((request, reply) => {
    if (fallback(request, reply)) return reply;
    const path = request.url.split('?')[0] ?? request.url;
    const allowed = [...new Set(routes.filter((r) => r.matcher.test(path)).map((r) => r.method))];
    // A route that takes the method but found nothing (a static file that is gone) is a 404, not a 405.
    if (allowed.length > 0 && !allowed.includes(request.method)) {
      return sendError(reply, 405, `${request.method} is not allowed on ${path}; use ${allowed.join(', ')}`, { allow: allowed.join(', ') });
    }
    return sendError(reply, 404, `no route ${request.method} ${path}`);
  });
}
