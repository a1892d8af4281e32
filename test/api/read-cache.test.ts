import { describe, expect, it } from 'vitest';
import { cachedReads } from '../../src/api/read-cache.js';
import type { ControllerClient } from '../../src/api/controller-client.js';
import type { JobRevisionReply, JobView } from '../../src/protocol/index.js';

/** A controller client whose replies the test releases by hand, counting the requests that reach it. */
function manualController() {
  const pending: Array<{ kind: string; resolve: (value: unknown) => void; reject: (err: Error) => void }> = [];
  const calls: string[] = [];
  const call = <T>(kind: string) => {
    calls.push(kind);
    return new Promise<T>((resolve, reject) => pending.push({ kind, resolve: resolve as (value: unknown) => void, reject }));
  };
  const client = {
    get: (jobId: string) => call<JobView>(`get ${jobId}`),
    config: (jobId: string) => call<JobRevisionReply>(`config ${jobId}`),
    checkpoints: (jobId: string) => call(`checkpoints ${jobId}`),
  } as unknown as ControllerClient;
  const release = (kind: string, value: unknown) => {
    const i = pending.findIndex((p) => p.kind === kind);
    pending.splice(i, 1)[0]!.resolve(value);
  };
  const fail = (kind: string, err: Error) => {
    const i = pending.findIndex((p) => p.kind === kind);
    pending.splice(i, 1)[0]!.reject(err);
  };
  return { client, calls, release, fail };
}

const view = (state: string) => ({ state }) as unknown as JobView;

describe('cachedReads', () => {
  it('shares one controller request among concurrent reads and serves later ones for ttlMs', async () => {
    let now = 1_000;
    const c = manualController();
    const reads = cachedReads(c.client, { ttlMs: 250, now: () => now });
    const a = reads.get('j1');
    const b = reads.get('j1');
    expect(c.calls).toEqual(['get j1']);
    c.release('get j1', view('Running'));
    expect(await a).toEqual(view('Running'));
    expect(await b).toBe(await a);
    now += 200;
    await reads.get('j1');
    expect(c.calls).toEqual(['get j1']);
    now += 100;
    const fresh = reads.get('j1');
    expect(c.calls).toEqual(['get j1', 'get j1']);
    c.release('get j1', view('Stopped'));
    expect((await fresh).state).toBe('Stopped');
    expect(reads.cacheStats).toEqual({ hits: 1, misses: 2, coalesced: 1 });
  });

  it('keys reads by job and kind', () => {
    const c = manualController();
    const reads = cachedReads(c.client, { ttlMs: 250 });
    void reads.get('j1');
    void reads.get('j2');
    void reads.checkpoints('j1');
    expect(c.calls).toEqual(['get j1', 'get j2', 'checkpoints j1']);
  });

  it('never keeps an error', async () => {
    const c = manualController();
    const reads = cachedReads(c.client, { ttlMs: 10_000 });
    const a = reads.get('j1');
    c.fail('get j1', new Error('controller away'));
    await expect(a).rejects.toThrow('controller away');
    void reads.get('j1');
    expect(c.calls).toEqual(['get j1', 'get j1']);
  });

  it('lets a client read its own write: a write drops the cached read and a read that raced it is not kept', async () => {
    const c = manualController();
    const reads = cachedReads(c.client, { ttlMs: 10_000 });
    const before = reads.get('j1');
    c.release('get j1', view('Running'));
    await before;
    // A read in flight while the write happens...
    const racing = reads.get('j1');
    expect(c.calls).toEqual(['get j1']); // still cached
    const write = reads.config('j1', { stop: 'checkpoint' });
    const during = reads.get('j1');
    expect(c.calls).toEqual(['get j1', 'config j1', 'get j1']);
    c.release('config j1', { v: 1, job_id: 'j1', revision: 2 });
    await write;
    c.release('get j1', view('Running'));
    await during;
    await racing;
    // ...is not served after the write completed.
    void reads.get('j1');
    expect(c.calls).toEqual(['get j1', 'config j1', 'get j1', 'get j1']);
  });

  it('with ttlMs 0 only coalesces what is in flight', async () => {
    const c = manualController();
    const reads = cachedReads(c.client, { ttlMs: 0 });
    const a = reads.get('j1');
    void reads.get('j1');
    c.release('get j1', view('Running'));
    await a;
    void reads.get('j1');
    expect(c.calls).toEqual(['get j1', 'get j1']);
  });

  it('keeps at most maxEntries answers, dropping the oldest', async () => {
    const c = manualController();
    const reads = cachedReads(c.client, { ttlMs: 10_000, maxEntries: 2 });
    for (const job of ['j1', 'j2', 'j3']) {
      const read = reads.get(job);
      c.release(`get ${job}`, view('Running'));
      await read;
    }
    void reads.get('j3');
    void reads.get('j1');
    expect(c.calls).toEqual(['get j1', 'get j2', 'get j3', 'get j1']);
  });
});
