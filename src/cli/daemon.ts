/**
 * The life of a long-running command (`weir controller`, `weir worker`, `weir api`): it runs until
 * SIGTERM or SIGINT, until the process that started it is gone (`WEIR_PARENT_PID`, set by `weir up`), or
 * until it ends by itself; then it stops within its shutdown deadline, whatever NATS does. A stop that
 * does not finish in time exits the process with 1 at the deadline.
 */
import type { Logger } from 'pino';

/** How often a child checks that the process that started it still runs. */
export const PARENT_POLL_MS = 250;

/** Set by `weir up` on its children: the pid of the process whose end ends them too. */
export const PARENT_PID_ENV = 'WEIR_PARENT_PID';

export interface DaemonOptions {
  log: Logger;
  shutdownTimeoutMs: number;
  /** Resolves (or rejects) when the command ends by itself, e.g. its NATS connection closed for good. */
  ended: Promise<unknown>;
  /** Stops everything; resolves true when it all stopped cleanly. Called once. */
  stop(reason: string): Promise<boolean>;
  env?: NodeJS.ProcessEnv;
  /** Ends the command like SIGTERM does (tests). */
  signal?: AbortSignal;
  /** What the shutdown deadline does. Default: `process.exit`. */
  exit?: (code: number) => void;
}

type Ending = { requested: string } | { ended: unknown };

/**
 * Resolves when the process that started this one is gone: its pid is no longer our parent (we were
 * re-parented), however it ended, SIGKILL included. Never resolves without `WEIR_PARENT_PID`.
 */
function parentGone(env: NodeJS.ProcessEnv): { gone: Promise<void>; stop(): void } {
  const parent = Number(env[PARENT_PID_ENV]);
  if (!Number.isSafeInteger(parent) || parent <= 0) return { gone: new Promise(() => undefined), stop: () => undefined };
  let timer: NodeJS.Timeout | undefined;
  const gone = new Promise<void>((resolve) => {
    const check = () => {
      if (process.ppid === parent) return;
      clearInterval(timer);
      resolve();
    };
    timer = setInterval(check, PARENT_POLL_MS);
    timer.unref();
    check();
  });
  return { gone, stop: () => clearInterval(timer) };
}

/** Runs until told to stop (or ended), then stops; resolves with the exit code. */
export async function runDaemon(options: DaemonOptions): Promise<number> {
  const { log, shutdownTimeoutMs } = options;
  const env = options.env ?? process.env;
  let onRequest: (reason: string) => void = () => undefined;
  const requested = new Promise<string>((resolve) => (onRequest = resolve));
  const onSignal = (signal: NodeJS.Signals) => onRequest(signal);
  const signals = ['SIGTERM', 'SIGINT'] as const;
  signals.forEach((signal) => process.once(signal, onSignal));
  const onAbort = () => onRequest('aborted');
  options.signal?.addEventListener('abort', onAbort, { once: true });
  if (options.signal?.aborted === true) onAbort();
  const parent = parentGone(env);
  void parent.gone.then(() => onRequest('the process that started it is gone'));

  let ending: Ending;
  try {
    ending = await Promise.race([
      requested.then((reason): Ending => ({ requested: reason })),
      options.ended.then(
        (value): Ending => ({ ended: value }),
        (err: unknown): Ending => ({ ended: err }),
      ),
    ]);
  } finally {
    signals.forEach((signal) => process.off(signal, onSignal));
    options.signal?.removeEventListener('abort', onAbort);
    parent.stop();
  }

  const reason = 'requested' in ending ? ending.requested : 'it ended by itself';
  if ('requested' in ending) log.info({ reason, shutdownTimeoutMs }, 'stopping');
  else log.error({ err: ending.ended }, 'ended by itself: stopping');
  const deadline = setTimeout(() => {
    log.error({ shutdownTimeoutMs }, 'the stop did not finish within the shutdown deadline: exiting');
    (options.exit ?? ((code: number) => process.exit(code)))(1);
  }, shutdownTimeoutMs);
  deadline.unref();
  let clean: boolean;
  try {
    clean = await options.stop(reason);
  } catch (err) {
    log.error({ err }, 'the stop failed');
    clean = false;
  } finally {
    clearTimeout(deadline);
  }
  if (!clean) log.warn('stopped, but not cleanly');
  return 'requested' in ending && clean ? 0 : 1;
}
