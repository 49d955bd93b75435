// Price charts on a <canvas>, drawn by hand (no library).
//
// LiveChart keeps the last `capacity` prices in a ring buffer of typed arrays, and at most
// `maxMarkers` fill and schedule markers: memory and drawing cost stay bounded however many
// updates arrive, and the DOM does not change at all. Updates only mark the chart dirty; it is
// redrawn at most once per animation frame.

const COLORS = {
  background: "#0b1220",
  grid: "#1e293b",
  text: "#94a3b8",
  price: "#e2e8f0",
  band: "rgba(56, 189, 248, 0.06)",
  base: "#f87171",
  entry: "#4ade80",
  exit: "#fbbf24",
  top: "#60a5fa",
  buy: "#22c55e",
  sell: "#ef4444",
  schedule: "#f59e0b",
  broken: "#f43f5e",
  profit: "#a78bfa",
};

export const LEVELS = [
  ["base", "B", COLORS.base],
  ["entry", "E", COLORS.entry],
  ["exit", "X", COLORS.exit],
  ["top", "T", COLORS.top],
];

/** A price with as many decimals as its size needs. */
export function formatPrice(value) {
  if (value === null || value === undefined || Number.isNaN(Number(value))) return "—";
  const n = Number(value);
  const abs = Math.abs(n);
  const digits = abs >= 1000 ? 2 : abs >= 1 ? 4 : 8;
  return n.toLocaleString("en-US", { minimumFractionDigits: Math.min(2, digits), maximumFractionDigits: digits });
}

/** An amount of the quote asset: two decimals. */
export function formatMoney(value) {
  if (value === null || value === undefined || Number.isNaN(Number(value))) return "—";
  return Number(value).toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
}

function formatTime(ms, withDate = false) {
  if (!Number.isFinite(ms)) return "";
  const iso = new Date(ms).toISOString();
  return withDate ? `${iso.slice(0, 10)} ${iso.slice(11, 16)}` : iso.slice(11, 19);
}

/** Fit the canvas's pixel size to its CSS size; returns a context in CSS pixels. */
function prepare(canvas) {
  const dpr = window.devicePixelRatio || 1;
  const width = Math.max(1, canvas.clientWidth);
  const height = Math.max(1, canvas.clientHeight);
  if (canvas.width !== Math.round(width * dpr) || canvas.height !== Math.round(height * dpr)) {
    canvas.width = Math.round(width * dpr);
    canvas.height = Math.round(height * dpr);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.fillStyle = COLORS.background;
  ctx.fillRect(0, 0, width, height);
  ctx.font = "12px system-ui, sans-serif";
  ctx.textBaseline = "middle";
  return { ctx, width, height };
}

function yScale(lo, hi, top, bottom) {
  if (!(hi > lo)) {
    const pad = Math.abs(lo) * 0.01 || 1;
    lo -= pad;
    hi += pad;
  }
  const margin = (hi - lo) * 0.06;
  lo -= margin;
  hi += margin;
  const scale = (price) => bottom - ((price - lo) / (hi - lo)) * (bottom - top);
  scale.lo = lo;
  scale.hi = hi;
  return scale;
}

function drawLevels(ctx, levels, y, left, right) {
  if (!levels) return;
  const top = y(Number(levels.top));
  const base = y(Number(levels.base));
  ctx.fillStyle = COLORS.band;
  ctx.fillRect(left, Math.min(top, base), right - left, Math.abs(base - top));
  ctx.setLineDash([6, 4]);
  ctx.lineWidth = 1;
  for (const [key, letter, color] of LEVELS) {
    const value = Number(levels[key]);
    if (!Number.isFinite(value)) continue;
    const py = Math.round(y(value)) + 0.5;
    ctx.strokeStyle = color;
    ctx.beginPath();
    ctx.moveTo(left, py);
    ctx.lineTo(right, py);
    ctx.stroke();
    ctx.fillStyle = color;
    ctx.textAlign = "left";
    ctx.fillText(`${letter} ${formatPrice(value)}`, right + 6, py);
  }
  ctx.setLineDash([]);
}

function drawMarker(ctx, kind, x, y) {
  ctx.beginPath();
  if (kind === "buy") {
    ctx.fillStyle = COLORS.buy;
    ctx.moveTo(x, y - 2);
    ctx.lineTo(x - 7, y + 10);
    ctx.lineTo(x + 7, y + 10);
  } else if (kind === "sell") {
    ctx.fillStyle = COLORS.sell;
    ctx.moveTo(x, y + 2);
    ctx.lineTo(x - 7, y - 10);
    ctx.lineTo(x + 7, y - 10);
  } else if (kind === "broken") {
    ctx.strokeStyle = COLORS.broken;
    ctx.lineWidth = 2;
    ctx.moveTo(x - 6, y - 6);
    ctx.lineTo(x + 6, y + 6);
    ctx.moveTo(x + 6, y - 6);
    ctx.lineTo(x - 6, y + 6);
    ctx.stroke();
    return;
  } else {
    ctx.fillStyle = COLORS.schedule;
    ctx.moveTo(x, y - 7);
    ctx.lineTo(x + 7, y);
    ctx.lineTo(x, y + 7);
    ctx.lineTo(x - 7, y);
  }
  ctx.closePath();
  ctx.fill();
  ctx.strokeStyle = COLORS.background;
  ctx.lineWidth = 1;
  ctx.stroke();
}

function drawYAxis(ctx, y, left, top, bottom) {
  ctx.fillStyle = COLORS.text;
  ctx.strokeStyle = COLORS.grid;
  ctx.textAlign = "right";
  ctx.lineWidth = 1;
  for (let i = 0; i <= 4; i += 1) {
    const value = y.lo + ((y.hi - y.lo) * i) / 4;
    const py = Math.round(y(value)) + 0.5;
    if (py < top - 1 || py > bottom + 1) continue;
    ctx.beginPath();
    ctx.moveTo(left, py);
    ctx.lineTo(left - 4, py);
    ctx.stroke();
    ctx.fillText(formatPrice(value), left - 6, py);
  }
}

export class LiveChart {
  constructor(canvas, { capacity = 2000, maxMarkers = 200 } = {}) {
    this.canvas = canvas;
    this.capacity = capacity;
    this.maxMarkers = maxMarkers;
    this.prices = new Float64Array(capacity);
    this.times = new Float64Array(capacity);
    this.count = 0; // points kept
    this.total = 0; // points ever pushed: the next point's sequence number
    this.markers = []; // {seq, kind, price, label}
    this.levels = null;
    this.title = "";
    this.frame = 0;
    if (typeof ResizeObserver !== "undefined") new ResizeObserver(() => this.invalidate()).observe(canvas);
  }

  reset(levels = null, title = "") {
    this.count = 0;
    this.total = 0;
    this.markers = [];
    this.levels = levels;
    this.title = title;
    this.invalidate();
  }

  setLevels(levels) {
    this.levels = levels;
    this.invalidate();
  }

  get size() {
    return this.count;
  }

  get lastPrice() {
    return this.count ? this.prices[(this.total - 1) % this.capacity] : null;
  }

  push(price, atMs = Date.now()) {
    const value = Number(price);
    if (!Number.isFinite(value)) return;
    const slot = this.total % this.capacity;
    this.prices[slot] = value;
    this.times[slot] = atMs;
    this.total += 1;
    if (this.count < this.capacity) this.count += 1;
    const oldest = this.total - this.count;
    if (this.markers.length && this.markers[0].seq < oldest) this.markers = this.markers.filter((m) => m.seq >= oldest);
    this.invalidate();
  }

  /** A marker at the latest point, or at the last point at or before `atMs` (older ones are dropped). */
  mark(kind, price, label = "", atMs = null) {
    const value = Number(price);
    if (!Number.isFinite(value)) return false;
    if (!this.count) this.push(value, atMs ?? Date.now());
    let seq = this.total - 1;
    if (atMs !== null && atMs < this.times[seq % this.capacity]) {
      seq = -1;
      for (let s = this.total - 1; s >= this.total - this.count; s -= 1) {
        if (this.times[s % this.capacity] <= atMs) {
          seq = s;
          break;
        }
      }
      if (seq < 0) return false;
    }
    this.markers.push({ seq, kind, price: value, label });
    this.markers.sort((a, b) => a.seq - b.seq);
    if (this.markers.length > this.maxMarkers) this.markers.splice(0, this.markers.length - this.maxMarkers);
    this.invalidate();
    return true;
  }

  invalidate() {
    if (this.frame) return;
    this.frame = window.requestAnimationFrame(() => {
      this.frame = 0;
      this.draw();
    });
  }

  draw() {
    const { ctx, width, height } = prepare(this.canvas);
    const left = 84;
    const right = width - 120;
    const top = 24;
    const bottom = height - 26;
    const first = this.total - this.count;
    const slot = (seq) => seq % this.capacity;
    ctx.fillStyle = COLORS.text;
    ctx.textAlign = "left";
    ctx.fillText(this.title, left, 10);
    if (!this.count && !this.levels) {
      ctx.textAlign = "center";
      ctx.fillText("Waiting for prices…", width / 2, height / 2);
      return;
    }
    let lo = Infinity;
    let hi = -Infinity;
    for (let k = 0; k < this.count; k += 1) {
      const p = this.prices[slot(first + k)];
      if (p < lo) lo = p;
      if (p > hi) hi = p;
    }
    if (this.levels) {
      for (const [key] of LEVELS) {
        const v = Number(this.levels[key]);
        if (Number.isFinite(v)) {
          lo = Math.min(lo, v);
          hi = Math.max(hi, v);
        }
      }
    }
    const y = yScale(lo, hi, top, bottom);
    // Points spread over the width as they arrive; a lone point sits at the right edge.
    const span = Math.max(1, this.count - 1);
    const x = (seq) => (this.count === 1 ? right : left + ((seq - first) / span) * (right - left));
    drawYAxis(ctx, y, left, top, bottom);
    drawLevels(ctx, this.levels, y, left, right);
    if (this.count) {
      ctx.strokeStyle = COLORS.price;
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      for (let k = 0; k < this.count; k += 1) {
        const px = x(first + k);
        const py = y(this.prices[slot(first + k)]);
        if (k === 0) ctx.moveTo(px, py);
        else ctx.lineTo(px, py);
      }
      ctx.stroke();
      for (const m of this.markers) drawMarker(ctx, m.kind, x(m.seq), y(m.price));
      const lastSeq = this.total - 1;
      const last = this.prices[slot(lastSeq)];
      ctx.fillStyle = COLORS.price;
      ctx.beginPath();
      ctx.arc(x(lastSeq), y(last), 3, 0, Math.PI * 2);
      ctx.fill();
      ctx.fillStyle = COLORS.text;
      ctx.textAlign = "left";
      ctx.fillText(formatTime(this.times[slot(first)]), left, bottom + 14);
      ctx.textAlign = "right";
      ctx.fillText(`${formatTime(this.times[slot(lastSeq)])} · ${this.count} ${this.count === 1 ? "point" : "points"}`, right, bottom + 14);
    }
  }
}

/**
 * A backtest's result: price (closes of `candles`), the channel's levels, fills and marks on a time
 * axis, and the cumulative realised profit below. data: {levels, start, end, candles: [{t, close}],
 * trades: [{t, side, price, profit}], marks: [{t, kind, price}]} with times in ms.
 */
export function drawBacktest(canvas, data) {
  const { ctx, width, height } = prepare(canvas);
  const left = 84;
  const right = width - 120;
  const top = 16;
  const split = Math.round(height * 0.68);
  const bottom = height - 24;
  const t0 = data.start;
  const t1 = Math.max(data.end, t0 + 1);
  const x = (t) => left + ((t - t0) / (t1 - t0)) * (right - left);
  const candles = data.candles.filter((c) => c.t >= t0 && c.t <= t1);
  let lo = Infinity;
  let hi = -Infinity;
  for (const c of candles) {
    lo = Math.min(lo, c.close);
    hi = Math.max(hi, c.close);
  }
  for (const t of data.trades) {
    lo = Math.min(lo, t.price);
    hi = Math.max(hi, t.price);
  }
  for (const [key] of LEVELS) {
    const v = Number(data.levels[key]);
    lo = Math.min(lo, v);
    hi = Math.max(hi, v);
  }
  const y = yScale(lo, hi, top, split - 16);
  drawYAxis(ctx, y, left, top, split - 16);
  drawLevels(ctx, data.levels, y, left, right);
  ctx.strokeStyle = COLORS.price;
  ctx.lineWidth = 1.2;
  ctx.beginPath();
  candles.forEach((c, i) => (i ? ctx.lineTo(x(c.t), y(c.close)) : ctx.moveTo(x(c.t), y(c.close))));
  ctx.stroke();
  for (const m of data.marks) drawMarker(ctx, m.kind === "CHANNEL_BROKEN" ? "broken" : "schedule", x(m.t), y(m.price));
  for (const t of data.trades) drawMarker(ctx, t.side === "BUY" ? "buy" : "sell", x(t.t), y(t.price));

  // Cumulative realised profit, a step line.
  let sum = 0;
  const steps = [{ t: t0, v: 0 }];
  for (const t of data.trades) {
    if (t.profit !== null && t.profit !== undefined) {
      sum += Number(t.profit);
      steps.push({ t: t.t, v: sum });
    }
  }
  steps.push({ t: t1, v: sum });
  const py = yScale(Math.min(0, ...steps.map((s) => s.v)), Math.max(0, ...steps.map((s) => s.v)), split + 8, bottom);
  ctx.strokeStyle = COLORS.grid;
  ctx.beginPath();
  ctx.moveTo(left, Math.round(py(0)) + 0.5);
  ctx.lineTo(right, Math.round(py(0)) + 0.5);
  ctx.stroke();
  ctx.strokeStyle = COLORS.profit;
  ctx.lineWidth = 2;
  ctx.beginPath();
  steps.forEach((s, i) => {
    if (i === 0) ctx.moveTo(x(s.t), py(s.v));
    else {
      ctx.lineTo(x(s.t), py(steps[i - 1].v));
      ctx.lineTo(x(s.t), py(s.v));
    }
  });
  ctx.stroke();
  ctx.fillStyle = COLORS.profit;
  ctx.textAlign = "left";
  ctx.fillText(`realised profit ${formatPrice(sum)}`, right + 6, py(sum));
  ctx.fillStyle = COLORS.text;
  ctx.fillText(formatTime(t0, true), left, bottom + 12);
  ctx.textAlign = "right";
  ctx.fillText(formatTime(t1, true), right, bottom + 12);
  return { candles: candles.length, trades: data.trades.length, marks: data.marks.length };
}
