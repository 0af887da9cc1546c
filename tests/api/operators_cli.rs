//! `palyra operators`, `palyra tokens` and `palyra login --operator` as an operator
//! runs them: passwords through standard input (never argv), a token printed once and
//! then usable as the bearer token, revocation.

use serde_json::Value;

use crate::cli::palyra;
use crate::helpers::spawn_app;

const PASSWORD: &str = "a long enough passphrase\n";

#[tokio::test]
async fn operators_and_tokens_with_the_cli() {
    let app = spawn_app().await;
    let base = app.base.as_str();
    let created = palyra(
        base,
        &[
            "--json",
            "operators",
            "create",
            "alice",
            "--role",
            "operator",
            "--password-stdin",
        ],
        Some(PASSWORD),
    )
    .await;
    assert!(created.ok, "{}", created.stderr);
    let operator: Value = serde_json::from_str(&created.stdout).unwrap();
    assert_eq!(operator["role"], "operator");
    assert_eq!(operator["has_password"], true);

    let login = palyra(
        base,
        &["login", "--operator", "alice", "--password-stdin"],
        Some(PASSWORD),
    )
    .await;
    assert!(login.ok, "{}", login.stderr);
    assert!(
        login
            .stdout
            .contains("principal operator:alice, role operator"),
        "{}",
        login.stdout
    );
    let wrong = palyra(
        base,
        &["login", "--operator", "alice", "--password-stdin"],
        Some("not the password\n"),
    )
    .await;
    assert!(!wrong.ok);

    let minted = palyra(
        base,
        &[
            "--json", "tokens", "create", "alice", "--name", "ci", "--role", "viewer",
        ],
        None,
    )
    .await;
    assert!(minted.ok, "{}", minted.stderr);
    let minted: Value = serde_json::from_str(&minted.stdout).unwrap();
    let token = minted["token"].as_str().unwrap();
    assert!(token.starts_with("palyra_"), "{token}");
    // The token works as the CLI's bearer token, with its role.
    let as_viewer = tokio::process::Command::new(env!("CARGO_BIN_EXE_palyra"))
        .args(["--json", "agents", "list"])
        .env("PALYRA_URL", base)
        .env("PALYRA_ADMIN_TOKEN", token)
        .output()
        .await
        .unwrap();
    assert!(
        as_viewer.status.success(),
        "{}",
        String::from_utf8_lossy(&as_viewer.stderr)
    );
    let listed = palyra(base, &["tokens", "list", "--operator-id", "alice"], None).await;
    assert!(
        listed.ok && listed.stdout.contains("ci"),
        "{}",
        listed.stdout
    );
    assert!(
        !listed.stdout.contains(token),
        "the list never shows a secret"
    );

    let revoked = palyra(
        base,
        &["tokens", "revoke", minted["token_id"].as_str().unwrap()],
        None,
    )
    .await;
    assert!(revoked.ok, "{}", revoked.stderr);
    let after = tokio::process::Command::new(env!("CARGO_BIN_EXE_palyra"))
        .args(["agents", "list"])
        .env("PALYRA_URL", base)
        .env("PALYRA_ADMIN_TOKEN", token)
        .output()
        .await
        .unwrap();
    assert!(!after.status.success(), "a revoked token is refused");

    let disabled = palyra(base, &["operators", "disable", "alice"], None).await;
    assert!(
        disabled.ok && disabled.stdout.contains("disabled"),
        "{}",
        disabled.stdout
    );
    let refused = palyra(
        base,
        &["login", "--operator", "alice", "--password-stdin"],
        Some(PASSWORD),
    )
    .await;
    assert!(!refused.ok, "a disabled operator cannot log in");
    let list = palyra(base, &["operators", "list"], None).await;
    assert!(list.ok && list.stdout.contains("alice"), "{}", list.stdout);
}
