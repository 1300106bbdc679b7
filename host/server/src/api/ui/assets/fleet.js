// The clusters and instances pages.

import {
  ecs, h, clear, badge, bar, resource, attribute, shortArn, ago, act,
  instancesOf, listAll, describeAll, drawClusterPicker, param, errorBox,
} from './lib.js';

const changed = () => document.dispatchEvent(new Event('berth:changed'));

function stat(value, label, id) {
  return h('div', { class: 'stat', dataset: id ? { stat: id } : undefined }, h('b', {}, value), h('span', {}, label));
}

export function clusters(root) {
  const body = h('div', { class: 'cards', id: 'clusters' });
  clear(root,
    h('div', { class: 'pagehead' }, h('h1', {}, 'Clusters'), h('span', { class: 'spacer' })),
    body);
  return async () => {
    const arns = await listAll('ListClusters', {}, 'clusterArns');
    const list = await describeAll('DescribeClusters', 'clusters', 'clusters', arns, 100);
    const cards = [];
    for (const c of list.sort((a, b) => a.clusterName.localeCompare(b.clusterName))) {
      let instances = [];
      try {
        instances = await instancesOf(c.clusterName);
      } catch {
        /* the counts below still show */
      }
      const connected = instances.filter((i) => i.agentConnected).length;
      const cpu = instances.reduce((n, i) => n + resource(i.registeredResources, 'CPU'), 0);
      const cpuFree = instances.reduce((n, i) => n + resource(i.remainingResources, 'CPU'), 0);
      const mem = instances.reduce((n, i) => n + resource(i.registeredResources, 'MEMORY'), 0);
      const memFree = instances.reduce((n, i) => n + resource(i.remainingResources, 'MEMORY'), 0);
      cards.push(h('section', { class: 'card', dataset: { cluster: c.clusterName } },
        h('div', { class: 'pagehead' },
          h('h2', {}, h('a', { href: `/ui/instances?cluster=${encodeURIComponent(c.clusterName)}` }, c.clusterName)),
          badge(c.status)),
        h('div', { class: 'stats' },
          stat(`${connected}/${c.registeredContainerInstancesCount}`, 'instances connected', 'connected'),
          stat(c.runningTasksCount, 'running tasks', 'running'),
          stat(c.pendingTasksCount, 'pending tasks', 'pending'),
          stat(c.activeServicesCount, 'services', 'services')),
        h('h3', {}, 'Capacity in use'),
        bar(cpu - cpuFree, cpu, `CPU ${cpu - cpuFree} / ${cpu}`),
        h('div', { style: 'height:6px' }),
        bar(mem - memFree, mem, `Memory ${mem - memFree} / ${mem} MiB`),
        h('p', { class: 'small' },
          h('a', { href: `/ui/tasks?cluster=${encodeURIComponent(c.clusterName)}` }, 'Tasks'), ' · ',
          h('a', { href: `/ui/services?cluster=${encodeURIComponent(c.clusterName)}` }, 'Services'), ' · ',
          h('a', { href: `/ui/instances?cluster=${encodeURIComponent(c.clusterName)}` }, 'Instances'))));
    }
    clear(body, cards.length ? cards : h('div', { class: 'empty' }, 'No clusters.'));
  };
}

function setState(cluster, inst, status) {
  const what = status === 'DRAINING' ? 'Drain' : 'Activate';
  return act(`${what} ${inst.ec2InstanceId || shortArn(inst.containerInstanceArn)}`, async () => {
    const r = await ecs('UpdateContainerInstancesState', {
      cluster, containerInstances: [inst.containerInstanceArn], status,
    });
    if (r.failures && r.failures.length) throw new Error(r.failures.map((f) => f.reason).join('; '));
    changed();
  });
}

function attributes(inst) {
  const attrs = (inst.attributes || []).filter((a) => !a.name.startsWith('ecs.capability') && !a.name.startsWith('com.amazonaws'));
  return h('details', {},
    h('summary', { class: 'small muted' }, `${attrs.length} attributes`),
    h('div', { class: 'chips' }, attrs.map((a) => h('span', { class: 'chip' }, a.value !== undefined ? `${a.name}=${a.value}` : a.name))));
}

export function instances(root) {
  let cluster = param('cluster', 'default');
  const picker = h('span');
  const body = h('div', { class: 'card scroll', id: 'instances' });
  clear(root,
    h('div', { class: 'pagehead' }, h('h1', {}, 'Instances'), h('span', { class: 'spacer' }), picker),
    body);
  return async () => {
    cluster = await drawClusterPicker(picker, cluster, (c) => { cluster = c; });
    let list;
    try {
      list = await instancesOf(cluster);
    } catch (e) {
      clear(body, errorBox(e));
      return;
    }
    if (!list.length) {
      clear(body, h('div', { class: 'empty' }, `No container instances in ${cluster}.`));
      return;
    }
    list.sort((a, b) => (a.ec2InstanceId || '').localeCompare(b.ec2InstanceId || ''));
    const rows = list.map((i) => {
      const cpu = resource(i.registeredResources, 'CPU');
      const cpuLeft = resource(i.remainingResources, 'CPU');
      const mem = resource(i.registeredResources, 'MEMORY');
      const memLeft = resource(i.remainingResources, 'MEMORY');
      const id = i.ec2InstanceId || shortArn(i.containerInstanceArn);
      return h('tr', { dataset: { instance: id, status: i.status } },
        h('td', {}, h('div', { class: 'mono' }, id),
          id !== shortArn(i.containerInstanceArn) ? h('div', { class: 'small muted mono' }, shortArn(i.containerInstanceArn)) : null,
          i.registeredAt ? h('div', { class: 'small muted' }, `registered ${ago(i.registeredAt)}`) : null),
        h('td', {}, attribute(i, 'ecs.availability-zone') || h('span', { class: 'muted' }, '—')),
        h('td', {}, badge(i.status)),
        h('td', {}, i.agentConnected ? badge('connected', 'ok') : badge('disconnected', 'bad')),
        h('td', {}, bar(cpu - cpuLeft, cpu, `${cpu - cpuLeft} / ${cpu} CPU units`)),
        h('td', {}, bar(mem - memLeft, mem, `${mem - memLeft} / ${mem} MiB`)),
        h('td', {}, `${i.runningTasksCount} running`, h('br'), h('span', { class: 'muted small' }, `${i.pendingTasksCount} pending`)),
        h('td', {}, attributes(i)),
        h('td', {}, h('div', { class: 'actions' },
          h('button', { class: 'ghost', disabled: i.status === 'DRAINING', onclick: () => setState(cluster, i, 'DRAINING'), dataset: { action: 'drain' } }, 'Drain'),
          h('button', { class: 'ghost', disabled: i.status === 'ACTIVE', onclick: () => setState(cluster, i, 'ACTIVE'), dataset: { action: 'activate' } }, 'Activate'))));
    });
    clear(body, h('table', {},
      h('thead', {}, h('tr', {}, ['Instance', 'Zone', 'Status', 'Agent', 'CPU in use', 'Memory in use', 'Tasks', 'Attributes', ''].map((t) => h('th', {}, t)))),
      h('tbody', {}, rows)));
  };
}
