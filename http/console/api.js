// The JSON API under /console/v1: the session cookie rides along by itself (same
// origin), and every request, reads included, carries the session's CSRF token. The
// daemon answers the token only at login and handoff redemption, so it is kept in
// sessionStorage: this tab's, gone when the tab closes, and never sent to another port
// of the host the way the cookie is.

import { h, mount } from './dom.js';

const BASE = '/console/v1';

const CSRF_KEY = 'palyra.csrf';

/** The session's CSRF token, from login or a handoff (kept across reloads of the tab). */
let csrfToken = readStoredCsrf();
/** Called when the daemon answers 401 to a request made with a session. */
let onUnauthorized = () => {};

function readStoredCsrf() {
  try {
    return window.sessionStorage.getItem(CSRF_KEY);
  } catch {
    return null;
  }
}

/** Keeps the token of a new session, or forgets it (`null`) at logout. */
export function setCsrfToken(token) {
  csrfToken = token;
  try {
    if (token) window.sessionStorage.setItem(CSRF_KEY, token);
    else window.sessionStorage.removeItem(CSRF_KEY);
  } catch {
    // Storage refused (a private mode): the token lives until the page reloads.
  }
}

/** Whether this tab holds a session's CSRF token (without one no request can succeed). */
export function hasCsrfToken() {
  return Boolean(csrfToken);
}

export function setUnauthorizedHandler(handler) {
  onUnauthorized = handler;
}

/** An error answer of the API: `{"error": {"code", "message"}}`, or what stood for it. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }

  /** The field a validation error names, if any (`automation.schedule: ...`). */
  get field() {
    const quoted = /^invalid field `([^`]+)`/.exec(this.message);
    if (quoted) return quoted[1];
    const named = /^([a-z_][a-z0-9_]*(?:\.[a-z0-9_]+)*): /.exec(this.message);
    return named ? named[1] : null;
  }

  /** The message without the field name it starts with. */
  get fieldMessage() {
    return this.message.replace(/^invalid field `[^`]+`: /, '').replace(/^[a-z_][a-z0-9_.]*: /, '');
  }
}

/**
 * One request. `body` is sent as JSON; `query` is an object of parameters (empty
 * values left out). Resolves to the parsed body (`null` for 204), rejects with
 * `ApiError`.
 */
export async function api(method, path, { body, query, quiet401 = false } = {}) {
  let url = BASE + path;
  if (query) {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(query)) {
      if (value !== undefined && value !== null && value !== '') params.set(key, value);
    }
    const text = params.toString();
    if (text) url += `?${text}`;
  }
  const headers = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (csrfToken) headers['x-palyra-csrf-token'] = csrfToken;
  let response;
  try {
    response = await fetch(url, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
      cache: 'no-store',
    });
  } catch (e) {
    throw new ApiError(0, 'unreachable', `The daemon cannot be reached (${e.message}).`);
  }
  if (response.status === 204) return null;
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    const error = data && data.error;
    const apiError = new ApiError(
      response.status,
      error?.code ?? `http_${response.status}`,
      error?.message ?? `The daemon answered ${response.status} ${response.statusText}.`,
    );
    if (response.status === 401 && !quiet401) onUnauthorized(apiError);
    throw apiError;
  }
  return data;
}

/** Every page of a paged list (`items`, `next_after`), up to `maxPages`. */
export async function listAll(path, query = {}, maxPages = 20) {
  const items = [];
  let after;
  for (let page = 0; page < maxPages; page += 1) {
    const answer = await api('GET', path, { query: { ...query, limit: 500, after } });
    items.push(...answer.items);
    if (!answer.next_after) return { items, complete: true };
    after = answer.next_after;
  }
  return { items, complete: false };
}

/** A message for people from anything thrown. */
export function messageOf(error) {
  if (error instanceof ApiError) return error.message;
  return `Something went wrong in the console: ${error && error.message ? error.message : error}`;
}

/**
 * Shows an error of a form: the message in the form's error box and, when the API
 * names a field, under that field too (its input gets `aria-invalid`).
 */
export function showFormError(form, error) {
  clearFormErrors(form);
  const box = form.querySelector('.form-error');
  const name = error instanceof ApiError ? error.field : null;
  const wrapper = name ? form.querySelector(`[data-field-for="${CSS.escape(name)}"]`) : null;
  if (wrapper) {
    const slot = wrapper.querySelector('.field-error');
    slot.textContent = error.fieldMessage;
    slot.hidden = false;
    const input = wrapper.querySelector('input, select, textarea');
    input?.setAttribute('aria-invalid', 'true');
    input?.focus();
  }
  if (box) {
    // The message stands under its field; the box by the button points there.
    const label = wrapper?.querySelector('label')?.textContent;
    mount(box, h('strong', { text: 'Not saved: ' }), label ? `see ${label}.` : messageOf(error));
    box.hidden = false;
  }
}

export function clearFormErrors(form) {
  for (const slot of form.querySelectorAll('.field-error')) {
    slot.textContent = '';
    slot.hidden = true;
  }
  for (const input of form.querySelectorAll('[aria-invalid]')) input.removeAttribute('aria-invalid');
  const box = form.querySelector('.form-error');
  if (box) box.hidden = true;
}
