/**
 * Builds the web console (console/) into dist/console/, which `weir api` serves at `/`.
 * `npm run console:dev` serves it with hot reload and forwards /api to a `weir api` on port 8000.
 */
import { fileURLToPath } from 'node:url';
import { defineConfig, type Plugin } from 'vite';
import { lifecycleOverview } from '../scripts/diagram.js';

/**
 * `virtual:job-lifecycle`: the job statechart's overview (the states, the edges and the Mermaid text of
 * docs/job-lifecycle.md's overview, from scripts/diagram.ts), computed here at build time from
 * machines/job/machine.ts. The console gets data only: neither the machine nor XState reaches the bundle.
 * Its types: console/src/pages/job/lifecycle.d.ts.
 */
function jobLifecycle(): Plugin {
  const id = 'virtual:job-lifecycle';
  const resolved = `\0${id}`;
  return {
    name: 'weir-job-lifecycle',
    resolveId: (source) => (source === id ? resolved : undefined),
    load(source) {
      if (source !== resolved) return undefined;
      const { states, initial, edges, mermaid } = lifecycleOverview();
      return [
        `export const states = ${JSON.stringify(states)};`,
        `export const initial = ${JSON.stringify(initial)};`,
        `export const edges = ${JSON.stringify(edges)};`,
        `export const mermaid = ${JSON.stringify(mermaid)};`,
      ].join('\n');
    },
  };
}

export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  base: '/',
  plugins: [jobLifecycle()],
  // Preact's JSX runtime, through Vite's own transform: no Babel, no framework plugin.
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
  build: {
    outDir: fileURLToPath(new URL('../dist/console', import.meta.url)),
    emptyOutDir: true,
    target: 'es2022',
    // The first load stays under 300 KB gzipped (README, "Web console"); Mermaid is a chunk of its own, loaded lazily.
    chunkSizeWarningLimit: 700,
  },
  server: {
    proxy: { '/api': { target: process.env['WEIR_API_URL'] ?? 'http://127.0.0.1:8000' } },
  },
});
