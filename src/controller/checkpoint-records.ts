/**
 * A job's checkpoint records as its runtime uses them: which one a new generation restores, the
 * checkpoint history and one checkpoint's details (the stored records beside what the coordinator saw
 * itself), and the writes of records. The bucket is read and written through `JobCheckpointRecords`,
 * as the workers read it.
 */
import type { KV } from '@nats-io/kv';
import type { Logger } from 'pino';
import { JobError } from '../../machines/job/types.js';
import { JobCheckpointRecords, type StoredRecord } from '../checkpoint/index.js';
import { RESTORABLE_STATUSES, type Checkpoint, type OperatorCheckpointGroup } from '../protocol/index.js';
import type { CheckpointCoordinator, CheckpointRecord } from './checkpoint-coordinator.js';
import { checkpointFromRecord, checkpointFromSummary, operatorGroupsFromRecord, operatorGroupsFromSummary, withWriteClosed } from './checkpoint-views.js';
import { retry } from '../shared/retry.js';

export interface CheckpointDetails {
  checkpoint: Checkpoint;
  operators: OperatorCheckpointGroup[];
}

export interface CheckpointRecordsOptions {
  jobId: string;
  log: Logger;
  /** The checkpoint bucket, opened once and shared by the controller's jobs. */
  kv: () => Promise<KV>;
  /** The newest completed epoch, and the checkpoints this incarnation saw itself. */
  coordinator: Pick<CheckpointCoordinator, 'lastCompletedEpoch' | 'history'>;
  /** A job this controller has just created: it has no checkpoint records to look for. */
  created: boolean;
  /** The job's records keyed by epoch (before the slots), from one listing shared by the controller's jobs; default: listed per job. */
  legacyKeys?: (jobId: string) => Promise<string[]>;
}

/** A stored record as the runtime reads it. */
function recordOf({ record, writtenAt }: StoredRecord): CheckpointRecord {
  // The coordinator writes every field of CheckpointRecord; v1 records are migrated to the current format.
  return withWriteClosed(record as unknown as CheckpointRecord, writtenAt);
}

export class CheckpointRecords {
  private readonly stored: JobCheckpointRecords;
  /** After a controller restart the status's epoch can lag behind the records: list them once. */
  private knowsNewestRecord: boolean;
  /** The newest restorable epoch the listing found (it can be newer than the status knows). */
  private listedEpoch = 0;

  constructor(private readonly options: CheckpointRecordsOptions) {
    const { jobId, log, kv, legacyKeys } = options;
    this.stored = new JobCheckpointRecords({
      jobId,
      kv,
      onUnreadable: (unreadable) => log.warn(unreadable, 'unreadable checkpoint record'),
      ...(legacyKeys === undefined ? {} : { legacyKeys }),
    });
    this.knowsNewestRecord = options.created;
  }

  /** This incarnation completed a checkpoint: its record is the newest, and the newest epoch is known. */
  completed(): void {
    this.knowsNewestRecord = true;
  }

  /**
   * The newest readable record, ready or committing, at or above `floor` (a restart that ignored state).
   * It can be newer than the last completed epoch the status knows: a controller that stopped between
   * writing a record and persisting the status leaves a complete checkpoint all the same. Epochs after
   * it never got a record, so they count as failed. Null when there is nothing to restore from: the
   * tasks start empty.
   */
  async restorableRecord(floor: number | null): Promise<CheckpointRecord | null> {
    const { coordinator, log } = this.options;
    const known = Math.max(coordinator.lastCompletedEpoch, this.listedEpoch);
    let best: CheckpointRecord | null = null;
    let damaged = 0;
    try {
      // Opened before anything is decided: a bucket that cannot be reached fails the attempt, which is retried.
      await this.options.kv();
      // Once this incarnation has listed the records or completed a checkpoint itself, the newest
      // epoch is known exactly: one read instead of listing a bucket that holds every job's records.
      if (this.knowsNewestRecord && known === 0 && floor === null) return null;
      if (this.knowsNewestRecord && known > 0 && known >= (floor ?? 0)) {
        const record = await this.read(known);
        if (record !== null && RESTORABLE_STATUSES.includes(record.status)) return record;
      }
      const records = await this.list();
      best = records.find((r) => r.epoch >= (floor ?? 0) && RESTORABLE_STATUSES.includes(r.status)) ?? null;
      damaged = records.filter((r) => r.status === 'failed').length;
    } catch (err) {
      // Never guess: an older epoch would replay, and none at all would lose the state. Scheduling retries.
      log.warn({ err, known }, 'cannot list checkpoint records');
      throw new JobError({ kind: 'retryable', domain: 'external', message: `cannot list the checkpoint records: ${err instanceof Error ? err.message : String(err)}` });
    }
    if (floor === null && best === null && known > 0 && damaged === 0) {
      // Epoch `known` completed, so its record was acknowledged: a listing without it is not to be trusted.
      throw new JobError({ kind: 'retryable', domain: 'external', message: `no readable checkpoint record, although epoch ${known} completed` });
    }
    this.knowsNewestRecord = true;
    // A scheduling attempt that fails after this (no slots yet) must find the same record the next time.
    if (best !== null) this.listedEpoch = Math.max(this.listedEpoch, best.epoch);
    if (floor === null && best !== null && best.epoch < known) log.warn({ known, restoring: best.epoch }, 'no checkpoint record for the last completed epoch');
    if (floor === null && best === null && damaged > 0) log.error({ known, damaged }, 'every checkpoint record is damaged: the new run starts empty');
    if (floor !== null && best === null) log.info({ floor }, 'restart without state: the new run starts empty');
    return best;
  }

  /** Every record the bucket holds for this job, newest epoch first. */
  async list(): Promise<CheckpointRecord[]> {
    return (await this.stored.list()).map(recordOf);
  }

  /** An epoch's record as its slot holds it; null when absent, replaced by a newer epoch, or unreadable. */
  async read(epoch: number): Promise<CheckpointRecord | null> {
    const stored = await this.stored.read(epoch);
    return stored === null ? null : recordOf(stored);
  }

  /** The newest `limit` checkpoints: recorded epochs, plus what this incarnation saw fail or run. */
  async history(limit: number): Promise<Checkpoint[]> {
    const byEpoch = new Map<number, Checkpoint>();
    for (const record of (await this.list()).slice(0, limit)) byEpoch.set(record.epoch, checkpointFromRecord(record));
    // What this incarnation saw itself is more complete: failed and in-flight epochs have no record.
    for (const summary of this.options.coordinator.history()) byEpoch.set(summary.epoch, checkpointFromSummary(summary));
    return [...byEpoch.values()].sort((a, b) => b.epoch - a.epoch).slice(0, limit);
  }

  /** One checkpoint with its operators and subtasks; null when the job has no such epoch. */
  async details(epoch: number): Promise<CheckpointDetails | null> {
    const summary = this.options.coordinator.history().find((s) => s.epoch === epoch);
    if (summary !== undefined) return { checkpoint: checkpointFromSummary(summary), operators: operatorGroupsFromSummary(summary) };
    const record = await this.read(epoch);
    return record === null ? null : { checkpoint: checkpointFromRecord(record), operators: operatorGroupsFromRecord(record) };
  }

  /** Makes a record durable in its epoch's slot (a few attempts). */
  async persist(record: CheckpointRecord): Promise<void> {
    await retry(() => this.stored.write(record), { attempts: 3 });
  }

  /** Writes a record again only while its slot still holds that epoch: never over a newer epoch's record. */
  rewrite(record: CheckpointRecord): Promise<void> {
    return this.stored.rewrite(record);
  }
}
