/**
 * A generation's final checkpoint, at most one at a time: the machine asks for it when it stops with
 * one, and a two-phase job takes one itself once every source ran out of input, to commit the last
 * output before its tasks finish.
 */
import type { Logger } from 'pino';
import type { UnstampedJobEvent } from '../../machines/job/types.js';
import type { CheckpointCoordinator } from './checkpoint-coordinator.js';
import type { GenerationState } from './generations.js';
import type { JobSnapshot } from './job-machines.js';
import { retry } from '../shared/retry.js';

/** Attempts at the final checkpoint that exhausted sources wait for, before the job recovers instead. */
const FINAL_ON_EXHAUSTED_ATTEMPTS = 3;

export interface FinalCheckpointsOptions {
  log: Logger;
  coordinator: Pick<CheckpointCoordinator, 'final'>;
  /** The runtime's generations by number. */
  generations: ReadonlyMap<number, GenerationState>;
  /** The job actor's snapshot now. */
  snapshot: () => JobSnapshot;
  send: (event: UnstampedJobEvent) => void;
  stopped: () => boolean;
}

export class FinalCheckpoints {
  /** The final checkpoint of a generation, shared by the machine (stops) and exhausted sources. */
  private readonly finals = new Map<number, Promise<{ epoch: number }>>();

  constructor(private readonly options: FinalCheckpointsOptions) {}

  /**
   * The final checkpoint of a generation, at most one at a time: a stop that asks for one while exhausted
   * sources already wait for theirs shares it.
   */
  finalCheckpoint(generation: number): Promise<{ epoch: number }> {
    let final = this.finals.get(generation);
    if (final === undefined) {
      final = this.options.coordinator.final(generation);
      this.finals.set(generation, final);
      final.catch(() => this.finals.delete(generation));
    }
    return final;
  }

  /** Once Running, with every source of the generation exhausted (sources may run out before Running). */
  maybeFinishWithCheckpoint(): void {
    const snapshot = this.options.snapshot();
    const gen = this.options.generations.get(snapshot.context.generation);
    if (gen === undefined || gen.finalRequested || gen.exhausted.size === 0 || !snapshot.matches('Running')) return;
    if (![...gen.sourceKeys].every((k) => gen.exhausted.has(k) || gen.finished.has(k))) return;
    gen.finalRequested = true;
    void this.finishWithCheckpoint(gen);
  }

  /** Every source of a two-phase job ran out of input: the final checkpoint commits the last output, then all finish. */
  private async finishWithCheckpoint(gen: GenerationState): Promise<void> {
    const { log, generations, snapshot, send, stopped } = this.options;
    const running = () => !stopped() && generations.get(gen.generation) === gen && snapshot().matches('Running');
    const failure = (err: unknown) => `the final checkpoint after the sources ran out failed: ${err instanceof Error ? err.message : String(err)}`;
    try {
      const { epoch } = await retry(() => this.finalCheckpoint(gen.generation), {
        attempts: FINAL_ON_EXHAUSTED_ATTEMPTS,
        retryable: running,
        onRetry: (err, attempt) => log.warn({ generation: gen.generation, attempt }, failure(err)),
      });
      log.info({ generation: gen.generation, epoch }, 'sources exhausted: final checkpoint committed');
    } catch (err) {
      if (running()) send({ type: 'task.failed', generation: gen.generation, message: failure(err), domain: 'internal', hint: 'with_backoff' });
    }
  }
}
