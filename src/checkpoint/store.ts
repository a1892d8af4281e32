/**
 * Checkpoints of streaming runs on JetStream, usable without the rest of weir.
 *
 * Layout (names from a prefix, default `weir`):
 *
 *   KV `weir_cp_meta`      run.<run>              the run: workflow, params, status, last_seq
 *                          cp.<run>.<seq>         a checkpoint's record (node, size, SHA-256, blob name or the state)
 *                          latest.<run>.<node>    a copy of the node's newest checkpoint record
 *   objects `weir_cp_state` <run>/<seq>           the state bytes, when they are not in the record
 *   stream `WEIR_CP_EVENTS` weir.cp.events.<run>  the run's events; the stream sequence is the cursor
 *
 * Sequence numbers. A save claims its sequence by raising `last_seq` in the run record with a
 * compare-and-set on the record's revision: no read-then-write race (a writer on a stale revision fails
 * and re-reads), and the claim also proves the run exists. Within one process claims on a run are queued,
 * each on the revision the previous one produced, so local writers do not fight over the record; writers
 * in other processes lose a compare-and-set now and then and retry. Sequences are therefore unique and
 * contiguous, except that a save which fails after its claim leaves its number unused.
 *
 * Inline states. A state of at most `inlineStateBytes` (default 64 KiB) is kept base64 in the record, and
 * so in the latest pointer's copy too, instead of in a blob: its save is the claim, the record and the
 * pointer, its loadLatest one KV get. Its SHA-256 is checked on every load like a blob's. Lists return
 * records without it (CheckpointMeta); a record has either `object` or `inline_state`, never both.
 *
 * Write order. The blob is named after the claimed sequence and written first; the checkpoint record,
 * created (never overwritten) after it, is the commit point, so a reader never finds a record whose blob
 * was not written. The latest pointer is raised last, by compare-and-set and only upwards, so concurrent
 * writers cannot move it back. A crash in between leaves either an unreferenced blob (found again by
 * `deleteRun`, since blob names follow from `1..last_seq`) or a committed checkpoint that the pointer does
 * not show yet (the node's next save moves the pointer past it). Claiming the sequence with a placeholder
 * record and finalising it later would cost one more write per save and show readers placeholders.
 *
 * Every KV write goes out as a JetStream publish with a Nats-Msg-Id, so a write retried after a timeout
 * that did land is recognised by the server (within the bucket's 2-minute duplicate window) instead of
 * failing its own compare-and-set.
 */
import { createHash } from 'node:crypto';
import {
  DeliverPolicy,
  jetstream,
  jetstreamManager,
  StorageType,
  type ConsumerConfig,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
} from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import { Objm, type ObjectStore } from '@nats-io/obj';
import { nuid, type NatsConnection } from '@nats-io/transport-node';
import type { z } from 'zod';
import { Deadline, type Timeouts } from '../jetstream/deadline.js';
import { StoreError, StoreValidationError } from '../jetstream/errors.js';
import { CasBucket, casJitterMs, decodeRecord, KV_OPERATION, untilWritten } from '../jetstream/kv.js';
import { retrying } from '../jetstream/retry.js';
import { StreamReader } from '../jetstream/stream-reader.js';
import { ObjectWire } from '../jetstream/object-store.js';
import { forEachLimited } from '../shared/for-each-limited.js';
import { KeyedQueue } from '../shared/keyed-queue.js';
import { ensureLogStream, logStreamConfig } from '../jetstream/streams.js';
import { CorruptCheckpointError, RunContentionError, RunExistsError, UnknownRunError } from './errors.js';
import {
  checkpointStoreNames,
  createRunInputSchema,
  DEFAULT_INLINE_STATE_BYTES,
  DEFAULT_MAX_EVENT_BYTES,
  DEFAULT_MAX_STATE_BYTES,
  eventInputSchema,
  idSchema,
  MAX_EVENTS_LIMIT,
  MAX_METADATA_BYTES,
  MAX_RUN_BYTES,
  metadataSchema,
  runSchema,
  runStatusSchema,
  storedCheckpointSchema,
  storedEventSchema,
  type Checkpoint,
  type CheckpointEvent,
  type CheckpointMeta,
  type CheckpointStoreNames,
  type CreateRunInput,
  type EventPage,
  type JsonValue,
  type Run,
  type RunStatus,
  type StoredCheckpoint,
} from './schemas.js';

export interface CheckpointStoreOptions {
  /** Prefix of every name (see CheckpointStoreNames); stores with different prefixes share a server. Default `weir`. */
  prefix?: string;
  /** Overrides of single names derived from the prefix. */
  names?: Partial<CheckpointStoreNames>;
  /** Replicas of the bucket, the object store and the stream when they are created (3 on a 3-node cluster). */
  replicas?: number;
  /** Largest state a save accepts. Default 64 MiB. */
  maxStateBytes?: number;
  /**
   * States of at most this many bytes are kept base64 in the checkpoint record (and the latest pointer's
   * copy of it) instead of a blob in the object store: a save then costs three KV writes and a loadLatest
   * one KV get. 0 keeps every state in the object store. Capped at what keeps the record under half the
   * server's max_payload, whatever its metadata (about 335 KiB at the default 1 MiB). Default 64 KiB.
   */
  inlineStateBytes?: number;
  /** Largest event (as JSON) an append accepts; capped by the server's max_payload. Default 256 KiB. */
  maxEventBytes?: number;
  /** Event retention: drop events older than this (0 = keep). Default 0. */
  eventsMaxAgeMs?: number;
  /** Event retention: keep at most this many events per run (-1 = all). Default -1. */
  eventsMaxPerRun?: number;
  /** How long a retried append is recognised as a repeat. Default 2 min. */
  duplicateWindowMs?: number;
  /** Deadline of one NATS request. Default 2 s. */
  requestTimeoutMs?: number;
  /**
   * Deadline of one operation, retries included; then StoreUnavailableError. Saves and loads get one
   * request timeout more per MiB of state. Default 10 s.
   */
  operationTimeoutMs?: number;
  /** Compare-and-set attempts on the run record and on a latest pointer. Default 32. */
  casAttempts?: number;
}

export interface AppendEventOptions {
  /**
   * Idempotency key (the Nats-Msg-Id): an append repeated with the same id within the duplicate window
   * stores nothing and returns the first append's sequence. Default: a fresh id per call.
   */
  id?: string;
}

export interface DeleteRunResult {
  /** Checkpoint records and latest pointers removed. */
  records: number;
  blobs: number;
  events: number;
}

interface Settings extends Timeouts {
  names: CheckpointStoreNames;
  maxStateBytes: number;
  inlineStateBytes: number;
  maxEventBytes: number;
  casAttempts: number;
  /** Whether the object store's stream answers direct gets (streams created by nats.js do). */
  directGets: boolean;
}

interface Versioned<T> {
  value: T;
  revision: number;
}

interface StreamRead {
  messages: JsMsg[];
  /** Messages matching the filter that were there but not read (max reached). */
  more: boolean;
}

const MIB = 1024 * 1024;
/** Run records kept for the next claim's compare-and-set; a stale one only costs a failed write and a read. */
const MAX_CACHED_RUNS = 1024;
/** Latest pointers this process wrote, for the next raise's compare-and-set; a stale one costs a failed write and a read. */
const MAX_CACHED_POINTERS = 4096;
/** Blob deletions in flight at once in deleteRun. */
const DELETE_CONCURRENCY = 32;
const FETCH_BATCH = 256;
/** Readers' consumers are deleted after use; this only bounds what a crashed reader leaves behind. */
const READER_INACTIVE_MS = 30_000;
/** The server's default max_payload, when the connection does not report one. */
const DEFAULT_MAX_PAYLOAD = MIB;
/** A checkpoint record's fields other than its metadata and inline state, as JSON, with room to spare. */
const RECORD_OVERHEAD_BYTES = 1024;
const MSG_ID_PATTERN = /^[\x21-\x7e]{1,128}$/;

/** Sets `key` as the newest entry of a cache of at most `max`, dropping the oldest. */
function cacheSet<V>(cache: Map<string, V>, key: string, value: V, max: number): void {
  cache.delete(key);
  cache.set(key, value);
  if (cache.size > max) cache.delete(cache.keys().next().value ?? '');
}

function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** The record as callers see it: without the state when that is inline. */
function publicMeta(stored: StoredCheckpoint): CheckpointMeta {
  if (!('inline_state' in stored)) return stored;
  const { inline_state: _state, ...meta } = stored;
  return meta;
}

function validate<S extends z.ZodType>(schema: S, value: unknown, what: string): z.output<S> {
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw new StoreValidationError(`invalid ${what}: ${parsed.error.message}`, { cause: parsed.error });
  return parsed.data;
}

function assertId(value: unknown, what: 'run' | 'node'): string {
  if (!idSchema.safeParse(value).success) {
    throw new StoreValidationError(`invalid ${what} id ${JSON.stringify(value)}: expected 1–64 characters from A-Z a-z 0-9 _ -`);
  }
  return value as string;
}

function assertInteger(value: number, what: string, min: number, max = Number.MAX_SAFE_INTEGER): void {
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new StoreValidationError(`invalid ${what} ${value}: expected an integer in [${min}, ${max}]`);
  }
}

/** JSON text of a value, which must round-trip and fit; what JSON.stringify would silently drop is refused. */
function encodeJson(value: unknown, maxBytes: number, what: string): string {
  let text: string;
  try {
    text = JSON.stringify(value);
  } catch (err) {
    throw new StoreValidationError(`invalid ${what}: not JSON (${err instanceof Error ? err.message : String(err)})`, { cause: err });
  }
  const bytes = Buffer.byteLength(text);
  if (bytes > maxBytes) throw new StoreValidationError(`${what} is ${bytes} bytes as JSON, over the limit of ${maxBytes}`);
  return text;
}

export class CheckpointStore {
  readonly names: CheckpointStoreNames;
  private readonly bucket: CasBucket;
  private readonly reader: StreamReader;
  private readonly kvStream: string;
  private readonly kvPrefix: string;
  private readonly objects: ObjectWire;
  private readonly runs = new Map<string, Versioned<Run>>();
  /** latest.<run>.<node> → the sequence it held at the revision this process last saw. */
  private readonly pointers = new Map<string, { seq: number; revision: number }>();
  /** Writers of one run or key in this process take turns. */
  private readonly writers = new KeyedQueue();

  /** Use openCheckpointStore, which creates or binds the bucket, the object store and the stream. */
  constructor(
    private readonly nc: NatsConnection,
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    private readonly kv: KV,
    private readonly os: ObjectStore,
    private readonly settings: Settings,
  ) {
    this.names = settings.names;
    this.bucket = new CasBucket(nc, js, kv, settings.names.metaBucket, settings);
    this.reader = new StreamReader(nc, js, jsm, { namePrefix: `${settings.names.metaBucket}_reader`, inactiveMs: READER_INACTIVE_MS, requestTimeoutMs: settings.requestTimeoutMs });
    this.kvStream = this.bucket.stream;
    this.kvPrefix = this.bucket.subjectPrefix;
    this.objects = new ObjectWire(nc, js, jsm, os, settings.names.stateBucket, settings);
  }

  // ─── Runs ──────────────────────────────────────────────────────────────────────────────────────

  /** Throws RunExistsError if the id is taken. */
  async createRun(runId: string, input: CreateRunInput): Promise<Run> {
    const run = assertId(runId, 'run');
    const { workflow, params, status } = validate(createRunInputSchema, input, 'run');
    const now = Date.now();
    const record: Run = { run_id: run, workflow, params, status, created_at: now, updated_at: now, last_seq: 0 };
    const data = encodeJson(record, MAX_RUN_BYTES, 'run');
    const revision = await this.bucket.create('createRun', this.deadline(), this.runKey(run), data, `createRun.${run}.${nuid.next()}`);
    if (revision === 'exists') throw new RunExistsError(run);
    this.remember(run, { value: record, revision });
    return record;
  }

  /** Null for an unknown run. */
  async getRun(runId: string): Promise<Run | null> {
    const run = assertId(runId, 'run');
    return (await this.readRun('getRun', this.deadline(), run))?.value ?? null;
  }

  /** Sets the status (and updated_at), re-applied on a fresh read after a lost compare-and-set. */
  async updateRunStatus(runId: string, status: RunStatus): Promise<Run> {
    const run = assertId(runId, 'run');
    const next = validate(runStatusSchema, status, 'status');
    return this.updateRun('updateRunStatus', this.deadline(), run, (r) => ({ ...r, status: next, updated_at: Date.now() }));
  }

  /**
   * Removes the run's blobs, checkpoint records, latest pointers and events, then the run record.
   * Idempotent (a run that is not there is a no-op), and safe to run again after a failure part-way.
   * Each blob has its own deadline, so runs of any size can be deleted. Saves to the run while it is
   * being deleted are not supported.
   */
  async deleteRun(runId: string): Promise<DeleteRunResult> {
    const run = assertId(runId, 'run');
    const op = 'deleteRun';
    const dl = this.deadline();
    const [record, listed] = await Promise.all([this.readRun(op, dl, run), this.readRecords(op, dl, run)]);
    // Blobs are named after sequences, so 1..last_seq also covers blobs whose save died before its record.
    // A sequence whose record holds its state inline never had a blob.
    const top = listed.reduce((max, meta) => Math.max(max, meta.seq), record?.value.last_seq ?? 0);
    const inline = new Set(listed.filter((stored) => 'inline_state' in stored).map((stored) => stored.seq));
    let blobs = 0;
    await forEachLimited(
      Array.from({ length: top }, (_, i) => i + 1).filter((seq) => !inline.has(seq)),
      DELETE_CONCURRENCY,
      async (seq) => {
        if (await this.objects.remove('deleteRun', this.deadline(), this.objectName(run, seq))) blobs++;
      },
    );
    const purge = (stream: string, filter: string) =>
      retrying(this.nc, op, this.deadline(), this.settings, () => this.jsm.streams.purge(stream, { filter }));
    // Stream purges rather than KV purges: they leave no delete markers behind, and a later createRun of
    // the same id starts from nothing.
    const records = (await purge(this.kvStream, `${this.kvPrefix}cp.${run}.*`)).purged;
    const pointers = (await purge(this.kvStream, `${this.kvPrefix}latest.${run}.*`)).purged;
    const events = (await purge(this.names.eventStream, this.eventSubject(run))).purged;
    await purge(this.kvStream, `${this.kvPrefix}${this.runKey(run)}`);
    this.runs.delete(run);
    return { records: records + pointers, blobs, events };
  }

  // ─── Checkpoints ───────────────────────────────────────────────────────────────────────────────

  /** Stores `state` as the run's next checkpoint, taken by `nodeId`; returns its record with its sequence. */
  async saveCheckpoint(runId: string, nodeId: string, state: Uint8Array, metadata?: Record<string, string>): Promise<CheckpointMeta> {
    const run = assertId(runId, 'run');
    const node = assertId(nodeId, 'node');
    if (!(state instanceof Uint8Array)) throw new StoreValidationError('invalid state: expected a Uint8Array');
    if (state.byteLength > this.settings.maxStateBytes) {
      throw new StoreValidationError(`state of ${state.byteLength} bytes is over the limit of ${this.settings.maxStateBytes}`);
    }
    const meta = metadata === undefined ? undefined : validate(metadataSchema, metadata, 'metadata');
    if (meta !== undefined) encodeJson(meta, MAX_METADATA_BYTES, 'metadata');
    const hash = createHash('sha256').update(state).digest();
    const digest = hash.toString('hex');
    const op = 'saveCheckpoint';
    const dl = this.deadline(state.byteLength);

    const inlineLimit = this.inlineLimit();
    // A limit of 0 turns inline states off, empty ones included.
    const inline = inlineLimit > 0 && state.byteLength <= inlineLimit;

    const claimed = await this.updateRun(op, dl, run, (r) => ({ ...r, last_seq: r.last_seq + 1 }));
    const seq = claimed.last_seq;
    const object = inline ? null : this.objectName(run, seq);
    if (object !== null) await this.objects.write(op, dl, this.attemptMs(state.byteLength), object, `checkpoint ${seq} of node ${node} in run ${run}`, state, hash);
    const base = {
      run_id: run,
      node_id: node,
      seq,
      created_at: Date.now(),
      bytes: state.byteLength,
      digest,
      ...(meta === undefined ? {} : { metadata: meta }),
    };
    const record: StoredCheckpoint =
      object === null ? { ...base, inline_state: Buffer.from(state.buffer, state.byteOffset, state.byteLength).toString('base64') } : { ...base, object };
    const data = JSON.stringify(record);
    const key = this.checkpointKey(run, seq);
    if ((await this.bucket.create(op, dl, key, data, `${key}.${nuid.next()}`)) === 'exists') {
      // Only if the run was deleted and created again while this save ran, and the new run got this far.
      throw new StoreError(`saveCheckpoint ${run}: record ${seq} appeared while saving (the run was deleted and created again?)`);
    }
    // The pointer is raised only once the record's create is acknowledged, although sending both at once
    // would save a round trip: JetStream applies no two writes atomically (atomic batches need
    // nats-server 2.12), so the record's write can fail on its own (its compare-and-set lost to a run
    // deleted and created again, a limit, a publish dropped during a leader election and followed by the
    // pointer's once a new leader is up) while the pointer's lands. A reader would then load a checkpoint
    // through the pointer that loadCheckpoint and the lists do not know, and that no retry can commit.
    await this.raiseLatest(op, dl, record, data);
    return publicMeta(record);
  }

  /** The node's checkpoint with the highest sequence, or null if it has none. */
  async loadLatest(runId: string, nodeId: string): Promise<Checkpoint | null> {
    const run = assertId(runId, 'run');
    const node = assertId(nodeId, 'node');
    return this.load('loadLatest', this.latestKey(run, node));
  }

  /** The run's checkpoint `seq`, or null if there is none (never saved, or its save did not finish). */
  async loadCheckpoint(runId: string, seq: number): Promise<Checkpoint | null> {
    const run = assertId(runId, 'run');
    assertInteger(seq, 'sequence', 1);
    return this.load('loadCheckpoint', this.checkpointKey(run, seq));
  }

  /** Every checkpoint record of the run, by sequence. */
  async listRunCheckpoints(runId: string): Promise<CheckpointMeta[]> {
    const run = assertId(runId, 'run');
    return (await this.readRecords('listRunCheckpoints', this.deadline(), run)).map(publicMeta);
  }

  /** The node's checkpoint records, by sequence. */
  async listNodeCheckpoints(runId: string, nodeId: string): Promise<CheckpointMeta[]> {
    const run = assertId(runId, 'run');
    const node = assertId(nodeId, 'node');
    return (await this.readRecords('listNodeCheckpoints', this.deadline(), run)).filter((meta) => meta.node_id === node).map(publicMeta);
  }

  /**
   * Removes checkpoint `seq` of the run: the node's latest pointer if it points there, the record, then
   * the blob (if the state was not inline), leaving no delete markers. Idempotent: false when there was nothing to remove. The
   * pointer does not move back to an older checkpoint (loadLatest gives null until the node saves again),
   * and a load racing the delete may find the record without its blob (CorruptCheckpointError).
   */
  async deleteCheckpoint(runId: string, seq: number): Promise<boolean> {
    const run = assertId(runId, 'run');
    assertInteger(seq, 'sequence', 1);
    const op = 'deleteCheckpoint';
    const dl = this.deadline();
    const purge = (key: string, below?: number) =>
      retrying(this.nc, op, dl, this.settings, () =>
        this.jsm.streams.purge(this.kvStream, below === undefined ? { filter: `${this.kvPrefix}${key}` } : { filter: `${this.kvPrefix}${key}`, seq: below }),
      );
    const key = this.checkpointKey(run, seq);
    const entry = await this.get(op, dl, key);
    const stored = entry?.data == null ? null : decodeRecord(storedCheckpointSchema, key, entry.data);
    if (stored !== null) {
      const pointerKey = this.latestKey(run, stored.node_id);
      const pointer = await this.get(op, dl, pointerKey);
      // Only up to the revision read: a pointer raised since is a later message and stays.
      if (pointer?.data != null && decodeRecord(storedCheckpointSchema, pointerKey, pointer.data).seq === seq) await purge(pointerKey, pointer.revision + 1);
    }
    if (entry !== null) await purge(key);
    // An inline record never had a blob. Without a record (none, deleted before, or a save that died
    // before its record) there may still be one.
    const blob = stored !== null && 'inline_state' in stored ? false : await this.objects.remove(op, this.deadline(), this.objectName(run, seq));
    return stored !== null || blob;
  }

  // ─── Events ────────────────────────────────────────────────────────────────────────────────────

  /** Appends an event to an existing run; returns its sequence, the cursor of `eventsSince`. */
  async appendEvent(runId: string, type: string, data?: JsonValue, opts: AppendEventOptions = {}): Promise<number> {
    const run = assertId(runId, 'run');
    const input = validate(eventInputSchema, { type, data }, 'event');
    const msgID = opts.id ?? nuid.next();
    if (!MSG_ID_PATTERN.test(msgID)) throw new StoreValidationError(`invalid event id ${JSON.stringify(msgID)}`);
    // Headroom under max_payload for the headers (Nats-Msg-Id, expected stream) that go with the body.
    const maxBytes = Math.min(this.settings.maxEventBytes, (this.nc.info?.max_payload ?? Number.POSITIVE_INFINITY) - 1024);
    const body = encodeJson({ run_id: run, type: input.type, data: input.data, at: Date.now() }, maxBytes, 'event');
    const dl = this.deadline();
    if ((await this.readRun('appendEvent', dl, run)) === null) throw new UnknownRunError(run);
    const ack = await retrying(this.nc, 'appendEvent', dl, this.settings, (timeout) =>
      this.js.publish(this.eventSubject(run), body, { msgID, timeout, expect: { streamName: this.names.eventStream } }),
    );
    return ack.seq;
  }

  /** Up to `limit` (1…1000) of the run's events after sequence `afterSeq`, oldest first. */
  async eventsSince(runId: string, afterSeq: number, limit: number): Promise<EventPage> {
    const run = assertId(runId, 'run');
    assertInteger(afterSeq, 'sequence', 0);
    assertInteger(limit, 'limit', 1, MAX_EVENTS_LIMIT);
    const { messages, more } = await this.readStream('eventsSince', this.deadline(), this.names.eventStream, limit, {
      filter_subject: this.eventSubject(run),
      deliver_policy: DeliverPolicy.StartSequence,
      opt_start_seq: afterSeq + 1,
    });
    const events: CheckpointEvent[] = [];
    for (const m of messages) {
      // Something else published on the subject: skipped, but the cursor still moves past it.
      const parsed = storedEventSchema.safeParse(safeJson(m.data));
      if (parsed.success) events.push({ seq: m.seq, ...parsed.data });
    }
    return { events, next: messages.at(-1)?.seq ?? afterSeq, hasMore: more };
  }

  // ─── Internals ─────────────────────────────────────────────────────────────────────────────────

  private runKey(run: string): string {
    return `run.${run}`;
  }

  private checkpointKey(run: string, seq: number): string {
    return `cp.${run}.${seq}`;
  }

  private latestKey(run: string, node: string): string {
    return `latest.${run}.${node}`;
  }

  private objectName(run: string, seq: number): string {
    return `${run}/${seq}`;
  }

  private eventSubject(run: string): string {
    return `${this.names.eventSubjectPrefix}.${run}`;
  }

  private deadline(stateBytes = 0): Deadline {
    return new Deadline(this.settings.operationTimeoutMs + Math.ceil(stateBytes / MIB) * this.settings.requestTimeoutMs);
  }

  /**
   * The largest state kept inline: the option, capped so that the record (base64 state, metadata of up to
   * MAX_METADATA_BYTES and the other fields) stays under half the max_payload of the server connected to.
   */
  private inlineLimit(): number {
    const room = Math.floor((this.nc.info?.max_payload ?? DEFAULT_MAX_PAYLOAD) / 2) - MAX_METADATA_BYTES - RECORD_OVERHEAD_BYTES;
    // base64 takes 4 characters per 3 bytes (started).
    return Math.max(0, Math.min(this.settings.inlineStateBytes, Math.floor(room / 4) * 3));
  }

  /** For attempts made of several requests: consumer reads, blob transfers (one request per 128 KiB chunk). */
  private attemptMs(stateBytes = 0): number {
    return Math.max(4 * this.settings.requestTimeoutMs, 2_000) + Math.ceil(stateBytes / MIB) * this.settings.requestTimeoutMs;
  }

  private remember(run: string, versioned: Versioned<Run>): void {
    cacheSet(this.runs, run, versioned, MAX_CACHED_RUNS);
  }

  private async get(op: string, dl: Deadline, key: string): Promise<{ revision: number; data: Uint8Array | null } | null> {
    const entry = await this.bucket.read(op, dl, key);
    if (entry === null) return null;
    // A delete or purge marker: the key is free, but a create must expect the marker's revision.
    return { revision: entry.revision, data: entry.live ? entry.value : null };
  }

  private async readRun(op: string, dl: Deadline, run: string): Promise<Versioned<Run> | null> {
    const key = this.runKey(run);
    const entry = await this.get(op, dl, key);
    if (entry?.data == null) return null;
    const versioned = { value: decodeRecord(runSchema, key, entry.data) as Run, revision: entry.revision };
    this.remember(run, versioned);
    return versioned;
  }

  private updateRun(op: string, dl: Deadline, run: string, mutate: (current: Run) => Run): Promise<Run> {
    return this.writers.run(run, async () => {
      const opId = nuid.next();
      let known = this.runs.get(run) ?? null;
      // The first loss is most likely a stale cached revision: re-read at once; then jitter against contenders.
      const pauseMs = (attempt: number) => (attempt > 1 ? casJitterMs(attempt) : 0);
      const exhausted = () => new RunContentionError(run, op, this.settings.casAttempts);
      return untilWritten({ attempts: this.settings.casAttempts, pauseMs, exhausted }, async (attempt) => {
        known ??= await this.readRun(op, dl, run);
        if (known === null) throw new UnknownRunError(run);
        const next = mutate(known.value);
        const revision = await this.bucket.write(op, dl, this.runKey(run), JSON.stringify(next), known.revision, `${op}.${run}.${opId}.${attempt}`);
        if (revision !== 'conflict') {
          this.remember(run, { value: next, revision });
          return next;
        }
        // Another process wrote since (or the cached revision was stale): re-read and re-apply.
        known = null;
        this.runs.delete(run);
        return 'conflict';
      });
    });
  }

  /** Points latest.<run>.<node> at `record` unless it already points at a higher sequence. */
  private raiseLatest(op: string, dl: Deadline, record: StoredCheckpoint, data: string): Promise<void> {
    const key = this.latestKey(record.run_id, record.node_id);
    return this.writers.run(key, async () => {
      const opId = nuid.next();
      const raised = (revision: number) => cacheSet(this.pointers, key, { seq: record.seq, revision }, MAX_CACHED_POINTERS);
      // A compare-and-set on the revision last seen proves the pointer still holds that lower sequence, so
      // the read is needed only when that write loses (another writer, a purge) or the cache has nothing.
      const known = this.pointers.get(key);
      this.pointers.delete(key);
      if (known !== undefined && known.seq < record.seq) {
        const written = await this.bucket.write(op, dl, key, data, known.revision, `${key}.${opId}.0`);
        if (written !== 'conflict') return raised(written);
      }
      const exhausted = () => new RunContentionError(record.run_id, `${op} (latest pointer of ${record.node_id})`, this.settings.casAttempts);
      return untilWritten({ attempts: this.settings.casAttempts, exhausted }, async (attempt) => {
        const current = await this.get(op, dl, key);
        if (current?.data != null && decodeRecord(storedCheckpointSchema, key, current.data).seq >= record.seq) return;
        const written = await this.bucket.write(op, dl, key, data, current?.revision ?? 0, `${key}.${opId}.${attempt}`);
        return written === 'conflict' ? written : raised(written);
      });
    });
  }

  private async load(op: string, key: string): Promise<Checkpoint | null> {
    const dl = this.deadline();
    const entry = await this.get(op, dl, key);
    if (entry?.data == null) return null;
    const stored = decodeRecord(storedCheckpointSchema, key, entry.data);
    const meta = publicMeta(stored);
    const { run_id: run, node_id: node, seq } = meta;
    const intact = (blob: Uint8Array) => blob.byteLength === meta.bytes && sha256(blob) === meta.digest;
    const mismatch = (what: string, state: Uint8Array) =>
      new CorruptCheckpointError(run, node, seq, 'digest', `${what} (${state.byteLength} bytes) does not match the record's size ${meta.bytes} and SHA-256`);
    if ('inline_state' in stored) {
      // A copy: Buffer.from may hand out a slice of its shared pool.
      const state = new Uint8Array(Buffer.from(stored.inline_state, 'base64'));
      if (!intact(state)) throw mismatch('inline state', state);
      return { meta, state };
    }
    const { object } = stored;
    const fast = await this.objects.read(object, meta.bytes, this.attemptMs(meta.bytes));
    if (fast !== null && intact(fast)) return { meta, state: fast };
    // Only what nats.js reads from the stream leader counts as missing or corrupt (see readBlob).
    let state: Uint8Array | null;
    try {
      state = await retrying(this.nc, op, this.deadline(meta.bytes), this.settings, () => this.os.getBlob(object), this.attemptMs(meta.bytes));
    } catch (err) {
      // nats.js checks the object store's own SHA-256 of the chunks.
      if (err instanceof Error && err.message.includes('digests do not match')) {
        throw new CorruptCheckpointError(run, node, seq, 'digest', `blob ${object} does not match its object store digest`, { cause: err });
      }
      throw err;
    }
    if (state === null) throw new CorruptCheckpointError(run, node, seq, 'missing', `blob ${object} is missing`);
    if (!intact(state)) throw mismatch(`blob ${object}`, state);
    return { meta, state };
  }

  private async readRecords(op: string, dl: Deadline, run: string): Promise<StoredCheckpoint[]> {
    const { messages } = await this.readStream(op, dl, this.kvStream, Number.POSITIVE_INFINITY, {
      filter_subject: `${this.kvPrefix}cp.${run}.*`,
      deliver_policy: DeliverPolicy.LastPerSubject,
    });
    const out: StoredCheckpoint[] = [];
    for (const m of messages) {
      const operation = m.headers?.get(KV_OPERATION) ?? '';
      if (operation === 'DEL' || operation === 'PURGE') continue;
      out.push(decodeRecord(storedCheckpointSchema, m.subject.slice(this.kvPrefix.length), m.data));
    }
    return out.sort((a, b) => a.seq - b.seq);
  }

  /** Reads up to `max` messages through a consumer of its own (see StreamReader); a partial read is retried, never returned. */
  private readStream(op: string, dl: Deadline, stream: string, max: number, cfg: Partial<ConsumerConfig>): Promise<StreamRead> {
    const attempt = async (): Promise<StreamRead> => {
      const cursor = await this.reader.open(stream, cfg);
      try {
        const messages: JsMsg[] = [];
        const { pending } = await this.reader.read(
          cursor,
          { what: op, max, batch: (kept, pending) => Math.min(max - kept, pending, FETCH_BATCH), shortFetch: 'fails-when-empty' },
          (m) => {
            messages.push(m);
            return 'kept';
          },
        );
        return { messages, more: pending > 0 };
      } finally {
        this.reader.close(cursor);
      }
    };
    return retrying(this.nc, op, dl, this.settings, attempt, Math.max(dl.remaining(), 1));
  }

}

function safeJson(data: Uint8Array): unknown {
  try {
    return JSON.parse(new TextDecoder().decode(data));
  } catch {
    return undefined;
  }
}

/**
 * Creates (or binds) the KV bucket, the object store and the event stream; idempotent, so every process
 * that uses the store may call it at startup. Fails with StoreUnavailableError if NATS does not answer in time.
 */
export async function openCheckpointStore(nc: NatsConnection, opts: CheckpointStoreOptions = {}): Promise<CheckpointStore> {
  const names = { ...checkpointStoreNames(opts.prefix), ...opts.names };
  // Run ids are appended as one more token, so the prefix must be literal tokens (no wildcards).
  if (!/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/.test(names.eventSubjectPrefix)) {
    throw new StoreValidationError(`invalid event subject prefix ${JSON.stringify(names.eventSubjectPrefix)}: expected tokens of A-Z a-z 0-9 _ - separated by dots`);
  }
  const settings: Settings = {
    names,
    requestTimeoutMs: opts.requestTimeoutMs ?? 2_000,
    operationTimeoutMs: opts.operationTimeoutMs ?? 10_000,
    maxStateBytes: opts.maxStateBytes ?? DEFAULT_MAX_STATE_BYTES,
    inlineStateBytes: opts.inlineStateBytes ?? DEFAULT_INLINE_STATE_BYTES,
    maxEventBytes: opts.maxEventBytes ?? DEFAULT_MAX_EVENT_BYTES,
    casAttempts: opts.casAttempts ?? 32,
    directGets: false,
  };
  assertInteger(settings.maxStateBytes, 'maxStateBytes', 0);
  assertInteger(settings.inlineStateBytes, 'inlineStateBytes', 0);
  assertInteger(settings.casAttempts, 'casAttempts', 1);
  const replicas = opts.replicas ?? 1;
  const js = jetstream(nc, { timeout: settings.requestTimeoutMs });
  const stream = logStreamConfig(names.eventStream, names.eventSubjectPrefix, {
    replicas,
    duplicateWindowMs: opts.duplicateWindowMs,
    logMaxAgeMs: opts.eventsMaxAgeMs,
    logMaxEventsPerJob: opts.eventsMaxPerRun,
  });
  const { jsm, kv, os } = await retrying(
    nc,
    'openCheckpointStore',
    new Deadline(settings.operationTimeoutMs),
    settings,
    async () => {
      const jsm = await jetstreamManager(nc, { timeout: settings.requestTimeoutMs });
      // History 1: every write is a compare-and-set on the last revision, older ones are never read.
      const kv = await new Kvm(js).create(names.metaBucket, { history: 1, storage: StorageType.File, replicas });
      const os = await new Objm(js).create(names.stateBucket, { storage: StorageType.File, replicas });
      await ensureLogStream(jsm, stream);
      return { jsm, kv, os };
    },
    Math.max(4 * settings.requestTimeoutMs, 2_000),
  );
  settings.directGets = (await retrying(nc, 'openCheckpointStore', new Deadline(settings.operationTimeoutMs), settings, () => os.status())).streamInfo.config.allow_direct === true;
  return new CheckpointStore(nc, js, jsm, kv, os, settings);
}
