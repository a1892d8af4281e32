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
