//! Palyra: a daemon that keeps AI-provider credentials and runs standing orders for
//! agents, administered over an HTTP API.
//!
//! Layout (crates, layered storage <- actors <- http <- this crate):
//! - `palyra-storage` (storage/): the storage interface and its two backends (redb,
//!   PostgreSQL), their schemas and writers.
//! - `palyra-actors` (actors/): the actors and their handles.
//! - `palyra-http` (http/): the admin API router.
//! - this crate: [`settings`], [`telemetry`], [`application`] (wiring and shutdown),
//!   [`storage_admin`] (`palyrad storage copy`, the database check of `check-config`),
//!   [`oauth_secrets`] (the config's OAuth client secrets sealed at start),
//!   [`client`] (the typed API client the CLI uses), and the binaries `palyrad`
//!   (the daemon), `palyra` (the CLI); with the feature `testkit`, `testkit`: the
//!   fakes and launchers that tests/api and palyra-bench share.

pub mod access;
pub mod application;
pub mod client;
mod env_secrets;
mod notify;
pub mod oauth_secrets;
pub mod serve;
pub mod settings;
pub mod storage_admin;
pub mod telemetry;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod tls;
pub mod tls_gen;
pub mod tools_policy;

pub use application::{Application, StartError};
pub use settings::Settings;

use std::future::Future;

/// Runs the daemon on one multi-thread tokio runtime under an actix System until
/// `shutdown` resolves. Blocks the calling thread.
pub fn run_daemon<F, S>(
    settings: Settings,
    secrets: application::EnvSecrets,
    on_ready: F,
    shutdown: S,
) -> Result<(), StartError>
where
    F: FnOnce(&Application) + Send + 'static,
    S: Future<Output = ()> + Send + 'static,
{
    let system = actix::System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("palyra-worker")
            .build()
            .unwrap_or_else(|e| panic!("cannot start the tokio runtime: {e}"))
    });
    system.block_on(async move {
        // Poll the shutdown future once before start-up, so that its signal handlers
        // are installed: a SIGTERM that arrives while the daemon starts then stops it
        // gracefully instead of killing it with the default action.
        let mut shutdown = Box::pin(shutdown);
        let stop_at_once = std::future::poll_fn(|cx| {
            std::task::Poll::Ready(shutdown.as_mut().poll(cx).is_ready())
        })
        .await;
        let app = Application::build(settings, secrets).await?;
        on_ready(&app);
        if stop_at_once {
            app.run_until_stopped(std::future::ready(())).await
        } else {
            app.run_until_stopped(shutdown).await
        }
    })
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        _ = term.recv() => tracing::info!("SIGTERM received"),
    }
}
