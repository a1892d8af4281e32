/**
 * A job's checkpoint records in the checkpoint KV bucket: one slot per epoch modulo `CHECKPOINT_SLOTS`
 * (`checkpointKey`), each holding the record of the newest epoch written there. The controller lists and
 * reads them (restore, history, retention) and writes them; a worker reads the one epoch it restores.
 * Both read through here, so a record is found, decoded and checked the same way on either side.
 */
import { jetstream } from '@nats-io/jetstream';
import { Kvm, type KV, type KvEntry } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { readCheckpointRecord, RESTORABLE_STATUSES, type CheckpointRecordFields } from '../protocol/checkpoint-record.js';
import { CHECKPOINTS_KV_BUCKET, CHECKPOINT_SLOTS, checkpointKey } from '../protocol/subjects.js';
import { openOnce } from '../shared/memo.js';
import { microsFromMs } from '../shared/micros.js';

/**
 * The checkpoint bucket (created when missing, with `replicas`, default 1), opened on first use; a failed
 * open is tried again at the next use.
 */
export function openCheckpointKv(nc: NatsConnection, bucket: string, requestTimeoutMs: number, replicas = 1): () => Promise<KV> {
  return openOnce(() => new Kvm(jetstream(nc, { timeout: requestTimeoutMs })).create(bucket, { history: 1, replicas }));
}

/** A record as the bucket holds it. */
export interface StoredRecord {
  record: CheckpointRecordFields;
  /** µs: the server's time of the write (the KV entry's). */
  writtenAt: number;
}

/** A stored entry that is not a readable record: not JSON (`err`), or not a record this weir reads (`reason`). */
export type UnreadableRecord = { err: unknown; key: string } | { key: string; reason: string };

export interface JobCheckpointRecordsOptions {
  jobId: string;
  /** The bucket: `openCheckpointKv`'s, shared by a controller's jobs, or one opened for a single read. */
  kv: () => Promise<KV>;
  /** The bucket's name, for messages. Default `CHECKPOINTS_KV_BUCKET`. */
  bucket?: string;
  /** Told of each unreadable entry that a list or a lookup skips. */
  onUnreadable?: (unreadable: UnreadableRecord) => void;
  /**
   * The job's keys written by epoch, before the slots. Default: listed once by this instance (a consumer on
   * the server). An orchestrator that opens many jobs at once shares one listing: `legacyKeysOfBucket`.
   */
  legacyKeys?: (jobId: string) => Promise<string[]>;
}

/** The longest one listing of a bucket's keys may take (10,000 jobs' slots list in about a second). */
const LEGACY_LISTING_DEADLINE_MS = 30_000;

/**
 * Every job's keys written by epoch (before the slots), from one listing of the whole bucket at the first
 * call. Nothing writes such keys any more, so an orchestrator lists them once, not once per job: a
 * controller taking 5,000 jobs over would otherwise make 5,000 consumers on the server.
 */
export function legacyKeysOfBucket(kv: () => Promise<KV>, deadlineMs = LEGACY_LISTING_DEADLINE_MS): (jobId: string) => Promise<string[]> {
  const byJob = openOnce(async () => {
    const keys = new Map<string, string[]>();
    const lister = await (await kv()).keys();
    // A listing that stalls (its server went away) is given up, so that it fails (and the next call lists
    // again) rather than leave every job's records waiting on it.
    let stalled = false;
    const deadline = setTimeout(() => {
      stalled = true;
      lister.stop();
    }, deadlineMs);
    try {
      for await (const key of lister) {
        const dot = key.lastIndexOf('.');
        const epoch = Number(key.slice(dot + 1));
        // A slot's key (`<job>.<slot>`, slot < CHECKPOINT_SLOTS) is read directly.
        if (dot <= 0 || !Number.isInteger(epoch) || epoch < CHECKPOINT_SLOTS) continue;
        const jobId = key.slice(0, dot);
        keys.set(jobId, [...(keys.get(jobId) ?? []), key]);
      }
    } finally {
      clearTimeout(deadline);
    }
    if (stalled) throw new Error(`listing the checkpoint bucket's keys took longer than ${deadlineMs} ms`);
    return keys;
  });
  return async (jobId) => (await byJob()).get(jobId) ?? [];
}

type EntryRead = { kind: 'absent' } | { kind: 'unreadable'; message: string; unreadable: UnreadableRecord } | { kind: 'record'; record: CheckpointRecordFields; entry: KvEntry };

/** A stored entry decoded as a record (any job's, any epoch's): absent when the key holds none. */
function readEntry(key: string, entry: KvEntry | null): EntryRead {
  if (entry === null || entry.operation !== 'PUT') return { kind: 'absent' };
  let json: unknown;
  try {
    json = entry.json();
  } catch (err) {
    return { kind: 'unreadable', message: `checkpoint record ${key} is not JSON`, unreadable: { err, key } };
  }
  const read = readCheckpointRecord(json, key);
  if (!read.ok) return { kind: 'unreadable', message: read.message, unreadable: { key, reason: read.message } };
  return { kind: 'record', record: read.record, entry };
}

export class JobCheckpointRecords {
  private readonly jobId: string;
  private readonly kv: () => Promise<KV>;
  private readonly bucket: string;
  private readonly onUnreadable: ((unreadable: UnreadableRecord) => void) | undefined;
  private readonly slotKeys: string[];
  /**
   * Keys an older version wrote by epoch rather than by slot. Listing keys costs a consumer on the server,
   * and nothing writes such keys any more, so they are listed once per instance; the slots are read directly.
   */
  private readonly legacyKeys: () => Promise<string[]>;

  constructor(options: JobCheckpointRecordsOptions) {
    this.jobId = options.jobId;
    this.kv = options.kv;
    this.bucket = options.bucket ?? CHECKPOINTS_KV_BUCKET;
    this.onUnreadable = options.onUnreadable;
    this.slotKeys = Array.from({ length: CHECKPOINT_SLOTS }, (_, slot) => `${this.jobId}.${slot}`);
    const shared = options.legacyKeys;
    this.legacyKeys = openOnce(async () => {
      if (shared !== undefined) return shared(this.jobId);
      const keys: string[] = [];
      for await (const key of await (await this.kv()).keys(`${this.jobId}.*`)) if (!this.slotKeys.includes(key)) keys.push(key);
      return keys;
    });
  }

  /**
   * Every record the bucket holds for this job, newest epoch first: the slots, plus keys named by epoch
   * that versions before the slots wrote.
   */
  async list(): Promise<StoredRecord[]> {
    const kv = await this.kv();
    const keys = [...this.slotKeys, ...(await this.legacyKeys())];
    const entries = await Promise.all(keys.map((key) => kv.get(key)));
    const records = entries.flatMap((entry, i) => this.recordIn(keys[i]!, entry) ?? []);
    return records.sort((a, b) => b.record.epoch - a.record.epoch);
  }

  /** An epoch's record as its slot holds it; null when absent, replaced by a newer epoch, or unreadable. */
  async read(epoch: number): Promise<StoredRecord | null> {
    const kv = await this.kv();
    const key = checkpointKey(this.jobId, epoch);
    const stored = this.recordIn(key, await kv.get(key));
    return stored?.record.epoch === epoch ? stored : null;
  }

  /** Writes the record into its epoch's slot, over whatever the slot held. */
  async write(record: { readonly epoch: number }): Promise<void> {
    await (await this.kv()).put(checkpointKey(this.jobId, record.epoch), JSON.stringify(record));
  }

  /** Writes a record again only while its slot still holds that epoch: never over a newer epoch's record. */
  async rewrite(record: { readonly epoch: number }): Promise<void> {
    const kv = await this.kv();
    const key = checkpointKey(this.jobId, record.epoch);
    const entry = await kv.get(key);
    if (entry === null || this.recordIn(key, entry)?.record.epoch !== record.epoch) return;
    await kv.update(key, JSON.stringify(record), entry.revision);
  }

  /** Removes every record of the job (its slots and any older by-epoch keys), as a deleted job's. */
  async purge(): Promise<void> {
    const kv = await this.kv();
    const keys: string[] = [];
    for await (const key of await kv.keys(`${this.jobId}.*`)) keys.push(key);
    for (const key of keys) await kv.purge(key);
  }

  /**
   * The record a restore of `epoch` starts from. Rejects, saying why, when the bucket cannot be read or
   * its slot holds no readable, restorable record of this job and epoch: a restore never guesses.
   */
  async readForRestore(epoch: number): Promise<CheckpointRecordFields> {
    const key = checkpointKey(this.jobId, epoch);
    let entry;
    try {
      entry = await (await this.kv()).get(key);
    } catch (err) {
      throw new Error(`cannot read checkpoint record ${key} of bucket ${this.bucket}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
    const read = readEntry(key, entry);
    if (read.kind === 'absent') throw new Error(`no checkpoint record ${key} in bucket ${this.bucket}`);
    if (read.kind === 'unreadable') throw new Error(read.message);
    const record = read.record;
    if (record.job_id !== this.jobId || record.epoch !== epoch) throw new Error(`checkpoint record ${key} names job ${record.job_id} epoch ${record.epoch}`);
    if (!RESTORABLE_STATUSES.includes(record.status)) throw new Error(`checkpoint record ${key} is ${record.status}: it cannot be restored`);
    return record;
  }

  /** A stored entry as a record of this job, or null (told to `onUnreadable` when unreadable) when it is not one. */
  private recordIn(key: string, entry: KvEntry | null): StoredRecord | null {
    const read = readEntry(key, entry);
    if (read.kind === 'unreadable') this.onUnreadable?.(read.unreadable);
    if (read.kind !== 'record' || read.record.job_id !== this.jobId) return null;
    return { record: read.record, writtenAt: microsFromMs(read.entry.created.getTime()) };
  }
}
