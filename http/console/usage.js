// Usage: tokens per day per agent or model over the last 30 days, as a stacked bar
// chart drawn here in SVG (no library, nothing inline: the CSP allows neither), and a
// table of the same window per group with cost estimates where models are priced.

import { api, messageOf } from './api.js';
import { field, h, mount, notice, select, table, valueOf } from './dom.js';

const SVG = 'http://www.w3.org/2000/svg';
const DAYS = 30;
/** Groups with a colour of their own; the rest are summed as "other". */
const SERIES = 8;
const WIDTH = 900;
const HEIGHT = 260;
const PAD = { left: 64, right: 12, top: 12, bottom: 36 };

/** An SVG element; attributes are set one by one (never markup). */
function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value !== null && value !== undefined) el.setAttribute(key, String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    el.appendChild(typeof child === 'string' ? document.createTextNode(child) : child);
  }
  return el;
}

/** `YYYY-MM-DD` of `date` in the local calendar the report uses (UTC arithmetic). */
function isoDay(date) {
  return date.toISOString().slice(0, 10);
}

/** Every day from `from` to `to` (both `YYYY-MM-DD`), in order. */
function daysBetween(from, to) {
  const out = [];
  const day = new Date(`${from}T00:00:00Z`);
  const end = new Date(`${to}T00:00:00Z`);
  while (day <= end && out.length < 400) {
    out.push(isoDay(day));
    day.setUTCDate(day.getUTCDate() + 1);
  }
  return out;
}

function tokens(x) {
  return x.input_tokens + x.output_tokens;
}

function compact(n) {
  if (n >= 1e9) return `${(n / 1e9).toFixed(1)}G`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}k`;
  return String(n);
}

function cost(c) {
  if (c === undefined || c === null) return '—';
  return `$${c < 0.01 ? c.toFixed(6) : c.toFixed(2)}`;
}

/** The chart: one stacked bar per day, one colour per group (the largest first). */
export function chart(report) {
  const keys = report.groups.slice(0, SERIES).map((g) => g.key);
  const other = report.groups.length > SERIES;
  const series = other ? [...keys, 'other'] : keys;
  const days = daysBetween(report.from, report.to);
  const perDay = new Map(days.map((d) => [d, new Map()]));
  for (const d of report.days) {
    const key = keys.includes(d.key) ? d.key : 'other';
    const day = perDay.get(d.day);
    if (day) day.set(key, (day.get(key) || 0) + tokens(d));
  }
  const totals = days.map((d) => [...perDay.get(d).values()].reduce((a, b) => a + b, 0));
  const max = Math.max(1, ...totals);
  const plotW = WIDTH - PAD.left - PAD.right;
  const plotH = HEIGHT - PAD.top - PAD.bottom;
  const slot = plotW / Math.max(1, days.length);
  const barW = Math.max(2, slot * 0.7);
  const svg = s('svg', {
    id: 'usage-chart', viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: 'img',
    'aria-label': `Tokens per day by ${report.group_by}, ${report.from} to ${report.to} (${report.tz})`,
    class: 'chart',
  });
  // Axis and three gridlines with their values.
  for (const f of [0, 0.5, 1]) {
    const y = PAD.top + plotH * (1 - f);
    svg.appendChild(s('line', { x1: PAD.left, x2: WIDTH - PAD.right, y1: y, y2: y, class: 'chart-grid' }));
    svg.appendChild(s('text', { x: PAD.left - 6, y: y + 4, 'text-anchor': 'end', class: 'chart-label' }, compact(Math.round(max * f))));
  }
  days.forEach((day, i) => {
    const x = PAD.left + i * slot + (slot - barW) / 2;
    let y = PAD.top + plotH;
    series.forEach((key, k) => {
      const n = perDay.get(day).get(key) || 0;
      if (!n) return;
      const height = (n / max) * plotH;
      y -= height;
      svg.appendChild(s('rect', {
        x: x.toFixed(1), y: y.toFixed(1), width: barW.toFixed(1), height: Math.max(0.5, height).toFixed(1),
        class: `series series-${k}`, 'data-day': day, 'data-key': key, 'data-tokens': n,
      }, s('title', {}, `${day} · ${key}: ${n} tokens`)));
    });
    if (i % 5 === 0 || i === days.length - 1) {
      svg.appendChild(s('text', { x: (x + barW / 2).toFixed(1), y: HEIGHT - PAD.bottom + 16, 'text-anchor': 'middle', class: 'chart-label' }, day.slice(5)));
    }
  });
  const legend = h('ul', { class: 'chart-legend', id: 'usage-legend' },
    series.map((key, k) => h('li', {},
      s('svg', { width: 12, height: 12, 'aria-hidden': 'true' }, s('rect', { width: 12, height: 12, class: `series series-${k}` })),
      h('span', { text: key }))));
  return h('div', { class: 'card chart-card' }, svg, legend);
}

export async function renderUsage(main, { query, navigate }) {
  document.title = 'Usage – Palyra console';
  const groupBy = ['agent', 'model', 'profile', 'objective'].includes(query.get('group_by')) ? query.get('group_by') : 'agent';
  const browserZone = Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
  const tz = query.get('tz') || browserZone;
  const form = h('form', { class: 'filters', id: 'usage-filters' },
    field('Group by', select('group_by', [['agent', 'agent'], ['model', 'model'], ['profile', 'profile'], ['objective', 'objective']], groupBy)),
    field('Time zone', h('input', { name: 'tz', value: tz, maxlength: 64 })),
    h('button', { type: 'submit', text: 'Show' }));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const params = new URLSearchParams({ group_by: valueOf(form, 'group_by'), tz: valueOf(form, 'tz') || 'UTC' });
    navigate(`/usage?${params}`);
  });
  const body = h('div', { id: 'usage' });
  mount(main, h('h1', { text: 'Usage' }),
    h('p', { class: 'muted', text: `Tokens per day over the last ${DAYS} days. Costs are estimates from the prices in the daemon's configuration; a model without a price has none.` }),
    form, body);
  let report;
  try {
    report = await api('GET', '/usage', { query: { group_by: groupBy, tz } });
  } catch (e) {
    mount(body, notice('error', `Usage could not be loaded: ${messageOf(e)}`));
    return;
  }
  if (!report.groups.length) {
    mount(body, h('p', { class: 'muted', id: 'usage-empty', text: `No tokens were used from ${report.from} to ${report.to} (${report.tz}).` }));
    return;
  }
  const rows = report.groups.map((g) => h('tr', { 'data-key': g.key },
    h('td', {}, h('code', { text: g.key })),
    h('td', { class: 'num', text: g.input_tokens }),
    h('td', { class: 'num', text: g.output_tokens }),
    h('td', { class: 'num', text: tokens(g) }),
    h('td', { class: 'num', text: g.calls }),
    h('td', { class: 'num', text: cost(g.cost_usd), title: g.unpriced_tokens ? `${g.unpriced_tokens} tokens of unpriced models` : null })));
  mount(body,
    chart(report),
    table([report.group_by, 'Input', 'Output', 'Total', 'Calls', 'Cost (USD)'], rows, { id: 'usage-table' }));
}
