//! An agent's tools through the CLI: `palyra agents create|update --tool NAME
//! --max-tool-calls N` against the daemon, what the daemon stored read back.

use serde_json::Value;

use crate::cli::palyra;
use crate::helpers::spawn_app;

async fn stored(app: &crate::helpers::TestApp) -> Value {
    app.bearer_get_json("/console/v1/agents/a1").await
}

#[tokio::test]
async fn an_operator_sets_an_agents_tools_with_the_cli() {
    let app = spawn_app().await;
    let root = app.dir.path().join("ws");
    std::fs::create_dir_all(&root).unwrap();
    let root = root.display().to_string();
    let created = palyra(
        &app.base,
        &[
            "--json",
            "agents",
            "create",
            "--agent-id",
            "a1",
            "--model",
            "m",
            "--workspace-root",
            &root,
            "--tool",
            "workspace_read",
            "--tool",
            "http_fetch",
            "--max-tool-calls",
            "7",
        ],
        None,
    )
    .await;
    assert!(created.ok, "{}", created.stderr);
    let printed: Value = serde_json::from_str(&created.stdout).unwrap();
    assert_eq!(
        printed["tools"],
        serde_json::json!(["workspace_read", "http_fetch"])
    );
    let agent = stored(&app).await;
    assert_eq!(
        agent["tools"],
        serde_json::json!(["workspace_read", "http_fetch"])
    );
    assert_eq!(agent["max_tool_calls"], 7);
    // An update replaces the list and leaves what it does not name.
    let updated = palyra(
        &app.base,
        &["agents", "update", "a1", "--tool", "workspace_write"],
        None,
    )
    .await;
    assert!(updated.ok, "{}", updated.stderr);
    let agent = stored(&app).await;
    assert_eq!(agent["tools"], serde_json::json!(["workspace_write"]));
    assert_eq!(agent["max_tool_calls"], 7);
    let updated = palyra(
        &app.base,
        &["agents", "update", "a1", "--max-tool-calls", "3"],
        None,
    )
    .await;
    assert!(updated.ok, "{}", updated.stderr);
    assert_eq!(stored(&app).await["max_tool_calls"], 3);
    let cleared = palyra(
        &app.base,
        &[
            "agents",
            "update",
            "a1",
            "--clear-tools",
            "--clear-max-tool-calls",
        ],
        None,
    )
    .await;
    assert!(cleared.ok, "{}", cleared.stderr);
    let agent = stored(&app).await;
    assert_eq!(agent["tools"], serde_json::json!([]));
    assert!(agent.get("max_tool_calls").is_none(), "{agent}");
    // A tool that does not exist is a usage error before any request; a count out of
    // range is the daemon's 400, told as such.
    let typo = palyra(
        &app.base,
        &["agents", "update", "a1", "--tool", "shell"],
        None,
    )
    .await;
    assert!(!typo.ok);
    assert!(typo.stderr.contains("workspace_read"), "{}", typo.stderr);
    let over = palyra(
        &app.base,
        &["agents", "update", "a1", "--max-tool-calls", "5000"],
        None,
    )
    .await;
    assert!(!over.ok);
    assert!(over.stderr.contains("max_tool_calls"), "{}", over.stderr);
    assert!(stored(&app).await.get("max_tool_calls").is_none());
}
