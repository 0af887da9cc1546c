//! `soak`: the release palyrad binary under a long mixed load (objectives firing every
//! 2 s against the fake provider, logins and logouts, profile reads, writes and
//! deletes, audit growth, history pruning at a small retention), with its resident
//! memory sampled every minute: what a daemon running for months does, compressed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::StatusCode;
use hyper::header::{self, HeaderValue};
use palyra::testkit::model::FakeModel;

use crate::bench::Bench;
use crate::driver::{BoxError, Client, Limit, Work, bearer_header, drive};
use crate::objectives::{CreateObjective, create_agent};
use crate::plan::Plan;
use crate::probes::vm_rss_mib;
use crate::profiles::PROFILES_PATH;
use crate::report::{Row, round};
use crate::servers::{ChildPalyrad, report_stop};

/// Objectives of the soak, each on `*/2 * * * * *`.
pub const SOAK_OBJECTIVES: usize = 500;
const SOAK_SCHEDULE: &str = "*/2 * * * * *";
/// Runs kept per objective during the soak (the default is larger): the history
/// reaches its retention within the first minute, so later growth is not history.
const SOAK_RUN_RETENTION: &str = "20";
/// Clients of the mixed HTTP load (besides the firing).
const SOAK_CLIENTS: usize = 4;

/// One iteration of the mixed load, by turns: a login and its logout; a page of
/// profiles; a new API-key profile and its deletion.
struct Mix {
    login_body: Bytes,
    bearer: HeaderValue,
    next: AtomicU64,
}

impl Mix {
    async fn login_logout(&self, client: &mut Client) -> Result<bool, BoxError> {
        let login = client
            .send(client.post("/console/v1/auth/login", None, self.login_body.clone())?)
            .await?;
        if login.status() != StatusCode::OK {
            return Ok(false);
        }
        let cookie = login
            .headers()
            .get(header::SET_COOKIE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(str::to_owned)
            .ok_or("login set no cookie")?;
        let body: serde_json::Value = serde_json::from_slice(login.body())?;
        let csrf = body["csrf_token"]
            .as_str()
            .ok_or("login answered no csrf_token")?;
        let mut logout = client.post(
            "/console/v1/auth/logout",
            Some((header::COOKIE, &HeaderValue::from_str(&cookie)?)),
            Bytes::from_static(b"{}"),
        )?;
        logout
            .headers_mut()
            .insert("x-palyra-csrf-token", HeaderValue::from_str(csrf)?);
        Ok(client.send(logout).await?.status().is_success())
    }

    async fn profile_write_delete(&self, client: &mut Client, n: u64) -> Result<bool, BoxError> {
        let id = format!("soak{n:08}");
        let body = format!(
            r#"{{"profile_id": "{id}", "provider": "openai", "profile_name": "p", "credential": {{"type": "api_key", "api_key": "soak-key-{n:010}"}}, "validate": false}}"#
        );
        let created = client
            .send(client.post(
                PROFILES_PATH,
                Some((header::AUTHORIZATION, &self.bearer)),
                Bytes::from(body),
            )?)
            .await?;
        if created.status() != StatusCode::OK {
            return Ok(false);
        }
        let mut delete = client.get(
            &format!("{PROFILES_PATH}/{id}"),
            Some((header::AUTHORIZATION, &self.bearer)),
        )?;
        *delete.method_mut() = hyper::Method::DELETE;
        Ok(client.send(delete).await?.status().is_success())
    }
}

impl Work for Mix {
    async fn iterate(&self, client: &mut Client) -> Result<bool, BoxError> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        match n % 3 {
            0 => self.login_logout(client).await,
            1 => {
                let page = client.get(
                    &format!("{PROFILES_PATH}?limit=100"),
                    Some((header::AUTHORIZATION, &self.bearer)),
                )?;
                Ok(client.send(page).await?.status() == StatusCode::OK)
            }
            _ => self.profile_write_delete(client, n).await,
        }
    }
}

/// Runs recorded `missed` among the retained runs of every soak objective.
async fn missed_runs(client: &mut Client, bearer: &HeaderValue) -> Result<u64, BoxError> {
    let mut missed = 0;
    for n in 1..=SOAK_OBJECTIVES {
        let path = format!("/console/v1/objectives/k{n:05}/runs?limit=100");
        let page = client
            .send(client.get(&path, Some((header::AUTHORIZATION, bearer)))?)
            .await?;
        let body: serde_json::Value = serde_json::from_slice(page.body())?;
        missed += body["runs"].as_array().map_or(0, |runs| {
            runs.iter().filter(|r| r["status"] == "missed").count()
        }) as u64;
    }
    Ok(missed)
}

/// `soak` for `duration`: RSS every minute (every tenth of the run when shorter).
pub async fn soak(bench: &Bench, duration: Duration) -> Result<Row, BoxError> {
    let fake = FakeModel::try_start(2)?;
    let base = fake.url();
    // The one setting of the caller passed through, to compare redb cache sizes.
    let cache_mib = std::env::var("PALYRA_STORAGE__CACHE_MIB").unwrap_or_else(|_| "32".into());
    let mut child = ChildPalyrad::spawn_with(
        &bench.root,
        &[
            ("PALYRA_PROVIDERS__OPENAI__API_BASE_URL", base.as_str()),
            ("PALYRA_OBJECTIVES__RUN_RETENTION", SOAK_RUN_RETENTION),
            ("PALYRA_STORAGE__CACHE_MIB", cache_mib.as_str()),
        ],
    )
    .await?;
    let pid = child.pid()?;
    let addr = child.addr();
    let bearer = bearer_header(&child.token)?;
    create_agent(addr, &bearer).await?;
    let create = Arc::new(CreateObjective::new(
        bearer.clone(),
        "k",
        SOAK_SCHEDULE.into(),
    ));
    let created = drive(addr, &create, 8, Limit::Count(SOAK_OBJECTIVES as u64)).await?;
    let idle = vm_rss_mib(pid)?;
    let mix = Arc::new(Mix {
        login_body: Bytes::from(
            serde_json::json!({ "admin_token": child.token.expose() }).to_string(),
        ),
        bearer: bearer.clone(),
        next: AtomicU64::new(0),
    });
    let sample_every = (duration / 10).min(Duration::from_secs(60));
    let started = Instant::now();
    let load = tokio::spawn({
        let mix = Arc::clone(&mix);
        async move { drive(addr, &mix, SOAK_CLIENTS, Limit::For(duration)).await }
    });
    let mut samples = vec![(0.0, idle)];
    while started.elapsed() < duration {
        tokio::time::sleep(sample_every.min(duration.saturating_sub(started.elapsed()))).await;
        samples.push((started.elapsed().as_secs_f64(), vm_rss_mib(pid)?));
        // The fake's log of calls is the bench's memory, not the daemon's.
        let _ = fake.take_answered();
    }
    let tally = load.await??;
    let mut client = Client::connect(addr).await?;
    let missed = missed_runs(&mut client, &bearer).await?;
    let calls = fake.calls();
    let stopped = child.stop().await;
    report_stop(fake.stop());

    let end = samples.last().map_or(idle, |s| s.1);
    let half = duration.as_secs_f64() / 2.0;
    let mid = samples
        .iter()
        .filter(|(t, _)| *t >= half)
        .map(|s| s.1)
        .next()
        .unwrap_or(end);
    let growth_pct = if mid > 0.0 {
        (end - mid) / mid * 100.0
    } else {
        0.0
    };
    let trace: Vec<String> = samples
        .iter()
        .map(|(t, mib)| format!("{t:.0}s {mib:.1}"))
        .collect();
    let mut notes = vec![format!(
        "release palyrad (redb cache {cache_mib} MiB), {SOAK_OBJECTIVES} objectives on `{SOAK_SCHEDULE}` (run retention {SOAK_RUN_RETENTION}) and {SOAK_CLIENTS} clients of login+logout / profile page / profile create+delete for {:.0} s: {} provider calls, {} mixed iterations ({} not ok), {missed} runs recorded missed; RSS MiB {}; second half {mid:.1} -> {end:.1} MiB ({growth_pct:+.1}%)",
        duration.as_secs_f64(),
        calls,
        tally.ok,
        tally.errors,
        trace.join(", ")
    )];
    if created.errors > 0 {
        notes.push(format!("{} objective creations failed", created.errors));
    }
    if !stopped.is_empty() {
        notes.push(stopped);
    }
    Ok(Row {
        errors: tally.errors + created.errors,
        rss_idle_mib: Some(round(idle, 2)),
        rss_loaded_mib: Some(round(end, 2)),
        rss_growth_pct: Some(round(growth_pct, 2)),
        missed: Some(missed),
        notes: notes.join("; "),
        ..Row::new(
            Plan::Soak {
                duration_s: duration.as_secs(),
            },
            bench,
        )
    })
}
