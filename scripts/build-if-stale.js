// @ts-check
/**
 * `npm start`'s build step: runs `npm run build` only when dist/ is older than what it is built from,
 * so that starting weir again costs no compile (tsc takes most of a minute on a small machine). Plain
 * JavaScript, so that it runs on node alone, before anything is built.
 *
 * dist/ is stale when a source of the build (tsconfig.build.json: machines/ and src/) has no output or
 * is newer than its output, or when a TypeScript config is newer than the oldest output. tsc writes
 * every output on every build, so an output at least as new as its source is that source compiled.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, realpathSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

/** What tsconfig.build.json compiles, and the configs that decide how. */
const SOURCE_DIRS = ['machines', 'src'];
const CONFIGS = ['tsconfig.json', 'tsconfig.build.json'];
/** What the web console's Vite build reads (the lifecycle diagram comes from machines/ through scripts/). */
const CONSOLE_INPUTS = ['console', 'examples', 'machines', 'scripts'];
/** The console build's last output: Vite writes index.html after its assets. */
const CONSOLE_OUTPUT = join('dist', 'console', 'index.html');

/** @param {string} dir @returns {string[]} every file below `dir` */
function filesBelow(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    return entry.isDirectory() ? filesBelow(path) : entry.isFile() ? [path] : [];
  });
}

/** @param {string} path @returns {number | undefined} */
function mtimeOf(path) {
  return existsSync(path) ? statSync(path).mtimeMs : undefined;
}

/**
 * Why dist/ under `root` must be built again, or undefined when it is up to date.
 * @param {string} root the package's folder
 * @returns {string | undefined}
 */
export function staleReason(root) {
  let oldestOutput = Infinity;
  for (const dir of SOURCE_DIRS) {
    const sources = existsSync(join(root, dir)) ? filesBelow(join(root, dir)).filter((f) => /\.[cm]?[jt]s$/.test(f) && !f.endsWith('.d.ts')) : [];
    for (const source of sources) {
      const output = join(root, 'dist', relative(root, source)).replace(/\.([cm]?)ts$/, '.$1js');
      const built = mtimeOf(output);
      if (built === undefined) return `${relative(root, output)} is missing`;
      if (built < statSync(source).mtimeMs) return `${relative(root, source)} changed since it was built`;
      oldestOutput = Math.min(oldestOutput, built);
    }
  }
  if (oldestOutput === Infinity) return 'nothing is built yet';
  for (const config of CONFIGS) {
    const changed = mtimeOf(join(root, config));
    if (changed !== undefined && changed > oldestOutput) return `${config} changed since the last build`;
  }
  return consoleStaleReason(root);
}

/**
 * Why the web console (dist/console) must be built again, or undefined: its index.html is missing, or a
 * file it is built from is newer. A package without a console/ folder has none to build.
 * @param {string} root
 * @returns {string | undefined}
 */
function consoleStaleReason(root) {
  if (!existsSync(join(root, 'console'))) return undefined;
  const built = mtimeOf(join(root, CONSOLE_OUTPUT));
  if (built === undefined) return `${CONSOLE_OUTPUT} is missing`;
  for (const dir of CONSOLE_INPUTS) {
    if (!existsSync(join(root, dir))) continue;
    const newer = filesBelow(join(root, dir)).find((f) => statSync(f).mtimeMs > built);
    if (newer !== undefined) return `${relative(root, newer)} changed since the console was built`;
  }
  return undefined;
}

/**
 * Builds when stale; the exit code of the build, or 0.
 * @param {string} root the package's folder (this script's parent; another one for tests)
 */
function main(root) {
  const reason = staleReason(root);
  if (reason === undefined) {
    console.log('dist/ is up to date: not building');
    return 0;
  }
  console.log(`building: ${reason}`);
  // The npm that runs `npm start`, else the one on PATH.
  const npm = process.env['npm_execpath'];
  const build = npm === undefined ? spawnSync('npm', ['run', 'build'], { cwd: root, stdio: 'inherit' }) : spawnSync(process.execPath, [npm, 'run', 'build'], { cwd: root, stdio: 'inherit' });
  return build.status ?? 1;
}

const entry = process.argv[1];
if (entry !== undefined && existsSync(entry) && import.meta.url === pathToFileURL(realpathSync(entry)).href) {
  process.exitCode = main(process.argv[2] ?? fileURLToPath(new URL('..', import.meta.url)));
}
