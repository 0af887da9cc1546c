// Objectives: the filtered list, the create and edit form (with the API's validation
// errors under their fields), lifecycle buttons and the run history.

import { api, clearFormErrors, listAll, messageOf, showFormError } from './api.js';
import {
  actionButton, badge, field, h, linesOf, mount, notice, numberOf, select, table, valueOf, when,
} from './dom.js';
import { STATE_TONES } from './overview.js';
import { transcriptView } from './transcript.js';

const KINDS = [['objective', 'Objective (a goal)'], ['standing_order', 'Standing order'],
  ['heartbeat', 'Heartbeat'], ['program', 'Program (steps)']];
const STATES = ['draft', 'active', 'paused', 'cancelled', 'archived'];
const PAGE = 50;

/** The lifecycle table of the daemon (TRANSITIONS in actors/src/objectives.rs). */
const ACTIONS = [
  ['fire', 'Run now', ['draft', 'active', 'paused']],
  ['activate', 'Activate', ['draft']],
  ['pause', 'Pause', ['active']],
  ['resume', 'Resume', ['paused']],
  ['cancel', 'Cancel', ['draft', 'active', 'paused']],
  ['archive', 'Archive', ['draft', 'active', 'paused', 'cancelled']],
];
/** Actions that cannot be undone ask first. */
const CONFIRM = { cancel: 'Cancel this objective? It will not run again.', archive: 'Archive this objective? Archiving is final.' };

const RUN_TONES = {
  queued: 'info', running: 'info', succeeded: 'ok', failed: 'bad', skipped_budget: 'warn',
  skipped_overlap: 'warn', missed: 'warn', interrupted: 'bad', cancelled: 'warn',
};

const label = (value) => String(value).replace(/_/g, ' ');
const objectivePath = (id) => `/objectives/${encodeURIComponent(id)}`;

function scheduleText(o) {
  if (!o.automation) return 'on demand';
  const a = o.automation;
  return `${a.schedule} (${a.timezone})${a.enabled ? '' : ', disabled'}`;
}

function usageText(o) {
  const runs = o.budget.max_runs == null ? `${o.usage.runs}` : `${o.usage.runs} / ${o.budget.max_runs}`;
  const tokens = o.budget.max_tokens == null ? `${o.usage.tokens}` : `${o.usage.tokens} / ${o.budget.max_tokens}`;
  return `${runs} runs, ${tokens} tokens`;
}

export async function renderObjectives(main, { query, navigate }) {
  document.title = 'Objectives – Palyra console';
  const filters = {
    kind: query.get('kind') || '', state: query.get('state') || '', agent_id: query.get('agent_id') || '',
  };
  const after = query.get('after') || undefined;
  const [agents, page] = await Promise.all([
    listAll('/agents'),
    api('GET', '/objectives', { query: { ...filters, limit: PAGE, after } }),
  ]);
  const filterForm = h('form', { class: 'filters', id: 'objective-filters' },
    field('Kind', select('kind', [['', 'any'], ...KINDS.map(([v]) => [v, label(v)])], filters.kind)),
    field('State', select('state', [['', 'any'], ...STATES.map((s) => [s, s])], filters.state)),
    field('Agent', select('agent_id', [['', 'any'], ...agents.items.map((a) => [a.agent_id, a.agent_id])], filters.agent_id)),
    h('button', { type: 'submit', text: 'Filter' }));
  filterForm.addEventListener('submit', (event) => {
    event.preventDefault();
    const params = new URLSearchParams();
    for (const name of ['kind', 'state', 'agent_id']) {
      const value = valueOf(filterForm, name);
      if (value) params.set(name, value);
    }
    navigate(`/objectives${params.toString() ? `?${params}` : ''}`);
  });
  for (const control of filterForm.querySelectorAll('select')) {
    control.addEventListener('change', () => filterForm.requestSubmit());
  }
  const rows = page.items.map((o) => h('tr', { 'data-objective-id': o.objective_id },
    h('td', {}, h('a', { href: `#${objectivePath(o.objective_id)}`, text: o.name }), h('small', { class: 'block muted', text: o.objective_id })),
    h('td', { text: o.agent_id }),
    h('td', { text: label(o.kind) }),
    h('td', {}, badge(o.state, STATE_TONES[o.state]), o.state_reason ? h('small', { class: 'block muted', text: label(o.state_reason) }) : null),
    h('td', { text: scheduleText(o) }),
    h('td', { text: usageText(o) }),
    h('td', { text: when(o.next_run_at) }),
    h('td', {}, o.last_run ? [badge(label(o.last_run.status), RUN_TONES[o.last_run.status]), h('small', { class: 'block', text: when(o.last_run.at) })] : '—')));
  const next = new URLSearchParams({ ...Object.fromEntries(Object.entries(filters).filter(([, v]) => v)) });
  if (page.next_after) next.set('after', page.next_after);
  mount(main,
    h('div', { class: 'title-row' },
      h('h1', { text: 'Objectives' }),
      h('a', { class: 'button primary push write', href: `#/objectives/new${filters.agent_id ? `?agent_id=${encodeURIComponent(filters.agent_id)}` : ''}`, text: 'New objective' })),
    filterForm,
    rows.length
      ? table(['Objective', 'Agent', 'Kind', 'State', 'Schedule', 'Usage', 'Next run', 'Last run'], rows, { id: 'objectives-table' })
      : h('p', { class: 'muted', text: after || Object.values(filters).some(Boolean) ? 'No objectives match.' : 'No objectives yet.' }),
    h('div', { class: 'pager' },
      after ? h('a', { class: 'button', href: `#/objectives${Object.values(filters).some(Boolean) ? `?${new URLSearchParams(Object.entries(filters).filter(([, v]) => v))}` : ''}`, text: 'First page' }) : null,
      page.next_after ? h('a', { class: 'button', href: `#/objectives?${next}`, text: 'Next page' }) : null));
}

/** The create or edit form; `objective` is the record being edited, or null. */
function objectiveForm(objective, agents, presetAgent, onSaved) {
  const editing = Boolean(objective);
  const a = objective?.automation;
  const zones = typeof Intl.supportedValuesOf === 'function' ? Intl.supportedValuesOf('timeZone') : [];
  const number = (name, value, attrs = {}) => h('input', { name, type: 'number', min: 0, step: 1, value: value ?? '', ...attrs });
  const form = h('form', { class: 'card objective-form', id: 'objective-form', novalidate: true },
    h('h2', { text: editing ? 'Edit' : 'New objective' }),
    editing ? null : h('div', { class: 'row' },
      field('Agent', select('agent_id', agents.map((x) => [x.agent_id, `${x.display_name} (${x.agent_id})`]), presetAgent)),
      field('Kind', select('kind', KINDS, 'objective')),
      field('Objective id', h('input', { name: 'objective_id', maxlength: 128, spellcheck: 'false', placeholder: 'generated when empty' }))),
    field('Name', h('input', { name: 'name', required: true, maxlength: 200, value: objective?.name ?? '' })),
    field('Prompt', h('textarea', { name: 'prompt', rows: 4, value: objective?.prompt ?? '' }),
      'what the model is asked on each run (programs use steps; heartbeats may leave it empty)'),
    field('Steps', h('textarea', { name: 'steps', rows: 3, value: (objective?.steps ?? []).join('\n') }),
      'programs only: one prompt per line, run in order'),
    h('fieldset', {}, h('legend', { text: 'Schedule' }),
      h('div', { class: 'row' },
        field('Cron schedule', h('input', { name: 'automation.schedule', spellcheck: 'false', value: a?.schedule ?? '', placeholder: '0 8 * * 1-5' }),
          editing && a ? 'cron (5 or 6 fields) or @daily, @hourly, @weekly' : 'empty: on demand only (heartbeats default to every 30 minutes)'),
        field('Time zone', h('input', { name: 'automation.timezone', list: 'zones', spellcheck: 'false', value: a?.timezone ?? 'UTC' }), 'IANA, for example Europe/Prague'),
        h('datalist', { id: 'zones' }, zones.map((z) => h('option', { value: z })))),
      h('div', { class: 'row' },
        field('Missed firings', select('automation.misfire', [['skip', 'skip (record them)'], ['run_once', 'run once after a restart']], a?.misfire ?? 'skip')),
        field('Overlap', select('automation.overlap', [['forbid', 'forbid (skip while running)'], ['queue_one', 'queue one']], a?.overlap ?? 'forbid')),
        field('Jitter (s)', number('automation.jitter_s', a?.jitter_s ?? 0, { max: 3600 }))),
      h('label', { class: 'check' }, h('input', { type: 'checkbox', name: 'automation.enabled', checked: a ? a.enabled : true }), ' Schedule enabled')),
    h('fieldset', {}, h('legend', { text: 'Budget and policy' }),
      h('div', { class: 'row' },
        field('Max runs', number('budget.max_runs', objective?.budget.max_runs), 'empty: no limit'),
        field('Max tokens', number('budget.max_tokens', objective?.budget.max_tokens), 'empty: no limit'),
        field('Priority', number('priority', objective?.priority ?? 0, { min: null })))),
    editing ? null : h('label', { class: 'check' }, h('input', { type: 'checkbox', name: 'activate' }), ' Activate now (otherwise it starts as a draft)'),
    h('div', { class: 'form-error notice error', hidden: true, role: 'alert' }),
    h('button', { type: 'submit', class: 'primary', text: editing ? 'Save changes' : 'Create objective' }));

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearFormErrors(form);
    const kind = editing ? objective.kind : form.elements.namedItem('kind').value;
    const schedule = valueOf(form, 'automation.schedule');
    const automation = {
      schedule,
      timezone: valueOf(form, 'automation.timezone'),
      misfire: valueOf(form, 'automation.misfire'),
      overlap: valueOf(form, 'automation.overlap'),
      jitter_s: numberOf(form, 'automation.jitter_s') ?? undefined,
      enabled: form.elements.namedItem('automation.enabled').checked,
    };
    // Without a schedule there is nothing to automate, except for heartbeats (which
    // default to every 30 minutes) and objectives that already have a schedule (it stays).
    const sendAutomation = Boolean(schedule) || kind === 'heartbeat' || Boolean(a);
    const body = {
      name: valueOf(form, 'name') ?? '',
      prompt: form.elements.namedItem('prompt').value,
      steps: linesOf(form, 'steps'),
      priority: numberOf(form, 'priority') ?? 0,
      budget: { max_runs: numberOf(form, 'budget.max_runs'), max_tokens: numberOf(form, 'budget.max_tokens') },
      automation: sendAutomation ? automation : undefined,
    };
    const button = form.querySelector('button[type=submit]');
    button.disabled = true;
    try {
      const saved = editing
        ? await api('PATCH', objectivePath(objective.objective_id), { body })
        : await api('POST', '/objectives', {
          body: {
            ...body,
            objective_id: valueOf(form, 'objective_id'),
            agent_id: valueOf(form, 'agent_id') ?? '',
            kind,
            activate: form.elements.namedItem('activate').checked,
          },
        });
      await onSaved(saved);
    } catch (e) {
      showFormError(form, e);
    } finally {
      button.disabled = false;
    }
  });
  return form;
}

export async function renderNewObjective(main, { query, navigate }) {
  document.title = 'New objective – Palyra console';
  const agents = (await listAll('/agents')).items;
  if (!agents.length) {
    mount(main, h('h1', { text: 'New objective' }),
      notice('warn', 'Objectives belong to an agent: ', h('a', { href: '#/agents', text: 'create an agent first' }), '.'));
    return;
  }
  mount(main,
    h('p', {}, h('a', { href: '#/objectives', text: '← Objectives' })),
    objectiveForm(null, agents, query.get('agent_id') || agents[0].agent_id, async (saved) => {
      navigate(objectivePath(saved.objective_id), ['ok', `Created ${saved.name} (${saved.state}).`]);
    }));
}

/** Every candidate a run tried or passed over, in order. */
function attemptsList(attempts) {
  if (!attempts.length) return '—';
  return h('ol', { class: 'attempts' }, attempts.map((a) => h('li', { 'data-outcome': a.outcome },
    h('code', { text: `${a.profile_id} · ${a.model}` }), ' ',
    badge(label(a.outcome), a.outcome === 'ok' ? 'ok' : (a.outcome === 'skipped' ? 'muted' : 'warn')),
    a.outcome === 'skipped' ? null : h('small', { class: 'muted', text: ` ${a.latency_ms} ms` }),
    a.detail ? h('small', { class: 'block muted', text: a.detail }) : null)));
}

function runsTable(runs) {
  if (!runs.length) return h('p', { class: 'muted', id: 'no-runs', text: 'No runs yet.' });
  return table(['Run', 'Trigger', 'Status', 'Scheduled for', 'Started', 'Finished', 'Tokens (in + out)', 'Attempts', 'Output'],
    runs.map((r) => h('tr', { 'data-run-id': r.run_id, 'data-status': r.status },
      h('td', { text: r.run_id }),
      h('td', { text: label(r.trigger) }),
      h('td', {}, badge(label(r.status), RUN_TONES[r.status])),
      h('td', { text: when(r.scheduled_for) }),
      h('td', { text: when(r.started_at) }),
      h('td', { text: when(r.finished_at) }),
      h('td', { class: 'num', text: `${r.tokens} (${r.prompt_tokens ?? 0} + ${r.completion_tokens ?? 0})` }),
      h('td', { class: 'attempts' }, attemptsList(r.attempts || [])),
      h('td', { class: 'output' },
        r.error ? h('div', { class: 'error-text', text: r.error }) : null,
        r.output
          ? (r.output.length > 160
            ? h('details', {}, h('summary', { text: `${r.output.slice(0, 160)}…` }), h('pre', { text: r.output }))
            : h('pre', { text: r.output }))
          : (r.error ? null : '—'),
        r.transcript && r.transcript.length ? transcriptView(r.transcript) : null))),
    { id: 'runs-table' });
}

export async function renderObjective(main, { params, flash }) {
  const id = params.id;
  const [objective, agents, firstRuns] = await Promise.all([
    api('GET', objectivePath(id)), listAll('/agents'), api('GET', `${objectivePath(id)}/runs`, { query: { limit: PAGE } }),
  ]);
  document.title = `${objective.name} – Palyra console`;
  const runsArea = h('div', { id: 'runs' });
  const olderArea = h('div', { class: 'pager' });
  let shown = firstRuns.items;
  let watching = false;

  const showRuns = (page, append) => {
    shown = append ? shown.concat(page.items) : page.items;
    mount(runsArea, runsTable(shown));
    mount(olderArea, page.next_before ? actionButton('Older runs', async () => {
      try {
        showRuns(await api('GET', `${objectivePath(id)}/runs`, { query: { limit: PAGE, before: page.next_before } }), true);
      } catch (e) { flash('error', messageOf(e)); }
    }) : null);
  };

  /** Follows the newest runs until none is queued or running (at most a minute). */
  const watchRuns = async () => {
    if (watching) return;
    watching = true;
    try {
      for (let i = 0; i < 60 && document.body.contains(runsArea); i += 1) {
        const page = await api('GET', `${objectivePath(id)}/runs`, { query: { limit: PAGE } });
        showRuns(page, false);
        if (!page.items.some((r) => r.status === 'queued' || r.status === 'running')) break;
        await new Promise((resolve) => { setTimeout(resolve, 1000); });
      }
    } finally {
      watching = false;
    }
  };

  const reloadAll = async () => {
    render(await api('GET', objectivePath(id)));
  };

  const reason = h('input', { name: 'reason', maxlength: 500, placeholder: 'reason (optional)', 'aria-label': 'Reason for the action' });
  const lifecycleArea = h('div', { class: 'lifecycle', id: 'lifecycle' });

  const act = async (action) => {
    try {
      await api('POST', `${objectivePath(id)}/lifecycle`, { body: { action, reason: reason.value.trim() || undefined } });
      reason.value = '';
      flash('ok', action === 'fire' ? 'Fired: the run is recorded below.' : `Done: ${action}.`);
      await reloadAll();
      await watchRuns();
    } catch (e) {
      flash('error', `${action} failed: ${messageOf(e)}`);
    }
  };

  function showLifecycle(state) {
    const allowed = ACTIONS.filter(([, , from]) => from.includes(state));
    mount(lifecycleArea,
      allowed.length ? allowed.map(([action, text]) => (CONFIRM[action]
        ? h('button', { type: 'button', class: 'danger', 'data-action': action, text, onclick: () => confirmAction(action, text, state) })
        : actionButton(text, () => act(action), { 'data-action': action, class: action === 'fire' ? 'primary' : null })))
        : h('span', { class: 'muted', text: 'Archived: no further actions.' }),
      allowed.length ? reason : null);
  }

  function confirmAction(action, text, state) {
    mount(lifecycleArea,
      h('span', { class: 'confirm', text: CONFIRM[action] }),
      actionButton(`Yes, ${text.toLowerCase()}`, () => act(action), { class: 'danger' }),
      h('button', { type: 'button', text: 'No', onclick: () => showLifecycle(state) }));
  }

  function render(o) {
    const facts = [
      ['Agent', o.agent_id],
      ['Kind', label(o.kind)],
      ['Schedule', scheduleText(o)],
      ['Next run', when(o.next_run_at)],
      ['Last run', o.last_run ? `${label(o.last_run.status)} at ${when(o.last_run.at)}` : '—'],
      ['Usage', usageText(o)],
      ['Policies', o.automation ? `missed firings: ${label(o.automation.misfire)}; overlap: ${label(o.automation.overlap)}; jitter ${o.automation.jitter_s} s` : '—'],
      ['Priority', String(o.priority)],
      ['Created', when(o.created_at)],
      ['Updated', when(o.updated_at)],
    ];
    showLifecycle(o.state);
    mount(main,
      h('p', {}, h('a', { href: '#/objectives', text: '← Objectives' })),
      h('div', { class: 'title-row' },
        h('h1', { text: o.name }),
        badge(o.state, STATE_TONES[o.state]),
        o.state_reason ? h('span', { class: 'muted', text: label(o.state_reason) } ) : null),
      h('p', { class: 'muted', text: o.objective_id }),
      lifecycleArea,
      h('section', { class: 'card', id: 'details' }, h('h2', { text: 'Details' }),
        h('dl', { class: 'facts wide' }, facts.map(([k, v]) => [h('dt', { text: k }), h('dd', { text: v })]))),
      h('section', { class: 'card', id: 'run-history' },
        h('div', { class: 'title-row' }, h('h2', { text: 'Run history' }),
          actionButton('Refresh', async () => {
            try { await watchRuns(); } catch (e) { flash('error', messageOf(e)); }
          }, { class: 'push' })),
        runsArea,
        olderArea),
      o.state === 'archived'
        ? h('section', { class: 'card' }, h('h2', { text: 'Edit' }), h('p', { class: 'muted', text: 'Archived objectives cannot be changed.' }))
        : objectiveForm(o, agents.items, o.agent_id, async (saved) => {
          flash('ok', `Saved ${saved.name}.`);
          render(saved);
        }));
    mount(runsArea, runsTable(shown));
  }

  render(objective);
  showRuns(firstRuns, false);
  if (firstRuns.items.some((r) => r.status === 'queued' || r.status === 'running')) watchRuns();
}
