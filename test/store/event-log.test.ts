import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import fc from 'fast-check';
import { describe, expect } from 'vitest';
import { openStore, StoreValidationError, type LogEvent, type LogRow, type Page, type Store } from '../../src/store/index.js';
import { connectTo } from '../support/nats.js';
import { testWithNatsServer } from '../support/nats-fixtures.js';
import type { NatsServerHandle } from '../support/nats-server.js';
import { closeAll, error, FAST, jobId, transition, warning } from './helpers.js';

/** Walks all pages newest first; checks each page's shape on the way. */
async function walk(store: Store, id: string, limit: number, kind?: LogEvent['kind'], onPage?: (page: Page) => Promise<void>): Promise<LogRow[]> {
  const rows: LogRow[] = [];
  let cursor: number | undefined;
  for (;;) {
    const page = await store.log.page(id, { limit, kind, startingAfter: cursor });
    expect(page.data.length).toBeLessThanOrEqual(limit);
    if (page.hasMore) expect(page.data).toHaveLength(limit);
    rows.push(...page.data);
    await onPage?.(page);
    if (!page.hasMore) return rows;
    cursor = page.data.at(-1)!.seq;
  }
}

function expectStrictlyDescending(rows: LogRow[]): void {
  for (let i = 1; i < rows.length; i++) expect(rows[i]!.seq).toBeLessThan(rows[i - 1]!.seq);
}

const it = testWithNatsServer();

describe('EventLog', () => {
  let server: NatsServerHandle;
  let nc: NatsConnection;
  let store: Store;

  it.beforeAll(async ({ natsServer, connect }) => {
    server = natsServer;
    nc = await connect('event-log');
    store = await openStore(nc, FAST);
  });

  it('creates the stream as specified', async () => {
    const jsm = await jetstreamManager(nc);
    const { config } = await jsm.streams.info('WEIR_JOB_LOG');
    expect(config).toMatchObject({ subjects: ['weir.log.*'], storage: 'file', allow_direct: true, duplicate_window: 120_000_000_000 });
  });

  it("binds an existing stream, turning on what it relies on and keeping the operator's limits", async () => {
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: 'CUSTOM_LOG', subjects: ['custom.log.*'], allow_direct: false, max_age: 3_600_000_000_000 });
    const custom = await openStore(nc, { ...FAST, logStream: 'CUSTOM_LOG', logSubjectPrefix: 'custom.log' });
    const { config } = await jsm.streams.info('CUSTOM_LOG');
    expect(config).toMatchObject({ allow_direct: true, max_age: 3_600_000_000_000, duplicate_window: 120_000_000_000 });
    const seq = await custom.log.append('j1', warning('custom'));
    expect((await custom.log.page('j1', { limit: 1 })).data).toMatchObject([{ seq, message: 'custom' }]);

    await jsm.streams.add({ name: 'WRONG_LOG', subjects: ['elsewhere.*'] });
    await expect(openStore(nc, { ...FAST, logStream: 'WRONG_LOG' })).rejects.toThrow(/without subject weir\.log\.\*/);
  });

  it('appends events and pages them newest first, since() oldest first', async () => {
    const id = jobId();
    const events: LogEvent[] = [transition(1, 10), error('bad record', 11), warning('slow checkpoint', 12), transition(2, 13)];
    const seqs: number[] = [];
    for (const event of events) seqs.push(await store.log.append(id, event));
    expect([...seqs].sort((a, b) => a - b)).toEqual(seqs);

    const page = await store.log.page(id, { limit: 10 });
    expect(page.hasMore).toBe(false);
    expect(page.data).toEqual(events.map((e, i) => ({ seq: seqs[i], ...e })).reverse());

    const first2 = await store.log.page(id, { limit: 2 });
    expect(first2).toEqual({ data: page.data.slice(0, 2), hasMore: true });
    const next2 = await store.log.page(id, { limit: 2, startingAfter: first2.data[1]!.seq });
    expect(next2).toEqual({ data: page.data.slice(2), hasMore: false });

    expect(await store.log.page(id, { limit: 10, kind: 'error' })).toEqual({ data: [{ seq: seqs[1], ...events[1] }], hasMore: false });
    expect((await store.log.page(id, { limit: 1, kind: 'transition' })).data[0]?.seq).toBe(seqs[3]);

    const since = await store.log.since(id, seqs[0]!, 2);
    expect(since).toEqual({ data: [1, 2].map((i) => ({ seq: seqs[i], ...events[i] })), hasMore: true });
    expect(await store.log.since(id, seqs[2]!, 2)).toEqual({ data: [{ seq: seqs[3], ...events[3] }], hasMore: false });
    expect(await store.log.since(id, seqs[3]!, 2)).toEqual({ data: [], hasMore: false });
    expect(await store.log.since(id, 0, 100)).toMatchObject({ hasMore: false, data: { length: 4 } });
  });

  it('returns empty pages for a job without events and for a cursor before its first event', async () => {
    expect(await store.log.page(jobId('empty'), { limit: 5 })).toEqual({ data: [], hasMore: false });
    const id = jobId();
    const seq = await store.log.append(id, warning('only'));
    expect(await store.log.page(id, { limit: 5, startingAfter: seq })).toEqual({ data: [], hasMore: false });
    expect(await store.log.page(id, { limit: 5, startingAfter: 1 })).toEqual({ data: [], hasMore: false });
  });

  it('makes an append idempotent under retry: the same id gives the same seq and one stored message', async () => {
    const id = jobId('dedup');
    const a = await store.log.append(id, warning('once'), { id: 'evt-1' });
    const b = await store.log.append(id, warning('once'), { id: 'evt-1' });
    expect(b).toBe(a);
    const c = await store.log.append(id, warning('twice'), { id: 'evt-2' });
    expect(c).toBeGreaterThan(a);
    const jsm = await jetstreamManager(nc);
    const info = await jsm.streams.info('WEIR_JOB_LOG', { subjects_filter: `weir.log.${id}` });
    expect(info.state.subjects?.[`weir.log.${id}`]).toBe(2);
    expect((await store.log.page(id, { limit: 10 })).data.map((r) => r.seq)).toEqual([c, a]);
  });

  it('validates events, ids and page arguments', async () => {
    const id = jobId();
    const bad = [
      { kind: 'transition', from: 'Nowhere', to: 'Running', generation: 1, at: 1 },
      { kind: 'error', message: 'x', domain: 'cosmic', hint: 'no_retry', at: 1 },
      { kind: 'warning', message: 'x', at: 1, extra: true },
      { kind: 'note', message: 'x', at: 1 },
    ];
    for (const event of bad) await expect(store.log.append(id, event as LogEvent)).rejects.toBeInstanceOf(StoreValidationError);
    await expect(store.log.append('no.dots', warning('x'))).rejects.toBeInstanceOf(StoreValidationError);
    await expect(store.log.append(id, warning('x'), { id: 'has space' })).rejects.toBeInstanceOf(StoreValidationError);
    await expect(store.log.page(id, { limit: 0 })).rejects.toBeInstanceOf(StoreValidationError);
    await expect(store.log.page(id, { limit: 5, startingAfter: -1 })).rejects.toBeInstanceOf(StoreValidationError);
    await expect(store.log.since(id, 1.5, 5)).rejects.toBeInstanceOf(StoreValidationError);
  });

  it('walks pages of interleaved jobs without repeating or skipping a row (property)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(fc.integer({ min: 0, max: 2 }), fc.constantFrom('transition', 'error', 'warning')), { minLength: 0, maxLength: 120 }),
        fc.integer({ min: 1, max: 17 }),
        fc.option(fc.constantFrom('transition' as const, 'error' as const, 'warning' as const), { nil: undefined }),
        async (script, limit, kind) => {
          const ids = [jobId('walk'), jobId('walk'), jobId('walk')];
          const expected: LogRow[][] = [[], [], []];
          for (const [job, k] of script) {
            const event = k === 'transition' ? transition(1) : k === 'error' ? error('e') : warning('w');
            const seq = await store.log.append(ids[job]!, event);
            expected[job]!.push({ seq, ...event });
          }
          for (let j = 0; j < 3; j++) {
            const want = expected[j]!.filter((r) => kind === undefined || r.kind === kind).reverse();
            expect(await walk(store, ids[j]!, limit, kind)).toEqual(want);
          }
        },
      ),
      { numRuns: 25 },
    );
  });

  it('walks pages correctly while events are appended concurrently', async () => {
    const id = jobId('busy');
    const noise = jobId('noise');
    for (let i = 0; i < 150; i++) {
      await store.log.append(i % 3 === 0 ? id : noise, i % 5 === 0 ? error(`e${i}`) : transition(i));
    }
    let appending = true;
    const appended: number[] = [];
    const writer = (async () => {
      for (let i = 0; appending; i++) appended.push(await store.log.append(i % 2 === 0 ? id : noise, warning(`late ${i}`)));
    })();
    try {
      const top = (await store.log.page(id, { limit: 1 })).data[0]!.seq;
      // Rows at or below the first page's newest are exactly the rows a full walk must return.
      const before = (await store.log.since(id, 0, 1000)).data.filter((r) => r.seq <= top);
      const pages: number[] = [];
      const rows = await walk(store, id, 7, undefined, async (page) => {
        pages.push(page.data.length);
        await new Promise((resolve) => setTimeout(resolve, 2)); // let the writer in between pages
      });
      expect(pages.length).toBeGreaterThan(3);
      expectStrictlyDescending(rows);
      expect(new Set(rows.map((r) => r.seq)).size).toBe(rows.length);
      // Rows appended during the walk are newer than its first page; everything else is there once.
      const walked = rows.filter((r) => r.seq <= top);
      expect(walked).toEqual([...before].reverse());
      expect(rows.length - walked.length).toBeLessThanOrEqual(appended.length);

      const errors = await walk(store, id, 3, 'error');
      expect(errors.every((r) => r.kind === 'error')).toBe(true);
      expect(errors.map((r) => r.seq)).toEqual(before.filter((r) => r.kind === 'error').map((r) => r.seq).reverse());
    } finally {
      appending = false;
      await writer;
    }
    expect(appended.length).toBeGreaterThan(0);
  });

  it('pages a sparse job buried among many other events without reading them', async () => {
    const id = jobId('sparse');
    const noise = jobId('noise');
    const mine: number[] = [];
    for (let i = 0; i < 600; i++) {
      if (i % 97 === 0) mine.push(await store.log.append(id, transition(i)));
      else await store.log.append(noise, warning('x'));
    }
    // And a burst at the end: density changes along the stream.
    for (let i = 0; i < 30; i++) mine.push(await store.log.append(id, warning(`burst ${i}`)));
    const rows = await walk(store, id, 4);
    expect(rows.map((r) => r.seq)).toEqual([...mine].reverse());
  });

  it('needs a bounded number of consumers and pulls per page, however deep the walk', async () => {
    const id = jobId('cost');
    const noise = jobId('noise');
    const js = jetstream(nc);
    const pending: Promise<unknown>[] = [];
    for (let i = 0; i < 4000; i++) pending.push(js.publish(`weir.log.${i % 25 === 0 ? id : noise}`, JSON.stringify(warning(`m${i}`))));
    await Promise.all(pending);
    const spy = await connectTo(server.url, 'api-spy');
    try {
      let creates = 0;
      let pulls = 0;
      const count = (counter: () => void) => ({ callback: counter });
      spy.subscribe('$JS.API.CONSUMER.CREATE.WEIR_JOB_LOG.>', count(() => (creates += 1)));
      spy.subscribe('$JS.API.CONSUMER.MSG.NEXT.WEIR_JOB_LOG.>', count(() => (pulls += 1)));
      await spy.flush();
      let pages = 0;
      const rows = await walk(store, id, 10, undefined, () => {
        pages++;
        return Promise.resolve();
      });
      await spy.flush();
      expect(rows).toHaveLength(160);
      expect(pages).toBe(16);
      // One probe to count the rows older than the cursor, one or two to place the window, one pull.
      expect(creates / pages).toBeLessThanOrEqual(3);
      expect(pulls / pages).toBeLessThanOrEqual(1.5);
    } finally {
      await closeAll(spy);
    }
  });

  it('tails live events, from a sequence or from now', async () => {
    const id = jobId('tail');
    const old = await store.log.append(id, transition(1));
    const fromNow = await store.log.tail(id);
    const fromOld = await store.log.tail(id, old);
    try {
      const s1 = await store.log.append(jobId('other'), warning('not mine'));
      const s2 = await store.log.append(id, error('live'));
      const s3 = await store.log.append(id, warning('live too'));
      expect(s1).toBeLessThan(s2);
      const take = async (tail: AsyncIterable<LogRow>, n: number) => {
        const out: LogRow[] = [];
        for await (const row of tail) {
          out.push(row);
          if (out.length === n) break;
        }
        return out;
      };
      expect((await take(fromNow, 2)).map((r) => r.seq)).toEqual([s2, s3]);
      expect((await take(fromOld, 3)).map((r) => [r.seq, r.kind])).toEqual([
        [old, 'transition'],
        [s2, 'error'],
        [s3, 'warning'],
      ]);
    } finally {
      fromNow.stop();
      fromOld.stop();
    }
  });

  it('purges a job log', async () => {
    const id = jobId('purged');
    await store.log.append(id, warning('a'));
    await store.log.append(id, warning('b'));
    await store.log.purge(id);
    expect(await store.log.page(id, { limit: 5 })).toEqual({ data: [], hasMore: false });
  });
});
