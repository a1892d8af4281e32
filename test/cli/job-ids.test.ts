import { describe, expect, it } from 'vitest';
import { resolveJobPrefix } from '../../src/cli/job-ids.js';
import type { JobSummary, ListJobsReply, ListJobsRequest } from '../../src/protocol/index.js';

/**
 * A job list as the controller pages it: descending ids, `starting_after` exclusive, `limit` (default 10);
 * a page may stop short of the limit (`pageCap`), as a page of views does.
 */
function lister(ids: readonly string[], pageCap = Infinity) {
  const sorted = [...ids].sort().reverse();
  const requests: ListJobsRequest[] = [];
  const list = (request: ListJobsRequest): Promise<ListJobsReply> => {
    requests.push(request);
    const rest = sorted.filter((id) => request.starting_after === undefined || id < request.starting_after);
    const limit = Math.min(request.limit ?? 10, pageCap);
    return Promise.resolve({ v: 1, data: rest.slice(0, limit).map((job_id) => ({ job_id }) as JobSummary), has_more: rest.length > limit });
  };
  return { list, requests };
}

describe('resolveJobPrefix', () => {
  const ids = ['job-0a1', 'job-0a2', 'job-0b1', 'job-1', 'job-10', 'other'];

  it('finds the one job a prefix starts, in one listing however many jobs there are', async () => {
    const { list, requests } = lister([...ids, ...Array.from({ length: 500 }, (_, i) => `zz-${i}`), ...Array.from({ length: 500 }, (_, i) => `aa-${i}`)]);
    expect(await resolveJobPrefix(list, 'job-0b')).toEqual({ ok: true, id: 'job-0b1' });
    expect(requests).toHaveLength(1);
    expect(await resolveJobPrefix(list, 'oth')).toEqual({ ok: true, id: 'other' });
  });

  it('an exact id wins over the longer ids it starts', async () => {
    expect(await resolveJobPrefix(lister(ids).list, 'job-1')).toEqual({ ok: true, id: 'job-1' });
  });

  it('a prefix of several jobs is an error naming them', async () => {
    expect(await resolveJobPrefix(lister(ids).list, 'job-0a')).toEqual({
      ok: false,
      code: 'ambiguous_job',
      message: '"job-0a" is the start of 2 job ids: job-0a2, job-0a1; give more of the id',
    });
  });

  it('names ten candidates of many, and says there are more', async () => {
    const many = Array.from({ length: 30 }, (_, i) => `job-${String(i).padStart(2, '0')}`);
    const result = await resolveJobPrefix(lister(many).list, 'job-');
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.message).toBe(`"job-" is the start of more than 10 job ids: ${many.slice(-10).reverse().join(', ')}, …; give more of the id`);
  });

  it('reads further pages while they hold matches, and stops at the first id past the range', async () => {
    const { list, requests } = lister(['p-0', 'p-1', 'p-2', 'p-3', 'p-4', 'o-1', 'o-2', 'o-3'], 2);
    const result = await resolveJobPrefix(list, 'p-');
    expect(result.ok === false && result.message).toBe('"p-" is the start of 5 job ids: p-4, p-3, p-2, p-1, p-0; give more of the id');
    expect(requests.map((r) => r.starting_after)).toEqual(['p-'.padEnd(64, 'z'), 'p-3', 'p-1']);
  });

  it('no job: an error saying so', async () => {
    expect(await resolveJobPrefix(lister(ids).list, 'job-2')).toEqual({ ok: false, code: 'unknown_job', message: 'no job "job-2", and no job id starts with it' });
    expect(await resolveJobPrefix(lister(ids).list, 'x'.repeat(64))).toEqual({ ok: false, code: 'unknown_job', message: `no job "${'x'.repeat(64)}", and no job id starts with it` });
  });
});
