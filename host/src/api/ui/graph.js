// graph.js: the query page. An expression runs as an instant query (shown as a
// table) or a range query (shown as a graph), with Thanos' deduplication,
// partial-response and max-source-resolution options. The page's state lives in
// its URL, so a query can be bookmarked and shared.

import {ApiError, apiGet, apiPost} from './api.js';
import {Chart} from './chart.js';
import {h, notice, replace} from './dom.js';
import {formatDuration, formatSeries, formatTime, parseDuration, parseTime} from './format.js';

const RANGE_STEPS = ['1m', '5m', '15m', '30m', '1h', '2h', '6h', '12h', '1d', '2d', '1w', '2w', '4w', '8w'];
const RESOLUTIONS = [
  ['0s', 'Only raw data'],
  ['5m', 'Max 5m downsampling'],
  ['1h', 'Max 1h downsampling'],
  ['auto', 'Auto downsampling'],
];
const MAX_TABLE_ROWS = 10000;
/** Prometheus refuses range queries of more than 11,000 points per series. */
const MAX_POINTS = 11000;

/**
 * Links shared from Prometheus, Thanos, Grafana and Alertmanager name their first panel `g0.*`
 * (`g0.expr`, `g0.tab` 0 = graph / 1 = table, `g0.range_input`, `g0.end_input`, `g0.step_input` in seconds,
 * `g0.moment_input`, `g0.max_source_resolution`, `g0.deduplicate`, `g0.partial_response`). They are read as this
 * page's own parameters; later panels are ignored.
 */
function fromPanelParams(q) {
  if (!q.has('g0.expr')) return q;
  const g = (k) => q.get(`g0.${k}`);
  const out = new URLSearchParams();
  out.set('expr', g('expr') || '');
  const range = g('tab') === '0';
  out.set('mode', range ? 'range' : 'instant');
  if (g('range_input')) out.set('range', g('range_input'));
  const end = range ? g('end_input') : (g('moment_input') || g('end_input'));
  if (end) out.set('end', end);
  const step = g('step_input');
  if (step) out.set('step', /^[0-9.]+$/.test(step) ? `${step}s` : step);
  if (g('max_source_resolution')) out.set('max_source_resolution', g('max_source_resolution'));
  for (const [from, to] of [['deduplicate', 'dedup'], ['partial_response', 'partial_response']]) {
    if (q.has(`g0.${from}`)) out.set(to, g(from) === '1' || g(from) === 'true' ? 'true' : 'false');
  }
  return out;
}

/** The page state, read from and written to the URL. */
function readState(defaults) {
  const q = fromPanelParams(new URLSearchParams(location.search));
  const bool = (k, d) => (q.has(k) ? q.get(k) === 'true' || q.get(k) === '1' : d);
  const mode = q.get('mode') === 'range' ? 'range' : 'instant';
  const msr = q.get('max_source_resolution') || '0s';
  return {
    expr: q.get('expr') || '',
    mode,
    range: q.get('range') || '1h',
    end: q.get('end') || '',
    step: q.get('step') || '',
    dedup: bool('dedup', true),
    partialResponse: bool('partial_response', defaults.partialResponse),
    maxSourceResolution: RESOLUTIONS.some(([v]) => v === msr) ? msr : '0s',
  };
}

function writeState(st) {
  const q = new URLSearchParams();
  q.set('expr', st.expr);
  q.set('mode', st.mode);
  if (st.mode === 'range') {
    q.set('range', st.range);
    if (st.step) q.set('step', st.step);
  }
  if (st.end) q.set('end', st.end);
  q.set('dedup', String(st.dedup));
  q.set('partial_response', String(st.partialResponse));
  q.set('max_source_resolution', st.maxSourceResolution);
  history.replaceState(null, '', `${location.pathname}?${q}`);
}

/** Default step: about 250 points across the range, at least 1s. */
function autoStep(rangeMs) {
  return Math.max(Math.floor(rangeMs / 250 / 1000), 1) * 1000;
}

export function mount(app) {
  const defaults = {partialResponse: document.body.dataset.partialResponse !== 'false'};
  const st = readState(defaults);
  let inflight = null;
  let chart = null;

  const expr = h('textarea', {id: 'expr', class: 'expr', rows: 2, spellcheck: 'false', autocomplete: 'off',
    placeholder: 'Expression (press Enter to execute, Shift+Enter for a new line)', 'aria-label': 'Expression'});
  expr.value = st.expr;
  const execute = h('button', {id: 'execute', class: 'primary', type: 'submit'}, 'Execute');
  const metricPick = h('select', {id: 'metric-names', 'aria-label': 'Insert a metric name'},
    h('option', {value: ''}, 'Insert metric…'));

  const modeInstant = h('input', {type: 'radio', name: 'mode', value: 'instant', id: 'mode-instant'});
  const modeRange = h('input', {type: 'radio', name: 'mode', value: 'range', id: 'mode-range'});
  (st.mode === 'range' ? modeRange : modeInstant).checked = true;

  const range = h('input', {id: 'range', class: 'short', value: st.range, 'aria-label': 'Range', title: 'Range, e.g. 1h, 30m, 2d'});
  const end = h('input', {id: 'end', class: 'time', value: st.end, placeholder: 'now',
    title: 'UTC, e.g. 2024-01-01 06:30:00, RFC 3339 or Unix seconds; empty for now'});
  const step = h('input', {id: 'step', class: 'short', value: st.step, placeholder: 'auto', 'aria-label': 'Step',
    title: 'Resolution of the range query, e.g. 15s; empty for about 250 points'});
  const dedup = h('input', {type: 'checkbox', id: 'dedup', checked: st.dedup});
  const partial = h('input', {type: 'checkbox', id: 'partial-response', checked: st.partialResponse});
  const msr = h('select', {id: 'max-source-resolution'},
    RESOLUTIONS.map(([v, label]) => h('option', {value: v}, `${label} (${v})`)));
  msr.value = st.maxSourceResolution;

  const shiftRange = (dir) => {
    const cur = parseDuration(range.value) ?? 3600e3;
    const i = RANGE_STEPS.map(parseDuration).findIndex((ms) => ms >= cur);
    const j = Math.min(RANGE_STEPS.length - 1, Math.max(0, (i < 0 ? RANGE_STEPS.length : i) + dir));
    range.value = RANGE_STEPS[j];
    run();
  };
  const shiftEnd = (dir) => {
    const r = parseDuration(range.value) ?? 3600e3;
    const cur = parseTime(end.value) ?? Date.now();
    end.value = formatTime(cur + (dir * r) / 2);
    run();
  };

  const rangeControls = h('span', {class: 'range-controls'},
    h('label', {class: 'inline'}, 'Range',
      h('span', {class: 'joined'},
        h('button', {type: 'button', class: 'icon', title: 'Shorter range', onclick: () => shiftRange(-1)}, '−'),
        range,
        h('button', {type: 'button', class: 'icon', title: 'Longer range', onclick: () => shiftRange(1)}, '+'))),
    h('label', {class: 'inline'}, 'Step', step));
  const endLabel = h('span', {class: 'end-label'});
  const endControls = h('label', {class: 'inline'}, endLabel,
    h('span', {class: 'joined'},
      h('button', {type: 'button', class: 'icon range-only', title: 'Back by half the range', onclick: () => shiftEnd(-1)}, '«'),
      end,
      h('button', {type: 'button', class: 'icon range-only', title: 'Forward by half the range', onclick: () => shiftEnd(1)}, '»'),
      h('button', {type: 'button', class: 'icon', title: 'Now', onclick: () => { end.value = ''; run(); }}, 'now')));

  const status = h('div', {id: 'query-status', class: 'query-status', 'aria-live': 'polite'});
  const messages = h('div', {id: 'messages'});
  const result = h('div', {id: 'result', class: 'result'});

  const form = h('form', {class: 'query-form', id: 'query-form'},
    h('div', {class: 'expr-row'}, expr, h('div', {class: 'expr-actions'}, execute, metricPick)),
    h('div', {class: 'controls'},
      h('span', {class: 'segmented', role: 'radiogroup', 'aria-label': 'Query type'},
        modeInstant, h('label', {for: 'mode-instant'}, 'Instant'),
        modeRange, h('label', {for: 'mode-range'}, 'Range')),
      rangeControls, endControls),
    h('div', {class: 'controls options'},
      h('label', {class: 'check', title: 'Merge the series of HA replicas (dedup=true)'}, dedup, 'Deduplication'),
      h('label', {class: 'check', title: 'Answer with the stores that respond and warn about the others (partial_response=true)'},
        partial, 'Partial response'),
      h('label', {class: 'inline'}, 'Max source resolution', msr)));

  replace(app, h('section', {class: 'page graph-page'}, form, status, messages, result));

  const syncMode = () => {
    const isRange = modeRange.checked;
    rangeControls.hidden = !isRange;
    form.querySelectorAll('.range-only').forEach((b) => { b.hidden = !isRange; });
    endLabel.textContent = isRange ? 'End' : 'Time';
  };
  syncMode();

  function current() {
    return {
      expr: expr.value.trim(),
      mode: modeRange.checked ? 'range' : 'instant',
      range: range.value.trim(),
      end: end.value.trim(),
      step: step.value.trim(),
      dedup: dedup.checked,
      partialResponse: partial.checked,
      maxSourceResolution: msr.value,
    };
  }

  async function run() {
    const cur = current();
    writeState(cur);
    if (!cur.expr) {
      replace(messages);
      replace(result);
      replace(status);
      return;
    }
    const problems = [];
    const endMs = cur.end ? parseTime(cur.end) : Date.now();
    if (endMs === null) problems.push(`cannot read the time "${cur.end}"; use e.g. 2024-01-01 06:30:00 (UTC) or Unix seconds`);
    const params = {
      query: cur.expr,
      dedup: String(cur.dedup),
      partial_response: String(cur.partialResponse),
      max_source_resolution: cur.maxSourceResolution,
    };
    let rangeInfo = null;
    if (cur.mode === 'range') {
      const r = parseDuration(cur.range);
      if (r === null) problems.push(`cannot read the range "${cur.range}"; use e.g. 1h or 30m`);
      let stepMs = cur.step ? parseDuration(cur.step) : null;
      if (cur.step && stepMs === null) problems.push(`cannot read the step "${cur.step}"; use e.g. 15s`);
      if (r !== null && stepMs === null && !cur.step) stepMs = autoStep(r);
      if (r !== null && stepMs && r / stepMs > MAX_POINTS) {
        problems.push(`a ${formatDuration(r)} range at a ${formatDuration(stepMs)} step is more than ${MAX_POINTS} points per series; raise the step`);
      }
      if (problems.length === 0) {
        rangeInfo = {start: endMs - r, end: endMs, step: stepMs};
        Object.assign(params, {start: String(rangeInfo.start / 1000), end: String(endMs / 1000), step: String(stepMs / 1000)});
      }
    } else if (endMs !== null) {
      params.time = String(endMs / 1000);
    }
    if (problems.length) {
      replace(messages, notice('error', 'Cannot run the query', h('ul', null, problems.map((p) => h('li', null, p)))));
      return;
    }

    inflight?.abort();
    const ctrl = new AbortController();
    inflight = ctrl;
    execute.disabled = true;
    app.classList.add('loading');
    replace(status, 'Loading…');
    const t0 = performance.now();
    try {
      const path = cur.mode === 'range' ? 'api/v1/query_range' : 'api/v1/query';
      const res = await apiPost(path, params, ctrl.signal);
      if (inflight !== ctrl) return;
      const ms = Math.round(performance.now() - t0);
      showWarnings(res.warnings, res.infos);
      if (cur.mode === 'range') showGraph(res.data, rangeInfo, ms); else showTable(res.data, endMs, ms);
    } catch (e) {
      if (e.name === 'AbortError') return;
      replace(status);
      replace(result);
      const title = e instanceof ApiError ? `Error executing query (${e.type})` : 'Error executing query';
      const hint = e instanceof ApiError && e.status === 404
        ? h('p', null, 'This querier does not serve the PromQL query API yet.') : null;
      replace(messages, notice('error', title, h('pre', {class: 'error-text'}, e.message), hint));
    } finally {
      if (inflight === ctrl) {
        inflight = null;
        execute.disabled = false;
        app.classList.remove('loading');
      }
    }
  }

  function showWarnings(warnings, infos) {
    replace(messages,
      warnings.length ? notice('warning', warnings.length === 1 ? 'Warning' : `${warnings.length} warnings`,
        h('ul', {class: 'warnings'}, warnings.map((w) => h('li', null, w)))) : null,
      infos.length ? notice('info', 'Info', h('ul', null, infos.map((w) => h('li', null, w)))) : null);
  }

  function showGraph(data, info, ms) {
    if (data.resultType !== 'matrix') {
      replace(result, notice('error', `Expected a matrix from a range query, got ${data.resultType}`));
      return;
    }
    const points = data.result.reduce((n, r) => n + r.values.length, 0);
    replace(status, `${data.result.length} series · ${points} points · step ${formatDuration(info.step)} · ` +
      `${formatTime(info.start)} – ${formatTime(info.end)} UTC · ${ms} ms`);
    if (data.result.length === 0) {
      chart?.destroy();
      chart = null;
      replace(result, h('p', {class: 'empty'}, 'Empty query result'));
      return;
    }
    if (!chart || !result.contains(chart.root)) {
      chart?.destroy();
      chart = new Chart(result);
    }
    chart.render(data.result, info);
  }

  function showTable(data, evalMs, ms) {
    chart?.destroy();
    chart = null;
    const {resultType, result: r} = data;
    const rows = [];
    if (resultType === 'vector') {
      for (const x of r.slice(0, MAX_TABLE_ROWS)) {
        const value = x.value ? x.value[1] : `native histogram (count ${x.histogram?.[1]?.count ?? '?'})`;
        rows.push([formatSeries(x.metric), value]);
      }
    } else if (resultType === 'matrix') {
      for (const x of r.slice(0, MAX_TABLE_ROWS)) {
        rows.push([formatSeries(x.metric), (x.values || []).map(([t, v]) => `${v} @${t}`)]);
      }
    } else if (resultType === 'scalar' || resultType === 'string') {
      rows.push([resultType, r[1]]);
    }
    const count = resultType === 'vector' || resultType === 'matrix' ? r.length : 1;
    replace(status, `${resultType} · ${count} ${count === 1 ? 'result' : 'results'} · at ${formatTime(evalMs, true)} UTC · ${ms} ms`);
    if (rows.length === 0) {
      replace(result, h('p', {class: 'empty'}, 'Empty query result'));
      return;
    }
    replace(result,
      count > MAX_TABLE_ROWS ? notice('warning', null, `Showing the first ${MAX_TABLE_ROWS} of ${count} results.`) : null,
      h('table', {class: 'data results'},
        h('thead', null, h('tr', null, h('th', null, resultType === 'matrix' ? 'Series' : 'Element'),
          h('th', {class: 'num'}, resultType === 'matrix' ? 'Values' : 'Value'))),
        h('tbody', null, rows.map(([k, v]) => h('tr', {class: 'result-row'},
          h('td', {class: 'series-labels'}, k),
          h('td', {class: 'num'}, Array.isArray(v) ? v.map((line) => h('div', null, line)) : v))))));
  }

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    run();
  });
  expr.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      run();
    }
  });
  [modeInstant, modeRange].forEach((r) => r.addEventListener('change', () => {
    syncMode();
    run();
  }));
  [dedup, partial, msr].forEach((el) => el.addEventListener('change', run));
  [range, end, step].forEach((el) => el.addEventListener('keydown', (e) => {
    if (e.key === 'Enter') {
      e.preventDefault();
      run();
    }
  }));
  metricPick.addEventListener('change', () => {
    const name = metricPick.value;
    metricPick.value = '';
    if (!name) return;
    const [a, b] = [expr.selectionStart, expr.selectionEnd];
    expr.setRangeText(name, a, b, 'end');
    expr.focus();
  });
  apiGet('api/v1/label/__name__/values').then((res) => {
    metricPick.append(...res.data.map((n) => h('option', {value: n}, n)));
  }, () => { /* the picker is a convenience; queries work without it */ });

  if (st.expr) run(); else expr.focus();
}
