//! The same behavioural tests against both backends.
//!
//! PostgreSQL tests take the server from `PALYRA_TEST_POSTGRES_URL` (scripts/test starts
//! one with `scripts/postgres start`) and each makes its own database. Without the
//! variable they fail when `CI` is set and are skipped, with a notice, otherwise.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use palyra_storage::{
    ConnectFailure, POSTGRES_SCHEMA_VERSION, PostgresConfig, Storage, StorageError, Table, WriteOp,
    WriteOutcome, copy,
};
use tokio_postgres::NoTls;

#[derive(Debug, Clone, Copy)]
enum Kind {
    Redb,
    Postgres,
}

struct Fixture {
    storage: Storage,
    // Kept so the redb file outlives the test; reopening uses its path.
    dir: Option<tempfile::TempDir>,
    config: Option<PostgresConfig>,
}

impl Fixture {
    /// Closes the database and opens it again (redb allows one open handle per file).
    async fn reopen(&mut self) -> Storage {
        match (&self.dir, &self.config) {
            (_, Some(config)) => Storage::open_postgres(config).await.unwrap(),
            (Some(dir), _) => {
                // Swap in a scratch database so the file's handle is dropped first.
                let scratch = tempfile::tempdir().unwrap();
                let s = Storage::open_redb(scratch.path()).unwrap();
                drop(std::mem::replace(&mut self.storage, s));
                Storage::open_redb(dir.path()).unwrap()
            }
            _ => unreachable!(),
        }
    }
}

fn server_url() -> Option<String> {
    match std::env::var("PALYRA_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => {
            panic!("PALYRA_TEST_POSTGRES_URL is not set; CI must run the PostgreSQL tests")
        }
        _ => {
            eprintln!(
                "PALYRA_TEST_POSTGRES_URL is not set: skipping the PostgreSQL side of this test"
            );
            None
        }
    }
}

fn url_for(database: &str) -> String {
    let url = server_url().unwrap();
    format!("{}/{database}", url.rsplit_once('/').unwrap().0)
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

/// A fresh database on the test server: its config and name.
async fn fresh_database() -> Option<(PostgresConfig, String)> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let url = server_url()?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let name = format!(
        "palyra_test_{}_{}_{}",
        std::process::id(),
        nanos,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    connect(&url)
        .await
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let config = PostgresConfig::from_url(&url_for(&name), None).unwrap();
    Some((config, name))
}

async fn open(kind: Kind) -> Option<Fixture> {
    match kind {
        Kind::Redb => {
            let dir = tempfile::tempdir().unwrap();
            let storage = Storage::open_redb(dir.path()).unwrap();
            Some(Fixture {
                storage,
                dir: Some(dir),
                config: None,
            })
        }
        Kind::Postgres => {
            let (config, _) = fresh_database().await?;
            let storage = Storage::open_postgres(&config).await.unwrap();
            Some(Fixture {
                storage,
                dir: None,
                config: Some(config),
            })
        }
    }
}

fn value(n: impl std::fmt::Display) -> Vec<u8> {
    format!(r#"{{"v":1,"r":{{"n":"{n}"}}}}"#).into_bytes()
}

fn put(table: Table, key: &[u8], v: Vec<u8>) -> WriteOp {
    WriteOp::Put {
        table,
        key: key.to_vec(),
        value: v,
    }
}

fn digest(n: u32) -> Vec<u8> {
    let mut key = vec![0u8; 32];
    key[28..].copy_from_slice(&n.to_be_bytes());
    key
}

fn run_key(objective: &str, seq: u64) -> Vec<u8> {
    [objective.as_bytes(), &[0], &seq.to_be_bytes()].concat()
}

fn audit_key(ms: i64, seq: u64) -> Vec<u8> {
    [ms.to_be_bytes(), seq.to_be_bytes()].concat()
}

/// What each of requests queued together came to, in order.
async fn outcomes_of(
    requests: impl IntoIterator<
        Item = impl std::future::Future<Output = Result<WriteOutcome, StorageError>>,
    >,
) -> Vec<WriteOutcome> {
    let mut got = Vec::new();
    for request in requests {
        got.push(request.await.unwrap());
    }
    got
}

fn keys(rows: Vec<(Vec<u8>, Vec<u8>)>) -> Vec<Vec<u8>> {
    rows.into_iter().map(|r| r.0).collect()
}

macro_rules! both {
    ($name:ident, $body:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redb() {
                super::$body(super::Kind::Redb).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$body(super::Kind::Postgres).await;
            }
        }
    };
}

mod both;
mod postgres;
