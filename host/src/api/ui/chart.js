// chart.js: a line chart of a range query's matrix, drawn as SVG: a time axis,
// a value axis, one path per series, a legend of series labels (click to show
// one series, Ctrl/⌘-click to toggle one) and a tooltip for the nearest point.

import {h, s, replace} from './dom.js';
import {formatSeries, formatShort, formatTime, parseValue} from './format.js';

const PALETTE = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f',
  '#bcbd22', '#17becf', '#3949ab', '#c2185b', '#00897b', '#f9a825', '#6d4c41', '#5e35b1'];
const HEIGHT = 340;
const MARGIN = {top: 12, right: 18, bottom: 42};

const SEC = 1e3;
const MIN = 60 * SEC;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;
const TIME_STEPS = [SEC, 2 * SEC, 5 * SEC, 10 * SEC, 15 * SEC, 30 * SEC, MIN, 2 * MIN, 5 * MIN, 10 * MIN,
  15 * MIN, 30 * MIN, HOUR, 2 * HOUR, 3 * HOUR, 6 * HOUR, 12 * HOUR, DAY, 2 * DAY, 7 * DAY, 14 * DAY,
  30 * DAY, 90 * DAY, 365 * DAY];

/** A step of 1, 2, 2.5 or 5 × 10^n near range/count. */
function niceStep(range, count) {
  const raw = range / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const f = raw / mag;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10) * mag;
}

function valueTicks(lo, hi) {
  if (!(hi > lo)) {
    const pad = lo === 0 ? 1 : Math.abs(lo) * 0.1;
    [lo, hi] = [lo - pad, hi + pad];
  }
  const step = niceStep(hi - lo, 5);
  const first = Math.floor(lo / step) * step;
  const last = Math.ceil(hi / step) * step;
  const ticks = [];
  for (let v = first, i = 0; v <= last + step / 2 && i < 50; v = first + ++i * step) {
    ticks.push(parseFloat(v.toPrecision(12)));
  }
  return {lo: first, hi: last, ticks};
}

function timeTicks(start, end, width) {
  const want = Math.max(2, Math.floor(width / 110));
  const step = TIME_STEPS.find((st) => (end - start) / st <= want) || TIME_STEPS[TIME_STEPS.length - 1];
  const ticks = [];
  for (let t = Math.ceil(start / step) * step; t <= end && ticks.length < 100; t += step) ticks.push(t);
  return {step, ticks};
}

function timeLabel(t, step) {
  const full = formatTime(t); // YYYY-MM-DD HH:MM:SS
  if (step >= DAY) return [full.slice(5, 10), ''];
  return [step < MIN ? full.slice(11, 19) : full.slice(11, 16), full.slice(0, 10)];
}

/** Points [t ms, v] of a matrix series; NaN and ±Inf stay in as gaps. */
function points(series) {
  return series.values.map(([t, v]) => [t * 1000, parseValue(v), v]);
}

export class Chart {
  /** Draws into container (emptied); call render() with results. */
  constructor(container) {
    this.container = container;
    this.root = h('div', {class: 'chart-wrap'});
    this.plot = h('div', {class: 'chart-plot'});
    this.tooltip = h('div', {class: 'chart-tooltip', hidden: true});
    this.legend = h('ul', {class: 'legend', 'aria-label': 'Series'});
    this.root.append(this.plot, this.tooltip, this.legend);
    replace(container, this.root);
    this.hidden = new Set();
    this.width = 0;
    this.resize = new ResizeObserver(() => {
      if (this.series && this.plot.clientWidth !== this.width) this.draw();
    });
    this.resize.observe(this.plot);
  }

  destroy() {
    this.resize.disconnect();
  }

  /** result: the matrix of a range query; range: {start, end, step} in ms. */
  render(result, range) {
    this.series = result.map((r, i) => ({
      metric: r.metric,
      label: formatSeries(r.metric),
      color: PALETTE[i % PALETTE.length],
      points: points(r),
    }));
    this.range = range;
    this.hidden.clear();
    this.drawLegend();
    this.draw();
  }

  visible() {
    return this.series.filter((_, i) => !this.hidden.has(i));
  }

  draw() {
    const {start, end, step} = this.range;
    const width = Math.max(320, this.plot.clientWidth);
    this.width = this.plot.clientWidth;
    let lo = Infinity;
    let hi = -Infinity;
    for (const se of this.visible()) {
      for (const [, v] of se.points) {
        if (Number.isFinite(v)) {
          lo = Math.min(lo, v);
          hi = Math.max(hi, v);
        }
      }
    }
    if (lo === Infinity) [lo, hi] = [0, 1];
    const yt = valueTicks(lo, hi);
    const labels = yt.ticks.map(formatShort);
    const left = 14 + 7 * Math.max(...labels.map((l) => l.length));
    const pw = width - left - MARGIN.right;
    const ph = HEIGHT - MARGIN.top - MARGIN.bottom;
    const span = Math.max(end - start, 1);
    const x = (t) => left + ((t - start) / span) * pw;
    const y = (v) => MARGIN.top + (1 - (v - yt.lo) / (yt.hi - yt.lo)) * ph;
    this.scale = {x, y, left, pw, ph, start, span};

    const svg = s('svg', {class: 'chart', width, height: HEIGHT, viewBox: `0 0 ${width} ${HEIGHT}`,
      role: 'img', 'aria-label': `Graph of ${this.series.length} series`});
    const clipId = `clip-${Math.random().toString(36).slice(2)}`;
    svg.append(s('defs', null, s('clipPath', {id: clipId},
      s('rect', {x: left, y: MARGIN.top - 2, width: pw, height: ph + 4}))));

    const grid = s('g', {class: 'grid'});
    const axes = s('g', {class: 'axis'});
    yt.ticks.forEach((v, i) => {
      const py = y(v);
      grid.append(s('line', {x1: left, x2: left + pw, y1: py, y2: py}));
      axes.append(s('text', {x: left - 6, y: py, class: 'y-label', 'text-anchor': 'end', 'dominant-baseline': 'middle'}, labels[i]));
    });
    const xt = timeTicks(start, end, pw);
    let lastDate = '';
    for (const t of xt.ticks) {
      const px = x(t);
      const [main, date] = timeLabel(t, xt.step);
      grid.append(s('line', {x1: px, x2: px, y1: MARGIN.top, y2: MARGIN.top + ph}));
      axes.append(s('text', {x: px, y: MARGIN.top + ph + 16, class: 'x-label', 'text-anchor': 'middle'}, main));
      if (date && date !== lastDate) {
        axes.append(s('text', {x: px, y: MARGIN.top + ph + 31, class: 'x-label date', 'text-anchor': 'middle'}, date));
        lastDate = date;
      }
    }
    axes.append(s('line', {class: 'axis-line', x1: left, x2: left + pw, y1: MARGIN.top + ph, y2: MARGIN.top + ph}));
    axes.append(s('line', {class: 'axis-line', x1: left, x2: left, y1: MARGIN.top, y2: MARGIN.top + ph}));
    svg.append(grid, axes);

    const lines = s('g', {class: 'lines', 'clip-path': `url(#${clipId})`});
    this.series.forEach((se, i) => {
      if (this.hidden.has(i)) return;
      lines.append(s('path', {class: 'series', d: pathOf(se.points, x, y, step), stroke: se.color,
        dataset: {series: String(i)}}));
    });
    svg.append(lines);

    this.cross = s('line', {class: 'crosshair', y1: MARGIN.top, y2: MARGIN.top + ph, visibility: 'hidden'});
    this.dot = s('circle', {class: 'hover-dot', r: 4, visibility: 'hidden'});
    const overlay = s('rect', {class: 'overlay', x: left, y: MARGIN.top, width: pw, height: ph});
    overlay.addEventListener('pointermove', (e) => this.hover(e, svg));
    overlay.addEventListener('pointerleave', () => this.unhover());
    svg.append(this.cross, this.dot, overlay);
    replace(this.plot, svg);
  }

  drawLegend() {
    const items = this.series.map((se, i) => {
      const li = h('li', {class: 'legend-item', tabindex: 0, title: 'Click: only this series. Ctrl/⌘-click: toggle it.',
        dataset: {series: String(i)}},
      h('span', {class: 'swatch'}), h('span', {class: 'legend-label'}, se.label));
      li.querySelector('.swatch').style.background = se.color;
      const pick = (e) => {
        if (e.ctrlKey || e.metaKey) {
          if (this.hidden.has(i)) this.hidden.delete(i); else this.hidden.add(i);
        } else if (this.hidden.size === this.series.length - 1 && !this.hidden.has(i)) {
          this.hidden.clear();
        } else {
          this.hidden = new Set(this.series.map((_, j) => j).filter((j) => j !== i));
        }
        this.legend.querySelectorAll('.legend-item').forEach((el, j) => el.classList.toggle('off', this.hidden.has(j)));
        this.draw();
      };
      li.addEventListener('click', pick);
      li.addEventListener('keydown', (e) => {
        if (e.key === 'Enter' || e.key === ' ') {
          e.preventDefault();
          pick(e);
        }
      });
      li.addEventListener('pointerenter', () => this.plot.querySelectorAll('path.series').forEach(
        (p) => p.classList.toggle('dim', p.dataset.series !== String(i))));
      li.addEventListener('pointerleave', () => this.plot.querySelectorAll('path.series.dim').forEach(
        (p) => p.classList.remove('dim')));
      return li;
    });
    replace(this.legend, items);
  }

  hover(e, svg) {
    const box = svg.getBoundingClientRect();
    const mx = e.clientX - box.left;
    const my = e.clientY - box.top;
    const {x, y, start, span, pw, left} = this.scale;
    const t = start + ((mx - left) / pw) * span;
    let best = null;
    this.series.forEach((se, i) => {
      if (this.hidden.has(i)) return;
      const p = nearest(se.points, t);
      if (!p || !Number.isFinite(p[1])) return;
      const d = (x(p[0]) - mx) ** 2 + (y(p[1]) - my) ** 2;
      if (!best || d < best.d) best = {d, se, p};
    });
    if (!best) return this.unhover();
    const px = x(best.p[0]);
    const py = y(best.p[1]);
    this.cross.setAttribute('x1', px);
    this.cross.setAttribute('x2', px);
    this.cross.setAttribute('visibility', 'visible');
    this.dot.setAttribute('cx', px);
    this.dot.setAttribute('cy', py);
    this.dot.setAttribute('fill', best.se.color);
    this.dot.setAttribute('visibility', 'visible');
    replace(this.tooltip,
      h('div', {class: 'tt-time'}, `${formatTime(best.p[0], true)} UTC`),
      h('div', {class: 'tt-series'}, h('span', {class: 'swatch'}), best.se.label),
      h('div', {class: 'tt-value'}, 'value: ', h('strong', null, best.p[2])));
    this.tooltip.querySelector('.swatch').style.background = best.se.color;
    this.tooltip.hidden = false;
    const tw = this.tooltip.offsetWidth;
    const flip = px + 16 + tw > box.width;
    this.tooltip.style.left = `${flip ? Math.max(0, px - 16 - tw) : px + 16}px`;
    this.tooltip.style.top = `${Math.max(0, py - 20)}px`;
  }

  unhover() {
    this.cross?.setAttribute('visibility', 'hidden');
    this.dot?.setAttribute('visibility', 'hidden');
    this.tooltip.hidden = true;
  }
}

/** The point of pts (sorted by time) nearest to t. */
function nearest(pts, t) {
  if (pts.length === 0) return null;
  let lo = 0;
  let hi = pts.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (pts[mid][0] < t) lo = mid + 1; else hi = mid;
  }
  if (lo > 0 && Math.abs(pts[lo - 1][0] - t) <= Math.abs(pts[lo][0] - t)) lo -= 1;
  return pts[lo];
}

/** An SVG path through the points, broken at non-finite values and at gaps longer than 1.5 steps. */
function pathOf(pts, x, y, step) {
  const parts = [];
  let prevT = null;
  let run = 0;
  for (const [t, v] of pts) {
    if (!Number.isFinite(v)) {
      prevT = null;
      continue;
    }
    const cmd = prevT === null || (step && t - prevT > step * 1.5) ? 'M' : 'L';
    if (cmd === 'M' && run === 1) parts.push('h0'); // a lone point: round caps draw a dot
    run = cmd === 'M' ? 1 : run + 1;
    parts.push(`${cmd}${x(t).toFixed(1)},${y(v).toFixed(1)}`);
    prevT = t;
  }
  if (run === 1) parts.push('h0');
  return parts.join('');
}
