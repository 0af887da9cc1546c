//! The browser's DNS: every host name a session's requests name is resolved here,
//! with a cap on lookups in flight and a small cache, so a page cannot exhaust the
//! daemon's blocking threads with names that never answer. `browser.dns_servers`
//! names the resolvers to ask; without it, the system's (getaddrinfo).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use tokio::sync::Semaphore;

/// How long resolving one host name may take, waiting for a place included.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);
/// Lookups in flight at once, for every session of the daemon.
const MAX_LOOKUPS: usize = 16;
/// How long a system lookup's answer is kept (getaddrinfo tells no TTL).
const SYSTEM_CACHE_TTL: Duration = Duration::from_secs(5);
/// Most names kept in the cache.
const CACHE_ENTRIES: usize = 256;

/// Why a name has no address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("it does not resolve to any address")]
    NoAddress,
    #[error("resolving it took longer than {} s", RESOLVE_TIMEOUT.as_secs())]
    Timeout,
}

/// The resolver every session shares. Cloning is shallow.
#[derive(Clone)]
pub struct Resolver {
    inner: Arc<Inner>,
}

struct Inner {
    /// Empty: the system's resolver.
    servers: Vec<SocketAddr>,
    /// Built on first use (it needs the runtime), when `servers` is not empty.
    dns: OnceLock<Option<hickory_resolver::TokioResolver>>,
    permits: Arc<Semaphore>,
    /// System answers by name (empty: no address), with when they were resolved.
    cache: Mutex<HashMap<String, (Instant, Vec<IpAddr>)>>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("servers", &self.inner.servers)
            .finish_non_exhaustive()
    }
}

impl Default for Resolver {
    /// The system's resolver.
    fn default() -> Self {
        Self::new(Vec::new())
    }
}

impl Resolver {
    /// A resolver asking `servers` (UDP, then TCP), or the system's when empty.
    pub fn new(servers: Vec<SocketAddr>) -> Self {
        Self {
            inner: Arc::new(Inner {
                servers,
                dns: OnceLock::new(),
                permits: Arc::new(Semaphore::new(MAX_LOOKUPS)),
                cache: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The addresses of `name` (a domain name, not an IP literal).
    pub async fn lookup(&self, name: &str) -> Result<Vec<IpAddr>, ResolveError> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if self.inner.servers.is_empty()
            && let Some(addresses) = self.cached(&name)
        {
            return if addresses.is_empty() {
                Err(ResolveError::NoAddress)
            } else {
                Ok(addresses)
            };
        }
        let deadline = Instant::now() + RESOLVE_TIMEOUT;
        let permit = tokio::time::timeout(
            RESOLVE_TIMEOUT,
            Arc::clone(&self.inner.permits).acquire_owned(),
        )
        .await
        .map_err(|_| ResolveError::Timeout)?
        .map_err(|_| ResolveError::Timeout)?;
        let remaining = deadline.saturating_duration_since(Instant::now());
        let addresses = if self.inner.servers.is_empty() {
            // getaddrinfo runs on a blocking thread that a timeout cannot stop: the
            // permit stays with it until it returns, so at most MAX_LOOKUPS threads
            // are ever blocked on names.
            let query = name.clone();
            let lookup = tokio::spawn(async move {
                let _permit = permit;
                tokio::net::lookup_host((query.as_str(), 0))
                    .await
                    .map(|addrs| addrs.map(|a| a.ip()).collect::<Vec<_>>())
            });
            match tokio::time::timeout(remaining, lookup).await {
                Err(_) => return Err(ResolveError::Timeout),
                Ok(Ok(Ok(addresses))) => addresses,
                Ok(_) => Vec::new(),
            }
        } else {
            let _permit = permit;
            let Some(dns) = self.dns() else {
                return Err(ResolveError::NoAddress);
            };
            // hickory keeps its own cache, by the answers' TTLs.
            match tokio::time::timeout(remaining, dns.lookup_ip(name.as_str())).await {
                Err(_) => return Err(ResolveError::Timeout),
                Ok(Ok(answer)) => answer.iter().collect(),
                Ok(Err(_)) => Vec::new(),
            }
        };
        if self.inner.servers.is_empty() {
            // Names without an address are kept too: a page (or Chromium's own
            // background requests) asking again and again costs no lookups.
            self.remember(name, addresses.clone());
        }
        if addresses.is_empty() {
            return Err(ResolveError::NoAddress);
        }
        Ok(addresses)
    }

    fn cached(&self, name: &str) -> Option<Vec<IpAddr>> {
        let cache = self
            .inner
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        cache
            .get(name)
            .filter(|(at, _)| at.elapsed() < SYSTEM_CACHE_TTL)
            .map(|(_, addresses)| addresses.clone())
    }

    fn remember(&self, name: String, addresses: Vec<IpAddr>) {
        let mut cache = self
            .inner
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if cache.len() >= CACHE_ENTRIES {
            cache.retain(|_, (at, _)| at.elapsed() < SYSTEM_CACHE_TTL);
            if cache.len() >= CACHE_ENTRIES {
                cache.clear();
            }
        }
        cache.insert(name, (Instant::now(), addresses));
    }

    fn dns(&self) -> Option<&hickory_resolver::TokioResolver> {
        let dns = self.inner.dns.get_or_init(|| {
            let servers = self
                .inner
                .servers
                .iter()
                .map(|server| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = server.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = server.port();
                    NameServerConfig::new(server.ip(), true, vec![udp, tcp])
                })
                .collect();
            let mut options = ResolverOpts::default();
            options.timeout = Duration::from_secs(2);
            options.attempts = 2;
            options.cache_size = CACHE_ENTRIES as u64;
            // A short cache: an answer is never trusted long after its TTL.
            options.positive_max_ttl = Some(Duration::from_secs(60));
            hickory_resolver::Resolver::builder_with_config(
                ResolverConfig::from_name_servers(servers),
                TokioRuntimeProvider::default(),
            )
            .with_options(options)
            .build()
            .inspect_err(|e| tracing::error!(error = %e, "cannot set up browser.dns_servers"))
            .ok()
        });
        dns.as_ref()
    }
}
