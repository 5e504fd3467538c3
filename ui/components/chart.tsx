import { useEffect, useId, useMemo, useRef, useState } from 'preact/hooks';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { get, query } from '../api.js';
import { usePoll } from '../hooks.js';
import { OUTCOMES, toColumns, totals, type Outcome } from '../series.js';
import type { Stats } from '../types.js';
import { errorMessage } from './common.js';

/*
 * Deliveries per minute by outcome, from the per-minute rollups (`/stats`). Each outcome has
 * its own colour and its own line style, and the totals are written out beside the chart, so
 * nothing depends on telling colours apart.
 */

const STYLES: Record<Outcome, { stroke: string; dash?: number[] }> = {
  succeeded: { stroke: '#1a7f37' },
  failed: { stroke: '#cf222e', dash: [8, 4] },
  retried: { stroke: '#9a6700', dash: [2, 3] },
};

const WINDOWS = [
  { window: '1h', label: 'last hour' },
  { window: '6h', label: 'last 6 hours' },
  { window: '24h', label: 'last 24 hours' },
];
const BUCKET = '1m';
// The rollups change once a minute; a slower poll than the pages' is plenty.
const STATS_POLL_MS = 10_000;

function Plot({ columns, label }: { columns: uPlot.AlignedData; label: string }) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);

  useEffect(() => {
    const el = box.current!;
    const u = new uPlot(
      {
        width: Math.max(el.clientWidth, 280),
        height: 220,
        scales: { y: { range: (_u, _min, max) => [0, Math.max(4, Math.ceil(max * 1.1))] } },
        axes: [{}, { label: 'per minute', size: 50 }],
        series: [{}, ...OUTCOMES.map((o) => ({ label: o, ...STYLES[o], width: 2, points: { show: false } }))],
        cursor: { drag: { x: false, y: false } },
      },
      columns,
      el,
    );
    plot.current = u;
    const resize = new ResizeObserver(() => u.setSize({ width: Math.max(el.clientWidth, 280), height: 220 }));
    resize.observe(el);
    return () => {
      resize.disconnect();
      u.destroy();
      plot.current = null;
    };
  }, []);

  useEffect(() => {
    plot.current?.setData(columns);
  }, [columns]);

  return <div class="plot" ref={box} role="img" aria-label={label} />;
}

export function DeliveryChart({ path, title }: { path: string; title: string }) {
  const [range, setRange] = useState(WINDOWS[0]);
  const selectId = useId();
  const stats = usePoll(`${path} ${range.window}`, () => get<Stats>(path + query({ window: range.window, bucket: BUCKET })), STATS_POLL_MS);
  const summary = stats.data ? `${range.label}: ${totals(stats.data)}` : null;
  const columns = useMemo(() => stats.data && toColumns(stats.data, Date.now()), [stats.data]);

  return (
    <figure class="chart">
      <figcaption>
        <span class="chart-title">{title}</span>
        <label for={selectId}>Window</label>
        <select id={selectId} value={range.window} onChange={(e) => setRange(WINDOWS.find((w) => w.window === e.currentTarget.value)!)}>
          {WINDOWS.map((w) => (
            <option value={w.window}>{w.label}</option>
          ))}
        </select>
      </figcaption>
      {columns ? (
        <>
          <Plot columns={columns} label={`${title}, ${summary}`} />
          <p class="chart-summary">Totals for the {summary}.</p>
        </>
      ) : stats.error ? (
        <p class="notice notice-error">The chart is unavailable. {errorMessage(stats.error)}</p>
      ) : (
        <p class="muted">Loading the chart…</p>
      )}
    </figure>
  );
}
