// What every page shares: calls to /ui/api, DOM building, formatting,
// dialogs and notices.

export const session = { csrf: null, key: null };

export class CallError extends Error {
  constructor(code, message, status) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

function toLogin() {
  location.assign('/ui/login');
}

// The signed-in session (its CSRF token); to the sign-in page without one.
export async function loadSession() {
  const r = await fetch('/ui/api/session', { credentials: 'same-origin' });
  if (r.status === 401) {
    toLogin();
    throw new CallError('UnauthorizedException', 'signed out', 401);
  }
  const s = await r.json();
  session.csrf = s.csrfToken;
  session.key = s.accessKeyId;
  return s;
}

// One API operation through the console: `prefix` is ecs or berth.
export async function call(prefix, op, body = {}) {
  const r = await fetch(`/ui/api/${prefix}/${op}`, {
    method: 'POST',
    credentials: 'same-origin',
    headers: { 'content-type': 'application/json', 'x-berth-csrf': session.csrf },
    body: JSON.stringify(body),
  });
  if (r.status === 401) {
    toLogin();
    throw new CallError('UnauthorizedException', 'signed out', 401);
  }
  const text = await r.text();
  let j = {};
  try {
    j = text ? JSON.parse(text) : {};
  } catch {
    j = { message: text };
  }
  if (!r.ok) throw new CallError(j.__type || String(r.status), j.message || text, r.status);
  return j;
}
export const ecs = (op, body) => call('ecs', op, body);
export const berth = (op, body) => call('berth', op, body);

// Every item of a paged List call.
export async function listAll(op, body, field) {
  const out = [];
  let nextToken;
  do {
    const r = await ecs(op, { ...body, ...(nextToken ? { nextToken } : {}) });
    out.push(...(r[field] || []));
    nextToken = r.nextToken;
  } while (nextToken);
  return out;
}

// A Describe call over `arns` in batches of `size`.
export async function describeAll(op, field, key, arns, size, extra = {}) {
  const out = [];
  for (let i = 0; i < arns.length; i += size) {
    const r = await ecs(op, { ...extra, [key]: arns.slice(i, i + size) });
    out.push(...(r[field] || []));
  }
  return out;
}

export async function clusterNames() {
  const arns = await listAll('ListClusters', {}, 'clusterArns');
  return arns.map(shortArn).sort();
}

export async function instancesOf(cluster) {
  const arns = await listAll('ListContainerInstances', { cluster }, 'containerInstanceArns');
  return describeAll('DescribeContainerInstances', 'containerInstances', 'containerInstances', arns, 100, { cluster });
}

// h('div', {class: 'x', onclick: f, dataset: {k: v}}, child, ...)
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'value') el.value = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export function shortArn(arn) {
  if (!arn) return '';
  const parts = String(arn).split('/');
  return parts[parts.length - 1];
}

export function fmtTime(epoch) {
  if (!epoch) return '';
  const d = new Date(epoch * 1000);
  return d.toLocaleString();
}

export function ago(epoch) {
  if (!epoch) return '';
  const s = Math.max(0, Date.now() / 1000 - epoch);
  if (s < 60) return `${Math.floor(s)}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}

const STATUS_KIND = {
  ACTIVE: 'ok', RUNNING: 'ok', COMPLETED: 'ok', PRIMARY: 'info', CONNECTED: 'ok',
  PENDING: 'warn', PROVISIONING: 'warn', ACTIVATING: 'warn', IN_PROGRESS: 'warn', DRAINING: 'warn',
  DEPROVISIONING: 'warn', STOPPING: 'warn', DEACTIVATING: 'warn',
  STOPPED: '', INACTIVE: '', FAILED: 'bad', DISCONNECTED: 'bad',
};

export function badge(text, kind) {
  const k = kind === undefined ? STATUS_KIND[text] || '' : kind;
  return h('span', { class: `badge ${k}`.trim() }, text);
}

// A bar of `used` out of `total`, labelled.
export function bar(used, total, label, kind) {
  const pct = total > 0 ? Math.min(100, (100 * used) / total) : 0;
  const cls = kind || (pct >= 95 ? 'full' : pct >= 75 ? 'high' : '');
  const fill = h('i');
  fill.style.width = `${pct.toFixed(1)}%`;
  return h('div', { class: `bar ${cls}`.trim(), title: label }, fill, h('span', {}, label));
}

export function resource(list, name) {
  const r = (list || []).find((x) => x.name === name);
  return r ? r.integerValue || 0 : 0;
}

export function attribute(inst, name) {
  const a = (inst.attributes || []).find((x) => x.name === name);
  return a ? a.value : undefined;
}

export function toast(message, kind = '') {
  const t = h('div', { class: `toast ${kind}`.trim(), role: 'status' }, message);
  document.getElementById('toasts').append(t);
  setTimeout(() => t.remove(), kind === 'bad' ? 9000 : 4500);
}

// Runs `f` (an action), telling how it went; rethrows nothing.
export async function act(what, f) {
  try {
    const r = await f();
    toast(`${what}: done`, 'ok');
    return r;
  } catch (e) {
    toast(`${what}: ${e.code ? e.code + ': ' : ''}${e.message}`, 'bad');
    return undefined;
  }
}

// A dialog with `fields` (nodes with name attributes); resolves to the
// form's values, or null when cancelled.
export function dialog(title, fields, submitLabel = 'Apply', id = undefined) {
  return new Promise((resolve) => {
    const form = h('form', { method: 'dialog' },
      h('h2', {}, title),
      fields,
      h('div', { class: 'actions' },
        h('button', { type: 'button', class: 'ghost', value: 'cancel', onclick: () => { d.close(); } }, 'Cancel'),
        h('button', { type: 'submit', value: 'ok', id: id ? `${id}-ok` : undefined }, submitLabel)));
    const d = h('dialog', { id }, form);
    let values = null;
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      values = Object.fromEntries(new FormData(form).entries());
      d.close();
    });
    d.addEventListener('close', () => {
      d.remove();
      resolve(values);
    });
    document.body.append(d);
    d.showModal();
  });
}

export function field(label, input) {
  return h('label', {}, label, input);
}

export function select(name, options, value, attrs = {}) {
  return h('select', { name, ...attrs },
    options.map((o) => {
      const [v, text] = Array.isArray(o) ? o : [o, o];
      return h('option', { value: v, selected: v === value }, text);
    }));
}

// The cluster chooser pages share; remembers the choice in the URL.
export function clusterPicker(names, current, onchange) {
  const s = select('cluster', names, current, { id: 'cluster' });
  s.addEventListener('change', () => onchange(s.value));
  return h('label', { class: 'picker' }, 'Cluster ', s);
}

// Draws the cluster chooser into `el` (a choice is kept in the URL, then
// `onchange(cluster)` and a redraw); the cluster to show: `current` while
// it exists, else the first.
export async function drawClusterPicker(el, current, onchange) {
  const names = await clusterNames();
  const cluster = names.includes(current) || !names.length ? current : names[0];
  clear(el, clusterPicker(names, cluster, (c) => {
    setParams({ cluster: c });
    onchange(c);
    document.dispatchEvent(new Event('berth:changed'));
  }));
  return cluster;
}

export function param(name, fallback = '') {
  return new URLSearchParams(location.search).get(name) || fallback;
}

export function setParams(values) {
  const p = new URLSearchParams(location.search);
  for (const [k, v] of Object.entries(values)) {
    if (v) p.set(k, v); else p.delete(k);
  }
  const q = p.toString();
  history.replaceState(null, '', q ? `${location.pathname}?${q}` : location.pathname);
}

export function errorBox(e) {
  return h('div', { class: 'error-box' }, `${e.code ? e.code + ': ' : ''}${e.message}`);
}
