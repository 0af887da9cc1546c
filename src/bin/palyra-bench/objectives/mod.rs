//! The objective scenarios: `objective-create` (new active standing orders that never
//! fall due during the run) and, in [`scheduler`], `scheduler-10k`.

pub mod firings;
pub mod peer;
pub mod scheduler;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use hyper::StatusCode;
use hyper::header::{self, HeaderValue};

use crate::bench::Bench;
use crate::driver::{BoxError, Client, Work};
use crate::http::HttpLoad;
use crate::plan::Plan;
use crate::profiles::PROFILES_PATH;
use crate::report::Row;

const AGENTS_PATH: &str = "/console/v1/agents";
const OBJECTIVES_PATH: &str = "/console/v1/objectives";
/// The API-key profile and the agent every bench objective runs as. The key is the
/// bearer the fake model provider receives, which answers `good-` keys only.
const BENCH_MODEL_PROFILE: &str = "bench-model";
const BENCH_MODEL_KEY: &str = "good-bench-model-key-0001";
const BENCH_AGENT: &str = "bench-agent";
/// `objective-create`: active objectives whose schedule is far away (00:00:00 UTC on
/// 1 January), so none fires during the run.
const FAR_SCHEDULE: &str = "0 0 0 1 1 *";
/// Prefix of the objective ids of `scheduler-10k` (`s00001`...); the prompt of each
/// objective is its id, which is how the fake provider knows whose call arrived.
pub const SCHEDULER_PREFIX: &str = "s";

/// `POST /console/v1/objectives`: a new active standing order of the bench agent with
/// a unique id `{prefix}{n:05}` per iteration, the id as its prompt, and `schedule` in
/// UTC; 200 expected.
#[derive(Debug)]
pub struct CreateObjective {
    bearer: HeaderValue,
    prefix: &'static str,
    schedule: String,
    next: AtomicU64,
}

impl CreateObjective {
    pub fn new(bearer: HeaderValue, prefix: &'static str, schedule: String) -> Self {
        Self {
            bearer,
            prefix,
            schedule,
            next: AtomicU64::new(1),
        }
    }
}

impl Work for CreateObjective {
    async fn iterate(&self, client: &mut Client) -> Result<bool, BoxError> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let prefix = self.prefix;
        let body = serde_json::json!({
            "objective_id": format!("{prefix}{n:05}"),
            "agent_id": BENCH_AGENT,
            "kind": "standing_order",
            "name": format!("bench {n}"),
            "prompt": format!("{prefix}{n:05}"),
            "automation": { "schedule": self.schedule, "timezone": "UTC" },
            "activate": true,
        });
        let request = client.post(
            OBJECTIVES_PATH,
            Some((header::AUTHORIZATION, &self.bearer)),
            Bytes::from(body.to_string()),
        )?;
        Ok(client.send(request).await?.status() == StatusCode::OK)
    }
}

/// `objective-create`: one new active standing order per iteration.
pub async fn objective_create(bench: &Bench) -> Result<Row, BoxError> {
    let target = bench.http_target(Plan::ObjectiveCreate).await?;
    let bearer = target.bearer()?;
    create_agent(target.addr, &bearer).await?;
    let notes = vec![format!(
        "1 iteration = 1 new active standing order with the schedule `{FAR_SCHEDULE}` (UTC, never due during the run): a durable write and a scheduler entry"
    )];
    let load = HttpLoad {
        work: CreateObjective::new(bearer, "c", FAR_SCHEDULE.into()),
        requests_per_iteration: 1,
        writes_per_iteration: 1,
    };
    bench
        .measure(Plan::ObjectiveCreate, target, load, notes)
        .await
}

/// Creates the API-key profile (`validate: false`) and the agent that bench
/// objectives run as; the key is the bearer the fake provider receives.
pub async fn create_agent(addr: SocketAddr, bearer: &HeaderValue) -> Result<(), BoxError> {
    let mut client = Client::connect(addr).await?;
    let profile = serde_json::json!({
        "profile_id": BENCH_MODEL_PROFILE,
        "provider": "openai",
        "profile_name": "bench model",
        "credential": { "type": "api_key", "api_key": BENCH_MODEL_KEY },
        "validate": false,
    });
    let agent = serde_json::json!({
        "agent_id": BENCH_AGENT,
        "model": "bench-model",
        "default_model_profile": BENCH_MODEL_PROFILE,
    });
    for (path, body) in [(PROFILES_PATH, profile), (AGENTS_PATH, agent)] {
        let request = client.post(
            path,
            Some((header::AUTHORIZATION, bearer)),
            Bytes::from(body.to_string()),
        )?;
        let response = client.send(request).await?;
        if response.status() != StatusCode::OK {
            return Err(format!(
                "POST {path} answered {}: {}",
                response.status(),
                String::from_utf8_lossy(response.body())
            )
            .into());
        }
    }
    Ok(())
}

/// The number of a bench objective id (`s00042` is 42).
pub fn objective_number(id: &str) -> Option<u32> {
    id.strip_prefix(SCHEDULER_PREFIX)?.parse().ok()
}
