//! The behavioural tests run against each backend.

use super::*;

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
    let got = outcomes_of(outcomes).await;
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
    one_row_in_one_group,
    ops_on_one_row_keep_their_order_in_one_group
);
/// Many ops on the same rows, of every kind, queued at once: each sees exactly the
/// requests before it (PostgreSQL applies a group as a few statements of many rows
/// each, so ops on one row must land in order across them).
async fn ops_on_one_row_keep_their_order_in_one_group(kind: Kind) {
    let Some(mut fx) = open(kind).await else {
        return;
    };
    let writer = fx.storage.start_writer().unwrap();
    let t = Table::Handoffs;
    let cas = |key: &[u8], from: &str, to: &str| WriteOp::CompareAndSet {
        table: t,
        key: key.to_vec(),
        expected: Some(value(from)),
        value: value(to),
    };
    let insert = |key: &[u8], v: &str| WriteOp::InsertIfAbsent {
        table: t,
        key: key.to_vec(),
        value: value(v),
    };
    const PATTERNS: u32 = 40;
    let mut pending = Vec::new();
    for i in 0..PATTERNS {
        let (x, y, z) = (digest(3 * i), digest(3 * i + 1), digest(3 * i + 2));
        // Single-op requests and unconditional ones: none can send the group to the
        // op-by-op path (a refused request of several conditional ops does).
        pending.extend([
            writer.submit_checked(vec![insert(&x, "x1")]),
            writer.submit_checked(vec![cas(&x, "x1", "x2")]),
            writer.submit_checked(vec![cas(&x, "x1", "stale")]),
            writer.submit_checked(vec![WriteOp::Expect {
                table: t,
                key: x.clone(),
                value: value("x2"),
            }]),
            writer.submit_checked(vec![put(t, &y, value("y1")), put(t, &z, value("z0"))]),
            writer.submit_checked(vec![WriteOp::take(t, y.clone())]),
            writer.submit_checked(vec![WriteOp::take(t, y.clone())]),
            writer.submit_checked(vec![insert(&z, "z-again")]),
            writer.submit_checked(vec![WriteOp::delete(t, z.clone())]),
            writer.submit_checked(vec![insert(&z, "z2")]),
            writer.submit_checked(vec![cas(&x, "x2", "x3")]),
            writer.submit_checked(vec![cas(&z, "z2", "z3")]),
        ]);
    }
    let requests = pending.len();
    let got = outcomes_of(pending).await;
    let commits = writer.stats().commits.load(Ordering::Relaxed);
    assert!(
        commits < requests as u64 / 4,
        "{kind:?}: the requests shared groups: {commits} commits for {requests}"
    );
    let applied = |taken: Vec<Vec<u8>>| WriteOutcome::Applied { taken };
    let pattern = vec![
        applied(vec![]),
        applied(vec![]),
        WriteOutcome::Refused { op: 0 },
        applied(vec![]),
        applied(vec![]),
        applied(vec![value("y1")]),
        WriteOutcome::Refused { op: 0 },
        WriteOutcome::Refused { op: 0 },
        applied(vec![]),
        applied(vec![]),
        applied(vec![]),
        applied(vec![]),
    ];
    for (i, outcomes) in got.chunks(pattern.len()).enumerate() {
        assert_eq!(outcomes, pattern.as_slice(), "{kind:?}: pattern {i}");
    }
    writer.shutdown().await;
    let s = fx.reopen().await;
    for i in 0..PATTERNS {
        let (x, y, z) = (digest(3 * i), digest(3 * i + 1), digest(3 * i + 2));
        assert_eq!(s.read_row(t, &x).await.unwrap(), Some(value("x3")));
        assert_eq!(s.read_row(t, &y).await.unwrap(), None);
        assert_eq!(s.read_row(t, &z).await.unwrap(), Some(value("z3")));
    }
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
    let got = outcomes_of(outcomes).await;
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
