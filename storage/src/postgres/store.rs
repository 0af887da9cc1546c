//! The PostgreSQL backend's open database: connecting at start (bounded retries), the
//! migrations, the read pool and the reads.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::types::ToSql;

use crate::config::PostgresConfig;
use crate::error::StorageError;
use crate::postgres::connect::{Connector, is_connection_error};
use crate::postgres::migrate::{migrate, stored_version};
use crate::postgres::writer;
use crate::schema::{Row, Table};
use crate::writer::Writer;

/// An open PostgreSQL database.
pub(crate) struct PgStore {
    connector: Connector,
    // Read connections; the writer keeps its own so reads never queue behind commits.
    pool: Pool,
    // The server's `synchronous_commit` at open; the posture warns when it is off.
    synchronous_commit: bool,
    // What other nodes changed (`postgres/listen.rs`), once listening has started.
    feed: tokio::sync::broadcast::Sender<crate::changes::Change>,
    listening: std::sync::OnceLock<()>,
    closed: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("target", &self.connector.config.describe())
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects (retrying while the server is unreachable, up to `connect_retries`
    /// times with doubling waits), applies the migrations and builds the read pool.
    pub(crate) async fn open(config: &PostgresConfig) -> Result<Self, StorageError> {
        let connector = Connector::new(config)?;
        let mut wait = config.connect_backoff;
        let mut attempt = 0;
        let mut client = loop {
            match connector.connect().await {
                Ok(client) => break client,
                Err(e) if e.is_unavailable() && attempt < config.connect_retries => {
                    attempt += 1;
                    tracing::warn!(target_db = %config.describe(), error = %e, attempt, "PostgreSQL not reachable yet; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(config.max_backoff);
                }
                Err(e) => return Err(e),
            }
        };
        migrate(&mut client, &connector).await?;
        let synchronous_commit = client
            .query_one("SHOW synchronous_commit", &[])
            .await
            .map_err(|e| connector.connect_error(&e))?
            .get::<_, String>(0)
            != "off";
        drop(client);
        let manager = Manager::from_config(
            connector.pg.clone(),
            connector.tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(config.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(config.connect_timeout))
            .create_timeout(Some(config.connect_timeout))
            .recycle_timeout(Some(config.connect_timeout))
            .build()
            .map_err(|e| StorageError::Config(e.to_string()))?;
        Ok(Self {
            connector,
            pool,
            synchronous_commit,
            feed: tokio::sync::broadcast::channel(crate::changes::FEED_CAPACITY).0,
            listening: std::sync::OnceLock::new(),
            closed: std::sync::Arc::default(),
        })
    }

    pub(crate) fn describe(&self) -> String {
        self.connector.config.describe()
    }

    pub(crate) fn synchronous_commit(&self) -> bool {
        self.synchronous_commit
    }

    pub(crate) fn start_writer(&self) -> Result<Writer, StorageError> {
        writer::start(self.connector.clone())
    }

    /// Bound on one read: a checkout plus one statement.
    fn read_bound(&self) -> Duration {
        self.connector.config.connect_timeout + self.connector.config.statement_timeout
    }

    pub(crate) async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, StorageError> {
        let work = async {
            let client = self.pool.get().await.map_err(|e| match e {
                deadpool_postgres::PoolError::Backend(e) => {
                    self.connector.unavailable(self.connector.detail(&e))
                }
                other => self.connector.unavailable(other),
            })?;
            let statement = client
                .prepare_cached(sql)
                .await
                .map_err(|e| self.query_error(&e))?;
            client
                .query(&statement, params)
                .await
                .map_err(|e| self.query_error(&e))
        };
        tokio::time::timeout(self.read_bound(), work)
            .await
            .map_err(|_| self.connector.unavailable("read timed out"))?
    }

    fn query_error(&self, e: &tokio_postgres::Error) -> StorageError {
        if is_connection_error(e) {
            self.connector.unavailable(self.connector.detail(e))
        } else {
            StorageError::Backend(self.connector.detail(e))
        }
    }

    pub(crate) async fn load(&self, table: Table) -> Result<Vec<Row>, StorageError> {
        let sql = format!("SELECT key, value FROM {} ORDER BY key", table.name());
        Ok(rows(self.query(&sql, &[]).await?))
    }

    pub(crate) async fn get(
        &self,
        table: Table,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, StorageError> {
        let sql = format!("SELECT value FROM {} WHERE key = $1", table.name());
        let found = self.query(&sql, &[&key]).await?;
        Ok(found.first().map(|r| r.get::<_, Vec<u8>>(0)))
    }

    pub(crate) async fn get_many(
        &self,
        table: Table,
        keys: &[Vec<u8>],
    ) -> Result<Vec<Option<Vec<u8>>>, StorageError> {
        let sql = format!(
            "SELECT key, value FROM {} WHERE key = ANY($1)",
            table.name()
        );
        let found: std::collections::HashMap<Vec<u8>, Vec<u8>> =
            rows(self.query(&sql, &[&keys]).await?)
                .into_iter()
                .collect();
        Ok(keys.iter().map(|k| found.get(k).cloned()).collect())
    }

    pub(crate) async fn runs_with_status(
        &self,
        statuses: &[&str],
    ) -> Result<Vec<Row>, StorageError> {
        // `runs_status` (migration 1) answers this without reading any history.
        let statuses: Vec<String> = statuses.iter().map(|s| (*s).to_owned()).collect();
        Ok(rows(
            self.query(
                "SELECT key, value FROM runs WHERE status = ANY($1) ORDER BY key",
                &[&statuses],
            )
            .await?,
        ))
    }

    pub(crate) async fn scan_prefix_rev(
        &self,
        table: Table,
        prefix: &[u8],
        before: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Row>, StorageError> {
        // Same range as redb's: [prefix, before or prefix + 0xff), keys with the prefix.
        let mut end = prefix.to_vec();
        end.push(0xff);
        let upper: &[u8] = before.unwrap_or(&end);
        let len = i32::try_from(prefix.len()).unwrap_or(i32::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let sql = format!(
            "SELECT key, value FROM {} WHERE key >= $1 AND key < $2 \
             AND substr(key, 1, $3) = $1 ORDER BY key DESC LIMIT $4",
            table.name()
        );
        Ok(rows(
            self.query(&sql, &[&prefix, &upper, &len, &limit]).await?,
        ))
    }

    pub(crate) async fn scan_forward(
        &self,
        table: Table,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Row>, StorageError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let found = match after {
            Some(after) => {
                let sql = format!(
                    "SELECT key, value FROM {} WHERE key > $1 ORDER BY key LIMIT $2",
                    table.name()
                );
                self.query(&sql, &[&after, &limit]).await?
            }
            None => {
                let sql = format!(
                    "SELECT key, value FROM {} ORDER BY key LIMIT $1",
                    table.name()
                );
                self.query(&sql, &[&limit]).await?
            }
        };
        Ok(rows(found))
    }

    pub(crate) async fn count(&self, table: Table) -> Result<u64, StorageError> {
        let sql = format!("SELECT count(*) FROM {}", table.name());
        let found = self.query(&sql, &[]).await?;
        let n: i64 = found.first().map(|r| r.get(0)).unwrap_or(0);
        Ok(u64::try_from(n).unwrap_or(0))
    }

    pub(crate) async fn schema_version(&self) -> Result<u64, StorageError> {
        let work = async {
            let client = self
                .pool
                .get()
                .await
                .map_err(|e| self.connector.unavailable(e))?;
            stored_version(&client)
                .await
                .map_err(|e| self.query_error(&e))
        };
        tokio::time::timeout(self.read_bound(), work)
            .await
            .map_err(|_| self.connector.unavailable("read timed out"))?
    }

    /// Readiness: one round trip on a pooled connection.
    pub(crate) async fn check(&self) -> Result<(), StorageError> {
        self.query("SELECT 1", &[]).await.map(|_| ())
    }

    /// Stops handing out read connections and stops listening.
    pub(crate) fn close(&self) {
        self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
        self.pool.close();
    }

    /// A subscription to what other nodes change; the first one starts listening
    /// (on the caller's runtime).
    pub(crate) fn changes(&self) -> crate::changes::ChangeFeed {
        let feed = crate::changes::ChangeFeed::new(self.feed.subscribe());
        self.listening.get_or_init(|| {
            tokio::spawn(crate::postgres::listen::listen(
                self.connector.clone(),
                self.feed.clone(),
                std::sync::Arc::clone(&self.closed),
            ));
        });
        feed
    }
}

fn rows(found: Vec<tokio_postgres::Row>) -> Vec<Row> {
    found
        .into_iter()
        .map(|r| (r.get::<_, Vec<u8>>(0), r.get::<_, Vec<u8>>(1)))
        .collect()
}
