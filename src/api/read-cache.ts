/**
 * Coalesced, briefly cached controller reads. A dashboard that many people watch polls the same job
 * over and over; each poll would cost the controller a request and several JetStream reads. Here
 * concurrent identical reads share one request, and its answer serves later reads for `ttlMs`.
 *
 * A write through this process (config, restart, delete, trigger) drops the job's cached reads, and a
 * read that was in flight when the write began is not kept, so a client reads its own writes. A write
 * through another API process is seen within `ttlMs`. Errors are shared by the callers waiting on
 * them but never kept. `ttlMs: 0` turns the cache off (reads are still coalesced while in flight).
 */
import type { ControllerClient } from './controller-client.js';

export const DEFAULT_READ_CACHE_MS = 250;
const DEFAULT_MAX_ENTRIES = 10_000;

export interface ReadCacheOptions {
  ttlMs?: number;
  /** Cached answers kept at most; the oldest go first. Default 10,000. */
  maxEntries?: number;
  now?: () => number;
}

interface Entry {
  value: Promise<unknown>;
  /** 0 while in flight. */
  expiresAt: number;
}

export interface ReadCacheStats {
  hits: number;
  misses: number;
  coalesced: number;
}

export function cachedReads(client: ControllerClient, options: ReadCacheOptions = {}): ControllerClient & { readonly cacheStats: ReadCacheStats } {
  const ttlMs = options.ttlMs ?? DEFAULT_READ_CACHE_MS;
  const maxEntries = options.maxEntries ?? DEFAULT_MAX_ENTRIES;
  const now = options.now ?? Date.now;
  const entries = new Map<string, Entry>();
  /** Per job: bumped by every write, so a read begun before a write is not kept after it. */
  const writes = new Map<string, number>();
  const cacheStats: ReadCacheStats = { hits: 0, misses: 0, coalesced: 0 };

  function read<T>(jobId: string, key: string, fetch: () => Promise<T>): Promise<T> {
    const fullKey = `${jobId}\u0000${key}`;
    const found = entries.get(fullKey);
    if (found !== undefined) {
      if (found.expiresAt === 0) {
        cacheStats.coalesced++;
        return found.value as Promise<T>;
      }
      if (found.expiresAt > now()) {
        cacheStats.hits++;
        return found.value as Promise<T>;
      }
      entries.delete(fullKey);
    }
    cacheStats.misses++;
    const writesBefore = writes.get(jobId) ?? 0;
    const value = fetch();
    const entry: Entry = { value, expiresAt: 0 };
    entries.set(fullKey, entry);
    while (entries.size > maxEntries) entries.delete(entries.keys().next().value!);
    const settle = (keep: boolean) => {
      if (entries.get(fullKey) !== entry) return;
      if (keep && ttlMs > 0 && (writes.get(jobId) ?? 0) === writesBefore) entry.expiresAt = now() + ttlMs;
      else entries.delete(fullKey);
    };
    value.then(
      () => settle(true),
      () => settle(false),
    );
    return value;
  }

  function wrote<T>(jobId: string, write: Promise<T>): Promise<T> {
    const forget = () => {
      writes.set(jobId, (writes.get(jobId) ?? 0) + 1);
      const prefix = `${jobId}\u0000`;
      for (const key of entries.keys()) if (key.startsWith(prefix)) entries.delete(key);
    };
    // Before (reads from now on go to the controller) and after (a read that raced the write is dropped).
    forget();
    return write.finally(forget);
  }

  return {
    cacheStats,
    create: (pipeline) => client.create(pipeline),
    list: (request) => client.list(request),
    views: (request) => client.views(request),
    get: (jobId) => read(jobId, 'get', () => client.get(jobId)),
    config: (jobId, update) => wrote(jobId, client.config(jobId, update)),
    delete: (jobId) => wrote(jobId, client.delete(jobId)),
    checkpoints: (jobId, request = {}) => read(jobId, `checkpoints ${request.include_failed === true}`, () => client.checkpoints(jobId, request)),
    checkpoint: (jobId, epoch) => read(jobId, `checkpoint ${epoch}`, () => client.checkpoint(jobId, epoch)),
    triggerCheckpoint: (jobId, triggerId) => wrote(jobId, client.triggerCheckpoint(jobId, triggerId)),
    metrics: (jobId) => read(jobId, 'metrics', () => client.metrics(jobId)),
    controllerMetrics: () => client.controllerMetrics(),
    controllers: () => client.controllers(),
  };
}
