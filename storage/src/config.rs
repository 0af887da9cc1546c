//! Storage settings: which backend, and for PostgreSQL where and how to connect.
//!
//! Parsing the daemon's settings file is `src/`'s job; these types only make building
//! a configuration easy and keep the password out of every `Debug`, log and error.

use std::path::PathBuf;
use std::time::Duration;

use zeroize::Zeroizing;

use crate::error::StorageError;

/// Which backend holds the daemon's state.
#[derive(Debug, Clone)]
pub enum StorageConfig {
    /// One redb file in the data dir (the default), with redb's page cache bounded
    /// to `cache_bytes` (read cache and write buffer together).
    Redb {
        data_dir: PathBuf,
        cache_bytes: usize,
    },
    /// A PostgreSQL database.
    Postgres(PostgresConfig),
}

/// A database password: zeroized on drop, `[redacted]` in `Debug`.
#[derive(Clone)]
pub struct Password(Zeroizing<String>);

impl Password {
    pub fn new(password: impl Into<String>) -> Self {
        Self(Zeroizing::new(password.into()))
    }

    /// The contents of a `password_file`: one line, the trailing newline dropped.
    pub fn from_file_contents(contents: &str) -> Self {
        Self::new(contents.trim_end_matches(['\n', '\r']))
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// How the connection to the server is protected (libpq's `sslmode` names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    /// Plain TCP; for loopback and tests.
    #[default]
    Disable,
    /// TLS, without checking the server's certificate (protects against passive
    /// eavesdropping only, as in libpq).
    Require,
    /// TLS with the certificate checked against `ca_file` and the host name.
    VerifyFull,
}

impl SslMode {
    /// Parses `disable`, `require` or `verify-full`.
    pub fn parse(value: &str) -> Result<Self, StorageError> {
        match value {
            "disable" => Ok(SslMode::Disable),
            "require" => Ok(SslMode::Require),
            "verify-full" => Ok(SslMode::VerifyFull),
            other => Err(StorageError::Config(format!(
                "sslmode must be disable, require or verify-full, not {other:?}"
            ))),
        }
    }
}

/// Where the PostgreSQL database is and how to talk to it.
///
/// `Debug` shows everything but the password; [`Self::describe`] is what logs, errors,
/// the posture and metrics show: host, port and database only.
#[derive(Clone)]
pub struct PostgresConfig {
    pub host: String,
    pub port: u16,
    pub database: String,
    pub user: String,
    /// From the URL or the `password_file`; never logged.
    pub password: Option<Password>,
    /// Connections kept for reads (the writer has its own).
    pub pool_size: usize,
    pub ssl_mode: SslMode,
    /// CA certificates (PEM) that `verify-full` trusts.
    pub ca_file: Option<PathBuf>,
    /// Further attempts at start when the server does not answer.
    pub connect_retries: u32,
    /// Wait before the first retry; doubled after each, up to [`Self::max_backoff`].
    pub connect_backoff: Duration,
    /// Longest wait between reconnect attempts, at start and while running.
    pub max_backoff: Duration,
    /// Bound on one connection attempt (TCP, TLS and authentication).
    pub connect_timeout: Duration,
    /// Bound on one statement, set as the session's `statement_timeout`; a write
    /// transaction as a whole is bounded by this plus `connect_timeout`.
    pub statement_timeout: Duration,
    /// This node's id in the cluster (`[cluster] node_id`): its connections' tag, so
    /// change notifications name the node that wrote, and `pg_stat_activity` shows it.
    pub node_id: String,
}

impl std::fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("database", &self.database)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "[redacted]"))
            .field("pool_size", &self.pool_size)
            .field("ssl_mode", &self.ssl_mode)
            .field("ca_file", &self.ca_file)
            .field("connect_retries", &self.connect_retries)
            .field("connect_backoff", &self.connect_backoff)
            .field("max_backoff", &self.max_backoff)
            .field("connect_timeout", &self.connect_timeout)
            .field("statement_timeout", &self.statement_timeout)
            .field("node_id", &self.node_id)
            .finish()
    }
}

impl PostgresConfig {
    /// Parses `postgres://user[:password]@host[:port]/database[?sslmode=..&sslrootcert=..]`.
    ///
    /// `password` (a `password_file`'s contents) wins over one in the URL. Errors never
    /// repeat the URL, which may hold the password.
    pub fn from_url(url: &str, password: Option<Password>) -> Result<Self, StorageError> {
        let invalid = |why: &str| StorageError::Config(format!("invalid PostgreSQL URL: {why}"));
        let rest = url
            .strip_prefix("postgres://")
            .or_else(|| url.strip_prefix("postgresql://"))
            .ok_or_else(|| invalid("it must start with postgres://"))?;
        // The user info ends at the last '@', so a password with an unescaped '/', '?'
        // or '@' is never mistaken for the host or the database (which logs show).
        let (userinfo, rest) = match rest.rsplit_once('@') {
            Some((u, r)) => (Some(u), r),
            None => (None, rest),
        };
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let (hostport, database) = rest.split_once('/').unwrap_or((rest, ""));
        let (user, url_password) = match userinfo {
            Some(u) => match u.split_once(':') {
                Some((name, pw)) => (percent_decode(name)?, Some(percent_decode(pw)?)),
                None => (percent_decode(u)?, None),
            },
            None => ("postgres".to_owned(), None),
        };
        let (host, port) = split_host_port(hostport).ok_or_else(|| invalid("bad host or port"))?;
        if host.is_empty() {
            return Err(invalid("no host"));
        }
        let database = if database.is_empty() {
            user.clone()
        } else {
            percent_decode(database)?
        };
        let mut config = Self {
            host,
            port,
            database,
            user,
            password: password.or(url_password.map(Password::new)),
            ..Self::defaults()
        };
        for pair in query.into_iter().flat_map(|q| q.split('&')) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "sslmode" => config.ssl_mode = SslMode::parse(v)?,
                "sslrootcert" => config.ca_file = Some(PathBuf::from(percent_decode(v)?)),
                "" => {}
                other => return Err(invalid(&format!("unknown parameter {other:?}"))),
            }
        }
        Ok(config)
    }

    fn defaults() -> Self {
        Self {
            host: String::new(),
            port: 5432,
            database: String::new(),
            user: String::new(),
            password: None,
            pool_size: 16,
            ssl_mode: SslMode::Disable,
            ca_file: None,
            connect_retries: 5,
            connect_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(3),
            statement_timeout: Duration::from_secs(5),
            node_id: String::new(),
        }
    }

    /// `host:port/database`: what logs, errors, the posture and metrics show.
    pub fn describe(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}/{}", self.host, self.port, self.database)
        } else {
            format!("{}:{}/{}", self.host, self.port, self.database)
        }
    }

    /// Removes the password from a message a library produced, in case it echoed it.
    pub(crate) fn scrub(&self, message: String) -> String {
        match &self.password {
            Some(p) if !p.expose().is_empty() && message.contains(p.expose()) => {
                message.replace(p.expose(), "[redacted]")
            }
            _ => message,
        }
    }
}

fn split_host_port(hostport: &str) -> Option<(String, u16)> {
    if let Some(rest) = hostport.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => 5432,
            None => return None,
        };
        return Some((host.to_owned(), port));
    }
    match hostport.rsplit_once(':') {
        Some((h, p)) => Some((h.to_owned(), p.parse().ok()?)),
        None => Some((hostport.to_owned(), 5432)),
    }
}

fn percent_decode(s: &str) -> Result<String, StorageError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| {
                    StorageError::Config("invalid PostgreSQL URL: bad %-escape".into())
                })?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map_err(|_| StorageError::Config("invalid PostgreSQL URL: not UTF-8".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_with_reserved_characters_stays_in_the_password() {
        for url in [
            "postgres://u:12/Xy9@db/state",
            "postgres://u:42?tail@db/state",
            "postgres://u:a@b@db/state",
        ] {
            let c = PostgresConfig::from_url(url, None).unwrap();
            assert_eq!(
                (c.host.as_str(), c.database.as_str(), c.user.as_str()),
                ("db", "state", "u"),
                "{url}"
            );
            assert_eq!(c.describe(), "db:5432/state");
        }
    }

    #[test]
    fn urls_parse_and_never_show_the_password() {
        let c = PostgresConfig::from_url(
            "postgres://palyra:s%40cret@db.example:6543/state?sslmode=verify-full&sslrootcert=/etc/ca.pem",
            None,
        )
        .unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.database.as_str()),
            ("db.example", 6543, "state")
        );
        assert_eq!(c.user, "palyra");
        assert_eq!(c.password.as_ref().unwrap().expose(), "s@cret");
        assert_eq!(c.ssl_mode, SslMode::VerifyFull);
        assert_eq!(c.describe(), "db.example:6543/state");
        let debug = format!("{c:?}");
        assert!(!debug.contains("s@cret"), "{debug}");
        assert_eq!(c.scrub("failed for s@cret".into()), "failed for [redacted]");

        let file = PostgresConfig::from_url(
            "postgres://palyra:url@127.0.0.1/postgres",
            Some(Password::from_file_contents("fromfile\n")),
        )
        .unwrap();
        assert_eq!(file.password.unwrap().expose(), "fromfile");
        assert_eq!(file.port, 5432);

        let err = PostgresConfig::from_url("mysql://u:hunter2@h/d", None).unwrap_err();
        assert!(!err.to_string().contains("hunter2"));
        let err = PostgresConfig::from_url("postgres://u:hunter2@h:x/d", None).unwrap_err();
        assert!(!err.to_string().contains("hunter2"));
    }
}
