// The console's shell: the session, the hash router, login and logout.
// Pages live in their own modules and render into <main>.

import { api, hasCsrfToken, messageOf, setCsrfToken, setUnauthorizedHandler, showFormError } from './api.js';
import { h, mount, notice } from './dom.js';
import { renderOverview } from './overview.js';
import { renderProfiles } from './profiles.js';
import { renderAgents } from './agents.js';
import { renderObjectives, renderObjective, renderNewObjective } from './objectives.js';
import { renderAudit } from './audit.js';
import { renderNotifications } from './notifications.js';
import { renderOperators, renderTokens } from './operators.js';
import { renderUsage } from './usage.js';

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const who = document.getElementById('who');
const flashBox = document.getElementById('flash');
const logoutButton = document.getElementById('logout');

/** The console session (login's answer or `GET /auth/session`), or null when logged out. */
let session = null;

/** Pages by path pattern; `:id` captures one segment. */
const ROUTES = [
  ['/', renderOverview, 'overview'],
  ['/profiles', renderProfiles, 'profiles'],
  ['/agents', renderAgents, 'agents'],
  ['/objectives', renderObjectives, 'objectives'],
  ['/objectives/new', renderNewObjective, 'objectives'],
  ['/objectives/:id', renderObjective, 'objectives'],
  ['/audit', renderAudit, 'audit'],
  ['/notifications', renderNotifications, 'notifications'],
  ['/operators', renderOperators, 'operators'],
  ['/tokens', renderTokens, 'tokens'],
  ['/usage', renderUsage, 'usage'],
];

/** A message above the page until the next navigation. */
export function flash(kind, message) {
  mount(flashBox, notice(kind, message));
  flashBox.hidden = false;
  // It sits above the page: bring it into view after an action lower down.
  flashBox.scrollIntoView({ block: 'nearest' });
}

export function clearFlash() {
  flashBox.replaceChildren();
  flashBox.hidden = true;
}

/** A flash message to show once the next page has rendered. */
let pendingFlash = null;

/** Goes to a console path (`/objectives?state=active`), then shows `message`
 * (`[kind, text]`) if given. */
export function navigate(path, message = null) {
  pendingFlash = message;
  const target = `#${path}`;
  if (window.location.hash === target) route();
  else window.location.hash = target;
}

function parseHash() {
  const raw = window.location.hash.replace(/^#/, '') || '/';
  const [path, search = ''] = raw.split('?');
  return { path: path || '/', query: new URLSearchParams(search) };
}

function match(path) {
  const parts = path.split('/').filter(Boolean);
  for (const [pattern, render, section] of ROUTES) {
    const want = pattern.split('/').filter(Boolean);
    if (want.length !== parts.length) continue;
    const params = {};
    const ok = want.every((segment, i) => {
      if (segment.startsWith(':')) {
        params[segment.slice(1)] = decodeURIComponent(parts[i]);
        return true;
      }
      return segment === parts[i];
    });
    if (ok) return { render, section, params };
  }
  return null;
}

/** Renders the page the hash names. */
async function route() {
  clearFlash();
  const message = pendingFlash;
  pendingFlash = null;
  const { path, query } = parseHash();
  if (!session) {
    renderLogin(query);
    return;
  }
  if (path === '/login') {
    navigate('/');
    return;
  }
  const found = match(path);
  for (const link of nav.querySelectorAll('a')) {
    if (found && link.dataset.section === found.section) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  if (!found) {
    mount(main, h('h1', { text: 'Not found' }),
      notice('error', `The console has no page at ${path}.`),
      h('p', {}, h('a', { href: '#/', text: 'Go to the overview' })));
    return;
  }
  mount(main, h('p', { class: 'muted', text: 'Loading…' }));
  try {
    await found.render(main, { params: found.params, query, navigate, flash, session });
    if (message) flash(...message);
  } catch (e) {
    // A page that cannot load says why instead of staying blank.
    mount(main, h('h1', { text: 'This page could not be loaded' }), notice('error', messageOf(e)));
  }
}

function showSession() {
  const loggedIn = Boolean(session);
  nav.hidden = !loggedIn;
  logoutButton.hidden = !loggedIn;
  // The signed-in operator (or root) and what they may do.
  who.textContent = loggedIn ? `${session.principal} · ${session.role}` : '';
  document.body.dataset.role = loggedIn ? session.role : '';
  document.body.classList.toggle('logged-out', !loggedIn);
}

/** A new session (login's answer carries its CSRF token), the current one
 * (`GET /auth/session` does not: the stored token stays), or null at logout. */
function setSession(value) {
  session = value;
  if (!value) setCsrfToken(null);
  else if (value.csrf_token) setCsrfToken(value.csrf_token);
  showSession();
}

function renderLogin(query) {
  document.title = 'Log in – Palyra console';
  const form = h('form', { class: 'card login', id: 'login-form', novalidate: true },
    h('h1', { text: 'Log in to Palyra' }),
    h('p', { class: 'muted', text: 'Sign in with your operator id and password, or paste the daemon\'s admin token (the file admin.token in its data dir, or PALYRA_ADMIN_TOKEN). '
      + 'Or run “palyra console open” to arrive already logged in.' }),
    h('div', { class: 'field', 'data-field-for': 'operator_id' },
      h('label', { for: 'operator-id', text: 'Operator id' }),
      h('input', { id: 'operator-id', name: 'operator_id', autocomplete: 'username' }),
      h('small', { class: 'field-error', hidden: true })),
    h('div', { class: 'field', 'data-field-for': 'password' },
      h('label', { for: 'operator-password', text: 'Password' }),
      h('input', { id: 'operator-password', name: 'password', type: 'password', autocomplete: 'current-password' }),
      h('small', { class: 'field-error', hidden: true })),
    h('div', { class: 'field', 'data-field-for': 'admin_token' },
      h('label', { for: 'admin-token', text: 'Or the admin token' }),
      h('input', { id: 'admin-token', name: 'admin_token', type: 'password', autocomplete: 'off' }),
      h('small', { class: 'field-error', hidden: true })),
    h('div', { class: 'form-error notice error', hidden: true, role: 'alert' }),
    h('button', { type: 'submit', class: 'primary', text: 'Log in' }));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const token = form.elements.namedItem('admin_token').value;
    const operatorId = form.elements.namedItem('operator_id').value.trim();
    const password = form.elements.namedItem('password').value;
    if (!token && !(operatorId && password)) {
      form.querySelector('.form-error').textContent = 'Enter your operator id and password, or the admin token.';
      form.querySelector('.form-error').hidden = false;
      return;
    }
    const button = form.querySelector('button');
    button.disabled = true;
    try {
      const body = operatorId && !token
        ? { operator_id: operatorId, password, device_id: 'web-console' }
        : { admin_token: token, device_id: 'web-console' };
      const answer = await api('POST', '/auth/login', { body, quiet401: true });
      form.elements.namedItem('admin_token').value = '';
      form.elements.namedItem('password').value = '';
      setSession(answer);
      const { path } = parseHash();
      navigate(path === '/login' ? '/' : path);
    } catch (e) {
      showFormError(form, e);
    } finally {
      button.disabled = false;
    }
  });
  const reason = query.get('reason');
  mount(main,
    reason === 'expired' ? notice('warn', 'Your session has ended. Log in again.') : null,
    reason === 'logged-out' ? notice('ok', 'You are logged out.') : null,
    form);
  form.elements.namedItem('operator_id').focus();
}

async function logout() {
  logoutButton.disabled = true;
  try {
    await api('POST', '/auth/logout', { quiet401: true });
  } catch (e) {
    // A session that already ended is logged out all the same.
    if (e.status !== 401) {
      flash('error', `Logout failed: ${messageOf(e)}`);
      return;
    }
  } finally {
    logoutButton.disabled = false;
  }
  setSession(null);
  window.location.hash = '#/login?reason=logged-out';
}

setUnauthorizedHandler(() => {
  if (!session) return;
  setSession(null);
  window.location.hash = '#/login?reason=expired';
});

window.addEventListener('error', (event) => flash('error', `The console hit an error: ${event.message}`));
window.addEventListener('unhandledrejection', (event) => flash('error', messageOf(event.reason)));
window.addEventListener('hashchange', route);
logoutButton.addEventListener('click', logout);

async function start() {
  let problem = null;
  // Without this tab's CSRF token the cookie alone is refused: log in (or open a
  // handoff link) in this tab.
  if (hasCsrfToken()) {
    try {
      setSession(await api('GET', '/auth/session', { quiet401: true }));
    } catch (e) {
      setSession(null);
      if (e.status !== 401 && e.code !== 'csrf_rejected') problem = e;
    }
  } else {
    setSession(null);
  }
  await route();
  if (problem) flash('error', messageOf(problem));
}

start();
