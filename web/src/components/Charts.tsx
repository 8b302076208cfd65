// Plain SVG charts for the analytics screen: no chart library, nothing to load.
// Each chart names itself in `data-chart` so tests and readers can find it.

export interface Point {
  x: number; // seconds since the start of the series
  y: number;
}

const W = 560;
const H = 200;
const PAD = { left: 40, right: 12, top: 12, bottom: 28 };

function niceMax(v: number): number {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  const m = v / p;
  return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
}

function minutes(s: number): string {
  if (s < 90) return `${Math.round(s)} s`;
  return s >= 3600 ? `${(s / 3600).toFixed(1)} h` : `${Math.round(s / 60)} min`;
}

/** A step line (counts change in steps: a viewer joins, a minute ends). */
export function LineChart(props: { name: string; title: string; points: Point[]; unit?: string }) {
  const pts = props.points;
  const xMax = Math.max(1, ...pts.map((p) => p.x));
  const yMax = niceMax(Math.max(0, ...pts.map((p) => p.y)));
  const sx = (x: number) => PAD.left + (x / xMax) * (W - PAD.left - PAD.right);
  const sy = (y: number) => H - PAD.bottom - (y / yMax) * (H - PAD.top - PAD.bottom);
  let d = "";
  pts.forEach((p, i) => {
    const prev = pts[i - 1];
    d += i === 0 ? `M${sx(p.x)},${sy(p.y)}` : `H${sx(p.x)}V${sy(p.y)}`;
    if (!prev && pts.length === 1) d += `H${sx(xMax)}`;
  });
  return (
    <figure className="chart" data-chart={props.name}>
      <figcaption>{props.title}</figcaption>
      <svg viewBox={`0 0 ${W} ${H}`} role="img" aria-label={props.title}>
        <line className="axis" x1={PAD.left} y1={sy(0)} x2={W - PAD.right} y2={sy(0)} />
        <line className="axis" x1={PAD.left} y1={PAD.top} x2={PAD.left} y2={sy(0)} />
        <text className="tick" x={PAD.left - 6} y={sy(yMax) + 4} textAnchor="end">
          {yMax}
        </text>
        <text className="tick" x={PAD.left - 6} y={sy(0) + 4} textAnchor="end">
          0
        </text>
        <text className="tick" x={W - PAD.right} y={H - 8} textAnchor="end">
          {minutes(xMax)}
        </text>
        {pts.length > 0 ? <path className="series" d={d} /> : null}
        {pts.map((p, i) => (
          <circle key={i} className="dot" cx={sx(p.x)} cy={sy(p.y)} r={2.5}>
            <title>{`${minutes(p.x)}: ${p.y}${props.unit ?? ""}`}</title>
          </circle>
        ))}
      </svg>
      {pts.length === 0 ? <p className="muted">No data yet.</p> : null}
    </figure>
  );
}

/** Horizontal bars, one per label (reactions by type, watch time by kind). */
export function BarChart(props: {
  name: string;
  title: string;
  bars: { label: string; value: number }[];
  format?: (v: number) => string;
}) {
  const max = Math.max(1, ...props.bars.map((b) => b.value));
  const row = 28;
  const height = Math.max(row, props.bars.length * row) + 8;
  const fmt = props.format ?? ((v: number) => String(v));
  return (
    <figure className="chart" data-chart={props.name}>
      <figcaption>{props.title}</figcaption>
      <svg viewBox={`0 0 ${W} ${height}`} role="img" aria-label={props.title}>
        {props.bars.map((b, i) => {
          const width = (b.value / max) * (W - 200);
          return (
            <g key={b.label} transform={`translate(0, ${i * row + 4})`} data-bar={b.label}>
              <text className="bar-label" x={110} y={row / 2 + 5} textAnchor="end">
                {b.label}
              </text>
              <rect className="bar" x={120} y={4} width={Math.max(1, width)} height={row - 8} />
              <text className="tick" x={126 + width} y={row / 2 + 5}>
                {fmt(b.value)}
              </text>
            </g>
          );
        })}
      </svg>
      {props.bars.length === 0 ? <p className="muted">No data yet.</p> : null}
    </figure>
  );
}
