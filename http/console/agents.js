// Agents: the list, and one form that creates an agent or edits the chosen one.

import { api, clearFormErrors, listAll, showFormError } from './api.js';
import { field, h, linesOf, mount, notice, numberOf, select, table, valueOf, when } from './dom.js';

// The tools an agent can enable (the API's AgentTool names), with what each offers.
const TOOLS = [
  ['workspace_read', 'workspace_list and workspace_read in the workspace roots'],
  ['workspace_write', 'workspace_write in the workspace roots'],
  ['http_fetch', 'http_fetch of public URLs'],
  ['browser', 'the headless browser'],
];

export async function renderAgents(main, { flash }) {
  document.title = 'Agents – Palyra console';
  const [agents, profiles] = await Promise.all([listAll('/agents'), listAll('/auth/profiles')]);
  const listArea = h('div', { id: 'agent-list' });
  const formArea = h('div', { id: 'agent-form-area' });

  const showList = (items) => {
    if (!items.length) {
      mount(listArea, h('p', { class: 'muted', text: 'No agents yet: create one below.' }));
      return;
    }
    mount(listArea, table(['Agent', 'Model', 'Auth profile or candidates', 'Workspace roots', 'Tools', 'Updated', ''],
      items.map((a) => h('tr', { 'data-agent-id': a.agent_id },
        h('td', {}, h('strong', { text: a.display_name }), h('small', { class: 'block muted', text: a.agent_id })),
        h('td', { text: a.model }),
        h('td', {}, a.model_profiles && a.model_profiles.length
          ? h('ol', { class: 'candidates' }, a.model_profiles.map((c) => h('li', {}, h('code', { text: `${c.profile_id} · ${c.model}` }))))
          : (a.default_model_profile || 'openai resolution')),
        h('td', {}, a.workspace_roots.length ? a.workspace_roots.map((r) => h('code', { class: 'block', text: r })) : '—'),
        h('td', { class: 'tools' }, (a.tools ?? []).length
          ? [a.tools.map((t) => h('code', { class: 'block', text: t })),
            h('small', { class: 'muted', text: `at most ${a.max_tool_calls ?? 'the default'} calls a run` })]
          : '—'),
        h('td', { text: when(a.updated_at) }),
        h('td', { class: 'actions' },
          h('button', { type: 'button', class: 'write', text: 'Edit', onclick: () => showForm(a) }),
          h('a', { class: 'button', href: `#/objectives?agent_id=${encodeURIComponent(a.agent_id)}`, text: 'Objectives' })))),
      { id: 'agents-table' }));
  };

  const reload = async () => showList((await listAll('/agents')).items);

  function showForm(agent) {
    const editing = Boolean(agent);
    const profileOptions = [['', 'None: use the agent\'s openai resolution'],
      ...profiles.items.map((p) => [p.profile_id, `${p.profile_name} (${p.profile_id}, ${p.provider})`])];
    const form = h('form', { class: 'card', id: 'agent-form', novalidate: true },
      h('h2', { text: editing ? `Edit agent ${agent.agent_id}` : 'Create an agent' }),
      editing ? null : field('Agent id', h('input', { name: 'agent_id', required: true, maxlength: 128, spellcheck: 'false' }),
        'lowercase a-z 0-9 . _ -'),
      field('Display name', h('input', { name: 'display_name', maxlength: 128, value: agent?.display_name ?? '' })),
      field('Model', h('input', { name: 'model', maxlength: 128, value: agent?.model ?? '', placeholder: 'gpt-4o-mini' }),
        'required unless candidates are given'),
      field('Auth profile', select('default_model_profile', profileOptions, agent?.default_model_profile ?? '')),
      field('Candidates', h('textarea', { name: 'model_profiles', rows: 3, spellcheck: 'false',
        value: (agent?.model_profiles ?? []).map((c) => `${c.profile_id} ${c.model}`).join('\n') }),
        'tried in order, one "profile-id model" per line; empty: the auth profile and model above'),
      field('Workspace roots', h('textarea', { name: 'workspace_roots', rows: 3, spellcheck: 'false', value: (agent?.workspace_roots ?? []).join('\n') }),
        'absolute paths, one per line'),
      h('fieldset', { class: 'kinds', 'data-field-for': 'tools' }, h('legend', { text: 'Tools' }),
        TOOLS.map(([name, what]) => h('label', { class: 'check' },
          h('input', { type: 'checkbox', name: 'tools', value: name, checked: (agent?.tools ?? []).includes(name) }),
          h('span', {}, h('code', { text: name }), ` ${what}`))),
        h('small', { class: 'field-error', hidden: true })),
      field('Max tool calls', h('input', { name: 'max_tool_calls', type: 'number', min: 1, max: 1000,
        value: agent?.max_tool_calls ?? '' }), 'per run, 1 to 1000; empty: the default'),
      h('div', { class: 'form-error notice error', hidden: true, role: 'alert' }),
      h('div', { class: 'buttons' },
        h('button', { type: 'submit', class: 'primary', text: editing ? 'Save changes' : 'Create agent' }),
        editing ? h('button', { type: 'button', text: 'Cancel', onclick: () => showForm(null) }) : null));
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      clearFormErrors(form);
      const profile = valueOf(form, 'default_model_profile') ?? null;
      const body = {
        display_name: valueOf(form, 'display_name'),
        model: valueOf(form, 'model') ?? '',
        workspace_roots: linesOf(form, 'workspace_roots'),
        model_profiles: linesOf(form, 'model_profiles').map((line) => {
          const [profile_id = '', ...rest] = line.trim().split(/\s+/);
          return { profile_id, model: rest.join(' ') };
        }),
        tools: [...form.querySelectorAll('input[name=tools]:checked')].map((input) => input.value),
      };
      // Empty: the default (an edit clears what was set).
      const maxToolCalls = numberOf(form, 'max_tool_calls');
      const button = form.querySelector('button[type=submit]');
      button.disabled = true;
      try {
        let saved;
        if (editing) {
          saved = await api('PATCH', `/agents/${encodeURIComponent(agent.agent_id)}`, {
            body: { ...body, default_model_profile: profile, max_tool_calls: maxToolCalls },
          });
        } else {
          saved = await api('POST', '/agents', {
            body: { ...body, agent_id: valueOf(form, 'agent_id') ?? '', default_model_profile: profile ?? undefined,
              max_tool_calls: maxToolCalls ?? undefined },
          });
        }
        flash('ok', editing ? `Saved agent ${saved.agent_id}.` : `Created agent ${saved.agent_id}.`);
        await reload();
        showForm(null);
      } catch (e) {
        showFormError(form, e);
      } finally {
        button.disabled = false;
      }
    });
    mount(formArea, form);
    if (editing) form.scrollIntoView({ block: 'nearest' });
  }

  mount(main,
    h('h1', { text: 'Agents' }),
    h('p', { class: 'muted', text: 'An agent names the model and the auth profile its objectives run with.' }),
    profiles.items.length ? null : notice('warn', 'There are no auth profiles yet; agents need one to run.'),
    listArea,
    formArea);
  showList(agents.items);
  showForm(null);
}
