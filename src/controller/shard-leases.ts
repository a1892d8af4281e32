/**
 * Leases on shards of jobs (docs/high-availability.md): which controller owns which of the `shards`
 * shards, in the KV bucket `weir_leases`. Every lease write is a compare-and-set that the stream leader
 * decides, so two controllers never both win a shard. Expiry needs no trusted clock: a contender judges a
 * lease expired when, on its own monotonic clock, no new revision of it has been seen for a TTL before the
 * newest of its own writes its watch delivered back (a stalled watch proves nothing expired), and a
 * holder stops counting on a lease once a TTL (less a margin) has passed since it sent its last
 * successful renewal, whatever it was doing meanwhile (a paused process steps down on waking).
 *
 * Each controller also keeps a presence key, so the holders see a newcomer and give up shards beyond a
 * fair share (`ceil(shards / live controllers)`), which the newcomer then takes: within one lease period.
 * A controller restarted under the same id takes back the leases that still name it at once: they are
 * its own, and nobody else can have acted on them since (each would have taken the lease first).
 */
import { Kvm, type KV, type KvEntry, type KvWatchEntry } from '@nats-io/kv';
import type { NatsConnection, QueuedIterator } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';

export const LEASES_BUCKET = 'weir_leases';
export const DEFAULT_SHARDS = 128;
export const DEFAULT_LEASE_TTL_MS = 10_000;

interface LeaseValue {
  /** null: released, free to take. */
  owner: string | null;
  /** Grows by one at every change of owner: the fencing token of the shard. */
  epoch: number;
  /** On a presence key only: how many jobs the controller ran when it renewed it. */
  jobs?: number;
  /** On a presence key only: the writing process (`instance`) and its monotonic clock when it sent the write. */
  by?: string;
  sent?: number;
}

/** One controller as the leases bucket shows it to this process. */
export interface ControllerLeaseView {
  controllerId: string;
  /** Shards whose newest lease names it. */
  shards: number;
  /** Milliseconds since this process saw the oldest of those leases renewed; null when it holds none. */
  oldestLeaseAgeMs: number | null;
  /** Milliseconds since this process saw its presence renewed; null when it has none (it left, or holds only leases). */
  presenceAgeMs: number | null;
  /** Its presence was renewed within a TTL. */
  live: boolean;
  /** Jobs it runs: this controller's own count now, another's as its last presence said; null without a live presence. */
  jobs: number | null;
}

/** What this process last saw of a key, and when on its own monotonic clock. */
interface Seen {
  revision: number;
  at: number;
  value: LeaseValue | null;
}

interface Held {
  revision: number;
  epoch: number;
  /** Monotonic time the last successful write of this lease was sent. */
  sentAt: number;
}

export interface ShardLeasesOptions {
  controllerId: string;
  log: Logger;
  /** Default 128. Fixed for a bucket: every controller of a deployment must use the same. */
  shards?: number;
  /** Default 10 s: longer than a NATS Raft election (4–9 s), so a stream leader change is no failover. */
  ttlMs?: number;
  bucket?: string;
  replicas?: number;
  /** A shard became this controller's, with its fencing epoch. */
  onAcquired?: (shard: number, epoch: number) => void;
  /** A shard stopped being this controller's (released, taken, or its lease could not be renewed in time). */
  onLost?: (shard: number) => void;
  /** Monotonic milliseconds; default performance.now. */
  now?: () => number;
  /** How many jobs this controller runs, published with its presence so any controller can show the fleet without reading the jobs bucket. */
  jobsRun?: () => number;
}

const shardKey = (shard: number) => `shard.${shard}`;
const presenceKey = (controllerId: string) => `controller.${controllerId}`;

function decodeLease(entry: KvEntry | KvWatchEntry): LeaseValue | null {
  if (entry.operation !== 'PUT') return null;
  try {
    const value = entry.json<Partial<LeaseValue>>();
    return {
      owner: typeof value.owner === 'string' ? value.owner : null,
      epoch: typeof value.epoch === 'number' ? value.epoch : 0,
      ...(typeof value.jobs === 'number' ? { jobs: value.jobs } : {}),
      ...(typeof value.by === 'string' && typeof value.sent === 'number' ? { by: value.by, sent: value.sent } : {}),
    };
  } catch {
    return null;
  }
}

export class ShardLeases {
  readonly shards: number;
  readonly ttlMs: number;
  private readonly now: () => number;
  private readonly seen = new Map<string, Seen>();
  private readonly held = new Map<number, Held>();
  private kv: KV | undefined;
  private watcher: QueuedIterator<KvWatchEntry> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private ticking: Promise<void> | undefined;
  private stopped = false;
  /** Monotonic time of the last renewal round; -Infinity: none yet. */
  private renewedAt = Number.NEGATIVE_INFINITY;
  /** A renewal of the last round failed: the next tick tries again. */
  private renewFailed = false;
  /** Monotonic time the current watch was made. */
  private watchedAt = 0;
  /** This process among those that may run under the same controller id (a restart), in its presence writes. */
  private readonly instance = randomUUID();
  /**
   * Monotonic time this process sent the newest of its presence writes that its watch has delivered back. The
   * bucket's stream is ordered, so the watch has delivered every write stored before that one: a lease not
   * renewed for a TTL before it is expired. A watch that stalls (its server died) stops this clock, so no
   * lease looks expired because of the stall: expiry is judged on what the watch proves, not on silence.
   */
  private watchLiveThrough = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly nc: NatsConnection,
    private readonly options: ShardLeasesOptions,
  ) {
    this.shards = options.shards ?? DEFAULT_SHARDS;
    this.ttlMs = options.ttlMs ?? DEFAULT_LEASE_TTL_MS;
    this.now = options.now ?? (() => performance.now());
  }

  /** Opens the bucket, follows it, and takes a first share; renews the presence every tenth of a TTL and the leases every third from then on. */
  async start(): Promise<void> {
    const kv = await new Kvm(this.nc).create(this.options.bucket ?? LEASES_BUCKET, { history: 1, replicas: this.options.replicas ?? 1 });
    this.kv = kv;
    // Followed from here on; what is there already is read once below (the watch replays it too).
    await this.follow(kv);
    for await (const key of await kv.keys()) {
      const entry = await kv.get(key);
      if (entry !== null) this.see(key, entry.revision, decodeLease(entry));
    }
    await this.tick();
    // Leases are renewed every third of a TTL; expiries are looked for ten times a TTL, which costs no write.
    this.timer = setInterval(() => void this.tick(), Math.max(50, Math.floor(this.ttlMs / 10)));
  }

  /** A watch of the whole bucket, replacing the one before (whose replay of current values `see` dedupes). */
  private async follow(kv: KV): Promise<void> {
    this.watcher?.stop();
    const watcher = await kv.watch({ key: '>' });
    this.watcher = watcher;
    this.watchedAt = this.now();
    void (async () => {
      for await (const entry of watcher) this.see(entry.key, entry.revision, decodeLease(entry));
    })().catch((err: unknown) => this.options.log.warn({ err }, 'the lease watcher ended'));
  }

  /**
   * A KV watch is a consumer on one server: when that server dies, nats.js notices only after two missed
   * idle heartbeats (about a minute), and meanwhile every other controller's lease would look expired. This
   * controller's own renewals must show up in its watch: when one has not within a sixth of a TTL, the
   * watch is made again (at most every third of a TTL).
   */
  private async checkWatch(kv: KV): Promise<void> {
    const now = this.now();
    if (now - this.watchedAt < this.ttlMs / 3) return;
    for (const [shard, held] of this.held) {
      const seen = this.seen.get(shardKey(shard));
      // A watch delivers a write in milliseconds; a sixth of a TTL comes before the next renewal replaces it.
      if ((seen?.revision ?? 0) >= held.revision || now - held.sentAt < this.ttlMs / 6) continue;
      this.options.log.warn({ shard, renewed: held.revision, seen: seen?.revision ?? null }, 'the lease watch missed this controller\'s own renewal: watching again');
      await this.follow(kv).catch((err: unknown) => this.options.log.warn({ err }, 'could not watch the leases again'));
      return;
    }
  }

  /** Whether this controller may act for `shard` now: it holds the lease and renewed it less than a TTL (less a margin) ago. */
  owns(shard: number): boolean {
    const held = this.held.get(shard);
    return held !== undefined && this.now() - held.sentAt < this.ttlMs - this.marginMs();
  }

  /** Whether this controller holds the shard's lease, current or not (a renewal may be late). */
  heldShard(shard: number): boolean {
    return this.held.has(shard);
  }

  /** The shards this controller may act for now. */
  owned(): number[] {
    return [...this.held.keys()].filter((shard) => this.owns(shard)).sort((a, b) => a - b);
  }

  /** The shard's fencing epoch while this controller owns it. */
  epochOf(shard: number): number | undefined {
    return this.owns(shard) ? this.held.get(shard)?.epoch : undefined;
  }

  /** The controller the newest revision of the shard's lease names, unless it is released or expired. */
  ownerOf(shard: number): string | null {
    if (this.owns(shard)) return this.options.controllerId;
    const seen = this.seen.get(shardKey(shard));
    const owner = seen?.value?.owner ?? null;
    return owner === null || owner === this.options.controllerId || this.expired(seen) ? null : owner;
  }

  /** Every controller the bucket names (a presence or a lease), sorted by id. */
  fleet(): ControllerLeaseView[] {
    const now = this.now();
    const views = new Map<string, ControllerLeaseView>();
    const viewOf = (controllerId: string) => {
      let view = views.get(controllerId);
      if (view === undefined) {
        view = { controllerId, shards: 0, oldestLeaseAgeMs: null, presenceAgeMs: null, live: false, jobs: null };
        views.set(controllerId, view);
      }
      return view;
    };
    for (const [key, seen] of this.seen) {
      const owner = seen.value?.owner ?? null;
      if (owner === null) continue;
      if (key.startsWith('controller.')) {
        const view = viewOf(owner);
        view.presenceAgeMs = Math.round(now - seen.at);
        view.live = !this.expired(seen);
        view.jobs = owner === this.options.controllerId ? this.jobsRun() : view.live ? (seen.value?.jobs ?? null) : null;
      } else if (key.startsWith('shard.') && !this.expired(seen)) {
        const view = viewOf(owner);
        const shard = Number(key.slice('shard.'.length));
        const held = owner === this.options.controllerId ? this.held.get(shard) : undefined;
        const age = Math.round(now - (held?.sentAt ?? seen.at));
        view.shards++;
        view.oldestLeaseAgeMs = Math.max(view.oldestLeaseAgeMs ?? 0, age);
      }
    }
    return [...views.values()].sort((a, b) => (a.controllerId < b.controllerId ? -1 : a.controllerId > b.controllerId ? 1 : 0));
  }

  /** Gives every lease back at once (so the others take them without waiting for expiry) and leaves. */
  async stop(): Promise<void> {
    this.halt();
    await this.ticking;
    const kv = this.kv;
    if (kv === undefined) return;
    await Promise.allSettled([...this.held].map(([shard, held]) => this.release(kv, shard, held)));
    await kv.delete(presenceKey(this.options.controllerId)).catch(() => undefined);
  }

  /** Stops renewing without giving anything back, as a controller that died: its leases expire. */
  halt(): void {
    this.stopped = true;
    clearInterval(this.timer);
    this.watcher?.stop();
  }

  /** A key's revision as seen now; an older one arriving late (the watch's replay) changes nothing. */
  private see(key: string, revision: number, value: LeaseValue | null): void {
    const known = this.seen.get(key);
    if (known !== undefined && known.revision >= revision) return;
    if (value?.by === this.instance && value.sent !== undefined) this.watchLiveThrough = Math.max(this.watchLiveThrough, value.sent);
    this.seen.set(key, { revision, at: this.now(), value });
  }

  private jobsRun(): number {
    return this.options.jobsRun?.() ?? 0;
  }

  private marginMs(): number {
    return Math.min(1_000, Math.floor(this.ttlMs / 10));
  }

  /** Not renewed for a TTL before a write of this process that the watch delivered since (see `watchLiveThrough`). */
  private expired(seen: Seen | undefined): boolean {
    return seen !== undefined && this.watchLiveThrough - seen.at > this.ttlMs;
  }

  private liveControllers(): number {
    let live = 1; // this one
    for (const [key, seen] of this.seen) {
      if (key.startsWith('controller.') && key !== presenceKey(this.options.controllerId) && seen.value !== null && !this.expired(seen)) live++;
    }
    return live;
  }

  private tick(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    this.ticking ??= this.renewAndBalance().finally(() => (this.ticking = undefined));
    return this.ticking;
  }

  private async renewAndBalance(): Promise<void> {
    const kv = this.kv!;
    const self = this.options.controllerId;
    // The presence at every tick: once delivered back by the watch, it dates what the watch has shown (`watchLiveThrough`),
    // so that an expiry is seen within a tick of the TTL.
    const presence: LeaseValue = { owner: self, epoch: 0, jobs: this.jobsRun(), by: this.instance, sent: this.now() };
    await kv.put(presenceKey(self), JSON.stringify(presence)).catch((err: unknown) => this.options.log.warn({ err }, 'could not renew presence'));
    // The leases every third of a TTL; after a renewal that failed (no stream leader, say), at every tick until
    // one lands, so that a Raft election shorter than the TTL costs no lease.
    if (this.renewFailed || this.now() - this.renewedAt >= this.ttlMs / 3) {
      this.renewFailed = false;
      this.renewedAt = this.now();
      await Promise.all([...this.held].map(([shard, held]) => this.renew(kv, shard, held)));
    }
    if (this.stopped) return;
    await this.checkWatch(kv);
    const fair = Math.ceil(this.shards / this.liveControllers());
    // Beyond a fair share: give the highest shards back, for the newcomers to take.
    const surplus = [...this.held.keys()].sort((a, b) => b - a).slice(0, Math.max(0, this.held.size - fair));
    await Promise.all(surplus.map((shard) => this.release(kv, shard, this.held.get(shard)!)));
    const wanted = fair - this.held.size;
    if (wanted <= 0) return;
    const free: number[] = [];
    for (let shard = 0; shard < this.shards && free.length < wanted; shard++) {
      if (this.held.has(shard)) continue;
      const seen = this.seen.get(shardKey(shard));
      // Its own lease from before a restart counts as free: nobody else can have acted on it since.
      const owner = seen?.value?.owner ?? null;
      if (seen === undefined || owner === null || owner === self || this.expired(seen)) free.push(shard);
    }
    const acquired = (await Promise.all(free.map((shard) => this.acquire(kv, shard)))).filter((shard) => shard !== null);
    if (acquired.length > 0) this.options.log.info({ acquired: acquired.length, owned: this.held.size, shards: acquired }, 'shard leases acquired');
  }

  /** The shard, once its lease is this controller's; null when another controller was first. */
  private async acquire(kv: KV, shard: number): Promise<number | null> {
    const key = shardKey(shard);
    const seen = this.seen.get(key);
    const epoch = (seen?.value?.epoch ?? 0) + 1;
    const value = JSON.stringify({ owner: this.options.controllerId, epoch } satisfies LeaseValue);
    const sentAt = this.now();
    try {
      const revision = seen === undefined ? await kv.create(key, value) : await kv.update(key, value, seen.revision);
      if (this.stopped) return null;
      this.held.set(shard, { revision, epoch, sentAt });
      this.options.onAcquired?.(shard, epoch);
      return shard;
    } catch {
      // Another controller was first: the watch shows who.
      return null;
    }
  }

  private async renew(kv: KV, shard: number, held: Held): Promise<void> {
    const sentAt = this.now();
    try {
      const revision = await kv.update(shardKey(shard), JSON.stringify({ owner: this.options.controllerId, epoch: held.epoch } satisfies LeaseValue), held.revision);
      this.held.set(shard, { revision, epoch: held.epoch, sentAt });
    } catch (err) {
      this.renewFailed = true;
      // Lost the compare-and-set (taken), or NATS did not answer: past its TTL the lease is gone either way.
      const current = await kv.get(shardKey(shard)).catch(() => null);
      const value = current === null ? null : decodeLease(current);
      // Our write landed and its ack did not: a newer revision that still names us. The same revision means
      // it did not land (no stream leader, say): the lease runs out on its own, however well reads answer.
      if (current !== null && current.revision > held.revision && value?.owner === this.options.controllerId && value.epoch === held.epoch) {
        this.held.set(shard, { revision: current.revision, epoch: held.epoch, sentAt });
        return;
      }
      const takenByAnother = current !== null && current.revision > held.revision;
      if (takenByAnother || this.now() - held.sentAt >= this.ttlMs - this.marginMs()) this.lose(shard, err);
    }
  }

  private async release(kv: KV, shard: number, held: Held): Promise<void> {
    this.held.delete(shard);
    this.options.onLost?.(shard);
    await kv.update(shardKey(shard), JSON.stringify({ owner: null, epoch: held.epoch } satisfies LeaseValue), held.revision).catch(() => undefined);
  }

  private lose(shard: number, err: unknown): void {
    if (!this.held.delete(shard)) return;
    this.options.log.warn({ shard, err }, 'shard lease lost');
    this.options.onLost?.(shard);
  }
}
