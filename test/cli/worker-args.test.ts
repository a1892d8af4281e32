import { describe, expect, it } from 'vitest';
import { parseWorkerArgs } from '../../src/cli/worker.js';

describe('weir worker arguments', () => {
  it('takes the compaction policy of the state tables', () => {
    expect(parseWorkerArgs(['--slots', '2', '--max-deltas', '4', '--max-delta-bytes', '1048576'], {})).toEqual({
      slots: 2,
      id: undefined,
      url: 'nats://127.0.0.1:4222',
      incrementalState: { maxDeltas: 4, maxDeltaBytes: 1_048_576 },
      replicas: 1,
      shutdownTimeoutMs: 10_000,
    });
    expect(parseWorkerArgs(['--slots', '1', '--max-deltas', '0'], { NATS_URL: 'nats://n:1' })).toMatchObject({ url: 'nats://n:1', incrementalState: { maxDeltas: 0 } });
  });

  it('refuses what is not a count, naming the flag', () => {
    expect(() => parseWorkerArgs(['--slots', '1', '--max-deltas=-1'], {})).toThrow('--max-deltas must be an integer ≥ 0, got "-1"');
    expect(() => parseWorkerArgs(['--slots', '1', '--max-delta-bytes', 'lots'], {})).toThrow('--max-delta-bytes must be an integer ≥ 0, got "lots"');
    expect(() => parseWorkerArgs(['--max-deltas', '3'], {})).toThrow('--slots N (a positive integer) is required');
  });
});
