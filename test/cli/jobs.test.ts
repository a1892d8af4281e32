import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { NatsConnection } from '@nats-io/transport-node';
import { afterEach, beforeEach, describe, expect, vi, type MockInstance } from 'vitest';
import { jobsCommand } from '../../src/cli/jobs.js';
import { main } from '../../src/cli/main.js';
import { up } from '../../src/cli/up.js';
import {
  encode,
  errorReply,
  jobStateEventSchema,
  jobViewSchema,
  parseSubject,
  subjects,
  type JobStateEvent,
  type JobView,
} from '../../src/protocol/index.js';
import { startNatsServer, type NatsServerHandle } from '../support/nats-server.js';
import { eventually } from '../support/nats.js';
import { WeirProcess } from '../support/processes.js';
import { testWithNatsServer } from '../support/nats-fixtures.js';

const NOW = 1_763_884_800_000_000;

const VIEW: JobView = jobViewSchema.parse({
  v: 1,
  job_id: 'job-1',
  name: 'counter',
  revision: 7,
  graph: {
    nodes: [
      { id: 'src', operator: 'impulse', parallelism: 1, config: {} },
      { id: 'out', operator: 'preview', parallelism: 1, config: {} },
    ],
    edges: [{ from: 'src', to: 'out', kind: 'forward' }],
  },
  parallelism: null,
  config: { stop: 'none', restart_nonce: 2, restart_mode: 'safe', parallelism_overrides: {}, checkpoint_interval_micros: 10_000_000, ttl_micros: null },
  state: 'Running',
  generation: 3,
  restarts: 2,
  failure: { message: 'worker lost', domain: 'external', hint: 'with_backoff', at: NOW },
  created_at: NOW,
  start_time: NOW,
  finish_time: null,
  available_action: { text: 'Stop', stop: 'checkpoint', in_progress: false },
  waiting: null,
});

/** What a job list row carries besides id, name, state, generation and creation time. */
const SUMMARY = {
  stop: 'none',
  restarts: 0,
  failure: null,
  start_time: NOW,
  finish_time: null,
  available_action: { text: 'Stop', stop: 'checkpoint', in_progress: false },
  waiting: null,
};

interface Received {
  subject: string;
  body: unknown;
}

/** The jobs the fake controller knows, as its list shows them (newest first is descending id order). */
const JOBS = [
  { ...SUMMARY, job_id: 'job-2', name: 'bounded', state: 'Finished', generation: 1, created_at: NOW + 1, finish_time: NOW + 2 },
  { ...SUMMARY, job_id: 'job-1', name: 'counter', state: 'Running', generation: 3, restarts: 2, created_at: NOW, owner: 'ctl-a', failure: VIEW.failure },
  { ...SUMMARY, job_id: 'same', name: 'same', state: 'Stopped', generation: 1, created_at: NOW },
  { ...SUMMARY, job_id: 'pre-bbb', name: 'b', state: 'Running', generation: 1, created_at: NOW },
  { ...SUMMARY, job_id: 'pre-aaa2', name: 'a2', state: 'Running', generation: 1, created_at: NOW },
  { ...SUMMARY, job_id: 'pre-aaa1', name: 'a1', state: 'Running', generation: 1, created_at: NOW },
].sort((a, b) => (a.job_id < b.job_id ? 1 : -1));
const KNOWN = new Set(JOBS.map((job) => job.job_id));

/** Answers `weir.api.jobs.*` like the controller would; a job it does not know is `unknown_job`. */
function fakeController(nc: NatsConnection, received: Received[]): void {
  const sub = nc.subscribe('weir.api.jobs.>');
  void (async () => {
    for await (const msg of sub) {
      const body = msg.json<unknown>();
      received.push({ subject: msg.subject, body });
      const parsed = parseSubject(msg.subject);
      const job = parsed?.params['job'];
      if (job !== undefined && !KNOWN.has(job)) {
        msg.respond(encode(errorReply('unknown_job', `no job ${JSON.stringify(job)}`)));
        continue;
      }
      switch (String(parsed?.name)) {
        case 'apiJobsCreate':
          msg.respond(encode({ v: 1, job_id: 'job-1', revision: 1 }));
          break;
        case 'apiJobsList': {
          const { limit = 10, starting_after: after } = body as { limit?: number; starting_after?: string };
          const page = JOBS.filter((j) => after === undefined || j.job_id < after);
          msg.respond(encode({ v: 1, data: page.slice(0, limit), has_more: page.length > limit }));
          break;
        }
        case 'apiJobGet':
          msg.respond(encode({ ...VIEW, job_id: job }));
          break;
        case 'apiJobConfig':
          // Job `same` already has the config asked for.
          msg.respond(encode(job === 'same' ? { v: 1, job_id: job, revision: 8, changed: false, state: 'Stopped' } : { v: 1, job_id: job, revision: 8, changed: true, state: 'Running' }));
          break;
        case 'apiJobDelete':
          msg.respond(encode({ v: 1, job_id: job }));
          break;
        default:
          msg.respond(encode(errorReply('internal', `unexpected ${msg.subject}`)));
      }
    }
  })();
}

let server: NatsServerHandle;
let nc: NatsConnection;
const received: Received[] = [];
let out: string[];
let errSpy: MockInstance<(...args: unknown[]) => void>;
const errLines = () => errSpy.mock.calls.map((args) => args.map(String).join(' '));

async function weir(...argv: string[]): Promise<number> {
  return main([...argv, '--nats', server.url], (line) => out.push(line));
}

const it = testWithNatsServer();

it.beforeAll(async ({ natsServer, connect }) => {
  server = natsServer;
  nc = await connect('fake-controller');
  fakeController(nc, received);
  await nc.flush();
});

beforeEach(() => {
  out = [];
  received.length = 0;
  errSpy = vi.spyOn(console, 'error').mockImplementation(() => undefined);
});

afterEach(() => {
  errSpy.mockRestore();
});

describe('argument errors exit 2 with one line that points to the help', () => {
  it.each([
    [['jobs']],
    [['jobs', 'bogus']],
    [['jobs', 'get']],
    [['jobs', 'get', 'a.b']],
    [['jobs', 'get', 'j', 'extra']],
    [['jobs', 'get', 'j', '--mode', 'graceful']],
    [['jobs', 'stop', 'j', '--mode', 'later']],
    [['jobs', 'rescale', 'j', '0']],
    [['jobs', 'rescale', 'j', 'x']],
    [['jobs', 'watch', 'j', '--count', '-1']],
    [['jobs', 'list', '--bogus']],
    [['submit']],
    [['pipelines']],
    [['pipelines', 'create']],
    [['pipelines', 'delete', 'j']],
    [['jobs', 'tail']],
    [['jobs', 'tail', 'j', '--count', '0']],
    [['jobs', 'errors', 'j', '--limit', 'x']],
    [['jobs', 'errors', 'j', '--mode', 'force']],
  ])('weir %j', async (argv) => {
    expect(await main(argv, (line) => out.push(line))).toBe(2);
    expect(errLines()).toHaveLength(1);
    expect(errLines()[0]).toMatch(new RegExp(`^weir ${argv[0]}: .+ \\(see weir ${argv[0]} --help\\)$`));
    expect(received).toEqual([]);
  });

  it('an unknown flag is named in our words, not parseArgs\' own', async () => {
    expect(await main(['jobs', 'list', '--bogus'], (line) => out.push(line))).toBe(2);
    expect(errLines()).toEqual(['weir jobs: unknown option --bogus (see weir jobs --help)']);
  });

  it('an unreadable pipeline file', async () => {
    expect(await weir('submit', '/nonexistent/pipeline.json')).toBe(2);
    expect(errLines().join('\n')).toContain('cannot read the pipeline /nonexistent/pipeline.json');
  });

  it('jobs help prints the usage and exits 0', async () => {
    expect(await main(['jobs', 'help'], (line) => out.push(line))).toBe(0);
    expect(out.join('\n')).toContain('weir jobs watch ID');
    expect(out.join('\n')).toContain('weir jobs tail ID');
    expect(out.join('\n')).toContain('weir jobs errors ID');
    expect(out.join('\n')).toContain('weir pipelines create FILE');
    out = [];
    expect(await main(['pipelines', 'help'], (line) => out.push(line))).toBe(0);
    expect(out.join('\n')).toContain('weir pipelines create FILE');
  });

  it('up: bad numbers', async () => {
    const err: string[] = [];
    expect(await up(['--workers', '0'], { out: (l) => out.push(l), err: (l) => err.push(l) })).toBe(2);
    expect(await up(['--slots', 'many'], { out: (l) => out.push(l), err: (l) => err.push(l) })).toBe(2);
    expect(await up(['--shutdown-timeout', '0'], { out: (l) => out.push(l), err: (l) => err.push(l) })).toBe(2);
    expect(err).toEqual([
      'weir up: --workers must be a positive integer, got "0" (see weir up --help)',
      'weir up: --slots must be a positive integer, got "many" (see weir up --help)',
      'weir up: --shutdown-timeout MS must be a positive integer, got "0" (see weir up --help)',
    ]);
  });

  it('up: no NATS and no nats-server installed is one line and exit 1', async () => {
    const err: string[] = [];
    const env = { NATS_URL: 'nats://127.0.0.1:1', WEIR_NATS_SERVER: '/nonexistent/nats-server', PATH: '' };
    expect(await up([], { out: (l) => out.push(l), err: (l) => err.push(l), env })).toBe(1);
    expect(err).toHaveLength(1);
    expect(err[0]).toMatch(/nats-server is not installed: install nats-server/);
    expect(out).toEqual([]);
  });
});

describe('against a controller', () => {
  it('submit sends the pipeline and prints the job id', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'weir-cli-'));
    const file = join(dir, 'p.json');
    const pipeline = { name: 'x', graph: { nodes: [{ id: 'a', operator: 'impulse' }], edges: [] } };
    writeFileSync(file, JSON.stringify(pipeline));
    expect(await weir('submit', file)).toBe(0);
    expect(out).toEqual(['job-1']);
    expect(received).toEqual([{ subject: 'weir.api.jobs.create', body: pipeline }]);
    out = [];
    expect(await weir('submit', file, '--json')).toBe(0);
    expect(JSON.parse(out[0]!)).toEqual({ v: 1, job_id: 'job-1', revision: 1 });
  });

  it('submit of an example file', async () => {
    expect(await weir('submit', 'examples/counter.json')).toBe(0);
    expect((received[0]?.body as { name: string }).name).toBe('counter');
  });

  it('jobs list: a table with restarts and age, or JSON', async () => {
    expect(await weir('jobs', 'list')).toBe(0);
    const text = out.join('\n');
    const lines = text.split('\n');
    expect(lines[0]).toMatch(/^JOB\s+NAME\s+STATE\s+GENERATION\s+RESTARTS\s+AGE$/);
    // Created in November 2025: the age is days, in the CLI's one duration format.
    expect(text).toMatch(/^job-2\s+bounded\s+Finished\s+1\s+0\s+\d+d\d\dh$/m);
    expect(text).toMatch(/^job-1\s+counter\s+Running\s+3\s+2\s+\d+d\d\dh$/m);
    out = [];
    expect(await weir('jobs', 'list', '--json', '--limit', '5', '--after', 'job-3')).toBe(0);
    expect((JSON.parse(out[0]!) as { data: unknown[] }).data).toHaveLength(2);
    expect(received.at(-1)?.body).toEqual({ v: 1, limit: 5, starting_after: 'job-3' });
  });

  it('jobs list -o wide adds the stop mode, owner, action, creation time, wait and failure', async () => {
    expect(await weir('jobs', 'list', '-o', 'wide')).toBe(0);
    const text = out.join('\n');
    expect(text.split('\n')[0]).toMatch(/^JOB\s+NAME\s+STATE\s+GENERATION\s+RESTARTS\s+AGE\s+STOP\s+OWNER\s+ACTION\s+CREATED\s+WAITING\s+FAILURE$/);
    expect(text).toMatch(/^job-1\s+counter\s+Running\s+3\s+2\s+\S+\s+none\s+ctl-a\s+Stop\s+2025-11-23T08:00:00\.000Z\s+-\s+worker lost$/m);
    expect(text).toMatch(/^job-2\s+bounded\s+Finished\s+1\s+0\s+\S+\s+none\s+-\s+Stop\s+/m);
    expect(await weir('jobs', 'list', '--output', 'wide')).toBe(0);
    expect(await weir('jobs', 'list', '-o', 'yaml')).toBe(2);
    expect(errLines()).toEqual(['weir jobs: -o must be wide, got "yaml" (see weir jobs --help)']);
  });

  it('jobs list --watch draws the list again when a job changes state, and ends on the signal (exit 0)', async () => {
    const abort = new AbortController();
    const lines: string[] = [];
    const done = jobsCommand(['jobs', 'list', '--watch', '--json', '--nats', server.url], { out: (line) => lines.push(line), err: () => undefined, signal: abort.signal });
    await eventually(() => expect(lines).toHaveLength(1));
    const lists = () => received.filter((r) => r.subject === subjects.apiJobsList()).length;
    const before = lists();
    // A state event of any job: the list is read again at once (not after the 5 s refresh)...
    nc.publish(subjects.jobState('job-1'), encode(stateEvent(1, 'Stopping', 'Running')));
    await eventually(() => expect(lists()).toBe(before + 1), { timeoutMs: 2_000 });
    // ...and printed again only when it changed (here it did not).
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0]!)).toMatchObject({ v: 1, has_more: false });
    abort.abort();
    expect(await done).toBe(0);
  });

  it.each(['SIGTERM', 'SIGINT'] as const)('jobs list --watch as a process: %s ends it with exit 0', async (signal) => {
    const watcher = new WeirProcess('watch', ['jobs', 'list', '--watch', '--nats', server.url]);
    try {
      await eventually(() => expect(watcher.output()).toMatch(/^JOB\s+NAME/m), { timeoutMs: 20_000 });
      const started = Date.now();
      expect(await watcher.kill(signal)).toEqual({ code: 0, signal: null });
      // At once, not at the next refresh nor after the CLI's linger.
      expect(Date.now() - started).toBeLessThan(1_500);
    } finally {
      await watcher.kill('SIGKILL');
    }
  }, 30_000);

  it('jobs list --watch on a terminal redraws in place, with the table', async () => {
    const abort = new AbortController();
    const lines: string[] = [];
    const done = jobsCommand(['jobs', 'list', '--watch', '--nats', server.url], { out: (line) => lines.push(line), err: () => undefined, signal: abort.signal, tty: true });
    await eventually(() => expect(lines).toHaveLength(1));
    nc.publish(subjects.jobState('job-2'), encode(stateEvent(1, 'Stopping', 'Running')));
    await eventually(() => expect(lines).toHaveLength(2), { timeoutMs: 2_000 });
    for (const screen of lines) {
      expect(screen.startsWith('\x1b[H\x1b[2J')).toBe(true);
      expect(screen).toMatch(/^JOB\s+NAME\s+STATE\s+GENERATION\s+RESTARTS\s+AGE$/m);
    }
    abort.abort();
    expect(await done).toBe(0);
  });

  it('jobs get: state, generation, restarts, failure and the action', async () => {
    expect(await weir('jobs', 'get', 'job-1')).toBe(0);
    const text = out.join('\n');
    expect(text).toMatch(/^state:\s+Running$/m);
    expect(text).toMatch(/^generation:\s+3$/m);
    expect(text).toMatch(/^restarts:\s+2$/m);
    expect(text).toMatch(/^failure:\s+worker lost \(external, with_backoff/m);
    expect(text).toMatch(/^action:\s+Stop: weir jobs stop job-1 --mode checkpoint$/m);
    expect(received).toEqual([{ subject: subjects.apiJobGet('job-1'), body: { v: 1 } }]);
    out = [];
    expect(await weir('jobs', 'get', 'job-1', '--json')).toBe(0);
    const json = JSON.parse(out[0]!) as JobView & { available_action: unknown };
    expect(json.state).toBe('Running');
    expect(json.available_action).toEqual({ text: 'Stop', stop: 'checkpoint', in_progress: false });
  });

  it.each([
    [['stop', 'job-1'], { v: 1, stop: 'checkpoint' }],
    [['stop', 'job-1', '--mode', 'graceful'], { v: 1, stop: 'graceful' }],
    [['stop', 'job-1', '--mode', 'force'], { v: 1, stop: 'force' }],
    [['start', 'job-1'], { v: 1, stop: 'none' }],
    [['restart', 'job-1'], { v: 1, restart: true, restart_mode: 'safe' }],
    [['restart', 'job-1', '--force'], { v: 1, restart: true, restart_mode: 'force' }],
    [['rescale', 'job-1', '3'], { v: 1, parallelism: 3 }],
  ])('jobs %j sends the config update %j', async (args, body) => {
    expect(await weir('jobs', ...args)).toBe(0);
    expect(received).toEqual([{ subject: subjects.apiJobConfig('job-1'), body }]);
    expect(out[0]).toMatch(/^job-1: .* \(revision 8\)$/);
    out = [];
    expect(await weir('jobs', ...args, '--json')).toBe(0);
    expect(JSON.parse(out[0]!)).toEqual({ v: 1, job_id: 'job-1', revision: 8, changed: true, state: 'Running' });
  });

  it('a config update that changes nothing says so, exits 0, and names no revision', async () => {
    expect(await weir('jobs', 'stop', 'same')).toBe(0);
    expect(await weir('jobs', 'start', 'same')).toBe(0);
    expect(out).toEqual(['same is already Stopped: nothing to change', 'same is already Stopped: nothing to change']);
  });

  it('jobs delete', async () => {
    expect(await weir('jobs', 'delete', 'job-1')).toBe(0);
    expect(out).toEqual(['deleted job-1']);
    expect(received).toEqual([{ subject: subjects.apiJobDelete('job-1'), body: { v: 1 } }]);
  });

  it('an error reply prints code and message and exits 1', async () => {
    expect(await weir('jobs', 'get', 'nope')).toBe(1);
    expect(errLines()).toEqual(['weir: unknown_job: no job "nope", and no job id starts with it']);
    expect(await weir('jobs', 'stop', 'nope', '--json')).toBe(1);
    expect(out).toEqual([]);
  });

  it('a unique prefix of a job id names the job: one request with the text, one listing, then the job', async () => {
    expect(await weir('jobs', 'get', 'pre-b')).toBe(0);
    expect(out.join('\n')).toMatch(/^job:\s+pre-bbb$/m);
    expect(received.map((r) => r.subject)).toEqual([subjects.apiJobGet('pre-b'), subjects.apiJobsList(), subjects.apiJobGet('pre-bbb')]);
    // The listing starts just above the prefix's range of ids.
    expect(received[1]?.body).toEqual({ v: 1, limit: 11, starting_after: 'pre-b'.padEnd(64, 'z') });
    received.length = 0;
    expect(await weir('jobs', 'stop', 'pre-b', '--mode', 'graceful')).toBe(0);
    expect(received.at(-1)).toEqual({ subject: subjects.apiJobConfig('pre-bbb'), body: { v: 1, stop: 'graceful' } });
    expect(await weir('jobs', 'delete', 'pre-b')).toBe(0);
    expect(out.at(-1)).toBe('deleted pre-bbb');
  });

  it('a whole id is one request, even when it is the prefix of another id', async () => {
    expect(await weir('jobs', 'get', 'job-1')).toBe(0);
    expect(received.map((r) => r.subject)).toEqual([subjects.apiJobGet('job-1')]);
  });

  it('an ambiguous prefix lists the candidates and changes nothing (exit 1)', async () => {
    expect(await weir('jobs', 'stop', 'pre-a')).toBe(1);
    expect(errLines()).toEqual(['weir: ambiguous_job: "pre-a" is the start of 2 job ids: pre-aaa2, pre-aaa1; give more of the id']);
    expect(received.some((r) => r.subject.endsWith('.config') && r.subject !== subjects.apiJobConfig('pre-a'))).toBe(false);
    expect(out).toEqual([]);
  });

  it('jobs watch takes a prefix too: it follows the job found', async () => {
    expect(await weir('jobs', 'watch', 'pre-b', '--count', '1')).toBe(0);
    expect(out[0]).toMatch(/ {2}pre-bbb {2}Running \(now\)/);
    expect(errLines()).toContain(`watching ${subjects.jobState('pre-bbb')} on ${server.url} (Ctrl-C to stop)`);
  });

  function stateEvent(seq: number, state: JobStateEvent['state'], previous: JobStateEvent['state'] | null): JobStateEvent {
    return jobStateEventSchema.parse({ v: 1, job_id: 'job-1', state, previous, generation: 1, restarts: 0, at: NOW + seq, seq });
  }

  async function watchUntilSubscribed(argv: string[], signal?: AbortSignal): Promise<{ done: Promise<number>; lines: string[]; err: string[] }> {
    const lines: string[] = [];
    const err: string[] = [];
    const done = jobsCommand(['jobs', 'watch', 'job-1', '--nats', server.url, ...argv], {
      out: (line) => lines.push(line),
      err: (line) => err.push(line),
      ...(signal === undefined ? {} : { signal }),
    });
    await eventually(() => expect(err.join('')).toContain('watching weir.jobs.job-1.state'));
    return { done, lines, err };
  }

  it('jobs watch prints the state now, then one line per state event (--count counts both)', async () => {
    const { done, lines } = await watchUntilSubscribed(['--count', '3']);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/job-1 {2}Running \(now\) {2}generation=3 restarts=2 {2}failure: worker lost$/);
    nc.publish(subjects.jobState('job-1'), encode(stateEvent(1, 'Scheduling', 'Created')));
    nc.publish(subjects.jobState('job-1'), encode(stateEvent(2, 'Running', 'Scheduling')));
    expect(await done).toBe(0);
    expect(lines).toHaveLength(3);
    expect(lines[1]).toMatch(/job-1 {2}Created -> Scheduling {2}generation=1 restarts=0$/);
    expect(lines[2]).toMatch(/Scheduling -> Running/);
  });

  it('jobs watch --json prints the job view, then the raw events; an AbortSignal ends it', async () => {
    const abort = new AbortController();
    const { done, lines } = await watchUntilSubscribed(['--json'], abort.signal);
    const events = [stateEvent(1, 'Scheduling', 'Created'), stateEvent(2, 'Running', 'Scheduling')];
    events.forEach((event) => nc.publish(subjects.jobState('job-1'), encode(event)));
    await eventually(() => expect(lines).toHaveLength(3));
    abort.abort();
    expect(await done).toBe(0);
    expect(jobViewSchema.parse(JSON.parse(lines[0]!))).toEqual(VIEW);
    expect(lines.slice(1).map((line) => JSON.parse(line) as unknown)).toEqual(events);
  });

  it('jobs watch says when state events were missed (a jump in seq)', async () => {
    const { done, lines, err } = await watchUntilSubscribed(['--count', '3']);
    nc.publish(subjects.jobState('job-1'), encode(stateEvent(1, 'Scheduling', 'Created')));
    nc.publish(subjects.jobState('job-1'), encode(stateEvent(4, 'Stopping', 'Running')));
    expect(await done).toBe(0);
    expect(lines).toHaveLength(3);
    expect(err).toContain('weir: 2 state events of job-1 missed (weir jobs get job-1 has the current state)');
  });

  it('jobs watch ends by itself when the job is Finished or deleted', async () => {
    const finished = await watchUntilSubscribed([]);
    nc.publish(subjects.jobState('job-1'), encode(stateEvent(1, 'Finishing', 'Running')));
    nc.publish(subjects.jobState('job-1'), encode(stateEvent(2, 'Finished', 'Finishing')));
    expect(await finished.done).toBe(0);
    expect(finished.lines.at(-1)).toMatch(/Finishing -> Finished/);

    const deleted = await watchUntilSubscribed([]);
    nc.publish(subjects.jobState('job-1'), encode({ ...stateEvent(3, 'Stopped', 'Stopped'), deleted: true }));
    expect(await deleted.done).toBe(0);
    expect(deleted.lines.at(-1)).toMatch(/job-1 {2}deleted \(was Stopped\)$/);
  });

  it('jobs watch of an unknown job says so and exits 1', async () => {
    expect(await weir('jobs', 'watch', 'nope')).toBe(1);
    expect(errLines()).toEqual(['weir: unknown_job: no job "nope", and no job id starts with it']);
    expect(out).toEqual([]);
  });

  it('jobs watch through main with --count', async () => {
    const done = weir('jobs', 'watch', 'job-1', '--count', '3');
    await eventually(() => expect(errLines().join('')).toContain('watching'));
    nc.publish(subjects.jobState('job-1'), encode(stateEvent(1, 'Stopping', 'Running')));
    nc.publish(subjects.jobState('job-1'), encode(stateEvent(2, 'Stopped', 'Stopping')));
    expect(await done).toBe(0);
    expect(out).toHaveLength(3);
  });
});

describe('without a controller', () => {
  it('no responders exits 3 with "no controller answered on <url>"', async () => {
    await using lonely = await startNatsServer();
    expect(await main(['jobs', 'list', '--nats', lonely.url], (line) => out.push(line))).toBe(3);
    expect(errLines().join('\n')).toContain(`no controller answered on ${lonely.url}`);
    expect(await main(['jobs', 'get', 'job-1', '--json', '--nats', lonely.url], (line) => out.push(line))).toBe(3);
    expect(out).toEqual([]);
  });

  it('no NATS server exits 3', async () => {
    expect(await main(['jobs', 'list', '--nats', 'nats://127.0.0.1:1', '--timeout', '1000'], (line) => out.push(line))).toBe(3);
    expect(errLines().join('\n')).toContain('cannot connect to NATS at nats://127.0.0.1:1');
  });
});
