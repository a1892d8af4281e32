/**
 * What a job runtime knows about each generation it scheduled: which worker runs which subtask, and what
 * the workers reported of them. The worker commands, the worker-event aggregation and the machine's
 * actors all read and update the same generation.
 */
import type { SubtaskRef } from './scheduler.js';

export function subtaskKey(nodeId: string, index: number): string {
  return `${nodeId}\u0000${index}`;
}

/** What the runtime knows about one generation it scheduled. */
export interface GenerationState {
  generation: number;
  /** Worker → its subtasks. */
  assignments: Map<string, SubtaskRef[]>;
  /** Subtask key → worker. */
  owners: Map<string, string>;
  sourceKeys: Set<string>;
  sourceWorkers: Set<string>;
  /** Workers where none of its tasks runs any more: lost, or each of its tasks there ended. */
  goneWorkers: Set<string>;
  started: Set<string>;
  finished: Set<string>;
  /** Sources that ran out of input and wait for the final checkpoint (jobs with two-phase sinks). */
  exhausted: Set<string>;
  finalRequested: boolean;
  startedSent: boolean;
  finishedSent: boolean;
  sourceFinishedSent: boolean;
  failedSent: boolean;
}

/** A generation as planned, before any worker reported: owners and sources follow from `assignments`. */
export function plannedGeneration(generation: number, assignments: Map<string, SubtaskRef[]>, sourceNodes: ReadonlySet<string>): GenerationState {
  const gen: GenerationState = {
    generation,
    assignments,
    owners: new Map(),
    sourceKeys: new Set(),
    sourceWorkers: new Set(),
    goneWorkers: new Set(),
    started: new Set(),
    finished: new Set(),
    exhausted: new Set(),
    finalRequested: false,
    startedSent: false,
    finishedSent: false,
    sourceFinishedSent: false,
    failedSent: false,
  };
  for (const [workerId, refs] of assignments) {
    for (const ref of refs) {
      const key = subtaskKey(ref.nodeId, ref.subtaskIndex);
      gen.owners.set(key, workerId);
      if (sourceNodes.has(ref.nodeId)) {
        gen.sourceKeys.add(key);
        gen.sourceWorkers.add(workerId);
      }
    }
  }
  return gen;
}
