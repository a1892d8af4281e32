/**
 * The job lifecycle requests of `weir.api.jobs.*`: create, config (a partial update of the desired
 * config), delete, get, and the two listings (summaries, whole views). Requests that change a job run in
 * its `perJob` queue, so a config update, a delete and the runtime's own view of the job never interleave.
 */
import { isDeepStrictEqual } from 'node:util';
import type { KV } from '@nats-io/kv';
import type { Msg, NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { TERMINAL_STATES } from '../../machines/job/types.js';
import {
  DEFAULT_LIST_LIMIT,
  MAX_MESSAGE_BYTES,
  OPERATOR_CATALOGUE,
  PROTOCOL_VERSION,
  RequestRejected,
  configUpdateSchema,
  jobRequestSchema,
  jobSummary,
  listJobsRequestSchema,
  pipelineSchema,
  truncateErrorText,
  validateGraph,
  type DeleteJobReply,
  type JobRevisionReply,
  type JobView,
  type ListJobViewsReply,
  type ListJobsReply,
  type ListJobsRequest,
} from '../protocol/index.js';
import type { JobConfigRecord, Store, Versioned } from '../store/index.js';
import { JobCheckpointRecords, type CheckpointStore } from '../checkpoint/index.js';
import type { KeyedQueue } from '../shared/keyed-queue.js';
import { microsFromMs } from '../shared/micros.js';
import { applyUpdate, changesNothing, configFromPipeline, newJobId } from './job-config.js';
import type { ResumeState } from './job-runtime.js';
import type { JobTable } from './job-table.js';
import type { JobOwnership } from './job-ownership.js';
import { jobView } from './job-view.js';
import { offeredOperatorSpecs } from './operator-specs.js';
import type { WorkerRegistry } from './registry.js';
import { body, jobOf } from './request-parsing.js';

export interface JobRequestsOptions {
  nc: NatsConnection;
  store: Store;
  /** The operators workers offer, which a new job's graph is checked against. */
  registry: WorkerRegistry;
  table: JobTable;
  /** Each job's requests, config changes and checkpoint triggers, one at a time. */
  perJob: KeyedQueue;
  /** The checkpoint store of the jobs' state blobs: a deleted job's blobs go too. */
  stateStore: () => Promise<CheckpointStore>;
  log: Logger;
  /** Largest accepted request. */
  maxMessageBytes: number;
  /** The checkpoint records' bucket, shared with the runtimes: a deleted job's records are purged from it. */
  checkpointKv: () => Promise<KV>;
  /** Largest page of job views (JSON bytes). Default: 90 % of the server's `max_payload`. */
  maxViewPageBytes: number | undefined;
  /** Where a new job may go (a shard this controller owns), and who owns each job (for its view). */
  ownership: Pick<JobOwnership, 'owns' | 'ownerOf'>;
}

/** Ids drawn for a new job before giving up on finding one of a shard this controller owns. */
const NEW_ID_DRAWS = 10_000;

export interface JobRequests {
  create: (msg: Msg) => Promise<JobRevisionReply>;
  config: (msg: Msg) => Promise<JobRevisionReply>;
  delete: (msg: Msg) => Promise<DeleteJobReply>;
  get: (msg: Msg) => Promise<JobView>;
  list: (msg: Msg) => Promise<ListJobsReply>;
  views: (msg: Msg) => Promise<ListJobViewsReply>;
}

export function jobRequests(options: JobRequestsOptions): JobRequests {
  const { nc, store, registry, table, perJob, stateStore, checkpointKv, log, maxMessageBytes: maxBytes, ownership } = options;

  async function create(msg: Msg): Promise<JobRevisionReply> {
    const pipeline = body(pipelineSchema, msg, maxBytes);
    const problems = validateGraph(pipeline, offeredOperatorSpecs(registry.operators(), OPERATOR_CATALOGUE, pipeline.graph));
    if (problems.length > 0) throw new RequestRejected('invalid_pipeline', truncateErrorText(problems.map((p) => `${p.path}: ${p.message}`).join('; ')));
    const jobId = ownedJobId();
    const spec = { ...(pipeline as unknown as Record<string, never>), created_at: microsFromMs(Date.now()) };
    const record = await store.jobs.create(jobId, spec, configFromPipeline(pipeline));
    return perJob.run(jobId, async () => {
      // Its shard's adoption may have found the new job in the store first: it runs already.
      if (table.has(jobId)) return { v: PROTOCOL_VERSION, job_id: jobId, revision: record.revisions.config };
      try {
        table.startRuntime(jobId, record, undefined, true);
      } catch (err) {
        // Nothing may stay behind for a create that failed.
        table.forget(jobId);
        await store.jobs.delete(jobId).catch((e: unknown) => log.error({ err: e, jobId }, 'could not undo a failed create'));
        throw err;
      }
      log.info({ jobId, name: pipeline.name }, 'job created');
      return { v: PROTOCOL_VERSION, job_id: jobId, revision: record.revisions.config };
    });
  }

  /**
   * A new job id of a shard this controller owns, so that the job is this controller's from its creation:
   * ids are random past their time prefix, and a controller owns a fair share of the shards.
   */
  function ownedJobId(): string {
    for (let draw = 0; draw < NEW_ID_DRAWS; draw++) {
      const jobId = newJobId();
      if (ownership.owns(jobId)) return jobId;
    }
    throw new RequestRejected('unavailable', 'this controller owns no shard of jobs now; try again');
  }

  async function config(msg: Msg): Promise<JobRevisionReply> {
    const jobId = jobOf(msg);
    const update = body(configUpdateSchema, msg, maxBytes);
    return perJob.run(jobId, async () => {
      const runtime = table.runtime(jobId);
      let known = table.has(jobId) && runtime !== undefined ? table.knownConfig(jobId) : undefined;
      // An expected revision is checked against the store, not against what this process last saw.
      let latestEpoch = runtime?.coordinator.epoch ?? 0;
      if (known === undefined || update.expected_revision !== undefined) {
        const record = await table.existing(jobId);
        table.remember(jobId, record);
        known = table.knownConfig(jobId)!;
        latestEpoch = Math.max(latestEpoch, record.status.epoch);
      }
      let { nodeIds, config: current } = known;
      if (update.expected_revision !== undefined && update.expected_revision !== current.revision) {
        throw new RequestRejected('conflict', `job ${jobId} is at revision ${current.revision}, not ${update.expected_revision}`);
      }
      // Validated before the write so that a bad update changes nothing.
      let next = applyUpdate(current.value, update, nodeIds, latestEpoch);
      const state = runtime?.state();
      if (changesNothing(current.value, next, state)) {
        // Judged on the stored config, not on what this process last saw of it: another writer may have changed it.
        const record = await table.existing(jobId);
        table.remember(jobId, record);
        ({ nodeIds, config: current } = table.knownConfig(jobId)!);
        next = applyUpdate(current.value, update, nodeIds, latestEpoch);
        if (changesNothing(current.value, next, state)) {
          log.info({ jobId, update, state }, 'config update changes nothing');
          return { v: PROTOCOL_VERSION, job_id: jobId, revision: current.revision, changed: false, ...(state === undefined ? {} : { state }) };
        }
      }
      const write = store.jobs.updateConfig(jobId, (value) => applyUpdate(value, update, nodeIds, latestEpoch), current);
      // The runtime gets the update while its write is in flight, so the transition it causes is persisted
      // beside the config rather than one round trip later. Should the process die in between, a resumed
      // job converges on the stored config whichever of the two landed (Stopped starts again when the
      // stored config asks to run; a config without its transition is acted on at resume).
      table.forward(jobId, next);
      let result: Versioned<JobConfigRecord>;
      try {
        result = await write;
      } catch (err) {
        // The runtime holds a config the store may not: give it back what the store holds, once it can be read.
        void perJob.run(jobId, () => table.reloadStoredConfig(jobId));
        throw err;
      }
      table.rememberConfig(jobId, { nodeIds, config: result });
      table.markApplied(jobId, result.revision);
      if (!isDeepStrictEqual(result.value, next)) {
        // Re-applied on top of a change another writer made meanwhile: the runtime follows the merge.
        table.forward(jobId, result.value);
      }
      log.info({ jobId, revision: result.revision, update }, 'config updated');
      const after = table.runtime(jobId)?.state();
      return { v: PROTOCOL_VERSION, job_id: jobId, revision: result.revision, changed: true, ...(after === undefined ? {} : { state: after }) };
    });
  }

  async function remove(msg: Msg): Promise<DeleteJobReply> {
    const jobId = jobOf(msg);
    body(jobRequestSchema, msg, maxBytes);
    return perJob.run(jobId, async () => {
      let record = await table.existing(jobId);
      const state = table.runtime(jobId)?.state() ?? record.status.state;
      if (!TERMINAL_STATES.includes(state)) throw new RequestRejected('not_terminal', `job ${jobId} is ${state}; stop it first`);
      const runtime = table.runtime(jobId);
      if (runtime !== undefined) {
        await runtime.stop();
        table.removeRuntime(jobId);
      }
      record = (await store.jobs.get(jobId)) ?? record;
      if (!TERMINAL_STATES.includes(record.status.state)) {
        // Should not happen: the runtime persisted a terminal state before it was stopped. Keep the job.
        table.startRuntime(jobId, record, undefined);
        throw new RequestRejected('not_terminal', `job ${jobId} is stored as ${record.status.state}`);
      }
      table.forget(jobId);
      try {
        await store.jobs.delete(jobId, { statusRevision: record.revisions.status });
      } catch (err) {
        table.restore(jobId, record, record.status.state as ResumeState);
        throw err;
      }
      await store.log.purge(jobId).catch((err: unknown) => log.warn({ err, jobId }, 'could not purge the job log'));
      // Its checkpoints go too: the records in the ring, and the state blobs (its run in the checkpoint store).
      await new JobCheckpointRecords({ jobId, kv: checkpointKv }).purge().catch((err: unknown) => log.warn({ err, jobId }, 'could not purge the checkpoint records'));
      await stateStore()
        .then((checkpoints) => checkpoints.deleteRun(jobId))
        .catch((err: unknown) => log.warn({ err, jobId }, 'could not delete the job state from the checkpoint store'));
      runtime?.announceDeleted();
      log.info({ jobId }, 'job deleted');
      return { v: PROTOCOL_VERSION, job_id: jobId };
    });
  }

  async function get(msg: Msg): Promise<JobView> {
    const jobId = jobOf(msg);
    body(jobRequestSchema, msg, maxBytes);
    const record = await table.existing(jobId);
    return jobView(jobId, record, table.runtime(jobId)?.progress(), ownership.ownerOf(jobId));
  }

  /**
   * One page of jobs, newest first, each as `item` makes it. `fits` may end the page early (the item
   * that does not fit starts the next one); a page always holds at least one job when there is one.
   */
  async function page<T>(request: ListJobsRequest, item: (view: JobView) => T, fits: (item: T) => boolean = () => true): Promise<{ data: T[]; has_more: boolean }> {
    const limit = request.limit ?? DEFAULT_LIST_LIMIT;
    // Ids are time-ordered, so newest first is reverse id order. Every job, whichever controller owns it:
    // the store has them all, and the owner's runtime progress where the owner is this controller.
    let ids = (await store.jobs.list()).reverse();
    if (request.starting_after !== undefined) {
      const after = request.starting_after;
      ids = ids.filter((id) => id < after);
    }
    const data: T[] = [];
    let next = 0;
    // A page's records are read together; a job deleted meanwhile leaves a gap the next batch fills.
    while (next < ids.length && data.length < limit) {
      const batch = ids.slice(next, next + limit - data.length);
      const records = await Promise.all(batch.map((id) => store.jobs.get(id).catch(() => null)));
      for (const [k, id] of batch.entries()) {
        const record = records[k];
        if (record !== null && record !== undefined) {
          const made = item(jobView(id, record, table.runtime(id)?.progress(), ownership.ownerOf(id)));
          if (!fits(made) && data.length > 0) return { data, has_more: true };
          data.push(made);
        }
        next++;
      }
    }
    return { data, has_more: next < ids.length };
  }

  async function list(msg: Msg): Promise<ListJobsReply> {
    return { v: PROTOCOL_VERSION, ...(await page(body(listJobsRequestSchema, msg, maxBytes), jobSummary)) };
  }

  /** Whole views, so a client showing graphs asks once per page; the page stops short of NATS's size limit. */
  async function views(msg: Msg): Promise<ListJobViewsReply> {
    const budget = options.maxViewPageBytes ?? Math.floor(0.9 * (nc.info?.max_payload ?? MAX_MESSAGE_BYTES));
    let bytes = 0;
    const fits = (view: JobView): boolean => {
      bytes += Buffer.byteLength(JSON.stringify(view)) + 1;
      return bytes <= budget;
    };
    return { v: PROTOCOL_VERSION, ...(await page(body(listJobsRequestSchema, msg, maxBytes), (view) => view, fits)) };
  }

  return { create, config, delete: remove, get, list, views };
}
