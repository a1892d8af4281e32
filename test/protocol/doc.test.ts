import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  ERROR_CODES,
  JOBS_KV_BUCKET,
  JOB_LOG_STREAM,
  MAX_MESSAGE_BYTES,
  SCHEMAS,
  STREAM_SUBJECTS,
  SUBJECTS,
} from '../../src/protocol/index.js';

const doc = readFileSync(new URL('../../docs/protocol.md', import.meta.url), 'utf8');

/** The `| subject | … |` row of the table that describes a pattern. */
const rowOf = (pattern: string) => doc.split('\n').find((line) => line.startsWith(`| \`${pattern}\``));

describe('docs/protocol.md stays true to SUBJECTS', () => {
  it.each(Object.entries(SUBJECTS))('has a table row for %s with its kind, direction and schemas', (_name, spec) => {
    const row = rowOf(spec.pattern);
    expect(row, `no row for ${spec.pattern}`).toBeDefined();
    expect(row).toContain(spec.kind);
    expect(row).toContain(`${spec.from} → ${spec.to}`);
    expect(row).toContain(spec.payload);
    if (spec.reply !== null) expect(row).toContain(spec.reply);
    for (const code of spec.errors.filter((c) => !['too_large', 'bad_json', 'unsupported_version', 'bad_schema'].includes(c))) {
      expect(row, `${spec.pattern} lacks ${code}`).toContain(code);
    }
  });

  it('describes every schema, error code, the stream and the bucket', () => {
    for (const name of Object.keys(SCHEMAS)) expect(doc, name).toContain(`\`${name}\``);
    for (const code of ERROR_CODES) expect(doc, code).toContain(`\`${code}\``);
    for (const text of [JOB_LOG_STREAM, JOBS_KV_BUCKET, ...STREAM_SUBJECTS, String(MAX_MESSAGE_BYTES)]) expect(doc).toContain(text);
  });
});
