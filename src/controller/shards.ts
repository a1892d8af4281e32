/** Which shard a job belongs to: the unit of ownership among controllers (docs/high-availability.md). */
import { fnv1a } from '../shared/fnv1a.js';

/** The job's shard of `shards`: the same in every process and every run. */
export function shardOf(jobId: string, shards: number): number {
  return fnv1a(jobId) % shards;
}
