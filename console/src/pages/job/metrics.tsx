/**
 * Records in and out per second, per operator, over the current run: two uPlot charts (uPlot and its
 * stylesheet are imported here, dynamically, so neither is in the first load; Vite emits the CSS as a
 * same-origin file, as the CSP wants), and a table of the totals that a screen reader can read.
 *
 * When it reloads: the API has no stream for metrics (`GET …/operator_metric_groups` only; the job's
 * events carry state changes, not counters), so the panel reads the metrics again when the job page hands
 * down a new state or generation, on Refresh, and every METRICS_REFRESH_MS while the job is Running and
 * the page is visible (document.visibilityState): counters only move while the job runs, and a hidden tab
 * asks nothing. Coming back to the tab reads them at once. The timer stops in the effect's cleanup.
 */
import { useEffect, useRef, useState } from 'preact/hooks';
import type uPlot from 'uplot';
import { getMetrics } from '../../api.js';
import type { OperatorMetricGroupList } from '../../types.js';
import { rateSeries, type RateSeries } from './metrics-series.js';
import type { JobPanelProps } from './panel-props.js';

export const METRICS_REFRESH_MS = 5_000;
const CHART_HEIGHT = 220;
/** The series colours: --chart-1 … --chart-8 in style.css (both themes). */
const PALETTE_SIZE = 8;

type UPlotClass = typeof uPlot;
type Groups = OperatorMetricGroupList['data'];

let uplotLoad: Promise<UPlotClass> | undefined;
/** uPlot and its stylesheet, loaded once, on first use. */
function loadUPlot(): Promise<UPlotClass> {
  uplotLoad ??= Promise.all([import('uplot'), import('uplot/dist/uPlot.min.css')]).then(([module]) => module.default);
  uplotLoad.catch(() => (uplotLoad = undefined));
  return uplotLoad;
}

const compact = new Intl.NumberFormat(undefined, { notation: 'compact', maximumFractionDigits: 1 });
const whole = new Intl.NumberFormat();
const rate = (v: number | null | undefined) => (v === null || v === undefined ? '—' : `${compact.format(v)}/s`);

export function MetricsPanel({ id, job }: JobPanelProps) {
  const [groups, setGroups] = useState<Groups | null>(null);
  const [failure, setFailure] = useState<string | null>(null);
  const [tick, setTick] = useState(0);
  const [UPlot, setUPlot] = useState<UPlotClass | null>(null);
  const [chartFailure, setChartFailure] = useState<string | null>(null);
  const state = job.job.state;
  const generation = job.job.run_id;
  const running = state === 'Running';

  useEffect(() => {
    const abort = new AbortController();
    getMetrics(id, abort.signal)
      .then(({ data }) => {
        setGroups(data);
        setFailure(null);
      })
      .catch((err: unknown) => {
        if (!abort.signal.aborted) setFailure(err instanceof Error ? err.message : String(err));
      });
    return () => abort.abort();
  }, [id, state, generation, tick]);

  // The visible-tab timer (see the header).
  useEffect(() => {
    if (!running) return;
    let timer: ReturnType<typeof setInterval> | undefined;
    const sync = () => {
      const visible = document.visibilityState === 'visible';
      if (visible && timer === undefined) {
        timer = setInterval(() => setTick((n) => n + 1), METRICS_REFRESH_MS);
        setTick((n) => n + 1);
      } else if (!visible && timer !== undefined) {
        clearInterval(timer);
        timer = undefined;
      }
    };
    if (document.visibilityState === 'visible') timer = setInterval(() => setTick((n) => n + 1), METRICS_REFRESH_MS);
    document.addEventListener('visibilitychange', sync);
    return () => {
      clearInterval(timer);
      document.removeEventListener('visibilitychange', sync);
    };
  }, [running]);

  useEffect(() => {
    let live = true;
    loadUPlot()
      .then((ctor) => live && setUPlot(() => ctor))
      .catch((err: unknown) => live && setChartFailure(`the charts could not be loaded: ${err instanceof Error ? err.message : String(err)}`));
    return () => {
      live = false;
    };
  }, []);

  const series = groups === null ? null : rateSeries(groups);

  return (
    <section class="panel metrics-panel" data-testid="metrics" aria-labelledby="metrics-title">
      <div class="page-head">
        <h2 id="metrics-title">Metrics</h2>
        <div class="panel-controls">
          <span class="muted small">{running ? `every ${METRICS_REFRESH_MS / 1000} s while visible` : 'current run'}</span>
          <button type="button" class="secondary" onClick={() => setTick((n) => n + 1)}>
            Refresh
          </button>
        </div>
      </div>
      {failure !== null && <p class="notice error">{failure}</p>}
      {groups === null && failure === null && <p class="muted">Loading…</p>}
      {groups !== null && groups.length === 0 && <p class="muted">No metrics for this run yet.</p>}
      {series !== null && groups !== null && groups.length > 0 && (
        <>
          {chartFailure !== null && <p class="notice error">{chartFailure}</p>}
          {series.x.length < 2 ? (
            <p class="muted">Not enough samples for a chart yet.</p>
          ) : (
            UPlot !== null && (
              <div class="metrics-charts">
                <RateChart UPlot={UPlot} title="Records in per second" series={series} which="recordsIn" />
                <RateChart UPlot={UPlot} title="Records out per second" series={series} which="recordsOut" />
              </div>
            )
          )}
          <div class="table-wrap">
            <table class="metrics-totals">
              <thead>
                <tr>
                  <th scope="col">Operator</th>
                  <th scope="col" class="num">
                    Parallelism
                  </th>
                  <th scope="col" class="num">
                    Records in
                  </th>
                  <th scope="col" class="num">
                    In
                  </th>
                  <th scope="col" class="num">
                    Records out
                  </th>
                  <th scope="col" class="num">
                    Out
                  </th>
                </tr>
              </thead>
              <tbody>
                {groups.map((g) => (
                  <tr key={g.node_id}>
                    <td>
                      <code>{g.node_id}</code>
                      {g.operator !== g.node_id && <span class="muted small"> {g.operator}</span>}
                    </td>
                    <td class="num">{g.parallelism}</td>
                    <td class="num">{whole.format(g.records_in)}</td>
                    <td class="num">{rate(g.records_in_rate)}</td>
                    <td class="num">{whole.format(g.records_out)}</td>
                    <td class="num">{rate(g.records_out_rate)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </>
      )}
    </section>
  );
}

/** The theme's colours for the canvas, which cannot read CSS variables itself. */
function themeColours(el: Element): { palette: string[]; muted: string; line: string } {
  const style = getComputedStyle(el);
  const read = (name: string) => style.getPropertyValue(name).trim();
  return {
    palette: Array.from({ length: PALETTE_SIZE }, (_, i) => read(`--chart-${i + 1}`)),
    muted: read('--muted'),
    line: read('--line'),
  };
}

function RateChart({ UPlot, title, series, which }: { UPlot: UPlotClass; title: string; series: RateSeries; which: 'recordsIn' | 'recordsOut' }) {
  const host = useRef<HTMLDivElement>(null);
  const chart = useRef<uPlot | null>(null);
  const labels = series.operators.map((o) => o.label).join('\n');
  const data: uPlot.AlignedData = [series.x, ...series.operators.map((o) => o[which])];

  // A new chart when the operators change (and for a theme change, on the next one); new data otherwise.
  useEffect(() => {
    const el = host.current;
    if (el === null) return;
    const colours = themeColours(el);
    const axis = { stroke: colours.muted, grid: { stroke: colours.line, width: 1 }, ticks: { stroke: colours.line, width: 1 } };
    const options: uPlot.Options = {
      title,
      width: Math.max(280, el.clientWidth),
      height: CHART_HEIGHT,
      scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1] } },
      axes: [axis, { ...axis, size: 56, values: (_u, values) => values.map((v) => compact.format(v)) }],
      series: [
        {},
        ...series.operators.map((o, i) => ({
          label: o.label,
          stroke: colours.palette[i % PALETTE_SIZE] ?? colours.muted,
          width: 2,
          value: (_u: uPlot, v: number | null) => rate(v),
        })),
      ],
    };
    const instance = new UPlot(options, data, el);
    chart.current = instance;
    const resize = new ResizeObserver(() => instance.setSize({ width: Math.max(280, el.clientWidth), height: CHART_HEIGHT }));
    resize.observe(el);
    return () => {
      resize.disconnect();
      instance.destroy();
      chart.current = null;
    };
    // `data` is set by the effect below; the chart is rebuilt only for new operators.
  }, [UPlot, title, which, labels]);

  useEffect(() => {
    chart.current?.setData(data);
  });

  return <figure class="metrics-chart" ref={host} aria-label={`${title}, per operator (the table below has the totals)`} />;
}
