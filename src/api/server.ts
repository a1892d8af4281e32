/**
 * The HTTP facade: a thin, stateless Fastify app in front of the controller (NATS requests) and the job
 * event log (JetStream). It keeps nothing of its own, so any number of them can run side by side and one
 * can be restarted at any time.
 */
import fastifySwagger from '@fastify/swagger';
import fastifySwaggerUi from '@fastify/swagger-ui';
import type { NatsConnection } from '@nats-io/transport-node';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { jsonSchemaTransform, serializerCompiler } from 'fastify-type-provider-zod';
import type { Logger } from 'pino';
import { openStore } from '../store/index.js';
import { installAuth, authEnabled } from './auth.js';
import { controllerClient, DEFAULT_CONTROLLER_TIMEOUT_MS } from './controller-client.js';
import { consoleSite, defaultConsoleDir } from './console.js';
import { cachedReads } from './read-cache.js';
import { serializeResponse } from './serialize.js';
import { errorHandler, installNotFound, validatorCompiler } from './error-handling.js';
import { httpMetrics } from './http-metrics.js';
import { installRequestLog } from './request-log.js';
import { checkpointRoutes } from './routes/checkpoints.js';
import { controllerRoutes } from './routes/controllers.js';
import { jobRoutes } from './routes/jobs.js';
import { opsRoutes } from './routes/ops.js';
import { pipelineRoutes } from './routes/pipelines.js';
import { createStreams } from './routes/streams.js';

export const API_PREFIX = '/api/v1';
/** The interactive API documentation (Swagger UI over the OpenAPI document); it loads without a token. */
export const DOCS_PREFIX = `${API_PREFIX}/docs`;
export const DEFAULT_HOST = '127.0.0.1';
export const DEFAULT_PORT = 8000;
export const DEFAULT_BODY_LIMIT_BYTES = 1024 * 1024;

export interface ApiOptions {
  nc: NatsConnection;
  logger: Logger;
  /** Default 127.0.0.1. Anything but a loopback address needs a token. */
  host?: string;
  /** Default 8000; 0 = any free port. */
  port?: number;
  /** Bearer token every route but the ping requires; null/undefined: no auth (loopback only). */
  token?: string | null;
  /** Deadline of one controller request. Default: the controller client's (5 s). */
  controllerTimeoutMs?: number;
  /** Replicas of the jobs bucket and event log when the API is the first to create them. Default 1. */
  replicas?: number;
  /**
   * How long a controller read (a job, its checkpoints, its metrics) serves later identical requests.
   * Default 250 ms; 0: every request asks the controller (concurrent ones still share one request).
   */
  readCacheMs?: number;
  /**
   * Check every response against its route's schema before sending it. Off by default: responses are
   * built by typed views from controller replies already checked against their protocol schemas, and a
   * second check cost a third of the API's CPU in bench:api. The tests turn it on, so a schema and what a
   * route sends cannot drift apart unnoticed.
   */
  checkResponses?: boolean;
  /** Largest accepted request body. Default 1 MiB. */
  bodyLimitBytes?: number;
  /**
   * The built web console served at `/`. Default: the package's dist/console; null: none. Either way,
   * without an index.html there `/` says the console is not built, and the API works as ever.
   */
  consoleDir?: string | null;
  streams?: { outputBufferEvents?: number; heartbeatMs?: number };
}

export interface ApiServer {
  readonly url: string;
  readonly app: FastifyInstance;
  close(): Promise<void>;
}

/** The app with every route, not listening (`app.inject` works on it). Closing it closes its SSE streams. */
export async function buildApi(options: Omit<ApiOptions, 'host' | 'port'>): Promise<FastifyInstance> {
  const { nc, logger } = options;
  // A client waits for the event log no longer than for the controller: then it gets its 503.
  const deadlineMs = options.controllerTimeoutMs ?? DEFAULT_CONTROLLER_TIMEOUT_MS;
  const store = await openStore(nc, { operationTimeoutMs: deadlineMs, requestTimeoutMs: Math.min(2_000, deadlineMs), replicas: options.replicas ?? 1 });
  const direct = controllerClient(nc, { timeoutMs: options.controllerTimeoutMs });
  const controller = cachedReads(direct, { ...(options.readCacheMs === undefined ? {} : { ttlMs: options.readCacheMs }) });

  const apiLogger: FastifyBaseLogger = logger.child({ component: 'api' });
  const app = Fastify({
    loggerInstance: apiLogger,
    // One line per request, at debug (request-log.ts), instead of Fastify's two at info.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: options.bodyLimitBytes ?? DEFAULT_BODY_LIMIT_BYTES,
    // GET routes answer HEAD too otherwise, and the OpenAPI document would have to list twice as many.
    exposeHeadRoutes: false,
  });

  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(options.checkResponses === true ? serializerCompiler : () => serializeResponse);
  app.setErrorHandler(errorHandler);
  // Bodies are JSON only; a text/plain body is a 415, not a string the schema then rejects.
  app.removeContentTypeParser('text/plain');
  const site = consoleSite(options.consoleDir === undefined ? defaultConsoleDir() : options.consoleDir, isServerPath, { authRequired: authEnabled(options.token) });
  installNotFound(app, site.fallback);
  installRequestLog(app);
  installAuth(app, options.token, guardedPath);

  // Streams read the job after they start following it, so a transition in between is not lost: never a cached read.
  const streams = createStreams({ nc, controller: direct, log: store.log, logger: logger.child({ component: 'api-streams' }), ...options.streams });
  const metrics = httpMetrics(app, nc, () => streams.stats());
  app.addHook('onClose', async () => {
    metrics.close();
    await streams.close();
  });

  await app.register(fastifySwagger, {
    openapi: {
      openapi: '3.0.3',
      info: { title: 'weir', description: 'The weir control plane: pipelines, jobs, checkpoints, live streams', version: '1' },
      ...(authEnabled(options.token)
        ? { components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } }, security: [{ bearer: [] }] }
        : {}),
    },
    transform: jsonSchemaTransform,
  });

  const deps = { controller, log: store.log };
  await app.register(pipelineRoutes, { prefix: API_PREFIX, ...deps });
  await app.register(jobRoutes, { prefix: API_PREFIX, ...deps });
  await app.register(checkpointRoutes, { prefix: API_PREFIX, ...deps });
  await app.register(controllerRoutes, { prefix: API_PREFIX, ...deps });
  await app.register(streams.routes, { prefix: API_PREFIX });
  await app.register(opsRoutes, { controller, metrics, apiPrefix: API_PREFIX });
  // Swagger UI rather than Scalar: its files come in the package, so the page works offline and on
  // loopback, and it reads @fastify/swagger's document directly (README, "Web console").
  await app.register(fastifySwaggerUi, { routePrefix: DOCS_PREFIX, uiConfig: { deepLinking: true, persistAuthorization: false } });
  await site.routes(app);
  return app;
}

/** Paths the server itself answers, never the console's router: the API (any version) and the metrics. */
function isServerPath(path: string): boolean {
  return path === '/metrics' || path === '/api' || path.startsWith('/api/');
}

/**
 * The token guards the JSON API and the metrics. The console's files and the docs page are public: they
 * hold no data, and a browser must load them before it can ask for a token.
 */
function guardedPath(path: string): boolean {
  return isServerPath(path) && path !== DOCS_PREFIX && !path.startsWith(`${DOCS_PREFIX}/`);
}

const isLoopback = (host: string): boolean => host === 'localhost' || host === '::1' || /^127(\.[0-9]{1,3}){3}$/.test(host);

/** Without a token anyone who can reach the port can stop and delete jobs: only this machine may. */
export function assertSafeListen(host: string, token: string | null | undefined): void {
  if (!authEnabled(token) && !isLoopback(host)) throw new Error(`refusing to listen on ${host} without WEIR_API_TOKEN`);
}

export async function startApi(options: ApiOptions): Promise<ApiServer> {
  const host = options.host ?? DEFAULT_HOST;
  assertSafeListen(host, options.token);
  const app = await buildApi(options);
  try {
    await app.listen({ host, port: options.port ?? DEFAULT_PORT });
  } catch (err) {
    await app.close();
    throw err;
  }
  const address = app.server.address();
  const port = typeof address === 'object' && address !== null ? address.port : (options.port ?? DEFAULT_PORT);
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  if (authEnabled(options.token)) options.logger.info({ url }, `API listening on ${url}, bearer token required`);
  else options.logger.info({ url }, `API listening on ${url}; no token: listening on ${host} only`);
  return { url, app, close: () => app.close() };
}
