//! `palyra usage` against the real daemon: the table, the daily table and `--json`.

use serde_json::Value;

use crate::cli::palyra;
use crate::usage::{TokenModel, fire_and_wait, objective, setup};

#[tokio::test]
async fn palyra_usage_prints_tokens_and_costs_per_group() {
    let fake = TokenModel::start();
    let app = setup(&fake, |s| {
        s.usage.prices.insert(
            "m1".into(),
            palyra_actors::usage::ModelPrice {
                input_per_million: 1_000_000.0,
                output_per_million: 1_000_000.0,
            },
        );
    })
    .await;
    objective(&app, "o1", "a1", None).await;
    objective(&app, "o3", "a2", None).await;
    fire_and_wait(&app, "o1").await;
    fire_and_wait(&app, "o3").await;
    let base = app.url("");
    let table = palyra(&base, &["usage", "--group-by", "model"], None).await;
    assert!(table.ok, "{}", table.stderr);
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert!(lines[0].ends_with("(UTC)"), "{}", table.stdout);
    assert!(lines[1].starts_with("KEY"), "{}", table.stdout);
    // m2 (24 tokens) first, without a price; m1 at $1 a token: $8.
    let cells = |line: &str| {
        line.split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(cells(lines[2]), ["openai/m2", "11", "13", "1", "-"]);
    assert_eq!(cells(lines[3]), ["openai/m1", "3", "5", "1", "8.0000"]);
    let daily = palyra(
        &base,
        &[
            "usage",
            "--group-by",
            "agent",
            "--daily",
            "--tz",
            "Asia/Kolkata",
        ],
        None,
    )
    .await;
    assert!(daily.ok, "{}", daily.stderr);
    assert!(daily.stdout.contains("(Asia/Kolkata)"), "{}", daily.stdout);
    assert_eq!(
        daily.stdout.lines().filter(|l| l.contains(" a1 ")).count(),
        1,
        "{}",
        daily.stdout
    );
    let json = palyra(&base, &["--json", "usage", "--group-by", "objective"], None).await;
    let report: Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(report["group_by"], "objective");
    assert_eq!(report["groups"].as_array().unwrap().len(), 2);
    let bad = palyra(&base, &["usage", "--tz", "Nowhere/Land"], None).await;
    assert!(!bad.ok);
    assert!(bad.stderr.contains("tz"), "{}", bad.stderr);
    let bad = palyra(&base, &["usage", "--group-by", "planet"], None).await;
    assert!(!bad.ok);
}

#[test]
fn palyrad_check_config_validates_prices() {
    let dir = tempfile::tempdir().unwrap();
    let check = |config: &str| {
        let path = dir.path().join("palyrad.toml");
        std::fs::write(&path, config).unwrap();
        std::process::Command::new(env!("CARGO_BIN_EXE_palyrad"))
            .arg("--config")
            .arg(&path)
            .arg("check-config")
            .env_remove("PALYRA_ADMIN_TOKEN")
            .env_remove("PALYRA_BIND")
            .output()
            .unwrap()
    };
    let ok = check(
        "[server]\nbind = \"127.0.0.1:0\"\n[usage.prices.\"openai/gpt-4o-mini\"]\ninput_per_million = 0.15\noutput_per_million = 0.6\n",
    );
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let negative = check(
        "[server]\nbind = \"127.0.0.1:0\"\n[usage.prices.m]\ninput_per_million = -1.0\noutput_per_million = 0.0\n",
    );
    assert_eq!(negative.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&negative.stderr);
    assert!(stderr.contains("input_per_million"), "{stderr}");
    let missing = check("[usage.prices.m]\ninput_per_million = 1.0\n");
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("output_per_million"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
}
