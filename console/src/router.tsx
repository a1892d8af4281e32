/**
 * A small history router: paths like `/jobs/:id` (the API serves index.html for any path that is not
 * its own, so deep links and reloads work), `navigate()` to move, `<Link>` for anchors that move without
 * reloading. Pages that are heavy (charts, diagrams) are loaded when first visited.
 */
import type { ComponentChildren, ComponentType } from 'preact';
import { useEffect, useState } from 'preact/hooks';

export type Params = Record<string, string>;

/** What every page gets: the path's `:params` and the query string. */
export interface PageProps {
  params: Params;
  query: URLSearchParams;
}

export type Page = ComponentType<PageProps>;

export type RouteDef = {
  /** `/jobs/:id`: segments starting with `:` match any one segment. */
  pattern: string;
  /** Document title. */
  title: string;
} & (
  | { page: Page }
  /** A page kept out of the first download: `() => import('./pages/job/index.js')`, whose default export is the page. */
  | { load: () => Promise<{ default: Page }> }
);

type Listener = () => void;
const listeners = new Set<Listener>();

/** Moves to `to` (a path with an optional query) without reloading. */
export function navigate(to: string, options: { replace?: boolean } = {}): void {
  if (to === location.pathname + location.search) return;
  if (options.replace === true) history.replaceState(null, '', to);
  else history.pushState(null, '', to);
  for (const listener of listeners) listener();
}

/** The current location, re-rendering on every move (links, `navigate`, back and forward). */
export function useLocation(): { path: string; query: URLSearchParams } {
  const [, setTick] = useState(0);
  useEffect(() => {
    const update = () => setTick((n) => n + 1);
    listeners.add(update);
    window.addEventListener('popstate', update);
    return () => {
      listeners.delete(update);
      window.removeEventListener('popstate', update);
    };
  }, []);
  return { path: location.pathname, query: new URLSearchParams(location.search) };
}

/** The params of `path` under `pattern`, or null when it does not match. */
export function matchPath(pattern: string, path: string): Params | null {
  const want = pattern.split('/').filter((s) => s !== '');
  const got = path.split('/').filter((s) => s !== '');
  if (want.length !== got.length) return null;
  const params: Params = {};
  for (let i = 0; i < want.length; i++) {
    const w = want[i] as string;
    const g = got[i] as string;
    if (w.startsWith(':')) {
      try {
        params[w.slice(1)] = decodeURIComponent(g);
      } catch {
        return null;
      }
    } else if (w !== g) return null;
  }
  return params;
}

interface LinkProps {
  href: string;
  class?: string;
  title?: string;
  'aria-current'?: 'page' | undefined;
  children?: ComponentChildren;
}

/** An anchor that moves within the console; modified clicks (new tab, …) keep the browser's behaviour. */
export function Link({ href, children, ...rest }: LinkProps) {
  return (
    <a
      href={href}
      onClick={(event) => {
        if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
        event.preventDefault();
        navigate(href);
      }}
      {...rest}
    >
      {children}
    </a>
  );
}

const loaded = new Map<RouteDef, Page>();

/** Renders the route matching the current path, `notFound` when none does. */
export function Router({ routes, notFound }: { routes: readonly RouteDef[]; notFound: Page }) {
  const { path, query } = useLocation();
  let match: { route: RouteDef; params: Params } | null = null;
  for (const route of routes) {
    const params = matchPath(route.pattern, path);
    if (params !== null) {
      match = { route, params };
      break;
    }
  }
  const title = match?.route.title ?? 'Not found';
  useEffect(() => {
    document.title = `${title} · weir`;
  }, [title]);
  if (match === null) {
    const NotFound = notFound;
    return <NotFound params={{}} query={query} />;
  }
  return <RoutePage route={match.route} params={match.params} query={query} />;
}

function RoutePage({ route, params, query }: { route: RouteDef; params: Params; query: URLSearchParams }) {
  const [, setLoaded] = useState(0);
  const [failure, setFailure] = useState<string | null>(null);
  const ready = 'page' in route ? route.page : loaded.get(route);
  useEffect(() => {
    if (ready !== undefined || !('load' in route)) return;
    let live = true;
    route
      .load()
      .then((module) => {
        loaded.set(route, module.default);
        if (live) setLoaded((n) => n + 1);
      })
      .catch((err: unknown) => {
        if (live) setFailure(err instanceof Error ? err.message : String(err));
      });
    return () => {
      live = false;
    };
  }, [route, ready]);
  if (failure !== null) return <p class="notice error">This page could not be loaded: {failure}. Reload to try again.</p>;
  if (ready === undefined) return <p class="muted">Loading…</p>;
  const Component = ready;
  return <Component params={params} query={query} />;
}
