//! The palyrad binary as a child process on a data dir, for what needs a real process:
//! signals, kills, exit statuses, the log it writes, its resident memory.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

/// How long palyrad may take to log that it listens.
const START_LIMIT: Duration = Duration::from_secs(30);

/// A running palyrad, killed if dropped.
#[derive(Debug)]
pub struct ChildDaemon {
    pub child: tokio::process::Child,
    pub addr: SocketAddr,
    /// `http://{addr}`.
    pub base: String,
    /// Everything the daemon wrote to stderr so far (JSON lines).
    pub log: Arc<Mutex<String>>,
}

impl ChildDaemon {
    /// Starts `palyrad` on `data_dir`, bound to 127.0.0.1:0 with JSON logs on stderr,
    /// with `env` on top of this process's environment (or, with `clean_env`, instead of
    /// it), and returns once it logs the address it listens on. The log is drained from
    /// then on, so the daemon never blocks on a full pipe.
    pub async fn start(
        palyrad: &Path,
        data_dir: &Path,
        env: &[(&str, &str)],
        clean_env: bool,
    ) -> Result<Self, String> {
        let mut command = tokio::process::Command::new(palyrad);
        if clean_env {
            command.env_clear();
        }
        let mut child = command
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--bind", "127.0.0.1:0", "--log-format", "json"])
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", palyrad.display()))?;
        let stderr = child.stderr.take().ok_or("palyrad has no stderr")?;
        let mut lines = BufReader::new(stderr).lines();
        let log = Arc::new(Mutex::new(String::new()));
        let push = |log: &Mutex<String>, line: &str| {
            let mut log = log.lock().unwrap_or_else(PoisonError::into_inner);
            log.push_str(line);
            log.push('\n');
        };
        let listening = async {
            loop {
                let Some(line) = lines.next_line().await.map_err(|e| e.to_string())? else {
                    return Err("palyrad exited before listening".to_owned());
                };
                push(&log, &line);
                let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                if event["fields"]["message"] == "palyrad listening"
                    && let Some(addr) = event["fields"]["addr"].as_str()
                {
                    return addr
                        .parse::<SocketAddr>()
                        .map_err(|e| format!("palyrad logged the address {addr:?}: {e}"));
                }
            }
        };
        let addr = match tokio::time::timeout(START_LIMIT, listening).await {
            Ok(Ok(addr)) => addr,
            Ok(Err(why)) => return Err(with_tail(why, &log)),
            Err(_) => {
                let why = format!("palyrad did not listen within {} s", START_LIMIT.as_secs());
                return Err(with_tail(why, &log));
            }
        };
        let sink = Arc::clone(&log);
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                push(&sink, &line);
            }
        });
        Ok(Self {
            child,
            addr,
            base: format!("http://{addr}"),
            log,
        })
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// SIGTERM (through kill(1): the workspace forbids unsafe code), then the exit
    /// status; SIGKILL if it has not exited within `limit`, and then an error.
    pub async fn terminate_within(&mut self, limit: Duration) -> Result<ExitStatus, String> {
        let pid = self.child.id().ok_or("palyrad is not running")?;
        let sent = tokio::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await;
        if !sent.is_ok_and(|s| s.success()) {
            let _ = self.child.kill().await;
            return Err("kill -TERM failed; palyrad was killed".into());
        }
        match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(Ok(status)) => Ok(status),
            Ok(Err(e)) => Err(format!("cannot wait for palyrad: {e}")),
            Err(_) => {
                let _ = self.child.kill().await;
                Err(format!(
                    "palyrad did not stop within {} s of SIGTERM; killed",
                    limit.as_secs()
                ))
            }
        }
    }

    /// Sends SIGTERM and waits for the exit status; returns it with the whole log.
    /// Panics if palyrad takes over 30 s to exit.
    pub async fn terminate(mut self) -> (ExitStatus, String) {
        let exit = self
            .terminate_within(Duration::from_secs(30))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        // Let the drain task take the last lines.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let log = self
            .log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        (exit, log)
    }
}

/// `why`, then the last ten lines palyrad logged.
fn with_tail(why: String, log: &Mutex<String>) -> String {
    let log = log.lock().unwrap_or_else(PoisonError::into_inner);
    let tail: Vec<&str> = log.lines().rev().take(10).collect();
    let mut message = why;
    for line in tail.into_iter().rev() {
        message.push_str("\n  palyrad: ");
        message.push_str(line);
    }
    message
}
