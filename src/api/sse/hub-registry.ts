/**
 * The hubs of one kind by job, shared by the SSE routes: `join` starts the job's hub if it has none (or
 * its hub has stopped), makes the subscriber a member and waits for the hub to be ready. A hub forgets
 * itself here when it stops, through the `onStopped` the registry hands its factory.
 */

/** What the registry needs of a hub. */
export interface Hub<S> {
  readonly running: boolean;
  /** Settles once the hub follows its source; a rejection means it never will. */
  readonly ready: Promise<void>;
  /** Keeps the hub alive for `sub`. */
  add(sub: S): void;
  stop(): void;
}

export interface HubRegistryOptions<H> {
  /** A new hub for `jobId`; it must call `onStopped` with itself when it stops. */
  create(jobId: string, onStopped: (hub: H) => void): H;
  /** Why `join` failed when the hub stopped while the subscriber waited for it to be ready. */
  stoppedMessage(hub: H, jobId: string): string;
}

export class HubRegistry<S, H extends Hub<S>> {
  private readonly hubs = new Map<string, H>();

  constructor(private readonly options: HubRegistryOptions<H>) {}

  get count(): number {
    return this.hubs.size;
  }

  get(jobId: string): H | undefined {
    return this.hubs.get(jobId);
  }

  values(): IterableIterator<H> {
    return this.hubs.values();
  }

  /** The job's hub, started and ready, with `sub` a member. */
  async join(jobId: string, sub: S): Promise<H> {
    let hub = this.hubs.get(jobId);
    if (hub === undefined || !hub.running) {
      const created = this.options.create(jobId, (h) => {
        if (this.hubs.get(jobId) === h) this.hubs.delete(jobId);
      });
      this.hubs.set(jobId, created);
      hub = created;
    }
    hub.add(sub);
    try {
      await hub.ready;
    } catch (err) {
      hub.stop();
      throw err;
    }
    if (!hub.running) throw new Error(this.options.stoppedMessage(hub, jobId));
    return hub;
  }

  stopAll(): void {
    for (const hub of [...this.hubs.values()]) hub.stop();
    this.hubs.clear();
  }
}

/**
 * The membership every hub keeps: a member keeps the hub alive (it may still be catching up), a live
 * member also gets what the hub reads, and the last member out stops the hub.
 */
export abstract class SubscriberHub<S> implements Hub<S> {
  protected readonly members = new Set<S>();
  protected readonly live = new Set<S>();
  protected stopped = false;
  abstract readonly ready: Promise<void>;

  get size(): number {
    return this.members.size;
  }

  get running(): boolean {
    return !this.stopped;
  }

  /** Keeps the hub alive for `sub`. */
  add(sub: S): void {
    this.members.add(sub);
  }

  /** `sub` gets everything the hub reads from now on. */
  addLive(sub: S): void {
    this.members.add(sub);
    this.live.add(sub);
  }

  /** Removes `sub`; the last one out stops the hub. */
  remove(sub: S): void {
    this.members.delete(sub);
    this.live.delete(sub);
    if (this.members.size === 0) this.stop();
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.members.clear();
    this.live.clear();
    this.halt();
  }

  /** Stops following and tells the hub's owner; called once, by `stop`, after the members are gone. */
  protected abstract halt(): void;
}
