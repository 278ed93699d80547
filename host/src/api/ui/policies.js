// policies.js: the policies page, from /api/v1/status/policies: the plugin in
// each policy slot with its version, ABI, sha256 digest, limits, failure
// policy and call/failure counts, and the error of the last rejected reload.
// Read-only: changes go through the admin API (PUT /api/v1/policies/<slot>,
// bearer token).

import {ApiError, apiGet} from './api.js';
import {h, notice, replace} from './dom.js';
import {formatTime} from './format.js';

function bytes(n) {
  if (typeof n !== 'number') return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1 && n % 1024 === 0) {
    n /= 1024;
    i += 1;
  }
  return `${n} ${units[i]}`;
}

function statsCell(st) {
  if (!st) return h('td', {class: 'muted'}, '–');
  const errors = Object.entries(st.errors || {});
  const failed = errors.reduce((n, [, c]) => n + c, 0);
  return h('td', {class: 'nowrap stats'},
    `${st.calls} ${st.calls === 1 ? 'call' : 'calls'}`,
    h('div', {class: failed ? 'error-text' : 'muted'},
      failed ? `${failed} failed: ${errors.map(([k, c]) => `${k} ${c}`).join(', ')}` : 'no failures'),
    st.fallbacks ? h('div', {class: 'muted'}, `${st.fallbacks} served by fallback`) : null);
}

function slotRow(sl) {
  const lim = sl.limits || {};
  return h('tr', {class: 'policy-row', dataset: {slot: sl.slot}},
    h('td', {class: 'slot'}, sl.slot),
    h('td', null, sl.kind),
    h('td', {class: 'plugin-name'}, sl.name),
    h('td', {class: 'nowrap'}, sl.version),
    h('td', {class: 'nowrap'}, sl.abi),
    h('td', {class: 'digest', title: sl.sha256}, h('code', null, sl.sha256)),
    h('td', null, sl.source),
    h('td', null, sl.failurePolicy, sl.fallback ? h('div', {class: 'muted'}, `fallback: ${sl.fallback}`) : null),
    statsCell(sl.stats),
    h('td', {class: 'nowrap'}, `timeout ${lim.timeout ?? '–'}`, h('br'), `memory ${bytes(lim.memoryBytes)}`, h('br'),
      `output ${bytes(lim.maxOutputBytes)}`));
}

export function mount(app) {
  const body = h('div', {id: 'policies'});
  const refresh = h('button', {type: 'button', id: 'refresh'}, 'Refresh');
  replace(app, h('section', {class: 'page'},
    h('div', {class: 'page-head'}, h('h1', null, 'Policies'), h('span', {class: 'spacer'}), refresh),
    body));

  async function load() {
    refresh.disabled = true;
    try {
      const {data} = await apiGet('api/v1/status/policies');
      const slots = [...(data.slots || [])].sort((a, b) => a.slot.localeCompare(b.slot));
      replace(body,
        h('dl', {class: 'facts'},
          h('dt', null, 'Generation'), h('dd', {id: 'generation'}, String(data.generation)),
          h('dt', null, 'Loaded'), h('dd', null, data.loadedAt ? `${formatTime(data.loadedAt * 1000)} UTC` : '–'),
          h('dt', null, 'Admin API'), h('dd', null, data.adminApi
            ? 'on: GET/PUT /api/v1/policies with a bearer token'
            : 'off (enable with --policies.admin-token-file)')),
        data.lastError
          ? notice('error', 'Last reload rejected (the previous set stays in force)', h('pre', {class: 'error-text', id: 'last-error'}, data.lastError))
          : notice('info', null, 'No reload errors.'),
        slots.length === 0 ? h('p', {class: 'empty'}, 'No policy slots are configured.')
          : h('table', {class: 'data policies'},
            h('thead', null, h('tr', null, ['Slot', 'Kind', 'Plugin', 'Version', 'ABI', 'SHA-256', 'Source',
              'On failure', 'Calls', 'Limits'].map((c) => h('th', null, c)))),
            h('tbody', null, slots.map(slotRow))));
    } catch (e) {
      const msg = e instanceof ApiError && e.status === 404
        ? 'This process does not expose policy status (/api/v1/status/policies).'
        : e.message;
      replace(body, notice('error', 'Cannot load the policies', h('pre', {class: 'error-text'}, msg)));
    } finally {
      refresh.disabled = false;
    }
  }
  refresh.addEventListener('click', load);
  load();
}
