/**
 * The built console the browser tests load: `vite build` of console/ into a cache folder named after a hash
 * of everything the bundle is made from (console/, examples/, machines/ and scripts/, which the build's
 * plugin reads, and the lockfile). A file builds it only when no build of the same sources exists, so a
 * run after a change builds once (a few seconds) and later runs not at all. Test files running at the
 * same time share one build through a lock folder. It never touches dist/console, which `npm run build`
 * owns (and empties while it builds).
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const INPUTS = ['console', 'examples', 'machines', 'scripts', 'package-lock.json'];
const CACHE = join(ROOT, 'node_modules', '.cache', 'weir-console');
const LOCK = join(CACHE, '.lock');
/** A lock older than this belongs to a run that died. */
const STALE_LOCK_MS = 120_000;
/** Builds kept besides the current one (another checkout's run may be serving one). */
const KEEP = 3;

function files(path: string, out: string[]): void {
  const stat = statSync(path, { throwIfNoEntry: false });
  if (stat === undefined) return;
  if (stat.isFile()) {
    out.push(path);
    return;
  }
  for (const name of readdirSync(path).sort()) {
    if (name === 'node_modules' || name === 'dist' || name.startsWith('.')) continue;
    files(join(path, name), out);
  }
}

/** A hash of the sources the console is built from. */
export function sourceHash(): string {
  const hash = createHash('sha256');
  const all: string[] = [];
  for (const input of INPUTS) files(join(ROOT, input), all);
  for (const file of all) {
    hash.update(relative(ROOT, file));
    hash.update('\0');
    hash.update(readFileSync(file));
    hash.update('\0');
  }
  return hash.digest('hex').slice(0, 16);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function lock(): Promise<() => void> {
  mkdirSync(CACHE, { recursive: true });
  for (;;) {
    try {
      mkdirSync(LOCK);
      return () => rmSync(LOCK, { recursive: true, force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const age = Date.now() - (statSync(LOCK, { throwIfNoEntry: false })?.mtimeMs ?? Date.now());
      if (age > STALE_LOCK_MS) rmSync(LOCK, { recursive: true, force: true });
      else await sleep(200);
    }
  }
}

function viteBuild(outDir: string): Promise<void> {
  const vite = join(ROOT, 'node_modules', 'vite', 'bin', 'vite.js');
  const args = [vite, 'build', '--config', 'console/vite.config.ts', '--outDir', outDir, '--emptyOutDir', '--logLevel', 'warn'];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`vite build exited with ${code}:\n${output}`))));
  });
}

function prune(current: string): void {
  const builds = readdirSync(CACHE)
    .filter((name) => !name.startsWith('.') && join(CACHE, name) !== current)
    .map((name) => ({ path: join(CACHE, name), mtime: statSync(join(CACHE, name)).mtimeMs }))
    .sort((a, b) => b.mtime - a.mtime);
  for (const old of builds.slice(KEEP)) rmSync(old.path, { recursive: true, force: true });
}

/** The folder of a console built from the current sources (built now if there is none). */
export async function consoleBuild(): Promise<string> {
  const dir = join(CACHE, sourceHash());
  if (existsSync(join(dir, 'index.html'))) return dir;
  const release = await lock();
  try {
    if (existsSync(join(dir, 'index.html'))) return dir;
    const tmp = `${dir}.tmp-${process.pid}`;
    await viteBuild(tmp);
    renameSync(tmp, dir);
    prune(dir);
    return dir;
  } finally {
    release();
  }
}
