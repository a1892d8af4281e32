/**
 * `weir worker --slots N`: runs a worker until SIGTERM/SIGINT (or until the `weir up` that started it is
 * gone), then stops its tasks and deregisters within the shutdown deadline, whatever NATS does.
 */
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { pino } from 'pino';
import { startWorker, type WorkerHandle } from '../worker/process.js';
import { drainWithin } from '../shared/nats-close.js';
import { commandArgs, parseCommandArgs, positiveInteger, REPLICAS_OPTION, REPLICAS_USAGE, replicasOf, SHUTDOWN_OPTION, SHUTDOWN_USAGE, shutdownTimeoutOf, UsageError } from './args.js';
import { runDaemon } from './daemon.js';
import { natsOptions } from './nats-options.js';

export const WORKER_USAGE = `Usage: weir worker --slots N [options]   runs a worker until SIGTERM/SIGINT
  --slots N               task slots (required)
  --id ID                 worker id (default: <hostname>-<pid>-<random>)
  --nats URL              NATS server (default: $NATS_URL or nats://127.0.0.1:4222)
  --max-deltas N          deltas of a state table before a full snapshot (default 10)
  --max-delta-bytes B     bytes of deltas of a state table before a full snapshot (default 8 MiB)
  ${REPLICAS_USAGE}
  ${SHUTDOWN_USAGE}
credentials from NATS_USER/NATS_PASSWORD, NATS_TOKEN, NATS_NKEY_SEED_FILE or NATS_CREDS;
TLS from NATS_TLS_CA, NATS_TLS_CERT and NATS_TLS_KEY`;

export interface WorkerArgs {
  slots: number;
  id: string | undefined;
  url: string;
  /** When a state table's delta chain is compacted into a full snapshot. */
  incrementalState: { maxDeltas?: number; maxDeltaBytes?: number };
  /** Replicas of the buckets and streams this process creates. */
  replicas: number;
  shutdownTimeoutMs: number;
}

function countArg(value: string | undefined, flag: string): number | undefined {
  return value === undefined ? undefined : positiveInteger(value, flag, 0);
}

/** `weir worker` arguments; throws a `UsageError` with the reason on bad input. */
export function parseWorkerArgs(args: readonly string[], env: NodeJS.ProcessEnv = process.env): WorkerArgs {
  const { values } = parseCommandArgs(args, {
    slots: { type: 'string' },
    id: { type: 'string' },
    nats: { type: 'string' },
    'max-deltas': { type: 'string' },
    'max-delta-bytes': { type: 'string' },
    ...REPLICAS_OPTION,
    ...SHUTDOWN_OPTION,
  });
  const slots = Number(values.slots);
  if (values.slots === undefined || !Number.isSafeInteger(slots) || slots < 1) throw new UsageError('--slots N (a positive integer) is required');
  const maxDeltas = countArg(values['max-deltas'], '--max-deltas');
  const maxDeltaBytes = countArg(values['max-delta-bytes'], '--max-delta-bytes');
  return {
    slots,
    id: values.id,
    url: values.nats ?? env['NATS_URL'] ?? 'nats://127.0.0.1:4222',
    incrementalState: { ...(maxDeltas === undefined ? {} : { maxDeltas }), ...(maxDeltaBytes === undefined ? {} : { maxDeltaBytes }) },
    replicas: replicasOf(values, env),
    shutdownTimeoutMs: shutdownTimeoutOf(values, env),
  };
}

export async function workerCommand(args: readonly string[], out: (line: string) => void, env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const parsed = commandArgs('weir worker', args, { out, err: out }, WORKER_USAGE, () => parseWorkerArgs(args, env));
  if (typeof parsed === 'number') return parsed;
  const { slots, id, incrementalState, shutdownTimeoutMs } = parsed;
  const log = pino({ name: 'weir-worker', level: env['WEIR_LOG_LEVEL'] ?? 'info' });
  let nc: NatsConnection;
  try {
    nc = await connect({ ...natsOptions(parsed.url, env), name: `weir-worker${id === undefined ? '' : `-${id}`}` });
  } catch (err) {
    log.error({ err, url: parsed.url }, 'cannot connect to NATS');
    return 1;
  }
  let worker: WorkerHandle;
  try {
    worker = startWorker(nc, { slots, log, incrementalState, replicas: parsed.replicas, stopTimeoutMs: shutdownTimeoutMs, ...(id === undefined ? {} : { workerId: id }) });
  } catch (err) {
    log.error({ err }, 'cannot start the worker');
    await nc.close();
    return 1;
  }
  return runDaemon({
    log,
    env,
    shutdownTimeoutMs,
    ended: worker.closed,
    stop: async () => (await worker.stop('immediate')) && (await drainWithin(nc, shutdownTimeoutMs)),
  });
}
