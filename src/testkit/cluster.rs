//! Several palyrad processes on one PostgreSQL database, for the cluster's fault tests
//! and palyra-bench's `cluster` scenario: each node started, killed with SIGKILL,
//! paused, resumed and restarted as a real process, its database connections cut,
//! and who leases which shard read from the database itself.
//!
//! Every wait has a deadline, and every node is killed when the [`Cluster`] is dropped
//! (a paused one too: SIGKILL reaches a stopped process), so a failing test leaves no
//! daemon behind.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::testkit::child::ChildDaemon;

/// How long a node may take to answer `/readyz` with 200 once it listens.
const READY_LIMIT: Duration = Duration::from_secs(30);

/// One palyrad of the cluster: its id, its own data dir, and the process while it runs.
#[derive(Debug)]
struct Node {
    id: String,
    data_dir: PathBuf,
    /// None while the node is down (killed, or not started again yet).
    child: Option<ChildDaemon>,
}

/// `n` palyrad nodes, `node-a`, `node-b`, ..., on the database `db_url`.
#[derive(Debug)]
pub struct Cluster {
    palyrad: PathBuf,
    db_url: String,
    /// What every node gets on top of the storage and node settings: the same admin
    /// token and vault key everywhere, the provider's address, the lease TTL.
    env: Vec<(String, String)>,
    nodes: Vec<Node>,
    http: reqwest::Client,
    /// Holds the nodes' data dirs; removed last, after the nodes are killed.
    _root: tempfile::TempDir,
}

/// The id of the node at `index`: `node-a`, `node-b`, ...
pub fn node_id(index: usize) -> String {
    let letter = b'a' + u8::try_from(index % 26).unwrap_or(0);
    format!("node-{}", letter as char)
}

impl Cluster {
    /// Starts `n` nodes of `palyrad` on `db_url` one after the other (the first one
    /// migrates the database; the others find it migrated), each with `env` and
    /// `PALYRA_STORAGE__*`, `PALYRA_CLUSTER__NODE_ID` set, and returns once every
    /// one answers `/readyz` with 200.
    pub async fn start(
        palyrad: &Path,
        n: usize,
        db_url: &str,
        env: &[(&str, &str)],
    ) -> Result<Self, String> {
        let root = tempfile::tempdir().map_err(|e| format!("a temporary dir: {e}"))?;
        let nodes = (0..n)
            .map(|i| Node {
                id: node_id(i),
                data_dir: root.path().join(node_id(i)),
                child: None,
            })
            .collect();
        let mut cluster = Self {
            palyrad: palyrad.to_owned(),
            db_url: db_url.to_owned(),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            nodes,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .map_err(|e| e.to_string())?,
            _root: root,
        };
        for i in 0..n {
            cluster.start_node(i).await?;
        }
        Ok(cluster)
    }

    /// Adds a node (the next id) and starts it; returns its index.
    pub async fn grow(&mut self) -> Result<usize, String> {
        let i = self.nodes.len();
        self.nodes.push(Node {
            id: node_id(i),
            data_dir: self._root.path().join(node_id(i)),
            child: None,
        });
        self.start_node(i).await?;
        Ok(i)
    }

    /// SIGTERM node `i` and waits up to `limit` for it to exit (it gives its leases up
    /// on the way out).
    pub async fn stop(&mut self, i: usize, limit: Duration) -> Result<(), String> {
        let mut child = self.nodes[i]
            .child
            .take()
            .ok_or_else(|| format!("{} is not running", self.nodes[i].id))?;
        let status = child.terminate_within(limit).await?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("{} exited with {status}", self.nodes[i].id))
        }
    }

    /// How many nodes the cluster has, up or down.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The id of node `i`.
    pub fn id(&self, i: usize) -> &str {
        &self.nodes[i].id
    }

    /// The database every node uses.
    pub fn db_url(&self) -> &str {
        &self.db_url
    }

    /// `http://{addr}` of node `i`; panics while it is down (its address changes at
    /// every start: it binds port 0).
    pub fn url(&self, i: usize) -> String {
        self.try_url(i)
            .unwrap_or_else(|| panic!("{} is down", self.nodes[i].id))
    }

    /// `http://{addr}` of node `i`, None while it is down.
    pub fn try_url(&self, i: usize) -> Option<String> {
        self.nodes[i].child.as_ref().map(|c| c.base.clone())
    }

    /// True while node `i`'s process runs (paused counts as running).
    pub fn is_up(&self, i: usize) -> bool {
        self.nodes[i].child.is_some()
    }

    /// The process id of node `i`, while it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.nodes[i].child.as_ref().and_then(ChildDaemon::pid)
    }

    /// Everything node `i` logged since its latest start (JSON lines).
    pub fn log(&self, i: usize) -> String {
        self.nodes[i].child.as_ref().map_or_else(String::new, |c| {
            c.log
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone()
        })
    }

    /// Starts node `i` again on its data dir (it must be down) and waits until it is
    /// ready.
    pub async fn start_node(&mut self, i: usize) -> Result<(), String> {
        if self.nodes[i].child.is_some() {
            return Err(format!("{} is already up", self.nodes[i].id));
        }
        let node = &self.nodes[i];
        std::fs::create_dir_all(&node.data_dir).map_err(|e| e.to_string())?;
        let mut env: Vec<(&str, &str)> = vec![
            ("RUST_LOG", "info"),
            ("PALYRA_STORAGE__BACKEND", "postgres"),
            ("PALYRA_STORAGE__URL", &self.db_url),
            ("PALYRA_CLUSTER__NODE_ID", &node.id),
        ];
        env.extend(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let child = ChildDaemon::start(&self.palyrad, &node.data_dir, &env, false)
            .await
            .map_err(|e| format!("{} did not start: {e}", node.id))?;
        let base = child.base.clone();
        self.nodes[i].child = Some(child);
        self.wait_ready(i, &base).await
    }

    async fn wait_ready(&self, i: usize, base: &str) -> Result<(), String> {
        let started = Instant::now();
        loop {
            let ready = self.http.get(format!("{base}/readyz")).send().await;
            if ready.is_ok_and(|r| r.status() == 200) {
                return Ok(());
            }
            if started.elapsed() > READY_LIMIT {
                return Err(format!(
                    "{} was not ready within {} s",
                    self.nodes[i].id,
                    READY_LIMIT.as_secs()
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// An admin API request to node `i` with the bearer `PALYRA_ADMIN_TOKEN` of the
    /// nodes' env, `body` as JSON when given: the status and the JSON answer (Null
    /// when it is not JSON).
    pub async fn admin(
        &self,
        i: usize,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<(u16, serde_json::Value), String> {
        let token = self
            .env
            .iter()
            .find(|(k, _)| k == "PALYRA_ADMIN_TOKEN")
            .map(|(_, v)| v.as_str())
            .ok_or("the nodes' env has no PALYRA_ADMIN_TOKEN")?;
        let base = self
            .try_url(i)
            .ok_or_else(|| format!("{} is down", self.nodes[i].id))?;
        let mut request = self
            .http
            .request(method, format!("{base}{path}"))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| format!("{path}: {e}"))?;
        let status = response.status().as_u16();
        let value = response.json().await.unwrap_or(serde_json::Value::Null);
        Ok((status, value))
    }

    /// kill -9 node `i` (a paused node too) and reaps it.
    pub async fn kill9(&mut self, i: usize) -> Result<(), String> {
        let mut child = self.nodes[i]
            .child
            .take()
            .ok_or_else(|| format!("{} is not running", self.nodes[i].id))?;
        child
            .child
            .kill()
            .await
            .map_err(|e| format!("cannot kill {}: {e}", self.nodes[i].id))
    }

    /// SIGSTOP node `i`: the process stays, does nothing, answers nothing.
    pub fn sigstop(&self, i: usize) -> Result<(), String> {
        self.signal(i, "-STOP")
    }

    /// SIGCONT node `i` after [`Cluster::sigstop`].
    pub fn sigcont(&self, i: usize) -> Result<(), String> {
        self.signal(i, "-CONT")
    }

    /// Through kill(1): the workspace forbids unsafe code.
    fn signal(&self, i: usize, signal: &str) -> Result<(), String> {
        let pid = self
            .pid(i)
            .ok_or_else(|| format!("{} is not running", self.nodes[i].id))?;
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .map_err(|e| e.to_string())?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("kill {signal} {pid} failed"))
        }
    }

    /// kill -9 node `i` if it runs, then starts it again on the same data dir.
    pub async fn restart(&mut self, i: usize) -> Result<(), String> {
        if self.is_up(i) {
            self.kill9(i).await?;
        }
        self.start_node(i).await
    }

    /// kill -9 every running node.
    pub async fn kill_all(&mut self) -> Result<(), String> {
        for i in 0..self.len() {
            if self.is_up(i) {
                self.kill9(i).await?;
            }
        }
        Ok(())
    }

    /// Starts every node that is down, one after the other.
    pub async fn start_all(&mut self) -> Result<(), String> {
        for i in 0..self.len() {
            if !self.is_up(i) {
                self.start_node(i).await?;
            }
        }
        Ok(())
    }

    /// Cuts every database connection of node `i` (connections are tagged with the
    /// application name `palyrad/<node id>`); returns how many were terminated.
    pub fn terminate_connections(&self, i: usize) -> Result<usize, String> {
        let out = try_psql(
            &self.db_url,
            &format!(
                "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE application_name = 'palyrad/{}') t",
                self.nodes[i].id
            ),
        )?;
        out.trim()
            .parse()
            .map_err(|e| format!("pg_terminate_backend counted {out:?}: {e}"))
    }

    /// How many shards each node holds an unexpired lease on, by the database's clock.
    pub fn leases(&self) -> Result<BTreeMap<String, usize>, String> {
        let out = try_psql(
            &self.db_url,
            "SELECT owner, count(*) FROM cluster_leases \
             WHERE owner IS NOT NULL AND expires_at > now() GROUP BY owner",
        )?;
        let mut held = BTreeMap::new();
        for line in out.lines().filter(|l| !l.is_empty()) {
            let (owner, count) = line
                .split_once('|')
                .ok_or_else(|| format!("a lease row {line:?}"))?;
            held.insert(owner.to_owned(), count.parse().map_err(|e| format!("{e}"))?);
        }
        Ok(held)
    }

    /// The owner of every shard with an unexpired lease.
    pub fn shard_owners(&self) -> Result<BTreeMap<u32, String>, String> {
        let out = try_psql(
            &self.db_url,
            "SELECT shard, owner FROM cluster_leases \
             WHERE owner IS NOT NULL AND expires_at > now()",
        )?;
        let mut owners = BTreeMap::new();
        for line in out.lines().filter(|l| !l.is_empty()) {
            let (shard, owner) = line
                .split_once('|')
                .ok_or_else(|| format!("a lease row {line:?}"))?;
            owners.insert(shard.parse().map_err(|e| format!("{e}"))?, owner.to_owned());
        }
        Ok(owners)
    }

    /// Waits until every shard is leased by one of `nodes` and each of them holds at
    /// least one; returns how long that took.
    pub async fn wait_spread_over(
        &self,
        nodes: &[usize],
        limit: Duration,
    ) -> Result<Duration, String> {
        let started = Instant::now();
        let ids: Vec<&str> = nodes.iter().map(|&i| self.id(i)).collect();
        let mut last = BTreeMap::new();
        loop {
            if let Ok(held) = self.leases() {
                let all = held.values().sum::<usize>() == SHARDS;
                let only = held.keys().all(|k| ids.contains(&k.as_str()));
                let each = ids.iter().all(|id| held.get(*id).is_some_and(|&n| n > 0));
                if all && only && each {
                    return Ok(started.elapsed());
                }
                last = held;
            }
            if started.elapsed() > limit {
                return Err(format!(
                    "the shards were not spread over {ids:?} within {} s: {last:?}",
                    limit.as_secs()
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The shard count, as the checker and the waits need it.
pub const SHARDS: usize = palyra_actors::cluster::SHARDS as usize;

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(child) = node.child.as_mut() {
                let _ = child.child.start_kill();
            }
        }
    }
}

/// One SQL statement through psql with unaligned, tuple-only output (`|` between
/// fields); an error, not a panic, when the server is unreachable (it may be
/// restarting under a fault).
pub fn try_psql(url: &str, sql: &str) -> Result<String, String> {
    let out = Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-qAtc", sql])
        .output()
        .map_err(|e| format!("psql does not run: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "psql {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
