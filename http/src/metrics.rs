//! The one metric registry, rendered by `GET /metrics` in the OpenMetrics text format
//! (which Prometheus scrapes): requests by route and status with latency histograms,
//! live sessions, profiles by health, refresh outcomes, runs by status, scheduler
//! lateness, and the writer's batch sizes and commit latencies.

use std::collections::HashSet;
use std::sync::OnceLock;
use std::time::Duration;

use palyra_actors::metrics::{ActorMetrics, Labels};
use palyra_actors::registry::HealthState;
use palyra_storage::WriterStats;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of a request: all `'static` or `Copy`, so counting one allocates nothing
/// once its series exists.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    method: &'static str,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
    method: &'static str,
}

type HistogramFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 100 us to about 13 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 18))
}

/// Every metric of the daemon, registered once.
#[derive(Debug)]
pub struct HttpMetrics {
    registry: Registry,
    /// Every route template, so a matched path becomes a `'static` label; set once by
    /// the router (see [`HttpMetrics::know_routes`]), because the route table is built
    /// from the handlers, which hold this registry in their state.
    routes: OnceLock<HashSet<&'static str>>,
    requests: Family<RequestLabels, Counter>,
    latency: HistogramFamily,
    live_sessions: Gauge,
    profiles: Family<Labels, Gauge>,
    cluster_node: Family<Vec<(String, String)>, Gauge>,
    cluster_shards: Gauge,
}

impl HttpMetrics {
    /// `cert_not_after`: the served certificate's expiry (Unix seconds), under TLS.
    pub fn new(actors: &ActorMetrics, writer: &WriterStats, cert_not_after: Option<i64>) -> Self {
        let mut registry = Registry::with_prefix("palyra");
        if let Some(not_after) = cert_not_after {
            let expiry = Gauge::<i64>::default();
            expiry.set(not_after);
            registry.register(
                "tls_certificate_expiry_timestamp_seconds",
                "When the served TLS certificate expires, in Unix seconds (alert on it minus time())",
                expiry,
            );
        }
        let requests = Family::<RequestLabels, Counter>::default();
        let latency: HistogramFamily = Family::new_with_constructor(latency_histogram);
        let live_sessions = Gauge::default();
        let profiles = Family::<Labels, Gauge>::default();
        let cluster_node = Family::<Vec<(String, String)>, Gauge>::default();
        let cluster_shards = Gauge::default();
        registry.register(
            "cluster_node",
            "1, labelled with this node's id and mode (single: redb; cluster: PostgreSQL shared by nodes)",
            cluster_node.clone(),
        );
        registry.register(
            "cluster_shards_held",
            "Shards whose lease this node holds now (of 64; all of them on one node)",
            cluster_shards.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests by route template, method and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route template and method",
            latency.clone(),
        );
        registry.register(
            "console_sessions_live",
            "Live console sessions",
            live_sessions.clone(),
        );
        registry.register(
            "auth_profiles",
            "Auth profiles by health state",
            profiles.clone(),
        );
        registry.register(
            "oauth_refreshes",
            "OAuth refresh attempts by outcome",
            actors.refreshes.clone(),
        );
        registry.register(
            "objective_runs",
            "Run records written, by status",
            actors.runs.clone(),
        );
        registry.register(
            "tokens",
            "Tokens of answered provider calls, by provider, model and direction",
            actors.tokens.clone(),
        );
        registry.register(
            "scheduler_lateness_seconds",
            "Delay between a firing's scheduled instant and its delivery",
            actors.scheduler_lateness_seconds.clone(),
        );
        registry.register(
            "writer_batch_size",
            "Writes folded into one durable commit",
            writer.batch_size.clone(),
        );
        registry.register(
            "writer_commit_duration_seconds",
            "Time from opening a write transaction to its durable commit",
            writer.commit_seconds.clone(),
        );
        Self {
            registry,
            routes: OnceLock::new(),
            requests,
            latency,
            live_sessions,
            profiles,
            cluster_node,
            cluster_shards,
        }
    }

    /// Names the route templates requests can be counted under; a template not named
    /// here counts as `unmatched`. The first call wins: every router of one daemon is
    /// built from the same table.
    pub fn know_routes(&self, routes: impl IntoIterator<Item = &'static str>) {
        let _ = self.routes.set(routes.into_iter().collect());
    }

    /// Counts one answered request. `route` is the matched route template, if any.
    pub fn observe_request(
        &self,
        route: Option<&str>,
        method: &'static str,
        status: u16,
        elapsed: Duration,
    ) {
        let route = route
            .and_then(|r| self.routes.get()?.get(r).copied())
            .unwrap_or("unmatched");
        self.requests
            .get_or_create(&RequestLabels {
                route,
                method,
                status,
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabels { route, method })
            .observe(elapsed.as_secs_f64());
    }

    /// Sets the cluster gauges, read at scrape time.
    pub fn set_cluster(&self, mode: &str, node_id: &str, shards_held: usize) {
        self.cluster_node
            .get_or_create(&vec![
                ("mode".to_owned(), mode.to_owned()),
                ("node_id".to_owned(), node_id.to_owned()),
            ])
            .set(1);
        self.cluster_shards
            .set(i64::try_from(shards_held).unwrap_or(i64::MAX));
    }

    /// Sets the live-sessions gauge, read at scrape time.
    pub fn set_live_sessions(&self, live_sessions: usize) {
        self.live_sessions
            .set(i64::try_from(live_sessions).unwrap_or(i64::MAX));
    }

    /// The registry in the OpenMetrics text format, with the profile gauges (read at
    /// scrape time) set first from the count of every health state.
    pub fn encode(
        &self,
        profiles_by_health: impl Fn(HealthState) -> usize,
    ) -> Result<String, std::fmt::Error> {
        for health_state in HealthState::ALL {
            let name = palyra_actors::wire_name(health_state);
            self.profiles
                .get_or_create(&vec![("health", name)])
                .set(i64::try_from(profiles_by_health(health_state)).unwrap_or(i64::MAX));
        }
        let mut body = String::new();
        encode(&mut body, &self.registry)?;
        Ok(body)
    }
}
