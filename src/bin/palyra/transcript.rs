//! `palyra objectives runs ID --run RUN_ID`: one run and its transcript (each model
//! turn, each tool call with its arguments and result, the final answer).

use palyra::client::{ClientError, ControlPlaneClient};
use palyra_actors::objectives::{RunRecord, TranscriptKind};
use palyra_actors::wire_name;
use palyra_http::routes::objectives::RunQuery;

use crate::output::print_json;

/// Finds `run_id` among the objective's runs (newest first, page by page).
async fn find_run(
    client: &ControlPlaneClient,
    objective_id: &str,
    run_id: &str,
) -> Result<Option<RunRecord>, ClientError> {
    let mut before = None;
    loop {
        let page = client
            .objective_runs(
                objective_id,
                &RunQuery {
                    limit: Some(500),
                    before: before.take(),
                },
            )
            .await?;
        if let Some(run) = page.items.into_iter().find(|r| r.run_id == run_id) {
            return Ok(Some(run));
        }
        match page.next_before {
            Some(next) => before = Some(next),
            None => return Ok(None),
        }
    }
}

/// Prints the run and its transcript; `Ok(false)` when there is no such run.
pub async fn show_run(
    client: &ControlPlaneClient,
    objective_id: &str,
    run_id: &str,
    json: bool,
) -> Result<bool, ClientError> {
    let Some(run) = find_run(client, objective_id, run_id).await? else {
        eprintln!("objective {objective_id} has no run {run_id}");
        return Ok(false);
    };
    if json {
        print_json(&run);
        return Ok(true);
    }
    println!(
        "run {}: {} ({} tokens: {} in, {} out)",
        run.run_id,
        wire_name(run.status),
        run.tokens,
        run.prompt_tokens,
        run.completion_tokens
    );
    if let Some(error) = &run.error {
        println!("error: {error}");
    }
    for (n, entry) in run.transcript.iter().enumerate() {
        let n = n + 1;
        match entry.kind {
            TranscriptKind::ModelTurn | TranscriptKind::FinalAnswer => {
                let what = if entry.kind == TranscriptKind::FinalAnswer {
                    "answer"
                } else {
                    "model"
                };
                println!(
                    "{n:>3} {what} ({}+{} tokens): {}",
                    entry.prompt_tokens.unwrap_or(0),
                    entry.completion_tokens.unwrap_or(0),
                    entry.text.as_deref().unwrap_or("(asks for tools)")
                );
            }
            TranscriptKind::ToolCall => {
                let arguments = entry
                    .arguments
                    .as_ref()
                    .map(|a| a.to_string())
                    .unwrap_or_default();
                let mark = if entry.refused { " REFUSED" } else { "" };
                println!(
                    "{n:>3} tool {} {arguments}{mark}: {}",
                    entry.tool.as_deref().unwrap_or("?"),
                    entry.result.as_deref().unwrap_or("")
                );
            }
        }
    }
    if run.transcript.is_empty()
        && let Some(output) = &run.output
    {
        println!("output: {output}");
    }
    Ok(true)
}
