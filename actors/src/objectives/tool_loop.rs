//! One prompt of a run as a conversation with tools: the model is offered the
//! agent's enabled tools in its provider's format; each call it asks for is executed
//! and its result returned, until it answers without a tool call.
//! Every turn is one `runner::step` (candidates in order, failover, cooldowns), so a
//! turn can fail over to another candidate and replay the same history; the tokens of
//! every turn are counted; at most `max_tool_calls` calls are made per run; the run's
//! deadline (`retry.rs`) bounds all of it.

use std::sync::{Arc, Mutex};

use super::call::{Caller, step};
use super::model::RunAttempt;
use super::transcript::{TranscriptEntry, TranscriptKind, capped, recorded_arguments};
use crate::adapter::{ToolResult, Turn};
use crate::tools::ToolBox;

/// The tools of a run and how many calls it may still make.
pub(super) struct RunTools {
    pub(super) toolbox: ToolBox,
    /// Calls left for the whole run (every prompt of a program shares them).
    pub(super) calls_left: u32,
    pub(super) max_tool_calls: u32,
}

/// What a run's conversations have come to so far.
#[derive(Debug, Default, Clone)]
pub(super) struct Tally {
    pub(super) prompt_tokens: u64,
    pub(super) completion_tokens: u64,
    pub(super) attempts: Vec<RunAttempt>,
    pub(super) transcript: Vec<TranscriptEntry>,
    /// Where each change is published for the run's deadline (`retry::drive`), which
    /// drops the attempt going and keeps what it had come to.
    pub(super) progress: Progress,
}

impl Tally {
    /// Publishes the tally as it is now (the attempt may be dropped at any await).
    pub(super) fn publish(&self) {
        self.progress.set(Self {
            progress: Progress::default(),
            ..self.clone()
        });
    }
}

/// The tally of the attempt going, shared between the attempt and the task's
/// deadline: a future dropped at its deadline returns nothing, so what it has spent
/// and seen is published here as it happens.
#[derive(Debug, Default, Clone)]
pub(super) struct Progress(Arc<Mutex<Option<Box<Tally>>>>);

impl Progress {
    fn set(&self, tally: Tally) {
        // A poisoned lock only means a panicked attempt: its tally is still data.
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(Box::new(tally));
    }

    /// Takes what the attempt going has published (nothing for the next one).
    pub(super) fn take(&self) -> Option<Tally> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .map(|t| *t)
    }
}

/// Runs `prompt` to the model's final answer. Tokens, attempts and the transcript go
/// into `outcome` as they happen, so a failure mid-conversation still counts and
/// shows every turn before it. Errs with the run's error and whether a retry can help.
pub(super) async fn converse(
    caller: &Caller<'_>,
    candidates: &[(String, String)],
    prompt: &str,
    tools: &mut Option<RunTools>,
    outcome: &mut Tally,
) -> Result<String, (String, bool)> {
    let specs = tools
        .as_ref()
        .map(|t| t.toolbox.specs())
        .unwrap_or_default();
    let mut turns: Vec<Turn> = Vec::new();
    loop {
        let completion = step(
            caller,
            candidates,
            prompt,
            &turns,
            &specs,
            &mut outcome.attempts,
        )
        .await;
        let completion = match completion {
            Ok(completion) => completion,
            Err(e) => {
                outcome.publish();
                return Err(e);
            }
        };
        outcome.prompt_tokens = outcome
            .prompt_tokens
            .saturating_add(completion.prompt_tokens);
        outcome.completion_tokens = outcome
            .completion_tokens
            .saturating_add(completion.completion_tokens);
        let final_answer = completion.tool_calls.is_empty();
        let mut entry = TranscriptEntry::new(if final_answer {
            TranscriptKind::FinalAnswer
        } else {
            TranscriptKind::ModelTurn
        });
        entry.text = (!completion.text.is_empty()).then(|| capped(&completion.text));
        entry.prompt_tokens = Some(completion.prompt_tokens);
        entry.completion_tokens = Some(completion.completion_tokens);
        // A run without tools is one prompt and one answer: its record says it all.
        if tools.is_some() {
            outcome.transcript.push(entry);
        }
        outcome.publish();
        if final_answer {
            return Ok(completion.text);
        }
        let Some(run_tools) = tools.as_mut() else {
            // Offered nothing, the model called anyway: its calls are not executed.
            return Err((
                "the model asked for a tool call, and the agent enables no tools".into(),
                false,
            ));
        };
        let mut results = Vec::new();
        for call in &completion.tool_calls {
            if run_tools.calls_left == 0 {
                return Err((
                    format!(
                        "max_tool_calls: the model asked for more than {} tool calls",
                        run_tools.max_tool_calls
                    ),
                    false,
                ));
            }
            run_tools.calls_left -= 1;
            let output = run_tools.toolbox.call(call).await;
            let mut entry = TranscriptEntry::new(TranscriptKind::ToolCall);
            entry.tool = Some(call.name.clone());
            entry.arguments = Some(recorded_arguments(&call.arguments));
            entry.result = Some(capped(&output.content));
            entry.refused = output.is_error;
            outcome.transcript.push(entry);
            outcome.publish();
            results.push(ToolResult {
                call_id: call.id.clone(),
                content: output.content,
                is_error: output.is_error,
            });
        }
        turns.push(Turn::Assistant {
            text: completion.text,
            calls: completion.tool_calls,
        });
        turns.push(Turn::Results(results));
    }
}
