/**
 * The pieces of an in-process weir that the NATS-backed tests share: the logger, a job policy with short
 * backoffs and polls, a controller and a worker with quick heartbeats, a request helper that decodes the
 * reply, and a wait for a job to reach a state.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import { pino } from 'pino';
import { expect } from 'vitest';
import type { JobPolicy, JobState } from '../../machines/job/types.js';
import { startController, type Controller, type ControllerOptions } from '../../src/controller/controller.js';
import { encode } from '../../src/protocol/index.js';
import { startWorker, type WorkerHandle } from '../../src/worker/process.js';
import { eventually } from './nats.js';

/** Silent unless WEIR_TEST_LOG names a level. */
export const log = pino({ level: process.env['WEIR_TEST_LOG'] ?? 'silent' });

/** Backoffs and polls short enough that a job's transitions take milliseconds; tests add their own timeouts. */
export const TEST_POLICY: Partial<JobPolicy> = {
  restartBackoff: { initialMs: 50, maxMs: 200, multiplier: 2, jitter: 0 },
  stateBackoff: { initialMs: 50, maxMs: 200, multiplier: 2, jitter: 0 },
  notEnoughSlotsRetryMs: 100,
  progressPollMs: 50,
};

/**
 * A controller on `nc` for tests: workers heartbeat every 200 ms and are lost after 3 s, 2 s requests to
 * workers, `TEST_POLICY`, no inspector; `options` override any of these.
 */
export function startTestController(nc: NatsConnection, options: Partial<ControllerOptions> = {}): Promise<Controller> {
  return startController(nc, { log, heartbeatIntervalMs: 200, heartbeatTimeoutMs: 3_000, requestTimeoutMs: 2_000, policy: TEST_POLICY, inspector: null, ...options });
}

export interface TestWorkerOptions {
  /** Default 8. */
  slots?: number;
  /** How long to wait for the controller to register the worker; `eventually`'s default when absent. */
  registeredWithinMs?: number;
}

/** The in-process worker `w1` on `nc`, heartbeating every 200 ms, once the controller has registered it. */
export async function startTestWorker(nc: NatsConnection, { slots = 8, registeredWithinMs }: TestWorkerOptions = {}): Promise<WorkerHandle> {
  const worker = startWorker(nc, { workerId: 'w1', slots, log, heartbeatIntervalMs: 200 });
  try {
    await eventually(() => expect(worker.registered()).toBe(true), registeredWithinMs === undefined ? {} : { timeoutMs: registeredWithinMs });
  } catch (err) {
    // The caller never gets the handle, so nothing else would stop it.
    await worker.stop('immediate').catch(() => undefined);
    throw err;
  }
  return worker;
}

/** A controller reply: an error, or the reply's fields. */
export type Reply = { error?: { code: string; message: string } } & Record<string, unknown>;

/** A request on `nc`: bytes are sent as they are, a string as its UTF-8, anything else as JSON; the reply is parsed as JSON. */
export async function requestJson(nc: NatsConnection, subject: string, body: unknown, timeout: number): Promise<Reply> {
  const data = body instanceof Uint8Array ? body : typeof body === 'string' ? new TextEncoder().encode(body) : encode(body);
  const reply = await nc.request(subject, data, { timeout });
  return JSON.parse(new TextDecoder().decode(reply.data)) as Reply;
}

export interface UntilStateOptions {
  /** Default 20 s. */
  timeoutMs?: number;
  /** Default 50 ms. */
  intervalMs?: number;
}

/** Reads the job's view with `read` until it is in `state`; `check` may assert more of the view. The last view read. */
export function untilState<V extends { state: JobState }>(read: () => Promise<V>, state: JobState, { timeoutMs = 20_000, intervalMs = 50 }: UntilStateOptions = {}, check?: (view: V) => void): Promise<V> {
  return eventually(
    async () => {
      const view = await read();
      expect(view.state).toBe(state);
      check?.(view);
      return view;
    },
    { timeoutMs, intervalMs },
  );
}
