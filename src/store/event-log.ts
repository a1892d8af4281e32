/**
 * The job event log: one JetStream stream, one subject per job (`weir.log.<id>`), one message per event.
 * A row's id is its stream sequence, which is also the pagination cursor and the SSE event id.
 *
 * Newest-first paging on nats-server 2.9. The server can read a subject forwards from any sequence
 * (consumers, direct get `next_by_subj`) and give its last message, but has no "previous message on this
 * subject before sequence N" (2.11's batch get with `up_to_seq` is not there). What it does have is a cheap
 * count: creating a consumer filtered on the job's subject with a start sequence reports `num_pending`,
 * the number of the job's messages at or after that sequence, computed from the store's per-subject index
 * without delivering anything. So a page of the `limit` newest rows older than the cursor `hi` is:
 *
 *   1. bounds from two direct gets (the job's newest and oldest message) and the job's message count;
 *   2. a window [lo, hi) holding a bit more than `limit` of the job's rows, found by probing: the first
 *      guess comes from the job's average density, a window that holds too few rows is widened in
 *      proportion to what it held, one that holds far too many is bisected, until it holds between
 *      `limit` and about 4 × `limit` rows (or reaches the job's first row);
 *   3. reading the window forwards through the probe's consumer (server-side filtered, so only the job's
 *      rows cross the wire) and keeping the newest `limit`.
 *
 * Typically that is one or two consumer creations and one fetch per page, whatever the stream's size and
 * however the job's rows are interleaved with other jobs'; rows of other jobs are never read. With a
 * `kind` filter the count no longer says how many rows will match, so windows are sized by the match
 * ratio seen so far and read until enough match. A cursor is an exclusive upper bound and rows are only
 * ever appended at the end, so concurrent appends can never shift a walk: no row is returned twice and,
 * of the rows older than the first page's newest, none is skipped.
 *
 * The alternative, a per-job index (each event carrying the sequence of the job's previous event), would
 * make a page `limit` direct gets, but every append would need a read and a compare-and-set first,
 * serialising the controller's writes, and a chain broken by retention limits would end the walk early.
 */
import {
  DeliverPolicy,
  type ConsumerMessages,
  type JetStreamClient,
  type JetStreamManager,
} from '@nats-io/jetstream';
import { nuid, type NatsConnection } from '@nats-io/transport-node';
import { StoreValidationError } from '../jetstream/errors.js';
import { assertJobId } from './job-store.js';
import { Deadline, type Timeouts } from '../jetstream/deadline.js';
import { retrying } from '../jetstream/retry.js';
import { StreamReader, type StreamCursor } from '../jetstream/stream-reader.js';
import { LOG_EVENT_KINDS, logEventSchema, type LogEvent, type LogEventKind, type LogRow } from './schemas.js';

export interface AppendOptions {
  /**
   * Idempotency key (the Nats-Msg-Id): appending again with the same id within the stream's duplicate
   * window (2 min) stores nothing and returns the first append's sequence. Default: a fresh id, which
   * still makes the store's own retries after a timeout safe.
   */
  id?: string;
}

export interface PageOptions {
  kind?: LogEventKind;
  /** Cursor: only rows older than this sequence (the last `seq` of the previous page). */
  startingAfter?: number;
  limit: number;
}

export interface Page {
  data: LogRow[];
  hasMore: boolean;
}

/** Live rows of one job, in order; survives reconnects and server restarts. */
export interface LogTail extends AsyncIterable<LogRow> {
  stop(): void;
}

/** A row of any job's log, with the job it belongs to. */
export type JobLogRow = LogRow & { job_id: string };

/** Rows of every job, in log order; survives reconnects and server restarts. */
export interface JobsLogTail extends AsyncIterable<JobLogRow> {
  /** The first sequence it reads from: everything before it is history to this tail. */
  readonly from: number;
  stop(): void;
}

export interface EventLog {
  /** Returns the event's stream sequence. */
  append(jobId: string, event: LogEvent, opts?: AppendOptions): Promise<number>;
  /** Newest first. */
  page(jobId: string, opts: PageOptions): Promise<Page>;
  /** The job's newest row (one direct get), or null when it has none. */
  newest(jobId: string): Promise<LogRow | null>;
  /** Oldest first, rows after `afterSeq` (catch-up from an SSE Last-Event-ID). */
  since(jobId: string, afterSeq: number, limit: number): Promise<Page>;
  /** Rows from `fromSeq` (inclusive) on, or, without it, those appended after the call. */
  tail(jobId: string, fromSeq?: number): Promise<LogTail>;
  /** Every job's rows from `fromSeq` (inclusive) on, or, without it, those appended after the call. */
  tailAll(fromSeq?: number): Promise<JobsLogTail>;
  /** Removes a job's rows (after the job is deleted). */
  purge(jobId: string): Promise<void>;
}

export interface EventLogSettings extends Timeouts {
  stream: string;
  subjectPrefix: string;
}

export const MAX_PAGE_LIMIT = 1000;
/** Upper bound of the rows read in one window, whatever a kind filter's match ratio suggests. */
const MAX_WINDOW_ROWS = 4096;
const MAX_PROBES = 64;
/** Probe consumers delete themselves on the server if a client dies before deleting them. */
const PROBE_INACTIVE_MS = 30_000;
const MSG_ID_PATTERN = /^[\x21-\x7e]{1,256}$/;

function decodeRow(seq: number, data: Uint8Array): LogRow | null {
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder().decode(data));
  } catch {
    return null;
  }
  // Rows not written by append (they cannot be: the schema is checked there) are skipped, not fatal.
  const parsed = logEventSchema.safeParse(json);
  return parsed.success ? { seq, ...parsed.data } : null;
}

function assertCount(value: number, what: string, min: number, max = Number.MAX_SAFE_INTEGER): void {
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new StoreValidationError(`invalid ${what} ${value}: expected an integer in [${min}, ${max}]`);
  }
}

/** A reader's consumer over one job's subject from `start`; `pending` = the job's rows at or after `start`. */
interface Probe extends StreamCursor {
  start: number;
}

class StreamTail implements LogTail {
  constructor(private readonly messages: ConsumerMessages) {}

  async *[Symbol.asyncIterator](): AsyncIterator<LogRow> {
    for await (const m of this.messages) {
      const row = decodeRow(m.seq, m.data);
      if (row !== null) yield row;
    }
  }

  stop(): void {
    this.messages.stop();
  }
}

class StreamJobsTail implements JobsLogTail {
  constructor(
    private readonly messages: ConsumerMessages,
    readonly from: number,
    /** `weir.log.`: what precedes the job id in a subject. */
    private readonly subjectPrefix: string,
  ) {}

  async *[Symbol.asyncIterator](): AsyncIterator<JobLogRow> {
    for await (const m of this.messages) {
      const row = m.subject.startsWith(this.subjectPrefix) ? decodeRow(m.seq, m.data) : null;
      if (row !== null) yield { ...row, job_id: m.subject.slice(this.subjectPrefix.length) };
    }
  }

  stop(): void {
    this.messages.stop();
  }
}

export class StreamEventLog implements EventLog {
  private readonly reader: StreamReader;

  constructor(
    private readonly nc: NatsConnection,
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    private readonly settings: EventLogSettings,
  ) {
    this.reader = new StreamReader(nc, js, jsm, { namePrefix: 'weir_read', inactiveMs: PROBE_INACTIVE_MS, requestTimeoutMs: settings.requestTimeoutMs });
  }

  private subject(jobId: string): string {
    assertJobId(jobId);
    return `${this.settings.subjectPrefix}.${jobId}`;
  }

  private deadline(): Deadline {
    return new Deadline(this.settings.operationTimeoutMs);
  }

  /** Reads need several requests per attempt. */
  private attemptMs(): number {
    return Math.max(this.settings.requestTimeoutMs * 4, 2000);
  }

  async append(jobId: string, event: LogEvent, opts: AppendOptions = {}): Promise<number> {
    const subject = this.subject(jobId);
    const parsed = logEventSchema.safeParse(event);
    if (!parsed.success) throw new StoreValidationError(`invalid event: ${parsed.error.message}`, { cause: parsed.error });
    const msgID = opts.id ?? nuid.next();
    if (!MSG_ID_PATTERN.test(msgID)) throw new StoreValidationError(`invalid event id ${JSON.stringify(msgID)}`);
    const data = JSON.stringify(parsed.data);
    const ack = await retrying(this.nc, 'append', this.deadline(), this.settings, (timeout) =>
      this.js.publish(subject, data, { msgID, timeout, expect: { streamName: this.settings.stream } }),
    );
    return ack.seq;
  }

  async page(jobId: string, opts: PageOptions): Promise<Page> {
    const subject = this.subject(jobId);
    assertCount(opts.limit, 'limit', 1, MAX_PAGE_LIMIT);
    if (opts.startingAfter !== undefined) assertCount(opts.startingAfter, 'cursor', 0);
    if (opts.kind !== undefined && !LOG_EVENT_KINDS.includes(opts.kind)) throw new StoreValidationError(`invalid kind ${String(opts.kind)}`);
    return retrying(this.nc, 'page', this.deadline(), this.settings, () => this.pageOnce(subject, opts), this.attemptMs());
  }

  async newest(jobId: string): Promise<LogRow | null> {
    const subject = this.subject(jobId);
    return retrying(this.nc, 'newest', this.deadline(), this.settings, async () => {
      const message = await this.jsm.direct.getMessage(this.settings.stream, { last_by_subj: subject });
      return message === null ? null : decodeRow(message.seq, message.data);
    });
  }

  async since(jobId: string, afterSeq: number, limit: number): Promise<Page> {
    const subject = this.subject(jobId);
    assertCount(afterSeq, 'sequence', 0);
    assertCount(limit, 'limit', 1, MAX_PAGE_LIMIT);
    return retrying(
      this.nc,
      'since',
      this.deadline(),
      this.settings,
      async () => {
        const probe = await this.probe(subject, afterSeq + 1);
        try {
          const rows = await this.read(probe, Number.POSITIVE_INFINITY, limit + 1);
          return { data: rows.slice(0, limit), hasMore: rows.length > limit };
        } finally {
          this.release(probe);
        }
      },
      this.attemptMs(),
    );
  }

  async tail(jobId: string, fromSeq?: number): Promise<LogTail> {
    const subject = this.subject(jobId);
    if (fromSeq !== undefined) assertCount(fromSeq, 'sequence', 1);
    return retrying(
      this.nc,
      'tail',
      this.deadline(),
      this.settings,
      async () => {
        // An explicit start sequence even for "new events only": nats.js re-creates an ordered consumer
        // (after a server restart) from its start sequence if it has delivered nothing yet, and for
        // DeliverPolicy.New that start is 1, which would replay the job's whole log.
        const start = fromSeq ?? ((await this.jsm.direct.getMessage(this.settings.stream, { last_by_subj: subject }))?.seq ?? 0) + 1;
        const consumer = await this.js.consumers.get(this.settings.stream, {
          filter_subjects: subject,
          deliver_policy: DeliverPolicy.StartSequence,
          opt_start_seq: start,
        });
        return new StreamTail(await consumer.consume({ max_messages: 256 }));
      },
      this.attemptMs(),
    );
  }

  async tailAll(fromSeq?: number): Promise<JobsLogTail> {
    if (fromSeq !== undefined) assertCount(fromSeq, 'sequence', 1);
    const { stream, subjectPrefix } = this.settings;
    return retrying(
      this.nc,
      'tail all',
      this.deadline(),
      this.settings,
      async () => {
        // An explicit start sequence, as in `tail`.
        const start = fromSeq ?? (await this.jsm.streams.info(stream)).state.last_seq + 1;
        const consumer = await this.js.consumers.get(stream, {
          filter_subjects: `${subjectPrefix}.*`,
          deliver_policy: DeliverPolicy.StartSequence,
          opt_start_seq: start,
        });
        return new StreamJobsTail(await consumer.consume({ max_messages: 256 }), start, `${subjectPrefix}.`);
      },
      this.attemptMs(),
    );
  }

  async purge(jobId: string): Promise<void> {
    const subject = this.subject(jobId);
    await retrying(this.nc, 'purge', this.deadline(), this.settings, () =>
      this.jsm.streams.purge(this.settings.stream, { filter: subject }),
    );
  }

  private async probe(subject: string, start: number): Promise<Probe> {
    const cursor = await this.reader.open(this.settings.stream, {
      filter_subject: subject,
      deliver_policy: DeliverPolicy.StartSequence,
      opt_start_seq: Math.max(1, start),
    });
    return { ...cursor, start };
  }

  private release(probe: Probe): void {
    this.reader.close(probe);
  }

  /**
   * The job's rows from the probe's start up to (excluding) `hi`, oldest first, at most `max`.
   * `expected` (how many there should be) sizes the pulls so little beyond `hi` is sent.
   */
  private async read(probe: Probe, hi: number, max: number, expected = probe.pending): Promise<LogRow[]> {
    const rows: LogRow[] = [];
    if (probe.start >= hi) return rows;
    await this.reader.read(
      probe,
      {
        what: 'reading the job log',
        max,
        // One more than expected, so that a read to `hi` sees where it ends.
        batch: (kept) => Math.min(MAX_WINDOW_ROWS, Math.max(1, Math.min(max, expected) - kept)) + 1,
        shortFetch: 'ends',
      },
      (m) => {
        if (m.seq >= hi) return 'stop';
        const row = decodeRow(m.seq, m.data);
        if (row === null) return 'skipped';
        rows.push(row);
        return 'kept';
      },
    );
    return rows;
  }

  private async pageOnce(subject: string, opts: PageOptions): Promise<Page> {
    const { stream } = this.settings;
    const [newest, oldest, info] = await Promise.all([
      this.jsm.direct.getMessage(stream, { last_by_subj: subject }),
      this.jsm.direct.getMessage(stream, { seq: 1, next_by_subj: subject }),
      this.jsm.streams.info(stream, { subjects_filter: subject }),
    ]);
    if (newest === null || oldest === null) return { data: [], hasMore: false };
    const floor = oldest.seq;
    const end = newest.seq + 1;
    let hi = Math.min(opts.startingAfter ?? end, end);
    if (hi <= floor) return { data: [], hasMore: false };
    const total = Math.max(1, info.state.subjects?.[subject] ?? 1);
    const density = Math.min(1, total / (end - floor));

    const probes: Probe[] = [];
    const probe = async (start: number) => {
      const p = await this.probe(subject, start);
      probes.push(p);
      return p;
    };
    try {
      // Rows at or after hi; zero for the first page (rows appended since only make the counts high).
      let atHi = hi === end ? 0 : (await probe(hi)).pending;
      const want = opts.limit + 1;
      const out: LogRow[] = [];
      let seen = 0;
      let matched = 0;
      while (out.length < want && hi > floor) {
        const need = want - out.length;
        const ratio = opts.kind === undefined ? 1 : (matched + 1) / (seen + 1);
        const target = Math.min(MAX_WINDOW_ROWS, Math.ceil(need / ratio));
        const window = await this.findWindow(probe, floor, hi, atHi, target, density);
        const rows = await this.read(window, hi, Number.POSITIVE_INFINITY, window.pending - atHi);
        seen += rows.length;
        for (let i = rows.length - 1; i >= 0 && out.length < want; i--) {
          const row = rows[i];
          if (row !== undefined && (opts.kind === undefined || row.kind === opts.kind)) {
            out.push(row);
            matched++;
          }
        }
        hi = window.start;
        atHi = window.pending;
      }
      return { data: out.slice(0, opts.limit), hasMore: out.length > opts.limit };
    } finally {
      probes.forEach((p) => this.release(p));
    }
  }

  /**
   * A probe at `lo` such that [lo, hi) holds between `target` and about 4 × `target` of the job's rows
   * (fewer only if lo reached the job's first row). `atHi` is the job's row count at or after `hi`.
   */
  private async findWindow(
    probe: (start: number) => Promise<Probe>,
    floor: number,
    hi: number,
    atHi: number,
    target: number,
    density: number,
  ): Promise<Probe> {
    const cap = Math.max(4 * target, target + 64);
    let tooFew = hi;
    let tooMany: number | undefined;
    let span = Math.ceil((target * 1.25) / density);
    for (let i = 1; ; i++) {
      const lo = tooMany === undefined ? Math.max(floor, hi - span) : Math.floor((tooMany + tooFew) / 2);
      const p = await probe(lo);
      const rows = p.pending - atHi;
      const enough = rows >= target || lo <= floor;
      if (i >= MAX_PROBES || (enough && rows <= cap) || (tooMany !== undefined && tooFew - tooMany <= 1)) return p;
      if (!enough) {
        tooFew = lo;
        // Widen in proportion to what this window held (at least double it).
        if (tooMany === undefined) span = rows > 0 ? Math.max(2 * (hi - lo), Math.ceil(((hi - lo) * target * 1.25) / rows)) : 4 * (hi - lo);
      } else {
        tooMany = lo;
      }
    }
  }
}
