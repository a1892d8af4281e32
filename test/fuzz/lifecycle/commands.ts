/**
 * The fuzzer's commands: what a user (and a bad day) does to a weir deployment. Each names the job it
 * acts on by an index into the jobs that exist, so that a sequence stays meaningful when shrinking drops
 * commands; one that cannot apply (no job yet, no room for more slots) is skipped and says so. After each,
 * the fuzzer pauses 0–500 ms, then checks that no job waits without a deadline. A request answered
 * `unavailable` (a takeover under way) is asked again, as a client would.
 */
import fc from 'fast-check';
import { setTimeout as sleep } from 'node:timers/promises';
import type { StopMode } from '../../../machines/job/types.js';
import { subjects } from '../../../src/protocol/index.js';
import { fits, liveJobs, pickJob, type LifecycleModel, type ModelJob, type PipelineKind } from './model.js';
import { jobLabel, type LifecycleSystem } from './system.js';

type StopOnly = Exclude<StopMode, 'none'>;

abstract class FuzzCommand implements fc.AsyncCommand<LifecycleModel, LifecycleSystem, false> {
  constructor(readonly pauseMs: number) {}

  /** Every command may run at any point: one that does not apply is skipped, so a replayed sequence is the one generated. */
  check(): boolean {
    return true;
  }

  abstract readonly kind: string;
  protected abstract label(): string;
  /** Does the command; false when it did not apply. */
  protected abstract act(model: LifecycleModel, system: LifecycleSystem): Promise<boolean>;

  async run(model: LifecycleModel, system: LifecycleSystem): Promise<void> {
    const applied = await this.act(model, system);
    if (applied) system.stats.commands[this.kind] = (system.stats.commands[this.kind] ?? 0) + 1;
    else system.stats.skipped++;
    system.note(`${this.toString()}${applied ? '' : ' (skipped)'}`);
    await sleep(this.pauseMs);
    await system.checkWaits(model);
  }

  toString(): string {
    return `${this.label()}+${this.pauseMs}ms`;
  }
}

/** A command on one job: skipped when there is none. */
abstract class JobCommand extends FuzzCommand {
  constructor(
    readonly pick: number,
    pauseMs: number,
  ) {
    super(pauseMs);
  }

  protected abstract actOn(job: ModelJob, model: LifecycleModel, system: LifecycleSystem): Promise<boolean>;

  protected act(model: LifecycleModel, system: LifecycleSystem): Promise<boolean> {
    const job = pickJob(model, this.pick);
    if (job === undefined) return Promise.resolve(false);
    system.note(`  ${this.kind} → ${jobLabel(job)}`);
    return this.actOn(job, model, system);
  }

  protected async configure(system: LifecycleSystem, job: ModelJob, update: Record<string, unknown>): Promise<void> {
    system.expectReply(`${this.label()} on ${job.id}`, await system.request(subjects.apiJobConfig(job.id), { v: 1, ...update }));
  }
}

export class Create extends FuzzCommand {
  readonly kind = 'create';
  constructor(
    readonly pipeline: PipelineKind,
    pauseMs: number,
  ) {
    super(pauseMs);
  }
  protected label(): string {
    return `create(${this.pipeline})`;
  }
  protected async act(model: LifecycleModel, system: LifecycleSystem): Promise<boolean> {
    if (liveJobs(model).length >= model.maxJobs || !fits(model, { extra: 1 })) return false;
    const slot = model.jobs.length;
    const id = await system.createJob(this.pipeline, `fuzz-${slot}`);
    model.jobs.push({ slot, id, kind: this.pipeline, stop: 'none', parallelism: 1, deleted: false, finished: false });
    return true;
  }
}

export class Stop extends JobCommand {
  readonly kind = 'stop';
  constructor(
    pick: number,
    readonly mode: StopOnly,
    pauseMs: number,
  ) {
    super(pick, pauseMs);
  }
  protected label(): string {
    return `stop(job@${this.pick}, ${this.mode})`;
  }
  protected async actOn(job: ModelJob, _model: LifecycleModel, system: LifecycleSystem): Promise<boolean> {
    await this.configure(system, job, { stop: this.mode });
    job.stop = this.mode;
    return true;
  }
}

export class Start extends JobCommand {
  readonly kind = 'start';
  protected label(): string {
    return `start(job@${this.pick})`;
  }
  protected async actOn(job: ModelJob, model: LifecycleModel, system: LifecycleSystem): Promise<boolean> {
    if (!fits(model, { job, stop: 'none' })) return false;
    await this.configure(system, job, { stop: 'none' });
    job.stop = 'none';
    return true;
  }
}

export class Restart extends JobCommand {
  readonly kind = 'restart';
  constructor(
    pick: number,
    readonly mode: 'safe' | 'force',
    readonly ignoreState: boolean,
    pauseMs: number,
  ) {
    super(pick, pauseMs);
  }
  protected label(): string {
    return `restart(job@${this.pick}, ${this.mode}${this.ignoreState ? ', ignore_state' : ''})`;
  }
  protected async actOn(job: ModelJob, _model: LifecycleModel, system: LifecycleSystem): Promise<boolean> {
    await this.configure(system, job, { restart: true, restart_mode: this.mode, ...(this.ignoreState ? { ignore_state: true } : {}) });
    return true;
  }
}

export class Rescale extends JobCommand {
  readonly kind = 'rescale';
  constructor(
    pick: number,
    readonly parallelism: number,
    pauseMs: number,
  ) {
    super(pick, pauseMs);
  }
  protected label(): string {
    return `rescale(job@${this.pick}, ${this.parallelism})`;
  }
  protected async actOn(job: ModelJob, model: LifecycleModel, system: LifecycleSystem): Promise<boolean> {
    if (!fits(model, { job, parallelism: this.parallelism })) return false;
    await this.configure(system, job, { parallelism: this.parallelism });
    job.parallelism = this.parallelism;
    return true;
  }
}

export class Checkpoint extends JobCommand {
  readonly kind = 'checkpoint';
  protected label(): string {
    return `checkpoint(job@${this.pick})`;
  }
  protected async actOn(job: ModelJob, _model: LifecycleModel, system: LifecycleSystem): Promise<boolean> {
    // Only a Running job takes one, and one at a time: the other answers are as right.
    system.expectReply(`checkpoint of ${job.id}`, await system.request(subjects.apiJobTriggerCheckpoint(job.id), { v: 1 }), ['not_running', 'conflict']);
    return true;
  }
}

export class Delete extends JobCommand {
  readonly kind = 'delete';
  protected label(): string {
    return `delete(job@${this.pick})`;
  }
  protected async actOn(job: ModelJob, _model: LifecycleModel, system: LifecycleSystem): Promise<boolean> {
    // Only a Stopped, Finished or Failed job can be deleted; for any other, `not_terminal` is the answer.
    // Asked again after `unavailable`, the job may be gone already: the try before deleted it.
    const { reply, retried } = await system.ask(subjects.apiJobDelete(job.id), { v: 1 });
    const code = system.expectReply(`delete of ${job.id}`, reply, retried ? ['not_terminal', 'unknown_job'] : ['not_terminal']);
    if (code === null || code === 'unknown_job') job.deleted = true;
    return true;
  }
}

export class KillWorker extends FuzzCommand {
  readonly kind = 'kill-worker';
  constructor(
    readonly pick: number,
    pauseMs: number,
  ) {
    super(pauseMs);
  }
  protected label(): string {
    return `kill-worker(@${this.pick})`;
  }
  protected async act(_model: LifecycleModel, system: LifecycleSystem): Promise<boolean> {
    system.note(`  ${await system.replaceWorker(this.pick)}`);
    return true;
  }
}

/** SIGKILLs one of the controllers, whichever jobs it owns, then starts it again under its id. */
export class KillController extends FuzzCommand {
  readonly kind = 'kill-controller';
  constructor(
    readonly pick: number,
    pauseMs: number,
  ) {
    super(pauseMs);
  }
  protected label(): string {
    return `kill-controller(@${this.pick})`;
  }
  protected async act(_model: LifecycleModel, system: LifecycleSystem): Promise<boolean> {
    const id = system.controllerIds[this.pick % system.controllerIds.length]!;
    system.note(`  kill-controller → ${id}`);
    await system.restartController(id);
    return true;
  }
}

/** SIGKILLs the controller that owns the job (by its view), then starts it again under its id; skipped while the job has no owner. */
export class KillOwner extends JobCommand {
  readonly kind = 'kill-owner';
  protected label(): string {
    return `kill-owner(job@${this.pick})`;
  }
  protected async actOn(job: ModelJob, _model: LifecycleModel, system: LifecycleSystem): Promise<boolean> {
    const owner = await system.ownerOf(job.id);
    if (owner === null) return false;
    system.note(`  its owner: ${owner}`);
    await system.restartController(owner);
    return true;
  }
}

/** SIGSTOPs one of the controllers past its lease TTL (its jobs are taken over meanwhile), then SIGCONTs it: it must step down without writing. */
export class PauseController extends FuzzCommand {
  readonly kind = 'pause-controller';
  constructor(
    readonly pick: number,
    pauseMs: number,
  ) {
    super(pauseMs);
  }
  protected label(): string {
    return `pause-controller(@${this.pick})`;
  }
  protected async act(_model: LifecycleModel, system: LifecycleSystem): Promise<boolean> {
    const id = system.controllerIds[this.pick % system.controllerIds.length]!;
    system.note(`  pause-controller → ${id}`);
    await system.pauseController(id);
    return true;
  }
}

/** A quiescent point: every invariant is checked. */
export class Settle extends FuzzCommand {
  readonly kind = 'settle';
  constructor() {
    super(0);
  }
  protected label(): string {
    return 'settle';
  }
  protected async act(model: LifecycleModel, system: LifecycleSystem): Promise<boolean> {
    await system.settle(model);
    return true;
  }
}

const pause = fc.integer({ min: 0, max: 500 });
const pick = fc.nat({ max: 15 });

/** One command, weighted as a busy operator on a bad day would issue them. */
export const command: fc.Arbitrary<FuzzCommand> = fc.oneof(
  { weight: 4, arbitrary: fc.tuple(fc.constantFrom<PipelineKind>('unbounded', 'unbounded', 'bounded'), pause).map(([kind, ms]) => new Create(kind, ms)) },
  { weight: 4, arbitrary: fc.tuple(pick, fc.constantFrom<StopOnly>('checkpoint', 'graceful', 'immediate', 'force'), pause).map(([p, mode, ms]) => new Stop(p, mode, ms)) },
  { weight: 4, arbitrary: fc.tuple(pick, pause).map(([p, ms]) => new Start(p, ms)) },
  {
    weight: 3,
    arbitrary: fc
      .tuple(pick, fc.constantFrom<'safe' | 'force'>('safe', 'force'), fc.boolean(), pause)
      .map(([p, mode, ignore, ms]) => new Restart(p, mode, mode === 'force' && ignore, ms)),
  },
  { weight: 3, arbitrary: fc.tuple(pick, fc.integer({ min: 1, max: 3 }), pause).map(([p, n, ms]) => new Rescale(p, n, ms)) },
  { weight: 2, arbitrary: fc.tuple(pick, pause).map(([p, ms]) => new Checkpoint(p, ms)) },
  { weight: 2, arbitrary: fc.tuple(pick, pause).map(([p, ms]) => new Delete(p, ms)) },
  { weight: 1, arbitrary: fc.tuple(pick, pause).map(([p, ms]) => new KillWorker(p, ms)) },
  { weight: 1, arbitrary: fc.tuple(pick, pause).map(([p, ms]) => new KillController(p, ms)) },
  { weight: 1, arbitrary: fc.tuple(pick, pause).map(([p, ms]) => new KillOwner(p, ms)) },
  { weight: 1, arbitrary: fc.tuple(pick, pause).map(([p, ms]) => new PauseController(p, ms)) },
  { weight: 2, arbitrary: fc.constant(new Settle()) },
);

export type { FuzzCommand };
