/**
 * Checkpoint retention: a job keeps its newest K restorable checkpoints (10 by default, as the reference),
 * and every 4 epochs a cleanup deletes the state blobs none of them needs.
 *
 * What is never deleted:
 * - anything a retained record references (a delta chain reaches back to its full snapshot);
 * - anything of a record that is still `committing` (its restore must send the commits again);
 * - anything of an epoch a restore is reading (`pinned`);
 * - any blob newer than the newest one a node's retained records use: a checkpoint in flight, or a
 *   writer's chain after a failed epoch, is still being built on.
 * Records older than the K go `compacting` before their blobs are deleted and `compacted` after: they
 * stay readable as history and are never restored. The minimum epoch advances only once a cleanup
 * succeeded; a failed cleanup is retried at the next turn. `JobRetention` decides when a job's cleanup runs.
 */
import type { Logger } from 'pino';
import { parseStateRef, pruneUnreferenced, type CheckpointStore, type StateRef } from '../checkpoint/index.js';
import type { CheckpointCoordinator, CheckpointRecord } from './checkpoint-coordinator.js';
import type { CheckpointRecords } from './checkpoint-records.js';

export const DEFAULT_RETAINED_CHECKPOINTS = 10;
export const CLEANUP_EVERY_EPOCHS = 4;

export interface CleanupInput {
  store: CheckpointStore;
  /** Every record the job has, newest or not, any status. */
  records: readonly CheckpointRecord[];
  /** How many restorable checkpoints to keep (≥ 1). */
  keep: number;
  /** Epochs that must stay restorable whatever their age (a restore is reading them). */
  pinned: ReadonlySet<number>;
  /** Writes a record again with a new status (compacting, compacted). */
  rewrite(record: CheckpointRecord): Promise<void>;
}

export interface CleanupResult {
  /** Store sequences deleted. */
  deleted: number[];
  /** Epochs whose state is kept. */
  retained: number[];
  /** The oldest retained epoch: nothing older can be restored any more. Null when nothing is retained. */
  minEpoch: number | null;
}

const isRestorable = (r: CheckpointRecord): boolean => r.status === 'ready' || r.status === 'committing';

/** The subtasks' state refs of a record (records of before the checkpoint store have none). */
export function stateRefs(record: CheckpointRecord): StateRef[] {
  return record.subtasks.flatMap((s) => {
    const ref = s.table_metadata['state_ref'];
    return ref === undefined ? [] : [parseStateRef(ref)];
  });
}

/** Whether the record keeps any state in the checkpoint store, so that a cleanup has anything to do. */
export function hasStoredState(record: CheckpointRecord): boolean {
  return record.subtasks.some((s) => s.table_metadata['state_ref'] !== undefined);
}

export async function cleanupCheckpoints(input: CleanupInput): Promise<CleanupResult> {
  const { store, records, keep, pinned } = input;
  if (!Number.isSafeInteger(keep) || keep < 1) throw new RangeError(`keep must be a positive integer, got ${keep}`);
  const newestFirst = [...records].sort((a, b) => b.epoch - a.epoch);
  const kept = new Set(newestFirst.filter(isRestorable).slice(0, keep));
  for (const record of newestFirst) if (record.status === 'committing' || pinned.has(record.epoch)) kept.add(record);
  const retained = [...kept].sort((a, b) => a.epoch - b.epoch);
  const expired = newestFirst.filter((r) => !kept.has(r) && r.status === 'ready');
  const refs = retained.flatMap(stateRefs);
  if (refs.length === 0) return { deleted: [], retained: retained.map((r) => r.epoch), minEpoch: retained[0]?.epoch ?? null };

  for (const record of expired) await input.rewrite({ ...record, status: 'compacting' });
  const deleted = await pruneUnreferenced(store, refs);
  for (const record of expired) await input.rewrite({ ...record, status: 'compacted' });
  return { deleted, retained: retained.map((r) => r.epoch), minEpoch: retained[0]?.epoch ?? null };
}

export interface JobRetentionOptions {
  log: Logger;
  /** Where the subtasks' state blobs are. */
  stateStore: () => Promise<CheckpointStore>;
  records: Pick<CheckpointRecords, 'list' | 'rewrite'>;
  /** A cleanup waits while a checkpoint is in flight; one that succeeded advances the minimum epoch. */
  coordinator: Pick<CheckpointCoordinator, 'inFlightEpoch' | 'advanceMinEpoch'>;
  /** Restorable checkpoints kept. */
  keep: number;
  /** Epochs a restore is reading: kept whatever their age. */
  pinned: ReadonlySet<number>;
  /** A runtime that stopped starts no cleanup. */
  stopped: () => boolean;
}

/** One job's cleanups: when one runs, and what it is given. */
export class JobRetention {
  private lastEpoch = 0;
  private running = false;

  constructor(private readonly options: JobRetentionOptions) {}

  /**
   * Every `CLEANUP_EVERY_EPOCHS` epochs, with no checkpoint in flight and none running already: deletes
   * the state no retained checkpoint needs, then advances the minimum epoch. A failure is logged and
   * retried at the next turn.
   */
  maybeCleanup(record: CheckpointRecord): void {
    const { log, stateStore, records, coordinator, keep, pinned, stopped } = this.options;
    if (this.running || record.epoch - this.lastEpoch < CLEANUP_EVERY_EPOCHS || !hasStoredState(record)) return;
    if (coordinator.inFlightEpoch() !== null || stopped()) return;
    this.running = true;
    void (async () => {
      try {
        const store = await stateStore();
        const result = await cleanupCheckpoints({ store, records: await records.list(), keep, pinned, rewrite: (r) => records.rewrite(r) });
        this.lastEpoch = record.epoch;
        if (result.minEpoch !== null) coordinator.advanceMinEpoch(result.minEpoch);
        log.debug({ epoch: record.epoch, deleted: result.deleted.length, retained: result.retained, minEpoch: result.minEpoch }, 'checkpoint cleanup');
      } catch (err) {
        log.warn({ err, epoch: record.epoch }, 'checkpoint cleanup failed; retrying at the next turn');
      } finally {
        this.running = false;
      }
    })();
  }
}
