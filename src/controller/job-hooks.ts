/**
 * What the job machine asks of the world for one job (`JobHooks`): compile the graph, schedule a
 * generation (its restore point, slots and start requests), stop, kill and clean up generations, the
 * final checkpoint, the checkpoint schedule. Each is carried out by the runtime's parts: the worker
 * commands, the checkpoint records, the coordinator.
 */
import type { Logger } from 'pino';
import { setTimeout as sleep } from 'node:timers/promises';
import { JobError, type AdoptInput, type GenerationInput, type ScheduleInput, type ScheduleResult, type StopInput } from '../../machines/job/types.js';
import type { StopResult } from '../../machines/job/setup.js';
import { effectiveParallelism, PROTOCOL_VERSION, RESTORABLE_STATUSES, truncateErrorText, validateGraph, type Graph, type OperatorSpec, type StartExecution } from '../protocol/index.js';
import type { CheckpointCoordinator, CheckpointRecord } from './checkpoint-coordinator.js';
import type { CheckpointRecords } from './checkpoint-records.js';
import type { FinalCheckpoints } from './final-checkpoints.js';
import type { GenerationCommands } from './generation-commands.js';
import { plannedGeneration, subtaskKey, type GenerationState } from './generations.js';
import type { JobHooks, JobSnapshot } from './job-machines.js';
import type { RuntimeSpec } from './job-runtime.js';
import { offeredOperatorSpecs } from './operator-specs.js';
import type { WorkerRegistry } from './registry.js';
import { assignSubtasks, toStartAssignments, type SubtaskRef } from './scheduler.js';
import type { StatusWriter } from './status-writer.js';
import { WorkerRejected } from './worker-requests.js';
import { microsFromMs } from '../shared/micros.js';

/** How often an adoption looks again for the tasks the workers report. */
const ADOPT_POLL_MS = 100;

export interface JobHooksOptions {
  jobId: string;
  spec: RuntimeSpec;
  /** Operator specs by name (kind, config schema, two-phase). */
  catalog: ReadonlyMap<string, OperatorSpec>;
  registry: WorkerRegistry;
  log: Logger;
  /** The runtime's generations by number: a scheduled one is added before its start requests go out. */
  generations: Map<number, GenerationState>;
  coordinator: CheckpointCoordinator;
  commands: GenerationCommands;
  records: CheckpointRecords;
  finals: Pick<FinalCheckpoints, 'finalCheckpoint'>;
  /** The warning row of a record that proved damaged; `flush` makes the status naming a generation durable before it starts. */
  writer: Pick<StatusWriter, 'appendWarning' | 'flush'>;
  /** Epochs a restore is reading, which retention keeps: the restore point while its generation starts. */
  restoring: Set<number>;
  /** Restore no checkpoint older than this epoch (null: any): a restart that ignored state. */
  restoreFloor: () => number | null;
  /** The job actor's snapshot now. */
  snapshot: () => JobSnapshot;
  /** How long a takeover waits for the workers to report the generation's tasks (a few heartbeat intervals). */
  adoptWaitMs: number;
}

export function jobHooks(options: JobHooksOptions): JobHooks {
  const { jobId, spec, catalog, registry, log, generations, coordinator, commands, records, finals, writer, restoring, restoreFloor, snapshot, adoptWaitMs } = options;
  const inputs = new Set(spec.graph.edges.map((e) => e.to));
  const sourceNodes = new Set(spec.graph.nodes.filter((n) => !inputs.has(n.id)).map((n) => n.id));
  /** Output becomes visible only at a checkpoint's commit: the job's last output needs a final checkpoint. */
  const twoPhase = spec.graph.nodes.some((n) => catalog.get(n.operator)?.twoPhase === true);

  function compileJob(): Promise<void> {
    const problems = validateGraph(spec, offeredOperatorSpecs(registry.operators(), catalog, spec.graph));
    if (problems.length > 0) {
      return Promise.reject(new JobError({ kind: 'fatal', domain: 'user', message: truncateErrorText(problems.map((p) => p.message).join('; ')) }));
    }
    return Promise.resolve();
  }

  async function scheduleJob(input: ScheduleInput, signal: AbortSignal): Promise<ScheduleResult> {
    // First, before any slot is taken: it may fail (and the attempt is retried).
    const restorePoint = await records.restorableRecord(restoreFloor());
    // The machine left Scheduling meanwhile (a stop, a delete): its stop found nothing of this generation to
    // stop, so starting it now would run tasks nobody wants on slots nobody frees (lifecycle fuzzer, seed 450132480).
    if (signal.aborted) throw new JobError({ kind: 'retryable', message: `generation ${input.generation} is no longer wanted` });
    const restoreEpoch = restorePoint?.epoch ?? null;
    if (restoreEpoch !== null) restoring.add(restoreEpoch);
    try {
      return await startGeneration(input, restorePoint, signal);
    } finally {
      if (restoreEpoch !== null) restoring.delete(restoreEpoch);
    }
  }

  async function startGeneration(input: ScheduleInput, restorePoint: CheckpointRecord | null, signal: AbortSignal): Promise<ScheduleResult> {
    const { generation } = input;
    const operators = spec.graph.nodes.map((n) => n.operator);
    const restoreEpoch = restorePoint?.epoch ?? null;
    // Without the slots, the attempt fails at once (and waits for slots), before waiting on anything.
    assignSubtasks(spec, input.parallelismOverrides, registry.candidates(operators));
    // Write-ahead: the status naming this generation is durable before any of its tasks start. An owner that
    // takes over after a crash then schedules the next generation, never this number again (which a worker
    // running it would refuse as a conflict, forever).
    await Promise.race([writer.flush(), new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }))]);
    if (signal.aborted) throw new JobError({ kind: 'retryable', message: `generation ${generation} is no longer wanted` });
    // Planned again: the slots may have changed while the status was written.
    const plan = assignSubtasks(spec, input.parallelismOverrides, registry.candidates(operators));
    registry.release(jobId, generation);
    registry.allocate(jobId, generation, plan.slots);

    // Registered before the start requests go out: a fast worker's `started` must not be missed.
    generations.set(generation, plannedGeneration(generation, plan.assignments, sourceNodes));

    const context = snapshot().context;
    const graph: Graph = { ...spec.graph, nodes: spec.graph.nodes.map((n) => ({ ...n, parallelism: plan.parallelism[n.id] ?? n.parallelism })) };
    // Epochs go on after the restored one; after a restart that ignored state, the new lineage starts at the floor.
    const floor = restoreFloor();
    const startEpoch = Math.max(restoreEpoch ?? 0, floor === null ? 0 : floor - 1);
    coordinator.beginGeneration({ generation, subtasks: new Map(graph.nodes.map((n) => [n.id, n.parallelism])) }, startEpoch);
    const workers = [...plan.assignments.keys()];
    const results = await Promise.allSettled(
      workers.map((workerId) => {
        const body: StartExecution = {
          v: PROTOCOL_VERSION,
          job_id: jobId,
          generation,
          program: { graph, assignments: toStartAssignments(plan.assignments.get(workerId) ?? []) },
          ...(restoreEpoch !== null ? { restore_epoch: restoreEpoch } : {}),
          // The epoch the tasks start at (the last one started, as in the reference); their first checkpoint is the next.
          start_epoch: coordinator.epoch,
          min_epoch: input.minEpoch,
          checkpoint_interval_micros: microsFromMs(context.config.checkpointIntervalMs),
          ...(twoPhase ? { final_checkpoint: true } : {}),
        };
        return commands.start(workerId, body);
      }),
    );
    const failed = workers.flatMap((w, i) => (results[i]?.status === 'rejected' ? [{ w, reason: (results[i]).reason as unknown }] : []));
    const abandon = async (workersToKill: string[], message: string, kind: 'retryable' | 'not_enough_slots' = 'retryable'): Promise<never> => {
      await commands.stopWorkers(generation, 'kill', workersToKill);
      registry.release(jobId, generation);
      generations.delete(generation);
      throw new JobError({ kind, message });
    };
    if (failed.length > 0) {
      const why = failed.map(({ w, reason }) => `${w}: ${reason instanceof Error ? reason.message : String(reason)}`).join('; ');
      const corrupt = failed.find(({ reason }) => reason instanceof WorkerRejected && reason.code === 'corrupt_checkpoint');
      // The next attempt restores the previous good checkpoint; retrying this one would fail the same way.
      if (corrupt !== undefined && restorePoint !== null) await markFailed(restorePoint, (corrupt.reason as Error).message);
      // A worker is the authority on its slots: one that refused for want of them (another controller took
      // them first) counts as full until it says otherwise, and the job waits for slots elsewhere or later.
      const full = failed.filter(({ reason }) => reason instanceof WorkerRejected && reason.code === 'conflict').map(({ w }) => w);
      for (const workerId of full) registry.markFull(workerId);
      const kind = full.length === failed.length ? 'not_enough_slots' : 'retryable';
      await abandon(workers.filter((_, i) => results[i]?.status === 'fulfilled'), `start of generation ${generation} failed on ${why}`, kind);
    }
    if (restorePoint?.status === 'committing') {
      // The previous run died between the epoch's record and its sinks' commits: they commit it now.
      try {
        await recommit(generation, restorePoint);
      } catch (err) {
        await abandon(workers, `generation ${generation}: the commit of restored epoch ${restorePoint.epoch} failed: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    if (signal.aborted) {
      // Stopped while the workers were starting it: whatever the machine's stop did, these tasks go now.
      await abandon(workers, `generation ${generation} started after the job stopped wanting it: killed`);
    }
    log.info({ generation, workers, parallelism: plan.parallelism }, 'generation started on workers');
    return { parallelism: plan.parallelism };
  }

  /** A record whose state proved damaged: written `failed`, so no restore picks it again. Retried until it lands. */
  async function markFailed(record: CheckpointRecord, why: string): Promise<void> {
    const message = `checkpoint ${record.epoch} cannot be restored (${why}); restoring the previous good checkpoint`;
    log.error({ epoch: record.epoch }, message);
    const at = Date.now();
    writer.appendWarning(truncateErrorText(message), at, `${jobId}.${at}.corrupt-${record.epoch}`);
    await records.persist({ ...record, status: 'failed' });
  }

  /** A restored epoch that is still committing: the new generation's sinks commit its data, then it is ready. */
  async function recommit(generation: number, record: CheckpointRecord): Promise<void> {
    const commits = record.subtasks.flatMap((s) => (s.commit_data === undefined ? [] : [{ node_id: s.node_id, subtask_index: s.subtask_index, commit_data: s.commit_data }]));
    log.info({ generation, epoch: record.epoch, subtasks: commits.length }, 'restored epoch is still committing: sending its commits again');
    await commands.sendCommits({ generation, epoch: record.epoch, commits });
    // Best effort: a record left committing only means one more (tolerated) commit at the next restore.
    await records.persist({ ...record, status: 'ready' }).catch((err: unknown) => log.warn({ err, epoch: record.epoch }, 'could not mark the recommitted epoch ready'));
  }

  /** Node id → subtasks of the running generation: as its status recorded it, else as the graph and the desired config give it. */
  function runningParallelism(): Map<string, number> {
    const context = snapshot().context;
    const recorded = Object.entries(context.parallelism);
    if (recorded.length > 0) return new Map(recorded);
    const resolved = effectiveParallelism({ graph: { nodes: spec.graph.nodes, edges: [] }, parallelism: spec.parallelism });
    for (const [nodeId, p] of Object.entries(context.config.parallelismOverrides)) if (resolved.has(nodeId)) resolved.set(nodeId, p);
    return resolved;
  }

  /** What the workers report of a generation becomes this runtime's: their slots, and the generation as if scheduled here. */
  function takeReported(generation: number, reported: ReturnType<WorkerRegistry['reportedBy']>): GenerationState {
    const assignments = new Map<string, SubtaskRef[]>([...reported].map(([workerId, r]) => [workerId, r.subtasks.map(({ nodeId, subtaskIndex }) => ({ nodeId, subtaskIndex }))]));
    registry.adopt(jobId, generation, new Map([...reported].map(([workerId, r]) => [workerId, r.slots])));
    const gen = plannedGeneration(generation, assignments, sourceNodes);
    generations.set(generation, gen);
    return gen;
  }

  /**
   * A generation an earlier owner started, taken over as it runs (docs/high-availability.md): once live
   * workers report every one of its subtasks, their slots are this controller's, the generation is known
   * as if scheduled here, the checkpoint coordinator goes on after the newest record (an epoch begun after
   * it counts as failed), and a record still committing has its commits sent again. Rejects when the
   * records cannot be read; waits for the reports until the machine gives up (its deadline aborts `signal`).
   */
  async function adoptGeneration(input: AdoptInput, signal: AbortSignal): Promise<void> {
    const { generation } = input;
    let newest: CheckpointRecord | null;
    let highestEpoch: number;
    try {
      const stored = await records.list();
      newest = stored.find((r) => RESTORABLE_STATUSES.includes(r.status)) ?? null;
      highestEpoch = stored[0]?.epoch ?? 0;
    } catch (err) {
      throw new JobError({ kind: 'retryable', domain: 'external', message: `cannot list the checkpoint records: ${err instanceof Error ? err.message : String(err)}` });
    }
    const parallelism = runningParallelism();
    const wanted = [...parallelism].flatMap(([nodeId, p]) => Array.from({ length: p }, (_, subtaskIndex) => subtaskKey(nodeId, subtaskIndex)));
    const until = performance.now() + adoptWaitMs;
    let reported = registry.reportedBy(jobId, generation);
    for (;;) {
      const running = new Set([...reported.values()].flatMap((r) => r.subtasks.map((t) => subtaskKey(t.nodeId, t.subtaskIndex))));
      if (wanted.every((key) => running.has(key))) break;
      if (signal.aborted || performance.now() >= until) {
        const missing = wanted.filter((key) => !running.has(key)).length;
        const message = `${missing} of ${wanted.length} subtasks of generation ${generation} are not running after the takeover`;
        // Slots of what is left are taken, so that the cleanup finds and kills it.
        if (reported.size > 0) takeReported(generation, reported);
        throw new JobError({ kind: running.size === 0 ? 'tasks_gone' : 'retryable', message });
      }
      await sleep(ADOPT_POLL_MS, undefined, { signal }).catch(() => undefined);
      reported = registry.reportedBy(jobId, generation);
    }
    // The job left reconciling meanwhile (a stop, say): what it does now decides about these tasks, so take nothing.
    if (signal.aborted) throw new JobError({ kind: 'retryable', message: `the takeover of generation ${generation} was abandoned` });
    const gen = takeReported(generation, reported);
    for (const key of gen.owners.keys()) gen.started.add(key);
    // Sources that ran out of input wait for the final checkpoint: once Running, it is taken as if they had just said so.
    for (const r of reported.values()) for (const t of r.subtasks) if (t.exhausted) gen.exhausted.add(subtaskKey(t.nodeId, t.subtaskIndex));
    gen.startedSent = true;
    const newestEpoch = newest?.epoch ?? 0;
    // The earlier owner may have begun the epoch after its newest record: that one counts as failed.
    coordinator.followEarlierOwner(newestEpoch, Math.max(highestEpoch, newestEpoch + 1), newest === null ? null : newest.start_time / 1000);
    coordinator.beginGeneration({ generation, subtasks: parallelism });
    if (newest?.status === 'committing') await recommit(generation, newest);
    log.info({ generation, workers: [...reported.keys()], epoch: coordinator.epoch }, 'generation adopted: its tasks run on');
  }

  async function stopJob(input: StopInput): Promise<StopResult> {
    const workers = commands.workersOf(input.generation);
    if (workers.length === 0) return { finished: true };
    const results = await commands.stopWorkers(input.generation, input.mode, workers);
    const failed = results.filter((r) => r.result.status === 'rejected');
    if (failed.length > 0) {
      throw new JobError({ kind: 'retryable', message: `${input.mode} stop not accepted by ${failed.map((r) => r.workerId).join(', ')}` });
    }
    const allGone = results.every((r) => r.result.status === 'fulfilled' && r.result.value === 'gone');
    // A worker acknowledges an immediate stop only after it has stopped the generation's runners and
    // closed its data plane, and it reports no `finished` events for them: the acks are the confirmation.
    return { finished: allGone || input.mode === 'immediate' };
  }

  const killJob = (input: GenerationInput) => commands.teardown(input.generation, true);
  const cleanupJob = async (input: GenerationInput) => {
    await commands.teardown(input.generation, false).catch((err: unknown) => log.warn({ err, generation: input.generation }, 'cleanup failed'));
  };

  function releaseGeneration(params: GenerationInput): void {
    if (commands.workersOf(params.generation).length === 0) {
      registry.release(jobId, params.generation);
      generations.delete(params.generation);
      return;
    }
    void cleanupJob(params);
  }

  return {
    compileJob: () => compileJob(),
    scheduleJob,
    stopJob,
    killJob,
    cleanupJob,
    finalCheckpoint: (input) => finals.finalCheckpoint(input.generation),
    adoptGeneration,
    armCheckpoints: (params) => coordinator.arm(params.generation, params.intervalMs, params.minEpoch),
    disarmCheckpoints: (params) => coordinator.disarm(params.generation),
    releaseGeneration,
    logStatus: (params) => log.info(params, 'job status'),
  };
}
