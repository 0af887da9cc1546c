// The audit log: filters by kind and time, paged by the daemon's cursor.

import { api, messageOf } from './api.js';
import { actionButton, badge, field, h, mount, notice, select, valueOf, when } from './dom.js';

const KINDS = [
  'login', 'login_failed', 'session_revoked', 'handoff_minted', 'handoff_consumed',
  'profile_created', 'profile_updated', 'profile_deleted', 'profile_refreshed', 'profile_needs_reauth',
  'signin_started', 'signin_completed', 'signin_failed',
  'agent_created', 'agent_updated', 'agent_deleted',
  'objective_created', 'objective_updated', 'objective_lifecycle', 'budget_exhausted', 'vault_key_rotated',
  'browser_session_created', 'browser_navigated', 'browser_session_closed',
  'operator_created', 'operator_updated', 'operator_deleted', 'token_created', 'token_revoked',
  'client_secret_changed',
  'notification_channel_created', 'notification_channel_deleted',
  'tool_write',
  'budget_threshold',
];
const PAGE = 50;

/** An RFC 3339 instant from a datetime-local value (the browser's time zone). */
function instant(value) {
  if (!value) return undefined;
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? value : date.toISOString();
}

/** A datetime-local value from an RFC 3339 instant. */
function localInput(iso) {
  if (!iso) return '';
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return '';
  const pad = (n) => String(n).padStart(2, '0');
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

function outcomeBadge(outcome) {
  if (!outcome) return '—';
  const text = String(outcome);
  const tone = /^(ok|success|succeeded|allowed)$/.test(text) ? 'ok' : /fail|denied|rejected|error/.test(text) ? 'bad' : 'muted';
  return badge(text, tone);
}

function detailText(detail) {
  if (detail === null || detail === undefined || detail === '') return '';
  return typeof detail === 'string' ? detail : JSON.stringify(detail);
}

function rows(events) {
  return events.map((e) => h('tr', { 'data-event-id': e.id },
    h('td', { text: when(e.at) }),
    h('td', {}, h('code', { text: e.kind })),
    h('td', { text: e.actor ?? '—' }),
    h('td', { text: e.peer ?? '—' }),
    h('td', { text: e.subject ?? '—' }),
    h('td', {}, outcomeBadge(e.outcome)),
    h('td', { class: 'detail', text: detailText(e.detail) })));
}

export async function renderAudit(main, { query, navigate }) {
  document.title = 'Audit log – Palyra console';
  const filters = {
    kind: query.get('kind') || '', since: query.get('since') || '', until: query.get('until') || '',
  };
  const form = h('form', { class: 'filters', id: 'audit-filters' },
    field('Kind', select('kind', [['', 'any'], ...KINDS.map((k) => [k, k.replace(/_/g, ' ')])], filters.kind)),
    field('Since', h('input', { type: 'datetime-local', name: 'since', value: localInput(filters.since) })),
    field('Until', h('input', { type: 'datetime-local', name: 'until', value: localInput(filters.until) })),
    h('button', { type: 'submit', text: 'Filter' }));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const params = new URLSearchParams();
    const kind = valueOf(form, 'kind');
    if (kind) params.set('kind', kind);
    for (const name of ['since', 'until']) {
      const value = instant(valueOf(form, name));
      if (value) params.set(name, value);
    }
    navigate(`/audit${params.toString() ? `?${params}` : ''}`);
  });

  const body = h('div', { id: 'audit-log' });
  mount(main, h('h1', { text: 'Audit log' }), form, body);

  let answer;
  try {
    answer = await api('GET', '/audit', { query: { ...filters, limit: PAGE } });
  } catch (e) {
    if (e.status === 404 && e.code === 'not_found') {
      mount(body, notice('info', 'The audit log is not available on this daemon (it answers 404 for it).'));
      return;
    }
    mount(body, notice('error', `The audit log could not be loaded: ${messageOf(e)}`));
    return;
  }
  if (!answer.events.length) {
    mount(body, h('p', { class: 'muted', text: 'No events match.' }));
    return;
  }
  const tbody = h('tbody', {}, rows(answer.events));
  const more = h('div', { class: 'pager' });
  const showMore = (cursor) => mount(more, cursor ? actionButton('Older events', async () => {
    try {
      const page = await api('GET', '/audit', { query: { ...filters, limit: PAGE, cursor } });
      for (const row of rows(page.events)) tbody.appendChild(row);
      showMore(page.next_cursor);
    } catch (e) {
      mount(more, notice('error', `More events could not be loaded: ${messageOf(e)}`));
    }
  }) : null);
  mount(body,
    h('div', { class: 'table-wrap' },
      h('table', { id: 'audit-table' },
        h('thead', {}, h('tr', {}, ['When', 'Kind', 'Actor', 'Peer', 'Subject', 'Outcome', 'Detail'].map((t) => h('th', { scope: 'col', text: t })))),
        tbody)),
    more);
  showMore(answer.next_cursor);
}
