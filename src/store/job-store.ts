/**
 * Jobs in a KV bucket, three keys per job:
 *
 *   <id>.spec    the pipeline body as submitted, plus created_at (µs); written once
 *   <id>.config  the desired config (DesiredConfig + ignoreStateBeforeEpoch); changed by users
 *   <id>.status  what the controller persists after every transition
 *
 * Every write is a compare-and-set on the key's revision (the KV stream's "expected last subject
 * sequence"), so a writer holding a stale revision can never overwrite a newer value: it re-reads and
 * re-applies its change instead.
 *
 * Writes go through `js.publish` on the KV subject rather than `kv.create`/`kv.update`: the semantics are
 * the same (expected last subject sequence 0 — or the revision of a delete marker — for a create, the
 * read revision for an update), but the publish also carries a Nats-Msg-Id. nats.js drops whatever is
 * published while it is disconnected, so every write is retried after a timeout; without the id, a retry
 * of a write that did land the first time would fail its compare-and-set against its own revision and be
 * re-applied (an increment applied twice) or reported as a conflict. With it, the server answers the
 * retry with the original revision (`duplicate: true`) for as long as the bucket's duplicate window
 * (2 min) lasts.
 *
 * Partial jobs. The three keys cannot be written atomically (no batch writes on 2.9), so `create`
 * writes spec, then config, then status, and the status key is the commit point: a job exists iff its
 * status does. `delete` removes them in the opposite order. A crash in between leaves a *partial* job
 * (a spec without a status), which is never mistaken for a job: `get` throws PartialJobError, `create`
 * of the same id throws ConflictError with reason `partial`, `list` still returns the id so a controller
 * can find and report it, and `delete` removes what is there. (A create still in progress in another
 * process looks the same for a moment, which is why `create` reports rather than repairs.)
 */
import type { JetStreamClient } from '@nats-io/jetstream';
import type { KV } from '@nats-io/kv';
import { nuid, type NatsConnection, type QueuedIterator } from '@nats-io/transport-node';
import type { z } from 'zod';
import { ConflictError, StoreValidationError } from '../jetstream/errors.js';
import { PartialJobError, UnknownJobError } from './errors.js';
import { Deadline, DeadlineError, type Timeouts } from '../jetstream/deadline.js';
import { CasBucket, casJitterMs, decodeRecord, untilWritten, type KvRead } from '../jetstream/kv.js';
import { retrying } from '../jetstream/retry.js';
import {
  configSchema,
  JOB_ID_PATTERN,
  specSchema,
  statusSchema,
  type JobConfigRecord,
  type JobSpec,
  type JobStatusRecord,
  type JsonRecord,
} from './schemas.js';
import { nowMicros } from '../shared/micros.js';

export const JOB_KEYS = ['spec', 'config', 'status'] as const;
export type JobKey = (typeof JOB_KEYS)[number];

export interface JobRecord {
  spec: JobSpec;
  config: JobConfigRecord;
  status: JobStatusRecord;
  /** KV revisions (bucket stream sequences) of the three keys as read. */
  revisions: Record<JobKey, number>;
}

export interface Versioned<T> {
  value: T;
  revision: number;
}

/** Gets the current value (a private copy) and returns the next one. Re-run on a fresh value after a lost race. */
export type Mutate<T> = (current: T) => T | Promise<T>;

export interface CreateOptions {
  /** Overrides of the initial status (default: Created, generation 0, appliedRestartNonce = config.restartNonce). */
  status?: Partial<JobStatusRecord>;
  /**
   * Makes the create itself retryable: a repeat with the same requestId within 2 minutes (say after a
   * StoreUnavailableError) finishes the first attempt instead of reporting a conflict with it.
   * Must be unique per intended create. Default: a fresh id per call.
   */
  requestId?: string;
}

export interface DeleteOptions {
  /** Delete only if the status is still at this revision (the one the terminal state was checked on). */
  statusRevision?: number;
}

export interface ConfigChange {
  jobId: string;
  /** Null when the config key was deleted or purged (the job is being deleted). */
  config: JobConfigRecord | null;
  revision: number;
}

export interface ConfigSnapshot {
  jobId: string;
  config: JobConfigRecord;
  revision: number;
}

export interface WatchOptions {
  /** Called with errors thrown by onChange and with undecodable values; the watcher goes on. */
  onError?: (err: unknown) => void;
}

export interface ConfigWatcher {
  /**
   * The current configs of all jobs. The watcher delivers every change made after it started, so call
   * this after starting it and keep, per job, whichever of the two has the higher revision.
   */
  current(): Promise<ConfigSnapshot[]>;
  stop(): void;
  /** Settles once the watcher has stopped (stop(), or the connection closed). */
  readonly closed: Promise<void>;
}

export interface JobStore {
  /** Throws ConflictError (reason `exists` or `partial`) if the id is taken. */
  create(id: string, spec: JsonRecord, config: JobConfigRecord, opts?: CreateOptions): Promise<JobRecord>;
  /** Null for an unknown id; PartialJobError for a partial one. */
  get(id: string): Promise<JobRecord | null>;
  /** All job ids, partial ones included, sorted. */
  list(): Promise<string[]>;
  /**
   * `known`: the value and revision the caller last read or wrote. The first compare-and-set then goes
   * out without a read; if somebody wrote since, it fails and the update re-reads as usual.
   */
  updateConfig(id: string, mutate: Mutate<JobConfigRecord>, known?: Versioned<JobConfigRecord>): Promise<Versioned<JobConfigRecord>>;
  updateStatus(id: string, mutate: Mutate<JobStatusRecord>, known?: Versioned<JobStatusRecord>): Promise<Versioned<JobStatusRecord>>;
  /** Purges the three keys (status first). The caller checks that the job is in a terminal state. */
  delete(id: string, opts?: DeleteOptions): Promise<void>;
  /** Changes to any job's config made after the call, by any process. */
  watchConfigs(onChange: (change: ConfigChange) => void | Promise<void>, opts?: WatchOptions): Promise<ConfigWatcher>;
}

export interface JobStoreSettings extends Timeouts {
  bucket: string;
  /** Attempts of one updateConfig/updateStatus before it gives up with ConflictError(contention). */
  casAttempts: number;
}

/** Reads in flight at once while collecting all configs. */
const CURRENT_BATCH = 32;

export function assertJobId(id: string): void {
  if (typeof id !== 'string' || !JOB_ID_PATTERN.test(id)) {
    throw new StoreValidationError(`invalid job id ${JSON.stringify(id)}: expected 1–64 characters from A-Z a-z 0-9 _ -`);
  }
}

function validate<S extends z.ZodType>(schema: S, value: unknown, what: string): z.output<S> {
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw new StoreValidationError(`invalid ${what}: ${parsed.error.message}`, { cause: parsed.error });
  return parsed.data;
}

export function initialStatus(config: JobConfigRecord, now = Date.now()): JobStatusRecord {
  return {
    state: 'Created',
    generation: 0,
    restarts: 0,
    appliedRestartNonce: config.restartNonce,
    failure: null,
    startTime: null,
    finishTime: null,
    epoch: 0,
    minEpoch: 0,
    updatedAt: now,
  };
}

/** Reads a QueuedIterator to its end, stopping it (and failing) if that takes longer than `ms`. */
async function drain<T>(iter: QueuedIterator<T>, ms: number, what: string): Promise<T[]> {
  const out: T[] = [];
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    iter.stop();
  }, ms);
  try {
    for await (const item of iter) out.push(item);
  } finally {
    clearTimeout(timer);
  }
  if (timedOut) throw new DeadlineError(what, ms);
  return out;
}

export class KvJobStore implements JobStore {
  private readonly bucket: CasBucket;

  constructor(
    private readonly nc: NatsConnection,
    js: JetStreamClient,
    private readonly kv: KV,
    private readonly settings: JobStoreSettings,
  ) {
    this.bucket = new CasBucket(nc, js, kv, settings.bucket, settings);
  }

  private key(id: string, kind: JobKey): string {
    return `${id}.${kind}`;
  }

  private deadline(): Deadline {
    return new Deadline(this.settings.operationTimeoutMs);
  }

  private async readAll(op: string, dl: Deadline, id: string): Promise<Record<JobKey, KvRead | null>> {
    const [spec, config, status] = await Promise.all(JOB_KEYS.map((kind) => this.bucket.read(op, dl, this.key(id, kind))));
    return { spec: spec ?? null, config: config ?? null, status: status ?? null };
  }

  private async conflictFor(id: string, dl: Deadline): Promise<ConflictError> {
    const raw = await this.readAll('create', dl, id);
    const present = JOB_KEYS.filter((kind) => raw[kind]?.live === true);
    if (raw.status?.live === true) return new ConflictError(id, 'exists', `job ${id} already exists`);
    return new ConflictError(id, 'partial', `job ${id} is partial (has ${present.join(', ') || 'nothing'}; a crashed create or delete, or a create in progress): delete it first`, present);
  }

  async create(id: string, spec: JsonRecord, config: JobConfigRecord, opts: CreateOptions = {}): Promise<JobRecord> {
    assertJobId(id);
    const createdAt = typeof spec['created_at'] === 'number' ? spec['created_at'] : nowMicros();
    const values = {
      spec: validate(specSchema, { ...spec, created_at: createdAt }, 'spec'),
      config: validate(configSchema, config, 'config'),
      status: validate(statusSchema, { ...initialStatus(config), ...opts.status }, 'status'),
    };
    const dl = this.deadline();
    const requestId = opts.requestId ?? nuid.next();
    const revisions: Partial<Record<JobKey, number>> = {};
    for (const kind of JOB_KEYS) {
      const key = this.key(id, kind);
      const revision = await this.bucket.create('create', dl, key, JSON.stringify(values[kind]), `create.${id}.${requestId}.${kind}`);
      if (revision === 'exists') {
        // Undo what this call wrote, but only if nobody has touched it since (best effort: if this fails
        // the job stays partial, which is reported, never mistaken for a job).
        for (const done of JOB_KEYS) {
          const rev = revisions[done];
          if (rev !== undefined) await this.bucket.purge('create', dl, this.key(id, done), rev, `undo.${id}.${requestId}.${done}`).catch(() => undefined);
        }
        throw await this.conflictFor(id, dl);
      }
      revisions[kind] = revision;
    }
    // Read back, since a repeated create (same request id) finds the first one's values. On a cluster a
    // direct get may be answered by a replica that has not applied the writes yet: then what was written.
    const written: JobRecord = { ...values, revisions: { spec: revisions.spec!, config: revisions.config!, status: revisions.status! } };
    try {
      return (await this.get(id)) ?? written;
    } catch (err) {
      if (err instanceof PartialJobError) return written;
      throw err;
    }
  }

  async get(id: string): Promise<JobRecord | null> {
    assertJobId(id);
    const raw = await this.readAll('get', this.deadline(), id);
    const present = JOB_KEYS.filter((kind) => raw[kind]?.live === true);
    if (present.length === 0) return null;
    const { spec, config, status } = raw;
    if (spec?.live !== true || config?.live !== true || status?.live !== true) {
      throw new PartialJobError(id, present, JOB_KEYS.filter((kind) => raw[kind]?.live !== true));
    }
    return {
      spec: decodeRecord(specSchema, this.key(id, 'spec'), spec.value),
      config: decodeRecord(configSchema, this.key(id, 'config'), config.value),
      status: decodeRecord(statusSchema, this.key(id, 'status'), status.value),
      revisions: { spec: spec.revision, config: config.revision, status: status.revision },
    };
  }

  private async keys(op: string, filter: string): Promise<string[]> {
    const dl = this.deadline();
    // kv.keys reads through an ephemeral consumer: several requests, so one attempt gets more time.
    const attemptMs = Math.max(this.settings.requestTimeoutMs * 3, 1000);
    return retrying(this.nc, op, dl, this.settings, async () => drain(await this.kv.keys(filter), attemptMs, op), attemptMs);
  }

  async list(): Promise<string[]> {
    const keys = await this.keys('list', '*.spec');
    return keys.map((key) => key.slice(0, -'.spec'.length)).sort();
  }

  updateConfig(id: string, mutate: Mutate<JobConfigRecord>, known?: Versioned<JobConfigRecord>): Promise<Versioned<JobConfigRecord>> {
    return this.update('updateConfig', id, 'config', configSchema, mutate, known);
  }

  updateStatus(id: string, mutate: Mutate<JobStatusRecord>, known?: Versioned<JobStatusRecord>): Promise<Versioned<JobStatusRecord>> {
    return this.update('updateStatus', id, 'status', statusSchema, mutate, known);
  }

  private async update<S extends z.ZodType>(
    op: string,
    id: string,
    kind: JobKey,
    schema: S,
    mutate: Mutate<z.output<S>>,
    known?: Versioned<z.output<S>>,
  ): Promise<Versioned<z.output<S>>> {
    assertJobId(id);
    const key = this.key(id, kind);
    const dl = this.deadline();
    const opId = nuid.next();
    const exhausted = () => new ConflictError(id, 'contention', `${op} ${id}: lost the compare-and-set ${this.settings.casAttempts} times`);
    // Lost races are retried after a little jitter, which spreads the retries of many contenders.
    return untilWritten({ attempts: this.settings.casAttempts, pauseMs: casJitterMs, exhausted }, async (attempt) => {
      let base: { value: z.output<S>; revision: number };
      if (attempt === 1 && known !== undefined) {
        // A copy: mutate may scribble on its argument, and `known` stays the caller's.
        base = { value: structuredClone(known.value), revision: known.revision };
      } else {
        const current = await this.bucket.read(op, dl, key);
        if (current === null || !current.live) throw new UnknownJobError(id, `no ${kind}`);
        // A fresh decode each attempt: mutate may scribble on its argument.
        base = { value: decodeRecord(schema, key, current.value), revision: current.revision };
      }
      const next = validate(schema, await mutate(base.value), kind);
      const revision = await this.bucket.write(op, dl, key, JSON.stringify(next), base.revision, `${op}.${id}.${opId}.${attempt}`);
      return revision === 'conflict' ? revision : { value: next, revision };
    });
  }

  async delete(id: string, opts: DeleteOptions = {}): Promise<void> {
    assertJobId(id);
    const dl = this.deadline();
    const raw = await this.readAll('delete', dl, id);
    if (JOB_KEYS.every((kind) => raw[kind]?.live !== true)) throw new UnknownJobError(id);
    const opId = nuid.next();
    for (const kind of ['status', 'config', 'spec'] as const) {
      const entry = raw[kind];
      if (entry?.live !== true) continue;
      // The status purge is a compare-and-set when the caller pinned a revision; the rest follow it.
      const expect = kind === 'status' ? opts.statusRevision : undefined;
      const result = await this.bucket.purge('delete', dl, this.key(id, kind), expect, `delete.${id}.${opId}.${kind}`);
      if (result === 'conflict') {
        throw new ConflictError(id, 'contention', `delete ${id}: status changed since revision ${opts.statusRevision}`);
      }
    }
  }

  async watchConfigs(onChange: (change: ConfigChange) => void | Promise<void>, opts: WatchOptions = {}): Promise<ConfigWatcher> {
    const dl = this.deadline();
    const attemptMs = Math.max(this.settings.requestTimeoutMs * 3, 1000);
    // Start right after the bucket's current last sequence rather than with include: 'updates': the
    // watcher is an ordered consumer, and when nats.js re-creates one (missed heartbeats, a restart that
    // lost it) before it has delivered anything, it restarts from its start sequence, which for "new
    // only" is 1, so every config's history would be replayed as if it were new. An explicit start sequence is replayed
    // correctly. Anything older than it is dropped as well, to be sure.
    const watch = await retrying(
      this.nc,
      'watchConfigs',
      dl,
      this.settings,
      async () => {
        const status = await this.kv.status();
        const from = status.streamInfo.state.last_seq + 1;
        return { from, iter: await this.kv.watch({ key: '*.config', resumeFromRevision: from }) };
      },
      attemptMs,
    );
    const { from, iter } = watch;
    const report = opts.onError ?? (() => undefined);
    const closed = (async () => {
      for await (const entry of iter) {
        if (entry.revision < from) continue;
        const jobId = entry.key.slice(0, -'.config'.length);
        try {
          const config = entry.operation === 'PUT' ? decodeRecord(configSchema, entry.key, entry.value) : null;
          await onChange({ jobId, config, revision: entry.revision });
        } catch (err) {
          report(err);
        }
      }
    })().catch(report);
    return {
      current: () => this.currentConfigs(),
      stop: () => iter.stop(),
      closed,
    };
  }

  private async currentConfigs(): Promise<ConfigSnapshot[]> {
    const keys = (await this.keys('watchConfigs.current', '*.config')).sort();
    const dl = this.deadline();
    const out: ConfigSnapshot[] = [];
    for (let i = 0; i < keys.length; i += CURRENT_BATCH) {
      const batch = keys.slice(i, i + CURRENT_BATCH);
      const entries = await Promise.all(batch.map((key) => this.bucket.read('watchConfigs.current', dl, key)));
      entries.forEach((raw, j) => {
        const key = batch[j] ?? '';
        if (raw === null || !raw.live) return;
        out.push({ jobId: key.slice(0, -'.config'.length), config: decodeRecord(configSchema, key, raw.value), revision: raw.revision });
      });
    }
    return out;
  }
}
