/**
 * The HTTP facade under load: `npm run bench:api [-- --seconds S --connections C --sse-clients N]`.
 *
 * A real nats-server (the test harness's, on a free port with its own store), `weir controller`, one
 * `weir worker` and `weir api`, each in its own process, and one running job (impulse → map-key → count →
 * preview, checkpointing every second so it has a checkpoint history). The load generator (autocannon)
 * runs in this process.
 *
 * Printed:
 * - requests per second and p50/p99 latency of `GET /api/v1/pipelines/:id` (a job, one NATS round trip to
 *   the controller) and `GET …/jobs/:id/checkpoints` at C concurrent connections, beside the floor: a bare
 *   Fastify route in its own process answering the same bytes as a constant, measured in the same run
 *   (before and after weir's routes; their mean is the floor). Goal: ≥ 50 % of the floor's throughput.
 *   Each route is measured twice: on `weir api` as it runs by default (controller reads coalesced and
 *   kept for 250 ms) and on a second `weir api --read-cache-ms 0`, where every request asks the controller.
 * - N concurrent SSE clients on one job's `events` stream while the job is stopped and started a few
 *   times: whether every client received every transition (checked against the event log), and the
 *   delivery latency from the transition's time to its arrival at the client.
 *
 *   --seconds S       length of each throughput run (default 10)
 *   --connections C   concurrent connections of the throughput runs (default 32)
 *   --sse-clients N   concurrent SSE clients (default 1000)
 *   --cycles K        stop/start cycles driven during the SSE phase (default 3)
 */
import { spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import autocannon from 'autocannon';
import { freePort } from '../src/shared/free-port.js';
import { startNatsServer } from '#test-kit/nats-server.js';
import { positiveIntArg, quantiles, round, rssMiB } from './support.js';

const GOAL_THROUGHPUT_RATIO = 0.5;

interface Options {
  seconds: number;
  connections: number;
  sseClients: number;
  cycles: number;
}

function options(argv: string[]): Options {
  const value = (name: string, fallback: number) => positiveIntArg(argv, name, fallback);
  return { seconds: value('--seconds', 10), connections: value('--connections', 32), sseClients: value('--sse-clients', 1000), cycles: value('--cycles', 3) };
}


function weir(args: string[], env: Record<string, string> = {}): ChildProcess {
  return spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], {
    env: { ...process.env, WEIR_LOG_LEVEL: 'warn', WEIR_INSPECT: '', ...env },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
}

async function until<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

async function json(url: string, init: RequestInit = {}): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(url, { ...init, headers: { 'content-type': 'application/json', ...(init.headers ?? {}) } });
  const text = await res.text();
  return { status: res.status, body: text === '' ? {} : (JSON.parse(text) as Record<string, unknown>) };
}

interface Throughput {
  rps: number;
  p50: number;
  p99: number;
  errors: number;
  non2xx: number;
}

async function load(url: string, opts: Options): Promise<Throughput> {
  const result = await autocannon({ url, connections: opts.connections, duration: opts.seconds, pipelining: 1 });
  return { rps: result.requests.average, p50: result.latency.p50, p99: result.latency.p99, errors: result.errors, non2xx: result.non2xx };
}

const line = (name: string, t: Throughput, floor?: Throughput) =>
  `  ${name.padEnd(44)} ${String(Math.round(t.rps)).padStart(7)} req/s   p50 ${String(t.p50).padStart(3)} ms   p99 ${String(t.p99).padStart(3)} ms` +
  (floor === undefined ? '' : `   ${round((100 * t.rps) / floor.rps)} % of the floor`) +
  (t.errors + t.non2xx > 0 ? `   (${t.errors} errors, ${t.non2xx} non-2xx)` : '');

// ─── SSE clients ────────────────────────────────────────────────────────────────────────────────────

interface SseClient {
  /** Transition seqs received, in order, with their arrival times. */
  seqs: number[];
  latenciesMs: number[];
  connected: Promise<void>;
  close(): void;
}

function sseClient(url: string, agent: http.Agent): SseClient {
  const seqs: number[] = [];
  const latenciesMs: number[] = [];
  let request: http.ClientRequest | undefined;
  const connected = new Promise<void>((resolve, reject) => {
    request = http.get(url, { agent, headers: { accept: 'text/event-stream' } }, (res) => {
      if (res.statusCode !== 200) {
        reject(new Error(`SSE answered ${res.statusCode}`));
        res.resume();
        return;
      }
      let buffer = '';
      let sawFirst = false;
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buffer += chunk;
        for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
          const frame = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          if (!sawFirst) {
            sawFirst = true;
            resolve();
          }
          if (!frame.includes('event: transition')) continue;
          const data = frame.split('\n').find((l) => l.startsWith('data: '));
          if (data === undefined) continue;
          const event = JSON.parse(data.slice(6)) as { seq: number; at: number };
          seqs.push(event.seq);
          latenciesMs.push(Date.now() - event.at / 1000);
        }
      });
    });
    request.on('error', reject);
  });
  return { seqs, latenciesMs, connected, close: () => request?.destroy() };
}

// ─── Main ───────────────────────────────────────────────────────────────────────────────────────────

async function main(): Promise<void> {
  const opts = options(process.argv.slice(2));
  console.log(`bench:api  node ${process.version}, ${opts.connections} connections, ${opts.seconds} s per run, ${opts.sseClients} SSE clients`);
  const server = await startNatsServer({ jetstream: true });
  const children: ChildProcess[] = [];
  try {
    children.push(weir(['controller', '--nats', server.url]));
    children.push(weir(['worker', '--nats', server.url, '--slots', '8']));
    const port = await freePort();
    const api = weir(['api', '--nats', server.url, '--api-port', String(port)]);
    children.push(api);
    const base = `http://127.0.0.1:${port}/api/v1`;
    const uncachedPort = await freePort();
    children.push(weir(['api', '--nats', server.url, '--api-port', String(uncachedPort), '--read-cache-ms', '0']));
    const uncachedBase = `http://127.0.0.1:${uncachedPort}/api/v1`;
    await until('the API', 60_000, async () => ((await fetch(`${base}/ping`)).ok ? true : undefined));
    await until('the uncached API', 60_000, async () => ((await fetch(`${uncachedBase}/ping`)).ok ? true : undefined));

    const pipeline = JSON.parse(readFileSync('examples/counter.json', 'utf8')) as Record<string, unknown>;
    const created = await until('the pipeline to be created', 30_000, async () => {
      const res = await json(`${base}/pipelines`, { method: 'POST', body: JSON.stringify({ ...pipeline, name: 'bench-api', checkpoint_interval_micros: 1_000_000 }) });
      return res.status === 201 ? res.body : undefined;
    });
    const id = String(created['id']);
    const jobUrl = `${base}/pipelines/${id}/jobs/${id}`;
    const state = async () => ((await json(`${base}/pipelines/${id}/jobs`)).body['data'] as Array<{ state: string }>)[0]?.state;
    await until('the job to run', 60_000, async () => ((await state()) === 'Running' ? true : undefined));
    await until('a few checkpoints', 60_000, async () => (((await json(`${jobUrl}/checkpoints`)).body['data'] as unknown[]).length >= 5 ? true : undefined));

    // ── Throughput ──
    const jobBody = await (await fetch(`${base}/pipelines/${id}`)).text();
    const floorChild = spawn(process.execPath, ['--import', 'tsx', 'bench/api-floor.ts', jobBody], { stdio: ['ignore', 'pipe', 'inherit'] });
    children.push(floorChild);
    const floorPort = await new Promise<number>((resolve) => floorChild.stdout.once('data', (d: Buffer) => resolve(Number(d.toString().trim()))));
    const floorUrl = `http://127.0.0.1:${floorPort}/constant`;
    await load(floorUrl, { ...opts, seconds: 2 }); // warm-up
    for (const url of [`${base}/pipelines/${id}`, `${jobUrl}/checkpoints`, `${uncachedBase}/pipelines/${id}`, `${uncachedBase}/pipelines/${id}/jobs/${id}/checkpoints`]) {
      await load(url, { ...opts, seconds: 2 });
    }
    const floorBefore = await load(floorUrl, opts);
    const getJob = await load(`${base}/pipelines/${id}`, opts);
    const getCheckpoints = await load(`${jobUrl}/checkpoints`, opts);
    const getJobUncached = await load(`${uncachedBase}/pipelines/${id}`, opts);
    const getCheckpointsUncached = await load(`${uncachedBase}/pipelines/${id}/jobs/${id}/checkpoints`, opts);
    const floorAfter = await load(floorUrl, opts);
    const floor: Throughput = {
      rps: (floorBefore.rps + floorAfter.rps) / 2,
      p50: (floorBefore.p50 + floorAfter.p50) / 2,
      p99: (floorBefore.p99 + floorAfter.p99) / 2,
      errors: floorBefore.errors + floorAfter.errors,
      non2xx: floorBefore.non2xx + floorAfter.non2xx,
    };
    console.log(`\nthroughput (${opts.connections} connections, loopback; goal ≥ ${GOAL_THROUGHPUT_RATIO * 100} % of the floor)`);
    console.log(line('floor: bare Fastify constant', floor));
    console.log(line('GET /pipelines/:id (job)', getJob, floor));
    console.log(line('GET …/jobs/:id/checkpoints', getCheckpoints, floor));
    console.log(line('  the same, --read-cache-ms 0: job', getJobUncached, floor));
    console.log(line('  the same, --read-cache-ms 0: checkpoints', getCheckpointsUncached, floor));
    const checkpointsBytes = (await (await fetch(`${jobUrl}/checkpoints`)).text()).length;
    console.log(`  (job body ${jobBody.length} B, checkpoints body ${checkpointsBytes} B; floor runs: ${Math.round(floorBefore.rps)} and ${Math.round(floorAfter.rps)} req/s)`);

    // ── SSE fan-out ──
    const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity });
    const rssBefore = rssMiB(api.pid);
    const clients: SseClient[] = [];
    const opened = Date.now();
    for (let i = 0; i < opts.sseClients; i++) clients.push(sseClient(`${jobUrl}/events`, agent));
    await Promise.all(clients.map((c) => c.connected));
    const connectMs = Date.now() - opened;
    const rssConnected = rssMiB(api.pid);
    const patch = (stop: string) => json(`${base}/pipelines/${id}`, { method: 'PATCH', body: JSON.stringify({ stop }) });
    const driveStarted = Date.now();
    for (let cycle = 0; cycle < opts.cycles; cycle++) {
      await patch('checkpoint');
      await until('Stopped', 60_000, async () => ((await state()) === 'Stopped' ? true : undefined));
      await patch('none');
      await until('Running', 60_000, async () => ((await state()) === 'Running' ? true : undefined));
    }
    // Every transition of the drive, from a client that joins afterwards with Last-Event-ID: the log's own answer.
    const minSeq = Math.min(...clients.map((c) => c.seqs[0] ?? Infinity));
    const reference = sseClient(`${jobUrl}/events?last_event_id=${minSeq - 1}`, agent);
    await reference.connected;
    await sleep(1_000);
    const expected = reference.seqs;
    await until('every client to receive every transition', 30_000, () => Promise.resolve(clients.every((c) => c.seqs.length >= expected.length) ? true : undefined)).catch(() => undefined);
    const complete = clients.filter((c) => c.seqs.length === expected.length && c.seqs.every((s, i) => s === expected[i])).length;
    const latencies = quantiles(clients.flatMap((c) => c.latenciesMs));
    const rssPeak = rssMiB(api.pid);
    console.log(`\nSSE: ${opts.sseClients} clients on one job's events, ${opts.cycles} stop/start cycles (${round((Date.now() - driveStarted) / 1000)} s)`);
    console.log(`  connected in ${connectMs} ms; ${expected.length} transitions; ${complete}/${opts.sseClients} clients received every one, in order, none twice`);
    console.log(`  delivery latency (transition time → client): p50 ${round(latencies.p50)} ms, p99 ${round(latencies.p99)} ms, max ${round(latencies.max)} ms over ${latencies.n} deliveries`);
    console.log(`  API RSS: ${round(rssBefore)} MiB before, ${round(rssConnected)} MiB connected, ${round(rssPeak)} MiB at the end`);
    for (const c of [...clients, reference]) c.close();
    agent.destroy();
    const ok = getJob.rps >= GOAL_THROUGHPUT_RATIO * floor.rps && getCheckpoints.rps >= GOAL_THROUGHPUT_RATIO * floor.rps && complete === opts.sseClients;
    console.log(`\ngoals ${ok ? 'met' : 'NOT met'}: GET job ${round((100 * getJob.rps) / floor.rps)} %, GET checkpoints ${round((100 * getCheckpoints.rps) / floor.rps)} % of the floor (goal ≥ 50 %); SSE ${complete}/${opts.sseClients} complete`);
  } finally {
    for (const child of children) child.kill('SIGTERM');
    await sleep(500);
    for (const child of children) child.kill('SIGKILL');
    await server.stop();
  }
}

await main();
