/** The controller's job runtimes by job: where worker-service's `onLost` finds the runtime a lost worker ran for. */
import type { JobRuntime } from './job-runtime.js';
import type { LostReason } from './worker-service.js';

/** Runtimes by job: the controller's side of worker-service's `onLost`. */
export class JobRuntimes {
  private readonly runtimes = new Map<string, JobRuntime>();

  add(jobId: string, runtime: JobRuntime): void {
    this.runtimes.set(jobId, runtime);
  }

  get(jobId: string): JobRuntime | undefined {
    return this.runtimes.get(jobId);
  }

  remove(jobId: string): void {
    this.runtimes.delete(jobId);
  }

  /** Pass as (or call from) `startWorkerService`'s `onLost`. */
  readonly onWorkerLost = (jobId: string, generation: number, workerId: string, reason?: LostReason): void => {
    this.runtimes.get(jobId)?.onWorkerLost(generation, workerId, reason);
  };
}
