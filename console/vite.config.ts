/**
 * Builds the web console (console/) into dist/console/, which `weir api` serves at `/`.
 * `npm run console:dev` serves it with hot reload and forwards /api to a `weir api` on port 8000.
 */
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  base: '/',
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
