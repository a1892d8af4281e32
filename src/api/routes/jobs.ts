/**
 * Jobs: the lists, a job's error log and its record counters. A pipeline has exactly one job (its id is
 * the pipeline's), so `/pipelines/:id/jobs` is a list of one.
 */
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { MAX_LIST_LIMIT, jobSummary, type JobSummary } from '../../protocol/index.js';
import { jobIdOf, pipelineIdOf } from '../pipeline-ids.js';
import {
  COMMON_ERRORS,
  DEFAULT_ERRORS_LIMIT,
  DEFAULT_JOBS_LIMIT,
  errorPageSchema,
  jobListSchema,
  jobParamsSchema,
  listErrorsQuerySchema,
  listJobsQuerySchema,
  noQuerySchema,
  operatorMetricGroupListSchema,
  pipelineParamsSchema,
} from '../schemas.js';
import { toErrorRow, toJob } from '../views.js';
import type { RouteDeps } from './deps.js';

const tags = ['jobs'];

export const jobRoutes: FastifyPluginAsyncZod<RouteDeps> = (app, { controller, log }) => {
  app.get(
    '/jobs',
    {
      schema: {
        tags,
        summary: 'Every job, newest first',
        description: `Bounded by \`limit\` (default ${DEFAULT_JOBS_LIMIT}); the controller is read ${MAX_LIST_LIMIT} jobs at a time.`,
        querystring: listJobsQuerySchema,
        response: { 200: jobListSchema, ...COMMON_ERRORS },
      },
    },
    async (request) => {
      const limit = request.query.limit ?? DEFAULT_JOBS_LIMIT;
      const jobs: JobSummary[] = [];
      let cursor: string | undefined;
      for (;;) {
        const page = await controller.list({ starting_after: cursor, limit: Math.min(MAX_LIST_LIMIT, limit - jobs.length) });
        jobs.push(...page.data);
        cursor = page.data.at(-1)?.job_id;
        if (!page.has_more || cursor === undefined || jobs.length >= limit) break;
      }
      return { data: jobs.map(toJob) };
    },
  );

  app.get(
    '/pipelines/:id/jobs',
    {
      schema: { tags, summary: "A pipeline's job", params: pipelineParamsSchema, querystring: noQuerySchema, response: { 200: jobListSchema, ...COMMON_ERRORS } },
    },
    async (request) => ({ data: [toJob(jobSummary(await controller.get(pipelineIdOf(request.params))))] }),
  );

  app.get(
    '/pipelines/:id/jobs/:job_id/errors',
    {
      schema: {
        tags,
        summary: "A job's errors, newest first",
        description: 'Pages never shift: rows appended during a walk only appear on a new first page.',
        params: jobParamsSchema,
        querystring: listErrorsQuerySchema,
        response: { 200: errorPageSchema, ...COMMON_ERRORS },
      },
    },
    async (request) => {
      const jobId = jobIdOf(request.params);
      // The log has no notion of jobs that do not exist: ask the controller, so an unknown job is a 404
      // and a controller that is away a 503, rather than an empty page.
      await controller.get(jobId);
      const { starting_after, limit = DEFAULT_ERRORS_LIMIT } = request.query;
      const page = await log.page(jobId, { kind: 'error', startingAfter: starting_after, limit });
      return { data: page.data.map(toErrorRow).filter((row) => row !== null), has_more: page.hasMore };
    },
  );

  app.get(
    '/pipelines/:id/jobs/:job_id/operator_metric_groups',
    {
      schema: {
        tags,
        summary: "Record counts and rates of the job's current run, per operator and subtask",
        params: jobParamsSchema,
        querystring: noQuerySchema,
        response: { 200: operatorMetricGroupListSchema, ...COMMON_ERRORS },
      },
    },
    async (request) => ({ data: (await controller.metrics(jobIdOf(request.params))).data }),
  );
  // Registration is synchronous; Fastify wants the promise of an async plugin.
  return Promise.resolve();
};
