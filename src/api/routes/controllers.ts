/**
 * The controllers sharing the jobs (`weir.api.controllers.list`): each one's shards and jobs, how long ago
 * its leases and presence were renewed, and whether it is live. Any controller answers for the whole fleet.
 */
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { COMMON_ERRORS, controllerListSchema, noQuerySchema } from '../schemas.js';
import type { RouteDeps } from './deps.js';

export const controllerRoutes: FastifyPluginAsyncZod<RouteDeps> = (app, { controller }) => {
  app.get(
    '/controllers',
    {
      schema: {
        tags: ['controllers'],
        summary: 'The controllers sharing the jobs: shards and jobs each owns, lease and presence ages, liveness',
        description:
          'Answered by whichever controller receives the request, from its view of the shard leases; jobs are counted for the owner of their shard. Ages are milliseconds since that controller saw the lease or presence renewed.',
        querystring: noQuerySchema,
        response: { 200: controllerListSchema, ...COMMON_ERRORS },
      },
    },
    async () => {
      const { shards, lease_ttl_ms, answered_by, data } = await controller.controllers();
      return { shards, lease_ttl_ms, answered_by, data };
    },
  );
  // Registration is synchronous; Fastify wants the promise of an async plugin.
  return Promise.resolve();
};
