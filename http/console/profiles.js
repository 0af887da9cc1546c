// Auth profiles: the list with health and hints (never a secret), adding an API key,
// OAuth sign-in in a popup or with a device code, set default, refresh now, remove.

import { api, clearFormErrors, listAll, messageOf, showFormError } from './api.js';
import { actionButton, badge, field, h, mount, notice, select, table, valueOf, when } from './dom.js';
import { HEALTH_TONES } from './overview.js';

const PROVIDERS = ['openai', 'anthropic'];

function scopeLabel(scope) {
  return scope.kind === 'agent' ? `agent ${scope.agent_id}` : 'global';
}

function scopeOf(value) {
  return value.startsWith('agent:') ? { kind: 'agent', agent_id: value.slice(6) } : { kind: 'global' };
}

function credentialCell(credential) {
  if (credential.type === 'api_key') {
    return [
      credential.hint ? h('span', { class: 'hint-value', text: `…${credential.hint}` }) : h('span', { class: 'muted', text: 'short key, no hint' }),
      ' API key',
      credential.rejected_at ? [' ', badge('rejected by provider', 'bad')] : null,
    ];
  }
  const state = credential.refresh_state || {};
  return [
    'OAuth',
    credential.expires_at ? h('small', { class: 'block', text: `token expires ${when(credential.expires_at)}` }) : null,
    state.last_error ? h('small', { class: 'block error-text', text: `last refresh: ${state.last_error}` }) : null,
    // The provider gave no refresh token: nothing keeps this one fresh.
    credential.refreshable === false ? [' ', badge('not refreshable: sign in again before it expires', 'warn')] : null,
  ];
}

function providerInput(id) {
  return [
    h('input', { name: 'provider', id, list: `${id}-list`, required: true, value: 'openai', autocomplete: 'off', spellcheck: 'false' }),
    h('datalist', { id: `${id}-list` }, PROVIDERS.map((p) => h('option', { value: p }))),
  ];
}

function scopeSelect(agents) {
  return select('scope', [['global', 'Global (every agent)'],
    ...agents.map((a) => [`agent:${a.agent_id}`, `Agent ${a.agent_id}`])], 'global');
}

/** `field` labels one control; the provider input travels with its datalist. */
function fieldWith(label, controls, hint) {
  const wrapper = field(label, controls[0], hint);
  controls.slice(1).forEach((c) => wrapper.insertBefore(c, wrapper.querySelector('.field-error')));
  return wrapper;
}

/** A running provider-call cooldown: until when, and what the provider answered. */
function cooldownNote(cooldown) {
  if (!cooldown) return null;
  return h('small', { class: 'block muted cooldown', 'data-cooldown': cooldown.reason },
    `${cooldown.reason.replace('_', ' ')} until ${when(cooldown.until)}: ${cooldown.last_error}`);
}

export async function renderProfiles(main, { flash }) {
  document.title = 'Auth profiles – Palyra console';
  const listArea = h('div', { id: 'profile-list' }, h('p', { class: 'muted', text: 'Loading…' }));
  let agents = [];
  try {
    agents = (await listAll('/agents')).items;
  } catch (e) {
    flash('warn', `Agents could not be loaded, so only the global scope is offered: ${messageOf(e)}`);
  }

  async function reload() {
    const [profiles, health] = await Promise.all([listAll('/auth/profiles'), api('GET', '/auth/health')]);
    const states = Object.fromEntries((health.profiles || []).map((p) => [p.profile_id, p.state]));
    const cooldowns = Object.fromEntries((health.profiles || []).filter((p) => p.cooldown).map((p) => [p.profile_id, p.cooldown]));
    if (!profiles.items.length) {
      mount(listArea, h('p', { class: 'muted', text: 'No auth profiles yet: add an API key or sign in below.' }));
      return;
    }
    const rows = profiles.items.map((p) => {
      const actions = h('td', { class: 'actions' });
      const showActions = () => mount(actions,
        p.is_default ? null : actionButton('Set default', async () => {
          try {
            await api('POST', `/auth/profiles/${encodeURIComponent(p.profile_id)}/default`);
            flash('ok', `${p.profile_name} is now the default for ${p.provider} (${scopeLabel(p.scope)}).`);
            await reload();
          } catch (e) { flash('error', `Set default failed: ${messageOf(e)}`); }
        }, { 'data-action': 'set-default' }),
        p.credential.type === 'oauth' ? actionButton('Refresh now', async () => {
          try {
            const report = await api('POST', `/auth/profiles/${encodeURIComponent(p.profile_id)}/refresh`);
            if (report.outcome === 'succeeded') flash('ok', `${p.profile_name}: refreshed.`);
            else flash('error', `${p.profile_name}: refresh failed (${report.outcome.replace('_', ' ')}): ${report.reason || 'no reason given'}`);
            await reload();
          } catch (e) { flash('error', `Refresh failed: ${messageOf(e)}`); }
        }, { 'data-action': 'refresh' }) : null,
        h('button', { type: 'button', class: 'danger', 'data-action': 'remove', text: 'Remove', onclick: confirmRemove }));
      function confirmRemove() {
        mount(actions,
          h('span', { class: 'confirm', text: `Remove ${p.profile_name} and its secret?` }),
          actionButton('Yes, remove', async () => {
            try {
              await api('DELETE', `/auth/profiles/${encodeURIComponent(p.profile_id)}`);
              flash('ok', `Removed ${p.profile_name} (${p.profile_id}).`);
              await reload();
            } catch (e) { flash('error', `Remove failed: ${messageOf(e)}`); showActions(); }
          }, { class: 'danger', 'data-action': 'confirm-remove' }),
          h('button', { type: 'button', text: 'Cancel', onclick: showActions }));
      }
      showActions();
      const state = states[p.profile_id];
      return h('tr', { 'data-profile-id': p.profile_id },
        h('td', {}, h('strong', { text: p.profile_name }), h('small', { class: 'block muted', text: p.profile_id })),
        h('td', { text: p.provider }),
        h('td', { text: scopeLabel(p.scope) }),
        h('td', {}, state ? badge(state.replace('_', ' '), HEALTH_TONES[state] || 'muted') : '—',
          cooldownNote(cooldowns[p.profile_id])),
        h('td', { class: 'credential' }, credentialCell(p.credential)),
        h('td', {}, p.is_default ? badge('default', 'info') : ''),
        actions);
    });
    mount(listArea, table(['Profile', 'Provider', 'Scope', 'Health', 'Credential', 'Default', ''], rows, { id: 'profiles-table' }));
  }

  mount(main,
    h('h1', { text: 'Auth profiles' }),
    h('p', { class: 'muted', text: 'Credentials for model providers. Secrets are sealed in the vault when saved and never shown again; a key is listed by its last 4 characters.' }),
    listArea,
    h('div', { class: 'grid' }, apiKeyForm(agents, reload), oauthForm(agents, reload)));
  await reload();
}

function apiKeyForm(agents, reload) {
  const result = h('div', { class: 'result', 'aria-live': 'polite' });
  const form = h('form', { class: 'card', id: 'add-api-key', novalidate: true },
    h('h2', { text: 'Add an API key' }),
    fieldWith('Provider', providerInput('key-provider'), 'openai, anthropic or custom:<name>'),
    field('Profile name', h('input', { name: 'profile_name', required: true, maxlength: 128 })),
    field('Profile id', h('input', { name: 'profile_id', maxlength: 128, spellcheck: 'false', placeholder: 'generated when empty' })),
    field('Scope', scopeSelect(agents)),
    field('API key', h('input', { name: 'api_key', type: 'password', autocomplete: 'off', required: true })),
    h('label', { class: 'check' }, h('input', { type: 'checkbox', name: 'validate', checked: true }), ' Check the key with the provider first'),
    h('label', { class: 'check' }, h('input', { type: 'checkbox', name: 'set_default' }), ' Make it the default'),
    h('div', { class: 'form-error notice error', hidden: true, role: 'alert' }),
    h('button', { type: 'submit', class: 'primary', text: 'Save key' }),
    result);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearFormErrors(form);
    result.replaceChildren();
    const validate = form.elements.namedItem('validate').checked;
    const body = {
      provider: valueOf(form, 'provider') ?? '',
      profile_name: valueOf(form, 'profile_name') ?? '',
      profile_id: valueOf(form, 'profile_id'),
      scope: scopeOf(form.elements.namedItem('scope').value),
      credential: { type: 'api_key', api_key: form.elements.namedItem('api_key').value.trim() },
      set_default: form.elements.namedItem('set_default').checked,
      validate,
    };
    const button = form.querySelector('button[type=submit]');
    button.disabled = true;
    try {
      const saved = await api('POST', '/auth/profiles', { body });
      form.elements.namedItem('api_key').value = '';
      mount(result, notice('ok', `Saved ${saved.profile_name} (${saved.profile_id}). `,
        validate ? 'The provider accepted the key.' : 'The key was not checked.'));
      await reload();
    } catch (e) {
      showFormError(form, e);
    } finally {
      button.disabled = false;
    }
  });
  return form;
}

function oauthForm(agents, reload) {
  const result = h('div', { class: 'result', id: 'oauth-result', 'aria-live': 'polite' });
  const form = h('form', { class: 'card', id: 'oauth-sign-in', novalidate: true },
    h('h2', { text: 'Sign in with OAuth' }),
    h('p', { class: 'muted', text: 'Opens the provider\'s sign-in page in a new window; the daemon keeps the tokens fresh afterwards.' }),
    fieldWith('Provider', providerInput('oauth-provider')),
    field('Profile name', h('input', { name: 'profile_name', required: true, maxlength: 128 })),
    field('Profile id', h('input', { name: 'profile_id', maxlength: 128, spellcheck: 'false', placeholder: 'generated when empty' })),
    field('Scope', scopeSelect(agents)),
    h('label', { class: 'check' }, h('input', { type: 'checkbox', name: 'set_default' }), ' Make it the default'),
    h('div', { class: 'form-error notice error', hidden: true, role: 'alert' }),
    h('div', { class: 'actions' },
      h('button', { type: 'submit', class: 'primary', text: 'Sign in' }),
      ' ',
      h('button', { type: 'submit', name: 'device', value: '1', text: 'Sign in with a code (device)',
        title: 'For providers with a device authorization endpoint: enter a code on any device; nothing redirects back to this daemon.' })),
    result);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearFormErrors(form);
    result.replaceChildren();
    const provider = valueOf(form, 'provider') ?? '';
    const device = event.submitter?.name === 'device';
    // Opened now, while the click still counts as the user's, so no popup blocker
    // stops it; it is pointed at the provider once the daemon answers.
    const popup = device ? null : window.open('', 'palyra-oauth', 'popup,width=520,height=720');
    const buttons = form.querySelectorAll('button[type=submit]');
    buttons.forEach((b) => { b.disabled = true; });
    try {
      const path = `/auth/providers/${encodeURIComponent(provider)}/${device ? 'device' : 'bootstrap'}`;
      const started = await api('POST', path, {
        body: {
          profile_name: valueOf(form, 'profile_name') ?? '',
          profile_id: valueOf(form, 'profile_id'),
          scope: scopeOf(form.elements.namedItem('scope').value),
          set_default: form.elements.namedItem('set_default').checked,
        },
      });
      if (device) {
        // RFC 8628: the operator enters the code at the provider; the daemon polls.
        const link = started.verification_uri_complete || started.verification_uri;
        mount(result, notice('info', 'On any device, open ',
          h('a', { href: link, target: '_blank', rel: 'noreferrer', text: started.verification_uri }),
          ' and enter the code ',
          h('code', { class: 'user-code', id: 'oauth-user-code', text: started.user_code }),
          `. Waiting for the sign-in (until ${new Date(started.expires_at).toLocaleTimeString()})…`));
      } else {
        if (popup && !popup.closed) popup.location.href = started.authorization_url;
        mount(result, notice('info', 'Waiting for the sign-in in the other window… ',
          h('a', { href: started.authorization_url, target: '_blank', rel: 'noreferrer', text: 'Open the sign-in page again' })));
      }
      const outcome = await waitForSignIn(provider, started);
      if (outcome.state === 'succeeded') {
        mount(result, notice('ok', `Signed in: profile ${outcome.profile_id} is ready.`));
        await reload();
      } else {
        mount(result, notice('error', `Sign-in failed: ${outcome.reason || 'the attempt expired'}`));
      }
    } catch (e) {
      if (popup && !popup.closed) popup.close();
      showFormError(form, e);
    } finally {
      buttons.forEach((b) => { b.disabled = false; });
    }
  });
  return form;
}

/**
 * Waits for a sign-in attempt to finish: the callback page posts a message to this
 * window, and the attempt's state is also polled (the message may never come, for
 * example when the popup was blocked). The message only triggers a check: the state
 * always comes from the API.
 */
function waitForSignIn(provider, started) {
  const path = `/auth/providers/${encodeURIComponent(provider)}/callback-state`;
  const deadline = new Date(started.expires_at).getTime();
  return new Promise((resolve, reject) => {
    let timer = null;
    const finish = (fn, value) => {
      window.removeEventListener('message', onMessage);
      clearTimeout(timer);
      fn(value);
    };
    const check = async () => {
      clearTimeout(timer);
      try {
        const outcome = await api('GET', path, { query: { attempt_id: started.attempt_id } });
        if (outcome.state !== 'pending') return finish(resolve, outcome);
        if (Date.now() > deadline) return finish(resolve, { state: 'failed', reason: 'the sign-in attempt expired' });
        timer = setTimeout(check, 1500);
      } catch (e) {
        finish(reject, e);
      }
      return undefined;
    };
    function onMessage(event) {
      if (event.origin !== window.location.origin) return;
      if (!event.data || event.data.type !== 'palyra-oauth') return;
      if (event.data.attempt_id && event.data.attempt_id !== started.attempt_id) return;
      check();
    }
    window.addEventListener('message', onMessage);
    timer = setTimeout(check, 1500);
  });
}
