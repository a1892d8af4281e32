/**
 * `weir jobs list --watch`: the list drawn again when a job changes state (the caller follows every
 * job's state events) and every `refreshMs` besides, since the AGE column moves and a core NATS state
 * event can be lost. A burst of transitions is one redraw: after a change the list is read again once
 * `coalesceMs` have passed. On a terminal the screen is redrawn in place; elsewhere (a pipe, a file) a
 * list is printed again only when it changed, so a log of it reads as a history.
 */
import { setTimeout as sleep } from 'node:timers/promises';

/** Home, then clear the screen. */
const CLEAR_SCREEN = '\x1b[H\x1b[2J';
export const DEFAULT_REFRESH_MS = 5_000;
export const DEFAULT_COALESCE_MS = 100;

export interface ListWatchOptions<R> {
  /** The list as read before the watch began (printed first). */
  initial: R;
  /** Reads the list again; undefined when it could not (the caller said why), and the watch goes on. */
  fetch(): Promise<R | undefined>;
  render(reply: R, nowMs: number): string;
  /** What must differ for a list to be printed again off a terminal (not the ages, which always do). */
  identity(reply: R): string;
  /** Calls `changed` on every job state change until the returned function is called. */
  follow(changed: () => void): () => void;
  out(text: string): void;
  /** Redraw in place (a terminal), or print changed lists one after the other. */
  redraw: boolean;
  /** Resolves when the watch is to end (Ctrl-C, SIGTERM, the caller's signal). */
  stopped: Promise<void>;
  refreshMs?: number;
  coalesceMs?: number;
}

export async function watchList<R>(options: ListWatchOptions<R>): Promise<void> {
  const refreshMs = options.refreshMs ?? DEFAULT_REFRESH_MS;
  const coalesceMs = options.coalesceMs ?? DEFAULT_COALESCE_MS;
  let stopped = false;
  let changed = false;
  let wake: (() => void) | undefined;
  const unfollow = options.follow(() => {
    changed = true;
    wake?.();
  });
  void options.stopped.then(() => {
    stopped = true;
    wake?.();
  });
  let printed: string | undefined;
  const show = (reply: R) => {
    const text = options.render(reply, Date.now());
    if (options.redraw) {
      options.out(CLEAR_SCREEN + text);
      return;
    }
    const identity = options.identity(reply);
    if (identity === printed) return;
    options.out(printed === undefined ? text : `\n${text}`);
    printed = identity;
  };
  try {
    show(options.initial);
    while (!stopped) {
      if (!changed) {
        let timer: NodeJS.Timeout | undefined;
        await new Promise<void>((resolve) => {
          wake = resolve;
          timer = setTimeout(resolve, refreshMs);
        });
        clearTimeout(timer);
        wake = undefined;
      }
      if (stopped) break;
      if (changed) await sleep(coalesceMs);
      changed = false;
      // A stop does not wait for a read the controller is slow to answer.
      const reply = await Promise.race([options.fetch(), options.stopped.then(() => undefined)]);
      if (stopped) break;
      if (reply !== undefined) show(reply);
    }
  } finally {
    unfollow();
  }
}
