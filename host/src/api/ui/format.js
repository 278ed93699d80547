// format.js: durations, times, label sets and numbers, as Prometheus writes them.

const UNITS = [['y', 365 * 86400e3], ['w', 7 * 86400e3], ['d', 86400e3], ['h', 3600e3], ['m', 60e3], ['s', 1e3], ['ms', 1]];

/** Parses a Prometheus duration ("1h30m", "15s", "500ms") into milliseconds; null when invalid. */
export function parseDuration(text) {
  const str = String(text).trim();
  if (str === '') return null;
  if (/^\d+(\.\d+)?$/.test(str)) return Math.round(parseFloat(str) * 1000); // bare seconds
  const re = /(\d+)(ms|y|w|d|h|m|s)/gy;
  let ms = 0;
  let m;
  let end = 0;
  while ((m = re.exec(str)) !== null) {
    ms += parseInt(m[1], 10) * UNITS.find(([u]) => u === m[2])[1];
    end = re.lastIndex;
  }
  return end === str.length && ms > 0 ? ms : null;
}

/** Formats milliseconds as a Prometheus duration ("1h30m"). */
export function formatDuration(ms) {
  if (!Number.isFinite(ms) || ms <= 0) return '0s';
  let rest = Math.round(ms);
  let out = '';
  for (const [u, size] of UNITS) {
    const n = Math.floor(rest / size);
    if (n > 0) {
      out += `${n}${u}`;
      rest -= n * size;
    }
  }
  return out;
}

const pad = (n, w = 2) => String(n).padStart(w, '0');

/** "2024-01-01 06:30:00" (UTC) for a Unix time in milliseconds. */
export function formatTime(ms, withMillis = false) {
  if (!Number.isFinite(ms)) return ms > 0 ? '+∞' : '−∞';
  const d = new Date(ms);
  const base = `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ` +
    `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`;
  return withMillis && d.getUTCMilliseconds() ? `${base}.${pad(d.getUTCMilliseconds(), 3)}` : base;
}

/**
 * Parses a time typed by a person: "2024-01-01 06:30[:00[.000]]" or RFC 3339 (UTC unless an offset is given),
 * or Unix seconds. Returns milliseconds or null.
 */
export function parseTime(text) {
  const str = String(text).trim();
  if (str === '') return null;
  if (/^\d+(\.\d+)?$/.test(str)) return Math.round(parseFloat(str) * 1000);
  const m = /^(\d{4})-(\d\d)-(\d\d)(?:[ T](\d\d):(\d\d)(?::(\d\d)(?:\.(\d{1,9}))?)?)?\s*(Z|[+-]\d\d:\d\d)?$/i.exec(str);
  if (!m) return null;
  const [, y, mo, d, hh = '0', mm = '0', ss = '0', frac = '0', tz] = m;
  let ms = Date.UTC(+y, +mo - 1, +d, +hh, +mm, +ss, Math.round(parseFloat(`0.${frac}`) * 1000));
  if (tz && tz.toUpperCase() !== 'Z') {
    const sign = tz[0] === '-' ? -1 : 1;
    ms -= sign * (parseInt(tz.slice(1, 3), 10) * 60 + parseInt(tz.slice(4, 6), 10)) * 60e3;
  }
  return Number.isNaN(ms) ? null : ms;
}

/** "3m ago", "in 5s" for a time relative to now. */
export function formatAgo(ms, now = Date.now()) {
  const diff = now - ms;
  const abs = Math.abs(diff);
  const text = abs < 1000 ? 'just now' : formatDuration(Math.round(abs / 1000) * 1000).replace(/^(\d+[a-z]+)(\d+[a-z]+)?.*$/, '$1$2');
  if (abs < 1000) return text;
  return diff >= 0 ? `${text} ago` : `in ${text}`;
}

function escapeLabelValue(v) {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

/** `name{a="1", b="2"}` for a metric object; `{}` when it has no labels. */
export function formatSeries(metric) {
  const name = metric.__name__ || '';
  const pairs = Object.keys(metric).filter((k) => k !== '__name__').sort()
    .map((k) => `${k}="${escapeLabelValue(metric[k])}"`);
  return pairs.length || !name ? `${name}{${pairs.join(', ')}}` : name;
}

/** A sample value string from the API ("1.5", "NaN", "+Inf") as a number. */
export function parseValue(v) {
  if (v === '+Inf' || v === 'Inf') return Infinity;
  if (v === '-Inf') return -Infinity;
  return parseFloat(v);
}

const SI = [[1e15, 'P'], [1e12, 'T'], [1e9, 'G'], [1e6, 'M'], [1e3, 'k']];
const SMALL = [[1e-3, 'm'], [1e-6, 'µ'], [1e-9, 'n']];

/** Short axis label: 1.5k, 20M, 0.25, 3µ. */
export function formatShort(v) {
  if (v === 0) return '0';
  if (!Number.isFinite(v)) return String(v);
  const abs = Math.abs(v);
  const trim = (x) => String(parseFloat(x.toPrecision(4)));
  if (abs >= 1e18 || abs < 1e-9) return v.toExponential(2);
  for (const [size, unit] of SI) if (abs >= size) return trim(v / size) + unit;
  if (abs >= 0.01) return trim(v);
  for (const [size, unit] of SMALL) if (abs >= size) return trim(v / size) + unit;
  return v.toExponential(2);
}
