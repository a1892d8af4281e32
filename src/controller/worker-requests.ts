/**
 * The controller's requests to one worker (`weir.worker.<worker>.*`): one reply each, decoded. A worker
 * that says nothing of the generation runs there (`unknown_job`, `stale_generation`) answers `gone`;
 * any other error reply rejects with `WorkerRejected`; no reply rejects with nats.js's request error.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { ackSchema, decodeReply, encode, PROTOCOL_VERSION, subjects, type ErrorCode, type StopExecution } from '../protocol/index.js';
import type { ReportedGeneration, WorkerRegistry } from './registry.js';

const STOPPED_CODES: readonly ErrorCode[] = ['unknown_job', 'stale_generation'];

/** A worker's error reply to a request. */
export class WorkerRejected extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(`${code}: ${message}`);
    this.name = 'WorkerRejected';
  }
}

export type WorkerAnswer = 'ok' | 'gone';

export async function askWorker(nc: NatsConnection, subject: string, body: unknown, timeoutMs: number): Promise<WorkerAnswer> {
  const reply = await nc.request(subject, encode(body), { timeout: timeoutMs });
  const result = decodeReply(ackSchema, reply.data);
  if (result.ok) return 'ok';
  if (result.remote && STOPPED_CODES.includes(result.error.code)) return 'gone';
  throw new WorkerRejected(result.error.code, result.error.message);
}

/**
 * Stops the generations workers run without slots held for them (`WorkerRegistry.orphans`): the
 * controller gave them up (a stop that was never confirmed, a controller that restarted, a worker that
 * came back after it was counted lost). One kill at a time per orphan; once the worker confirms, its
 * slots are free at once. A kill that fails is sent again at the worker's next heartbeat.
 */
export function orphanReaper(
  nc: NatsConnection,
  registry: WorkerRegistry,
  log: Logger,
  timeoutMs: number,
  /** The owner epoch the kill carries for the job (workers refuse an older one); null: not this controller's to kill. */
  ownerEpochOf: (jobId: string) => number | null = () => 0,
): (workerId: string, orphan: ReportedGeneration) => Promise<void> {
  const inFlight = new Set<string>();
  return async (workerId, { jobId, generation, slots }) => {
    const key = `${workerId}\u0000${jobId}\u0000${generation}`;
    const epoch = ownerEpochOf(jobId);
    if (inFlight.has(key) || epoch === null) return;
    inFlight.add(key);
    try {
      log.warn({ workerId, jobId, generation, slots }, 'a worker runs a generation the controller holds no slots for: killing it');
      const body: StopExecution = { v: PROTOCOL_VERSION, job_id: jobId, generation, mode: 'kill', ...(epoch > 0 ? { owner_epoch: epoch } : {}) };
      await askWorker(nc, subjects.workerStop(workerId), body, timeoutMs);
      registry.ended(workerId, jobId, generation);
    } catch (err) {
      log.warn({ err, workerId, jobId, generation }, 'could not kill an orphaned generation; trying again at the next heartbeat');
    } finally {
      inFlight.delete(key);
    }
  };
}
