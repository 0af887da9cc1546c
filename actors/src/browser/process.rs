//! Starting and ending one headless Chromium process with its own profile directory.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::Child;

use super::error::BrowserError;

/// Flags that keep a headless browser from reaching Google's services on its own.
pub const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-default-browser-check",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-breakpad",
    "--disable-crash-reporter",
    "--metrics-recording-only",
    "--mute-audio",
    "--password-store=basic",
    "--use-mock-keychain",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
];

/// The smallest window a browser starts with, whatever its viewport.
const MIN_WINDOW: (u32, u32) = (800, 600);

/// A started browser: the process (in its own process group) and its DevTools URL.
#[derive(Debug)]
pub(crate) struct Launched {
    pub child: Child,
    pub pid: u32,
    pub ws_url: String,
}

/// Creates `profile_dir` (mode 0700) and starts Chromium on it; waits until its
/// DevTools endpoint is announced.
pub(crate) async fn launch(
    chromium: &Path,
    profile_dir: &Path,
    (width, height): (u32, u32),
    startup_timeout: Duration,
) -> Result<Launched, BrowserError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(profile_dir)
        .map_err(|e| {
            BrowserError::Unavailable(format!(
                "cannot create the profile directory {}: {e}",
                profile_dir.display()
            ))
        })?;
    let mut child = tokio::process::Command::new(chromium)
        // Nothing of the daemon's environment (admin token, vault key, database URL)
        // reaches the browser: a minimal one, built from nothing.
        .env_clear()
        .envs(browser_env(profile_dir))
        .args(CHROMIUM_FLAGS)
        .arg(format!("--user-data-dir={}", profile_dir.display()))
        // The page area is set by emulation; a small window made screenshots hang
        // (headless Chromium 148 with a 100x100 window), so the window is never small.
        .arg(format!(
            "--window-size={},{}",
            width.max(MIN_WINDOW.0),
            height.max(MIN_WINDOW.1)
        ))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Its own process group: ending the browser ends its helper processes too.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            BrowserError::Unavailable(if e.kind() == std::io::ErrorKind::NotFound {
                format!(
                    "the Chromium binary {} was not found; install Debian's chromium package or set browser.chromium_path",
                    chromium.display()
                )
            } else {
                format!("cannot start {}: {e}", chromium.display())
            })
        })?;
    let pid = child.id().unwrap_or(0);
    // Chromium writes the port and the browser's path to this file once it listens.
    let announce = profile_dir.join("DevToolsActivePort");
    let started = Instant::now();
    loop {
        if let Ok(text) = tokio::fs::read_to_string(&announce).await {
            let mut lines = text.lines();
            if let (Some(port), Some(path)) = (lines.next(), lines.next())
                && port.parse::<u16>().is_ok()
                && path.starts_with('/')
            {
                return Ok(Launched {
                    child,
                    pid,
                    ws_url: format!("ws://127.0.0.1:{port}{path}"),
                });
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(BrowserError::Unavailable(format!(
                "{} exited at start ({status})",
                chromium.display()
            )));
        }
        if started.elapsed() > startup_timeout {
            kill_group(pid);
            let _ = child.wait().await;
            return Err(BrowserError::Unavailable(format!(
                "{} did not open its DevTools endpoint within {} s",
                chromium.display(),
                startup_timeout.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends SIGKILL to the browser's whole process group (ignored if it is gone).
pub(crate) fn kill_group(pid: u32) {
    let Ok(pid) = i32::try_from(pid) else { return };
    if pid <= 1 {
        return;
    }
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// Removes a profile directory, retrying once (a helper process may still be
/// writing for a moment after the kill).
pub(crate) async fn remove_profile(dir: PathBuf) {
    let result = tokio::task::spawn_blocking(move || {
        if std::fs::remove_dir_all(&dir).is_err() {
            std::thread::sleep(Duration::from_millis(200));
            if let Err(e) = std::fs::remove_dir_all(&dir)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                return Err(format!("{}: {e}", dir.display()));
            }
        }
        Ok(())
    })
    .await;
    if let Ok(Err(e)) = result {
        tracing::warn!(error = %e, "cannot remove a browser profile directory");
    }
}

/// Ends browsers a previous daemon left running (it was killed before it could end
/// them) and removes their profiles: any process whose command line names a profile
/// under `root`. Linux only: reads /proc.
pub(crate) fn reap_leftovers(root: &Path) {
    let marker = format!("--user-data-dir={}/", root.display());
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let names_profile = cmdline
                .split(|b| *b == 0)
                .any(|arg| arg.starts_with(marker.as_bytes()));
            if names_profile {
                tracing::warn!(pid, "ending a browser left over by an earlier daemon");
                let Ok(pid) = i32::try_from(pid) else {
                    continue;
                };
                let pid = nix::unistd::Pid::from_raw(pid);
                // Each browser leads its own process group: ending the group ends
                // helpers it may still be starting, which a scan would miss.
                match nix::unistd::getpgid(Some(pid)) {
                    Ok(group) if group == pid => {
                        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
                    }
                    _ => {
                        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                    }
                }
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir(root) {
        for entry in entries.flatten() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Chromium's whole environment: a PATH, a HOME inside its profile, and the locale and
/// time zone the daemon runs with (names only, never a secret).
fn browser_env(profile_dir: &Path) -> Vec<(String, String)> {
    let mut env = vec![
        ("PATH".to_owned(), "/usr/local/bin:/usr/bin:/bin".to_owned()),
        ("HOME".to_owned(), profile_dir.display().to_string()),
    ];
    for name in ["LANG", "LC_ALL", "TZ"] {
        if let Ok(value) = std::env::var(name) {
            env.push((name.to_owned(), value));
        }
    }
    env
}
