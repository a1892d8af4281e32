import {
  DiscardPolicy,
  JetStreamApiError,
  jetstream,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
  type JetStreamManager,
  type StreamConfig,
} from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { nanos, type NatsConnection } from '@nats-io/transport-node';
import { StoreError } from './errors.js';
import { StreamEventLog, type EventLog } from './event-log.js';
import { KvJobStore, type JobStore } from './job-store.js';
import { Deadline, retrying, type Timeouts } from './retry.js';

export const JOBS_BUCKET = 'weir_jobs';
export const LOG_STREAM = 'WEIR_JOB_LOG';
export const LOG_SUBJECT_PREFIX = 'weir.log';

export interface StoreOptions {
  /** KV bucket of the jobs. Default `weir_jobs`. */
  bucket?: string;
  /** Stream of the event log. Default `WEIR_JOB_LOG`, on subjects `<logSubjectPrefix>.<job id>`. */
  logStream?: string;
  /** Default `weir.log`. */
  logSubjectPrefix?: string;
  /**
   * Replicas of the bucket and the stream when they are created: 1 on a single server, 3 on a 3-node
   * cluster so an acknowledged write survives the loss of one node (see docs/operations.md).
   */
  replicas?: number;
  /** Revisions kept per KV key. Default 5. */
  history?: number;
  /** How long a retried write or append is recognised as a repeat. Default 2 min. */
  duplicateWindowMs?: number;
  /** Event log retention: drop events older than this (0 = keep). Default 0. */
  logMaxAgeMs?: number;
  /** Event log retention: keep at most this many events per job (-1 = all). Default -1. */
  logMaxEventsPerJob?: number;
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

const STREAM_NAME_IN_USE = 10058;

export type LogStreamConfig = Partial<StreamConfig> & Pick<StreamConfig, 'name' | 'subjects' | 'duplicate_window'>;

export function logStreamConfig(name: string, prefix: string, opts: StoreOptions): LogStreamConfig {
  return {
    name,
    subjects: [`${prefix}.*`],
    storage: StorageType.File,
    retention: RetentionPolicy.Limits,
    discard: DiscardPolicy.Old,
    allow_direct: true,
    duplicate_window: nanos(opts.duplicateWindowMs ?? 120_000),
    num_replicas: opts.replicas ?? 1,
    max_age: nanos(opts.logMaxAgeMs ?? 0),
    max_msgs_per_subject: opts.logMaxEventsPerJob ?? -1,
  };
}

/** Creates the stream, or binds it if it exists, turning on what this store relies on if it is off. */
export async function ensureLogStream(jsm: JetStreamManager, cfg: LogStreamConfig): Promise<void> {
  try {
    await jsm.streams.add(cfg);
    return;
  } catch (err) {
    if (!(err instanceof JetStreamApiError && err.code === STREAM_NAME_IN_USE)) throw err;
  }
  // It exists with another configuration (other limits or replicas, set by an operator): keep those.
  const { config } = await jsm.streams.info(cfg.name);
  const subject = cfg.subjects[0] ?? '';
  if (!config.subjects.includes(subject)) {
    throw new StoreError(`stream ${cfg.name} exists without subject ${subject} (has ${config.subjects.join(', ')})`);
  }
  if (!config.allow_direct || config.duplicate_window < cfg.duplicate_window) {
    await jsm.streams.update(cfg.name, { ...config, allow_direct: true, duplicate_window: Math.max(config.duplicate_window, cfg.duplicate_window) });
  }
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
