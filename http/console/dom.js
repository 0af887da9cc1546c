// Building the page: elements from data, never from HTML strings, so nothing the
// daemon returns can become markup or script.

/**
 * Creates an element. `attrs`: `class`, `text`, `on<event>` (a function), boolean
 * properties (`hidden`, `disabled`, `checked`, `required`, `selected`), `value`, and
 * any other attribute by name (`null`/`undefined`/`false` leave it out).
 * Children: nodes, strings, numbers, or arrays of them; `null` is skipped.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key === 'text') el.textContent = String(value);
    else if (key === 'value') el.value = value;
    else if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else if (['hidden', 'disabled', 'checked', 'required', 'selected', 'multiple'].includes(key)) {
      el[key] = Boolean(value);
    } else el.setAttribute(key, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.appendChild(child);
    else el.appendChild(document.createTextNode(String(child)));
  }
}

/** Replaces the children of `el`. */
export function mount(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A date-time for people, in the browser's time zone; `—` when absent. */
export function when(iso) {
  if (!iso) return '—';
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso);
  return date.toLocaleString(undefined, {
    year: 'numeric', month: 'short', day: 'numeric',
    hour: '2-digit', minute: '2-digit', second: '2-digit',
  });
}

/** A small coloured label; `tone` picks the colour (ok, warn, bad, info, muted). */
export function badge(text, tone = 'muted') {
  return h('span', { class: `badge badge-${tone}`, text });
}

/** A notice box; `kind` is info, ok, warn or error. */
export function notice(kind, ...children) {
  return h('div', { class: `notice ${kind}`, role: kind === 'error' ? 'alert' : 'status' }, ...children);
}

/** A table that scrolls sideways on a narrow window instead of breaking the page. */
export function table(headers, rows, attrs = {}) {
  return h('div', { class: 'table-wrap' },
    h('table', attrs,
      h('thead', {}, h('tr', {}, headers.map((t) => h('th', { scope: 'col', text: t })))),
      h('tbody', {}, rows)));
}

/** Ids of generated fields, unique in the page (two forms may share field names). */
let fieldCount = 0;

/** A labelled form field; `input` is the control, `hint` an optional help line. */
export function field(label, input, hint) {
  fieldCount += 1;
  const id = input.id || `f${fieldCount}-${input.name || 'field'}`;
  input.id = id;
  return h('div', { class: 'field', 'data-field-for': input.name || null },
    h('label', { for: id, text: label }),
    input,
    hint ? h('small', { class: 'hint', text: hint }) : null,
    h('small', { class: 'field-error', hidden: true }));
}

/** A button that shows it is busy while `action` runs and cannot be clicked twice. */
export function actionButton(label, action, attrs = {}) {
  const button = h('button', { type: 'button', ...attrs, text: label });
  button.addEventListener('click', async () => {
    if (button.disabled) return;
    button.disabled = true;
    button.classList.add('busy');
    try {
      await action(button);
    } finally {
      button.disabled = false;
      button.classList.remove('busy');
    }
  });
  return button;
}

/** A value of a form control, trimmed; `undefined` when empty. */
export function valueOf(form, name) {
  const control = form.elements.namedItem(name);
  if (!control) return undefined;
  const value = String(control.value ?? '').trim();
  return value === '' ? undefined : value;
}

/** A non-negative integer of a form control; `null` when empty. */
export function numberOf(form, name) {
  const value = valueOf(form, name);
  if (value === undefined) return null;
  const n = Number(value);
  return Number.isFinite(n) ? n : value;
}

/** Lines of a textarea, trimmed, empty ones dropped. */
export function linesOf(form, name) {
  return (valueOf(form, name) ?? '').split('\n').map((l) => l.trim()).filter((l) => l !== '');
}

/** A <select> with `options` as `[value, label]` pairs (or plain values). */
export function select(name, options, current, attrs = {}) {
  return h('select', { name, ...attrs },
    options.map((o) => {
      const [value, label] = Array.isArray(o) ? o : [o, o];
      return h('option', { value, text: label, selected: value === current });
    }));
}
