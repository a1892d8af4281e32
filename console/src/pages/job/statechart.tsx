/**
 * The job lifecycle as a state diagram, generated from the machine (machines/job/machine.ts) at build time:
 * `virtual:job-lifecycle` (console/vite.config.ts) is the overview of docs/job-lifecycle.md from
 * scripts/diagram.ts. Mermaid, loaded on first use (`import('mermaid')`, strict security, no eval),
 * draws it; the job's state is marked with the class `is-current` on its node, and each transition as it
 * arrives marks its edge (`is-last`) and flashes the new state.
 *
 * Test hooks: `data-testid="statechart"`, and `data-current-state`, always the state marked in the
 * diagram (`data-ready="true"` once the diagram is drawn).
 */
import type mermaidApi from 'mermaid';
import { useEffect, useLayoutEffect, useRef, useState } from 'preact/hooks';
import { edges, mermaid as diagram, states } from 'virtual:job-lifecycle';
import { StateBadge } from '../../components/state-badge.js';
import { timeOf } from '../../format.js';
import type { JobState, TransitionEventData } from '../../types.js';

type Mermaid = typeof mermaidApi;

let loading: Promise<Mermaid> | undefined;
let renders = 0;

function prefersDark(): boolean {
  return typeof matchMedia === 'function' && matchMedia('(prefers-color-scheme: dark)').matches;
}

/** Mermaid, once, configured for the console's Content-Security-Policy (no eval, no inline scripts). */
function loadMermaid(): Promise<Mermaid> {
  loading ??= import('mermaid').then(({ default: mermaid }) => {
    mermaid.initialize({
      startOnLoad: false,
      securityLevel: 'strict',
      theme: prefersDark() ? 'dark' : 'default',
      logLevel: 'fatal',
      fontFamily: 'system-ui, -apple-system, "Segoe UI", Roboto, sans-serif',
      // Its natural size: on a phone the diagram scrolls sideways rather than shrink to unreadable.
      state: { useMaxWidth: false },
    });
    return mermaid;
  });
  loading.catch(() => (loading = undefined));
  return loading;
}

/**
 * The edges of the diagram as Mermaid draws them, by `from→to`. Mermaid numbers the relations in the order
 * of the text (`edge<n>`): `[*] --> initial`, the edges, then the final ones; a self-loop that its layout
 * splits in parts is named `<state>-cyclic-special-…` instead.
 */
function edgeElements(svg: Element): Map<string, Element[]> {
  const byKey = new Map<string, Element[]>();
  const add = (key: string, element: Element) => byKey.set(key, [...(byKey.get(key) ?? []), element]);
  const numbered = new Map<number, Element[]>();
  for (const path of svg.querySelectorAll('[data-edge="true"]')) {
    const id = path.getAttribute('data-id') ?? '';
    const n = /^edge(\d+)$/.exec(id);
    if (n !== null) {
      const key = Number(n[1]);
      numbered.set(key, [...(numbered.get(key) ?? []), path]);
      continue;
    }
    const loop = edges.find((edge) => edge.from === edge.to && id.startsWith(`${stateId(edge.from)}-cyclic-special`));
    if (loop !== undefined) add(`${loop.from}→${loop.to}`, path);
  }
  const drawn = [...numbered.keys()].sort((a, b) => a - b).map((key) => numbered.get(key) ?? []);
  // Without the split self-loops, Mermaid numbers one relation fewer for each of them.
  const relations = drawn.length >= edges.length + 1 ? edges : edges.filter((edge) => edge.from !== edge.to);
  relations.forEach((edge, i) => {
    for (const path of drawn[i + 1] ?? []) add(`${edge.from}→${edge.to}`, path);
  });
  return byKey;
}

function stateId(name: string): string {
  return states.find((state) => state.name === name)?.id ?? name;
}

/** A state's node: Mermaid names it `<diagram id>-state-<state id>-<n>`. */
function stateNode(svg: Element, name: string): Element | null {
  const pattern = new RegExp(`^${svg.id}-state-${stateId(name)}-\\d+$`);
  for (const node of svg.querySelectorAll('g.node')) if (pattern.test(node.id)) return node;
  return null;
}

/** Restarts a CSS animation class on an element. */
function flash(element: Element, className: string): void {
  element.classList.remove(className);
  // Reading the layout makes the browser see the class removed before it is added again.
  void element.getBoundingClientRect();
  element.classList.add(className);
}

export interface StatechartProps {
  state: JobState | null;
  /** The newest transition; a new one is shown as it arrives. */
  last: TransitionEventData | null;
}

export function Statechart({ state, last }: StatechartProps) {
  const host = useRef<HTMLDivElement>(null);
  const [ready, setReady] = useState(false);
  const [failure, setFailure] = useState<string | null>(null);
  const edgeMap = useRef<Map<string, Element[]>>(new Map());

  useEffect(() => {
    let cancelled = false;
    loadMermaid()
      .then((mermaid) => mermaid.render(`job-lifecycle-${++renders}`, diagram))
      .then(({ svg }) => {
        const target = host.current;
        if (cancelled || target === null) return;
        target.innerHTML = svg;
        const drawn = target.querySelector('svg');
        if (drawn === null) throw new Error('Mermaid drew nothing');
        // As wide as the page allows up to its natural size; on a phone it keeps a readable size and scrolls.
        const natural = Number(drawn.getAttribute('width'));
        if (Number.isFinite(natural) && natural > 0) drawn.style.maxWidth = `${natural}px`;
        drawn.setAttribute('role', 'img');
        drawn.setAttribute('aria-label', `The job lifecycle: ${states.length} states; the job's state is marked`);
        for (const state of states) stateNode(drawn, state.name)?.setAttribute('data-state', state.name);
        edgeMap.current = edgeElements(drawn);
        for (const edge of edges) {
          for (const path of edgeMap.current.get(`${edge.from}→${edge.to}`) ?? []) {
            const title = document.createElementNS('http://www.w3.org/2000/svg', 'title');
            title.textContent = `${edge.from} → ${edge.to}: ${edge.labels.join('; ')}`;
            path.appendChild(title);
          }
        }
        setReady(true);
      })
      .catch((err: unknown) => {
        if (!cancelled) setFailure(err instanceof Error ? err.message : String(err));
      });
    return () => {
      cancelled = true;
    };
  }, []);

  // The current state, marked whenever it changes.
  useLayoutEffect(() => {
    const svg = host.current?.querySelector('svg');
    if (!ready || svg === undefined || svg === null) return;
    for (const node of svg.querySelectorAll('g.node.is-current')) node.classList.remove('is-current');
    const node = state === null ? null : stateNode(svg, state);
    if (node === null) return;
    node.classList.add('is-current');
    // A diagram wider than its box (a phone) scrolls sideways to show the state.
    const box = host.current?.parentElement;
    if (box !== null && box !== undefined && box.scrollWidth > box.clientWidth) {
      const at = node.getBoundingClientRect();
      const frame = box.getBoundingClientRect();
      box.scrollLeft += at.left + at.width / 2 - (frame.left + frame.width / 2);
    }
  }, [ready, state]);

  // Each transition: its edge marked (until the next one) and the new state flashed.
  useLayoutEffect(() => {
    const svg = host.current?.querySelector('svg');
    if (!ready || svg === undefined || svg === null || last === null) return;
    for (const path of svg.querySelectorAll('.is-last')) path.classList.remove('is-last', 'flash');
    for (const path of edgeMap.current.get(`${last.from}→${last.to}`) ?? []) flash(path, 'is-last');
    const from = stateNode(svg, last.from);
    if (from !== null && last.from !== last.to) from.classList.add('is-last');
    const to = stateNode(svg, last.to);
    if (to !== null) flash(to, 'flash');
  }, [ready, last?.seq]);

  return (
    <section class="job-statechart" aria-labelledby="job-statechart-title">
      <h2 id="job-statechart-title">Lifecycle</h2>
      <p class="small statechart-now" aria-live="polite">
        {state === null ? 'State unknown.' : <>Now <StateBadge state={state} /></>}
        {last === null ? null : (
          <span class="muted">
            {' '}
            since {last.from} → {last.to} at {timeOf(last.at)} (generation {last.generation})
          </span>
        )}
      </p>
      <div
        class="statechart-scroll"
        data-testid="statechart"
        data-current-state={state ?? ''}
        data-ready={ready ? 'true' : 'false'}
        aria-busy={!ready && failure === null}
      >
        <div ref={host} class="statechart-svg" />
        {ready || failure !== null ? null : <p class="muted small">Drawing the lifecycle…</p>}
        {failure === null ? null : (
          <div class="notice error small" role="alert">
            The diagram could not be drawn: {failure}
            <ul class="statechart-fallback">
              {states.map((s) => (
                <li key={s.name} aria-current={s.name === state ? 'step' : undefined}>
                  {s.name === state ? <strong>{s.name} (now)</strong> : s.name}
                </li>
              ))}
            </ul>
          </div>
        )}
      </div>
      <p class="muted small">
        Generated from the job statechart (docs/job-lifecycle.md); hover an arrow for the transitions it stands for.
      </p>
    </section>
  );
}
