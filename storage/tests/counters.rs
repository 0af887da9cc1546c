//! `WriteOp::Add` on both backends: sums, durability, and no lost increment when two
//! writers (two nodes of a cluster on PostgreSQL) add to the same rows at once.
//!
//! PostgreSQL tests take the server from `PALYRA_TEST_POSTGRES_URL` and make their own
//! database; without it they are skipped with a notice (and fail when `CI` is set).

use palyra_storage::{PostgresConfig, Storage, Table, WriteOp, WriteOutcome};
use tokio_postgres::NoTls;

fn server_url() -> Option<String> {
    match std::env::var("PALYRA_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => {
            panic!("PALYRA_TEST_POSTGRES_URL is not set; CI must run the PostgreSQL tests")
        }
        _ => {
            eprintln!("PALYRA_TEST_POSTGRES_URL is not set: skipping the PostgreSQL test");
            None
        }
    }
}

async fn fresh_database() -> Option<(PostgresConfig, String)> {
    let url = server_url()?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let name = format!("palyra_counters_{}_{nanos}", std::process::id());
    let (client, connection) = tokio_postgres::connect(&url, NoTls).await.unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let base = url.rsplit_once('/').unwrap().0;
    let url = format!("{base}/{name}");
    Some((PostgresConfig::from_url(&url, None).unwrap(), url))
}

fn add(key: &[u8], input: i64, output: i64) -> WriteOp {
    WriteOp::Add {
        table: Table::UsageRollup,
        key: key.to_vec(),
        value: format!(
            r#"{{"v":1,"r":{{"bucket_start":"2026-03-01T10:00:00Z","agent_id":"a","objective_id":"o","profile_id":"p","provider":"openai","model":"m","input_tokens":{input},"output_tokens":{output},"calls":1}}}}"#
        )
        .into_bytes(),
    }
}

fn counts(value: &[u8]) -> (i64, i64, i64, String) {
    let v: serde_json::Value = serde_json::from_slice(value).unwrap();
    let r = &v["r"];
    (
        r["input_tokens"].as_i64().unwrap(),
        r["output_tokens"].as_i64().unwrap(),
        r["calls"].as_i64().unwrap(),
        r["agent_id"].as_str().unwrap().to_owned(),
    )
}

/// 2 writers x 8 tasks x 25 requests, each adding to two rows (in key order).
async fn hammer(writers: &[palyra_storage::Writer]) {
    let mut tasks = Vec::new();
    for w in writers {
        for _ in 0..8 {
            let w = w.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..25 {
                    w.write(vec![add(b"k1", 1, 10), add(b"k2", 2, 20)])
                        .await
                        .unwrap();
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
}

async fn check_sums(storage: &Storage, requests: i64) {
    let k1 = storage.read_row(Table::UsageRollup, b"k1").await.unwrap();
    let k2 = storage.read_row(Table::UsageRollup, b"k2").await.unwrap();
    assert_eq!(
        counts(&k1.unwrap()),
        (requests, 10 * requests, requests, "a".to_owned())
    );
    assert_eq!(
        counts(&k2.unwrap()),
        (2 * requests, 20 * requests, requests, "a".to_owned())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_adds_every_increment_and_keeps_them() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open_redb(dir.path()).unwrap();
    let writer = storage.start_writer().unwrap();
    hammer(std::slice::from_ref(&writer)).await;
    check_sums(&storage, 200).await;
    // An add inside a conditional request is refused with it, and applied with it.
    let refused = writer
        .submit_checked(vec![
            add(b"k1", 1000, 0),
            WriteOp::InsertIfAbsent {
                table: Table::UsageRollup,
                key: b"k2".to_vec(),
                value: b"{}".to_vec(),
            },
        ])
        .await
        .unwrap();
    assert_eq!(refused, WriteOutcome::Refused { op: 1 });
    check_sums(&storage, 200).await;
    writer.shutdown().await;
    drop(storage);
    let storage = Storage::open_redb(dir.path()).unwrap();
    check_sums(&storage, 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_nodes_adding_at_once_lose_no_increment() {
    let Some((config, url)) = fresh_database().await else {
        return;
    };
    // Two opens of one database: two writer connections, as two nodes have.
    let a = Storage::open_postgres(&config).await.unwrap();
    let b = Storage::open_postgres(&config).await.unwrap();
    let writers = [a.start_writer().unwrap(), b.start_writer().unwrap()];
    hammer(&writers).await;
    check_sums(&a, 400).await;
    check_sums(&b, 400).await;
    let refused = writers[0]
        .submit_checked(vec![
            add(b"k1", 1000, 0),
            WriteOp::InsertIfAbsent {
                table: Table::UsageRollup,
                key: b"k2".to_vec(),
                value: b"{}".to_vec(),
            },
        ])
        .await
        .unwrap();
    assert_eq!(refused, WriteOutcome::Refused { op: 1 });
    check_sums(&a, 400).await;
    // The typed columns hold the same sums as the value's bytes.
    let (client, connection) = tokio_postgres::connect(&url, NoTls).await.unwrap();
    tokio::spawn(connection);
    let row = client
        .query_one(
            "SELECT input_tokens, output_tokens, calls, agent_id FROM usage_rollup WHERE key = $1",
            &[&b"k2".to_vec()],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 800);
    assert_eq!(row.get::<_, i64>(1), 8000);
    assert_eq!(row.get::<_, i64>(2), 400);
    assert_eq!(row.get::<_, String>(3), "a");
    // A table without counters refuses an add rather than overwrite a row.
    let wrong = writers[0]
        .write(vec![WriteOp::Add {
            table: Table::Agents,
            key: b"x".to_vec(),
            value: b"{}".to_vec(),
        }])
        .await;
    assert!(wrong.is_err());
    for w in writers {
        w.shutdown().await;
    }
}
