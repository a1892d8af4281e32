/**
 * The checkpoint requests of `weir.api.jobs.<job>.*`: a job's checkpoint history, one checkpoint's
 * details, and a checkpoint triggered now (idempotent by trigger id).
 */
import type { Msg } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import {
  PROTOCOL_VERSION,
  RequestRejected,
  checkpointDetailsRequestSchema,
  jobCheckpointsRequestSchema,
  triggerCheckpointRequestSchema,
  type CheckpointDetailsReply,
  type JobCheckpointsReply,
  type TriggerCheckpointReply,
} from '../protocol/index.js';
import type { KeyedQueue } from '../shared/keyed-queue.js';
import { ManualCheckpointRefused } from './checkpoint-coordinator.js';
import type { JobTable } from './job-table.js';
import { body, jobOf } from './request-parsing.js';

/** How long a trigger request waits for a checkpoint in flight before it answers `conflict`. */
export const MANUAL_CHECKPOINT_WAIT_MS = 3_000;
/** The reference keeps 100 checkpoint rows per job. */
const CHECKPOINT_HISTORY_LIMIT = 100;

export interface CheckpointRequestsOptions {
  table: JobTable;
  /** Each job's requests, config changes and checkpoint triggers, one at a time. */
  perJob: KeyedQueue;
  log: Logger;
  /** Largest accepted request. */
  maxMessageBytes: number;
}

export interface CheckpointRequests {
  checkpoints: (msg: Msg) => Promise<JobCheckpointsReply>;
  checkpoint: (msg: Msg) => Promise<CheckpointDetailsReply>;
  trigger_checkpoint: (msg: Msg) => Promise<TriggerCheckpointReply>;
}

/** Checkpoint reads go to JetStream directly: an outage is `unavailable`, not a bug. */
async function readCheckpoints<T>(jobId: string, read: () => Promise<T>): Promise<T> {
  try {
    return await read();
  } catch (err) {
    if (err instanceof RequestRejected) throw err;
    throw new RequestRejected('unavailable', `cannot read the checkpoints of job ${jobId}: ${err instanceof Error ? err.message : String(err)}`);
  }
}

export function checkpointRequests(options: CheckpointRequestsOptions): CheckpointRequests {
  const { table, perJob, log, maxMessageBytes: maxBytes } = options;

  async function checkpoints(msg: Msg): Promise<JobCheckpointsReply> {
    const jobId = jobOf(msg);
    const request = body(jobCheckpointsRequestSchema, msg, maxBytes);
    const runtime = table.runtimeOf(jobId);
    const all = await readCheckpoints(jobId, () => runtime.checkpointHistory(CHECKPOINT_HISTORY_LIMIT));
    return { v: PROTOCOL_VERSION, job_id: jobId, data: request.include_failed ? all : all.filter((c) => c.status !== 'failed') };
  }

  async function checkpoint(msg: Msg): Promise<CheckpointDetailsReply> {
    const jobId = jobOf(msg);
    const { epoch } = body(checkpointDetailsRequestSchema, msg, maxBytes);
    const runtime = table.runtimeOf(jobId);
    const details = await readCheckpoints(jobId, () => runtime.checkpointDetails(epoch));
    if (details === null) throw new RequestRejected('unknown_checkpoint', `job ${jobId} has no checkpoint ${epoch}`);
    return { v: PROTOCOL_VERSION, job_id: jobId, checkpoint: details.checkpoint, data: details.operators };
  }

  /**
   * A checkpoint now (`CheckpointCoordinator.manual`), answered once it has started. Per job one at a
   * time, so two requests with the same trigger id start one checkpoint; a repeated id is answered with
   * the epoch it started, `started: false`.
   */
  async function triggerCheckpoint(msg: Msg): Promise<TriggerCheckpointReply> {
    const jobId = jobOf(msg);
    const request = body(triggerCheckpointRequestSchema, msg, maxBytes);
    const triggerId = request.trigger_id;
    const reply = (epoch: number, started: boolean): TriggerCheckpointReply => ({
      v: PROTOCOL_VERSION,
      job_id: jobId,
      epoch,
      ...(triggerId === undefined ? {} : { trigger_id: triggerId }),
      started,
    });
    const remembered = () => (triggerId === undefined ? undefined : table.triggeredEpoch(jobId, triggerId));
    const deadline = Date.now() + MANUAL_CHECKPOINT_WAIT_MS;
    // A checkpoint in flight is waited for outside the job's request queue: a config update sent meanwhile
    // (a stop, say) is answered at once rather than behind the trigger.
    for (;;) {
      const seen = remembered();
      if (seen !== undefined) return reply(seen, false);
      await table.runtimeOf(jobId).coordinator.settleInFlight(Math.max(0, deadline - Date.now()));
      const answer = await perJob.run(jobId, (): TriggerCheckpointReply | null => {
        const runtime = table.runtimeOf(jobId);
        const seenNow = remembered();
        if (seenNow !== undefined) return reply(seenNow, false);
        const notRunning = () => {
          const state = runtime.state();
          return new RequestRejected('not_running', `job ${jobId} is ${state}${state === 'Running' ? ' but taking its final checkpoint' : ''}: checkpoints can be triggered only while it is Running`);
        };
        if (runtime.state() !== 'Running') throw notRunning();
        let started: { epoch: number };
        try {
          started = runtime.coordinator.manual();
        } catch (err) {
          if (!(err instanceof ManualCheckpointRefused)) throw err;
          if (err.reason === 'not_armed') throw notRunning();
          if (err.reason === 'in_flight') {
            // Another one started while this request waited: wait for it too, within the same deadline.
            if (Date.now() < deadline) return null;
            throw new RequestRejected('conflict', `job ${jobId}: checkpoint ${err.epoch} is still in flight after ${MANUAL_CHECKPOINT_WAIT_MS} ms; try again later`);
          }
          throw new RequestRejected('conflict', `job ${jobId}: ${err.message}`);
        }
        if (triggerId !== undefined) table.rememberTrigger(jobId, triggerId, started.epoch);
        log.info({ jobId, epoch: started.epoch, triggerId }, 'checkpoint triggered');
        return reply(started.epoch, true);
      });
      if (answer !== null) return answer;
    }
  }

  return { checkpoints, checkpoint, trigger_checkpoint: triggerCheckpoint };
}
