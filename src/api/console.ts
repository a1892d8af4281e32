/**
 * The web console (console/, built by `npm run build` into dist/console/) served at `/`, on the API's own
 * origin, so the browser needs no CORS and sends its token to the same server it loaded the page from.
 *
 * Vite's content-named files are served from `/assets/*`; the build's other files (none yet; anything
 * in console/public/) are each a route of their own, found when the API starts. No route covers all
 * paths, so a POST to an unknown `/api/v1` path still answers 404, not "use GET". A GET of any other path
 * that is not the API's and does not name a file is a page of the console's router (`/jobs/42`): it gets
 * index.html, read again on each request so that a rebuild under a running API is served at once (a new
 * build of the same files, that is: a file added to the build's top folder needs a restart).
 * Without a build (running from source, as the tests do) the API starts all the same and `/` says how to
 * build the console.
 */
import { existsSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fastifyStatic from '@fastify/static';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

/**
 * The console's HTML may load scripts, styles and data from this origin only. Inline styles are allowed:
 * Mermaid's diagrams carry their own <style>, and charts position their elements with style attributes.
 */
export const CONSOLE_CSP = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'self'; frame-ancestors 'none'; form-action 'self'";

/** Vite names every asset after its content: such a file never changes, so browsers may keep it for good. */
const HASHED_ASSETS = '/assets/';

const NOT_BUILT_PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>weir</title></head>
<body style="font-family: system-ui, sans-serif; max-width: 40rem; margin: 3rem auto; padding: 0 1rem; line-height: 1.5">
<h1>weir</h1>
<p>The web console is not built. Run <code>npm run build</code> in the weir package, then restart <code>weir api</code>.</p>
<p>The HTTP API answers at <a href="/api/v1/ping">/api/v1</a>; its interactive documentation is at <a href="/api/v1/docs">/api/v1/docs</a>.</p>
</body></html>
`;

export interface ConsoleSite {
  /** The folder served, or null when no built console was found. */
  readonly dir: string | null;
  /** Registers the console's files as public routes. */
  readonly routes: (app: FastifyInstance) => Promise<void>;
  /** For a GET the API has no route for: answers with the console's page when the path is one of its own; false otherwise. */
  readonly fallback: (request: FastifyRequest, reply: FastifyReply) => boolean;
}

/** dist/console of the package this module belongs to (it runs from src/api/ with tsx and from dist/src/api/ when built). */
export function defaultConsoleDir(): string | null {
  for (let dir = new URL('.', import.meta.url); dir.pathname !== '/'; dir = new URL('..', dir)) {
    if (existsSync(new URL('package.json', dir))) return fileURLToPath(new URL('dist/console/', dir));
  }
  return null;
}

/** A path the console's router may own: not the server's, and not a file (`.js`, `.css`, …) that is missing. */
function isConsolePath(path: string, isServerPath: (path: string) => boolean): boolean {
  if (isServerPath(path) || path.startsWith(HASHED_ASSETS)) return false;
  return !path.slice(path.lastIndexOf('/') + 1).includes('.');
}

function sendPage(reply: FastifyReply, html: string): FastifyReply {
  return reply.code(200).type('text/html; charset=utf-8').header('cache-control', 'no-cache').header('content-security-policy', CONSOLE_CSP).send(html);
}

/**
 * Tells the console that the API wants a token, so it asks for one before its first request instead of
 * meeting a 401 (which the browser would log as an error). It says nothing about the token itself.
 */
export const AUTH_META = '<meta name="weir-auth" content="bearer">';

function withAuthMeta(html: string): string {
  const at = html.indexOf('</head>');
  return at === -1 ? html : `${html.slice(0, at)}${AUTH_META}\n${html.slice(at)}`;
}

/**
 * The console in `dir` (a built dist/console), or the not-built page when `dir` is null or holds no
 * index.html. Paths `isServerPath` claims are never the console's.
 */
export function consoleSite(dir: string | null, isServerPath: (path: string) => boolean, options: { authRequired: boolean }): ConsoleSite {
  const indexPath = dir === null ? null : join(dir, 'index.html');
  const builtDir = indexPath !== null && existsSync(indexPath) ? dir : null;
  const asPage = (html: string) => (options.authRequired ? withAuthMeta(html) : html);
  let lastPage = indexPath !== null && builtDir !== null ? asPage(readFileSync(indexPath, 'utf8')) : NOT_BUILT_PAGE;

  /** index.html as it is now; while a rebuild has removed it, the last one read. */
  async function page(): Promise<string> {
    if (indexPath === null || builtDir === null) return lastPage;
    try {
      lastPage = asPage(await readFile(indexPath, 'utf8'));
    } catch {
      // Mid-rebuild: the last page read serves until the new one is there.
    }
    return lastPage;
  }

  const serveIndex = async (_request: FastifyRequest, reply: FastifyReply) => sendPage(reply, await page());

  return {
    dir: builtDir,
    routes: async (app) => {
      // index.html goes out with its CSP (and the auth hint), at `/` and at every path of the console's router (`fallback`).
      app.get('/', { schema: { hide: true } }, serveIndex);
      if (builtDir === null) return;
      const assetsDir = join(builtDir, HASHED_ASSETS);
      // Several registrations of the plugin, each with its own root, need `decorateReply: false`.
      const common = { decorateReply: false, index: false, cacheControl: false } as const;
      if (existsSync(assetsDir)) {
        await app.register(fastifyStatic, {
          ...common,
          root: assetsDir,
          prefix: HASHED_ASSETS,
          setHeaders: (res) => {
            res.setHeader('cache-control', 'public, max-age=31536000, immutable');
          },
        });
      }
      await app.register(fastifyStatic, {
        ...common,
        root: builtDir,
        wildcard: false,
        globIgnore: ['index.html', `${HASHED_ASSETS.slice(1)}**`],
        setHeaders: (res) => {
          res.setHeader('cache-control', 'no-cache');
        },
      });
    },
    fallback: (request, reply) => {
      if (request.method !== 'GET' && request.method !== 'HEAD') return false;
      const path = request.url.split('?')[0] ?? request.url;
      if (!isConsolePath(path, isServerPath)) return false;
      void serveIndex(request, reply);
      return true;
    },
  };
}
