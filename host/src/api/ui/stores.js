// stores.js: the stores page, from /api/v1/stores (Thanos' shape: endpoints
// grouped by component type, each with health, last check and error, external
// label sets and the time range it holds).

import {apiGet} from './api.js';
import {h, notice, replace} from './dom.js';
import {formatAgo, formatSeries, formatTime, parseTime} from './format.js';

/** Thanos writes unbounded ranges as ±2^63 ms; anything past year 9999 is shown as infinite. */
const BOUND = 253402300800000;

function timeCell(ms) {
  if (typeof ms !== 'number') return h('td', {class: 'muted'}, '–');
  if (ms <= -BOUND) return h('td', {class: 'muted', title: String(ms)}, '−∞');
  if (ms >= BOUND) return h('td', {class: 'muted', title: String(ms)}, '+∞');
  return h('td', {class: 'nowrap', title: `${ms} ms`}, formatTime(ms));
}

function storeRow(st) {
  const checked = parseTime(st.lastCheck || '');
  const never = checked === null || checked <= 0 || st.lastCheck.startsWith('0001-');
  return h('tr', {class: 'store-row', dataset: {endpoint: st.name}},
    h('td', {class: 'endpoint'}, st.name, st.strict ? h('span', {class: 'tag', title: 'Always queried (--endpoint-strict)'}, 'strict') : null),
    h('td', null, h('span', {class: `badge ${st.healthy ? 'up' : 'down'}`}, st.healthy ? 'UP' : 'DOWN')),
    h('td', {class: 'nowrap', title: st.lastCheck || ''}, never ? 'never' : formatAgo(checked)),
    h('td', {class: 'last-error'}, st.lastError ? h('span', {class: 'error-text'}, st.lastError) : h('span', {class: 'muted'}, '–')),
    h('td', {class: 'label-sets'}, (st.labelSets || []).length === 0 ? h('span', {class: 'muted'}, 'none')
      : st.labelSets.map((ls) => h('div', {class: 'label-set'}, Object.keys(ls).sort().map(
        (k) => h('span', {class: 'label'}, formatSeries({[k]: ls[k]}).slice(1, -1)))))),
    timeCell(st.minTime),
    timeCell(st.maxTime));
}

export function mount(app) {
  const body = h('div', {id: 'stores'});
  const updated = h('span', {class: 'muted'});
  const refresh = h('button', {type: 'button', id: 'refresh'}, 'Refresh');
  replace(app, h('section', {class: 'page'},
    h('div', {class: 'page-head'}, h('h1', null, 'Stores'), h('span', {class: 'spacer'}), updated, refresh),
    body));

  async function load() {
    refresh.disabled = true;
    try {
      const {data} = await apiGet('api/v1/stores');
      const groups = Object.entries(data || {}).sort(([a], [b]) => a.localeCompare(b));
      const all = groups.flatMap(([, list]) => list);
      const healthy = all.filter((x) => x.healthy).length;
      if (all.length === 0) {
        replace(body, notice('info', 'No endpoints', 'The querier has no StoreAPI endpoints. Add them with --endpoint, ',
          '--endpoint.sd-config or --store.sd-files.'));
      } else {
        replace(body,
          h('p', {class: 'summary'}, `${all.length} ${all.length === 1 ? 'endpoint' : 'endpoints'}, ${healthy} healthy`),
          groups.map(([type, list]) => h('div', {class: 'store-group', dataset: {type}},
            h('h2', null, type, h('span', {class: 'count'}, String(list.length))),
            h('table', {class: 'data stores'},
              h('thead', null, h('tr', null, ['Endpoint', 'Health', 'Last check', 'Last error', 'Label sets',
                'Min time (UTC)', 'Max time (UTC)'].map((c) => h('th', null, c)))),
              h('tbody', null, [...list].sort((a, b) => a.name.localeCompare(b.name)).map(storeRow))))));
      }
      updated.textContent = `updated ${formatTime(Date.now())} UTC`;
    } catch (e) {
      replace(body, notice('error', 'Cannot load the stores', h('pre', {class: 'error-text'}, e.message)));
    } finally {
      refresh.disabled = false;
    }
  }
  refresh.addEventListener('click', load);
  load();
}
