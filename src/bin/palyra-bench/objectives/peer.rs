//! The peer baseline of `scheduler-10k`: tokio-cron-scheduler with one job per
//! objective on the same expression.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::driver::BoxError;
use crate::plan::PEER_NAME;
use crate::probes::unix_ns;

/// When each call arrived (or each job started), by objective (job) number, in Unix
/// nanoseconds. The instant is taken before the lock.
#[derive(Debug, Default)]
pub struct CallLog {
    pub calls: std::sync::Mutex<Vec<(u32, i64)>>,
}

impl CallLog {
    pub fn record(&self, n: u32, at_ns: i64) {
        self.calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((n, at_ns));
    }

    pub fn take(&self) -> Vec<(u32, i64)> {
        std::mem::take(
            &mut *self
                .calls
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

/// tokio-cron-scheduler 0.15.1 on its own multi-thread runtime and thread (`tcs`,
/// workers `tcs-worker`), with `n` jobs on one cron expression, each recording in the
/// log the instant it is called (job `i` as number `i`, from 1).
pub struct PeerScheduler {
    pub stop: Option<oneshot::Sender<()>>,
    pub thread: Option<std::thread::JoinHandle<Result<(), String>>>,
}

pub type PeerReady = oneshot::Receiver<Result<Duration, String>>;

impl PeerScheduler {
    /// Starts the thread; the receiver answers with the time taken to add the jobs
    /// and start the scheduler, once it has started.
    pub fn start(
        n: usize,
        schedule: String,
        log: Arc<CallLog>,
    ) -> Result<(Self, PeerReady), BoxError> {
        let (ready_tx, ready_rx) = oneshot::channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("tcs".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .thread_name("tcs-worker")
                    .build()
                    .map_err(|e| e.to_string())?;
                runtime.block_on(async move {
                    let began = Instant::now();
                    let setup = async {
                        let scheduler = tokio_cron_scheduler::JobScheduler::new().await?;
                        for i in 1..=n {
                            let log = Arc::clone(&log);
                            let number = u32::try_from(i).unwrap_or(u32::MAX);
                            let job = tokio_cron_scheduler::Job::new_async(
                                schedule.as_str(),
                                move |_id, _scheduler| {
                                    log.record(number, unix_ns());
                                    Box::pin(async {})
                                },
                            )?;
                            scheduler.add(job).await?;
                        }
                        scheduler.start().await?;
                        Ok::<_, tokio_cron_scheduler::JobSchedulerError>(scheduler)
                    };
                    let mut scheduler = match setup.await {
                        Ok(s) => s,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e.to_string()));
                            return Err(e.to_string());
                        }
                    };
                    let _ = ready_tx.send(Ok(began.elapsed()));
                    let _ = stop_rx.await;
                    scheduler.shutdown().await.map_err(|e| e.to_string())
                })
            })?;
        Ok((
            Self {
                stop: Some(stop_tx),
                thread: Some(thread),
            },
            ready_rx,
        ))
    }

    /// Shuts the scheduler down and joins its thread; a note when that was not clean.
    pub async fn stop(mut self) -> String {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let Some(thread) = self.thread.take() else {
            return String::new();
        };
        let joined = tokio::time::timeout(
            Duration::from_secs(30),
            tokio::task::spawn_blocking(move || thread.join()),
        )
        .await;
        match joined {
            Ok(Ok(Ok(Ok(())))) => String::new(),
            Ok(Ok(Ok(Err(e)))) => format!("{PEER_NAME} shut down with an error: {e}"),
            Ok(Ok(Err(_))) | Ok(Err(_)) => format!("{PEER_NAME}'s thread panicked"),
            Err(_) => format!("{PEER_NAME} did not shut down within 30 s; left running"),
        }
    }
}

impl Drop for PeerScheduler {
    // Only on error paths: let the thread end with the process if stop() was not called.
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
