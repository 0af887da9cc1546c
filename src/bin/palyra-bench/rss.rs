//! The memory scenarios on the release palyrad binary: `rss` (idle and after 10,000
//! logins) and `rss-profiles` (idle and after 10,000 API-key profiles).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::auth::Login;
use crate::bench::Bench;
use crate::driver::{BoxError, Limit, bearer_header, drive};
use crate::plan::{Plan, RSS_PROFILES};
use crate::probes::vm_rss_mib;
use crate::profiles::{CreateProfile, PROFILES_PATH, list_page};
use crate::report::{Row, round};
use crate::servers::ChildPalyrad;

/// Logins between the idle and the loaded RSS reading.
const RSS_LOGINS: u64 = 10_000;
/// The intermediate reading of `rss-profiles`, which separates one-off growth from
/// growth per profile.
const RSS_PROFILES_FIRST: u64 = 1_000;

/// Resident memory of the release palyrad binary, idle and after 10,000 logins.
pub async fn rss(bench: &Bench) -> Result<Row, BoxError> {
    let mut child = ChildPalyrad::spawn(&bench.root).await?;
    let idle = vm_rss_mib(child.pid()?)?;
    let login = Arc::new(Login {
        body: Bytes::from(serde_json::json!({ "admin_token": child.token.expose() }).to_string()),
    });
    let logins = drive(
        child.addr(),
        &login,
        bench.clients,
        Limit::Count(RSS_LOGINS),
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let loaded = vm_rss_mib(child.pid()?)?;
    let stopped = child.stop().await;

    let mut notes = vec![format!(
        "release palyrad: idle {idle:.1} MiB, after {RSS_LOGINS} logins {loaded:.1} MiB ({:.0} logins/s, JSON info logging to a pipe)",
        logins.ok as f64 / logins.elapsed.as_secs_f64()
    )];
    if !stopped.is_empty() {
        notes.push(stopped);
    }
    // rps, ratio and latencies stay 0: this row is about memory.
    Ok(Row {
        errors: logins.errors,
        rss_idle_mib: Some(round(idle, 2)),
        rss_loaded_mib: Some(round(loaded, 2)),
        notes: notes.join("; "),
        ..Row::new(Plan::Rss, bench)
    })
}

/// Resident memory of the release palyrad binary, idle and after creating 10,000
/// API-key profiles, with a reading after the first 1,000: growth from 1,000 to
/// 10,000 leaves out one-off costs (connection buffers, allocator arenas, the first
/// pages of the B-tree and of the maps).
pub async fn rss_profiles(bench: &Bench) -> Result<Row, BoxError> {
    let mut child = ChildPalyrad::spawn(&bench.root).await?;
    let idle = vm_rss_mib(child.pid()?)?;
    let create = Arc::new(CreateProfile::new(bearer_header(&child.token)?, "p"));
    let first = drive(
        child.addr(),
        &create,
        bench.clients,
        Limit::Count(RSS_PROFILES_FIRST),
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after_first = vm_rss_mib(child.pid()?)?;
    let rest = drive(
        child.addr(),
        &create,
        bench.clients,
        Limit::Count(RSS_PROFILES - RSS_PROFILES_FIRST),
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let loaded = vm_rss_mib(child.pid()?)?;
    let (listed, _) = list_page(
        child.addr(),
        &format!("{PROFILES_PATH}?limit=1"),
        &bearer_header(&child.token)?,
    )
    .await?;
    let stopped = child.stop().await;

    let created = first.ok + rest.ok;
    let per_profile_kib = (loaded - idle) * 1024.0 / RSS_PROFILES as f64;
    let marginal_kib = (loaded - after_first) * 1024.0 / (RSS_PROFILES - RSS_PROFILES_FIRST) as f64;
    let secs = first.elapsed.as_secs_f64() + rest.elapsed.as_secs_f64();
    let mut notes = vec![format!(
        "release palyrad: idle {idle:.1} MiB, after {RSS_PROFILES_FIRST} profiles {after_first:.1} MiB, after {created} profiles {loaded:.1} MiB: {per_profile_kib:.2} KiB/profile over idle, {marginal_kib:.2} KiB/profile from {RSS_PROFILES_FIRST} to {RSS_PROFILES} ({:.0} creates/s, JSON info logging to a pipe)",
        created as f64 / secs
    )];
    if listed == 0 {
        notes.push("the profile list came back empty".into());
    }
    if !stopped.is_empty() {
        notes.push(stopped);
    }
    Ok(Row {
        errors: first.errors + rest.errors,
        profiles: Some(created as usize),
        rss_idle_mib: Some(round(idle, 2)),
        rss_loaded_mib: Some(round(loaded, 2)),
        rss_first_mib: Some(round(after_first, 2)),
        rss_per_profile_kib: Some(round(per_profile_kib, 3)),
        rss_marginal_per_profile_kib: Some(round(marginal_kib, 3)),
        notes: notes.join("; "),
        ..Row::new(Plan::RssProfiles, bench)
    })
}
