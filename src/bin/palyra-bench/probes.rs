//! What the bench reads from the operating system: the fsync ceiling of a filesystem,
//! resident memory and CPU time (per process and per thread name) from /proc, the
//! wall clock, and the machine the run is on.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use palyra_storage::Writer;

use crate::driver::BoxError;

/// How long the fsync ceiling is measured at the start, and in all (split between the
/// slices) during each write scenario.
pub const FSYNC_PROBE: Duration = Duration::from_secs(2);

/// Syncs done by fsync probes and the time they took.
#[derive(Debug, Default, Clone, Copy)]
pub struct FsyncProbe {
    pub syncs: u64,
    pub elapsed: Duration,
}

impl FsyncProbe {
    pub fn rate(self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.syncs as f64 / secs
        } else {
            0.0
        }
    }
}

/// Runs [`measure_fsync`] off the async workers.
pub async fn fsync_probe(dir: PathBuf, length: Duration) -> Result<FsyncProbe, BoxError> {
    tokio::task::spawn_blocking(move || measure_fsync(&dir, length)).await?
}

/// The fsync ceiling: a serial loop of a small appending write and `sync_data`, as
/// one redb commit with `Durability::Immediate` costs about one appending fsync.
pub fn measure_fsync(dir: &Path, length: Duration) -> Result<FsyncProbe, BoxError> {
    let path = dir.join("fsync-probe");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)?;
    let record = [0x5a_u8; 128];
    let started = Instant::now();
    let mut syncs = 0_u64;
    while started.elapsed() < length {
        file.write_all(&record)?;
        file.sync_data()?;
        syncs += 1;
    }
    let elapsed = started.elapsed();
    drop(file);
    std::fs::remove_file(&path)?;
    Ok(FsyncProbe { syncs, elapsed })
}

/// VmRSS of a process in MiB.
pub fn vm_rss_mib(pid: u32) -> Result<f64, BoxError> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .ok_or("no VmRSS in /proc/<pid>/status")?;
    Ok(kib / 1024.0)
}

/// CPU time of the process and of each thread name at one instant.
pub struct CpuSnapshot {
    pub at: Instant,
    pub process: u64,
    pub threads: std::collections::BTreeMap<String, u64>,
}

impl CpuSnapshot {
    pub fn take() -> Result<Self, BoxError> {
        Ok(Self {
            at: Instant::now(),
            process: process_cpu_ticks()?,
            threads: thread_cpu_ticks(),
        })
    }

    /// CPU used from `before` to this snapshot, in % of one core.
    pub fn since(&self, before: &CpuSnapshot) -> CpuUse {
        let secs = self.at.duration_since(before.at).as_secs_f64().max(1e-9);
        let ticks_per_s = clock_ticks_per_second();
        let pct = |ticks: u64| ticks as f64 / ticks_per_s / secs * 100.0;
        let by_thread = self
            .threads
            .iter()
            .filter_map(|(name, after)| {
                let ticks = after.saturating_sub(before.threads.get(name).copied().unwrap_or(0));
                (ticks > 0).then(|| (name.clone(), pct(ticks)))
            })
            .collect();
        CpuUse {
            secs,
            process_pct: pct(self.process.saturating_sub(before.process)),
            by_thread,
        }
    }
}

/// CPU over a window, in % of one core.
pub struct CpuUse {
    pub secs: f64,
    pub process_pct: f64,
    pub by_thread: Vec<(String, f64)>,
}

impl CpuUse {
    /// The share of the threads whose names `side` accepts.
    pub fn side_pct(&self, side: impl Fn(&str) -> bool) -> f64 {
        self.by_thread
            .iter()
            .filter(|(name, _)| side(name))
            .map(|(_, pct)| pct)
            .sum()
    }

    pub fn describe(&self) -> String {
        self.by_thread
            .iter()
            .map(|(name, pct)| format!("{name} {pct:.1}%"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// utime + stime of this process, in clock ticks, from /proc/self/stat.
pub fn process_cpu_ticks() -> Result<u64, BoxError> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // The command name (field 2) may hold spaces; fields after it start at 3 (state).
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or("unexpected /proc/self/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> Result<u64, BoxError> {
        Ok(fields
            .get(n - 3)
            .ok_or("short /proc/self/stat")?
            .parse::<u64>()?)
    };
    Ok(field(14)? + field(15)?)
}

/// utime + stime in clock ticks per thread name (threads of one name added up, as
/// tokio names all workers of a runtime alike), from /proc/self/task. Empty if it
/// cannot be read: it only feeds a note.
pub fn thread_cpu_ticks() -> std::collections::BTreeMap<String, u64> {
    let mut by_name = std::collections::BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return by_name;
    };
    for task in tasks.flatten() {
        let dir = task.path();
        let (Ok(comm), Ok(stat)) = (
            std::fs::read_to_string(dir.join("comm")),
            std::fs::read_to_string(dir.join("stat")),
        ) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
        if let (Some(utime), Some(stime)) = (ticks(14), ticks(15)) {
            *by_name.entry(comm.trim().to_owned()).or_insert(0) += utime + stime;
        }
    }
    by_name
}

/// `getconf CLK_TCK` (the unit of /proc/self/stat times); 100 if it cannot be asked.
pub fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

pub fn writer_counts(writer: &Writer) -> (u64, u64) {
    let stats = writer.stats();
    (
        stats.commits.load(Ordering::Relaxed),
        stats.writes.load(Ordering::Relaxed),
    )
}

/// Wall-clock time in Unix milliseconds, the clock the daemon stamps expiries with.
pub fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The Unix milliseconds of a past `Instant`.
pub fn unix_ms_at(at: Instant) -> i64 {
    let ago = i64::try_from(at.elapsed().as_millis()).unwrap_or(0);
    unix_ms() - ago
}

/// Wall-clock time in Unix nanoseconds.
pub fn unix_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// Sleeps until the wall clock reads `target_ms` (Unix milliseconds).
pub async fn sleep_until_unix_ms(target_ms: i64) {
    if let Ok(wait) = u64::try_from(target_ms - unix_ms()) {
        tokio::time::sleep(Duration::from_millis(wait)).await;
    }
}

/// Type of the filesystem holding `path`, from /proc/self/mounts.
pub fn filesystem_of(path: &Path) -> String {
    let path = path.canonicalize().unwrap_or_else(|_| path.to_owned());
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let _device = fields.next()?;
            let mount_point = fields.next()?;
            let fs_type = fields.next()?;
            path.starts_with(mount_point)
                .then(|| (mount_point.len(), fs_type.to_owned()))
        })
        .max_by_key(|(len, _)| *len)
        .map_or_else(|| "unknown filesystem".into(), |(_, fs)| fs)
}

/// /proc/loadavg (1, 5, 15 min): other work on the machine shifts every figure.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// Cores, CPU model and kernel release, for the report's first lines.
pub fn machine() -> (usize, String, String) {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    (cores, cpu, kernel.trim().to_owned())
}
