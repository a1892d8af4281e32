/**
 * Many deadlines on one Node timer: a binary min-heap of (deadline, callback) with the timer armed for
 * the earliest. Ten thousand jobs' checkpoint schedules then cost one timer, and deadlines that fall due
 * together run in one batch while the code is hot (docs/design-notes.md: spread-out single events cost
 * several times more CPU than the same events in a burst).
 *
 * Hand-written rather than a heap package: cancellation and the single-timer re-arm are the whole of it.
 */

/** setTimeout overflows to 1 ms above this; a longer wait re-arms when it fires. */
const MAX_TIMER_MS = 2_147_483_647;
const noop = (): void => {};

export interface TimerHandle {
  /** Epoch ms the callback is due at. */
  readonly at: number;
  /** Idempotent; a no-op once the callback ran. */
  cancel(): void;
}

interface Entry extends TimerHandle {
  fn: () => void;
  seq: number;
  live: boolean;
}

export interface TimerQueueOptions {
  /** Called with whatever a callback throws; the queue carries on. */
  onError?: (err: unknown) => void;
  now?: () => number;
}

export class TimerQueue {
  private readonly heap: Entry[] = [];
  private readonly now: () => number;
  private readonly onError: (err: unknown) => void;
  private timer: NodeJS.Timeout | null = null;
  private armedFor = Infinity;
  private seq = 0;
  private dead = 0;
  private closed = false;

  constructor(options: TimerQueueOptions = {}) {
    this.now = options.now ?? Date.now;
    this.onError = options.onError ?? (() => {});
  }

  /** Live callbacks waiting. */
  get size(): number {
    return this.heap.length - this.dead;
  }

  /** Runs `fn` once `now() >= at` (never before). */
  schedule(at: number, fn: () => void): TimerHandle {
    if (this.closed) throw new Error('the timer queue is closed');
    const entry: Entry = {
      at,
      fn,
      seq: this.seq++,
      live: true,
      cancel: () => {
        if (!entry.live) return;
        entry.live = false;
        // A dead entry waits in the heap until it surfaces or a compaction, seconds later; its callback
        // (a checkpoint's timeout closes over the whole checkpoint) must not keep what it holds alive.
        entry.fn = noop;
        this.dead++;
        // Dead entries are dropped lazily; compact when they dominate so memory follows the live count.
        if (this.dead > 64 && this.dead * 2 > this.heap.length) this.compact();
      },
    };
    this.push(entry);
    if (at < this.armedFor) this.arm();
    return entry;
  }

  /** Cancels everything; later `schedule` calls throw. */
  close(): void {
    this.closed = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    for (const e of this.heap) e.live = false;
    this.heap.length = 0;
    this.dead = 0;
  }

  private arm(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.armedFor = Infinity;
    this.dropDeadTop();
    const first = this.heap[0];
    if (first === undefined) return;
    this.armedFor = first.at;
    this.timer = setTimeout(() => this.fire(), Math.min(MAX_TIMER_MS, Math.max(0, first.at - this.now())));
    // The queue must not keep a process alive on its own: its owners hold connections that do.
    this.timer.unref();
  }

  private fire(): void {
    this.timer = null;
    this.armedFor = Infinity;
    const now = this.now();
    for (;;) {
      this.dropDeadTop();
      const first = this.heap[0];
      if (first === undefined || first.at > now) break;
      this.pop();
      first.live = false;
      try {
        first.fn();
      } catch (err) {
        this.onError(err);
      }
    }
    if (!this.closed) this.arm();
  }

  private dropDeadTop(): void {
    while (this.heap.length > 0 && !this.heap[0]!.live) {
      this.pop();
      this.dead--;
    }
  }

  private compact(): void {
    const live = this.heap.filter((e) => e.live);
    this.heap.length = 0;
    this.dead = 0;
    for (const e of live) this.push(e);
  }

  private less(a: Entry, b: Entry): boolean {
    return a.at < b.at || (a.at === b.at && a.seq < b.seq);
  }

  private push(entry: Entry): void {
    const h = this.heap;
    h.push(entry);
    let i = h.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.less(h[i]!, h[parent]!)) break;
      [h[i], h[parent]] = [h[parent]!, h[i]!];
      i = parent;
    }
  }

  private pop(): Entry | undefined {
    const h = this.heap;
    const top = h[0];
    const last = h.pop();
    if (h.length > 0 && last !== undefined) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && this.less(h[l]!, h[m]!)) m = l;
        if (r < h.length && this.less(h[r]!, h[m]!)) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m]!, h[i]!];
        i = m;
      }
    }
    return top;
  }
}
