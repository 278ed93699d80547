// dom.js: building DOM nodes. Text always goes in as text nodes, never as HTML,
// so labels and error messages from the server cannot inject markup.

const SVG_NS = 'http://www.w3.org/2000/svg';

function fill(el, attrs, children, isSvg) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') {
      el.addEventListener(k.slice(2), v);
    } else if (k === 'class') {
      el.setAttribute('class', v);
    } else if (k === 'dataset') {
      Object.assign(el.dataset, v);
    } else if (!isSvg && k in el && typeof v !== 'string') {
      el[k] = v; // properties such as checked, value, disabled
    } else {
      el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** An HTML element: h('a', {href: 'x', class: 'y'}, 'text', child, [more]). */
export function h(tag, attrs, ...children) {
  return fill(document.createElement(tag), attrs, children, false);
}

/** An SVG element, as h. */
export function s(tag, attrs, ...children) {
  return fill(document.createElementNS(SVG_NS, tag), attrs, children, true);
}

/** Replaces the children of el. */
export function replace(el, ...children) {
  el.replaceChildren();
  return fill(el, null, children, false);
}

/** A notice box: kind is 'error', 'warning' or 'info'. */
export function notice(kind, title, ...body) {
  return h('div', {class: `notice ${kind}`, role: kind === 'error' ? 'alert' : 'status'},
    title ? h('strong', null, title) : null, ...body);
}
