// rules.js: the alerts and rules pages, from /api/v1/rules (rule groups of every Prometheus and ruler behind the
// querier, deduplicated by replica labels). `alerts` lists alerting rules with their active alerts, firing
// first; `rules` lists every group with each rule's health, last evaluation and error.

import {apiGet} from './api.js';
import {h, notice, replace} from './dom.js';
import {formatAgo, formatDuration, formatSeries, parseTime} from './format.js';

const RANK = {firing: 2, pending: 1, inactive: 0};

function labelList(labels) {
  return Object.keys(labels || {}).sort().map(
    (k) => h('span', {class: 'label'}, formatSeries({[k]: labels[k]}).slice(1, -1)));
}

function ago(ts) {
  const t = parseTime(ts || '');
  return t === null || (ts || '').startsWith('0001-') ? 'never' : formatAgo(t);
}

function alertRule(r) {
  const active = [...(r.alerts || [])].sort((a, b) => (RANK[b.state] || 0) - (RANK[a.state] || 0));
  return h('details', {class: `alert-rule ${r.state}`, dataset: {name: r.name, state: r.state}, open: r.state !== 'inactive'},
    h('summary', null, h('span', {class: `badge ${r.state === 'inactive' ? 'up' : 'down'}`}, r.state.toUpperCase()),
      ' ', h('strong', null, r.name), h('span', {class: 'count'}, `${active.length} active`)),
    h('pre', {class: 'rule-expr'}, r.query),
    h('div', {class: 'label-set'}, labelList(r.labels)),
    active.length === 0 ? null : h('table', {class: 'data alerts'},
      h('thead', null, h('tr', null, ['Labels', 'State', 'Active since', 'Value'].map((c) => h('th', null, c)))),
      h('tbody', null, active.map((a) => h('tr', {class: 'alert-row', dataset: {state: a.state}},
        h('td', {class: 'label-sets'}, h('div', {class: 'label-set'}, labelList(a.labels))),
        h('td', null, a.state),
        h('td', {class: 'nowrap', title: a.activeAt || ''}, ago(a.activeAt)),
        h('td', {class: 'num'}, a.value || ''))))));
}

function ruleRow(r) {
  return h('tr', {class: 'rule-row', dataset: {name: r.name, type: r.type}},
    h('td', null, r.type === 'alerting' ? `alert: ${r.name}` : `record: ${r.name}`,
      h('pre', {class: 'rule-expr'}, r.query), h('div', {class: 'label-set'}, labelList(r.labels))),
    h('td', null, h('span', {class: `badge ${r.health === 'ok' ? 'up' : 'down'}`}, (r.health || 'unknown').toUpperCase())),
    h('td', {class: 'nowrap', title: r.lastEvaluation || ''}, ago(r.lastEvaluation)),
    h('td', {class: 'num'}, typeof r.evaluationTime === 'number' ? `${(r.evaluationTime * 1000).toFixed(2)} ms` : '–'),
    h('td', {class: 'last-error'}, r.lastError ? h('span', {class: 'error-text'}, r.lastError) : h('span', {class: 'muted'}, '–')));
}

function page(app, title, renderGroups) {
  const body = h('div', {id: title.toLowerCase()});
  const warn = h('div');
  const refresh = h('button', {type: 'button', id: 'refresh'}, 'Refresh');
  replace(app, h('section', {class: 'page'},
    h('div', {class: 'page-head'}, h('h1', null, title), h('span', {class: 'spacer'}), refresh), warn, body));
  async function load() {
    refresh.disabled = true;
    try {
      const {data, warnings} = await apiGet('api/v1/rules', title === 'Alerts' ? {type: 'alert'} : {});
      replace(warn, warnings.length ? notice('warning', 'Partial answer', warnings.join('\n')) : null);
      const groups = (data && data.groups) || [];
      replace(body, groups.length === 0
        ? notice('info', 'No rules', 'No endpoint of this querier serves the Rules API with rules loaded.')
        : renderGroups(groups));
    } catch (e) {
      replace(body, notice('error', `Cannot load the ${title.toLowerCase()}`, h('pre', {class: 'error-text'}, e.message)));
    } finally {
      refresh.disabled = false;
    }
  }
  refresh.addEventListener('click', load);
  load();
}

export function mountAlerts(app) {
  page(app, 'Alerts', (groups) => {
    const rules = groups.flatMap((g) => (g.rules || []).filter((r) => r.type === 'alerting'));
    const count = (s) => rules.filter((r) => r.state === s).length;
    return [
      h('p', {class: 'summary'}, `${count('firing')} firing, ${count('pending')} pending, ${count('inactive')} inactive`),
      groups.map((g) => h('div', {class: 'rule-group', dataset: {group: g.name}},
        h('h2', null, g.name, h('span', {class: 'count muted'}, g.file)),
        (g.rules || []).filter((r) => r.type === 'alerting')
          .sort((a, b) => (RANK[b.state] || 0) - (RANK[a.state] || 0)).map(alertRule))),
    ];
  });
}

export function mountRules(app) {
  page(app, 'Rules', (groups) => groups.map((g) => h('div', {class: 'store-group rule-group', dataset: {group: g.name}},
    h('h2', null, g.name, h('span', {class: 'count muted'},
      `${g.file} · every ${formatDuration((g.interval || 0) * 1000)} · evaluated ${ago(g.lastEvaluation)}`)),
    h('table', {class: 'data rules'},
      h('thead', null, h('tr', null, ['Rule', 'State', 'Last evaluation', 'Evaluation time', 'Error'].map((c) => h('th', null, c)))),
      h('tbody', null, (g.rules || []).map(ruleRow))))));
}
