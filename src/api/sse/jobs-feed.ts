/**
 * Every job's state transitions, for the list-level stream (`GET /jobs/events`): the job event log read
 * across all jobs' subjects (the log the per-job stream follows), plus the controller's `deleted` state
 * events, which the log has no row for (a deleted job's rows are purged).
 *
 * One log consumer per client, not a shared hub as for a job's own stream: the list stream is for the
 * console's tabs, a handful, and a consumer of its own lets a client resume from any sequence and be
 * read at its own pace (the next row is read only once the client has taken the last), so it never has
 * to be cut off for falling behind.
 */
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { SUBJECTS, decode, jobStateEventSchema } from '../../protocol/index.js';
import type { EventLog, JobLogRow } from '../../store/index.js';

export type JobTransitionRow = Extract<JobLogRow, { kind: 'transition' }>;

export interface JobsFeedSink {
  /** A transition, in log order; the next row is read once the returned promise settles. */
  transition(row: JobTransitionRow): Promise<void>;
  /** A job was deleted (live only: deletions are not in the log, so a resuming client does not get missed ones). */
  deleted(jobId: string): void;
  /** The feed stopped following the log; the client should reconnect. */
  failed(reason: string): void;
}

export interface JobsFeed {
  /** The first log sequence the feed reads: a client that resumes after `from - 1` misses nothing. */
  readonly from: number;
  stop(): void;
}

const EVERY_JOB_STATE = SUBJECTS.jobState.pattern.replace('<job>', '*');

/** Follows every job from `fromSeq` (inclusive), or from now. Resolves once it follows both sources. */
export async function followJobs(nc: NatsConnection, log: EventLog, logger: Logger, sink: JobsFeedSink, fromSeq?: number): Promise<JobsFeed> {
  let stopped = false;
  const deletions: Subscription = nc.subscribe(EVERY_JOB_STATE, {
    callback: (err, msg) => {
      if (err !== null || stopped) return;
      const decoded = decode(jobStateEventSchema, msg.data);
      if (decoded.ok && decoded.value.deleted === true) sink.deleted(decoded.value.job_id);
    },
  });
  let tail;
  try {
    // The subscription is on the server before the tail starts: a deletion right after is not missed.
    await nc.flush();
    tail = await log.tailAll(fromSeq);
  } catch (err) {
    deletions.unsubscribe();
    throw err;
  }
  const stop = () => {
    if (stopped) return;
    stopped = true;
    deletions.unsubscribe();
    tail.stop();
  };
  void (async () => {
    let reason = 'the event log follower ended';
    try {
      for await (const row of tail) {
        if (stopped) return;
        if (row.kind === 'transition') await sink.transition(row);
      }
    } catch (err) {
      reason = `the event log follower failed: ${err instanceof Error ? err.message : String(err)}`;
    }
    if (stopped) return;
    logger.warn({ reason }, 'the jobs feed stopped following the log');
    stop();
    sink.failed(reason);
  })();
  return { from: tail.from, stop };
}
