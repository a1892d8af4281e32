/**
 * A job named by a unique prefix of its id (`weir jobs get job-0mxd`), found through the job list
 * (`weir.api.jobs.list`), as a user would find it by eye: an exact id always wins, several jobs sharing
 * the prefix are an error that lists them, and so is none.
 */
import type { ListJobsReply, ListJobsRequest } from '../protocol/index.js';

/** Ids are 1–64 characters of A-Z a-z 0-9 _ - (`ID_PATTERN`). */
const MAX_ID_LENGTH = 64;
/** 'z' sorts after every other id character. */
const LAST_ID_CHAR = 'z';
/** Candidates an ambiguous prefix names; the rest are counted as "more". */
const MAX_CANDIDATES = 10;

export type Resolution = { ok: true; id: string } | { ok: false; code: 'unknown_job' | 'ambiguous_job'; message: string };

/**
 * The one job whose id starts with `text`, asked once `text` itself named no job (a request with it was
 * answered `unknown_job`), so that a full id costs no listing. The list is newest first, which is descending id
 * order, so every id starting with `text` lies between `text` and `text` followed by 'z's: the listing
 * starts just above that range (`starting_after`) and stops at the first id below it, whatever the
 * number of jobs. (The one id that is the cursor itself, `text` padded with 'z' to 64 characters, is
 * not found by a prefix: a cursor is exclusive, and no longer one is a valid id.)
 */
export async function resolveJobPrefix(list: (request: ListJobsRequest) => Promise<ListJobsReply>, text: string): Promise<Resolution> {
  const matches: string[] = [];
  let more = false;
  if (text.length < MAX_ID_LENGTH) {
    let after = text.padEnd(MAX_ID_LENGTH, LAST_ID_CHAR);
    scan: for (;;) {
      const page = await list({ v: 1, limit: MAX_CANDIDATES + 1, starting_after: after });
      for (const job of page.data) {
        if (!job.job_id.startsWith(text)) break scan;
        if (job.job_id === text) return { ok: true, id: text };
        if (matches.length === MAX_CANDIDATES) {
          more = true;
          break scan;
        }
        matches.push(job.job_id);
      }
      const last = page.data.at(-1);
      if (!page.has_more || last === undefined) break;
      after = last.job_id;
    }
  }
  const [only] = matches;
  if (only !== undefined && matches.length === 1) return { ok: true, id: only };
  if (only === undefined) return { ok: false, code: 'unknown_job', message: `no job ${JSON.stringify(text)}, and no job id starts with it` };
  return {
    ok: false,
    code: 'ambiguous_job',
    message: `${JSON.stringify(text)} is the start of ${more ? 'more than ' : ''}${matches.length} job ids: ${matches.join(', ')}${more ? ', …' : ''}; give more of the id`,
  };
}
