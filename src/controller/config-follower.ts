/**
 * Config changes written to the store by another process (another controller, or anything writing the
 * jobs bucket) reach the job's runtime through the store's config watcher; a deleted config stops the
 * job's runtime. The controller's own writes are recognised by revision (`JobTable.hasApplied`) and
 * skipped. Each change runs in the job's `perJob` queue, after the requests already queued for it.
 */
import type { Logger } from 'pino';
import type { ConfigChange, Store } from '../store/index.js';
import type { KeyedQueue } from '../shared/keyed-queue.js';
import type { JobTable } from './job-table.js';

export interface ConfigFollowerOptions {
  store: Store;
  table: JobTable;
  /** Each job's requests, config changes and checkpoint triggers, one at a time. */
  perJob: KeyedQueue;
  /** Whether the controller is stopping: changes are then no longer followed. */
  stopping: () => boolean;
  log: Logger;
}

export interface ConfigFollower {
  /** Config changes of other processes forwarded to a runtime so far. */
  externalChanges(): number;
  /** Stops the watcher. */
  stop(): void;
}

/**
 * Starts watching the jobs' configs. Start it before the table resumes the stored jobs: a change made
 * in between is then seen by both, and the revision decides.
 */
export async function followConfigChanges(options: ConfigFollowerOptions): Promise<ConfigFollower> {
  const { store, table, perJob, stopping, log } = options;
  let externalChanges = 0;

  function follow({ jobId, config: cfg, revision }: ConfigChange): Promise<void> {
    return perJob.run(jobId, async () => {
      if (!table.has(jobId)) return;
      if (table.hasApplied(jobId, revision)) return;
      table.markApplied(jobId, revision);
      const runtime = table.runtime(jobId);
      if (cfg === null) {
        // Deleted by another process.
        table.forget(jobId);
        table.removeRuntime(jobId);
        await runtime?.stop();
        log.info({ jobId }, 'job deleted elsewhere: runtime stopped');
        return;
      }
      externalChanges++;
      const known = table.knownConfig(jobId);
      if (known !== undefined) table.rememberConfig(jobId, { nodeIds: known.nodeIds, config: { value: cfg, revision } });
      table.forward(jobId, cfg);
      log.info({ jobId, revision }, 'config changed elsewhere: forwarded to the runtime');
    });
  }

  const watcher = await store.jobs.watchConfigs(
    (change) => {
      if (stopping()) return;
      return follow(change);
    },
    { onError: (err) => log.warn({ err }, 'config watcher problem') },
  );
  return { externalChanges: () => externalChanges, stop: () => watcher.stop() };
}
