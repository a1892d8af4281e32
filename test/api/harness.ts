/**
 * A real weir behind the HTTP API for the API tests: on a nats-server from the fixtures, a controller,
 * optionally an in-process worker, and `startApi` on a free loopback port. Requests go through real HTTP
 * (`fetch`).
 */
import type { NatsConnection } from '@nats-io/transport-node';
import { expect } from 'vitest';
import type { JobPolicy } from '../../machines/job/types.js';
import { startApi, type ApiOptions, type ApiServer } from '../../src/api/index.js';
import type { Job } from '../../src/api/schemas.js';
import { controllerClient, type ControllerClient } from '../../src/api/controller-client.js';
import type { Controller } from '../../src/controller/controller.js';
import { openStore, type Store } from '../../src/store/index.js';
import type { WorkerHandle } from '../../src/worker/process.js';
import { log, startTestController, startTestWorker, TEST_POLICY } from '../support/cluster.js';
import { eventually } from '../support/nats.js';
import type { Connect } from '../support/nats-fixtures.js';
import type { NatsServerHandle } from '../support/nats-server.js';
import { impulseCountPipeline } from '../support/pipelines.js';

export { log };

const POLICY: Partial<JobPolicy> = { ...TEST_POLICY, notEnoughSlotsRetryMs: 200, stopTimeoutMs: 10_000, heartbeatTimeoutMs: 2_000 };

/** impulse → map-key → count → preview at a small rate, checkpointing every second. */
export const counterPipeline = (name = 'counter') => impulseCountPipeline({ name, rate: 20, modulo: 5 });

export interface Env {
  server: NatsServerHandle;
  /** The test's own connection (store, direct controller requests). */
  nc: NatsConnection;
  store: Store;
  /** The controller client, to check state behind the API's back. */
  client: ControllerClient;
  controller: Controller | undefined;
  worker: WorkerHandle | undefined;
  api: ApiServer;
  /** `<api url>/api/v1` */
  base: string;
  stopController(): Promise<void>;
  /** Stops the API, the controller and the worker; the server and the connections are the fixtures'. */
  close(): Promise<void>;
}

/** The nats fixtures (`testWithNatsServer`) the environment runs on. */
export interface EnvNats {
  natsServer: NatsServerHandle;
  connect: Connect;
}

export interface EnvOptions {
  worker?: boolean;
  api?: Partial<Omit<ApiOptions, 'nc' | 'logger'>>;
  /** The API's logger (default: the tests' `log`). */
  apiLogger?: ApiOptions['logger'];
}

export async function startEnv({ natsServer: server, connect: connection }: EnvNats, options: EnvOptions = {}): Promise<Env> {
  const nc = await connection('test');
  const store = await openStore(nc);
  let controller: Controller | undefined = await startTestController(await connection('controller'), { heartbeatTimeoutMs: 2_000, policy: POLICY });
  let worker: WorkerHandle | undefined;
  if (options.worker === true) worker = await startTestWorker(await connection('worker'), { registeredWithinMs: 10_000 });
  const api = await startApi({ nc: await connection('api'), logger: options.apiLogger ?? log, port: 0, checkResponses: true, ...options.api });
  const stopController = async () => {
    await controller?.stop();
    controller = undefined;
  };
  return {
    server,
    nc,
    store,
    client: controllerClient(nc),
    get controller() {
      return controller;
    },
    worker,
    api,
    base: `${api.url}/api/v1`,
    stopController,
    async close() {
      await api.close().catch(() => undefined);
      await stopController().catch(() => undefined);
      await worker?.stop('immediate').catch(() => undefined);
    },
  };
}

export type { ErrorRow, Job, PipelineResponse } from '../../src/api/schemas.js';

export interface Page<T> {
  data: T[];
  has_more: boolean;
}

export interface HttpResult<T = unknown> {
  status: number;
  headers: Headers;
  text: string;
  /** The parsed body, trusted to be a `T` (the assertions check it); undefined when empty or not JSON. */
  body: T;
}

export interface HttpOptions {
  /** A value to send as JSON, or a string sent as is. */
  body?: unknown;
  headers?: Record<string, string>;
}

export async function http<T = unknown>(url: string, method = 'GET', options: HttpOptions = {}): Promise<HttpResult<T>> {
  const headers: Record<string, string> = { ...options.headers };
  let body: string | undefined;
  if (options.body !== undefined) {
    body = typeof options.body === 'string' ? options.body : JSON.stringify(options.body);
    headers['content-type'] ??= 'application/json';
  }
  const res = await fetch(url, { method, headers, body, signal: AbortSignal.timeout(15_000) });
  const text = await res.text();
  let parsed: unknown;
  try {
    parsed = text === '' ? undefined : JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  return { status: res.status, headers: res.headers, text, body: parsed as T };
}

/** A 4xx/5xx answer: exactly `{"error": string}`, JSON. */
export function expectError(res: HttpResult<unknown>, status: number, mentions?: string | RegExp): void {
  expect({ status: res.status, text: res.text }).toMatchObject({ status });
  expect(res.headers.get('content-type')).toMatch(/^application\/json/);
  const body = res.body as { error?: unknown };
  expect(Object.keys(body)).toEqual(['error']);
  expect(typeof body.error).toBe('string');
  if (mentions !== undefined) expect(body.error).toMatch(mentions);
}

/** Polls the pipeline's job until `check` passes. */
export async function untilJob<T>(env: Env, id: string, check: (job: Job) => T, timeoutMs = 20_000): Promise<T> {
  return eventually(
    async () => {
      const res = await http<{ data: Job[] }>(`${env.base}/pipelines/${id}/jobs`);
      expect(res.status).toBe(200);
      return check(res.body.data[0]!);
    },
    { timeoutMs, intervalMs: 100 },
  );
}
