// The tasks page: filters by status, family, service and instance; a
// task's containers with exit codes and reasons; a live tail of its logs.

import {
  ecs, berth, h, clear, badge, shortArn, ago, fmtTime, act, clusterNames, listAll,
  describeAll, instancesOf, select, param, setParams, errorBox,
} from './lib.js';

const changed = () => document.dispatchEvent(new Event('berth:changed'));

// Follows one task's logs: GetTaskLogs by nextStartTime, every 1.5 s.
class Tail {
  constructor(el) {
    this.el = el;
    this.timer = null;
    this.key = null;
  }

  follow(cluster, task) {
    const key = `${cluster}/${task}`;
    if (key === this.key) return;
    this.stop();
    this.key = key;
    this.next = undefined;
    this.lines = 0;
    clear(this.el, h('span', { class: 't' }, 'waiting for output…\n'));
    const tick = async () => {
      if (this.key !== key) return;
      try {
        const r = await berth('GetTaskLogs', { cluster, task, ...(this.next !== undefined ? { startTime: this.next } : {}), limit: 500 });
        if (this.key !== key) return;
        if (this.lines === 0 && r.events.length) this.el.replaceChildren();
        const atEnd = this.el.scrollTop + this.el.clientHeight >= this.el.scrollHeight - 8;
        for (const e of r.events) {
          const t = new Date(e.timestamp * 1000).toISOString().slice(11, 23);
          this.el.append(h('span', { class: 't' }, `${t} `), h('span', { class: 'c' }, `${e.container} `), `${e.message.replace(/\n$/, '')}\n`);
          this.lines += 1;
        }
        while (this.el.childNodes.length > 6000) this.el.firstChild.remove();
        if (atEnd) this.el.scrollTop = this.el.scrollHeight;
        this.next = r.nextStartTime;
        this.el.dataset.lines = String(this.lines);
      } catch (e) {
        this.el.append(h('span', { class: 't' }, `(${e.code || 'error'}: ${e.message})\n`));
      }
      if (this.key === key) this.timer = setTimeout(tick, 1500);
    };
    tick();
  }

  stop() {
    clearTimeout(this.timer);
    this.key = null;
  }
}

function containerRows(task) {
  return (task.containers || []).map((c) => h('tr', { dataset: { container: c.name } },
    h('td', {}, h('b', {}, c.name), h('div', { class: 'small muted mono' }, c.image || '')),
    h('td', {}, badge(c.lastStatus || '?')),
    h('td', { class: 'mono', dataset: { exitCode: c.exitCode ?? '' } }, c.exitCode ?? '—'),
    h('td', { class: 'small' }, c.reason || (c.networkBindings || []).map((b) => `${b.hostPort}→${b.containerPort}/${b.protocol || 'tcp'}`).join(', ') || '')));
}

export function tasks(root) {
  const f = {
    cluster: param('cluster', 'default'),
    status: param('status', 'RUNNING'),
    family: param('family'),
    service: param('service'),
    instance: param('instance'),
  };
  let selected = param('task');
  const filters = h('div', { class: 'filters card' });
  const list = h('div', { class: 'card scroll', id: 'tasks' });
  const detail = h('div', { class: 'card', id: 'task-detail' }, h('div', { class: 'empty' }, 'Choose a task to see its containers and logs.'));
  const logs = h('div', { class: 'logs', id: 'logs' });
  const tail = new Tail(logs);
  clear(root,
    h('div', { class: 'pagehead' }, h('h1', {}, 'Tasks')),
    filters,
    h('div', { class: 'split' }, list, h('div', {}, detail, h('div', { class: 'card' }, h('h2', {}, 'Logs ', h('span', { class: 'small muted' }, '(live)')), logs))));

  const set = (k, v) => {
    f[k] = v;
    setParams({ ...f, task: selected });
    changed();
  };

  async function drawFilters() {
    const [names, families, services, insts] = await Promise.all([
      clusterNames(),
      listAll('ListTaskDefinitionFamilies', { status: 'ACTIVE' }, 'families').catch(() => []),
      listAll('ListServices', { cluster: f.cluster }, 'serviceArns').catch(() => []),
      instancesOf(f.cluster).catch(() => []),
    ]);
    const input = (k, options, label) => {
      const s = select(k, options, f[k], { id: `filter-${k}` });
      s.addEventListener('change', () => set(k, s.value));
      return h('label', {}, label, s);
    };
    clear(filters,
      input('cluster', names, 'Cluster'),
      input('status', [['RUNNING', 'Running (desired)'], ['PENDING', 'Pending'], ['STOPPED', 'Stopped']], 'Status'),
      input('family', [['', 'Any family'], ...families], 'Family'),
      input('service', [['', 'Any service'], ...services.map((a) => [shortArn(a), shortArn(a)])], 'Service'),
      input('instance', [['', 'Any instance'], ...insts.map((i) => [i.containerInstanceArn, i.ec2InstanceId || shortArn(i.containerInstanceArn)])], 'Instance'));
  }

  function drawDetail(task) {
    if (!task) {
      tail.stop();
      clear(detail, h('div', { class: 'empty' }, 'Choose a task to see its containers and logs.'));
      clear(logs);
      return;
    }
    const stoppable = task.desiredStatus !== 'STOPPED';
    clear(detail,
      h('div', { class: 'pagehead' },
        h('h2', { class: 'mono' }, shortArn(task.taskArn)),
        badge(task.lastStatus),
        h('span', { class: 'spacer' }),
        stoppable ? h('button', {
          class: 'danger',
          onclick: () => act('Stop task', async () => {
            await ecs('StopTask', { cluster: f.cluster, task: task.taskArn, reason: 'Stopped from the console' });
            changed();
          }),
        }, 'Stop') : null),
      h('p', { class: 'small muted' },
        `${shortArn(task.taskDefinitionArn)} · ${task.group || ''} · created ${fmtTime(task.createdAt)}`,
        task.stoppedReason ? h('div', {}, h('b', {}, 'Stopped: '), task.stoppedReason, task.stopCode ? ` (${task.stopCode})` : '') : null),
      h('table', {},
        h('thead', {}, h('tr', {}, ['Container', 'Status', 'Exit code', 'Reason / ports'].map((t) => h('th', {}, t)))),
        h('tbody', {}, containerRows(task))));
    tail.follow(f.cluster, task.taskArn);
  }

  return async () => {
    await drawFilters();
    const body = { cluster: f.cluster, desiredStatus: f.status };
    if (f.family) body.family = f.family;
    if (f.service) body.serviceName = f.service;
    if (f.instance) body.containerInstance = f.instance;
    let found;
    try {
      const arns = await listAll('ListTasks', body, 'taskArns');
      found = await describeAll('DescribeTasks', 'tasks', 'tasks', arns.slice(0, 500), 100, { cluster: f.cluster });
    } catch (e) {
      clear(list, errorBox(e));
      return;
    }
    found.sort((a, b) => (b.createdAt || 0) - (a.createdAt || 0));
    const rows = found.map((t) => {
      const id = shortArn(t.taskArn);
      const tr = h('tr', {
        class: `clickable ${id === selected ? 'selected' : ''}`,
        dataset: { task: id, status: t.lastStatus },
        onclick: () => {
          selected = id;
          setParams({ ...f, task: selected });
          for (const r of list.querySelectorAll('tr.selected')) r.classList.remove('selected');
          tr.classList.add('selected');
          drawDetail(t);
        },
      },
      h('td', { class: 'mono' }, id.slice(0, 12)),
      h('td', {}, shortArn(t.taskDefinitionArn)),
      h('td', {}, badge(t.lastStatus), t.desiredStatus !== t.lastStatus ? h('span', { class: 'small muted' }, ` → ${t.desiredStatus}`) : null),
      h('td', { class: 'mono small' }, shortArn(t.containerInstanceArn).slice(0, 12)),
      h('td', { class: 'small' }, t.group || ''),
      h('td', { class: 'small muted' }, ago(t.startedAt || t.createdAt)),
      h('td', { class: 'small' }, (t.containers || []).filter((c) => c.exitCode !== undefined && c.exitCode !== null).map((c) => `${c.name}: ${c.exitCode}`).join(', ')));
      return tr;
    });
    clear(list, rows.length
      ? h('table', {},
        h('thead', {}, h('tr', {}, ['Task', 'Definition', 'Status', 'Instance', 'Group', 'Started', 'Exit codes'].map((t) => h('th', {}, t)))),
        h('tbody', {}, rows))
      : h('div', { class: 'empty' }, 'No tasks match.'));
    drawDetail(found.find((t) => shortArn(t.taskArn) === selected));
  };
}
