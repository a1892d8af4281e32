import { jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { RequestError, type NatsConnection } from '@nats-io/transport-node';
import { describe, expect } from 'vitest';
import {
  JOBS_KV_BUCKET,
  JOBS_KV_STREAM,
  JOB_LOG_STREAM,
  JOB_LOG_SUBJECTS,
  SUBJECTS,
  decodeReply,
  encode,
  errorReply,
  jobRevisionReplySchema,
  parseSubject,
  subjects,
  type SubjectSpec,
} from '../../src/protocol/index.js';
import { testWithNatsServer } from '../support/nats-fixtures.js';
import { pipeline } from './examples.js';

async function requestError(nc: NatsConnection, subject: string): Promise<unknown> {
  try {
    const reply = await nc.request(subject, encode(pipeline), { timeout: 2_000 });
    return new Error(`expected no responders on ${subject}, got a reply: ${reply.string()}`);
  } catch (err) {
    return err;
  }
}

function expectNoResponders(err: unknown): void {
  expect(err).toBeInstanceOf(RequestError);
  expect((err as RequestError).isNoResponders()).toBe(true);
}

const it = testWithNatsServer();

describe('protocol subjects on a real server with the weir streams', () => {
  let nc: NatsConnection;

  it.beforeAll(async ({ connect }) => {
    nc = await connect('protocol-test');
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: JOB_LOG_STREAM, subjects: [...JOB_LOG_SUBJECTS] });
    await new Kvm(nc).create(JOBS_KV_BUCKET);
    expect((await jsm.streams.info(JOBS_KV_STREAM)).config.name).toBe(JOBS_KV_STREAM);
  });

  it('answers a request on a stream subject with a PubAck (the trap the layout avoids)', async () => {
    const reply = await nc.request(subjects.jobLog('job-1'), encode({ v: 1 }), { timeout: 2_000 });
    expect(reply.json()).toMatchObject({ stream: JOB_LOG_STREAM, seq: 1 });
  });

  it('lets a create request with no responder fail with NoResponders, not a PubAck', async () => {
    expectNoResponders(await requestError(nc, subjects.apiJobsCreate()));
  });

  it('does the same for every request subject', async () => {
    const requests = (Object.entries(SUBJECTS) as Array<[keyof typeof subjects, SubjectSpec]>).filter(([, s]) => s.kind === 'request');
    for (const [name, spec] of requests) {
      const subject = spec.pattern.replace(/<[a-z_]+>/g, 'x1');
      expect(parseSubject(subject)?.name).toBe(name);
      expectNoResponders(await requestError(nc, subject));
    }
  });

  it('carries a reply and an error reply through decodeReply', async () => {
    const sub = nc.subscribe(subjects.apiJobsCreate(), {
      callback: (_err, msg) => {
        const body = msg.json<{ name?: string }>();
        msg.respond(encode(body.name === 'dup' ? errorReply('invalid_pipeline', 'duplicate node id "a"') : { v: 1, job_id: 'job-7', revision: 1 }));
      },
    });
    try {
      const ok = await nc.request(subjects.apiJobsCreate(), encode(pipeline), { timeout: 2_000 });
      expect(decodeReply(jobRevisionReplySchema, ok.data)).toEqual({ ok: true, value: { v: 1, job_id: 'job-7', revision: 1 } });
      const bad = await nc.request(subjects.apiJobsCreate(), encode({ ...pipeline, name: 'dup' }), { timeout: 2_000 });
      expect(decodeReply(jobRevisionReplySchema, bad.data)).toEqual({
        ok: false,
        error: { code: 'invalid_pipeline', message: 'duplicate node id "a"' },
        remote: true,
      });
    } finally {
      sub.unsubscribe();
    }
  });
});
