/** `npm start` builds only when dist/ is older than what it is built from. */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { staleReason } from '../../scripts/build-if-stale.js';

const dirs: string[] = [];

afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A package with these files, each written at the given time (s since the epoch). */
function tree(files: Record<string, number>): string {
  const root = mkdtempSync(join(tmpdir(), 'weir-build-'));
  dirs.push(root);
  for (const [path, time] of Object.entries(files)) {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), '');
    utimesSync(join(root, path), time, time);
  }
  return root;
}

const built = { 'tsconfig.json': 100, 'tsconfig.build.json': 100, 'machines/job/m.ts': 200, 'src/cli/main.ts': 200, 'src/cli/x.d.ts': 900, 'dist/machines/job/m.js': 300, 'dist/src/cli/main.js': 301 };

describe('build-if-stale', () => {
  it('dist/ newer than every source and config: up to date', () => {
    expect(staleReason(tree(built))).toBeUndefined();
  });

  it('a source changed since it was built', () => {
    expect(staleReason(tree({ ...built, 'src/cli/main.ts': 400 }))).toBe('src/cli/main.ts changed since it was built');
  });

  it('a new source with no output yet', () => {
    expect(staleReason(tree({ ...built, 'src/cli/new.ts': 250 }))).toBe('dist/src/cli/new.js is missing');
  });

  it('a config changed since the last build', () => {
    expect(staleReason(tree({ ...built, 'tsconfig.build.json': 300.5 }))).toBe('tsconfig.build.json changed since the last build');
  });

  it('the web console: built after what it is built from, else stale', () => {
    const withConsole = { ...built, 'console/src/app.tsx': 200, 'examples/counter.json': 100, 'dist/console/index.html': 302 };
    expect(staleReason(tree(withConsole))).toBeUndefined();
    expect(staleReason(tree({ ...withConsole, 'console/src/app.tsx': 400 }))).toBe('console/src/app.tsx changed since the console was built');
    // The lifecycle diagram comes from the machine: a changed machine is a stale console too (once compiled).
    expect(staleReason(tree({ ...withConsole, 'machines/job/m.ts': 303, 'dist/machines/job/m.js': 304 }))).toBe('machines/job/m.ts changed since the console was built');
    const { 'dist/console/index.html': _, ...unbuilt } = withConsole;
    expect(staleReason(tree(unbuilt))).toBe('dist/console/index.html is missing');
  });

  it('nothing built yet', () => {
    expect(staleReason(tree({ 'tsconfig.json': 1 }))).toBe('nothing is built yet');
  });

  it('as npm start runs it: nothing to do when dist/ is up to date, else `npm run build`', () => {
    const script = new URL('../../scripts/build-if-stale.js', import.meta.url).pathname;
    // The package's build script stands in for tsc: it leaves a mark.
    const build = { scripts: { build: `node -e "require('fs').writeFileSync('built', '')"` } };
    const fresh = tree(built);
    writeFileSync(join(fresh, 'package.json'), JSON.stringify(build));
    expect(execFileSync(process.execPath, [script, fresh], { encoding: 'utf8' })).toBe('dist/ is up to date: not building\n');
    expect(existsSync(join(fresh, 'built'))).toBe(false);
    const stale = tree({ ...built, 'src/cli/main.ts': 400 });
    writeFileSync(join(stale, 'package.json'), JSON.stringify(build));
    expect(execFileSync(process.execPath, [script, stale], { encoding: 'utf8' })).toContain('building: src/cli/main.ts changed since it was built\n');
    expect(existsSync(join(stale, 'built'))).toBe(true);
  }, 30_000);
});
