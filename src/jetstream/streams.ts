import {
  DiscardPolicy,
  JetStreamApiError,
  RetentionPolicy,
  StorageType,
  type JetStreamManager,
  type StreamConfig,
} from '@nats-io/jetstream';
import { nanos } from '@nats-io/transport-node';
import { StoreError } from './errors.js';

/** The limits of a log stream: one subject per log (`<prefix>.<id>`), appended to, read in ranges. */
export interface LogStreamOptions {
  /** Replicas when the stream is created: 1 on a single server, 3 on a 3-node cluster. */
  replicas?: number;
  /** How long a retried append is recognised as a repeat. Default 2 min. */
  duplicateWindowMs?: number;
  /** Drop events older than this (0 = keep). Default 0. */
  logMaxAgeMs?: number;
  /** Keep at most this many events per subject (-1 = all). Default -1. */
  logMaxEventsPerJob?: number;
}

const STREAM_NAME_IN_USE = 10058;

export type LogStreamConfig = Partial<StreamConfig> & Pick<StreamConfig, 'name' | 'subjects' | 'duplicate_window'>;

export function logStreamConfig(name: string, prefix: string, opts: LogStreamOptions): LogStreamConfig {
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

