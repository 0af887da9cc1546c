//! Agents that act through tools: a fake model scripted to call tools in both
//! provider formats, the daemon executing them within the workspace roots, the
//! results reaching the model's next turn, `max_tool_calls`, the transcript in the
//! run record, and every turn's tokens in the run's usage.

use palyra::testkit::scripted::{Answer, Api, ScriptedModel};
use serde_json::{Value, json};

use crate::helpers::{TestApp, error_code, spawn_app_with};
use crate::providers_failover::{add_key, fire};

/// The key of the test's credential: it must appear in no run record.
const KEY: &str = "sk-tools-secret-key-0123456789";

async fn app_on(fake: &ScriptedModel) -> TestApp {
    let url = fake.url();
    spawn_app_with(move |s| {
        s.providers.openai.api_base_url = url.clone();
        s.providers.anthropic.api_base_url = url;
        s.objectives.provider_timeout_s = 5;
    })
    .await
}

fn tool(name: &'static str, arguments: Value) -> Answer {
    Answer::ToolCall {
        name,
        arguments,
        input: 7,
        output: 3,
    }
}

/// A workspace beside (never inside) the daemon's data dir, with a file, and a
/// symlink that points out of it.
fn workspace(app: &TestApp) -> std::path::PathBuf {
    let root = app.dir.path().join("ws");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("alerts.txt"), "overnight: disk full on db-2").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", root.join("escape")).unwrap();
    root
}

async fn agent(app: &TestApp, id: &str, profile: &str, root: &std::path::Path, extra: Value) {
    let mut body = json!({
        "agent_id": id, "model": "m", "default_model_profile": profile,
        "workspace_roots": [root.display().to_string()],
    });
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let response = app.bearer_post("/console/v1/agents", body).await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
}

fn kinds(run: &Value) -> Vec<String> {
    run["transcript"]
        .as_array()
        .unwrap_or_else(|| panic!("no transcript: {run}"))
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect()
}

async fn reads_are_confined_and_results_reach_the_model(api: Api, provider: &str) {
    let fake = ScriptedModel::start().await;
    let app = app_on(&fake).await;
    let root = workspace(&app);
    add_key(&app, "p1", provider, KEY).await;
    agent(
        &app,
        "a1",
        "p1",
        &root,
        json!({ "tools": ["workspace_read"] }),
    )
    .await;
    fake.script(
        KEY,
        vec![
            tool("workspace_read", json!({ "path": "../../etc/passwd" })),
            tool("workspace_read", json!({ "path": "escape" })),
            tool("workspace_read", json!({ "path": "alerts.txt" })),
            Answer::Ok {
                input: 11,
                output: 5,
            },
        ],
    );
    let run = fire(&app, "o1", "a1").await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let calls = fake.calls();
    assert_eq!(calls.len(), 4, "one model call per turn");
    assert!(calls.iter().all(|c| c.api == api));
    assert_eq!(
        calls[0].tools_offered(),
        ["workspace_list", "workspace_read"],
        "the enabled tools are offered in the provider's format"
    );
    // Each refusal is returned to the model as the tool's result, not a run failure.
    let results = calls[1].tool_results();
    assert_eq!(results.len(), 1);
    assert!(results[0].1, "{results:?}");
    assert!(
        results[0].0.contains("outside every workspace root"),
        "{results:?}"
    );
    let results = calls[2].tool_results();
    assert!(
        results[1].1 && results[1].0.contains("outside"),
        "{results:?}"
    );
    // The read inside the root reaches the model in the next turn.
    let results = calls[3].tool_results();
    assert_eq!(
        results[2],
        ("overnight: disk full on db-2".to_owned(), false)
    );
    // The transcript: each turn, each call with its arguments and result, the answer.
    assert_eq!(
        kinds(&run),
        [
            "model_turn",
            "tool_call",
            "model_turn",
            "tool_call",
            "model_turn",
            "tool_call",
            "final_answer"
        ]
    );
    let transcript = run["transcript"].as_array().unwrap();
    assert_eq!(transcript[1]["tool"], "workspace_read");
    assert_eq!(transcript[1]["arguments"]["path"], "../../etc/passwd");
    assert_eq!(transcript[1]["refused"], true);
    assert_eq!(transcript[5]["result"], "overnight: disk full on db-2");
    assert!(transcript[5].get("refused").is_none());
    // Every turn's tokens are in the run's usage and charged to the objective.
    assert_eq!(run["prompt_tokens"], 7 * 3 + 11);
    assert_eq!(run["completion_tokens"], 3 * 3 + 5);
    assert_eq!(run["tokens"], 10 * 3 + 16);
    let objective = app.bearer_get_json("/console/v1/objectives/o1").await;
    assert_eq!(objective["usage"]["tokens"], 46);
    // No secret in the record: not the key (the fake's final answer echoes its key,
    // so every entry before it is checked), not the file outside the root.
    let before_answer = json!(transcript[..transcript.len() - 1]).to_string();
    assert!(!before_answer.contains(KEY));
    assert!(!json!(run["attempts"]).to_string().contains(KEY));
    assert!(!run.to_string().contains("root:x:0:0"));
    // The CLI shows the transcript of one run.
    let run_id = run["run_id"].as_str().unwrap();
    let shown = crate::cli::palyra(
        &app.base,
        &["objectives", "runs", "o1", "--run", run_id],
        None,
    )
    .await;
    assert!(shown.ok, "{}", shown.stderr);
    assert!(
        shown.stdout.contains("tool workspace_read"),
        "{}",
        shown.stdout
    );
    assert!(shown.stdout.contains("REFUSED"), "{}", shown.stdout);
    assert!(
        shown.stdout.contains("disk full on db-2"),
        "{}",
        shown.stdout
    );
    let missing = crate::cli::palyra(
        &app.base,
        &["objectives", "runs", "o1", "--run", "o1-99"],
        None,
    )
    .await;
    assert!(!missing.ok);
}

#[tokio::test]
async fn openai_tool_calls_are_confined_to_the_workspace() {
    reads_are_confined_and_results_reach_the_model(Api::OpenAi, "openai").await;
}

#[tokio::test]
async fn anthropic_tool_use_is_confined_to_the_workspace() {
    reads_are_confined_and_results_reach_the_model(Api::Anthropic, "anthropic").await;
}

#[tokio::test]
async fn writes_are_atomic_confined_and_audited() {
    let fake = ScriptedModel::start().await;
    let app = app_on(&fake).await;
    let root = workspace(&app);
    add_key(&app, "p1", "anthropic", KEY).await;
    agent(
        &app,
        "a1",
        "p1",
        &root,
        json!({ "tools": ["workspace_read", "workspace_write"] }),
    )
    .await;
    fake.script(
        KEY,
        vec![
            tool(
                "workspace_write",
                json!({ "path": "summary.md", "content": "db-2: disk full" }),
            ),
            tool(
                "workspace_write",
                json!({ "path": "../outside.md", "content": "x" }),
            ),
            tool(
                "workspace_write",
                json!({ "path": "escape", "content": "x" }),
            ),
            tool("workspace_read", json!({ "path": "summary.md" })),
            Answer::Ok {
                input: 1,
                output: 1,
            },
        ],
    );
    let run = fire(&app, "o1", "a1").await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(
        std::fs::read_to_string(root.join("summary.md")).unwrap(),
        "db-2: disk full"
    );
    assert!(!app.dir.path().join("outside.md").exists());
    let results = fake.calls()[4].tool_results();
    assert!(!results[0].1, "{results:?}");
    assert!(results[1].1 && results[2].1, "{results:?}");
    assert_eq!(results[3].0, "db-2: disk full");
    // No temporary file is left beside the written one.
    let mut names: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["alerts.txt", "escape", "summary.md"]);
    let audit = app
        .bearer_get_json("/console/v1/audit?kind=tool_write")
        .await;
    let items = audit["events"].as_array().unwrap();
    assert_eq!(items.len(), 3, "{audit}");
    let outcomes: Vec<&str> = items
        .iter()
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes.iter().filter(|o| **o == "success").count(), 1);
    assert!(items.iter().all(|e| e["subject"] == "a1"));
}

#[tokio::test]
async fn max_tool_calls_stops_a_model_that_never_stops() {
    let fake = ScriptedModel::start().await;
    let app = app_on(&fake).await;
    let root = workspace(&app);
    add_key(&app, "p1", "openai", KEY).await;
    agent(
        &app,
        "a1",
        "p1",
        &root,
        json!({ "tools": ["workspace_read"], "max_tool_calls": 3 }),
    )
    .await;
    // The last answer repeats: the model asks for a tool forever.
    fake.script(KEY, vec![tool("workspace_list", json!({}))]);
    let run = fire(&app, "o1", "a1").await;
    assert_eq!(run["status"], "failed", "{run}");
    assert!(
        run["error"].as_str().unwrap().contains("max_tool_calls"),
        "{run}"
    );
    assert_eq!(
        fake.calls().len(),
        4,
        "three calls executed, the fourth refused"
    );
    assert!(fake.calls()[1].tool_results()[0].0.contains("alerts.txt"));
    // The turns before the stop still count and are charged.
    assert_eq!(run["tokens"], 40);
    let objective = app.bearer_get_json("/console/v1/objectives/o1").await;
    assert_eq!(objective["usage"]["tokens"], 40);
    assert_eq!(kinds(&run).iter().filter(|k| *k == "tool_call").count(), 3);
}

#[tokio::test]
async fn an_agent_without_tools_offers_none() {
    let fake = ScriptedModel::start().await;
    let app = app_on(&fake).await;
    let root = workspace(&app);
    add_key(&app, "p1", "openai", KEY).await;
    agent(&app, "a1", "p1", &root, json!({})).await;
    fake.script(
        KEY,
        vec![Answer::Ok {
            input: 1,
            output: 1,
        }],
    );
    let run = fire(&app, "o1", "a1").await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert!(fake.calls()[0].body.get("tools").is_none());
    assert!(run.get("transcript").is_none() || run["transcript"] == json!([]));
    let agent = app.bearer_get_json("/console/v1/agents/a1").await;
    assert_eq!(agent["tools"], json!([]));
}

#[tokio::test]
async fn the_data_dir_and_the_config_can_never_be_workspace_roots() {
    let fake = ScriptedModel::start().await;
    let url = fake.url();
    let config = tempfile::NamedTempFile::new().unwrap();
    let config_path = config.path().to_owned();
    let app = spawn_app_with(move |s| {
        s.providers.openai.api_base_url = url;
        s.config_file = Some(config_path);
    })
    .await;
    let data = app.dir.path().join("data");
    let parent = config.path().parent().unwrap().to_owned();
    for root in [
        data.clone(),
        data.join("sub"),
        app.dir.path().to_owned(),
        "/".into(),
        parent,
    ] {
        let response = app
            .bearer_post(
                "/console/v1/agents",
                json!({ "agent_id": "a1", "model": "m", "tools": ["workspace_read"],
                        "workspace_roots": [root.display().to_string()] }),
            )
            .await;
        assert_eq!(response.status(), 400, "{}", root.display());
        assert_eq!(error_code(response).await, "invalid_field");
    }
    let ok = app.dir.path().join("ws");
    agent(
        &app,
        "a1",
        "p1",
        &ok,
        json!({ "tools": ["workspace_read"] }),
    )
    .await;
    let patched = app
        .http
        .patch(app.url("/console/v1/agents/a1"))
        .bearer_auth(crate::helpers::ADMIN_TOKEN)
        .json(&json!({ "workspace_roots": [data.display().to_string()] }))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 400);
    let unknown = app
        .bearer_post(
            "/console/v1/agents",
            json!({ "agent_id": "a2", "model": "m", "tools": ["shell"] }),
        )
        .await;
    assert!(unknown.status().is_client_error());
}

#[tokio::test]
async fn a_run_past_its_deadline_keeps_its_transcript_and_tokens() {
    let fake = ScriptedModel::start().await;
    let app = app_on(&fake).await;
    let root = workspace(&app);
    add_key(&app, "p1", "openai", KEY).await;
    agent(
        &app,
        "a1",
        "p1",
        &root,
        json!({ "tools": ["workspace_read"] }),
    )
    .await;
    let created = app
        .bearer_post(
            "/console/v1/objectives",
            json!({ "objective_id": "late", "agent_id": "a1", "name": "Late",
                    "prompt": "read the alerts", "deadline_s": 1 }),
        )
        .await;
    assert_eq!(created.status(), 200, "{}", created.text().await.unwrap());
    // One turn and its tool call, then a model that never answers the next turn.
    fake.script(
        KEY,
        vec![
            tool("workspace_read", json!({ "path": "alerts.txt" })),
            Answer::Hang,
        ],
    );
    let run = fire(&app, "late", "a1").await;
    assert_eq!(run["status"], "failed", "{run}");
    assert!(
        run["error"]
            .as_str()
            .unwrap()
            .starts_with("deadline_exceeded"),
        "{run}"
    );
    assert_eq!(kinds(&run), ["model_turn", "tool_call"]);
    assert_eq!(
        run["transcript"][1]["result"],
        "overnight: disk full on db-2"
    );
    assert_eq!(run["prompt_tokens"], 7, "{run}");
    assert_eq!(run["completion_tokens"], 3, "{run}");
    assert_eq!(run["tokens"], 10, "{run}");
}
