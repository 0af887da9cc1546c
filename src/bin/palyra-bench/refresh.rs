//! `refresh-10k`: 10,000 OAuth profiles signed in through the real flow against the
//! test kit's fake OAuth provider, then the background refresher's burst on them.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::StatusCode;
use hyper::header::{self, HeaderValue};
use palyra::settings::Settings;
use palyra::testkit::oauth::{FakeOAuth, OAuthState, consent};
use palyra_actors::secret::random_token;
use tokio::task::JoinSet;

use crate::bench::Bench;
use crate::driver::{BoxError, Client, REQUEST_TIMEOUT, bearer_header};
use crate::fakes::{BENCH_PROVIDER, oauth_provider};
use crate::plan::{Plan, REFRESH_PROFILES};
use crate::probes::{
    clock_ticks_per_second, process_cpu_ticks, thread_cpu_ticks, unix_ms, unix_ms_at, writer_counts,
};
use crate::report::{Row, round};
use crate::servers::report_stop;

const HEALTH_PATH: &str = "/console/v1/auth/health";
/// `oauth.refresh_lead_s` of `refresh-10k`.
const REFRESH_LEAD_S: u64 = 2;
/// Lifetime of the tokens the fake issues on refresh: nothing falls due again while
/// the idle CPU is measured.
const REFRESHED_EXPIRES_IN_S: u64 = 3_600;
/// How long idle CPU is measured after the refresh burst.
const IDLE_CPU_WINDOW: Duration = Duration::from_secs(5);

/// How one attempt of `refresh-10k` went.
enum RefreshAttempt {
    Measured(Box<Row>),
    /// A refresh started before seeding had finished: the due window was set too
    /// early for this machine. Carries how long the sign-in callbacks took.
    TooEarly {
        callbacks: Duration,
    },
}

impl Bench {
    /// `refresh-10k`: 10,000 OAuth profiles signed in through the real flow against the
    /// fake token endpoint, with expiries that make them all due within about one
    /// second a few seconds after seeding; then the background refresher's burst.
    pub async fn refresh(&self) -> Result<Row, BoxError> {
        let mut lead_in = None;
        for attempt in 1..=3 {
            match self.refresh_attempt(lead_in).await? {
                RefreshAttempt::Measured(row) => {
                    let mut row = *row;
                    if attempt > 1 {
                        row.notes.push_str(&format!(
                            "; attempt {attempt}: an earlier attempt set the due window before seeding had finished"
                        ));
                    }
                    return Ok(row);
                }
                RefreshAttempt::TooEarly { callbacks } => {
                    eprintln!(
                        "  a refresh started before seeding finished (callbacks took {:.1} s); again with a later due window",
                        callbacks.as_secs_f64()
                    );
                    lead_in = Some(callbacks * 2 + Duration::from_secs(3));
                }
            }
        }
        Err("refresh-10k: refreshes kept starting before seeding finished".into())
    }

    /// One run of `refresh-10k` on a fresh daemon and a fresh fake. `lead_in` is how
    /// long after the start of the callbacks the due window opens; by default it is
    /// estimated from the bootstraps.
    async fn refresh_attempt(&self, lead_in: Option<Duration>) -> Result<RefreshAttempt, BoxError> {
        let n = REFRESH_PROFILES;
        let fake = FakeOAuth::try_start(REFRESHED_EXPIRES_IN_S)?;
        let token = random_token();
        let base = fake.url();
        let daemon = self
            .start_daemon(&token, 1_000_000, move |s| {
                let (name, provider) = oauth_provider(&base);
                s.providers.custom.insert(name, provider);
                s.oauth.refresh_lead_s = REFRESH_LEAD_S;
            })
            .await?;
        let cap = Settings::defaults().oauth.max_concurrent_refreshes;
        let bearer = bearer_header(&token)?;
        let addr = daemon.addr();

        eprintln!("  signing in {n} OAuth profiles: bootstraps");
        let (paths, bootstrap_errors, bootstraps) =
            bootstrap_all(addr, &bearer, n, self.clients, &fake.state).await?;
        if paths.is_empty() {
            return Err("refresh-10k: no bootstrap succeeded".into());
        }
        // The callbacks cost a code exchange and a durable write each on top of what a
        // bootstrap costs: the window opens well after they should have finished.
        let lead_in = lead_in.unwrap_or_else(|| {
            (bootstraps * 3 + Duration::from_secs(3)).max(Duration::from_secs(5))
        });
        let callbacks_start = Instant::now();
        fake.open_due_window(
            unix_ms() + i64::try_from(lead_in.as_millis())?,
            REFRESH_LEAD_S,
        );
        eprintln!(
            "  callbacks; refreshes fall due from {:.1} s after their start",
            lead_in.as_secs_f64()
        );
        let paths = Arc::new(paths);
        let (signed_in, callback_errors, callbacks) =
            callbacks_all(addr, &paths, self.clients).await?;
        let seeded_at = Instant::now();
        let stats = daemon.refresher().stats();
        if fake.snapshot(|s| s.refresh_redemptions) > 0
            || stats.completed.load(Ordering::SeqCst) > 0
        {
            daemon.stop().await?;
            report_stop(fake.stop());
            return Ok(RefreshAttempt::TooEarly { callbacks });
        }
        let seed_errors = bootstrap_errors + callback_errors;
        let expected = signed_in;
        let (commits_before, writes_before) = writer_counts(daemon.writer());
        let threads_before = thread_cpu_ticks();

        eprintln!("  waiting for the refresh burst");
        let wait_limit =
            lead_in.saturating_sub(callbacks_start.elapsed()) + Duration::from_secs(60);
        let done_at = loop {
            if stats.completed.load(Ordering::SeqCst) >= expected {
                break Some(Instant::now());
            }
            if seeded_at.elapsed() > wait_limit {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        let completed = stats.completed.load(Ordering::SeqCst);
        let threads_after = thread_cpu_ticks();
        let (commits_after, writes_after) = writer_counts(daemon.writer());
        let peak = stats.peak_in_flight.load(Ordering::SeqCst);
        let (first_refresh, last_grant) = fake.snapshot(|s| (s.first_refresh, s.last_refresh));

        // Idle: the refresher has nothing due for an hour.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let cpu_before = process_cpu_ticks()?;
        let idle_started = Instant::now();
        tokio::time::sleep(IDLE_CPU_WINDOW).await;
        let cpu_after = process_cpu_ticks()?;
        let idle_secs = idle_started.elapsed().as_secs_f64();
        let ticks_per_s = clock_ticks_per_second();
        let idle_ticks = cpu_after.saturating_sub(cpu_before);
        let idle_cpu_pct = idle_ticks as f64 / ticks_per_s / idle_secs * 100.0;
        // One tick more or less, in % of one core over the window.
        let idle_resolution_pct = 100.0 / ticks_per_s / idle_secs;

        let health = auth_health_counts(addr, &bearer).await?;
        let ok_profiles = health.get("ok").copied().unwrap_or(0);
        let (grants, codes, refused, due_range) =
            fake.snapshot(|s| (s.refresh_grants, s.code_grants, s.refused, s.due_range));
        let connections = fake.connections();
        let (due_min, due_max) = due_range.unwrap_or((0, 0));
        daemon.stop().await?;
        report_stop(fake.stop());

        let mut row = Row::new(Plan::Refresh, self);
        let mut notes = vec![format!(
            "{signed_in} OAuth profiles signed in through bootstrap + callback in {:.1} s ({:.0}/s; bootstraps {:.1} s, callbacks {:.1} s), {codes} codes redeemed at the fake",
            bootstraps.as_secs_f64() + callbacks.as_secs_f64(),
            signed_in as f64 / (bootstraps + callbacks).as_secs_f64(),
            bootstraps.as_secs_f64(),
            callbacks.as_secs_f64(),
        )];
        if seed_errors > 0 {
            notes.push(format!("{seed_errors} sign-ins failed"));
        }
        let due_spread_ms = due_max - due_min;
        notes.push(format!(
            "due times spread over {due_spread_ms} ms, from {:.1} s after seeding finished (lead {REFRESH_LEAD_S} s)",
            (due_min - unix_ms_at(seeded_at)) as f64 / 1000.0
        ));
        row.profiles = Some(signed_in as usize);
        row.refreshed = Some(completed);
        row.seed_s = Some(round((bootstraps + callbacks).as_secs_f64(), 2));
        row.due_spread_ms = Some(due_spread_ms);
        row.peak_in_flight = Some(peak);
        row.max_in_flight = Some(cap);
        row.token_endpoint_refreshes = Some(grants);
        match (first_refresh, done_at) {
            (Some(first), Some(done)) => {
                let wall = done.saturating_duration_since(first).as_secs_f64();
                let per_s = completed as f64 / wall;
                row.refresh_wall_s = Some(round(wall, 3));
                row.refreshes_per_s = Some(round(per_s, 1));
                let after_due = unix_ms_at(done) - due_max;
                notes.push(format!(
                    "first to {completed}th refresh in {wall:.2} s ({per_s:.0}/s), the last done {after_due} ms after the last due time; peak {peak} in flight (cap {cap})"
                ));
                if let Some(last) = last_grant {
                    notes.push(format!(
                        "last refresh grant at the fake {:.2} s after the first",
                        last.saturating_duration_since(first).as_secs_f64()
                    ));
                }
                // Busy threads over the burst (from the end of seeding, which was idle
                // until the first refresh, to the last refresh), in % of one core.
                let busy: Vec<String> = threads_after
                    .iter()
                    .filter_map(|(name, after)| {
                        let ticks =
                            after.saturating_sub(threads_before.get(name).copied().unwrap_or(0));
                        (ticks > 0).then_some((name, ticks))
                    })
                    .map(|(name, ticks)| {
                        format!("{name} {:.0}%", ticks as f64 / ticks_per_s / wall * 100.0)
                    })
                    .collect();
                if !busy.is_empty() {
                    notes.push(format!(
                        "CPU by thread over the burst, % of one core: {}",
                        busy.join(", ")
                    ));
                }
                let commits = commits_after - commits_before;
                let writes = writes_after - writes_before;
                if commits > 0 {
                    let per_commit = writes as f64 / commits as f64;
                    row.writes_per_commit = Some(round(per_commit, 2));
                    row.commits_per_s = Some(round(commits as f64 / wall, 1));
                    notes.push(format!(
                        "group commit: {per_commit:.1} writes/commit, {:.0} commits/s",
                        commits as f64 / wall
                    ));
                }
            }
            _ => notes.push(format!(
                "only {completed} of {expected} refreshes completed within {} s of seeding",
                wait_limit.as_secs()
            )),
        }
        notes.push(format!(
            "the daemon opened {connections} TCP connections to the token endpoint for {} token requests",
            codes + grants + refused
        ));
        if grants != completed || refused > 0 {
            notes.push(format!(
                "the fake saw {grants} refresh grants and refused {refused} requests"
            ));
        }
        row.idle_cpu_pct = Some(round(idle_cpu_pct, 2));
        row.idle_cpu_ticks = Some(idle_ticks);
        notes.push(format!(
            "idle CPU {idle_cpu_pct:.2}% of one core over {idle_secs:.0} s ({idle_ticks} ticks of utime+stime at {ticks_per_s:.0}/s in /proc/self/stat, so +-{idle_resolution_pct:.2}%; the whole bench process: the daemon plus the idle runtimes of the bench, the baseline and the fake)"
        ));
        row.errors = expected.saturating_sub(ok_profiles);
        if row.errors > 0 {
            notes.push(format!(
                "{} of {expected} profiles not ok after the burst: {health:?}",
                row.errors
            ));
        }
        row.notes = notes.join("; ");
        Ok(RefreshAttempt::Measured(Box::new(row)))
    }
}

/// Bootstraps `n` OAuth sign-ins (profiles `r00001`...) over `clients` connections,
/// consents to each at the fake, and returns the callback path (with the code and the
/// state) of each, the failures and the time taken.
async fn bootstrap_all(
    addr: SocketAddr,
    bearer: &HeaderValue,
    n: usize,
    clients: usize,
    oauth: &Arc<Mutex<OAuthState>>,
) -> Result<(Vec<String>, u64, Duration), BoxError> {
    let path = format!("/console/v1/auth/providers/{BENCH_PROVIDER}/bootstrap");
    let next = Arc::new(AtomicU64::new(0));
    let mut connected = Vec::new();
    for _ in 0..clients.min(n) {
        connected.push(Client::connect(addr).await?);
    }
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for mut client in connected {
        let (next, bearer, path) = (Arc::clone(&next), bearer.clone(), path.clone());
        let oauth = Arc::clone(oauth);
        tasks.spawn(async move {
            let mut paths = Vec::new();
            let mut errors = 0_u64;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n as u64 {
                    break;
                }
                let body = format!(r#"{{"profile_name": "b", "profile_id": "r{:05}"}}"#, i + 1);
                let sent = async {
                    let request = client.post(
                        &path,
                        Some((header::AUTHORIZATION, &bearer)),
                        Bytes::from(body),
                    )?;
                    let response = client.send(request).await?;
                    Ok::<_, BoxError>(
                        (response.status() == StatusCode::OK)
                            .then(|| callback_path(&oauth, response.body()))
                            .flatten(),
                    )
                };
                match tokio::time::timeout(REQUEST_TIMEOUT, sent).await {
                    Ok(Ok(Some(p))) => paths.push(p),
                    Ok(Ok(None)) => errors += 1,
                    Ok(Err(_)) | Err(_) => {
                        errors += 1;
                        client.reset();
                    }
                }
            }
            (paths, errors)
        });
    }
    let mut paths = Vec::with_capacity(n);
    let mut errors = 0;
    while let Some(joined) = tasks.join_next().await {
        let (p, e) = joined?;
        paths.extend(p);
        errors += e;
    }
    Ok((paths, errors, start.elapsed()))
}

/// Follows every callback path (the browser's redirect back to the daemon) over
/// `clients` connections; 200 means signed in. Returns successes, failures, time.
async fn callbacks_all(
    addr: SocketAddr,
    paths: &Arc<Vec<String>>,
    clients: usize,
) -> Result<(u64, u64, Duration), BoxError> {
    let next = Arc::new(AtomicU64::new(0));
    let mut connected = Vec::new();
    for _ in 0..clients.min(paths.len()) {
        connected.push(Client::connect(addr).await?);
    }
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for mut client in connected {
        let (next, paths) = (Arc::clone(&next), Arc::clone(paths));
        tasks.spawn(async move {
            let (mut ok, mut errors) = (0_u64, 0_u64);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(path) = paths.get(i) else {
                    break;
                };
                let sent = async {
                    let response = client.send(client.get(path, None)?).await?;
                    Ok::<_, BoxError>(response.status() == StatusCode::OK)
                };
                match tokio::time::timeout(REQUEST_TIMEOUT, sent).await {
                    Ok(Ok(true)) => ok += 1,
                    Ok(Ok(false)) => errors += 1,
                    Ok(Err(_)) | Err(_) => {
                        errors += 1;
                        client.reset();
                    }
                }
            }
            (ok, errors)
        });
    }
    let (mut ok, mut errors) = (0, 0);
    while let Some(joined) = tasks.join_next().await {
        let (o, e) = joined?;
        ok += o;
        errors += e;
    }
    Ok((ok, errors, start.elapsed()))
}

/// `GET /console/v1/auth/health`: the number of profiles per health state.
async fn auth_health_counts(
    addr: SocketAddr,
    bearer: &HeaderValue,
) -> Result<std::collections::BTreeMap<String, u64>, BoxError> {
    let mut client = Client::connect(addr).await?;
    let response = client
        .send(client.get(HEALTH_PATH, Some((header::AUTHORIZATION, bearer)))?)
        .await?;
    if response.status() != StatusCode::OK {
        return Err(format!("GET {HEALTH_PATH} answered {}", response.status()).into());
    }
    let report: serde_json::Value = serde_json::from_slice(response.body())?;
    let counts = report
        .get("counts")
        .and_then(|c| c.as_object())
        .ok_or("the health report has no counts")?;
    Ok(counts
        .iter()
        .filter_map(|(state, n)| Some((state.clone(), n.as_u64()?)))
        .filter(|(_, n)| *n > 0)
        .collect())
}

/// The user's consent at the fake for a bootstrap answer, and the daemon's callback
/// path the provider redirects the browser to: `{redirect_uri path}?code=...&state=...`.
fn callback_path(oauth: &Mutex<OAuthState>, body: &Bytes) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let authorization_url = value.get("authorization_url")?.as_str()?;
    let (_, redirect) = consent(oauth, authorization_url).ok()?;
    let redirect = url::Url::parse(&redirect).ok()?;
    Some(format!("{}?{}", redirect.path(), redirect.query()?))
}
