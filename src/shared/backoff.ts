/** The pause before retry `attempt` (0-based): doubling from `initialMs`, capped at `maxMs`. */
export function backoffMs(attempt: number, initialMs: number, maxMs: number): number {
  return Math.min(maxMs, initialMs * 2 ** attempt);
}
