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

both!(group_commit, group_commit_is_durable_and_ordered);
async fn group_commit_is_durable_and_ordered(kind: Kind) {
    let Some(mut fx) = open(kind).await else {
        return;
    };
    let writer = fx.storage.start_writer().unwrap();
    let tasks: Vec<_> = (0..200u32)
        .map(|i| {
            let w = writer.clone();
            tokio::spawn(async move {
                w.write(vec![put(Table::Sessions, &digest(i), value(i))])
                    .await
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let commits = writer.stats().commits.load(Ordering::Relaxed);
    assert!(
        commits < 200,
        "{kind:?}: group commit folded writes: {commits} commits"
    );

    // Queued without waiting in between: applied in submission order.
    let key = digest(1000);
    let pending: Vec<_> = (0..50u32)
        .map(|i| writer.submit(vec![put(Table::Sessions, &key, value(i))]))
        .chain(std::iter::once(
            writer.submit(vec![WriteOp::delete(Table::Sessions, digest(7))]),
        ))
        .collect();
    for p in pending {
        p.await.unwrap();
    }
    writer.shutdown().await;
    assert!(!writer.is_alive());
    assert!(matches!(
        writer
            .write(vec![put(Table::Sessions, &key, value(0))])
            .await,
        Err(StorageError::WriterStopped)
    ));

    let reopened = fx.reopen().await;
    assert_eq!(reopened.read_count(Table::Sessions).await.unwrap(), 200);
    assert_eq!(
        reopened.read_row(Table::Sessions, &key).await.unwrap(),
        Some(value(49))
    );
    assert_eq!(
        reopened
            .read_row(Table::Sessions, &digest(7))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        reopened
            .read_row(Table::Sessions, &digest(3))
            .await
            .unwrap(),
        Some(value(3))
    );
    assert_eq!(
        reopened.read_schema_version().await.unwrap(),
        reopened.supported_schema_version()
    );
}

both!(conditional_ops, conditional_ops_are_isolated_in_one_group);
async fn conditional_ops_are_isolated_in_one_group(kind: Kind) {
    let Some(mut fx) = open(kind).await else {
        return;
    };
    let writer = fx.storage.start_writer().unwrap();
    let t = Table::Handoffs;
    let (x, y, z) = (digest(1), digest(2), digest(3));
    // All queued at once, so they share group commits; each reports its own outcome.
    let outcomes = [
        writer.submit_checked(vec![WriteOp::InsertIfAbsent {
            table: t,
            key: x.clone(),
            value: value("x1"),
        }]),
        // Refused at its second op: its first op (y) must not be written either.
        writer.submit_checked(vec![
            put(t, &y, value("y")),
            WriteOp::InsertIfAbsent {
                table: t,
                key: x.clone(),
                value: value("x-again"),
            },
        ]),
        writer.submit_checked(vec![put(t, &z, value("z"))]),
        writer.submit_checked(vec![WriteOp::CompareAndSet {
            table: t,
            key: x.clone(),
            expected: Some(value("x1")),
            value: value("x2"),
        }]),
        writer.submit_checked(vec![WriteOp::CompareAndSet {
            table: t,
            key: x.clone(),
            expected: Some(value("x1")),
            value: value("stale"),
        }]),
        writer.submit_checked(vec![WriteOp::CompareAndSet {
            table: t,
            key: z.clone(),
            expected: None,
            value: value("z-again"),
        }]),
        // Ops of one request see each other: put then take in one request.
        writer.submit_checked(vec![put(t, &y, value("y2")), WriteOp::take(t, y.clone())]),
        writer.submit_checked(vec![WriteOp::take(t, x.clone())]),
        writer.submit_checked(vec![WriteOp::take(t, x.clone())]),
    ];
    let mut got = Vec::new();
    for o in outcomes {
        got.push(o.await.unwrap());
    }
    let applied = |taken: Vec<Vec<u8>>| WriteOutcome::Applied { taken };
    assert_eq!(
        got,
        vec![
            applied(vec![]),
            WriteOutcome::Refused { op: 1 },
            applied(vec![]),
            applied(vec![]),
            WriteOutcome::Refused { op: 0 },
            WriteOutcome::Refused { op: 0 },
            applied(vec![value("y2")]),
            applied(vec![value("x2")]),
            WriteOutcome::Refused { op: 0 },
        ],
        "{kind:?}"
    );
    // submit reports a refusal as an error.
    assert!(matches!(
        writer.submit(vec![WriteOp::take(t, x.clone())]).await,
        Err(StorageError::Refused { op: 0 })
    ));
    writer.shutdown().await;
    let s = fx.reopen().await;
    assert_eq!(s.read_row(t, &x).await.unwrap(), None);
    assert_eq!(s.read_row(t, &y).await.unwrap(), None);
    assert_eq!(s.read_row(t, &z).await.unwrap(), Some(value("z")));
}

both!(
    refused_leaves_nothing,
    a_refused_request_leaves_nothing_for_the_requests_after_it
);
/// A request refused after some of its ops ran leaves nothing for the requests after
/// it in its group to see (PostgreSQL sends a group's statements before reading any
/// answer: the later ones ran against the refused one's rows and must run again).
async fn a_refused_request_leaves_nothing_for_the_requests_after_it(kind: Kind) {
    let Some(mut fx) = open(kind).await else {
        return;
    };
    let writer = fx.storage.start_writer().unwrap();
    let t = Table::Handoffs;
    let (w, x, v, q) = (digest(11), digest(12), digest(13), digest(14));
    let outcomes = [
        // Writes w and x, then is refused: q holds nothing.
        writer.submit_checked(vec![
            put(t, &w, value("w1")),
            WriteOp::InsertIfAbsent {
                table: t,
                key: x.clone(),
                value: value("x1"),
            },
            WriteOp::CompareAndSet {
                table: t,
                key: q.clone(),
                expected: Some(value("nope")),
                value: value("q"),
            },
        ]),
        // w is absent again, so this insert holds.
        writer.submit_checked(vec![WriteOp::InsertIfAbsent {
            table: t,
            key: w.clone(),
            value: value("w-b"),
        }]),
        // x was never inserted.
        writer.submit_checked(vec![WriteOp::take(t, x.clone())]),
        // Builds on the insert above.
        writer.submit_checked(vec![
            WriteOp::CompareAndSet {
                table: t,
                key: w.clone(),
                expected: Some(value("w-b")),
                value: value("w-c"),
            },
            put(t, &v, value("v")),
        ]),
    ];
    let mut got = Vec::new();
    for o in outcomes {
        got.push(o.await.unwrap());
    }
    let applied = WriteOutcome::Applied { taken: vec![] };
    assert_eq!(
        got,
        vec![
            WriteOutcome::Refused { op: 2 },
            applied.clone(),
            WriteOutcome::Refused { op: 0 },
            applied,
        ],
        "{kind:?}"
    );
    writer.shutdown().await;
    let s = fx.reopen().await;
    assert_eq!(s.read_row(t, &w).await.unwrap(), Some(value("w-c")));
    assert_eq!(s.read_row(t, &x).await.unwrap(), None);
    assert_eq!(s.read_row(t, &v).await.unwrap(), Some(value("v")));
    assert_eq!(s.read_row(t, &q).await.unwrap(), None);
}

both!(
    put_if_any,
    a_guarded_put_writes_only_while_its_guard_has_a_row
);
/// `PutIfAny` writes only while the guard table has a row, as its own transaction sees
/// it: earlier requests of the same group count, alone or inside a conditional request.
async fn a_guarded_put_writes_only_while_its_guard_has_a_row(kind: Kind) {
    let Some(mut fx) = open(kind).await else {
        return;
    };
    let writer = fx.storage.start_writer().unwrap();
    let (guard, t) = (Table::NotificationChannels, Table::NotificationEvents);
    let guarded = |key: &str| WriteOp::PutIfAny {
        guard,
        table: t,
        key: key.as_bytes().to_vec(),
        value: value(key),
    };
    // Queued together, so both backends take them into one group (one transaction).
    let outcomes = [
        writer.submit_checked(vec![guarded("e1")]),
        writer.submit_checked(vec![put(guard, b"c1", value("c1"))]),
        writer.submit_checked(vec![guarded("e2")]),
        writer.submit_checked(vec![
            WriteOp::InsertIfAbsent {
                table: Table::Handoffs,
                key: digest(21),
                value: value("h"),
            },
            guarded("e3"),
        ]),
        writer.submit_checked(vec![WriteOp::delete(guard, b"c1".to_vec())]),
        writer.submit_checked(vec![guarded("e4")]),
        writer.submit_checked(vec![
            WriteOp::InsertIfAbsent {
                table: Table::Handoffs,
                key: digest(22),
                value: value("h"),
            },
            guarded("e5"),
        ]),
    ];
    for o in outcomes {
        // Never refused, written or not.
        assert_eq!(
            o.await.unwrap(),
            WriteOutcome::Applied { taken: vec![] },
            "{kind:?}"
        );
    }
    writer.shutdown().await;
    let s = fx.reopen().await;
    for (key, written) in [
        ("e1", false),
        ("e2", true),
        ("e3", true),
        ("e4", false),
        ("e5", false),
    ] {
        let row = s.read_row(t, key.as_bytes()).await.unwrap();
        assert_eq!(row, written.then(|| value(key)), "{kind:?} {key}");
    }
    assert!(
        s.read_row(Table::Handoffs, &digest(22))
            .await
            .unwrap()
            .is_some()
    );
}

both!(
    conditional_burst,
    a_burst_of_conditional_requests_spans_groups_in_order
);
/// More conditional requests at once than one PostgreSQL group takes (its ops are
/// bounded, and each request's statements are sent together): every one is answered
/// in order, each seeing the one before, and a refused request's ops after its refused
/// one are undone with it.
async fn a_burst_of_conditional_requests_spans_groups_in_order(kind: Kind) {
    let Some(mut fx) = open(kind).await else {
        return;
    };
    let writer = fx.storage.start_writer().unwrap();
    let t = Table::Handoffs;
    let counter = digest(0);
    writer
        .submit(vec![put(t, &counter, value(0))])
        .await
        .unwrap();
    const N: u32 = 3000;
    let mut pending = Vec::new();
    let mut expected_now = 0;
    for k in 1..=N {
        // Every seventh request expects a stale value: refused at its first op.
        let stale = k % 7 == 0;
        let expected = if stale {
            expected_now + 1_000_000
        } else {
            expected_now
        };
        if !stale {
            expected_now = k;
        }
        let next = if stale { k + 1_000_000 } else { k };
        pending.push((
            stale,
            writer.submit_checked(vec![
                WriteOp::CompareAndSet {
                    table: t,
                    key: counter.clone(),
                    expected: Some(value(expected)),
                    value: value(next),
                },
                put(t, &digest(k), value(k)),
            ]),
        ));
    }
    for (k, (stale, outcome)) in (1..).zip(pending) {
        let outcome = outcome.await.unwrap();
        if stale {
            assert_eq!(outcome, WriteOutcome::Refused { op: 0 }, "{kind:?} {k}");
        } else {
            assert_eq!(
                outcome,
                WriteOutcome::Applied { taken: vec![] },
                "{kind:?} {k}"
            );
        }
    }
    writer.shutdown().await;
    let s = fx.reopen().await;
    assert_eq!(
        s.read_row(t, &counter).await.unwrap(),
        Some(value(expected_now))
    );
    for k in [1, 6, 7, 14, 2047, 2048, N] {
        let row = s.read_row(t, &digest(k)).await.unwrap();
        let want = (k % 7 != 0).then(|| value(k));
        assert_eq!(row, want, "{kind:?} {k}");
    }
}

both!(take_once, a_row_is_taken_once_under_concurrency);
async fn a_row_is_taken_once_under_concurrency(kind: Kind) {
    let Some(fx) = open(kind).await else { return };
    let writer = fx.storage.start_writer().unwrap();
    let ops = (0..50u32)
        .map(|i| put(Table::Handoffs, &digest(i), value(i)))
        .collect();
    writer.write(ops).await.unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let w = writer.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                for i in 0..50u32 {
                    let take = w.submit_checked(vec![WriteOp::take(Table::Handoffs, digest(i))]);
                    if let WriteOutcome::Applied { taken } = take.await.unwrap() {
                        mine.extend(taken);
                    }
                }
                mine
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    let mut expected: Vec<_> = (0..50u32).map(value).collect();
    expected.sort();
    assert_eq!(all, expected, "{kind:?}: each row taken exactly once");
    assert_eq!(fx.storage.read_count(Table::Handoffs).await.unwrap(), 0);
    writer.shutdown().await;
}

both!(range_reads, range_reads_follow_byte_order);
async fn range_reads_follow_byte_order(kind: Kind) {
    let Some(fx) = open(kind).await else { return };
    let writer = fx.storage.start_writer().unwrap();
    let mut run_keys = Vec::new();
    for objective in ["a", "ab", "b"] {
        for seq in [1u64, 2, 3, 255, 256, 70_000] {
            run_keys.push(run_key(objective, seq));
        }
    }
    let mut audit_keys = Vec::new();
    for ms in [1_000i64, 2_000, 1_700_000_000_000] {
        for seq in [0u64, 1, 300] {
            audit_keys.push(audit_key(ms, seq));
        }
    }
    // Written out of order.
    let mut ops: Vec<WriteOp> = run_keys
        .iter()
        .rev()
        .map(|k| put(Table::Runs, k, value(k.len())))
        .collect();
    ops.extend(
        audit_keys
            .iter()
            .rev()
            .map(|k| put(Table::Audit, k, value(k[7]))),
    );
    writer.write(ops).await.unwrap();
    writer.shutdown().await;
    let s = &fx.storage;
    run_keys.sort();
    audit_keys.sort();

    assert_eq!(keys(s.read_table(Table::Runs).await.unwrap()), run_keys);
    let a_prefix = b"a\0".to_vec();
    let a_runs: Vec<_> = run_keys
        .iter()
        .filter(|k| k.starts_with(&a_prefix))
        .cloned()
        .collect();
    let newest = keys(
        s.read_prefix_rev(Table::Runs, &a_prefix, None, 4)
            .await
            .unwrap(),
    );
    let expected: Vec<_> = a_runs.iter().rev().take(4).cloned().collect();
    assert_eq!(newest, expected, "{kind:?}");
    let page2 = keys(
        s.read_prefix_rev(Table::Runs, &a_prefix, Some(&newest[3]), 10)
            .await
            .unwrap(),
    );
    let expected: Vec<_> = a_runs.iter().rev().skip(4).cloned().collect();
    assert_eq!(page2, expected);
    assert!(
        s.read_prefix_rev(Table::Runs, b"c\0", None, 10)
            .await
            .unwrap()
            .is_empty()
    );

    let first = keys(s.read_forward(Table::Audit, None, 4).await.unwrap());
    assert_eq!(first, audit_keys[..4].to_vec());
    let rest = keys(
        s.read_forward(Table::Audit, Some(&first[3]), 100)
            .await
            .unwrap(),
    );
    assert_eq!(rest, audit_keys[4..].to_vec());
    assert_eq!(
        s.read_count(Table::Audit).await.unwrap(),
        audit_keys.len() as u64
    );
    assert_eq!(s.read_count(Table::Agents).await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_refuses_a_newer_schema() {
    let Some((config, name)) = fresh_database().await else {
        return;
    };
    drop(Storage::open_postgres(&config).await.unwrap());
    let newer = POSTGRES_SCHEMA_VERSION as i64 + 1;
    connect(&url_for(&name))
        .await
        .execute(
            "INSERT INTO schema_version (version) VALUES ($1)",
            &[&newer],
        )
        .await
        .unwrap();
    let err = Storage::open_postgres(&config).await.unwrap_err();
    assert!(matches!(err, StorageError::SchemaTooNew { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_typed_columns_are_filled() {
    let Some((config, name)) = fresh_database().await else {
        return;
    };
    let storage = Storage::open_postgres(&config).await.unwrap();
    let writer = storage.start_writer().unwrap();
    let run = br#"{"v":1,"r":{"run_id":"r1","objective_id":"obj","trigger":"schedule","status":"succeeded","scheduled_for":"2026-12-01T10:00:00Z","started_at":null}}"#;
    let objective = br#"{"v":1,"r":{"objective_id":"obj","agent_id":"ag","kind":"objective","state":"active","next_run_at":"2026-12-01T11:00:00Z","run_seq":4}}"#;
    writer
        .write(vec![
            put(Table::Runs, &run_key("obj", 4), run.to_vec()),
            put(Table::Objectives, b"obj", objective.to_vec()),
            put(Table::AuthDefaults, b"openai|global", b"profile-1".to_vec()),
        ])
        .await
        .unwrap();
    let client = connect(&url_for(&name)).await;
    let row = client
        .query_one(
            "SELECT objective_id, seq, status, extract(epoch FROM scheduled_for)::bigint FROM runs",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "obj");
    assert_eq!(row.get::<_, i64>(1), 4);
    assert_eq!(row.get::<_, String>(2), "succeeded");
    assert_eq!(row.get::<_, i64>(3), 1_796_119_200);
    let row = client
        .query_one("SELECT state, run_seq, agent_id FROM objectives", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "active");
    assert_eq!(row.get::<_, i64>(1), 4);
    let row = client
        .query_one("SELECT provider, profile_id FROM auth_defaults", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "openai");
    assert_eq!(row.get::<_, String>(1), "profile-1");
    // A run key without its sequence fails that request alone, in the same group.
    let bad = writer.submit(vec![put(Table::Runs, b"no-seq", value(1))]);
    let good = writer.submit(vec![put(Table::Agents, b"ag", value(2))]);
    assert!(matches!(bad.await, Err(StorageError::Backend(_))));
    good.await.unwrap();
    writer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_round_trips_redb_postgres_redb() {
    let Some((config, _)) = fresh_database().await else {
        return;
    };
    let src_dir = tempfile::tempdir().unwrap();
    let src = Storage::open_redb(src_dir.path()).unwrap();
    let writer = src.start_writer().unwrap();
    let mut ops = Vec::new();
    for (i, table) in Table::ALL.into_iter().enumerate() {
        for n in 0..(i as u32 + 3) {
            let key = match table {
                Table::Runs => run_key("obj", u64::from(n)),
                Table::Audit => audit_key(1_000 + i64::from(n), u64::from(n)),
                Table::Sessions | Table::Handoffs => digest(n),
                _ => format!("id-{n}").into_bytes(),
            };
            // Byte-exact values (odd spacing), and one table whose values are not JSON.
            let v = if table == Table::AuthDefaults {
                format!("profile-{n}").into_bytes()
            } else {
                format!("{{\"v\":1,  \"r\":{{\"n\":{n}}}}}").into_bytes()
            };
            ops.push(put(table, &key, v));
        }
    }
    writer.write(ops).await.unwrap();
    writer.shutdown().await;

    let pg = Storage::open_postgres(&config).await.unwrap();
    let report = copy(&src, &pg, false).await.unwrap();
    assert_eq!(report.tables.len(), Table::ALL.len());
    assert!(matches!(
        copy(&src, &pg, false).await,
        Err(StorageError::TargetNotEmpty { .. })
    ));
    copy(&src, &pg, true).await.unwrap();

    let back_dir = tempfile::tempdir().unwrap();
    let back = Storage::open_redb(back_dir.path()).unwrap();
    copy(&pg, &back, false).await.unwrap();
    for table in Table::ALL {
        let original = src.read_table(table).await.unwrap();
        assert_eq!(
            pg.read_table(table).await.unwrap(),
            original,
            "{}",
            table.name()
        );
        assert_eq!(
            back.read_table(table).await.unwrap(),
            original,
            "{}",
            table.name()
        );
    }
}

#[tokio::test]
async fn an_unreachable_server_is_named_without_the_password() {
    // A port nothing listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut config = PostgresConfig::from_url(
        &format!("postgres://palyra:hunter2-secret@127.0.0.1:{port}/state"),
        None,
    )
    .unwrap();
    config.connect_retries = 2;
    config.connect_backoff = Duration::from_millis(20);
    let started = Instant::now();
    let err = Storage::open_postgres(&config).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        matches!(
            err,
            StorageError::Connect {
                failure: ConnectFailure::Unreachable,
                ..
            }
        ),
        "{err:?}"
    );
    let text = format!("{err} {err:?} {config:?}");
    assert!(text.contains(&format!("127.0.0.1:{port}/state")), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_privileges_and_unknown_databases_are_named() {
    let Some((config, name)) = fresh_database().await else {
        return;
    };
    let role = format!("{name}_reader");
    connect(&server_url().unwrap())
        .await
        .batch_execute(&format!("CREATE ROLE {role} LOGIN"))
        .await
        .unwrap();
    let mut limited = config.clone();
    limited.user = role;
    let err = Storage::open_postgres(&limited).await.unwrap_err();
    assert!(
        matches!(
            err,
            StorageError::Connect {
                failure: ConnectFailure::MissingPrivileges,
                ..
            }
        ),
        "{err}"
    );
    let mut unknown = config;
    unknown.database = format!("{name}_missing");
    let err = Storage::open_postgres(&unknown).await.unwrap_err();
    assert!(
        matches!(
            err,
            StorageError::Connect {
                failure: ConnectFailure::UnknownDatabase,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_connection_is_unavailable_then_recovers() {
    let Some((config, name)) = fresh_database().await else {
        return;
    };
    let storage = Storage::open_postgres(&config).await.unwrap();
    let writer = storage.start_writer().unwrap();
    writer
        .write(vec![put(Table::Agents, b"before", value(0))])
        .await
        .unwrap();
    let admin = connect(&server_url().unwrap()).await;

    // Writes in flight while every connection of the database is killed and new ones
    // are refused: each answers (never hangs), and every acknowledged one is kept.
    let inflight: Vec<_> = (0..100u32)
        .map(|i| {
            let w = writer.clone();
            tokio::spawn(async move {
                let key = format!("inflight-{i}");
                let r = w
                    .write(vec![put(Table::Agents, key.as_bytes(), value(i))])
                    .await;
                (key, r)
            })
        })
        .collect();
    // Two statements, not one batch: a batch is one implicit transaction, and a
    // reconnect between the termination and its commit would still be let in. The
    // termination waits (up to 5 s each) until the backends are gone, so the next
    // write cannot reach a backend that has been signalled but not yet exited.
    admin
        .batch_execute(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"))
        .await
        .unwrap();
    admin
        .batch_execute(&format!(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity \
             WHERE datname = '{name}' AND pid <> pg_backend_pid()"
        ))
        .await
        .unwrap();

    let started = Instant::now();
    let during = writer
        .write(vec![put(Table::Agents, b"during", value(1))])
        .await;
    assert!(started.elapsed() < Duration::from_secs(10));
    let err = during.unwrap_err();
    assert!(matches!(err, StorageError::Unavailable { .. }), "{err:?}");
    assert!(err.to_string().contains(&config.describe()), "{err}");
    let check = storage.check().await;
    assert!(
        matches!(check, Err(StorageError::Unavailable { .. })),
        "{check:?}"
    );

    let mut acknowledged = Vec::new();
    for t in inflight {
        let (key, r) = tokio::time::timeout(Duration::from_secs(15), t)
            .await
            .expect("an in-flight write hung")
            .unwrap();
        match r {
            Ok(()) => acknowledged.push(key),
            Err(StorageError::Unavailable { .. }) => {}
            Err(e) => panic!("in-flight write failed with {e:?}"),
        }
    }

    admin
        .batch_execute(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
        .await
        .unwrap();
    // The writer and the pool reconnect on their own.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let w = writer
            .write(vec![put(Table::Agents, b"after", value(2))])
            .await;
        if w.is_ok() && storage.check().await.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "did not recover: {w:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for key in &acknowledged {
        assert!(
            storage
                .read_row(Table::Agents, key.as_bytes())
                .await
                .unwrap()
                .is_some(),
            "acknowledged write {key} lost"
        );
    }
    assert!(
        storage
            .read_row(Table::Agents, b"before")
            .await
            .unwrap()
            .is_some()
    );
    writer.shutdown().await;
}

both!(burst, a_burst_of_64_single_row_submits);
/// Not a benchmark; a quick storage-level figure printed for the report.
async fn a_burst_of_64_single_row_submits(kind: Kind) {
    let Some(fx) = open(kind).await else { return };
    let writer = fx.storage.start_writer().unwrap();
    let rounds = 40u32;
    let started = Instant::now();
    let mut n = 0u32;
    for _ in 0..rounds {
        let pending: Vec<_> = (0..64u32)
            .map(|_| {
                n += 1;
                let w = writer.clone();
                let op = put(Table::Sessions, &digest(n), value(n));
                tokio::spawn(async move { w.write(vec![op]).await })
            })
            .collect();
        for p in pending {
            p.await.unwrap().unwrap();
        }
    }
    let elapsed = started.elapsed();
    let commits = writer.stats().commits.load(Ordering::Relaxed);
    eprintln!(
        "{kind:?}: {n} durable single-row writes in bursts of 64: {:.0} writes/s, {commits} commits",
        f64::from(n) / elapsed.as_secs_f64()
    );
    writer.shutdown().await;
}
