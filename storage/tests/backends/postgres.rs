//! Tests of the PostgreSQL backend alone: its schema, its copy to and from redb, and
//! how it names a server it cannot use.

use super::*;

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

/// Two runs of one firing (one objective, one scheduled instant) queued in one group:
/// the first is recorded and the second refused by the unique (objective_id,
/// scheduled_for), as when they come one after the other; other objectives' runs of
/// the same instant are recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_records_one_run_per_firing_within_a_group() {
    let Some((config, name)) = fresh_database().await else {
        return;
    };
    let storage = Storage::open_postgres(&config).await.unwrap();
    let writer = storage.start_writer().unwrap();
    let run = |objective: &str, seq: u64| {
        WriteOp::InsertIfAbsent {
        table: Table::Runs,
        key: run_key(objective, seq),
        value: format!(
            r#"{{"v":1,"r":{{"run_id":"{objective}-{seq}","objective_id":"{objective}","trigger":"schedule","status":"running","scheduled_for":"2026-12-01T10:00:00Z"}}}}"#
        )
        .into_bytes(),
    }
    };
    let mut pending = Vec::new();
    for i in 0..50 {
        let objective = format!("obj{i}");
        pending.push(writer.submit_checked(vec![run(&objective, 1)]));
        pending.push(writer.submit_checked(vec![run(&objective, 2)]));
    }
    let got = outcomes_of(pending).await;
    for (i, pair) in got.chunks(2).enumerate() {
        assert_eq!(
            pair,
            [
                WriteOutcome::Applied { taken: vec![] },
                WriteOutcome::Refused { op: 0 }
            ],
            "objective {i}"
        );
    }
    writer.shutdown().await;
    let client = connect(&url_for(&name)).await;
    let row = client
        .query_one("SELECT count(*), max(seq) FROM runs", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 50);
    assert_eq!(row.get::<_, i64>(1), 1);
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

/// Fences of one group: a lease held at its epoch lets every request it fences apply
/// (the writer reads a fence repeated in a group once), another node's or an older
/// epoch's fence is refused with nothing of its request written, and once the lease
/// is released the same fence refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fences_in_one_group_hold_only_for_the_lease_holder() {
    let Some((config, name)) = fresh_database().await else {
        return;
    };
    let storage = Storage::open_postgres(&config).await.unwrap();
    let ttl = Duration::from_secs(30);
    let epoch = storage.lease_acquire(3, "a", ttl).await.unwrap().unwrap();
    let fence = |node: &str, epoch: u64| {
        WriteOp::Fence(palyra_storage::Fence {
            shard: 3,
            node_id: node.into(),
            epoch,
        })
    };
    let t = Table::Agents;
    let writer = storage.start_writer().unwrap();
    let admin = connect(&url_for(&name)).await;
    let applied = WriteOutcome::Applied { taken: vec![] };
    // The requests of `batch` share one group: the lease row is locked from another
    // connection, so the writer waits on the fence of a request sent first while
    // they queue behind it, and takes them together once the lock goes.
    let in_one_group = |batch: Vec<Vec<WriteOp>>| {
        let (writer, admin) = (&writer, &admin);
        async move {
            admin
                .batch_execute("BEGIN; SELECT 1 FROM cluster_leases WHERE shard = 3 FOR UPDATE")
                .await
                .unwrap();
            let first = writer.submit_checked(vec![fence("a", epoch)]);
            tokio::time::sleep(Duration::from_millis(300)).await;
            let queued: Vec<_> = batch
                .into_iter()
                .map(|ops| writer.submit_checked(ops))
                .collect();
            tokio::time::sleep(Duration::from_millis(100)).await;
            admin.batch_execute("COMMIT").await.unwrap();
            assert_eq!(
                first.await.unwrap(),
                WriteOutcome::Applied { taken: vec![] }
            );
            outcomes_of(queued).await
        }
    };
    let got = in_one_group(vec![
        vec![fence("a", epoch), put(t, b"k1", value(1))],
        vec![fence("a", epoch), put(t, b"k2", value(2))],
        vec![fence("a", epoch + 1)],
        vec![fence("b", epoch)],
        vec![fence("a", epoch), put(t, b"k3", value(3))],
    ])
    .await;
    assert_eq!(
        got,
        vec![
            applied.clone(),
            applied.clone(),
            WriteOutcome::Refused { op: 0 },
            WriteOutcome::Refused { op: 0 },
            applied.clone()
        ]
    );
    // Another node's fence of several ops after the holder's: only its own request is
    // refused, with nothing of it written (the group starts over with savepoints).
    let got = in_one_group(vec![
        vec![fence("a", epoch), put(t, b"k4", value(4))],
        vec![fence("b", epoch), put(t, b"k5", value(5))],
        vec![fence("a", epoch), put(t, b"k6", value(6))],
    ])
    .await;
    assert_eq!(
        got,
        vec![applied.clone(), WriteOutcome::Refused { op: 0 }, applied]
    );
    storage.lease_release("a", &[(3, epoch)]).await.unwrap();
    let refused = writer
        .submit_checked(vec![fence("a", epoch), put(t, b"k7", value(7))])
        .await
        .unwrap();
    assert_eq!(refused, WriteOutcome::Refused { op: 0 });
    writer.shutdown().await;
    for (key, present) in [
        (b"k1", true),
        (b"k2", true),
        (b"k3", true),
        (b"k4", true),
        (b"k5", false),
        (b"k6", true),
        (b"k7", false),
    ] {
        let row = storage.read_row(t, key).await.unwrap();
        assert_eq!(row.is_some(), present, "{}", String::from_utf8_lossy(key));
    }
}
