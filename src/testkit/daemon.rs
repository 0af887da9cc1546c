//! palyrad in this process, on its own thread under its own actix System and runtime,
//! as tests and the bench start it.

use std::net::SocketAddr;

use palyra_actors::refresher::RefresherHandle;
use palyra_storage::Writer;
use tokio::sync::oneshot;

use crate::application::{EnvSecrets, StartError};
use crate::settings::Settings;

/// Why an in-process daemon did not start or did not stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{0}")]
    Failed(#[from] StartError),
    #[error("it stopped before it was ready")]
    StoppedBeforeReady,
    #[error("it panicked")]
    Panicked,
    #[error("cannot start its thread: {0}")]
    Thread(std::io::Error),
}

/// A running daemon; dropping it stops it and waits for its thread, so its data dir can
/// be removed after.
pub struct InProcessDaemon {
    addr: SocketAddr,
    /// The writer's counters show the group commit (writes per commit).
    writer: Writer,
    /// The refresher's counters show refresh progress.
    refresher: RefresherHandle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), StartError>>>,
}

impl std::fmt::Debug for InProcessDaemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcessDaemon")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl InProcessDaemon {
    /// Starts palyrad with `settings` on a thread named `palyrad` and returns once it
    /// listens.
    pub async fn start(settings: Settings, secrets: EnvSecrets) -> Result<Self, DaemonError> {
        let (ready_tx, ready_rx) = oneshot::channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("palyrad".into())
            .spawn(move || {
                crate::run_daemon(
                    settings,
                    secrets,
                    move |app| {
                        let _ = ready_tx.send((app.local_addr(), app.writer(), app.refresher()));
                    },
                    async move {
                        let _ = stop_rx.await;
                    },
                )
            })
            .map_err(DaemonError::Thread)?;
        match ready_rx.await {
            Ok((addr, writer, refresher)) => Ok(Self {
                addr,
                writer,
                refresher,
                stop: Some(stop_tx),
                thread: Some(thread),
            }),
            Err(_) => match join(thread).await {
                Ok(()) => Err(DaemonError::StoppedBeforeReady),
                Err(e) => Err(e),
            },
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn writer(&self) -> &Writer {
        &self.writer
    }

    pub fn refresher(&self) -> &RefresherHandle {
        &self.refresher
    }

    /// Graceful stop; returns once the database is closed.
    pub async fn stop(mut self) -> Result<(), DaemonError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.thread.take() {
            Some(thread) => join(thread).await,
            None => Ok(()),
        }
    }
}

/// Joins the daemon's thread off the async workers.
async fn join(thread: std::thread::JoinHandle<Result<(), StartError>>) -> Result<(), DaemonError> {
    match tokio::task::spawn_blocking(move || thread.join()).await {
        Ok(Ok(result)) => result.map_err(DaemonError::Failed),
        Ok(Err(_)) | Err(_) => Err(DaemonError::Panicked),
    }
}

impl Drop for InProcessDaemon {
    // Only when `stop` was not called: still stop before the data dir goes away.
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
