import { jetstream, jetstreamManager, StorageType } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { Deadline, type Timeouts } from '../jetstream/deadline.js';
import { retrying } from '../jetstream/retry.js';
import { ensureLogStream, logStreamConfig, type LogStreamOptions } from '../jetstream/streams.js';
import { StreamEventLog, type EventLog } from './event-log.js';
import { KvJobStore, type JobStore } from './job-store.js';

export const JOBS_BUCKET = 'weir_jobs';
export const LOG_STREAM = 'WEIR_JOB_LOG';
export const LOG_SUBJECT_PREFIX = 'weir.log';

export interface StoreOptions extends LogStreamOptions {
  /** KV bucket of the jobs. Default `weir_jobs`. */
  bucket?: string;
  /** Stream of the event log. Default `WEIR_JOB_LOG`, on subjects `<logSubjectPrefix>.<job id>`. */
  logStream?: string;
  /** Default `weir.log`. */
  logSubjectPrefix?: string;
  /** Revisions kept per KV key. Default 5. */
  history?: number;
  /** Deadline of one NATS request. Default 2 s. */
  requestTimeoutMs?: number;
  /** Deadline of one store operation, retries included; then StoreUnavailableError. Default 10 s. */
  operationTimeoutMs?: number;
  /** Compare-and-set attempts of one updateConfig/updateStatus. Default 32. */
  casAttempts?: number;
}

export interface Store {
  jobs: JobStore;
  log: EventLog;
}

/**
 * Creates (or binds) the jobs bucket and the event log stream; idempotent, so every controller and API
 * process may call it at startup. Fails with StoreUnavailableError if NATS does not answer in time.
 */
export async function openStore(nc: NatsConnection, opts: StoreOptions = {}): Promise<Store> {
  const timeouts: Timeouts = {
    requestTimeoutMs: opts.requestTimeoutMs ?? 2_000,
    operationTimeoutMs: opts.operationTimeoutMs ?? 10_000,
  };
  const bucket = opts.bucket ?? JOBS_BUCKET;
  const stream = opts.logStream ?? LOG_STREAM;
  const subjectPrefix = opts.logSubjectPrefix ?? LOG_SUBJECT_PREFIX;
  const js = jetstream(nc, { timeout: timeouts.requestTimeoutMs });
  const dl = new Deadline(timeouts.operationTimeoutMs);
  const attemptMs = Math.max(4 * timeouts.requestTimeoutMs, 2_000);

  const { jsm, kv } = await retrying(
    nc,
    'openStore',
    dl,
    timeouts,
    async () => {
      const jsm = await jetstreamManager(nc, { timeout: timeouts.requestTimeoutMs });
      const kv = await new Kvm(js).create(bucket, {
        history: opts.history ?? 5,
        storage: StorageType.File,
        replicas: opts.replicas ?? 1,
      });
      await ensureLogStream(jsm, logStreamConfig(stream, subjectPrefix, opts));
      return { jsm, kv };
    },
    attemptMs,
  );

  return {
    jobs: new KvJobStore(nc, js, kv, { ...timeouts, bucket, casAttempts: opts.casAttempts ?? 32 }),
    log: new StreamEventLog(nc, js, jsm, { ...timeouts, stream, subjectPrefix }),
  };
}
