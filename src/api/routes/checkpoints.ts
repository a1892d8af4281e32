/** A job's checkpoints: the history, one checkpoint's per-operator spans, and a checkpoint on demand. */
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { ApiError } from '../errors.js';
import { jobIdOf } from '../pipeline-ids.js';
import {
  BODY_ERRORS,
  COMMON_ERRORS,
  checkpointListSchema,
  checkpointParamsSchema,
  errorBodySchema,
  jobParamsSchema,
  listCheckpointsQuerySchema,
  noQuerySchema,
  operatorCheckpointGroupListSchema,
  triggerCheckpointBodySchema,
  triggerCheckpointHeadersSchema,
  triggerCheckpointResponseSchema,
} from '../schemas.js';
import type { RouteDeps } from './deps.js';
import { derivedOnce } from '../serialize.js';
import type { JobCheckpointsReply } from '../../protocol/index.js';

const tags = ['checkpoints'];

/** Once per reply: a cached read serves the same reply to many requests. */
const checkpointList = derivedOnce((reply: JobCheckpointsReply) => ({ data: reply.data }));

export const checkpointRoutes: FastifyPluginAsyncZod<RouteDeps> = (app, { controller }) => {
  app.get(
    '/pipelines/:id/jobs/:job_id/checkpoints',
    {
      schema: {
        tags,
        summary: "The job's checkpoints, newest first",
        params: jobParamsSchema,
        querystring: listCheckpointsQuerySchema,
        response: { 200: checkpointListSchema, ...COMMON_ERRORS },
      },
    },
    async (request) => {
      return checkpointList(await controller.checkpoints(jobIdOf(request.params), { include_failed: request.query.include_failed ?? false }));
    },
  );

  app.get(
    '/pipelines/:id/jobs/:job_id/checkpoints/:epoch/operator_checkpoint_groups',
    {
      schema: {
        tags,
        summary: "One checkpoint's spans per operator and subtask",
        params: checkpointParamsSchema,
        querystring: noQuerySchema,
        response: { 200: operatorCheckpointGroupListSchema, ...COMMON_ERRORS },
      },
    },
    async (request) => {
      const reply = await controller.checkpoint(jobIdOf(request.params), request.params.epoch);
      return { data: reply.data };
    },
  );

  app.post(
    '/pipelines/:id/jobs/:job_id/checkpoints',
    {
      schema: {
        tags,
        summary: 'Take a checkpoint now',
        description:
          'A `trigger_id` (or an `Idempotency-Key` header) makes a retry safe: a repeat answers with the epoch the first request started, `started: false`.',
        params: jobParamsSchema,
        querystring: noQuerySchema,
        headers: triggerCheckpointHeadersSchema,
        body: triggerCheckpointBodySchema,
        response: { 202: triggerCheckpointResponseSchema, ...COMMON_ERRORS, ...BODY_ERRORS, 409: errorBodySchema },
      },
    },
    async (request, reply) => {
      const jobId = jobIdOf(request.params);
      const fromBody = request.body?.trigger_id;
      const fromHeader = request.headers['idempotency-key'];
      if (fromBody !== undefined && fromHeader !== undefined && fromBody !== fromHeader) {
        throw new ApiError(400, 'trigger_id: differs from the Idempotency-Key header');
      }
      const { epoch, trigger_id, started } = await controller.triggerCheckpoint(jobId, fromBody ?? fromHeader);
      return reply.code(202).send(trigger_id === undefined ? { epoch, started } : { epoch, trigger_id, started });
    },
  );
  // Registration is synchronous; Fastify wants the promise of an async plugin.
  return Promise.resolve();
};
