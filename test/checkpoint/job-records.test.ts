/**
 * A job's checkpoint records on a real nats-server: the slots are read directly; records an older version
 * keyed by epoch are found by a listing, which a controller shares across its jobs (one listing of the
 * bucket, not one consumer per job: a takeover of thousands of jobs made thousands).
 */
import type { KV } from '@nats-io/kv';
import { describe, expect } from 'vitest';
import { JobCheckpointRecords, legacyKeysOfBucket, openCheckpointKv } from '../../src/checkpoint/index.js';
import { CHECKPOINT_SLOTS } from '../../src/protocol/index.js';
import { recordFixture } from '../support/checkpoints.js';
import { testWithNatsServer } from '../support/nats-fixtures.js';

const it = testWithNatsServer();

describe('job checkpoint records', () => {
  it('records keyed by epoch are listed once for every job when the listing is shared, and found beside the slots', async ({ connect }) => {
    const open = openCheckpointKv(await connect('records'), `weir_checkpoints_records_${process.pid}`, 2_000);
    const kv = await open();
    // job-a: epochs 1 and 2 in their slots, and epoch 40 under a key of its own (as versions before the slots wrote it).
    const legacyEpoch = 40;
    expect(legacyEpoch).toBeGreaterThanOrEqual(CHECKPOINT_SLOTS);
    await kv.put('job-a.1', JSON.stringify(recordFixture('job-a', 1)));
    await kv.put('job-a.2', JSON.stringify(recordFixture('job-a', 2)));
    await kv.put(`job-a.${legacyEpoch}`, JSON.stringify(recordFixture('job-a', legacyEpoch)));
    await kv.put('job-b.3', JSON.stringify(recordFixture('job-b', 3)));

    // Counts the listings made through the bucket handle.
    let listings = 0;
    const counted = (): Promise<KV> => Promise.resolve(Object.assign(Object.create(kv) as KV, { keys: (...args: Parameters<KV['keys']>) => (listings++, kv.keys(...args)) }));
    const shared = legacyKeysOfBucket(counted);
    const epochsOf = async (jobId: string) => (await new JobCheckpointRecords({ jobId, kv: counted, legacyKeys: shared }).list()).map((r) => r.record.epoch);
    expect(await epochsOf('job-a')).toEqual([legacyEpoch, 2, 1]);
    expect(await epochsOf('job-b')).toEqual([3]);
    expect(await epochsOf('job-c')).toEqual([]);
    expect(listings).toBe(1);

    // Without a shared listing, each instance lists the job's keys itself: the same records.
    listings = 0;
    expect((await new JobCheckpointRecords({ jobId: 'job-a', kv: counted }).list()).map((r) => r.record.epoch)).toEqual([legacyEpoch, 2, 1]);
    expect((await new JobCheckpointRecords({ jobId: 'job-b', kv: counted }).list()).map((r) => r.record.epoch)).toEqual([3]);
    expect(listings).toBe(2);
  });

  it('a listing that stalls fails at its deadline, and the next call lists again', async () => {
    let listings = 0;
    /** The first listing never ends (its server went away) until stopped; the second lists nothing. */
    const kv = (): Promise<KV> =>
      Promise.resolve({
        keys: () => {
          const first = ++listings === 1;
          let stop!: () => void;
          const stopped = new Promise<void>((resolve) => (stop = resolve));
          return Promise.resolve(
            Object.assign(
              (async function* (): AsyncGenerator<string> {
                if (first) await stopped;
                yield* [];
              })(),
              { stop },
            ),
          );
        },
      } as unknown as KV);
    const shared = legacyKeysOfBucket(kv, 50);
    await expect(shared('job-a')).rejects.toThrow(/longer than 50 ms/);
    expect(await shared('job-a')).toEqual([]);
    expect(listings).toBe(2);
  });
});
