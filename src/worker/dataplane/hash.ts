import { fnv1a } from '../../shared/fnv1a.js';

export { fnv1a };

/** The downstream subtask of a shuffle edge for `key` (records without a key go to subtask 0). */
export function shufflePartition(key: string | undefined, parallelism: number): number {
  if (key === undefined) return 0;
  return fnv1a(JSON.stringify(key)) % parallelism;
}
