// targets.js: the targets page, from /api/v1/targets (scrape targets of every Prometheus behind the querier's
// sidecars, deduplicated by replica labels): one table per scrape pool with health, labels, last scrape and
// error.

import {apiGet} from './api.js';
import {h, notice, replace} from './dom.js';
import {formatAgo, formatSeries, parseTime} from './format.js';

function labelList(labels) {
  return Object.keys(labels || {}).sort().map(
    (k) => h('span', {class: 'label'}, formatSeries({[k]: labels[k]}).slice(1, -1)));
}

function targetRow(t) {
  const last = parseTime(t.lastScrape || '');
  const never = last === null || (t.lastScrape || '').startsWith('0001-');
  const health = t.health || 'unknown';
  return h('tr', {class: 'target-row', dataset: {url: t.scrapeUrl || ''}},
    h('td', {class: 'endpoint'}, t.scrapeUrl || ''),
    h('td', null, h('span', {class: `badge ${health === 'up' ? 'up' : 'down'}`}, health.toUpperCase())),
    h('td', {class: 'label-sets'}, h('div', {class: 'label-set'}, labelList(t.labels))),
    h('td', {class: 'nowrap', title: t.lastScrape || ''}, never ? 'never' : formatAgo(last)),
    h('td', {class: 'num'}, typeof t.lastScrapeDuration === 'number' ? `${(t.lastScrapeDuration * 1000).toFixed(1)} ms` : '–'),
    h('td', {class: 'last-error'}, t.lastError ? h('span', {class: 'error-text'}, t.lastError) : h('span', {class: 'muted'}, '–')));
}

export function mount(app) {
  const body = h('div', {id: 'targets'});
  const warn = h('div');
  const onlyUnhealthy = h('input', {type: 'checkbox', id: 'unhealthy'});
  const refresh = h('button', {type: 'button', id: 'refresh'}, 'Refresh');
  replace(app, h('section', {class: 'page'},
    h('div', {class: 'page-head'}, h('h1', null, 'Targets'), h('span', {class: 'spacer'}),
      h('label', {class: 'check'}, onlyUnhealthy, ' Unhealthy only'), refresh),
    warn, body));
  let last = [];

  function render() {
    const shown = onlyUnhealthy.checked ? last.filter((t) => t.health !== 'up') : last;
    if (last.length === 0) {
      replace(body, notice('info', 'No targets', 'No endpoint of this querier serves the Targets API ',
        '(sidecars do; stores do not).'));
      return;
    }
    const pools = new Map();
    for (const t of shown) {
      const p = t.scrapePool || '';
      if (!pools.has(p)) pools.set(p, []);
      pools.get(p).push(t);
    }
    const up = last.filter((t) => t.health === 'up').length;
    replace(body,
      h('p', {class: 'summary'}, `${last.length} ${last.length === 1 ? 'target' : 'targets'}, ${up} up`),
      [...pools.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([pool, list]) =>
        h('div', {class: 'store-group', dataset: {pool}},
          h('h2', null, pool, h('span', {class: 'count'}, `${list.filter((t) => t.health === 'up').length}/${list.length} up`)),
          h('table', {class: 'data targets'},
            h('thead', null, h('tr', null, ['Endpoint', 'State', 'Labels', 'Last scrape', 'Scrape duration', 'Error']
              .map((c) => h('th', null, c)))),
            h('tbody', null, [...list].sort((a, b) => (a.scrapeUrl || '').localeCompare(b.scrapeUrl || '')).map(targetRow))))));
  }

  async function load() {
    refresh.disabled = true;
    try {
      const {data, warnings} = await apiGet('api/v1/targets', {state: 'active'});
      last = (data && data.activeTargets) || [];
      replace(warn, warnings.length ? notice('warning', 'Partial answer', warnings.join('\n')) : null);
      render();
    } catch (e) {
      replace(body, notice('error', 'Cannot load the targets', h('pre', {class: 'error-text'}, e.message)));
    } finally {
      refresh.disabled = false;
    }
  }
  onlyUnhealthy.addEventListener('change', render);
  refresh.addEventListener('click', load);
  load();
}
