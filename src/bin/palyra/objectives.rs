//! `palyra agents` and `palyra objectives`: agents, objectives, their lifecycle and
//! runs (`/console/v1/agents`, `/console/v1/objectives`).

use clap::{Args, Subcommand};
use palyra::client::{ClientError, ControlPlaneClient};
use palyra_actors::wire_name;

use crate::output::{print_json, print_table};

/// The tools an agent can enable (`AgentTool`'s wire names); the daemon checks them
/// too, this only makes a typo a usage error before any request.
const TOOLS: [&str; 4] = ["http_fetch", "browser", "workspace_read", "workspace_write"];

#[derive(Debug, Subcommand)]
pub enum AgentsCommand {
    List,
    Show {
        agent_id: String,
    },
    Create {
        #[arg(long)]
        agent_id: String,
        /// Required unless --candidate is given (then the first candidate's model).
        #[arg(long, required_unless_present = "candidates")]
        model: Option<String>,
        #[arg(long)]
        display_name: Option<String>,
        /// An absolute path the agent works in (repeatable).
        #[arg(long = "workspace-root")]
        workspace_roots: Vec<String>,
        /// The auth profile its runs use.
        #[arg(long)]
        profile: Option<String>,
        /// A candidate PROFILE=MODEL, tried in the order given (repeatable).
        #[arg(long = "candidate", value_parser = parse_candidate)]
        candidates: Vec<(String, String)>,
        /// Runs of its objectives going at once on a node, at most.
        #[arg(long)]
        max_concurrent_runs: Option<u32>,
        /// A tool its runs offer the model (repeatable; none by default).
        #[arg(long = "tool", value_parser = TOOLS)]
        tools: Vec<String>,
        /// Tool calls per run, at most (the daemon's default otherwise).
        #[arg(long)]
        max_tool_calls: Option<u32>,
    },
    Update {
        agent_id: String,
        #[arg(long)]
        model: Option<String>,
        #[arg(long)]
        display_name: Option<String>,
        #[arg(long = "workspace-root")]
        workspace_roots: Vec<String>,
        #[arg(long, conflicts_with = "clear_profile")]
        profile: Option<String>,
        #[arg(long)]
        clear_profile: bool,
        /// Replaces the candidates: PROFILE=MODEL, in order (repeatable).
        #[arg(long = "candidate", value_parser = parse_candidate, conflicts_with = "clear_candidates")]
        candidates: Vec<(String, String)>,
        /// Back to the one profile and model.
        #[arg(long)]
        clear_candidates: bool,
        #[arg(long, conflicts_with = "clear_max_concurrent_runs")]
        max_concurrent_runs: Option<u32>,
        /// Back to the node's cap alone.
        #[arg(long)]
        clear_max_concurrent_runs: bool,
        /// Replaces the tools its runs offer (repeatable).
        #[arg(long = "tool", value_parser = TOOLS, conflicts_with = "clear_tools")]
        tools: Vec<String>,
        /// Enables no tool.
        #[arg(long)]
        clear_tools: bool,
        #[arg(long, conflicts_with = "clear_max_tool_calls")]
        max_tool_calls: Option<u32>,
        /// Back to the default number of tool calls per run.
        #[arg(long)]
        clear_max_tool_calls: bool,
    },
    Remove {
        agent_id: String,
    },
}

#[derive(Debug, Args)]
pub struct ObjectiveFields {
    #[arg(long)]
    pub name: Option<String>,
    #[arg(long)]
    pub prompt: Option<String>,
    /// A program step (repeatable, in order).
    #[arg(long = "step")]
    pub steps: Vec<String>,
    /// Cron (5 fields, or 6 with seconds first) or @hourly, @daily, @weekly.
    #[arg(long)]
    pub schedule: Option<String>,
    /// IANA time zone of the schedule (default UTC).
    #[arg(long)]
    pub timezone: Option<String>,
    /// skip or run_once
    #[arg(long)]
    pub misfire: Option<String>,
    /// forbid or queue_one
    #[arg(long)]
    pub overlap: Option<String>,
    #[arg(long)]
    pub jitter_s: Option<u32>,
    #[arg(long)]
    pub max_runs: Option<u64>,
    #[arg(long)]
    pub max_tokens: Option<u64>,
    /// Attempts of a failed run in all (with --backoff-s, default 0).
    #[arg(long)]
    pub max_attempts: Option<u32>,
    /// The wait before the first retry; each next one waits twice as long.
    #[arg(long, requires = "max_attempts")]
    pub backoff_s: Option<u32>,
    /// The whole run at most this long.
    #[arg(long)]
    pub deadline_s: Option<u32>,
    /// Pause after this many failed runs in a row (0: never).
    #[arg(long)]
    pub pause_after_failures: Option<u32>,
}

#[derive(Debug, Subcommand)]
pub enum ObjectivesCommand {
    List {
        #[arg(long)]
        kind: Option<String>,
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        agent_id: Option<String>,
    },
    Show {
        objective_id: String,
    },
    Create {
        #[arg(long)]
        agent_id: String,
        #[arg(long)]
        objective_id: Option<String>,
        /// objective, heartbeat, standing_order or program
        #[arg(long, default_value = "objective")]
        kind: String,
        /// Start active instead of draft.
        #[arg(long)]
        activate: bool,
        #[command(flatten)]
        fields: ObjectiveFields,
    },
    Update {
        objective_id: String,
        #[command(flatten)]
        fields: ObjectiveFields,
    },
    Activate(LifecycleArgs),
    Pause(LifecycleArgs),
    Resume(LifecycleArgs),
    Cancel(LifecycleArgs),
    Archive(LifecycleArgs),
    /// Run now, within budget.
    Fire(LifecycleArgs),
    /// Cancels one run: stops it if it is going here, or keeps it from starting.
    CancelRun {
        objective_id: String,
        run_id: String,
    },
    /// Run history, newest first.
    Runs {
        objective_id: String,
        #[arg(long)]
        limit: Option<usize>,
        /// Shows this one run with its transcript.
        #[arg(long = "run")]
        run_id: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct LifecycleArgs {
    pub objective_id: String,
    #[arg(long)]
    pub reason: Option<String>,
}

/// `PROFILE=MODEL`.
fn parse_candidate(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((profile, model)) if !profile.is_empty() && !model.is_empty() => {
            Ok((profile.to_owned(), model.to_owned()))
        }
        _ => Err("use PROFILE=MODEL".into()),
    }
}

fn candidates_json(candidates: &[(String, String)]) -> serde_json::Value {
    candidates
        .iter()
        .map(|(p, m)| serde_json::json!({ "profile_id": p, "model": m }))
        .collect()
}

pub fn agent_row(a: &palyra_actors::objectives::AgentRecord) -> Vec<String> {
    vec![
        a.agent_id.clone(),
        a.display_name.clone(),
        a.model.clone(),
        if a.model_profiles.is_empty() {
            a.default_model_profile.clone().unwrap_or_default()
        } else {
            a.model_profiles
                .iter()
                .map(|c| format!("{}={}", c.profile_id, c.model))
                .collect::<Vec<_>>()
                .join(" > ")
        },
        a.workspace_roots.join(","),
    ]
}

pub const AGENT_HEADER: [&str; 5] = ["ID", "NAME", "MODEL", "PROFILES", "WORKSPACES"];

pub async fn agents(
    json: bool,
    client: &ControlPlaneClient,
    command: &AgentsCommand,
) -> Result<(), ClientError> {
    let agent = match command {
        AgentsCommand::List => {
            let page = client.list_agents(&Default::default()).await?;
            if json {
                print_json(&page);
            } else {
                print_table(
                    &AGENT_HEADER,
                    &page.items.iter().map(agent_row).collect::<Vec<_>>(),
                );
            }
            return Ok(());
        }
        AgentsCommand::Remove { agent_id } => {
            client.delete_agent(agent_id).await?;
            if json {
                print_json(&serde_json::json!({ "removed": agent_id }));
            } else {
                println!("removed agent {agent_id}");
            }
            return Ok(());
        }
        AgentsCommand::Show { agent_id } => client.get_agent(agent_id).await?,
        AgentsCommand::Create {
            agent_id,
            model,
            display_name,
            workspace_roots,
            profile,
            candidates,
            max_concurrent_runs,
            tools,
            max_tool_calls,
        } => {
            let mut body = serde_json::json!({
                "agent_id": agent_id, "display_name": display_name,
                "workspace_roots": workspace_roots, "default_model_profile": profile,
                "model_profiles": candidates_json(candidates),
                "max_concurrent_runs": max_concurrent_runs,
                "tools": tools, "max_tool_calls": max_tool_calls,
            });
            if let Some(model) = model {
                body["model"] = model.clone().into();
            }
            client.create_agent(body).await?
        }
        AgentsCommand::Update {
            agent_id,
            model,
            display_name,
            workspace_roots,
            profile,
            clear_profile,
            candidates,
            clear_candidates,
            max_concurrent_runs,
            clear_max_concurrent_runs,
            tools,
            clear_tools,
            max_tool_calls,
            clear_max_tool_calls,
        } => {
            let mut patch = serde_json::Map::new();
            if let Some(v) = model {
                patch.insert("model".into(), v.clone().into());
            }
            if let Some(v) = display_name {
                patch.insert("display_name".into(), v.clone().into());
            }
            if !workspace_roots.is_empty() {
                patch.insert("workspace_roots".into(), serde_json::json!(workspace_roots));
            }
            if let Some(v) = profile {
                patch.insert("default_model_profile".into(), v.clone().into());
            } else if *clear_profile {
                patch.insert("default_model_profile".into(), serde_json::Value::Null);
            }
            if !candidates.is_empty() || *clear_candidates {
                patch.insert("model_profiles".into(), candidates_json(candidates));
            }
            if let Some(n) = max_concurrent_runs {
                patch.insert("max_concurrent_runs".into(), (*n).into());
            } else if *clear_max_concurrent_runs {
                patch.insert("max_concurrent_runs".into(), serde_json::Value::Null);
            }
            if !tools.is_empty() || *clear_tools {
                patch.insert("tools".into(), serde_json::json!(tools));
            }
            if let Some(n) = max_tool_calls {
                patch.insert("max_tool_calls".into(), (*n).into());
            } else if *clear_max_tool_calls {
                patch.insert("max_tool_calls".into(), serde_json::Value::Null);
            }
            client.update_agent(agent_id, patch.into()).await?
        }
    };
    if json {
        print_json(&agent);
    } else {
        print_table(&AGENT_HEADER, &[agent_row(&agent)]);
    }
    Ok(())
}

pub fn objective_row(o: &palyra_actors::objectives::ObjectiveRecord) -> Vec<String> {
    vec![
        o.objective_id.clone(),
        o.agent_id.clone(),
        wire_name(o.kind),
        wire_name(o.state),
        o.automation
            .as_ref()
            .map(|a| a.schedule.clone())
            .unwrap_or_default(),
        o.next_run_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
        format!("{} runs, {} tokens", o.usage.runs, o.usage.tokens),
    ]
}

pub const OBJECTIVE_HEADER: [&str; 7] = [
    "ID", "AGENT", "KIND", "STATE", "SCHEDULE", "NEXT RUN", "USAGE",
];

pub fn objective_fields(fields: &ObjectiveFields) -> serde_json::Map<String, serde_json::Value> {
    let mut body = serde_json::Map::new();
    if let Some(v) = &fields.name {
        body.insert("name".into(), v.clone().into());
    }
    if let Some(v) = &fields.prompt {
        body.insert("prompt".into(), v.clone().into());
    }
    if !fields.steps.is_empty() {
        body.insert("steps".into(), serde_json::json!(fields.steps));
    }
    if fields.max_runs.is_some() || fields.max_tokens.is_some() {
        body.insert(
            "budget".into(),
            serde_json::json!({ "max_runs": fields.max_runs, "max_tokens": fields.max_tokens }),
        );
    }
    let mut automation = serde_json::Map::new();
    for (key, value) in [
        ("schedule", fields.schedule.clone()),
        ("timezone", fields.timezone.clone()),
        ("misfire", fields.misfire.clone()),
        ("overlap", fields.overlap.clone()),
    ] {
        if let Some(v) = value {
            automation.insert(key.into(), v.into());
        }
    }
    if let Some(j) = fields.jitter_s {
        automation.insert("jitter_s".into(), j.into());
    }
    if let Some(n) = fields.max_attempts {
        body.insert(
            "retry".into(),
            serde_json::json!({ "max_attempts": n, "backoff_s": fields.backoff_s.unwrap_or(0) }),
        );
    }
    if let Some(d) = fields.deadline_s {
        body.insert("deadline_s".into(), d.into());
    }
    if let Some(n) = fields.pause_after_failures {
        body.insert("pause_after_failures".into(), n.into());
    }
    if !automation.is_empty() {
        body.insert("automation".into(), automation.into());
    }
    body
}

pub async fn objectives(
    json: bool,
    client: &ControlPlaneClient,
    command: &ObjectivesCommand,
) -> Result<(), ClientError> {
    use palyra_actors::objectives::LifecycleAction as A;
    use palyra_http::routes::objectives::{LifecycleRequest, ObjectiveQuery, RunQuery};
    let objective = match command {
        ObjectivesCommand::List {
            kind,
            state,
            agent_id,
        } => {
            fn parse<T: serde::de::DeserializeOwned>(
                value: &Option<String>,
                help: &str,
            ) -> Result<Option<T>, ClientError> {
                value
                    .as_ref()
                    .map(|v| serde_json::from_value(serde_json::Value::String(v.clone())))
                    .transpose()
                    .map_err(|_| ClientError::Protocol(help.to_owned()))
            }
            let query = ObjectiveQuery {
                kind: parse(
                    kind,
                    "--kind: objective, heartbeat, standing_order or program",
                )?,
                state: parse(
                    state,
                    "--state: draft, active, paused, cancelled or archived",
                )?,
                agent_id: agent_id.clone(),
                ..Default::default()
            };
            let page = client.list_objectives(&query).await?;
            if json {
                print_json(&page);
            } else {
                print_table(
                    &OBJECTIVE_HEADER,
                    &page.items.iter().map(objective_row).collect::<Vec<_>>(),
                );
            }
            return Ok(());
        }
        ObjectivesCommand::CancelRun {
            objective_id,
            run_id,
        } => {
            let run = client.cancel_run(objective_id, run_id).await?;
            if json {
                print_json(&run);
            } else {
                println!(
                    "run {}: {}{}",
                    run.run_id,
                    wire_name(run.status),
                    run.error.map(|e| format!(" ({e})")).unwrap_or_default()
                );
            }
            return Ok(());
        }
        ObjectivesCommand::Runs {
            objective_id,
            run_id: Some(run_id),
            ..
        } => {
            if !crate::transcript::show_run(client, objective_id, run_id, json).await? {
                std::process::exit(1);
            }
            return Ok(());
        }
        ObjectivesCommand::Runs {
            objective_id,
            limit,
            run_id: None,
        } => {
            let page = client
                .objective_runs(
                    objective_id,
                    &RunQuery {
                        limit: *limit,
                        before: None,
                    },
                )
                .await?;
            if json {
                print_json(&page);
            } else {
                let rows: Vec<_> = page
                    .items
                    .iter()
                    .map(|r| {
                        vec![
                            r.run_id.clone(),
                            wire_name(r.trigger),
                            wire_name(r.status),
                            r.scheduled_for.map(|t| t.to_rfc3339()).unwrap_or_default(),
                            format!("{} ({}+{})", r.tokens, r.prompt_tokens, r.completion_tokens),
                            r.attempts
                                .iter()
                                .map(|a| format!("{}:{}", a.profile_id, wire_name(a.outcome)))
                                .collect::<Vec<_>>()
                                .join(" > "),
                            r.error.clone().unwrap_or_default(),
                        ]
                    })
                    .collect();
                print_table(
                    &[
                        "RUN",
                        "TRIGGER",
                        "STATUS",
                        "SCHEDULED FOR",
                        "TOKENS (IN+OUT)",
                        "ATTEMPTS",
                        "ERROR",
                    ],
                    &rows,
                );
            }
            return Ok(());
        }
        ObjectivesCommand::Show { objective_id } => client.get_objective(objective_id).await?,
        ObjectivesCommand::Create {
            agent_id,
            objective_id,
            kind,
            activate,
            fields,
        } => {
            let mut body = objective_fields(fields);
            body.insert("agent_id".into(), agent_id.clone().into());
            body.insert("kind".into(), kind.clone().into());
            body.insert("activate".into(), (*activate).into());
            if let Some(id) = objective_id {
                body.insert("objective_id".into(), id.clone().into());
            }
            if !body.contains_key("name") {
                body.insert(
                    "name".into(),
                    objective_id.clone().unwrap_or_else(|| kind.clone()).into(),
                );
            }
            client.create_objective(body.into()).await?
        }
        ObjectivesCommand::Update {
            objective_id,
            fields,
        } => {
            client
                .update_objective(objective_id, objective_fields(fields).into())
                .await?
        }
        ObjectivesCommand::Activate(a)
        | ObjectivesCommand::Pause(a)
        | ObjectivesCommand::Resume(a)
        | ObjectivesCommand::Cancel(a)
        | ObjectivesCommand::Archive(a)
        | ObjectivesCommand::Fire(a) => {
            let action = match command {
                ObjectivesCommand::Activate(_) => A::Activate,
                ObjectivesCommand::Pause(_) => A::Pause,
                ObjectivesCommand::Resume(_) => A::Resume,
                ObjectivesCommand::Cancel(_) => A::Cancel,
                ObjectivesCommand::Archive(_) => A::Archive,
                _ => A::Fire,
            };
            let request = LifecycleRequest {
                action,
                reason: a.reason.clone(),
            };
            client
                .objective_lifecycle(&a.objective_id, &request)
                .await?
        }
    };
    if json {
        print_json(&objective);
    } else {
        print_table(&OBJECTIVE_HEADER, &[objective_row(&objective)]);
    }
    Ok(())
}
