// The services page: each service's deployments (running against desired),
// rollout state and events; scale, update and force a new deployment.

import {
  ecs, h, clear, badge, bar, shortArn, ago, fmtTime, act, listAll, describeAll,
  drawClusterPicker, param, dialog, field, select, errorBox,
} from './lib.js';

const changed = () => document.dispatchEvent(new Event('berth:changed'));

// Steady: one deployment, all its tasks running, its rollout complete.
function steady(s) {
  const d = s.deployments || [];
  return d.length === 1 && d[0].runningCount === d[0].desiredCount && d[0].rolloutState !== 'IN_PROGRESS' && d[0].rolloutState !== 'FAILED';
}

async function scale(cluster, s) {
  const v = await dialog(`Scale ${s.serviceName}`,
    field('Desired tasks', h('input', { type: 'number', name: 'desired', min: 0, value: String(s.desiredCount), id: 'scale-desired', required: true })),
    'Scale', 'scale-dialog');
  if (!v) return;
  await act(`Scale ${s.serviceName} to ${v.desired}`, async () => {
    await ecs('UpdateService', { cluster, service: s.serviceName, desiredCount: Number(v.desired) });
    changed();
  });
}

async function update(cluster, s) {
  const family = shortArn(s.taskDefinition).split(':')[0];
  const revisions = await listAll('ListTaskDefinitions', { familyPrefix: family, status: 'ACTIVE', sort: 'DESC' }, 'taskDefinitionArns').catch(() => []);
  const options = revisions.map((a) => [shortArn(a), shortArn(a)]);
  const v = await dialog(`Update ${s.serviceName}`, [
    field('Task definition', select('taskDefinition', options.length ? options : [shortArn(s.taskDefinition)], shortArn(s.taskDefinition))),
    field('Desired tasks', h('input', { type: 'number', name: 'desired', min: 0, value: String(s.desiredCount) })),
    h('label', { class: 'check' }, h('span', {}, h('input', { type: 'checkbox', name: 'force' }), ' Force a new deployment')),
  ], 'Update', 'update-dialog');
  if (!v) return;
  await act(`Update ${s.serviceName}`, async () => {
    await ecs('UpdateService', {
      cluster,
      service: s.serviceName,
      taskDefinition: v.taskDefinition,
      desiredCount: Number(v.desired),
      forceNewDeployment: v.force === 'on',
    });
    changed();
  });
}

async function force(cluster, s) {
  const v = await dialog(`Force a new deployment of ${s.serviceName}?`,
    h('p', { class: 'muted' }, 'Every task is replaced by a fresh one of the same definition, within the deployment\'s bounds.'),
    'Deploy', 'force-dialog');
  if (!v) return;
  await act(`New deployment of ${s.serviceName}`, async () => {
    await ecs('UpdateService', { cluster, service: s.serviceName, forceNewDeployment: true });
    changed();
  });
}

function deployments(s) {
  return h('table', { class: 'deployments' },
    h('thead', {}, h('tr', {}, ['Deployment', 'Definition', 'Progress', 'Pending', 'Failed', 'Rollout', 'Updated'].map((t) => h('th', {}, t)))),
    h('tbody', {}, (s.deployments || []).map((d) => h('tr', {
      dataset: { deployment: d.id, deploymentStatus: d.status, running: d.runningCount, desired: d.desiredCount, rollout: d.rolloutState || '' },
    },
    h('td', {}, badge(d.status), h('div', { class: 'small muted mono' }, (d.id || '').slice(0, 16))),
    h('td', { class: 'small' }, shortArn(d.taskDefinition)),
    h('td', {}, bar(d.runningCount, d.desiredCount, `${d.runningCount} / ${d.desiredCount} running`, d.runningCount >= d.desiredCount ? 'ok' : '')),
    h('td', {}, d.pendingCount),
    h('td', {}, d.failedTasks || 0),
    h('td', {}, d.rolloutState ? badge(d.rolloutState) : '—', d.rolloutStateReason ? h('div', { class: 'small muted' }, d.rolloutStateReason) : null),
    h('td', { class: 'small muted' }, ago(d.updatedAt || d.createdAt))))));
}

function card(cluster, s) {
  const isSteady = steady(s);
  return h('section', { class: 'card', dataset: { service: s.serviceName, steady: String(isSteady) } },
    h('div', { class: 'pagehead' },
      h('h2', {}, s.serviceName),
      badge(s.status),
      isSteady ? badge('steady', 'ok') : badge('deploying', 'warn'),
      h('span', { class: 'small muted' }, `${s.schedulingStrategy || 'REPLICA'} · ${shortArn(s.taskDefinition)}`),
      h('span', { class: 'spacer' }),
      h('div', { class: 'actions' },
        h('button', { class: 'ghost', dataset: { action: 'scale' }, onclick: () => scale(cluster, s), disabled: s.schedulingStrategy === 'DAEMON' || s.status !== 'ACTIVE' }, 'Scale'),
        h('button', { class: 'ghost', dataset: { action: 'update' }, onclick: () => update(cluster, s), disabled: s.status !== 'ACTIVE' }, 'Update'),
        h('button', { class: 'ghost', dataset: { action: 'force' }, onclick: () => force(cluster, s), disabled: s.status !== 'ACTIVE' }, 'Force new deployment'),
        h('a', { class: 'button ghost', href: `/ui/tasks?cluster=${encodeURIComponent(cluster)}&service=${encodeURIComponent(s.serviceName)}` }, 'Tasks'))),
    h('div', { class: 'stats' },
      h('div', { class: 'stat' }, h('b', { dataset: { count: 'desired' } }, s.desiredCount), h('span', {}, 'desired')),
      h('div', { class: 'stat' }, h('b', { dataset: { count: 'running' } }, s.runningCount), h('span', {}, 'running')),
      h('div', { class: 'stat' }, h('b', { dataset: { count: 'pending' } }, s.pendingCount), h('span', {}, 'pending'))),
    h('h3', {}, 'Deployments'),
    h('div', { class: 'scroll' }, deployments(s)),
    h('h3', {}, 'Events'),
    h('ul', { class: 'events' }, (s.events || []).slice(0, 20).map((e) => h('li', {}, h('time', { title: fmtTime(e.createdAt) }, ago(e.createdAt)), e.message))));
}

export function services(root) {
  let cluster = param('cluster', 'default');
  const picker = h('span');
  const body = h('div', { id: 'services' });
  clear(root,
    h('div', { class: 'pagehead' }, h('h1', {}, 'Services'), h('span', { class: 'spacer' }), picker),
    body);
  return async () => {
    cluster = await drawClusterPicker(picker, cluster, (c) => { cluster = c; });
    let list;
    try {
      const arns = await listAll('ListServices', { cluster }, 'serviceArns');
      list = await describeAll('DescribeServices', 'services', 'services', arns, 10, { cluster });
    } catch (e) {
      clear(body, errorBox(e));
      return;
    }
    list.sort((a, b) => a.serviceName.localeCompare(b.serviceName));
    clear(body, list.length ? list.map((s) => card(cluster, s)) : h('div', { class: 'card empty' }, `No services in ${cluster}. Create one with aws ecs create-service or berth services create.`));
  };
}
