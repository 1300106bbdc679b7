// The console's shell: the session, the navigation, the page of the path,
// and live updates (server-sent events from /ui/api/events: a `change` at
// each commit to the store, which redraws the page).

import { loadSession, session, h, clear, toast, errorBox } from './lib.js';

const PAGES = {
  clusters: ['Clusters', () => import('./fleet.js').then((m) => m.clusters)],
  instances: ['Instances', () => import('./fleet.js').then((m) => m.instances)],
  tasks: ['Tasks', () => import('./tasks.js').then((m) => m.tasks)],
  services: ['Services', () => import('./services.js').then((m) => m.services)],
  policies: ['Policies', () => import('./policies.js').then((m) => m.policies)],
};

// Redraws at most once a second, never two at once.
function refresher(refresh) {
  let running = false;
  let again = false;
  let last = 0;
  const run = async () => {
    if (running) {
      again = true;
      return;
    }
    running = true;
    const wait = Math.max(0, 1000 - (Date.now() - last));
    if (wait) await new Promise((r) => setTimeout(r, wait));
    try {
      last = Date.now();
      await refresh();
      document.body.dataset.refreshed = String(last);
    } catch (e) {
      if (e.status !== 401) toast(`Refreshing: ${e.message}`, 'bad');
    } finally {
      running = false;
      if (again) {
        again = false;
        run();
      }
    }
  };
  return run;
}

function live(onChange) {
  const indicator = document.getElementById('live');
  const es = new EventSource('/ui/api/events');
  es.addEventListener('open', () => {
    indicator.textContent = 'live';
    indicator.classList.add('on');
  });
  es.addEventListener('change', () => onChange());
  es.addEventListener('error', async () => {
    indicator.textContent = 'reconnecting';
    indicator.classList.remove('on');
    // Signed out or expired: the stream answers 401, which EventSource
    // does not retry; the session call sends the page to the sign-in.
    if (es.readyState === EventSource.CLOSED) {
      try {
        await loadSession();
        setTimeout(() => live(onChange), 2000);
      } catch {
        /* to the sign-in page */
      }
    }
  });
}

async function signOut() {
  await fetch('/ui/logout', {
    method: 'POST',
    credentials: 'same-origin',
    headers: { 'x-berth-csrf': session.csrf },
  });
  location.assign('/ui/login');
}

async function main() {
  await loadSession();
  const name = location.pathname.replace(/^\/ui\/?/, '').split('/')[0] || 'clusters';
  const nav = document.getElementById('nav');
  for (const [key, [title]] of Object.entries(PAGES)) {
    nav.append(h('a', { href: `/ui/${key}`, class: key === name ? 'current' : '', id: `nav-${key}` }, title));
  }
  document.getElementById('key').textContent = session.key;
  document.getElementById('signOut').addEventListener('click', signOut);
  const root = document.getElementById('page');
  const entry = PAGES[name];
  if (!entry) {
    clear(root, h('p', {}, 'No such page.'));
    return;
  }
  document.title = `${entry[0]} · berth`;
  const page = await entry[1]();
  let refresh;
  try {
    refresh = refresher(page(root));
  } catch (e) {
    clear(root, errorBox(e));
    return;
  }
  document.addEventListener('berth:changed', () => refresh());
  await refresh();
  live(refresh);
}

main();
