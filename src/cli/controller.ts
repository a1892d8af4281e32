/**
 * `weir controller [--nats URL] [--heartbeat-timeout MS] [--heartbeat-interval MS] [--allowed-restarts N] [--retained-checkpoints K] [--checkpoint-grid-ms MS]`: runs the controller until SIGTERM/SIGINT,
 * then stops it (jobs keep their persisted state; the next controller resumes them) and exits 0.
 */
import { parseArgs } from 'node:util';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { pino } from 'pino';
import { startController, type Controller } from '../controller/controller.js';
import { natsOptions } from './main.js';
import { CHECKPOINT_SLOTS } from '../protocol/index.js';

/** The shortest checkpoint interval: a coarser grid would move checkpoints by more than one. */
const MAX_CHECKPOINT_GRID_MS = 1_000;

export const CONTROLLER_USAGE = `Usage: weir controller [--nats URL] [--heartbeat-timeout MS] [--heartbeat-interval MS] [--allowed-restarts N] [--retained-checkpoints K] [--checkpoint-grid-ms MS]
  --nats URL               NATS server (default: $NATS_URL or nats://127.0.0.1:4222)
  --heartbeat-timeout MS   a worker silent this long is lost (default 30000)
  --heartbeat-interval MS  how often workers are told to heartbeat (default 5000)
  --allowed-restarts N     unhealthy restarts before a job fails (default 20; --allowed-restarts=-1: unlimited)
  --retained-checkpoints K restorable checkpoints kept per job, 1–10 (default 10)
  --checkpoint-grid-ms MS  periodic checkpoints start on this grid, so those due together start in one
                           batch: less CPU per checkpoint, a little more latency (default 10, env
                           WEIR_CHECKPOINT_GRID_MS; 1: exact due times)
credentials from NATS_USER/NATS_PASSWORD, NATS_TOKEN or NATS_CREDS (a .creds file);
WEIR_INSPECT=<port> serves the job actors to the Stately inspector`;

export interface ControllerArgs {
  url: string;
  heartbeatTimeoutMs: number | undefined;
  heartbeatIntervalMs?: number;
  allowedRestarts?: number;
  retainedCheckpoints?: number;
  checkpointGridMs?: number;
}

export function positiveInteger(raw: string, flag: string, min = 1): number {
  const n = Number(raw);
  if (!/^-?\d+$/.test(raw) || !Number.isSafeInteger(n) || n < min) {
    throw new Error(`${flag} must be ${min === 1 ? 'a positive integer' : `an integer ≥ ${min}`}, got ${JSON.stringify(raw)}`);
  }
  return n;
}

export function parseControllerArgs(args: readonly string[], env: NodeJS.ProcessEnv = process.env): ControllerArgs {
  const { values } = parseArgs({
    args: [...args],
    options: { nats: { type: 'string' }, 'heartbeat-timeout': { type: 'string' }, 'heartbeat-interval': { type: 'string' }, 'allowed-restarts': { type: 'string' }, 'retained-checkpoints': { type: 'string' }, 'checkpoint-grid-ms': { type: 'string' } },
    strict: true,
    allowPositionals: false,
  });
  const timeout = values['heartbeat-timeout'];
  const interval = values['heartbeat-interval'];
  const restarts = values['allowed-restarts'];
  const retained = values['retained-checkpoints'];
  const retainedCheckpoints = retained === undefined ? undefined : positiveInteger(retained, '--retained-checkpoints K');
  if (retainedCheckpoints !== undefined && retainedCheckpoints > CHECKPOINT_SLOTS) throw new Error(`--retained-checkpoints K must be at most ${CHECKPOINT_SLOTS}, got ${retainedCheckpoints}`);
  const grid = values['checkpoint-grid-ms'] ?? env['WEIR_CHECKPOINT_GRID_MS'];
  const checkpointGridMs = grid === undefined ? undefined : positiveInteger(grid, '--checkpoint-grid-ms MS');
  if (checkpointGridMs !== undefined && checkpointGridMs > MAX_CHECKPOINT_GRID_MS) throw new Error(`--checkpoint-grid-ms MS must be at most ${MAX_CHECKPOINT_GRID_MS}, got ${checkpointGridMs}`);
  return {
    url: values.nats ?? env['NATS_URL'] ?? 'nats://127.0.0.1:4222',
    heartbeatTimeoutMs: timeout === undefined ? undefined : positiveInteger(timeout, '--heartbeat-timeout MS'),
    ...(interval === undefined ? {} : { heartbeatIntervalMs: positiveInteger(interval, '--heartbeat-interval MS') }),
    ...(restarts === undefined ? {} : { allowedRestarts: positiveInteger(restarts, '--allowed-restarts N', -1) }),
    ...(retainedCheckpoints === undefined ? {} : { retainedCheckpoints }),
    ...(checkpointGridMs === undefined ? {} : { checkpointGridMs }),
  };
}

/** Runs the controller command; resolves with the exit code. */
export async function controllerCommand(args: readonly string[], out: (line: string) => void): Promise<number> {
  let parsed: ControllerArgs;
  try {
    parsed = parseControllerArgs(args);
  } catch (err) {
    out(`weir controller: ${err instanceof Error ? err.message : String(err)}\n\n${CONTROLLER_USAGE}`);
    return 2;
  }
  const log = pino({ name: 'weir-controller', level: process.env['WEIR_LOG_LEVEL'] ?? 'info' });
  let nc: NatsConnection;
  try {
    nc = await connect({ ...natsOptions(parsed.url), name: 'weir-controller' });
  } catch (err) {
    log.error({ err, url: parsed.url }, 'cannot connect to NATS');
    return 1;
  }
  let controller: Controller;
  try {
    controller = await startController(nc, {
      log,
      ...(parsed.heartbeatTimeoutMs === undefined ? {} : { heartbeatTimeoutMs: parsed.heartbeatTimeoutMs }),
      ...(parsed.heartbeatIntervalMs === undefined ? {} : { heartbeatIntervalMs: parsed.heartbeatIntervalMs }),
      ...(parsed.allowedRestarts === undefined ? {} : { policy: { allowedRestarts: parsed.allowedRestarts } }),
      ...(parsed.retainedCheckpoints === undefined ? {} : { retainedCheckpoints: parsed.retainedCheckpoints }),
      ...(parsed.checkpointGridMs === undefined ? {} : { checkpointGridMs: parsed.checkpointGridMs }),
    });
  } catch (err) {
    log.error({ err }, 'cannot start the controller');
    await nc.close();
    return 1;
  }
  const closed = nc.closed();
  let onSignal: (signal: NodeJS.Signals) => void = () => undefined;
  const signalled = new Promise<NodeJS.Signals>((resolve) => (onSignal = resolve));
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
  const outcome = await Promise.race([signalled.then((signal) => ({ signal })), closed.then((err) => ({ closed: err }))]);
  process.off('SIGTERM', onSignal);
  process.off('SIGINT', onSignal);
  if ('signal' in outcome) {
    log.info({ signal: outcome.signal }, 'signal received: stopping');
    await controller.stop();
    await nc.drain().catch((err: unknown) => log.warn({ err }, 'could not drain the connection'));
    return 0;
  }
  log.error({ err: outcome.closed }, 'the NATS connection closed');
  await controller.stop();
  return 1;
}
