/**
 * Pipelines: create, list, read, change, restart, delete. Every change goes to the controller, and the
 * answer is the pipeline read back afterwards, so a client sees what the controller made of its request.
 */
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { DEFAULT_LIST_LIMIT, type ConfigUpdate } from '../../protocol/index.js';
import { ApiError } from '../errors.js';
import { pipelineIdOf } from '../pipeline-ids.js';
import {
  BODY_ERRORS,
  COMMON_ERRORS,
  createPipelineBodySchema,
  errorBodySchema,
  listPipelinesQuerySchema,
  noQuerySchema,
  patchPipelineBodySchema,
  pipelinePageSchema,
  pipelineParamsSchema,
  pipelineResponseSchema,
  restartPipelineBodySchema,
} from '../schemas.js';
import { toPipeline } from '../views.js';
import type { RouteDeps } from './deps.js';
import { z } from 'zod';

const tags = ['pipelines'];

export const pipelineRoutes: FastifyPluginAsyncZod<RouteDeps> = (app, { controller }) => {
  const pipeline = async (id: string) => toPipeline(await controller.get(id));

  app.post(
    '/pipelines',
    {
      schema: {
        tags,
        summary: 'Create a pipeline and its job',
        querystring: noQuerySchema,
        body: createPipelineBodySchema,
        response: { 201: pipelineResponseSchema, ...COMMON_ERRORS, ...BODY_ERRORS },
      },
    },
    async (request, reply) => {
      const { v: _v, ...body } = request.body;
      const { job_id } = await controller.create(body);
      return reply.code(201).send(await pipeline(job_id));
    },
  );

  app.get(
    '/pipelines',
    {
      schema: {
        tags,
        summary: 'Pipelines, newest first',
        querystring: listPipelinesQuerySchema,
        response: { 200: pipelinePageSchema, ...COMMON_ERRORS },
      },
    },
    async (request) => {
      const { starting_after, limit = DEFAULT_LIST_LIMIT } = request.query;
      // Whole views in one request per page; a page may come back shorter than `limit`, with has_more.
      const page = await controller.views({ starting_after, limit });
      return { data: page.data.map(toPipeline), has_more: page.has_more };
    },
  );

  app.get(
    '/pipelines/:id',
    { schema: { tags, summary: 'One pipeline', params: pipelineParamsSchema, querystring: noQuerySchema, response: { 200: pipelineResponseSchema, ...COMMON_ERRORS } } },
    async (request) => pipeline(pipelineIdOf(request.params)),
  );

  app.patch(
    '/pipelines/:id',
    {
      schema: {
        tags,
        summary: 'Start, stop, rescale or change the checkpoint interval',
        params: pipelineParamsSchema,
        querystring: noQuerySchema,
        body: patchPipelineBodySchema,
        response: { 200: pipelineResponseSchema, ...COMMON_ERRORS, ...BODY_ERRORS, 409: errorBodySchema },
      },
    },
    async (request) => {
      const id = pipelineIdOf(request.params);
      const { stop, parallelism, checkpoint_interval_micros } = request.body;
      const update = withoutNulls({ stop, parallelism, checkpoint_interval_micros });
      if (Object.keys(update).length === 0) throw new ApiError(400, 'nothing to change: set stop, parallelism or checkpoint_interval_micros');
      await controller.config(id, update);
      return pipeline(id);
    },
  );

  app.post(
    '/pipelines/:id/restart',
    {
      schema: {
        tags,
        summary: 'Restart the job: a final checkpoint first unless forced',
        params: pipelineParamsSchema,
        querystring: noQuerySchema,
        body: restartPipelineBodySchema,
        response: { 200: pipelineResponseSchema, ...COMMON_ERRORS, ...BODY_ERRORS, 409: errorBodySchema },
      },
    },
    async (request) => {
      const id = pipelineIdOf(request.params);
      const { force, ignore_state } = request.body ?? {};
      // Safe is the controller's default; ignore_state makes it a force restart there.
      const update: Omit<ConfigUpdate, 'v'> = { restart: true };
      if (force === true) update.restart_mode = 'force';
      if (ignore_state === true) update.ignore_state = true;
      await controller.config(id, update);
      return pipeline(id);
    },
  );

  app.delete(
    '/pipelines/:id',
    {
      schema: {
        tags,
        summary: 'Delete a pipeline whose job is Stopped, Finished or Failed',
        params: pipelineParamsSchema,
        querystring: noQuerySchema,
        response: { 204: z.null().meta({ description: 'Deleted' }), ...COMMON_ERRORS, 409: errorBodySchema },
      },
    },
    async (request, reply) => {
      await controller.delete(pipelineIdOf(request.params));
      return reply.code(204).send(null);
    },
  );
  // Registration is synchronous; Fastify wants the promise of an async plugin.
  return Promise.resolve();
};

function withoutNulls<T extends Record<string, unknown>>(fields: T): { [K in keyof T]?: Exclude<T[K], null> } {
  return Object.fromEntries(Object.entries(fields).filter(([, value]) => value !== null && value !== undefined)) as {
    [K in keyof T]?: Exclude<T[K], null>;
  };
}
