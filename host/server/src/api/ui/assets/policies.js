// The policies page: installed policies, where each is active, decisions,
// failures by kind and latency; install (a .wasm file), activate,
// deactivate, and going back to a scope's previous policy in one click.

import {
  berth, h, clear, badge, bar, ago, fmtTime, act, clusterNames, listAll, shortArn,
  dialog, field, select, errorBox, toast,
} from './lib.js';

const changed = () => document.dispatchEvent(new Event('berth:changed'));

function base64(bytes) {
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

async function install(input) {
  const file = input.files && input.files[0];
  if (!file) {
    toast('Choose a .wasm component first', 'bad');
    return;
  }
  const wasm = base64(new Uint8Array(await file.arrayBuffer()));
  await act(`Install ${file.name}`, async () => {
    const r = await berth('InstallPolicy', { wasm });
    input.value = '';
    changed();
    return r;
  });
}

// "cluster/NAME" or "service/CLUSTER/NAME" into the request's fields.
function scopeFields(scope) {
  const [kind, a, b] = scope.split('/');
  return kind === 'service' ? { cluster: a, service: b } : { cluster: a };
}

async function activate(p) {
  const clusters = await clusterNames();
  const services = {};
  for (const c of clusters) {
    services[c] = (await listAll('ListServices', { cluster: c }, 'serviceArns').catch(() => [])).map(shortArn);
  }
  const serviceOptions = [['', 'The whole cluster'], ...clusters.flatMap((c) => services[c].map((s) => [`${c}/${s}`, `${c} / ${s}`]))];
  const v = await dialog(`Activate ${p.name}@${p.version}`, [
    field('Cluster', select('cluster', clusters, clusters.includes('default') ? 'default' : clusters[0], { id: 'activate-cluster' })),
    field('Only for the service', select('service', serviceOptions, '', { id: 'activate-service' })),
    field('When a decision fails', select('fallback', [['native', 'place with the native strategies'], ['pending', 'leave the tasks PENDING']], 'native', { id: 'activate-fallback' })),
  ], 'Activate', 'activate-dialog');
  if (!v) return;
  const body = { policy: p.sha256, fallback: v.fallback, cluster: v.cluster };
  if (v.service) {
    const [c, s] = v.service.split('/');
    body.cluster = c;
    body.service = s;
  }
  await act(`Activate ${p.name}`, async () => {
    await berth('ActivatePolicy', body);
    changed();
  });
}

function latency(l) {
  const max = Math.max(l.max, 1);
  const row = (label, v) => [h('span', { class: 'muted' }, label), bar(v, max, '', 'plain'), h('span', { class: 'mono' }, `${v.toFixed(0)} µs`)];
  return h('div', { class: 'latency', title: 'decision latency percentiles' },
    row('p50', l.p50), row('p90', l.p90), row('p99', l.p99), row('max', l.max));
}

function failures(stats) {
  const kinds = Object.entries(stats.failures || {});
  const total = kinds.reduce((n, [, v]) => n + v, 0);
  return h('div', { class: 'chips', dataset: { failures: String(total) } },
    kinds.length ? kinds.map(([k, v]) => h('span', { class: `badge ${v ? 'bad' : ''}` }, `${k}: ${v}`)) : h('span', { class: 'muted small' }, 'none'));
}

function card(p, previous) {
  const s = p.stats;
  return h('section', { class: 'card', dataset: { policy: p.name, sha256: p.sha256 } },
    h('div', { class: 'pagehead' },
      h('h2', {}, `${p.name}@${p.version}`),
      p.activeIn.length ? badge('active', 'ok') : badge('installed'),
      h('span', { class: 'small muted mono', title: p.sha256 }, p.sha256.slice(0, 12)),
      h('span', { class: 'small muted' }, `${(p.size / 1024).toFixed(0)} KiB · ${p.world}`),
      h('span', { class: 'spacer' }),
      h('div', { class: 'actions' },
        h('button', { class: 'ghost', dataset: { action: 'activate' }, onclick: () => activate(p) }, 'Activate…'),
        h('button', {
          class: 'ghost',
          dataset: { action: 'reset' },
          onclick: () => act(`Reset ${p.name}'s counters`, async () => { await berth('ResetPolicyStats', { policy: p.sha256 }); changed(); }),
        }, 'Reset counters'),
        h('button', {
          class: 'danger',
          disabled: p.activeIn.length > 0,
          title: p.activeIn.length ? 'deactivate it everywhere first' : '',
          onclick: () => act(`Delete ${p.name}`, async () => { await berth('DeletePolicy', { policy: p.sha256 }); changed(); }),
        }, 'Delete'))),
    h('div', { class: 'stats' },
      h('div', { class: 'stat' }, h('b', { dataset: { decisions: String(s.decisions) } }, s.decisions), h('span', {}, 'decisions')),
      h('div', { class: 'stat' }, h('b', {}, s.instancesCreated), h('span', {}, 'instances created')),
      h('div', { class: 'stat' }, h('b', {}, s.logsDropped), h('span', {}, 'log lines dropped'))),
    h('div', { class: 'split' },
      h('div', {},
        h('h3', {}, 'Active in'),
        p.activations.length
          ? h('table', {}, h('tbody', {}, p.activations.map((a) => h('tr', { dataset: { scope: a.scope } },
            h('td', { class: 'mono' }, a.scope),
            h('td', { class: 'small muted' }, `fallback: ${a.fallback}`),
            h('td', {}, h('div', { class: 'actions' },
              h('button', {
                class: 'ghost',
                dataset: { action: 'deactivate' },
                onclick: () => act(`Deactivate in ${a.scope}`, async () => { await berth('DeactivatePolicy', scopeFields(a.scope)); changed(); }),
              }, 'Deactivate'),
              previous[a.scope] ? h('button', {
                class: 'ghost',
                dataset: { action: 'rollback' },
                onclick: () => rollBack(a.scope),
              }, `Back to ${previous[a.scope]}`) : null))))))
          : h('p', { class: 'muted small' }, 'Not active anywhere.'),
        h('h3', {}, 'Failures by kind'),
        failures(s)),
      h('div', {}, h('h3', {}, 'Latency'), latency(s.latencyMicros))),
    p.recentFailures.length ? [
      h('h3', {}, 'Recent failures'),
      h('ul', { class: 'events' }, p.recentFailures.map((f) => h('li', {},
        h('time', { title: fmtTime(f.at) }, ago(f.at)), badge(f.kind, 'bad'), ' ', f.message)))] : null);
}

function rollBack(scope) {
  return act(`Roll back ${scope}`, async () => {
    await berth('RollBackPolicy', scopeFields(scope));
    changed();
  });
}

// What a history entry reads as.
function label(e) {
  return e.policy ? (e.label || e.policy.slice(0, 12)) : 'native strategies';
}

function bindings(histories) {
  const rows = histories.filter((hi) => hi.entries.length >= 2).map((hi) => {
    const now = hi.entries[hi.entries.length - 1];
    const before = hi.entries[hi.entries.length - 2];
    return h('tr', { dataset: { history: hi.scope } },
      h('td', { class: 'mono' }, hi.scope),
      h('td', {}, label(now), now.at ? h('div', { class: 'small muted' }, ago(now.at)) : null),
      h('td', {}, label(before)),
      h('td', {}, h('button', { class: 'ghost', dataset: { action: 'rollback' }, onclick: () => rollBack(hi.scope) }, `Back to ${label(before)}`)));
  });
  if (!rows.length) return null;
  return h('section', { class: 'card scroll', id: 'bindings' },
    h('h2', {}, 'Bindings'),
    h('table', {},
      h('thead', {}, h('tr', {}, ['Scope', 'Now', 'Before', ''].map((t) => h('th', {}, t)))),
      h('tbody', {}, rows)));
}

export function policies(root) {
  const file = h('input', { type: 'file', accept: '.wasm,application/wasm', id: 'policy-file' });
  const body = h('div', { id: 'policies' });
  clear(root,
    h('div', { class: 'pagehead' },
      h('h1', {}, 'Policies'),
      h('span', { class: 'spacer' }),
      h('div', { class: 'card head' }, h('span', { class: 'small muted' }, 'Install a component'), file,
        h('button', { id: 'install', onclick: () => install(file) }, 'Install'))),
    body);
  return async () => {
    let list;
    let histories = [];
    try {
      list = (await berth('ListPolicies', {})).policies;
      histories = (await berth('ListPolicyHistory', {})).histories;
    } catch (e) {
      clear(body, errorBox(e));
      return;
    }
    const previous = {};
    for (const hi of histories) {
      if (hi.entries.length >= 2) previous[hi.scope] = label(hi.entries[hi.entries.length - 2]);
    }
    clear(body,
      bindings(histories),
      list.length ? list.map((p) => card(p, previous)) : h('div', { class: 'card empty' }, 'No policies installed. Build one with the SDK (sdk/README.md) and install its .wasm here.'));
  };
}
