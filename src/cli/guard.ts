/**
 * `weir guard -- COMMAND [ARGS…]`: runs a program that cannot watch its parent itself (nats-server, for
 * `weir up`), and ends it when the process that started the guard is gone (`WEIR_PARENT_PID`), however
 * that one ended. SIGTERM and SIGINT are passed on to the program; the guard exits with its code.
 *
 * Once the parent is gone, the guard first waits `WEIR_GUARD_GRACE_MS` (the time `weir up`'s other
 * children have to stop, since they may need the program meanwhile), then sends the program's stop signal
 * (`WEIR_GUARD_STOP_SIGNAL`, default SIGTERM; the guard's own SIGTERM and SIGINT become it too), and
 * SIGKILL after the shutdown timeout.
 */
import { spawn } from 'node:child_process';
import { constants } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { positiveInteger, shutdownTimeoutOf, UsageError, usageLine } from './args.js';
import { PARENT_PID_ENV, PARENT_POLL_MS } from './daemon.js';

export const GUARD_USAGE = `Usage: weir guard -- COMMAND [ARGS…]
Runs COMMAND and ends it when the process named by ${PARENT_PID_ENV} is gone: after WEIR_GUARD_GRACE_MS
(default 0) it sends WEIR_GUARD_STOP_SIGNAL (default SIGTERM), SIGKILL after WEIR_SHUTDOWN_TIMEOUT_MS more.
SIGTERM and SIGINT become the stop signal; the exit code is COMMAND's.`;

export async function guardCommand(args: readonly string[], err: (line: string) => void, env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const separator = args.indexOf('--');
  const [command, ...rest] = separator < 0 ? [] : args.slice(separator + 1);
  let graceMs: number;
  let shutdownTimeoutMs: number;
  try {
    if (command === undefined) throw new UsageError('expected -- COMMAND [ARGS…]');
    graceMs = env['WEIR_GUARD_GRACE_MS'] === undefined ? 0 : positiveInteger(env['WEIR_GUARD_GRACE_MS'], 'WEIR_GUARD_GRACE_MS', 0);
    shutdownTimeoutMs = shutdownTimeoutOf({}, env);
  } catch (e) {
    err(usageLine('weir guard', e));
    return 2;
  }
  const child = spawn(command, rest, { stdio: 'inherit', env });
  const exited = new Promise<number>((resolve) => {
    child.once('exit', (code, signal) => resolve(code ?? 128 + (signal === null ? 0 : constants.signals[signal])));
    child.once('error', (e) => {
      err(`weir guard: cannot start ${command}: ${e.message}`);
      resolve(127);
    });
  });
  // The signal the program stops cleanly on (nats-server exits 1 on SIGTERM, 0 on SIGINT).
  const stopSignal = (env['WEIR_GUARD_STOP_SIGNAL'] ?? 'SIGTERM') as NodeJS.Signals;
  const forward = () => child.kill(stopSignal);
  const signals = ['SIGTERM', 'SIGINT'] as const;
  signals.forEach((signal) => process.on(signal, forward));
  const parent = Number(env[PARENT_PID_ENV]);
  const watch = Number.isSafeInteger(parent) && parent > 0
    ? setInterval(() => {
        if (process.ppid === parent) return;
        clearInterval(watch);
        void (async () => {
          await sleep(graceMs, undefined, { ref: false });
          child.kill(stopSignal);
          await sleep(shutdownTimeoutMs, undefined, { ref: false });
          child.kill('SIGKILL');
        })();
      }, PARENT_POLL_MS)
    : undefined;
  const code = await exited;
  clearInterval(watch);
  signals.forEach((signal) => process.off(signal, forward));
  return code;
}
