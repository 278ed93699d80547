// app.js: entry point of every page. The server names the page in
// <body data-page>; this marks it in the navigation and mounts its module.

import {mount as graph} from './graph.js';
import {mount as policies} from './policies.js';
import {mountAlerts as alerts, mountRules as rules} from './rules.js';
import {mount as stores} from './stores.js';
import {mount as targets} from './targets.js';
import {notice, replace} from './dom.js';

const PAGES = {graph, stores, targets, alerts, rules, policies};

const page = document.body.dataset.page;
for (const a of document.querySelectorAll('nav [data-nav]')) {
  if (a.dataset.nav === page) a.setAttribute('aria-current', 'page');
}
const app = document.getElementById('app');
try {
  (PAGES[page] || graph)(app);
} catch (e) {
  replace(app, notice('error', 'The page failed to start', String(e && e.stack ? e.stack : e)));
  throw e;
}
