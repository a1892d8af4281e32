/**
 * A job named by a prefix costs the controller no warning: the CLI first asks for the text as an id
 * (unknown_job is a routine answer, logged at debug), then finds the job through the list. A request the
 * controller refuses for another reason still warns.
 */
import { pino } from 'pino';
import { afterAll, describe, expect } from 'vitest';
import { jobsCommand } from '../../src/cli/jobs.js';
import type { Controller } from '../../src/controller/controller.js';
import { subjects } from '../../src/protocol/index.js';
import { requestJson, startTestController } from '../support/cluster.js';
import { testWithNatsServer } from '../support/nats-fixtures.js';
import type { NatsServerHandle } from '../support/nats-server.js';
import { impulseToSinkPipeline } from '../support/pipelines.js';

interface Line {
  level: number;
  msg: string;
  code?: string;
}

const it = testWithNatsServer();
const lines: Line[] = [];
let server: NatsServerHandle;
let controller: Controller;

it.beforeAll(async ({ natsServer, connect }) => {
  server = natsServer;
  const log = pino({ level: 'debug' }, { write: (line: string) => void lines.push(JSON.parse(line) as Line) });
  controller = await startTestController(await connect('controller'), { log });
});

afterAll(async () => {
  await controller?.stop();
});

describe('job id prefixes against a real controller', () => {
  it('resolve without a warning in the controller log; another refusal still warns', async ({ connect }) => {
    const nc = await connect('client');
    // With no worker it waits for slots; only its id matters here.
    const created = await requestJson(nc, subjects.apiJobsCreate(), impulseToSinkPipeline({ name: 'prefixed', rate: 1, sink: 'preview' }), 5_000);
    const id = created['job_id'] as string;
    const out: string[] = [];
    const err: string[] = [];
    const code = await jobsCommand(['jobs', 'get', id.slice(0, -3), '--json', '--nats', server.url], { out: (l) => out.push(l), err: (l) => err.push(l) });
    expect(err).toEqual([]);
    expect(code).toBe(0);
    expect((JSON.parse(out[0]!) as { job_id: string }).job_id).toBe(id);
    expect(lines.filter((l) => l.level >= 40)).toEqual([]);
    expect(lines.some((l) => l.msg === 'API request rejected' && l.code === 'unknown_job' && l.level === 20)).toBe(true);

    const bad = await requestJson(nc, subjects.apiJobConfig(id), { v: 1, parallelism: 0 }, 5_000);
    expect(bad.error?.code).toBe('bad_schema');
    expect(lines.filter((l) => l.level >= 40).map((l) => [l.msg, l.code])).toEqual([['API request rejected', 'bad_schema']]);
  });
});
