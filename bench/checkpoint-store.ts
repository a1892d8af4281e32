/**
 * The checkpoint store against LangGraph's checkpoint savers:
 * `npm run bench:checkpoint-store [-- --pairs N --reps R --pg URL]`.
 *
 * Section 1, save + load-latest. Per state size (1 KiB, 64 KiB, 1 MiB) each side does the same number of
 * pairs, one at a time: our CheckpointStore (`saveCheckpoint` then `loadLatest`, on a real nats-server
 * started by the test harness on a free loopback port with its own JetStream directory), LangGraph's
 * SqliteSaver (a file database in a temp dir) and PostgresSaver (a schema of its own in the local
 * PostgreSQL), each doing `put` then `getTuple` without a checkpoint id (the thread's latest). A pair is
 * timed from the save's call to the load's return; throughput is pairs / the time spent in them. The sides
 * take turns in blocks of pairs, in a rotating order, so that a slow patch of the VM is shared among them
 * rather than landing on one; every side is warmed up on the same code paths before anything is timed.
 * Each load is checked to be the checkpoint just saved, with the right size, outside the timed span.
 *
 * Section 2, the raw object store floor: 16 blobs of 1 MiB written concurrently with `@nats-io/obj` on
 * the same server, against 16 concurrent `saveCheckpoint`s of 1 MiB (16 nodes of one run); the median
 * over the repetitions, taking turns. The store writes its blobs in the object store's layout but not
 * through putBlob, so the same bytes as bare JetStream publishes are timed too, for scale.
 *
 * Section 3, a whole job checkpoint (bench/job-checkpoint.ts): a 16-subtask job with 1 MiB of state per
 * subtask, from the coordinator's start to the durable record, against writing the same 16 MiB to the
 * object store alone, on a server of its own.
 *
 *   --pairs N   save + load pairs per side per size (default 1 KiB: 2000, 64 KiB: 1000, 1 MiB: 200)
 *   --reps R    repetitions of section 2 (default 15, at least 10)
 *   --pg URL    PostgreSQL to use (env BENCH_PG_URL, default postgresql://postgres@127.0.0.1:5432/test);
 *               the bench creates its own schema there and drops it on exit
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { jetstream, StorageType, type JetStreamClient } from '@nats-io/jetstream';
import { Objm, type ObjectStore } from '@nats-io/obj';
import { connect, nuid, type NatsConnection } from '@nats-io/transport-node';
import { uuid6, type Checkpoint as LgCheckpoint, type BaseCheckpointSaver } from '@langchain/langgraph-checkpoint';
import { PostgresSaver } from '@langchain/langgraph-checkpoint-postgres';
import { SqliteSaver } from '@langchain/langgraph-checkpoint-sqlite';
import Database from 'better-sqlite3';
import pg from 'pg';
import { openCheckpointStore, type CheckpointStore } from '../src/checkpoint/index.js';
import { JOB_CHECKPOINT_GOAL, measureJobCheckpoint, printJobCheckpoint } from './job-checkpoint.js';
import { startNatsServer } from '#test-kit/nats-server.js';
import { argValue, quantiles, round } from './support.js';

const KIB = 1024;
const MIB = 1024 * KIB;
const SIZES = [
  { label: '1 KiB', bytes: KIB, pairs: 2000 },
  { label: '64 KiB', bytes: 64 * KIB, pairs: 1000 },
  // PostgresSaver takes 0.25–0.35 s a pair at 1 MiB here, most of the run's time.
  { label: '1 MiB', bytes: MIB, pairs: 200 },
] as const;
/** Pairs per turn before the next side runs (see the header). */
const BLOCK = 50;
const FLOOR_BLOBS = 16;
const RAW_BUCKET = 'bench_raw';
/** The object store's chunk size. */
const CHUNK = 128 * KIB;
const FLOOR_GOAL = 2;

interface Options {
  pairs: number | undefined;
  reps: number;
  pgUrl: string;
}

function options(argv: string[]): Options {
  const raw = (name: string): string | undefined => argValue(argv, name);
  const int = (name: string, min: number): number | undefined => {
    const text = raw(name);
    if (text === undefined) return undefined;
    const n = Number(text);
    if (!Number.isInteger(n) || n < min) throw new Error(`${name} must be an integer ≥ ${min}, got ${text}`);
    return n;
  };
  return {
    pairs: int('--pairs', 1),
    reps: int('--reps', 10) ?? 15,
    pgUrl: raw('--pg') ?? process.env['BENCH_PG_URL'] ?? 'postgresql://postgres@127.0.0.1:5432/test',
  };
}

const median = (samples: number[]) => quantiles(samples).p50;

// ─── The sides ──────────────────────────────────────────────────────────────────────────────────────

/** One side at one size: `pair` saves a fresh state, loads the latest, and checks it outside its timing. */
interface Side {
  readonly name: string;
  pair(): Promise<number>;
}

/** Random bytes, with the pair's number written over the start so that no two saves store the same state. */
function stamped(base: Uint8Array, n: number): Uint8Array {
  const state = Uint8Array.from(base);
  new DataView(state.buffer).setUint32(0, n);
  return state;
}

function ours(store: CheckpointStore, run: string, size: number): Side {
  const base = randomBytes(size);
  let n = 0;
  return {
    name: 'weir CheckpointStore',
    async pair() {
      const state = stamped(base, ++n);
      const t = performance.now();
      const saved = await store.saveCheckpoint(run, 'node', state);
      const loaded = await store.loadLatest(run, 'node');
      const ms = performance.now() - t;
      if (loaded?.meta.seq !== saved.seq || loaded.state.byteLength !== size) throw new Error(`weir: loaded ${loaded?.meta.seq} after saving ${saved.seq}`);
      return ms;
    },
  };
}

/**
 * A LangGraph saver on one thread. The state is the checkpoint's one channel value, in the representation
 * that saver handles best (from JsonPlusSerializer's and the savers' code, and timed both ways).
 * SqliteSaver serialises the whole checkpoint as JSON: a string costs one escape-free copy, a Uint8Array
 * becomes an array of numbers (about 3.6 bytes each, revived element by element; 64 KiB pairs took 57 ms
 * instead of 0.9 ms). PostgresSaver writes each channel value to its own bytea row: a Uint8Array goes in
 * as raw bytes and comes back as-is, a string goes through JSON; the two timed within 10 % of each other,
 * since the commit's fsync and the saver's array_agg read dominate.
 */
function langgraph(name: string, saver: BaseCheckpointSaver, thread: string, size: number, as: 'string' | 'bytes'): Side {
  // Base64 characters: one byte each in UTF-8 and nothing for JSON to escape, so `size` bytes either way.
  const text = randomBytes(size).toString('base64').slice(0, size);
  const bytes = randomBytes(size);
  let n = 0;
  let parent: string | undefined;
  return {
    name,
    async pair() {
      n++;
      const value = as === 'string' ? `${String(n).padStart(10, '0')}${text.slice(10)}` : stamped(bytes, n);
      // A checkpoint as LangGraph's loop writes one: format 4, a uuid6 id (ids sort by time), the channel's
      // new version announced in newVersions, the previous checkpoint as parent.
      const checkpoint: LgCheckpoint = {
        v: 4,
        id: uuid6(-1),
        ts: new Date().toISOString(),
        channel_values: { state: value },
        channel_versions: { state: n },
        versions_seen: {},
      };
      const config = { configurable: { thread_id: thread, checkpoint_ns: '', ...(parent === undefined ? {} : { checkpoint_id: parent }) } };
      const t = performance.now();
      await saver.put(config, checkpoint, { source: 'loop', step: n, parents: {} }, { state: n });
      const tuple = await saver.getTuple({ configurable: { thread_id: thread, checkpoint_ns: '' } });
      const ms = performance.now() - t;
      const loaded = tuple?.checkpoint.channel_values['state'];
      const length = typeof loaded === 'string' ? loaded.length : loaded instanceof Uint8Array ? loaded.byteLength : -1;
      if (tuple?.checkpoint.id !== checkpoint.id || length !== size) throw new Error(`${name}: loaded ${tuple?.checkpoint.id} (${length} bytes) after saving ${checkpoint.id}`);
      parent = checkpoint.id;
      return ms;
    },
  };
}

// ─── Cleanup ────────────────────────────────────────────────────────────────────────────────────────

/** Undo steps, run newest first once: at the end, on an error, or on Ctrl-C / SIGTERM. */
const cleanups: { what: string; undo: () => Promise<unknown> }[] = [];
let cleaning: Promise<void> | undefined;

function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    for (const { what, undo } of cleanups.reverse()) {
      try {
        await undo();
      } catch (err) {
        console.error(`cleanup: ${what} failed:`, err);
      }
    }
  })();
  return cleaning;
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    console.error(`\n${signal}: cleaning up`);
    void cleanup().finally(() => process.exit(130));
  });
}

// ─── Section 1 ──────────────────────────────────────────────────────────────────────────────────────

interface Figures {
  opsPerSec: number;
  p50: number;
  p99: number;
}

async function measure(sides: Side[], pairs: number): Promise<Figures[]> {
  // Warm-up: a tenth of the pairs (at least 20), through the same code as the timed ones.
  const warm = Math.max(20, Math.ceil(pairs / 10));
  for (const side of sides) for (let i = 0; i < warm; i++) await side.pair();
  const samples = sides.map(() => [] as number[]);
  for (let done = 0, turn = 0; done < pairs; done += BLOCK, turn++) {
    const block = Math.min(BLOCK, pairs - done);
    for (let k = 0; k < sides.length; k++) {
      const i = (turn + k) % sides.length;
      for (let j = 0; j < block; j++) samples[i]!.push(await sides[i]!.pair());
    }
  }
  return samples.map((s) => {
    const q = quantiles(s);
    return { opsPerSec: (s.length * 1000) / s.reduce((a, b) => a + b, 0), p50: q.p50, p99: q.p99 };
  });
}

// ─── Section 2 ──────────────────────────────────────────────────────────────────────────────────────

interface FloorFigures {
  putBlob: number;
  publish: number;
  ours: number;
}

async function floor(store: CheckpointStore, js: JetStreamClient, raw: ObjectStore, reps: number): Promise<FloorFigures> {
  const blobs = Array.from({ length: FLOOR_BLOBS }, () => randomBytes(MIB));
  const timed = async (fn: () => Promise<unknown>) => {
    const t = performance.now();
    await fn();
    return performance.now() - t;
  };
  const rounds: Record<keyof FloorFigures, (rep: number) => Promise<number>> = {
    putBlob: (rep) => timed(() => Promise.all(blobs.map((blob, i) => raw.putBlob({ name: `r${rep}/n${i}` }, blob)))),
    // What the server takes with no object around the bytes: each blob as 128 KiB messages, all in flight.
    publish: () =>
      timed(() =>
        Promise.all(
          blobs.map((blob) => {
            const subject = `$O.${RAW_BUCKET}.C.${nuid.next()}`;
            return Promise.all(Array.from({ length: MIB / CHUNK }, (_, c) => js.publish(subject, blob.subarray(c * CHUNK, (c + 1) * CHUNK))));
          }),
        ),
      ),
    ours: async (rep) => {
      const run = `floor-${rep}`;
      await store.createRun(run, { workflow: 'bench-floor' });
      return timed(() => Promise.all(blobs.map((blob, i) => store.saveCheckpoint(run, `n${i}`, blob))));
    },
  };
  const names = Object.keys(rounds) as (keyof FloorFigures)[];
  const samples: Record<keyof FloorFigures, number[]> = { putBlob: [], publish: [], ours: [] };
  // Two untimed rounds of each warm every path.
  for (let rep = -2; rep < reps; rep++) {
    // A rotating order keeps any effect of the previous round's writes off any one of them.
    for (let k = 0; k < names.length; k++) {
      const name = names[(rep + 2 + k) % names.length]!;
      const ms = await rounds[name](rep);
      if (rep >= 0) samples[name].push(ms);
    }
  }
  return { putBlob: median(samples.putBlob), publish: median(samples.publish), ours: median(samples.ours) };
}

// ─── Main ───────────────────────────────────────────────────────────────────────────────────────────

async function main(): Promise<void> {
  const opts = options(process.argv.slice(2));
  const t0 = performance.now();

  const server = await startNatsServer({ jetstream: true });
  cleanups.push({ what: 'nats-server', undo: () => server.dispose() });
  const nc: NatsConnection = await connect({ servers: server.url, name: 'bench-checkpoint-store' });
  cleanups.push({ what: 'NATS connection', undo: () => nc.close() });
  const store = await openCheckpointStore(nc);
  const js = jetstream(nc);
  const rawOs = await new Objm(js).create(RAW_BUCKET, { storage: StorageType.File });

  const dir = await mkdtemp(join(tmpdir(), 'weir-bench-sqlite-'));
  cleanups.push({ what: `rm ${dir}`, undo: () => rm(dir, { recursive: true, force: true }) });
  const db = new Database(join(dir, 'checkpoints.db'));
  cleanups.push({ what: 'sqlite', undo: () => Promise.resolve(db.close()) });
  // The saver's own construction (fromConnString does exactly this), kept in hand for the pragmas and close().
  const sqlite = new SqliteSaver(db);

  const schema = `weir_bench_${process.pid}_${randomUUID().slice(0, 8)}`;
  const admin = new pg.Client({ connectionString: opts.pgUrl });
  await admin.connect();
  cleanups.push({ what: 'PostgreSQL admin connection', undo: () => admin.end() });
  // Created here (not by setup()'s IF NOT EXISTS) so that the drop below can only ever remove our own.
  await admin.query(`CREATE SCHEMA "${schema}"`);
  cleanups.push({ what: `DROP SCHEMA ${schema}`, undo: () => admin.query(`DROP SCHEMA "${schema}" CASCADE`) });
  const postgres = PostgresSaver.fromConnString(opts.pgUrl, { schema });
  cleanups.push({ what: 'PostgresSaver pool', undo: () => postgres.end() });
  await postgres.setup();

  // Durability each side gives as configured here, read from the running systems. A first put makes the
  // saver switch to WAL, which is what sets the synchronous level it then runs at.
  await sqlite.put({ configurable: { thread_id: 'probe', checkpoint_ns: '' } }, { v: 4, id: uuid6(-1), ts: new Date().toISOString(), channel_values: {}, channel_versions: {}, versions_seen: {} }, { source: 'loop', step: 0, parents: {} });
  const journal = String(db.pragma('journal_mode', { simple: true }));
  const synchronous = ['OFF', 'NORMAL', 'FULL', 'EXTRA'][Number(db.pragma('synchronous', { simple: true }))] ?? '?';
  const setting = async (name: string) => String((await admin.query<{ v: string }>(`SELECT current_setting('${name}') AS v`)).rows[0]?.v);
  const [fsync, syncCommit, walSync, pgVersion] = [await setting('fsync'), await setting('synchronous_commit'), await setting('wal_sync_method'), await setting('server_version')];

  console.log(`bench:checkpoint-store  node ${process.version}, ${process.arch}, sequential save + load-latest pairs, sides taking turns in blocks of ${BLOCK}`);
  console.log('   durability as configured (nothing tuned on any side):');
  console.log(`   weir     nats-server ${nc.info?.version ?? '?'}, JetStream file storage, 1 replica: a write is acknowledged once in the OS page cache; fsync every 2 min (the default sync_interval). Survives a process crash; an OS crash or power loss can lose the last 2 min`);
  console.log(`   sqlite   better-sqlite3 (SQLite ${String(db.prepare('select sqlite_version() as v').pluck().get())}), journal_mode=${journal}, synchronous=${synchronous} (the saver sets WAL; better-sqlite3 builds with WAL → NORMAL): a commit is in the WAL file, fsynced only at WAL checkpoints. Survives a process crash; an OS crash or power loss can lose recent commits`);
  console.log(`   postgres PostgreSQL ${pgVersion}, fsync=${fsync}, synchronous_commit=${syncCommit}, wal_sync_method=${walSync}: every commit's WAL is flushed to disk before it is acknowledged. Survives power loss: the strongest of the three`);
  console.log('   state: weir gets bytes; SqliteSaver a string of as many ASCII characters, PostgresSaver a Uint8Array (each its best representation)');

  const verdicts: string[] = [];
  for (const size of SIZES) {
    const pairs = opts.pairs ?? size.pairs;
    const run = `bench-${size.bytes}`;
    await store.createRun(run, { workflow: 'bench' });
    const sides = [
      ours(store, run, size.bytes),
      langgraph('LangGraph SqliteSaver', sqlite, run, size.bytes, 'string'),
      langgraph('LangGraph PostgresSaver', postgres, run, size.bytes, 'bytes'),
    ];
    const figures = await measure(sides, pairs);
    const [w, ...others] = figures as [Figures, ...Figures[]];
    console.log(`── ${size.label} state, ${pairs} pairs per side`);
    sides.forEach((side, i) => {
      const f = figures[i]!;
      console.log(`   ${side.name.padEnd(24)} ${String(round(f.opsPerSec)).padStart(8)} pairs/s   p50 ${round(f.p50, 2)} ms   p99 ${round(f.p99, 2)} ms`);
    });
    let ahead = true;
    others.forEach((o, i) => {
      const tput = w.opsPerSec / o.opsPerSec;
      const p99 = w.p99 / o.p99;
      ahead &&= tput > 1 && p99 < 1;
      console.log(`   weir vs ${sides[i + 1]!.name.replace('LangGraph ', '').padEnd(15)} throughput ${round(tput, 2)}×   p99 ${round(p99, 2)}× (below 1 is faster)`);
    });
    verdicts.push(`   ${size.label.padEnd(7)} ${ahead ? 'MET' : 'NOT MET'}`);
  }

  const f = await floor(store, js, rawOs, opts.reps);
  const ratio = f.ours / f.putBlob;
  console.log(`── raw object store floor: ${FLOOR_BLOBS} × 1 MiB written concurrently, median of ${opts.reps} repetitions`);
  console.log(`   @nats-io/obj putBlob               ${round(f.putBlob, 1)} ms`);
  console.log(`   weir saveCheckpoint (16 nodes)      ${round(f.ours, 1)} ms`);
  console.log(`   ratio                              ${round(ratio, 2)}× (goal ≤ ${FLOOR_GOAL}×: ${ratio <= FLOOR_GOAL ? 'MET' : 'NOT MET'})`);
  console.log(`   for scale: the same bytes as bare JetStream publishes (128 KiB, all in flight, no object) ${round(f.publish, 1)} ms: weir ${round(f.ours / f.publish, 2)}×`);
  // The whole path a job's checkpoint takes, on a server of its own: barriers, snapshots, the store, the record.
  const job = await measureJobCheckpoint();
  const jobMet = printJobCheckpoint(job);
  console.log('══ summary: ahead of both savers on save + load-latest (higher throughput and lower p99 than each)');
  console.log(verdicts.join('\n'));
  console.log(`   ${FLOOR_BLOBS} concurrent 1 MiB saves ${round(ratio, 2)}× the raw object store (goal ≤ ${FLOOR_GOAL}×: ${ratio <= FLOOR_GOAL ? 'MET' : 'NOT MET'})`);
  console.log(`   a ${job.subtasks}-subtask job's checkpoint of 1 MiB per subtask: ${jobMet ? 'MET' : 'NOT MET'} (goal < ${JOB_CHECKPOINT_GOAL}× writing the state to the object store alone)`);
  console.log(`   (${round((performance.now() - t0) / 1000)} s)`);
}

main()
  .then(cleanup, async (err: unknown) => {
    console.error(err);
    await cleanup();
    process.exitCode = 1;
  })
  .finally(() => process.exit());
