// Notifications: webhook channels (the signing secret is shown once, when a channel
// is made), a test per channel, and the deliveries with their attempts and answers.

import { api, clearFormErrors, messageOf, showFormError } from './api.js';
import { actionButton, badge, field, h, mount, notice, select, table, valueOf, when } from './dom.js';

const KINDS = [
  'run_completed', 'run_failed', 'objective_paused', 'budget_threshold',
  'profile_needs_reauth', 'refresh_failing', 'certificate_expiring', 'node_lost',
];
const TONES = { delivered: 'ok', pending: 'warn', failed: 'bad' };

export async function renderNotifications(main, { flash }) {
  document.title = 'Notifications – Palyra console';
  const channelsArea = h('div', { id: 'channel-list' });
  const secretArea = h('div', { id: 'channel-secret' });
  const deliveriesArea = h('div', { id: 'delivery-list' });

  const showDeliveries = async () => {
    const { deliveries } = await api('GET', '/notifications/deliveries', { query: { limit: 100 } });
    if (!deliveries.length) {
      mount(deliveriesArea, h('p', { class: 'muted', text: 'No deliveries yet.' }));
      return;
    }
    mount(deliveriesArea, table(['Event', 'Channel', 'Status', 'Attempts', 'Last answer', 'Next attempt', 'Created'],
      deliveries.map((d) => h('tr', { 'data-delivery-id': d.delivery_id },
        h('td', {}, h('strong', { text: d.kind }), h('small', { class: 'block muted', text: d.subject })),
        h('td', {}, h('code', { text: d.channel_id })),
        h('td', {}, badge(d.status, TONES[d.status] ?? 'muted')),
        h('td', { text: String(d.attempts) }),
        h('td', { text: d.last_status_code ? `HTTP ${d.last_status_code}` : (d.last_error ?? '—') }),
        h('td', { text: d.next_attempt_at ? when(d.next_attempt_at) : '—' }),
        h('td', { text: when(d.created_at) }))),
      { id: 'deliveries-table' }));
  };

  const showChannels = async () => {
    const { channels } = await api('GET', '/notifications/channels');
    if (!channels.length) {
      mount(channelsArea, h('p', { class: 'muted', text: 'No channels yet: add one below.' }));
      return;
    }
    mount(channelsArea, table(['Channel', 'Receiver', 'Events', 'Filters', 'State', ''],
      channels.map((c) => h('tr', { 'data-channel-id': c.channel_id },
        h('td', {}, h('code', { text: c.channel_id }), h('small', { class: 'block muted', text: c.format })),
        h('td', {}, h('code', { text: c.url })),
        h('td', { text: c.events.join(', ') }),
        h('td', { text: [c.agent_id && `agent ${c.agent_id}`, c.objective_id && `objective ${c.objective_id}`]
          .filter(Boolean).join(', ') || 'all' }),
        h('td', {}, c.disabled ? badge('disabled', 'bad') : badge('active', 'ok'),
          c.disabled_reason ? h('small', { class: 'block muted', text: c.disabled_reason }) : null),
        h('td', { class: 'actions' },
          c.disabled ? null : actionButton('Send test', async () => {
            try {
              const { event_id } = await api('POST', `/notifications/channels/${encodeURIComponent(c.channel_id)}/test`);
              flash('ok', `Test event ${event_id} queued.`);
              await showDeliveries();
            } catch (e) {
              flash('error', messageOf(e));
            }
          }, { class: 'write' }),
          actionButton('Delete', async () => {
            try {
              await api('DELETE', `/notifications/channels/${encodeURIComponent(c.channel_id)}`);
              flash('ok', `Deleted channel ${c.channel_id}.`);
              await showChannels();
            } catch (e) {
              flash('error', messageOf(e));
            }
          }, { class: 'write danger' })))),
      { id: 'channels-table' }));
  };

  const form = h('form', { class: 'card', id: 'channel-form', novalidate: true },
    h('h2', { text: 'Add a channel' }),
    field('Receiver URL', h('input', { name: 'url', required: true, maxlength: 2048, spellcheck: 'false',
      placeholder: 'https://hooks.example.com/palyra' }), 'https; http only to loopback'),
    field('Format', select('format', [['palyra', 'Palyra (signed JSON)'], ['slack', 'Slack or Mattermost ({text})'],
      ['discord', 'Discord ({content})']], 'palyra')),
    h('fieldset', { class: 'kinds' }, h('legend', { text: 'Events' }),
      KINDS.map((kind) => h('label', { class: 'check' },
        h('input', { type: 'checkbox', name: 'events', value: kind }), h('span', { text: kind })))),
    field('Only agent', h('input', { name: 'agent_id', maxlength: 128, spellcheck: 'false' }), 'optional'),
    field('Only objective', h('input', { name: 'objective_id', maxlength: 128, spellcheck: 'false' }), 'optional'),
    h('div', { class: 'form-error notice error', hidden: true, role: 'alert' }),
    h('div', { class: 'buttons' }, h('button', { type: 'submit', class: 'primary', text: 'Add channel' })));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearFormErrors(form);
    const events = [...form.querySelectorAll('input[name=events]:checked')].map((input) => input.value);
    const button = form.querySelector('button[type=submit]');
    button.disabled = true;
    try {
      const created = await api('POST', '/notifications/channels', {
        body: {
          url: valueOf(form, 'url') ?? '',
          format: valueOf(form, 'format') ?? 'palyra',
          events,
          agent_id: valueOf(form, 'agent_id'),
          objective_id: valueOf(form, 'objective_id'),
        },
      });
      form.reset();
      // Shown once: the daemon never answers it again.
      mount(secretArea, notice('ok',
        h('p', { text: `Channel ${created.channel_id} added. Its signing secret, shown only now:` }),
        h('code', { class: 'block secret', text: created.secret })));
      await showChannels();
    } catch (e) {
      showFormError(form, e);
    } finally {
      button.disabled = false;
    }
  });

  mount(main,
    h('h1', { text: 'Notifications' }),
    h('p', { class: 'muted', text: 'Webhooks the daemon posts events to, through a durable outbox with retries. '
      + 'Palyra-format deliveries carry palyra-signature: verify it and refuse timestamps older than 5 minutes.' }),
    channelsArea,
    secretArea,
    form,
    h('h2', { text: 'Deliveries' }),
    deliveriesArea);
  await Promise.all([showChannels(), showDeliveries()]);
}
