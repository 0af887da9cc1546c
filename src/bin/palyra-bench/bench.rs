//! What every scenario of a run shares: its settings, where the daemon under test
//! runs, and the alternating-slices comparison with the baseline.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use palyra::settings::Settings;
use palyra_actors::SecretString;
use palyra_storage::Writer;

use crate::backends::{Backend, PgServer};
use crate::driver::{BoxError, GetOk, Limit, Tally, WARMUP, Work, drive};
use crate::probes::{FSYNC_PROBE, FsyncProbe, fsync_probe, writer_counts};
use crate::servers::BenchDaemon;

/// Where the daemon under test runs.
#[derive(Debug)]
pub enum TargetMode {
    /// A fresh palyrad per scenario, in this process.
    InProcess,
    /// A running daemon given with `--url`.
    External {
        addr: SocketAddr,
        token: SecretString,
    },
}

/// The settings shared by every scenario of a run.
#[derive(Debug)]
pub struct Bench {
    pub clients: usize,
    pub duration: Duration,
    /// `scheduler-10k`: seconds of firing measured per side.
    pub scheduler_window: Duration,
    pub slices: u32,
    pub baseline: SocketAddr,
    pub target: TargetMode,
    pub root: PathBuf,
    pub fsync_per_s: f64,
    /// /proc/loadavg (1, 5, 15 min) before the run: other work on the machine shifts
    /// every figure, and this shows whether there was any.
    pub load_before: String,
    /// The backend of the scenario now running (set before each one).
    pub backend: Backend,
    /// The run's PostgreSQL server, when a scenario runs on PostgreSQL.
    pub postgres: Option<PgServer>,
}

/// The socket address of a loopback `http://host:port` URL. The admin token travels in
/// clear over plain HTTP, so anything but loopback is refused.
pub fn loopback_addr(url: &str) -> Result<SocketAddr, BoxError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or("--url must start with http://")?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let addr = authority
        .to_socket_addrs()
        .map_err(|e| format!("--url: cannot resolve {authority:?} (give host:port): {e}"))?
        .find(|a| a.ip().is_loopback())
        .ok_or(
            "--url must name a loopback address: the admin token would cross the network in clear",
        )?;
    Ok(addr)
}

impl Bench {
    /// A fresh in-process daemon on the backend of the scenario now running: redb in
    /// its data dir, or a fresh database on the run's PostgreSQL server.
    pub async fn start_daemon(
        &self,
        token: &SecretString,
        max_live: usize,
        configure: impl FnOnce(&mut Settings),
    ) -> Result<BenchDaemon, BoxError> {
        let database = match (self.backend, &self.postgres) {
            (Backend::Redb, _) => None,
            (Backend::Postgres, Some(server)) => Some(server.fresh_database()?),
            (Backend::Postgres, None) => return Err("no PostgreSQL server for this run".into()),
        };
        BenchDaemon::start(&self.root, database, token, max_live, configure).await
    }

    /// Baseline and scenario in alternating slices: drift (CPU frequency, page cache,
    /// the other side's leftovers) then weighs on both sides alike.
    /// With `probe_fsync`, an fsync probe runs after each pair of slices, so the write
    /// scenario is compared with the disk's rate of the same minutes.
    pub async fn compare<W: Work>(
        &self,
        target: SocketAddr,
        work: &Arc<W>,
        writer: Option<&Writer>,
        probe_fsync: bool,
    ) -> Result<Comparison, BoxError> {
        let baseline_work = Arc::new(GetOk);
        drive(
            self.baseline,
            &baseline_work,
            self.clients,
            Limit::For(WARMUP),
        )
        .await?;
        drive(target, work, self.clients, Limit::For(WARMUP)).await?;
        let slice = self.duration / self.slices;
        let mut cmp = Comparison::default();
        for _ in 0..self.slices {
            let base = drive(
                self.baseline,
                &baseline_work,
                self.clients,
                Limit::For(slice),
            )
            .await?;
            cmp.baseline.absorb(base);
            let before = writer.map(writer_counts);
            let scen = drive(target, work, self.clients, Limit::For(slice)).await?;
            cmp.scenario.absorb(scen);
            if let (Some(w), Some((commits, writes))) = (writer, before) {
                let (commits_after, writes_after) = writer_counts(w);
                cmp.commits += commits_after - commits;
                cmp.writes += writes_after - writes;
            }
            if probe_fsync {
                let probe = fsync_probe(self.root.clone(), FSYNC_PROBE / self.slices).await?;
                cmp.fsync.syncs += probe.syncs;
                cmp.fsync.elapsed += probe.elapsed;
            }
        }
        cmp.baseline.finish();
        cmp.scenario.finish();
        Ok(cmp)
    }
}

/// Both sides of one scenario, plus the writer's counters over the scenario slices.
#[derive(Debug, Default)]
pub struct Comparison {
    pub baseline: Tally,
    pub scenario: Tally,
    pub commits: u64,
    pub writes: u64,
    pub fsync: FsyncProbe,
}
