/**
 * What operators and tooling need besides jobs: a liveness ping (no auth, so load balancers can use it),
 * the OpenAPI document, and Prometheus metrics (the API's own, then the controller's).
 */
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { ControllerClient } from '../controller-client.js';
import type { HttpMetrics } from '../http-metrics.js';
import { COMMON_ERRORS, noQuerySchema, pongSchema } from '../schemas.js';

export interface OpsDeps {
  controller: ControllerClient;
  metrics: HttpMetrics;
  /** Where the JSON API lives (`/api/v1`); `/metrics` stays at the root, where scrapers look. */
  apiPrefix: string;
}

const PROMETHEUS_TEXT = 'text/plain; version=0.0.4; charset=utf-8';

const openApiDocumentSchema = z.looseObject({ openapi: z.string(), info: z.looseObject({}), paths: z.record(z.string(), z.unknown()) });

export const opsRoutes: FastifyPluginAsyncZod<OpsDeps> = (app, { controller, metrics, apiPrefix }) => {
  app.get(
    `${apiPrefix}/ping`,
    { config: { public: true }, schema: { tags: ['ops'], summary: 'Liveness; needs no token', querystring: noQuerySchema, response: { 200: pongSchema, 400: COMMON_ERRORS[400] } } },
    () => Promise.resolve({ pong: true as const }),
  );

  app.get(
    `${apiPrefix}/openapi.json`,
    { schema: { tags: ['ops'], summary: 'This OpenAPI 3 document', querystring: noQuerySchema, response: { 200: openApiDocumentSchema, ...COMMON_ERRORS } } },
    () => Promise.resolve(openApiDocumentSchema.parse(app.swagger())),
  );

  app.get(
    '/metrics',
    {
      schema: {
        tags: ['ops'],
        summary: "Prometheus metrics: the API's own, then the controller's",
        description: 'When the controller does not answer, the API still serves its own, with `weir_controller_up 0`.',
        querystring: noQuerySchema,
        response: { 200: { description: 'Prometheus text format 0.0.4', content: { 'text/plain': { schema: z.string() } } }, ...COMMON_ERRORS },
      },
    },
    async (request, reply) => {
      let controllerText = '';
      try {
        controllerText = (await controller.controllerMetrics()).text;
        metrics.setControllerUp(true);
      } catch (err) {
        request.log.warn({ err }, 'the controller did not answer the metrics request');
        metrics.setControllerUp(false);
      }
      const own = await metrics.registry.metrics();
      const text = controllerText === '' ? own : `${own.endsWith('\n') ? own : `${own}\n`}${controllerText}`;
      return reply.type(PROMETHEUS_TEXT).send(text);
    },
  );
  // Registration is synchronous; Fastify wants the promise of an async plugin.
  return Promise.resolve();
};
