import { readFileSync } from 'node:fs';
import type { AnyStateNode } from 'xstate';
import { describe, expect, it, vi } from 'vitest';
import { JOB_STATES, jobMachine } from '../machines/index.js';
import { LIFECYCLE_DOC, renderLifecycleDiagram } from '../scripts/diagram.js';

const TOP_LEVEL_STATES = JOB_STATES;

/** How many transitions a config value declares: none, one (string or object) or an array of them. */
function countOf(value: unknown): number {
  if (value === undefined) return 0;
  return Array.isArray(value) ? value.length : 1;
}

function valuesOf(value: unknown): unknown[] {
  return typeof value === 'object' && value !== null ? Object.values(value) : [];
}

/** Counted from each state node's own config, independently of the generator's use of `transitions`/`always`. */
function countTransitions(node: AnyStateNode): number {
  const config = node.config as Record<string, unknown>;
  let count = countOf(config.always) + countOf(config.onDone);
  for (const value of valuesOf(config.on)) count += countOf(value);
  for (const value of valuesOf(config.after)) count += countOf(value);
  const invokes = config.invoke === undefined ? [] : Array.isArray(config.invoke) ? (config.invoke as unknown[]) : [config.invoke];
  for (const invoke of invokes as Record<string, unknown>[]) {
    count += countOf(invoke.onDone) + countOf(invoke.onError) + countOf(invoke.onSnapshot);
  }
  for (const child of Object.values(node.states)) count += countTransitions(child);
  return count;
}

/** The lines of the section that starts with `heading`, up to the next `## ` heading. */
function section(doc: string, heading: string): string[] {
  const lines = doc.split('\n');
  const start = lines.indexOf(heading);
  expect(start, `${heading} is missing`).toBeGreaterThanOrEqual(0);
  const end = lines.findIndex((line, i) => i > start && line.startsWith('## '));
  return lines.slice(start + 1, end === -1 ? undefined : end);
}

describe('docs/job-lifecycle.md', () => {
  const rendered = renderLifecycleDiagram();

  it('is up to date with machines/job/machine.ts', () => {
    let committed = '';
    try {
      committed = readFileSync(LIFECYCLE_DOC, 'utf8');
    } catch {
      // missing: stale as well
    }
    if (committed !== rendered) {
      const a = committed.split('\n');
      const b = rendered.split('\n');
      const line = b.findIndex((text, i) => a[i] !== text);
      expect.fail(`docs/job-lifecycle.md is stale: run npm run diagram (first difference at line ${(line === -1 ? b.length : line) + 1})`);
    }
  });

  it('renders deterministically: a machine built afresh renders the same', async () => {
    vi.resetModules();
    const machines = (await import('../machines/index.js'));
    const diagram = (await import('../scripts/diagram.js'));
    expect(machines.jobMachine).not.toBe(jobMachine);
    expect(diagram.renderLifecycleDiagram()).toBe(rendered);
  });

  it('shows all 14 top-level states in the overview', () => {
    expect(Object.keys(jobMachine.root.states).sort()).toEqual([...TOP_LEVEL_STATES].sort());
    const overview = section(rendered, '## Overview').join('\n');
    expect(overview).toContain('```mermaid\nstateDiagram-v2\n');
    for (const name of TOP_LEVEL_STATES) expect(overview).toMatch(new RegExp(`^  ${name}$`, 'm'));
    expect(overview).toContain('[*] --> Created');
    expect(overview).toContain('Finished --> [*]');
  });

  it('lists every transition of the machine in the table', () => {
    const tableLines = section(rendered, '## Transitions').filter((line) => line.startsWith('|'));
    const rows = tableLines.slice(2); // header and separator
    expect(rows.length).toBeGreaterThan(0);
    expect(rows.length).toBe(countTransitions(jobMachine.root));
  });

  it('names helper guards and delayed, eventless and invoke transitions readably', () => {
    expect(rendered).toContain('| `isCurrent && failureIsFinal` |');
    expect(rendered).toContain('| `after WAIT` |');
    expect(rendered).toContain('| `always` |');
    expect(rendered).toContain('| `done: scheduleJob` |');
    expect(rendered).toContain('| `error: compileJob` |');
    expect(rendered).not.toMatch(/`(and|or|not)\(|`xstate\.(after|done|error|snapshot)\./);
  });

  it('uses only Mermaid-safe state ids and transition labels', () => {
    const blocks = rendered.split('```mermaid\n').slice(1).map((block) => block.slice(0, block.indexOf('```')));
    let edges = 0;
    for (const line of blocks.flatMap((block) => block.split('\n'))) {
      const edge = /^\s*(\S+) --> (\S+)(?: : (.*))?$/.exec(line);
      if (!edge) continue;
      edges++;
      expect(edge[1]).toMatch(/^(\[\*\]|[A-Za-z_][A-Za-z0-9_]*)$/);
      expect(edge[2]).toMatch(/^(\[\*\]|[A-Za-z_][A-Za-z0-9_]*)$/);
      if (edge[3] !== undefined) expect(edge[3]).not.toMatch(/[:;#]/);
    }
    expect(edges, 'no diagram edge matched: the check above saw nothing').toBeGreaterThan(0);
  });
});
