//! Wires storage, actors and the HTTP server together, and runs them until shutdown.

use std::fs;
use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use palyra_actors::audit::{AuditLog, AuditRetention};
use palyra_actors::browser::BrowserHandle;
use palyra_actors::cluster::{ClusterHandle, ClusterPolicy};
use palyra_actors::metrics::ActorMetrics;
use palyra_actors::objectives::{ObjectivesHandle, ObjectivesPolicy};
use palyra_actors::operators::OperatorsHandle;
use palyra_actors::refresher::{RefreshAdapters, RefresherHandle, RefresherPolicy};
use palyra_actors::secret::random_token;
use palyra_actors::snapshot::Snapshot;
use palyra_actors::vault::{Vault, VaultError};
use palyra_actors::{
    ActorError, HandoffPolicy, HandoffsHandle, RegistryHandle, SecretString, SessionPolicy,
    SessionsHandle,
};
use palyra_http::metrics::HttpMetrics;
use palyra_http::routes::deployment::PostureConfig;
use palyra_http::throttle::{Rate, RateLimits};
use palyra_http::{AppState, AppStateInner, AuthThrottle, HttpConfig};
use palyra_storage::{Storage, StorageConfig, StorageError, Writer};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

use crate::settings::{ConfigError, Settings, check_admin_token};

/// File in the data dir holding the generated admin token.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

/// Why palyrad could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("data dir {path}: {message}")]
    DataDir { path: PathBuf, message: String },
    #[error("admin token: {0}")]
    AdminToken(String),
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error("actors: {0}")]
    Actor(#[from] ActorError),
    #[error("vault: {0}")]
    Vault(#[from] VaultError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("HTTP server failed: {0}")]
    Serve(std::io::Error),
    /// The remote-bind guard: each missing condition, named.
    #[error("{0}")]
    RemoteBind(String),
    #[error("{0}")]
    Tls(String),
    #[error("outbound HTTP client: {0}")]
    HttpClient(String),
}

pub use crate::env_secrets::{AdminTokenSource, EnvSecrets};

/// The remote-bind guard. Listening on a non-loopback address needs TLS, an admin
/// token the operator set (not one generated into the data dir) and an explicit
/// acknowledgement; the refusal names every missing condition.
pub fn remote_bind_refusal(
    settings: &Settings,
    addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    admin_token: AdminTokenSource,
) -> Option<String> {
    let mut refusals = Vec::new();
    let mut problems = Vec::new();
    if !addr.ip().is_loopback() {
        if settings.tls.paths().is_none() {
            problems.push("TLS is off (set [tls] cert_path and key_path)".to_owned());
        }
        if admin_token == AdminTokenSource::Generated {
            problems.push(
                "the admin token would be generated into the data dir (set PALYRA_ADMIN_TOKEN or [server] admin_token)"
                    .to_owned(),
            );
        }
        if !settings.server.allow_remote {
            problems.push(
                "remote access is not acknowledged (pass --allow-remote or set [server] allow_remote = true)"
                    .to_owned(),
            );
        }
    }
    if !problems.is_empty() {
        refusals.push(format!(
            "refusing to listen on {addr}, which is not a loopback address: {}",
            problems.join("; ")
        ));
    }
    if let Some(metrics) = metrics_addr
        && !metrics.ip().is_loopback()
        && !settings.server.allow_remote
    {
        refusals.push(format!(
            "refusing to serve metrics on {metrics} (metrics.bind), which is not a loopback address: /metrics would be in clear text without authentication (acknowledge with --allow-remote or [server] allow_remote = true)"
        ));
    }
    (!refusals.is_empty()).then(|| refusals.join(". "))
}

/// Everything `palyrad check-config` checks without starting: the settings (already
/// parsed and validated), the addresses, the guard and the TLS files.
pub fn check_config(settings: &Settings, env_admin_token: Option<&SecretString>) -> Vec<String> {
    let mut problems = Vec::new();
    let addr = match settings.bind_addr() {
        Ok(addr) => Some(addr),
        Err(e) => {
            problems.push(e.to_string());
            None
        }
    };
    let metrics_addr = settings.metrics_addr().unwrap_or_else(|e| {
        problems.push(e.to_string());
        None
    });
    if let Some(addr) = addr
        && let Some(refusal) = remote_bind_refusal(
            settings,
            addr,
            metrics_addr,
            AdminTokenSource::of(env_admin_token, settings),
        )
    {
        problems.push(refusal);
    }
    if let Some(token) = env_admin_token
        && let Err(e) = check_admin_token(token)
    {
        problems.push(format!("PALYRA_ADMIN_TOKEN: {e}"));
    }
    if let Some((cert, key)) = settings.tls.paths() {
        match crate::tls::load(cert, key) {
            Err(e) => problems.push(e),
            Ok(tls) => {
                if let Some(not_after) = tls.not_after
                    && not_after <= chrono::Utc::now()
                {
                    problems.push(format!(
                        "tls.cert_path {}: the certificate expired at {}",
                        cert.display(),
                        not_after.to_rfc3339()
                    ));
                }
            }
        }
    }
    problems
}

/// A built daemon: storage open, actors started, socket bound, not yet serving.
pub struct Application {
    listener: crate::serve::Listener,
    metrics_listener: Option<crate::serve::Listener>,
    tls: Option<crate::tls::TlsMaterial>,
    local_addr: SocketAddr,
    state: AppState,
    writer: Writer,
    sessions: SessionsHandle,
    data_dir: PathBuf,
    grace: Duration,
    /// Held (an exclusive lock on `<data-dir>/palyrad.lock`) while the daemon runs:
    /// one daemon per data dir, whatever the backend, since the data dir holds the
    /// vault key, the token file and the browser profiles.
    _data_dir_lock: fs::File,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("local_addr", &self.local_addr)
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

impl Application {
    /// Opens storage, starts every actor and binds the socket. Must run inside the
    /// actix System (see [`crate::run_daemon`]). `env_admin_token` is
    /// `PALYRA_ADMIN_TOKEN`, passed in so tests need not touch the environment.
    pub async fn build(settings: Settings, secrets: EnvSecrets) -> Result<Self, StartError> {
        let EnvSecrets {
            admin_token: env_admin_token,
            vault_key: env_vault_key,
        } = secrets;
        let data_dir = match &settings.storage.data_dir {
            Some(dir) => dir.clone(),
            None => default_data_dir()?,
        };
        // The guard and the TLS files are checked before anything touches the disk.
        let addr = settings.bind_addr()?;
        let metrics_addr = settings.metrics_addr()?;
        if let Some(refusal) = remote_bind_refusal(
            &settings,
            addr,
            metrics_addr,
            AdminTokenSource::of(env_admin_token.as_ref(), &settings),
        ) {
            return Err(StartError::RemoteBind(refusal));
        }
        let tls = match settings.tls.paths() {
            Some((cert, key)) => Some(crate::tls::load(cert, key).map_err(StartError::Tls)?),
            None => None,
        };
        let data_dir_open = prepare_data_dir(&data_dir)?;
        let data_dir_lock = lock_data_dir(&data_dir).await?;
        let (admin_token, source) = resolve_admin_token(
            env_admin_token,
            settings.server.admin_token.clone(),
            &data_dir,
        )?;
        match source {
            AdminTokenSource::Env => tracing::info!("admin token from PALYRA_ADMIN_TOKEN"),
            AdminTokenSource::Config => tracing::info!("admin token from the config file"),
            AdminTokenSource::Generated => tracing::info!(
                path = %data_dir.join(ADMIN_TOKEN_FILE).display(),
                "admin token in file"
            ),
        }
        let admin_token_digest: [u8; 32] = Sha256::digest(admin_token.expose().as_bytes()).into();
        drop(admin_token);

        let mut storage_config = settings
            .storage
            .storage_config(&data_dir)
            .map_err(|message| {
                StartError::Config(ConfigError::Invalid {
                    origin: "storage".into(),
                    message,
                })
            })?;
        let node_id = resolve_node_id(&settings, &data_dir)?;
        if let StorageConfig::Postgres(pg) = &mut storage_config {
            pg.node_id = node_id.clone();
        }
        let storage = open_storage(&storage_config).await?;
        // The writer first: an empty write is acknowledged once it can write (on
        // PostgreSQL: once its connection is up), so a start against a database that
        // cannot take writes is refused here, before any state is read. Other nodes
        // may write to the same PostgreSQL database; see ARCHITECTURE.md.
        let writer = storage.start_writer()?;
        let prepared = async {
            writer_ready(&writer).await?;
            let snapshot = Snapshot::read(&storage, &Snapshot::startup_tables()).await?;
            let (vault, vault_ops) = if storage.is_shared() {
                Vault::open_shared(&snapshot, &data_dir, env_vault_key)?
            } else {
                Vault::open(&snapshot, &data_dir, env_vault_key)?
            };
            // The one outbound HTTP client (API-key checks, OAuth, provider calls),
            // shared by every actor that calls out.
            let http_client = palyra_actors::outbound::client()
                .map_err(|e| StartError::HttpClient(e.to_string()))?;
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Bind { addr, source })?;
            let metrics_listener = match metrics_addr {
                Some(addr) => Some(
                    TcpListener::bind(addr)
                        .await
                        .map_err(|source| StartError::Bind { addr, source })?,
                ),
                None => None,
            };
            Ok::<_, StartError>((
                snapshot,
                vault,
                vault_ops,
                http_client,
                listener,
                metrics_listener,
            ))
        }
        .await;
        // Every step that can fail for a reason outside the database ran before the
        // actors start; a refused start stops the writer and leaves nothing running.
        let (snapshot, vault, vault_ops, http_client, listener, metrics_listener) = match prepared {
            Ok(prepared) => prepared,
            Err(e) => {
                writer.shutdown().await;
                return Err(e);
            }
        };
        let vault_key_source = match vault.source() {
            palyra_actors::vault::VaultKeySource::Env => "env",
            palyra_actors::vault::VaultKeySource::File => "file",
        };
        let local_addr = match listener.local_addr() {
            Ok(local) => local,
            Err(source) => {
                writer.shutdown().await;
                return Err(StartError::Bind { addr, source });
            }
        };
        let audit = match AuditLog::start(
            &storage,
            writer.clone(),
            AuditRetention {
                max_events: settings.audit.max_events,
                max_age: (settings.audit.max_age_days > 0)
                    .then(|| Duration::from_secs(settings.audit.max_age_days * 24 * 3600)),
                prune_interval: Duration::from_secs(settings.audit.prune_interval_s),
            },
        )
        .await
        {
            Ok(audit) => audit,
            Err(e) => {
                writer.shutdown().await;
                return Err(e.into());
            }
        };
        let actor_metrics = ActorMetrics::default();
        // On PostgreSQL this node joins the cluster: its lease actor takes its share
        // of the shards; on redb it is the only node and owns everything.
        let cluster = ClusterHandle::start(
            storage.clone(),
            ClusterPolicy {
                node_id: node_id.clone(),
                lease_ttl: Duration::from_secs(settings.cluster.lease_ttl_s),
                late_fire_threshold: Duration::from_secs(settings.cluster.late_fire_threshold_s),
                listen: local_addr.to_string(),
            },
        );
        tracing::info!(node_id = %node_id, clustered = cluster.is_clustered(), "node identity");
        // No browser starts here: the first session starts its Chromium.
        let browser = BrowserHandle::start(settings.browser.policy(&data_dir), audit.clone());
        let listeners = [Some(&listener), metrics_listener.as_ref()];
        let tools = crate::tools_policy::policy(&settings, &data_dir, &browser, listeners);
        let started = start_actors(
            &settings,
            (&storage, &snapshot, &cluster),
            &writer,
            (vault, vault_ops),
            &audit,
            &actor_metrics,
            (&http_client, tools),
        )
        .await;
        let (sessions, handoffs, registry, refresher, objectives) = match started {
            Ok(handles) => handles,
            Err(e) => {
                writer.shutdown().await;
                return Err(e);
            }
        };
        let notifications =
            crate::notify::start(&settings, (&storage, &writer), &registry, &cluster, &tls).await?;
        let (allowed_hosts, any_ip_host) = crate::access::allowed_hosts(local_addr, &settings);
        let state = AppState::new(AppStateInner {
            sessions: sessions.clone(),
            operators: OperatorsHandle::new(storage.clone(), writer.clone()),
            operator_throttle: crate::access::operator_throttle(&settings),
            auth_audit_budget: crate::access::audit_budget(),
            handoffs,
            registry,
            refresher,
            objectives,
            browser,
            notifications,
            usage: palyra_actors::usage::UsageHandle::new(storage.clone(), settings.usage.prices()),
            cluster: cluster.clone(),
            writer: writer.clone(),
            storage: storage.clone(),
            admin_token_digest,
            auth_throttle: Arc::new(AuthThrottle::new(
                settings.auth.max_failures,
                Duration::from_secs(settings.auth.failure_window_s),
            )),
            rate_limits: settings.rate_limit.enabled.then(|| {
                let rl = &settings.rate_limit;
                Arc::new(RateLimits::new(
                    Rate {
                        per_s: rl.loopback_per_s,
                        burst: rl.loopback_burst,
                    },
                    Rate {
                        per_s: rl.remote_per_s,
                        burst: rl.remote_burst,
                    },
                ))
            }),
            audit,
            metrics: Arc::new(HttpMetrics::new(
                &actor_metrics,
                writer.stats(),
                tls.as_ref()
                    .and_then(|t| t.not_after)
                    .map(|at| at.timestamp()),
            )),
            last_remote_access: std::sync::Mutex::new(None),
            config: Arc::new(HttpConfig {
                body_limit_bytes: settings.server.body_limit_bytes,
                allowed_hosts,
                any_ip_host,
                cookie_secure: tls.is_some(),
                loopback_base_url: crate::access::loopback_base_url(local_addr, tls.is_some()),
                public_base_url: settings
                    .server
                    .public_base_url
                    .as_ref()
                    .map(|u| u.trim_end_matches('/').to_owned()),
                oauth_redirect_base: settings
                    .oauth
                    .public_base_url
                    .as_ref()
                    .or(settings.server.public_base_url.as_ref())
                    .map(|u| u.trim_end_matches('/').to_owned())
                    .or_else(|| {
                        // Codes must not travel in clear text over a network: without a
                        // public https URL, only a daemon reachable on loopback signs in.
                        let ip = local_addr.ip();
                        (ip.is_loopback() || ip.is_unspecified())
                            .then(|| crate::access::loopback_base_url(local_addr, tls.is_some()))
                    }),
                oauth_attempt_ttl: Duration::from_secs(settings.oauth.attempt_ttl_s),
                posture: PostureConfig {
                    bind_addresses: std::iter::once(local_addr.to_string())
                        .chain(
                            metrics_listener
                                .as_ref()
                                .and_then(|l| l.local_addr().ok())
                                .map(|a| a.to_string()),
                        )
                        .collect(),
                    tls_enabled: tls.is_some(),
                    cert_not_after: tls.as_ref().and_then(|t| t.not_after),
                    admin_token_source: source.name(),
                    vault_key_source,
                    session_idle_timeout_s: settings.sessions.idle_timeout_s,
                    session_absolute_timeout_s: settings.sessions.absolute_timeout_s,
                    rate_limits_enabled: settings.rate_limit.enabled,
                    metrics_bind: metrics_listener
                        .as_ref()
                        .and_then(|l| l.local_addr().ok())
                        .map(|a| a.to_string()),
                    data_dir_open,
                },
            }),
        });
        crate::access::spawn_rate_limit_pruning(&state);
        crate::access::spawn_audit_budget_summaries(&state);
        tracing::info!(addr = %local_addr, tls = tls.is_some(), data_dir = %data_dir.display(), "palyrad listening");
        let limits = crate::serve::Limits::from_settings(&settings.server);
        Ok(Self {
            listener: crate::serve::Listener::new(listener, limits),
            metrics_listener: metrics_listener.map(|l| crate::serve::Listener::new(l, limits)),
            tls,
            local_addr,
            state,
            writer,
            sessions,
            data_dir,
            grace: Duration::from_secs(settings.server.shutdown_grace_s),
            _data_dir_lock: data_dir_lock,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn port(&self) -> u16 {
        self.local_addr.port()
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The writer's counters (for the bench tool).
    pub fn writer(&self) -> Writer {
        self.writer.clone()
    }

    /// The refresher's counters (for the bench tool).
    pub fn refresher(&self) -> RefresherHandle {
        self.state.refresher.clone()
    }

    /// Serves until `shutdown` resolves; then stops accepting, drains in-flight
    /// requests (bounded by the grace period), persists session activity and flushes
    /// the writer.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartError> {
        let router = palyra_http::router(self.state.clone());
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        if let Some(listener) = self.metrics_listener {
            let app = palyra_http::metrics_router(self.state.clone());
            let stop = stopped(stop_rx.clone());
            tokio::spawn(async move {
                if let Err(e) = crate::serve::serve(listener, None, app, stop).await {
                    tracing::error!(error = %e, "the metrics listener failed");
                }
            });
        }
        let stop = stopped(stop_rx);
        let tls = self.tls.map(|t| t.acceptor);
        let mut server = tokio::spawn(crate::serve::serve(self.listener, tls, router, stop));
        let served = tokio::select! {
            () = shutdown => None,
            result = &mut server => Some(result),
        };
        let result: Result<(), std::io::Error> = match served {
            Some(Ok(result)) => result,
            Some(Err(join)) => Err(std::io::Error::other(join)),
            None => {
                tracing::info!("shutting down: draining in-flight requests");
                let _ = stop_tx.send(true);
                match tokio::time::timeout(self.grace, &mut server).await {
                    Ok(Ok(result)) => result,
                    Ok(Err(join)) => Err(std::io::Error::other(join)),
                    Err(_) => {
                        // Requests still running get 503 from the stopped writer:
                        // nothing is acknowledged that is not durable.
                        tracing::warn!(
                            "drain grace period elapsed; stopping with requests in flight"
                        );
                        server.abort();
                        Ok(())
                    }
                }
            }
        };
        // No request runs any more: end every browser session (its processes and its
        // profile) first.
        self.state.browser.shutdown().await;
        // Whatever ended the server, session activity is persisted and the writer
        // finishes its queue before the process exits.
        // Runs first (they may need a refresh), then refreshes, then the writer.
        self.state.objectives.drain(self.grace).await;
        self.state
            .refresher
            .drain(palyra_actors::outbound::OAUTH_TIMEOUT)
            .await;
        if let Err(e) = self.sessions.flush().await {
            tracing::warn!(error = %e, "persisting session activity at shutdown failed");
        }
        // The leases go last, once nothing of this node acts on its shards any more,
        // so the other nodes take over at their next beat rather than after a TTL.
        self.state.notifications.stop();
        self.state.cluster.leave().await;
        self.writer.shutdown().await;
        tracing::info!("palyrad stopped");
        result.map_err(StartError::Serve)
    }
}

/// Waits until the writer can write: at once on redb; on PostgreSQL until its
/// connection is up, retried for a few seconds before the start is refused naming
/// the cause.
async fn writer_ready(writer: &Writer) -> Result<(), StorageError> {
    const TRIES: u32 = 20;
    let mut tries = 0;
    loop {
        match writer.write(Vec::new()).await {
            Err(e) if e.is_unavailable() && tries < TRIES => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            result => return result,
        }
    }
}

/// Opens the configured database: the redb file (owner-only, like the token file:
/// it holds session records) or PostgreSQL, with the bounded retries of its settings.
async fn open_storage(config: &StorageConfig) -> Result<Storage, StartError> {
    match config {
        StorageConfig::Redb {
            data_dir,
            cache_bytes,
        } => {
            let storage = Storage::open_redb_with_cache(data_dir, *cache_bytes)?;
            let db_path = data_dir.join(palyra_storage::DB_FILE);
            fs::set_permissions(&db_path, fs::Permissions::from_mode(0o600)).map_err(|e| {
                StartError::DataDir {
                    path: db_path.clone(),
                    message: format!("cannot restrict permissions: {e}"),
                }
            })?;
            Ok(storage)
        }
        StorageConfig::Postgres(pg) => {
            tracing::info!(database = %pg.describe(), "opening PostgreSQL");
            Ok(Storage::open_postgres(pg).await?)
        }
    }
}

/// Commits the vault's start-up writes and starts every actor.
async fn start_actors(
    settings: &Settings,
    (storage, snapshot, cluster): (&Storage, &Snapshot, &ClusterHandle),
    writer: &Writer,
    (vault, vault_ops): (Vault, Vec<palyra_storage::WriteOp>),
    audit: &AuditLog,
    metrics: &ActorMetrics,
    (http_client, tools): (&reqwest::Client, palyra_actors::tools::ToolsPolicy),
) -> Result<
    (
        SessionsHandle,
        HandoffsHandle,
        RegistryHandle,
        RefresherHandle,
        ObjectivesHandle,
    ),
    StartError,
> {
    if !vault_ops.is_empty() {
        writer.write(vault_ops).await?;
    }
    tracing::info!(key_id = %vault.active_key_id(), source = ?vault.source(), "vault open");
    let sessions = SessionsHandle::start(
        storage,
        snapshot,
        writer.clone(),
        SessionPolicy {
            idle_timeout: settings.session_idle_timeout(),
            absolute_timeout: Duration::from_secs(settings.sessions.absolute_timeout_s),
            max_live: settings.sessions.max_live,
            tick_interval: Duration::from_secs(settings.sessions.tick_interval_s),
            cache_ttl: Duration::from_millis(settings.cluster.session_cache_ms),
        },
        audit.clone(),
    )?;
    let registry = RegistryHandle::start(
        storage,
        snapshot,
        writer.clone(),
        vault,
        settings.providers.directory(),
        audit.clone(),
        metrics.clone(),
        http_client.clone(),
        cluster,
    )?;
    crate::oauth_secrets::seal_configured(&settings.providers, &registry).await?;
    let handoffs = HandoffsHandle::start(
        storage,
        snapshot,
        writer.clone(),
        sessions.clone(),
        HandoffPolicy {
            ttl: Duration::from_secs(settings.handoff.ttl_s),
            tick_interval: Duration::from_secs(settings.handoff.ttl_s.clamp(1, 60)),
        },
    )?;
    let refresher = RefresherHandle::start(
        registry.clone(),
        RefresherPolicy {
            lead: Duration::from_secs(settings.oauth.refresh_lead_s),
            max_in_flight: settings.oauth.max_concurrent_refreshes,
            refresh_without_expiry: Duration::from_secs(settings.oauth.refresh_without_expiry_s),
        },
        RefreshAdapters::standard(http_client.clone()),
        cluster.clone(),
    );
    let objectives = ObjectivesHandle::start(
        storage,
        snapshot,
        cluster.clone(),
        writer.clone(),
        registry.clone(),
        refresher.clone(),
        // Runs have a client of their own whose pool keeps no more idle connections per
        // provider than runs may go at once, so the cap bounds their connections.
        palyra_actors::outbound::runs_client(settings.objectives.max_concurrent_runs)
            .map_err(|e| StartError::HttpClient(e.to_string()))?,
        ObjectivesPolicy {
            run_retention: settings.objectives.run_retention,
            provider_timeout: Duration::from_secs(settings.objectives.provider_timeout_s),
            max_concurrent_runs: settings.objectives.max_concurrent_runs,
            tools,
            budget_clock_offset: chrono::Duration::seconds(settings.usage.budget_clock_offset_s),
            prices: settings.usage.prices(),
        },
        audit.clone(),
        metrics.clone(),
    )
    .await?;
    Ok((sessions, handoffs, registry, refresher, objectives))
}

/// The platform's state dir for palyra (for example `~/.local/state/palyra`).
pub fn default_data_dir() -> Result<PathBuf, StartError> {
    dirs::state_dir()
        .or_else(dirs::data_local_dir)
        .map(|d| d.join("palyra"))
        .ok_or_else(|| StartError::DataDir {
            path: PathBuf::from("?"),
            message: "no platform state dir; pass --data-dir".into(),
        })
}

/// File in the data dir a running daemon holds locked.
pub const DATA_DIR_LOCK_FILE: &str = "palyrad.lock";
/// File in the data dir that keeps a generated node id across restarts.
pub const NODE_ID_FILE: &str = "node.id";

/// How long a start waits for the data dir's lock before it refuses. A lock held a
/// moment past its daemon's end is normal: a child process another thread of that
/// process was forking shares the lock until it execs (`flock` is per open file, and
/// a fork copies every descriptor, close-on-exec or not).
const DATA_DIR_LOCK_WAIT: Duration = Duration::from_secs(3);

/// Takes the data dir's lock; refuses the start when another daemon still holds it
/// after [`DATA_DIR_LOCK_WAIT`].
async fn lock_data_dir(dir: &Path) -> Result<fs::File, StartError> {
    let path = dir.join(DATA_DIR_LOCK_FILE);
    let fail = |message: String| StartError::DataDir {
        path: path.clone(),
        message,
    };
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| fail(format!("cannot open: {e}")))?;
    let deadline = tokio::time::Instant::now() + DATA_DIR_LOCK_WAIT;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(fs::TryLockError::WouldBlock) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(fs::TryLockError::WouldBlock) => return Err(fail(
                "another palyrad is running on this data dir (its storage, vault key and browser profiles are that daemon's)".into(),
            )),
            Err(fs::TryLockError::Error(e)) => return Err(fail(format!("cannot lock: {e}"))),
        }
    }
}

/// `cluster.node_id`, else the id this data dir was given at its first start, else a
/// new one, kept in `<data-dir>/node.id`: a node restarted on its data dir is the same
/// node, so it takes its shards back at once and knows its own runs of before.
fn resolve_node_id(settings: &Settings, dir: &Path) -> Result<String, StartError> {
    if !settings.cluster.node_id.is_empty() {
        return Ok(settings.cluster.node_id.clone());
    }
    let path = dir.join(NODE_ID_FILE);
    let fail = |message: String| StartError::DataDir {
        path: path.clone(),
        message,
    };
    match fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(fail(format!("cannot read: {e}"))),
    }
    let id = settings.cluster.resolve_node_id();
    let mut file = fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| fail(format!("cannot create: {e}")))?;
    writeln!(file, "{id}")
        .and_then(|()| file.sync_all())
        .map_err(|e| fail(format!("cannot write: {e}")))?;
    Ok(id)
}

/// Creates the data dir (0700) if needed; true when it is open to group or others.
fn prepare_data_dir(dir: &Path) -> Result<bool, StartError> {
    let fail = |message: String| StartError::DataDir {
        path: dir.to_owned(),
        message,
    };
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| fail(format!("cannot create: {e}")))?;
    }
    let meta = fs::metadata(dir).map_err(|e| fail(format!("cannot read: {e}")))?;
    if !meta.is_dir() {
        return Err(fail("is not a directory".into()));
    }
    let open = meta.permissions().mode() & 0o077 != 0;
    if open {
        tracing::warn!(path = %dir.display(), "data dir is accessible by group or others; chmod 700 it");
    }
    Ok(open)
}

/// `PALYRA_ADMIN_TOKEN`, else the config's token, else the token file (generated with
/// 256 random bits and mode 0600 on first start).
pub fn resolve_admin_token(
    env: Option<SecretString>,
    config: Option<SecretString>,
    data_dir: &Path,
) -> Result<(SecretString, AdminTokenSource), StartError> {
    if let Some(token) = env {
        check_admin_token(&token)
            .map_err(|m| StartError::AdminToken(format!("PALYRA_ADMIN_TOKEN: {m}")))?;
        return Ok((token, AdminTokenSource::Env));
    }
    if let Some(token) = config {
        check_admin_token(&token).map_err(StartError::AdminToken)?;
        return Ok((token, AdminTokenSource::Config));
    }
    let path = data_dir.join(ADMIN_TOKEN_FILE);
    let fail = |m: String| StartError::AdminToken(format!("{}: {m}", path.display()));
    match fs::read_to_string(&path) {
        Ok(text) => {
            let mode = fs::metadata(&path)
                .map_err(|e| fail(e.to_string()))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(fail(format!(
                    "readable by group or others (mode {:o}); run chmod 600 on it",
                    mode & 0o777
                )));
            }
            let token = SecretString::new(text.trim().to_owned());
            check_admin_token(&token).map_err(fail)?;
            Ok((token, AdminTokenSource::Generated))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let token = random_token();
            write_file_atomically(&path, token.expose().as_bytes())
                .map_err(|e| fail(format!("cannot write: {e}")))?;
            Ok((token, AdminTokenSource::Generated))
        }
        Err(e) => Err(fail(format!("cannot read: {e}"))),
    }
}

/// Writes `contents` plus a newline to `path` with mode 0600: a temp file, fsync,
/// rename, fsync of the directory. A crash leaves either no file or the whole file.
fn write_file_atomically(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(contents)?;
    file.write_all(b"\n")?;
    file.sync_all()?;
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
