//! The auth-profile scenarios: `profile-list` (a page of a seeded list) and
//! `profile-create` (a new API-key profile, its key sealed in the vault).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use hyper::StatusCode;
use hyper::header::{self, HeaderValue};

use crate::bench::Bench;
use crate::driver::{BoxError, Client, Limit, Work, drive};
use crate::http::HttpLoad;
use crate::plan::{LIST_PAGE, LIST_PROFILES, Plan};
use crate::report::Row;

pub const PROFILES_PATH: &str = "/console/v1/auth/profiles";

/// `GET /console/v1/auth/profiles?limit=...` with the bearer token; 200 expected.
#[derive(Debug)]
struct ListProfiles {
    bearer: HeaderValue,
    path: String,
}

impl Work for ListProfiles {
    async fn iterate(&self, client: &mut Client) -> Result<bool, BoxError> {
        let request = client.get(&self.path, Some((header::AUTHORIZATION, &self.bearer)))?;
        Ok(client.send(request).await?.status() == StatusCode::OK)
    }
}

/// `POST /console/v1/auth/profiles`: a new API-key profile (`validate: false`) with a
/// unique id `{prefix}{n:05}` per iteration; 200 expected.
#[derive(Debug)]
pub struct CreateProfile {
    bearer: HeaderValue,
    prefix: &'static str,
    next: AtomicU64,
}

impl CreateProfile {
    pub fn new(bearer: HeaderValue, prefix: &'static str) -> Self {
        Self {
            bearer,
            prefix,
            next: AtomicU64::new(1),
        }
    }
}

impl Work for CreateProfile {
    async fn iterate(&self, client: &mut Client) -> Result<bool, BoxError> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let prefix = self.prefix;
        let body = format!(
            r#"{{"profile_id": "{prefix}{n:05}", "provider": "openai", "profile_name": "p", "credential": {{"type": "api_key", "api_key": "bench-key-{n:010}"}}, "validate": false}}"#
        );
        let request = client.post(
            PROFILES_PATH,
            Some((header::AUTHORIZATION, &self.bearer)),
            Bytes::from(body),
        )?;
        Ok(client.send(request).await?.status() == StatusCode::OK)
    }
}

/// `profile-list`: a page of 100 of 1,000 seeded API-key profiles.
pub async fn profile_list(bench: &Bench) -> Result<Row, BoxError> {
    let target = bench.http_target(Plan::ProfileList).await?;
    let bearer = target.bearer()?;
    let mut notes = Vec::new();
    eprintln!("  seeding {LIST_PROFILES} API-key profiles");
    let create = Arc::new(CreateProfile::new(bearer.clone(), "p"));
    let seeded = drive(
        target.addr,
        &create,
        bench.clients,
        Limit::Count(LIST_PROFILES as u64),
    )
    .await?;
    if seeded.errors > 0 {
        notes.push(format!("{} seeding creates failed", seeded.errors));
    }
    let path = format!("{PROFILES_PATH}?limit={LIST_PAGE}");
    let (items, bytes) = list_page(target.addr, &path, &bearer).await?;
    notes.push(format!(
        "{} profiles seeded; one page of {items} ({bytes} bytes of JSON)",
        seeded.ok
    ));
    let load = HttpLoad {
        work: ListProfiles { bearer, path },
        requests_per_iteration: 1,
        writes_per_iteration: 0,
    };
    bench.measure(Plan::ProfileList, target, load, notes).await
}

/// `profile-create`: one new API-key profile per iteration.
pub async fn profile_create(bench: &Bench) -> Result<Row, BoxError> {
    let target = bench.http_target(Plan::ProfileCreate).await?;
    let notes = vec![
        "1 iteration = 1 new API-key profile (validate false): a durable write with the key sealed in the vault"
            .into(),
    ];
    let load = HttpLoad {
        work: CreateProfile::new(target.bearer()?, "c"),
        requests_per_iteration: 1,
        writes_per_iteration: 1,
    };
    bench
        .measure(Plan::ProfileCreate, target, load, notes)
        .await
}

/// Fetches one page of profiles; returns its item count and size, and fails unless
/// it answers 200 with a page.
pub async fn list_page(
    addr: SocketAddr,
    path: &str,
    bearer: &HeaderValue,
) -> Result<(usize, usize), BoxError> {
    let mut client = Client::connect(addr).await?;
    let response = client
        .send(client.get(path, Some((header::AUTHORIZATION, bearer)))?)
        .await?;
    if response.status() != StatusCode::OK {
        return Err(format!("GET {path} answered {}", response.status()).into());
    }
    let page: serde_json::Value = serde_json::from_slice(response.body())?;
    let items = page
        .get("items")
        .and_then(|i| i.as_array())
        .ok_or("the profile list answered no items")?
        .len();
    Ok((items, response.body().len()))
}
