//! The storage backend the tests run on: redb unless `PALYRA_TEST_BACKEND=postgres`,
//! then a fresh database per test on the server `PALYRA_TEST_POSTGRES_URL` names
//! (scripts/test starts one throwaway server for the whole run).

use std::path::Path;
use std::process::Command;

use sha2::{Digest, Sha256};

/// `redb` (the default) or `postgres`.
pub const BACKEND_VAR: &str = "PALYRA_TEST_BACKEND";
/// `postgres://palyra@127.0.0.1:PORT/postgres`, a superuser on a throwaway server.
pub const URL_VAR: &str = "PALYRA_TEST_POSTGRES_URL";

/// True when the tests run on PostgreSQL.
pub fn enabled() -> bool {
    match std::env::var(BACKEND_VAR).as_deref() {
        Ok("postgres") => true,
        Ok("redb") | Err(_) => false,
        Ok(other) => panic!("{BACKEND_VAR}={other:?}: use redb or postgres"),
    }
}

/// The server's URL; panics with what to do when it is not set.
pub fn server_url() -> String {
    std::env::var(URL_VAR).unwrap_or_else(|_| {
        panic!("{URL_VAR} is not set: start a server with `bash scripts/postgres start DIR`")
    })
}

/// The URL of the database that belongs to `key` (a test's data dir), created empty
/// the first time it is asked for, so a daemon restarted on the same data dir finds
/// its database again.
pub fn database_for(key: &Path) -> String {
    let digest = Sha256::digest(key.to_string_lossy().as_bytes());
    let name = format!("palyra_t_{}", hex(&digest[..10]));
    let server = server_url();
    create_database(&server, &name);
    with_database(&server, &name)
}

/// `url` with its database replaced by `name`.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, _) = url.rsplit_once('/').expect("a URL with a database");
    format!("{base}/{name}")
}

/// Runs one SQL statement with psql against `url`; panics with psql's output on failure.
pub fn psql(url: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-qAtc", sql])
        .output()
        .expect("psql runs");
    assert!(
        out.status.success(),
        "psql {sql:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn create_database(server: &str, name: &str) {
    let exists = psql(
        server,
        &format!("SELECT 1 FROM pg_database WHERE datname = '{name}'"),
    );
    if exists.trim() != "1" {
        psql(server, &format!("CREATE DATABASE {name}"));
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Everything the database at `url` stores, as pg_dump writes it with bytea values in
/// the escape format (printable bytes as themselves), so a test can search it for a
/// secret in plaintext as it searches a redb file.
pub fn dump(url: &str) -> Vec<u8> {
    let out = Command::new("pg_dump")
        .args(["--data-only", url])
        .env("PGOPTIONS", "-c bytea_output=escape")
        .output()
        .expect("pg_dump runs");
    assert!(
        out.status.success(),
        "pg_dump: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A PostgreSQL server of a test's own (scripts/postgres in a temporary directory),
/// for faults that must not touch the server other tests share: stopped on drop.
#[derive(Debug)]
pub struct OwnServer {
    dir: tempfile::TempDir,
    /// `postgres://palyra@127.0.0.1:PORT/postgres`.
    pub url: String,
}

impl OwnServer {
    /// initdb and start on a free loopback port (1 to 3 s).
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = script("start", dir.path());
        let url = String::from_utf8_lossy(&out).trim().to_owned();
        assert!(
            url.starts_with("postgres://"),
            "scripts/postgres start: {url}"
        );
        Self { dir, url }
    }

    /// Stops the server as a crash would (`pg_ctl stop -m immediate`) and starts it
    /// again on the same port.
    pub fn restart_immediate(&self) {
        script("restart", self.dir.path());
    }

    /// Stops the server as a crash would, and leaves it stopped.
    pub fn crash(&self) {
        script("crash", self.dir.path());
    }

    /// Starts a crashed server again on the same port.
    pub fn resume(&self) {
        script("resume", self.dir.path());
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(scripts_postgres())
            .args(["stop"])
            .arg(self.dir.path())
            .output();
    }
}

fn scripts_postgres() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/postgres")
}

fn script(command: &str, dir: &Path) -> Vec<u8> {
    let out = Command::new("bash")
        .arg(scripts_postgres())
        .arg(command)
        .arg(dir)
        .output()
        .expect("bash runs scripts/postgres");
    assert!(
        out.status.success(),
        "scripts/postgres {command}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}
