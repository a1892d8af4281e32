/**
 * A job's status as it changes, written down: each observed change becomes the stored status
 * (compare-and-set), its event-log rows (transition, error, warning) and, for a transition, a
 * `weir.jobs.<job>.state` event. The writes run one at a time, in order, on one persistence queue.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import type { JobFailure, JobState, WaitKind } from '../../machines/job/types.js';
import { waitOf, type WaitingSnapshot } from '../../machines/job/waits.js';
import { encode, PROTOCOL_VERSION, subjects, truncateErrorText, type JobStateEvent } from '../protocol/index.js';
import { isTransientStoreError, StaleOwnerError, type JobOwner, type JobStatusRecord, type Store, type Versioned } from '../store/index.js';
import type { CheckpointCoordinator } from './checkpoint-coordinator.js';
import { backoffMs } from '../shared/backoff.js';
import { microsFromMs } from '../shared/micros.js';
import { retry } from '../shared/retry.js';

const PERSIST_RETRY_INITIAL_MS = 200;
const PERSIST_RETRY_MAX_MS = 10_000;

/** A snapshot value's top-level state. */
export function topState(value: unknown): JobState {
  return (typeof value === 'string' ? value : Object.keys(value as object)[0]) as JobState;
}

/** What of the job's snapshot the status and its event-log rows record. */
export interface ObservedStatus {
  state: JobState;
  generation: number;
  restarts: number;
  failure: JobFailure | null;
  warning: { message: string; at: number } | null;
  /** The kind of wait of the active state (null: none): a new kind is written, for controllers that do not own the job. */
  waitKind: WaitKind | null;
}

export interface StatusWriterStats {
  /** Persistence steps (status/log) that failed after the store's retries. */
  persistFailures: number;
  stateEventsPublished: number;
}

export interface StatusWriterOptions {
  nc: NatsConnection;
  store: Store;
  jobId: string;
  log: Logger;
  /** The status as stored (a previous incarnation's), or the new job's: changes are observed against it. */
  initial: ObservedStatus;
  /** The state change the stored status records (`JobStatusRecord.transition`), if any. */
  transition: JobStatusRecord['transition'] | undefined;
  /** Each status write records the newest completed epoch. */
  coordinator: Pick<CheckpointCoordinator, 'lastCompletedEpoch'>;
  /** Once the runtime stopped, a write the store could not take is not tried again. */
  stopped: () => boolean;
  /** Every state transition, as it is observed (before it is persisted). Must be cheap. */
  onTransition: (from: JobState, to: JobState) => void;
  /**
   * This controller and its lease epoch on the job's shard while it owns the job, else null. Every status
   * write carries it, and none is made without it: a controller that lost the job writes nothing.
   */
  owner?: () => JobOwner | null;
  /** A write found the job owned by another controller, or this one's lease gone: the runtime steps down. */
  onFenced?: () => void;
}

/** The stored status is another owner's, at a newer epoch than `mine`: writing over it would undo a takeover. */
function fencedOut(stored: JobOwner | undefined, mine: JobOwner): boolean {
  return stored !== undefined && stored.epoch > mine.epoch;
}

export class StatusWriter {
  readonly stats: StatusWriterStats = { persistFailures: 0, stateEventsPublished: 0 };
  private last: ObservedStatus;
  private seq = 0;
  private observed = 0;
  /** The state change the stored status records (`JobStatusRecord.transition`). */
  private lastTransition: JobStatusRecord['transition'] | undefined;
  /** Aborted by close(): pending persistence retries give up. */
  private readonly persistAbort = new AbortController();
  private queue: Promise<void> = Promise.resolve();
  private lastStatus: Versioned<JobStatusRecord> | undefined;

  constructor(private readonly options: StatusWriterOptions) {
    this.last = options.initial;
    this.lastTransition = options.transition;
  }

  /** A snapshot of the job: anything the status records that changed is published and queued for the store. */
  observe(snapshot: WaitingSnapshot): void {
    const { jobId, store, log } = this.options;
    const ctx = snapshot.context;
    const waiting = waitOf(snapshot);
    const now: ObservedStatus = { state: topState(snapshot.value), generation: ctx.generation, restarts: ctx.restarts, failure: ctx.failure, warning: ctx.warning, waitKind: waiting?.kind ?? null };
    const prev = this.last;
    const stateChanged = now.state !== prev.state;
    if (
      !stateChanged &&
      now.generation === prev.generation &&
      now.restarts === prev.restarts &&
      now.failure === prev.failure &&
      now.warning === prev.warning &&
      now.waitKind === prev.waitKind
    ) {
      return;
    }
    this.last = now;
    const at = Date.now();
    if (stateChanged) this.lastTransition = { from: prev.state, at };
    const status = {
      state: now.state,
      generation: ctx.generation,
      restarts: ctx.restarts,
      appliedRestartNonce: ctx.appliedRestartNonce,
      failure: ctx.failure,
      startTime: ctx.times.start,
      finishTime: ctx.times.finish,
      epoch: this.options.coordinator.lastCompletedEpoch,
      minEpoch: ctx.checkpoint.minEpoch,
      waiting,
      updatedAt: at,
      ...(this.lastTransition === undefined ? {} : { transition: this.lastTransition }),
    };
    const stateEvent: JobStateEvent | null = stateChanged
      ? {
          v: PROTOCOL_VERSION,
          job_id: jobId,
          state: now.state,
          previous: prev.state,
          generation: now.generation,
          restarts: now.restarts,
          ...(now.failure === null
            ? {}
            : { failure: { message: truncateErrorText(now.failure.message), domain: now.failure.domain, hint: now.failure.hint, at: microsFromMs(now.failure.at) } }),
          at: microsFromMs(at),
          seq: ++this.seq,
        }
      : null;
    if (stateEvent !== null) {
      try {
        this.options.onTransition(prev.state, now.state);
      } catch (err) {
        log.warn({ err }, 'onTransition failed');
      }
      this.publishState(stateEvent);
      log.info({ from: prev.state, to: now.state, generation: now.generation }, 'job transition');
    }
    // Stable ids: a step retried after an append that landed but was not acknowledged appends nothing twice.
    // The observation's number is taken now: the step runs later, after more observations (of the same ms) bumped the counter.
    const observation = this.observed++;
    const appendId = (kind: string) => `${jobId}.${at}.${observation}.${kind}`;
    const parallelism = Object.keys(ctx.parallelism).length > 0 ? { parallelism: ctx.parallelism } : {};
    this.enqueue(async () => {
      await this.writeStatus((current) => ({ ...current, ...status, ...parallelism }));
      // Lost the job since the status landed (paused past the lease, say): the rows are the new owner's to
      // write, and it appends the stored state's row if the log lacks it (job-table.ts, completeLog). Rows
      // appended now would land after the new owner's (lifecycle fuzzer, seed 1010897344).
      if (this.leaseGone()) return;
      if (stateChanged) {
        await store.log.append(jobId, { kind: 'transition', from: prev.state, to: now.state, generation: now.generation, at }, { id: appendId('t') });
      }
      if (now.failure !== null && now.failure !== prev.failure) {
        const { message, domain, hint, at: failedAt } = now.failure;
        await store.log.append(jobId, { kind: 'error', message, domain, hint, at: failedAt }, { id: appendId('e') });
      }
      if (now.warning !== null && now.warning !== prev.warning) {
        await store.log.append(jobId, { kind: 'warning', message: now.warning.message, at: now.warning.at }, { id: appendId('w') });
      }
    });
  }

  /**
   * The job's status, written with this controller as its owner: a new owner's first act, after which a
   * stale owner's next compare-and-set finds the newer epoch and writes nothing.
   */
  claim(): void {
    this.enqueue(() => this.writeStatus((current) => current));
  }

  /**
   * One compare-and-set of the status, fenced: made only while this controller owns the job, carrying its
   * owner and epoch, and refused (StaleOwnerError) over a status a newer owner wrote.
   */
  private async writeStatus(change: (current: JobStatusRecord) => JobStatusRecord): Promise<void> {
    const { store, jobId } = this.options;
    // undefined: no fencing (a runtime without an owner); null: this controller's lease is gone.
    const owner = this.options.owner === undefined ? undefined : this.options.owner();
    if (owner === null) throw new StaleOwnerError(jobId, null, null);
    // This runtime is the status's only writer: its last write is the base of the next compare-and-set.
    const known = this.lastStatus;
    this.lastStatus = undefined;
    this.lastStatus = await store.jobs.updateStatus(
      jobId,
      (current) => {
        if (owner === undefined) return change(current);
        if (fencedOut(current.owner, owner)) throw new StaleOwnerError(jobId, owner, current.owner!);
        return { ...change(current), owner };
      },
      known,
    );
  }

  /** This runtime acts for an owner whose lease on the job is gone. */
  private leaseGone(): boolean {
    return this.options.owner !== undefined && this.options.owner() === null;
  }

  /** A warning row in the job's event log, queued behind the status writes; `id` makes its append idempotent. */
  appendWarning(message: string, at: number, id: string): void {
    const { store, jobId } = this.options;
    this.enqueue(() => store.log.append(jobId, { kind: 'warning', message, at }, { id }).then(() => {}));
  }

  /** The job was deleted: its followers hear it as a last state event, `deleted: true`. */
  announceDeleted(): void {
    const { state, generation, restarts } = this.last;
    this.publishState({ v: PROTOCOL_VERSION, job_id: this.options.jobId, state, previous: state, generation, restarts, at: microsFromMs(Date.now()), seq: ++this.seq, deleted: true });
  }

  /** Resolves when every write queued so far has run. */
  async flush(): Promise<void> {
    // Steps may enqueue more steps; wait until the queue settles.
    for (;;) {
      const current = this.queue;
      await current;
      if (current === this.queue) return;
    }
  }

  /** Pending retries give up; resolves once the step running (if any) and the queue behind it ended. */
  async close(): Promise<void> {
    this.persistAbort.abort();
    await this.queue;
  }

  /** Core publish: may be lost while disconnected; followers detect the gap by `seq`. */
  private publishState(event: JobStateEvent): void {
    try {
      this.options.nc.publish(subjects.jobState(this.options.jobId), encode(event));
      this.stats.stateEventsPublished++;
    } catch (err) {
      this.options.log.warn({ err }, 'could not publish the state event');
    }
  }

  /**
   * Persistence steps run one at a time, in order. A step the store could not take (NATS unreachable,
   * lost races) is retried with backoff until it lands or the runtime stops: a transition that is never
   * written would be resumed wrongly after a controller restart. Anything else is a bug: logged, dropped.
   */
  private enqueue(step: () => Promise<void>): void {
    const { log } = this.options;
    this.queue = this.queue.then(async () => {
      try {
        await retry(step, {
          retryable: (err, attempt) => {
            // A lapse of this controller's lease (a renewal late): tried again until it is back, or the
            // runtime stops because the lease is lost.
            if (err instanceof StaleOwnerError && err.leaseGone) return !this.options.stopped();
            if (err instanceof StaleOwnerError) {
              log.warn({ reason: err.message }, 'the job has another owner: nothing written, stepping down');
              this.options.onFenced?.();
              return false;
            }
            this.stats.persistFailures++;
            const again = isTransientStoreError(err) && !this.options.stopped();
            if (!again) log.error({ err, attempt: attempt - 1 }, 'persisting the job failed');
            return again;
          },
          pauseMs: (attempt) => backoffMs(attempt - 1, PERSIST_RETRY_INITIAL_MS, PERSIST_RETRY_MAX_MS),
          onRetry: (err, attempt, retryInMs) => log.error({ err, attempt: attempt - 1, retryInMs }, 'persisting the job failed; retrying'),
          signal: this.persistAbort.signal,
          pausesHoldProcess: false,
        });
      } catch {
        // Given up (logged above), or the runtime stopped while waiting to retry.
      }
    });
  }
}
