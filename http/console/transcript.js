// A run's transcript: each model turn, each tool call with its arguments and result
// (refusals marked), and the final answer. Built with textContent only.

import { badge, h } from './dom.js';

function tokens(e) {
  return `${e.prompt_tokens ?? 0} + ${e.completion_tokens ?? 0} tokens`;
}

function entry(e) {
  if (e.kind === 'tool_call') {
    return h('li', { 'data-kind': e.kind, 'data-refused': e.refused ? 'true' : 'false' },
      h('code', { text: e.tool || '?' }), ' ',
      e.refused ? badge('refused', 'warn') : null,
      h('pre', { class: 'args', text: JSON.stringify(e.arguments ?? {}) }),
      h('pre', { class: 'result', text: e.result ?? '' }));
  }
  const title = e.kind === 'final_answer' ? 'Answer' : 'Model';
  return h('li', { 'data-kind': e.kind },
    h('strong', { text: title }), ' ', h('small', { class: 'muted', text: tokens(e) }),
    h('pre', { text: e.text ?? (e.kind === 'model_turn' ? '(asks for tools)' : '') }));
}

/** The transcript of a run, folded: its entries in order. */
export function transcriptView(transcript) {
  const calls = transcript.filter((e) => e.kind === 'tool_call').length;
  return h('details', { class: 'transcript' },
    h('summary', { text: `Transcript (${transcript.length} entries, ${calls} tool calls)` }),
    h('ol', {}, transcript.map(entry)));
}
