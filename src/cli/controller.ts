/**
 * `weir controller`: runs the controller until SIGTERM/SIGINT (or until the `weir up` that started it is
 * gone), then stops it within the shutdown deadline (jobs keep their persisted state; the next controller
 * resumes them) and exits 0, or 1 when it could not stop cleanly.
 */
import { readFileSync } from 'node:fs';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { pino } from 'pino';
import type { JobPolicy } from '../../machines/job/types.js';
import { startController, type Controller } from '../controller/controller.js';
import { inspectorFromEnv, type JobInspector } from '../inspect/index.js';
import { jobPolicyOverrides } from '../controller/job-policy.js';
import { CHECKPOINT_SLOTS } from '../protocol/index.js';
import { drainWithin } from '../shared/nats-close.js';
import { commandArgs, parseCommandArgs, positiveInteger, REPLICAS_OPTION, REPLICAS_USAGE, replicasOf, SHUTDOWN_OPTION, SHUTDOWN_USAGE, shutdownTimeoutOf, UsageError } from './args.js';
import { runDaemon } from './daemon.js';
import { natsOptions } from './nats-options.js';

/** Below this a lease is renewed more often than NATS answers a busy KV write. */
const MIN_LEASE_TTL_MS = 300;

/** The shortest checkpoint interval: a coarser grid would move checkpoints by more than one. */
const MAX_CHECKPOINT_GRID_MS = 1_000;

export const CONTROLLER_USAGE = `Usage: weir controller [options]   runs the controller until SIGTERM/SIGINT
  --nats URL               NATS server (default: $NATS_URL or nats://127.0.0.1:4222)
  --id NAME                this controller's name among several (env WEIR_CONTROLLER_ID; default <hostname>-<pid>);
                           a controller restarted under its name takes its jobs back at once
  --lease-ttl MS           shard lease TTL: a dead controller's jobs move after it (env WEIR_LEASE_TTL_MS;
                           default 10000; more than a NATS Raft election on a cluster)
  --heartbeat-timeout MS   a worker silent this long is lost (default 30000)
  --heartbeat-interval MS  how often workers are told to heartbeat (default 5000)
  --allowed-restarts N     unhealthy restarts before a job fails (default 20; --allowed-restarts=-1: unlimited)
  --retained-checkpoints K restorable checkpoints kept per job, 1–10 (default 10)
  --policy-file F          job policy overrides, JSON (env WEIR_POLICY_FILE): timeouts, retry budgets, backoffs,
                           e.g. {"stopTimeoutMs": 30000, "restartBackoff": {"maxMs": 10000}}; docs/operations.md
  --checkpoint-grid-ms MS  periodic checkpoints start on this grid, so those due together start in one
                           batch: less CPU per checkpoint, a little more latency (default 10, env
                           WEIR_CHECKPOINT_GRID_MS; 1: exact due times)
  ${REPLICAS_USAGE}
  ${SHUTDOWN_USAGE}
credentials from NATS_USER/NATS_PASSWORD, NATS_TOKEN or NATS_CREDS (a .creds file);
WEIR_INSPECT=<port> serves the job actors to the Stately inspector`;

export interface ControllerArgs {
  url: string;
  heartbeatTimeoutMs: number | undefined;
  heartbeatIntervalMs?: number;
  allowedRestarts?: number;
  retainedCheckpoints?: number;
  checkpointGridMs?: number;
  /** Replicas of the buckets and streams this process creates. */
  replicas: number;
  shutdownTimeoutMs: number;
  /** A JSON file of job policy overrides (`jobPolicyOverridesSchema`). */
  policyFile?: string;
  /** This controller's name among several. */
  controllerId?: string;
  leaseTtlMs?: number;
}

/** 1–128 characters that may stand in a NATS subject token. */
const CONTROLLER_ID_PATTERN = /^[A-Za-z0-9_-]{1,128}$/;

export function parseControllerArgs(args: readonly string[], env: NodeJS.ProcessEnv = process.env): ControllerArgs {
  const { values } = parseCommandArgs(args, {
    nats: { type: 'string' },
    'heartbeat-timeout': { type: 'string' },
    'heartbeat-interval': { type: 'string' },
    'allowed-restarts': { type: 'string' },
    'retained-checkpoints': { type: 'string' },
    'checkpoint-grid-ms': { type: 'string' },
    'policy-file': { type: 'string' },
    id: { type: 'string' },
    'lease-ttl': { type: 'string' },
    ...REPLICAS_OPTION,
    ...SHUTDOWN_OPTION,
  });
  const timeout = values['heartbeat-timeout'];
  const interval = values['heartbeat-interval'];
  const restarts = values['allowed-restarts'];
  const retained = values['retained-checkpoints'];
  const retainedCheckpoints = retained === undefined ? undefined : positiveInteger(retained, '--retained-checkpoints K');
  if (retainedCheckpoints !== undefined && retainedCheckpoints > CHECKPOINT_SLOTS) throw new UsageError(`--retained-checkpoints K must be at most ${CHECKPOINT_SLOTS}, got ${retainedCheckpoints}`);
  const grid = values['checkpoint-grid-ms'] ?? env['WEIR_CHECKPOINT_GRID_MS'];
  const checkpointGridMs = grid === undefined ? undefined : positiveInteger(grid, '--checkpoint-grid-ms MS');
  if (checkpointGridMs !== undefined && checkpointGridMs > MAX_CHECKPOINT_GRID_MS) throw new UsageError(`--checkpoint-grid-ms MS must be at most ${MAX_CHECKPOINT_GRID_MS}, got ${checkpointGridMs}`);
  const controllerId = values.id ?? env['WEIR_CONTROLLER_ID'];
  if (controllerId !== undefined && !CONTROLLER_ID_PATTERN.test(controllerId)) throw new UsageError(`--id NAME must be 1–128 characters from A-Z a-z 0-9 _ -, got ${JSON.stringify(controllerId)}`);
  const ttl = values['lease-ttl'] ?? env['WEIR_LEASE_TTL_MS'];
  const leaseTtlMs = ttl === undefined ? undefined : positiveInteger(ttl, '--lease-ttl MS');
  if (leaseTtlMs !== undefined && leaseTtlMs < MIN_LEASE_TTL_MS) throw new UsageError(`--lease-ttl MS must be at least ${MIN_LEASE_TTL_MS}, got ${leaseTtlMs}`);
  return {
    url: values.nats ?? env['NATS_URL'] ?? 'nats://127.0.0.1:4222',
    ...(controllerId === undefined ? {} : { controllerId }),
    ...(leaseTtlMs === undefined ? {} : { leaseTtlMs }),
    heartbeatTimeoutMs: timeout === undefined ? undefined : positiveInteger(timeout, '--heartbeat-timeout MS'),
    ...(interval === undefined ? {} : { heartbeatIntervalMs: positiveInteger(interval, '--heartbeat-interval MS') }),
    ...(restarts === undefined ? {} : { allowedRestarts: positiveInteger(restarts, '--allowed-restarts N', -1) }),
    ...(retainedCheckpoints === undefined ? {} : { retainedCheckpoints }),
    ...(checkpointGridMs === undefined ? {} : { checkpointGridMs }),
    replicas: replicasOf(values, env),
    shutdownTimeoutMs: shutdownTimeoutOf(values, env),
    ...policyFileOf(values['policy-file'] ?? env['WEIR_POLICY_FILE']),
  };
}

function policyFileOf(path: string | undefined): { policyFile?: string } {
  if (path === undefined) return {};
  if (path === '') throw new UsageError('--policy-file must not be empty');
  return { policyFile: path };
}

/** The job policy from `--policy-file`, with `--allowed-restarts` over it; throws a `UsageError` naming what is wrong. */
export function jobPolicyOf(parsed: Pick<ControllerArgs, 'policyFile' | 'allowedRestarts'>, read: (path: string) => string = (path) => readFileSync(path, 'utf8')): Partial<JobPolicy> {
  let policy: Partial<JobPolicy> = {};
  if (parsed.policyFile !== undefined) {
    let json: unknown;
    try {
      json = JSON.parse(read(parsed.policyFile));
    } catch (err) {
      throw new UsageError(`cannot read the policy file ${parsed.policyFile}: ${err instanceof Error ? err.message : String(err)}`);
    }
    try {
      policy = jobPolicyOverrides(json);
    } catch (err) {
      throw new UsageError(`the policy file ${parsed.policyFile}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  return parsed.allowedRestarts === undefined ? policy : { ...policy, allowedRestarts: parsed.allowedRestarts };
}

/** Runs the controller command; resolves with the exit code. */
export async function controllerCommand(args: readonly string[], out: (line: string) => void, env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const given = commandArgs('weir controller', args, { out, err: out }, CONTROLLER_USAGE, () => {
    const parsed = parseControllerArgs(args, env);
    return { parsed, policy: jobPolicyOf(parsed) };
  });
  if (typeof given === 'number') return given;
  const { parsed, policy } = given;
  const log = pino({ name: 'weir-controller', level: env['WEIR_LOG_LEVEL'] ?? 'info' });
  let nc: NatsConnection;
  try {
    nc = await connect({ ...natsOptions(parsed.url, env), name: 'weir-controller' });
  } catch (err) {
    log.error({ err, url: parsed.url }, 'cannot connect to NATS');
    return 1;
  }
  let controller: Controller;
  let inspector: JobInspector | undefined;
  try {
    inspector = await inspectorFromEnv(env, log);
    controller = await startController(nc, {
      log,
      replicas: parsed.replicas,
      inspector,
      ...(parsed.controllerId === undefined ? {} : { controllerId: parsed.controllerId }),
      ...(parsed.leaseTtlMs === undefined ? {} : { leaseTtlMs: parsed.leaseTtlMs }),
      ...(parsed.heartbeatTimeoutMs === undefined ? {} : { heartbeatTimeoutMs: parsed.heartbeatTimeoutMs }),
      ...(parsed.heartbeatIntervalMs === undefined ? {} : { heartbeatIntervalMs: parsed.heartbeatIntervalMs }),
      policy,
      ...(parsed.retainedCheckpoints === undefined ? {} : { retainedCheckpoints: parsed.retainedCheckpoints }),
      ...(parsed.checkpointGridMs === undefined ? {} : { checkpointGridMs: parsed.checkpointGridMs }),
    });
  } catch (err) {
    log.error({ err }, 'cannot start the controller');
    await inspector?.stop();
    await nc.close();
    return 1;
  }
  return runDaemon({
    log,
    env,
    shutdownTimeoutMs: parsed.shutdownTimeoutMs,
    ended: nc.closed(),
    // Jobs keep their persisted state: the next controller resumes them.
    stop: async () => {
      await controller.stop();
      await inspector?.stop();
      return drainWithin(nc, parsed.shutdownTimeoutMs);
    },
  });
}
