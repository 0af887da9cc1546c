//! The lifecycles of what the bench serves or starts, written once for every scenario:
//! palyrad in this process on a fresh data dir, the baseline responder, and the
//! release palyrad binary as a child process.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use palyra::settings::{Settings, StorageSettings};
use palyra::testkit::child::ChildDaemon;
use palyra::testkit::daemon::InProcessDaemon;
use palyra::testkit::served::Served;
use palyra_actors::SecretString;
use palyra_actors::refresher::RefresherHandle;
use palyra_actors::secret::random_token;
use palyra_storage::{Storage, Writer};
use tempfile::TempDir;

use crate::backends::PgDatabase;
use crate::driver::BoxError;

/// palyrad run in this process on its own thread (its own actix System and runtime),
/// on a fresh temporary data dir under the run's root, its state in redb there or in a
/// fresh PostgreSQL database.
#[derive(Debug)]
pub struct BenchDaemon {
    // Declared before `stored`: dropped (stopped and joined) before the dir and the
    // database are removed.
    daemon: InProcessDaemon,
    stored: StoredState,
}

/// Where a daemon's state stays once it is stopped: its data dir and, on PostgreSQL,
/// its database; both are removed when this is dropped.
#[derive(Debug)]
pub struct StoredState {
    storage: StorageSettings,
    // Held for its drop (DROP DATABASE), declared before `dir`: the database goes first.
    _database: Option<PgDatabase>,
    dir: TempDir,
}

impl StoredState {
    /// Opens the stopped daemon's storage as the daemon did, to read its records.
    pub async fn open(&self) -> Result<Storage, BoxError> {
        let config = self.storage.storage_config(&self.dir.path().join("data"))?;
        Ok(Storage::open_with(&config).await?)
    }
}

impl BenchDaemon {
    /// Starts palyrad on a fresh data dir, on `database` when given (else redb);
    /// `configure` adjusts the settings first.
    pub async fn start(
        root: &Path,
        database: Option<PgDatabase>,
        token: &SecretString,
        max_live: usize,
        configure: impl FnOnce(&mut Settings),
    ) -> Result<Self, BoxError> {
        let dir = tempfile::Builder::new()
            .prefix("daemon-")
            .tempdir_in(root)?;
        let mut settings = Settings::defaults();
        settings.server.bind = "127.0.0.1:0".into();
        settings.server.admin_token = Some(token.clone());
        settings.server.shutdown_grace_s = 5;
        settings.storage.data_dir = Some(dir.path().join("data"));
        settings.sessions.max_live = max_live;
        // The limiter stays in the request path (its cost is measured), with a quota
        // no load generator here reaches: the bench measures the daemon, not the quota.
        settings.rate_limit.loopback_per_s = 100_000_000;
        settings.rate_limit.loopback_burst = 100_000_000;
        if let Some(database) = &database {
            database.configure(&mut settings);
        }
        configure(&mut settings);
        let storage = settings.storage.clone();
        let daemon = InProcessDaemon::start(settings, palyra::application::EnvSecrets::default())
            .await
            .map_err(|e| format!("palyrad did not start: {e}"))?;
        Ok(Self {
            daemon,
            stored: StoredState {
                storage,
                _database: database,
                dir,
            },
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.daemon.addr()
    }

    pub fn writer(&self) -> &Writer {
        self.daemon.writer()
    }

    pub fn refresher(&self) -> &RefresherHandle {
        self.daemon.refresher()
    }

    /// Graceful stop; an error if the daemon failed or panicked.
    pub async fn stop(self) -> Result<(), BoxError> {
        self.stop_keeping_state().await.map(drop)
    }

    /// Graceful stop that hands over the stored state, so the records can be read
    /// once the daemon has let go of them.
    pub async fn stop_keeping_state(self) -> Result<StoredState, BoxError> {
        let Self { daemon, stored } = self;
        daemon
            .stop()
            .await
            .map_err(|e| format!("palyrad stopped with an error: {e}"))?;
        Ok(stored)
    }
}

/// The trivial axum responder every scenario is compared with: `GET /` answers 200
/// "ok". Served like palyrad serves (axum::serve, multi-thread runtime, no middleware),
/// on its own runtime and thread.
#[derive(Debug)]
pub struct Baseline {
    served: Served,
}

impl Baseline {
    pub fn start() -> Result<Self, BoxError> {
        let app = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
        Ok(Self {
            served: Served::start("baseline", app)?,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.served.addr()
    }

    pub fn stop(self) {
        report_stop(self.served.stop());
    }
}

/// Prints why a server of the bench did not stop cleanly; the measurement stands.
pub fn report_stop(stopped: Result<(), String>) {
    if let Err(e) = stopped {
        eprintln!("{e}");
    }
}

/// The release palyrad binary as a child process with a generated admin token, on a
/// temporary data dir, with a clean environment and logging at info to a pipe the
/// bench drains; killed if dropped before `stop`.
#[derive(Debug)]
pub struct ChildPalyrad {
    // Declared before `_dir`: killed before the dir is removed.
    child: ChildDaemon,
    pub token: SecretString,
    _dir: TempDir,
}

impl ChildPalyrad {
    pub async fn spawn(root: &Path) -> Result<Self, BoxError> {
        Self::spawn_with(root, &[]).await
    }

    /// [`Self::spawn`] with further environment variables (settings of the scenario).
    pub async fn spawn_with(root: &Path, extra: &[(&str, &str)]) -> Result<Self, BoxError> {
        let exe = std::env::current_exe()?;
        let palyrad = exe.with_file_name("palyrad");
        if !palyrad.is_file() {
            return Err(format!(
                "{} not found: run `cargo build --release --bins --features bench` first",
                palyrad.display()
            )
            .into());
        }
        let dir = tempfile::Builder::new().prefix("rss-").tempdir_in(root)?;
        let token = random_token();
        // A clean environment: no PALYRA_* of the caller changes the daemon measured.
        let mut env = vec![
            ("PALYRA_ADMIN_TOKEN", token.expose()),
            // As in-process: the limiter runs, with a quota the load never reaches.
            ("PALYRA_RATE_LIMIT__LOOPBACK_PER_S", "100000000"),
            ("PALYRA_RATE_LIMIT__LOOPBACK_BURST", "100000000"),
        ];
        env.extend_from_slice(extra);
        let child = ChildDaemon::start(&palyrad, &dir.path().join("data"), &env, true).await?;
        // Let start-up allocations settle before the idle reading.
        tokio::time::sleep(Duration::from_secs(1)).await;
        Ok(Self {
            child,
            token,
            _dir: dir,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.child.addr
    }

    pub fn pid(&self) -> Result<u32, BoxError> {
        Ok(self.child.pid().ok_or("palyrad is not running")?)
    }

    /// SIGTERM and wait (SIGKILL after 15 s); a note when the stop was not clean.
    pub async fn stop(&mut self) -> String {
        match self.child.terminate_within(Duration::from_secs(15)).await {
            Ok(status) if status.success() => String::new(),
            Ok(status) => format!("palyrad exited with {status} on SIGTERM"),
            Err(e) => e,
        }
    }
}
