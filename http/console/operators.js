// Operators and API tokens (admin only): the operators with their roles, creating one,
// disabling, revoking their sessions, deleting; minting a token (shown once, here and
// never again); the tokens of every operator, and revoking one.

import { api, clearFormErrors, messageOf, showFormError } from './api.js';
import { actionButton, badge, field, h, mount, notice, select, table, valueOf, when } from './dom.js';

const ROLES = [['viewer', 'viewer: reads everything, changes nothing'],
  ['operator', 'operator: objectives, agents, browser sessions, provider sign-ins'],
  ['admin', 'admin: everything, operators and tokens included']];

const ROLE_TONES = { viewer: 'muted', operator: 'info', admin: 'warn' };

function roleBadge(role) {
  return badge(role, ROLE_TONES[role] ?? 'muted');
}

/** Pages of this module need the admin role; anyone else is told so, not shown a 403. */
function adminOnly(main, session, title) {
  if (session && session.role === 'admin') return false;
  mount(main, h('h1', { text: title }),
    notice('warn', 'Only admins manage operators and tokens; your role is ', session ? session.role : 'none', '.'));
  return true;
}

export async function renderOperators(main, { flash, session }) {
  document.title = 'Operators – Palyra console';
  if (adminOnly(main, session, 'Operators')) return;
  const listArea = h('div', { id: 'operator-list' });
  const minted = h('div', { id: 'minted-area' });
  const tokenArea = h('div', { id: 'token-form-area' });

  const reload = async () => {
    const { operators } = await api('GET', '/operators');
    if (!operators.length) {
      mount(listArea, h('p', { class: 'muted', text: 'No operators yet: create one below. The admin token (root) always works.' }));
      return;
    }
    mount(listArea, table(['Operator', 'Role', 'State', 'Created', ''],
      operators.map((o) => h('tr', { 'data-operator-id': o.operator_id },
        h('td', {}, h('strong', { text: o.display_name }), h('small', { class: 'block muted', text: o.operator_id })),
        h('td', {}, roleBadge(o.role)),
        h('td', {}, o.disabled ? badge('disabled', 'bad') : badge('active', 'ok'),
          o.has_password ? null : h('small', { class: 'block muted', text: 'no password: tokens only' })),
        h('td', { text: when(o.created_at) }),
        h('td', { class: 'actions' },
          h('button', { type: 'button', 'data-action': 'new-token', text: 'New token', onclick: () => showTokenForm(o) }),
          actionButton(o.disabled ? 'Enable' : 'Disable', async () => {
            await act(() => api('PATCH', `/operators/${encodeURIComponent(o.operator_id)}`, { body: { disabled: !o.disabled } }),
              o.disabled ? `Enabled ${o.operator_id}.` : `Disabled ${o.operator_id}: their sessions and tokens are revoked.`);
          }, { 'data-action': 'toggle' }),
          actionButton('Revoke sessions', async () => {
            const ended = await act(() => api('POST', `/operators/${encodeURIComponent(o.operator_id)}/revoke-sessions`));
            if (ended) flash('ok', `Revoked ${ended.sessions_revoked} session(s) and ${ended.tokens_revoked} token(s) of ${o.operator_id}.`);
          }, { 'data-action': 'revoke-sessions' }),
          actionButton('Delete', async () => {
            if (!window.confirm(`Delete operator ${o.operator_id}? Their sessions and tokens end.`)) return;
            await act(() => api('DELETE', `/operators/${encodeURIComponent(o.operator_id)}`), `Deleted ${o.operator_id}.`);
          }, { 'data-action': 'delete' })))),
      { id: 'operators-table' }));
  };

  /** Runs a change, then reloads the list; a refusal is flashed. */
  async function act(change, message) {
    try {
      const answer = await change();
      if (message) flash('ok', message);
      await reload();
      return answer ?? {};
    } catch (e) {
      flash('error', messageOf(e));
      return null;
    }
  }

  function showTokenForm(operator) {
    const form = h('form', { class: 'card', id: 'token-form', novalidate: true },
      h('h2', { text: `New API token for ${operator.operator_id}` }),
      field('Name', h('input', { name: 'name', required: true, maxlength: 64, placeholder: 'ci' })),
      field('Role', select('role', ROLES.filter(([r]) => rank(r) <= rank(operator.role)), 'viewer'),
        `no higher than the operator's (${operator.role})`),
      field('Expires in days', h('input', { name: 'expires_in_days', type: 'number', min: 1, max: 3650 }),
        'empty: until revoked'),
      h('div', { class: 'form-error notice error', hidden: true, role: 'alert' }),
      h('div', { class: 'buttons' },
        h('button', { type: 'submit', class: 'primary', text: 'Mint token' }),
        h('button', { type: 'button', text: 'Cancel', onclick: () => tokenArea.replaceChildren() })));
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      clearFormErrors(form);
      const days = valueOf(form, 'expires_in_days');
      const body = { name: valueOf(form, 'name') ?? '', role: valueOf(form, 'role') };
      if (days !== undefined) body.expires_in_s = Math.round(Number(days) * 86400);
      const button = form.querySelector('button[type=submit]');
      button.disabled = true;
      try {
        const token = await api('POST', `/operators/${encodeURIComponent(operator.operator_id)}/tokens`, { body });
        tokenArea.replaceChildren();
        // The daemon keeps only a digest: this is the one time the token exists here.
        mount(minted, notice('ok',
          h('strong', { text: `Token ${token.name} for ${token.operator_id} (${token.role}). ` }),
          'Copy it now: it is not shown again. ',
          h('code', { id: 'minted-token', class: 'block', text: token.token }),
          h('button', { type: 'button', text: 'Done', onclick: () => minted.replaceChildren() })));
      } catch (e) {
        showFormError(form, e);
      } finally {
        button.disabled = false;
      }
    });
    mount(tokenArea, form);
    form.elements.namedItem('name').focus();
  }

  const create = h('form', { class: 'card', id: 'operator-form', novalidate: true },
    h('h2', { text: 'Create an operator' }),
    field('Operator id', h('input', { name: 'operator_id', required: true, maxlength: 64, spellcheck: 'false' }),
      'lowercase a-z 0-9 . _ @ -'),
    field('Display name', h('input', { name: 'display_name', maxlength: 128 })),
    field('Role', select('role', ROLES, 'viewer')),
    field('Password', h('input', { name: 'password', type: 'password', autocomplete: 'new-password' }),
      'at least 12 characters; empty: the operator signs in with tokens or handoffs only'),
    h('div', { class: 'form-error notice error', hidden: true, role: 'alert' }),
    h('button', { type: 'submit', class: 'primary', text: 'Create operator' }));
  create.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearFormErrors(create);
    const body = {
      operator_id: valueOf(create, 'operator_id') ?? '',
      display_name: valueOf(create, 'display_name'),
      role: valueOf(create, 'role'),
    };
    const password = create.elements.namedItem('password').value;
    if (password) body.password = password;
    const button = create.querySelector('button[type=submit]');
    button.disabled = true;
    try {
      const made = await api('POST', '/operators', { body });
      create.reset();
      flash('ok', `Created operator ${made.operator_id} (${made.role}).`);
      await reload();
    } catch (e) {
      showFormError(create, e);
    } finally {
      button.disabled = false;
    }
  });

  await reload();
  mount(main,
    h('h1', { text: 'Operators' }),
    h('p', { class: 'muted', text: 'The people and scripts that use this daemon, and what each may do. The admin token stays the break-glass root.' }),
    minted,
    listArea,
    tokenArea,
    create);
}

function rank(role) {
  return ['viewer', 'operator', 'admin'].indexOf(role);
}

export async function renderTokens(main, { flash, session }) {
  document.title = 'API tokens – Palyra console';
  if (adminOnly(main, session, 'API tokens')) return;
  const listArea = h('div', { id: 'token-list' });
  const reload = async () => {
    const { tokens } = await api('GET', '/tokens');
    if (!tokens.length) {
      mount(listArea, h('p', { class: 'muted', text: 'No API tokens. Mint one on the Operators page.' }));
      return;
    }
    mount(listArea, table(['Token', 'Operator', 'Role', 'Created', 'Expires', 'Last used', ''],
      tokens.map((t) => h('tr', { 'data-token-id': t.token_id },
        h('td', {}, h('strong', { text: t.name }), h('code', { class: 'block', text: `${t.prefix}_…` })),
        h('td', { text: t.operator_id }),
        h('td', {}, roleBadge(t.role)),
        h('td', { text: when(t.created_at) }),
        h('td', { text: t.expires_at ? when(t.expires_at) : 'never' }),
        h('td', { text: t.last_used_at ? when(t.last_used_at) : 'never' }),
        h('td', { class: 'actions' },
          actionButton('Revoke', async () => {
            if (!window.confirm(`Revoke token ${t.name} of ${t.operator_id}? Scripts using it stop at once.`)) return;
            try {
              await api('DELETE', `/tokens/${encodeURIComponent(t.token_id)}`);
              flash('ok', `Revoked token ${t.name}.`);
              await reload();
            } catch (e) {
              flash('error', messageOf(e));
            }
          }, { 'data-action': 'revoke' })))),
      { id: 'tokens-table' }));
  };
  await reload();
  mount(main,
    h('h1', { text: 'API tokens' }),
    h('p', { class: 'muted', text: 'Bearer tokens of operators, for scripts and the CLI. Their secrets are never shown after minting.' }),
    listArea);
}
