/**
 * Which controller owns which job (docs/high-availability.md): a job belongs to the shard `shardOf` gives
 * it, and a controller owns the jobs of the shards whose leases it holds (ShardLeases). Everything that
 * acts for a job asks here first, and carries the owner token (`tokenOf`) into its writes and commands.
 */
import type { JobOwner } from '../store/index.js';
import type { ControllerLeaseView, ShardLeases } from './shard-leases.js';
import { shardOf } from './shards.js';

export class JobOwnership {
  constructor(
    readonly controllerId: string,
    private readonly leases: Pick<ShardLeases, 'shards' | 'ttlMs' | 'owns' | 'owned' | 'epochOf' | 'ownerOf' | 'fleet'>,
  ) {}

  get shards(): number {
    return this.leases.shards;
  }

  get ttlMs(): number {
    return this.leases.ttlMs;
  }

  shardOf(jobId: string): number {
    return shardOf(jobId, this.leases.shards);
  }

  /** Whether this controller may act for the job now. */
  owns(jobId: string): boolean {
    return this.leases.owns(this.shardOf(jobId));
  }

  /** Whether this controller owns any shard now (where a new job may be created). */
  ownsAny(): boolean {
    return this.leases.owned().length > 0;
  }

  /** This controller and its lease epoch on the job's shard while it owns the job, else null. */
  tokenOf(jobId: string): JobOwner | null {
    const epoch = this.leases.epochOf(this.shardOf(jobId));
    return epoch === undefined ? null : { id: this.controllerId, epoch };
  }

  /** The controller that owns the job now (this one included); null while its shard has no live owner. */
  ownerOf(jobId: string): string | null {
    return this.leases.ownerOf(this.shardOf(jobId));
  }

  /** Another live controller that owns shards, to take a request this one cannot (it owns none yet). */
  anotherOwner(): string | null {
    const other = this.leases.fleet().find((c: ControllerLeaseView) => c.controllerId !== this.controllerId && c.live && c.shards > 0);
    return other?.controllerId ?? null;
  }

  fleet(): ControllerLeaseView[] {
    return this.leases.fleet();
  }
}
