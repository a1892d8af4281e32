/**
 * One follower of a job's event log per job, shared by every SSE client of that job: a hub. It starts
 * with the job's first client and stops when the last one leaves, so a thousand clients cost one
 * JetStream consumer, not a thousand.
 *
 * The hub follows the log from just after the newest row it found when it started (`coveredFrom`) and
 * keeps the newest transitions in a ring; `ringFrom` is the lowest sequence from which every transition
 * the hub has seen is still in the ring. A client resuming after Last-Event-ID N reads the log itself
 * (`since`) up to where it ends, and then joins: the ring's rows after what it read, then live rows, in
 * one synchronous step so that nothing falls between. Had the ring already moved past what the client
 * read (it read slowly while many transitions happened), it reads the log once more. Each row reaches
 * a client once: rows are delivered in sequence order and anything at or below the client's last
 * sequence is skipped.
 */
import type { Logger } from 'pino';
import type { EventLog, LogRow, LogTail } from '../../store/index.js';
import { HubRegistry, SubscriberHub } from './hub-registry.js';

export type TransitionRow = Extract<LogRow, { kind: 'transition' }>;

export interface EventsSubscriber {
  /** A transition the hub just read (sequences increase). */
  row(row: TransitionRow): void;
  /** The hub can no longer follow the log; the client should end its stream (and reconnect). */
  failed(reason: string): void;
}

export const DEFAULT_RING_SIZE = 256;

export class JobEventsHub extends SubscriberHub<EventsSubscriber> {
  private readonly ring: TransitionRow[] = [];
  private tail: LogTail | undefined;
  /** Why the hub stopped following, if it failed. */
  failure: string | undefined;
  /** The hub sees every row of the job at or after this sequence. */
  /**
   * The newest row of the job's log the hub has read (any kind). A client made live now receives every
   * transition after it, so a snapshot taken afterwards can carry it as its event id.
   */
  newestSeq = 0;
  coveredFrom = 0;
  /** Every transition the hub has seen at or after this sequence is in the ring. */
  ringFrom = 0;
  readonly ready: Promise<void>;

  constructor(
    readonly jobId: string,
    private readonly log: EventLog,
    private readonly logger: Logger,
    private readonly ringSize: number,
    private readonly onStopped: (hub: JobEventsHub) => void,
  ) {
    super();
    this.ready = this.start();
    this.ready.catch(() => undefined);
  }

  private async start(): Promise<void> {
    const newest = await this.log.page(this.jobId, { limit: 1 });
    const last = newest.data[0]?.seq ?? 0;
    this.coveredFrom = last + 1;
    this.ringFrom = last + 1;
    this.newestSeq = last;
    const tail = await this.log.tail(this.jobId, last + 1);
    if (this.stopped) {
      tail.stop();
      return;
    }
    this.tail = tail;
    void this.run(tail);
  }

  private async run(tail: LogTail): Promise<void> {
    let reason = 'the event log follower ended';
    try {
      for await (const row of tail) {
        if (this.stopped) return;
        this.newestSeq = row.seq;
        if (row.kind !== 'transition') continue;
        this.ring.push(row);
        if (this.ring.length > this.ringSize) {
          const evicted = this.ring.shift() as TransitionRow;
          this.ringFrom = evicted.seq + 1;
        }
        for (const sub of this.live) sub.row(row);
      }
    } catch (err) {
      reason = `the event log follower failed: ${err instanceof Error ? err.message : String(err)}`;
    }
    if (this.stopped) return;
    this.logger.warn({ job_id: this.jobId, reason }, 'job events hub stopped following the log');
    this.fail(reason);
  }

  private fail(reason: string): void {
    this.failure = reason;
    const members = [...this.members];
    this.stop();
    for (const sub of members) sub.failed(reason);
  }

  /**
   * For a client that has read the log through `readUpTo` (every row of the job up to that sequence that
   * existed when its read began, which was after the hub started): the ring's transitions after that,
   * after which the client is live; or null if the ring no longer reaches back that far (read again).
   */
  joinAfter(sub: EventsSubscriber, readUpTo: number): TransitionRow[] | null {
    if (this.stopped) return null;
    const upTo = Math.max(readUpTo, this.coveredFrom - 1);
    if (this.ringFrom > upTo + 1) return null;
    this.members.add(sub);
    this.live.add(sub);
    return this.ring.filter((row) => row.seq > upTo);
  }

  protected halt(): void {
    this.ring.length = 0;
    this.tail?.stop();
    this.onStopped(this);
  }
}

/** The events hubs by job: `join` starts the job's hub if it has none. */
export function jobEventsHubs(log: EventLog, logger: Logger, ringSize = DEFAULT_RING_SIZE): HubRegistry<EventsSubscriber, JobEventsHub> {
  return new HubRegistry({
    create: (jobId, onStopped) => new JobEventsHub(jobId, log, logger, ringSize, onStopped),
    stoppedMessage: (hub, jobId) => hub.failure ?? `the events hub of job ${jobId} stopped`,
  });
}
