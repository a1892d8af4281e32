import { CHECKPOINT_STORE_STREAM_SUBJECTS } from '../../src/checkpoint/index.js';
import { describe, expect, it } from 'vitest';
import {
  InvalidTokenError,
  JOBS_KV_BUCKET,
  JOB_LOG_STREAM,
  SCHEMAS,
  STREAM_SUBJECTS,
  CHECKPOINT_STORE_SUBJECTS,
  SUBJECTS,
  parseSubject,
  subjects,
  subjectsOverlap,
  type SubjectName,
  type SubjectSpec,
} from '../../src/protocol/index.js';

const entries = Object.entries(SUBJECTS) as Array<[SubjectName, SubjectSpec]>;

/** Sample arguments per builder; every id is a valid token. */
const SAMPLE: { [K in SubjectName]: Parameters<(typeof subjects)[K]> } = {
  apiJobsCreate: [],
  apiJobsList: [],
  apiJobsViews: [],
  apiJobConfig: ['job-1'],
  apiJobDelete: ['job-1'],
  apiJobGet: ['job-1'],
  apiJobCheckpoints: ['job-1'],
  apiJobCheckpoint: ['job-1'],
  apiJobTriggerCheckpoint: ['job-1'],
  apiJobMetrics: ['job-1'],
  apiMetrics: [],
  apiWorkersList: [],
  apiControllersList: [],
  workerRegister: [],
  workerHeartbeat: ['w_1'],
  workerDeregister: ['w_1'],
  workerMetrics: ['w_1'],
  jobTasks: ['job-1'],
  jobCheckpoints: ['job-1'],
  workerStart: ['w_1'],
  workerStop: ['w_1'],
  workerCheckpoint: ['w_1'],
  workerCommit: ['w_1'],
  jobState: ['job-1'],
  jobOutput: ['job-1'],
  data: ['job-1', 3, 'by_user', 'out', 0],
  jobLog: ['job-1'],
};

function build(name: SubjectName): string {
  return (subjects[name] as (...args: unknown[]) => string)(...SAMPLE[name]);
}

describe('subjectsOverlap', () => {
  const cases: Array<[string, string, boolean]> = [
    ['a.b.c', 'a.b.c', true],
    ['a.b.c', 'a.b.d', false],
    ['a.b', 'a.b.c', false],
    ['a.*.c', 'a.b.c', true],
    ['a.*', 'a.b.c', false],
    ['a.*.*', '*.b.*', true],
    ['a.>', 'a', false],
    ['a.>', 'a.b', true],
    ['a.>', 'a.b.c.d', true],
    ['a.>', 'b.>', false],
    ['>', 'anything.at.all', true],
    ['a.*.c', 'a.>', true],
    ['a.b.>', 'a.*.c', true],
    ['a.b.>', 'a.c.>', false],
    ['*', 'a.b', false],
    ['*.>', 'a', false],
    ['*.>', 'a.b', true],
    ['$KV.weir_jobs.>', 'weir.>', false],
    ['weir.log.*', 'weir.log.job-1', true],
    ['weir.log.*', 'weir.log.job-1.x', false],
  ];
  it.each(cases)('%s ∩ %s = %s', (a, b, expected) => {
    expect(subjectsOverlap(a, b)).toBe(expected);
    expect(subjectsOverlap(b, a)).toBe(expected);
  });
});

describe('SUBJECTS', () => {
  it('puts every subject under weir., its wildcard in place of each placeholder', () => {
    for (const [, spec] of entries) {
      expect(spec.pattern.startsWith('weir.')).toBe(true);
      expect(spec.wildcard).toBe(spec.pattern.replace(/<[a-z_]+>/g, '*'));
      expect(spec.wildcard).not.toMatch(/[<>]/);
    }
  });

  it('names schemas that exist, with a reply exactly for requests', () => {
    for (const [name, spec] of entries) {
      expect(SCHEMAS[spec.payload], name).toBeDefined();
      if (spec.kind === 'request') {
        expect(spec.reply, name).not.toBeNull();
        expect(SCHEMAS[spec.reply!], name).toBeDefined();
        expect(spec.errors, name).toEqual(expect.arrayContaining(['too_large', 'bad_json', 'unsupported_version', 'bad_schema', 'internal']));
      } else {
        expect(spec.reply, name).toBeNull();
        expect(spec.errors, name).toEqual([]);
      }
    }
  });

  it('keeps request subjects disjoint from every stream subject', () => {
    const requests = entries.filter(([, spec]) => spec.kind === 'request');
    expect(requests.length).toBeGreaterThan(0);
    for (const [name, spec] of requests) {
      for (const stream of STREAM_SUBJECTS) expect(subjectsOverlap(spec.wildcard, stream), `${name} vs ${stream}`).toBe(false);
    }
  });

  it('keeps core publish subjects out of streams too, and only stream subjects in them', () => {
    for (const [name, spec] of entries) {
      const captured = STREAM_SUBJECTS.some((stream) => subjectsOverlap(spec.wildcard, stream));
      expect(captured, name).toBe(spec.kind === 'stream');
    }
  });

  it('has no two patterns that overlap, so one subscription never sees another subject', () => {
    for (const [a, x] of entries) {
      for (const [b, y] of entries) if (a !== b) expect(subjectsOverlap(x.wildcard, y.wildcard), `${a} vs ${b}`).toBe(false);
    }
  });

  it('exports the JetStream names', () => {
    expect(JOB_LOG_STREAM).toBe('WEIR_JOB_LOG');
    expect(JOBS_KV_BUCKET).toBe('weir_jobs');
    expect(STREAM_SUBJECTS).toEqual(['weir.log.*', '$KV.weir_jobs.>', '$KV.weir_checkpoints.>', 'weir.cp.events.*', '$KV.weir_cp_meta.>', '$O.weir_cp_state.>']);
    expect(CHECKPOINT_STORE_SUBJECTS).toEqual(CHECKPOINT_STORE_STREAM_SUBJECTS);
  });
});

describe('builders', () => {
  it.each(entries.map(([name]) => name))('%s builds a subject its wildcard matches, and parseSubject reads it back', (name) => {
    const subject = build(name);
    expect(subject).not.toMatch(/[*>\s]/);
    expect(subjectsOverlap(subject, SUBJECTS[name].wildcard)).toBe(true);
    expect(parseSubject(subject)?.name).toBe(name);
  });

  it('read the placeholders back', () => {
    expect(parseSubject('weir.data.job-1.3.by_user.out.0')).toEqual({
      name: 'data',
      params: { job: 'job-1', generation: '3', from: 'by_user', to: 'out', subtask: '0' },
    });
    expect(parseSubject('weir.api.jobs.j9.get')).toEqual({ name: 'apiJobGet', params: { job: 'j9' } });
    expect(parseSubject('weir.data.job-1.03.a.b.0')).toBeNull();
    expect(parseSubject('weir.api.jobs.j9.explode')).toBeNull();
    expect(parseSubject('other.thing')).toBeNull();
  });

  it('refuse ids that would inject tokens or wildcards', () => {
    for (const bad of ['a.b', '*', '>', 'a>', 'a b', '', 'x'.repeat(65), 'é']) {
      expect(() => subjects.apiJobGet(bad)).toThrow(InvalidTokenError);
      expect(() => subjects.workerStart(bad)).toThrow(/invalid worker id/);
      expect(() => subjects.data('j', 1, bad, 'b', 0)).toThrow(/invalid node id/);
    }
    for (const bad of [-1, 1.5, Number.NaN, 2 ** 53]) {
      expect(() => subjects.data('j', bad, 'a', 'b', 0)).toThrow(/invalid generation/);
      expect(() => subjects.data('j', 0, 'a', 'b', bad)).toThrow(/invalid subtask/);
    }
    expect(subjects.apiJobGet('A-z_09')).toBe('weir.api.jobs.A-z_09.get');
  });
});
