// Overview: deployment posture and its warnings, credential health, objectives by
// state, and the next scheduled runs. Each section loads on its own, so one failing
// endpoint leaves the others readable.

import { api, listAll, messageOf } from './api.js';
import { badge, h, mount, notice, table, when } from './dom.js';

export const HEALTH_TONES = {
  static: 'ok', ok: 'ok', expiring: 'warn', expired: 'bad', missing: 'bad',
  needs_reauth: 'bad', rate_limited: 'warn', cooling_down: 'warn',
};

export const STATE_TONES = {
  draft: 'muted', active: 'ok', paused: 'warn', cancelled: 'bad', archived: 'muted',
};

const OBJECTIVE_STATES = ['draft', 'active', 'paused', 'cancelled', 'archived'];

function section(title, id, ...body) {
  return h('section', { class: 'card', id }, h('h2', { text: title }), ...body);
}

function failed(error, what) {
  if (error && error.status === 404) {
    return notice('info', `${what} is not available on this daemon (it answers 404 for it).`);
  }
  return notice('error', `${what} could not be loaded: ${messageOf(error)}`);
}

function describeDuration(seconds) {
  if (typeof seconds !== 'number') return '—';
  if (seconds % 3600 === 0) return `${seconds / 3600} h`;
  if (seconds % 60 === 0) return `${seconds / 60} min`;
  return `${seconds} s`;
}

function posture(p) {
  const rows = [
    ['Listening on', [(p.bind_addresses || []).join(', '), ' ',
      p.loopback_only ? badge('loopback only', 'ok') : badge('reachable remotely', 'warn')]],
    ['TLS', p.tls && p.tls.enabled
      ? [badge('on', 'ok'), p.tls.cert_not_after ? ` certificate valid until ${when(p.tls.cert_not_after)}` : '']
      : badge('off', p.loopback_only ? 'muted' : 'bad')],
    ['Secure cookie', p.cookie_secure ? badge('yes', 'ok') : badge('no', p.loopback_only ? 'muted' : 'warn')],
    ['Admin token from', p.admin_token_source],
    ['Vault key from', p.vault_key_source],
    ['Session timeouts', `idle ${describeDuration(p.session_idle_timeout_s)}, absolute ${describeDuration(p.session_absolute_timeout_s)}`],
    ['Last remote admin access', p.last_remote_admin_access
      ? `${when(p.last_remote_admin_access.at)} from ${p.last_remote_admin_access.peer}: `
        + `${p.last_remote_admin_access.method} ${p.last_remote_admin_access.path} → ${p.last_remote_admin_access.status}`
      : 'none'],
  ];
  const warnings = p.warnings || [];
  return [
    warnings.length
      ? h('ul', { class: 'warnings' }, warnings.map((w) => h('li', {}, notice('warn', w))))
      : notice('ok', 'No posture warnings.'),
    h('dl', { class: 'facts' }, rows.map(([k, v]) => [h('dt', { text: k }), h('dd', {}, v)])),
  ];
}

function health(report) {
  const counts = report.counts || {};
  const total = (report.profiles || []).length;
  const present = Object.entries(counts).filter(([, n]) => n > 0);
  return [
    h('p', {}, h('strong', { class: 'big', text: String(total) }), total === 1 ? ' profile' : ' profiles'),
    present.length
      ? h('ul', { class: 'counts' }, present.map(([state, n]) =>
        h('li', {}, badge(state.replace('_', ' '), HEALTH_TONES[state] || 'muted'), ` ${n}`)))
      : h('p', { class: 'muted', text: 'No credentials yet.' }),
    h('p', {}, h('a', { href: '#/profiles', text: 'Manage auth profiles' })),
  ];
}

function objectivesByState({ items, complete }) {
  const counts = Object.fromEntries(OBJECTIVE_STATES.map((s) => [s, 0]));
  for (const o of items) counts[o.state] = (counts[o.state] || 0) + 1;
  return [
    h('ul', { class: 'counts' }, OBJECTIVE_STATES.map((state) =>
      h('li', {}, h('a', { href: `#/objectives?state=${state}` }, badge(state, STATE_TONES[state])), ` ${counts[state]}`))),
    complete ? null : h('p', { class: 'muted', text: `Counted the first ${items.length} objectives.` }),
  ];
}

function nextRuns({ items }) {
  const upcoming = items
    .filter((o) => o.next_run_at && o.state === 'active')
    .sort((a, b) => a.next_run_at.localeCompare(b.next_run_at))
    .slice(0, 10);
  if (!upcoming.length) return h('p', { class: 'muted', text: 'Nothing is scheduled.' });
  return table(['When', 'Objective', 'Agent', 'Schedule'], upcoming.map((o) => h('tr', {},
    h('td', { text: when(o.next_run_at) }),
    h('td', {}, h('a', { href: `#/objectives/${encodeURIComponent(o.objective_id)}`, text: o.name })),
    h('td', { text: o.agent_id }),
    h('td', { text: o.automation ? `${o.automation.schedule} (${o.automation.timezone})` : '—' }))));
}

export async function renderOverview(main) {
  document.title = 'Overview – Palyra console';
  const [postureResult, healthResult, objectivesResult] = await Promise.allSettled([
    api('GET', '/deployment/posture'),
    api('GET', '/auth/health'),
    listAll('/objectives'),
  ]);
  const part = (result, what, render) => (result.status === 'fulfilled'
    ? render(result.value)
    : failed(result.reason, what));
  mount(main,
    h('h1', { text: 'Overview' }),
    h('div', { class: 'grid' },
      section('Deployment posture', 'posture', part(postureResult, 'Deployment posture', posture)),
      section('Credential health', 'health', part(healthResult, 'Credential health', health)),
      section('Objectives by state', 'objective-states', part(objectivesResult, 'The objective list', objectivesByState)),
      section('Next scheduled runs', 'next-runs', part(objectivesResult, 'The objective list', nextRuns))));
}
