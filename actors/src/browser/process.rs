//! Starting and ending one headless Chromium process with its own profile directory:
//! DevTools over a pipe (fds 3 and 4), an environment built from nothing, an
//! unprivileged user when the daemon is root, and the daemon's egress proxy as its
//! only way out.

use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use command_fds::{CommandFdExt, FdMapping};
use tokio::net::unix::pipe;
use tokio::process::Child;

use super::error::BrowserError;
use super::isolation::BrowserUser;

/// Flags that keep a headless browser from reaching Google's services on its own,
/// and keep every request of every frame, worker and socket on the daemon's proxy.
pub const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
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
    // DevTools on fds 3 (commands in) and 4 (answers out): no port anyone can find.
    "--remote-debugging-pipe",
    // QUIC would bypass an HTTP proxy; a cross-site frame gets its own renderer.
    "--disable-quic",
    "--site-per-process",
    // `<-loopback>` removes the implicit bypass of loopback: no destination is
    // reached except through the proxy.
    "--proxy-bypass-list=<-loopback>",
];

/// The smallest window a browser starts with, whatever its viewport.
const MIN_WINDOW: (u32, u32) = (800, 600);

/// What one start needs besides the binary.
pub(crate) struct LaunchSpec<'a> {
    pub chromium: &'a Path,
    pub profile_dir: &'a Path,
    pub window: (u32, u32),
    /// The port of this browser's egress proxy on 127.0.0.1.
    pub proxy_port: u16,
    /// Who the browser runs as (its uid and gid), when the daemon is root.
    pub user: Option<&'a BrowserUser>,
    /// False only after a start with the sandbox failed on this host.
    pub sandbox: bool,
}

/// A started browser: the process (in its own process group) and its DevTools pipe.
#[derive(Debug)]
pub(crate) struct Launched {
    pub child: Child,
    pub pid: u32,
    /// We write commands here (the browser's fd 3).
    pub commands: pipe::Sender,
    /// The browser writes answers and events here (its fd 4).
    pub answers: pipe::Receiver,
}

/// Makes the root of the profiles: owned by the daemon's user, others may pass
/// through it (the browser's user reaches its own profile) but not list it. An
/// existing directory that someone else owns, or that others may write, is refused:
/// the root may sit in a shared temporary directory.
pub(crate) fn prepare_root(root: &Path) -> Result<(), BrowserError> {
    let unusable = |why: String| {
        BrowserError::Unavailable(format!(
            "the browser profiles directory {} cannot be used: {why}",
            root.display()
        ))
    };
    match std::fs::DirBuilder::new().mode(0o711).create(root) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(root)
            .map_err(|e| unusable(e.to_string()))?,
        Err(e) => return Err(unusable(e.to_string())),
    }
    let meta = std::fs::symlink_metadata(root).map_err(|e| unusable(e.to_string()))?;
    if !meta.is_dir() {
        return Err(unusable("it is not a directory".into()));
    }
    if meta.uid() != nix::unistd::geteuid().as_raw() {
        return Err(unusable("another user owns it".into()));
    }
    if meta.mode() & 0o777 != 0o711 {
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o711))
            .map_err(|e| unusable(e.to_string()))?;
    }
    Ok(())
}

/// Creates the profile directory (mode 0700, owned by the browser's user) and
/// starts Chromium on it. Whether it came up is for the DevTools handshake to tell.
pub(crate) fn launch(spec: &LaunchSpec<'_>) -> Result<Launched, BrowserError> {
    let profile_dir = spec.profile_dir;
    let cannot = |what: &str, e: std::io::Error| {
        BrowserError::Unavailable(format!("cannot {what} {}: {e}", profile_dir.display()))
    };
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(profile_dir)
        .map_err(|e| cannot("create the profile directory", e))?;
    if let Some(user) = spec.user {
        std::os::unix::fs::chown(profile_dir, Some(user.uid), Some(user.gid))
            .map_err(|e| cannot("hand over the profile directory", e))?;
    }
    let pipe_failed = |e: std::io::Error| {
        BrowserError::Unavailable(format!("cannot make the DevTools pipe: {e}"))
    };
    let (child_reads, commands) = std::io::pipe().map_err(pipe_failed)?;
    let (answers, child_writes) = std::io::pipe().map_err(pipe_failed)?;
    let commands = pipe::Sender::from_owned_fd(OwnedFd::from(commands)).map_err(pipe_failed)?;
    let answers = pipe::Receiver::from_owned_fd(OwnedFd::from(answers)).map_err(pipe_failed)?;

    let mut command = tokio::process::Command::new(spec.chromium);
    command
        // Nothing of the daemon's environment (admin token, vault key, database URL)
        // reaches the browser: a minimal one, built from nothing.
        .env_clear()
        .envs(browser_env(profile_dir))
        .args(CHROMIUM_FLAGS)
        .arg(format!(
            "--proxy-server=http://127.0.0.1:{}",
            spec.proxy_port
        ))
        .arg(format!("--user-data-dir={}", profile_dir.display()))
        // The page area is set by emulation; a small window made screenshots hang
        // (headless Chromium 148 with a 100x100 window), so the window is never small.
        .arg(format!(
            "--window-size={},{}",
            spec.window.0.max(MIN_WINDOW.0),
            spec.window.1.max(MIN_WINDOW.1)
        ))
        .current_dir(profile_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Its own process group: ending the browser ends its helper processes too.
        .process_group(0)
        .kill_on_drop(true);
    if !spec.sandbox {
        command.arg("--no-sandbox");
    }
    command.arg("about:blank");
    if let Some(user) = spec.user {
        // std drops the supplementary groups too when root changes the uid.
        command.uid(user.uid).gid(user.gid);
    }
    command
        .fd_mappings(vec![
            FdMapping {
                parent_fd: OwnedFd::from(child_reads),
                child_fd: 3,
            },
            FdMapping {
                parent_fd: OwnedFd::from(child_writes),
                child_fd: 4,
            },
        ])
        .map_err(|e| BrowserError::Unavailable(e.to_string()))?;
    let child = command.spawn().map_err(|e| {
        BrowserError::Unavailable(if e.kind() == std::io::ErrorKind::NotFound {
            format!(
                "the Chromium binary {} was not found; install Debian's chromium package or set browser.chromium_path",
                spec.chromium.display()
            )
        } else {
            format!("cannot start {}: {e}", spec.chromium.display())
        })
    })?;
    // The command holds the child's ends of the pipes: they must close here, so that
    // the browser's exit is the end of its pipe.
    drop(command);
    let pid = child.id().unwrap_or(0);
    Ok(Launched {
        child,
        pid,
        commands,
        answers,
    })
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
