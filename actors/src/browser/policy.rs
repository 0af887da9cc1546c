//! Which URLs a browser session may load: http and https only, and, unless the
//! configuration allows it, no destination on a private, link-local or loopback
//! address, checked on the addresses the host name resolves to.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use url::{Host, Url};

use super::error::BrowserError;

/// How long resolving a host name may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// The destination rules of every session.
#[derive(Debug, Clone, Default)]
pub struct UrlPolicy {
    /// Private, link-local and loopback destinations are allowed.
    pub allow_private_networks: bool,
    /// When not empty, only these hosts (names or IP addresses, lowercase) may be visited.
    pub allowed_hosts: Vec<String>,
}

impl UrlPolicy {
    /// Parses and checks a URL given by a caller (`field` names it in errors).
    pub async fn check_input(&self, field: &'static str, raw: &str) -> Result<Url, BrowserError> {
        let url = Url::parse(raw).map_err(|e| BrowserError::InvalidUrl {
            field,
            message: e.to_string(),
        })?;
        self.check(&url).await?;
        Ok(url)
    }

    /// Checks a URL: its scheme, the allow-list, and the addresses of its host.
    pub async fn check(&self, url: &Url) -> Result<(), BrowserError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(BrowserError::SchemeRefused {
                scheme: url.scheme().to_owned(),
            });
        }
        let refused = |reason: String| BrowserError::DestinationRefused {
            url: url.to_string(),
            reason,
        };
        let Some(host) = url.host() else {
            return Err(refused("it has no host".into()));
        };
        if !self.allowed_hosts.is_empty() {
            let name = match &host {
                Host::Domain(d) => d.to_ascii_lowercase(),
                Host::Ipv4(ip) => ip.to_string(),
                Host::Ipv6(ip) => ip.to_string(),
            };
            if !self.allowed_hosts.contains(&name) {
                return Err(refused(format!("{name} is not in browser.allowed_hosts")));
            }
        }
        if self.allow_private_networks {
            return Ok(());
        }
        let addresses: Vec<IpAddr> = match host {
            Host::Ipv4(ip) => vec![IpAddr::V4(ip)],
            Host::Ipv6(ip) => vec![IpAddr::V6(ip)],
            Host::Domain(name) => {
                let port = url.port_or_known_default().unwrap_or(80);
                let lookup = tokio::net::lookup_host((name, port));
                match tokio::time::timeout(RESOLVE_TIMEOUT, lookup).await {
                    Ok(Ok(addrs)) => addrs.map(|a| a.ip()).collect(),
                    Ok(Err(_)) | Err(_) => Vec::new(),
                }
            }
        };
        if addresses.is_empty() {
            return Err(BrowserError::Unresolvable {
                host: url.host_str().unwrap_or_default().to_owned(),
            });
        }
        // Every address must be public: the browser may pick any of them.
        for ip in addresses {
            if let Some(kind) = non_public(ip) {
                return Err(refused(format!(
                    "it resolves to {ip}, a {kind} address (browser.allow_private_networks is off)"
                )));
            }
        }
        Ok(())
    }
}

/// The kind of a non-public address, or `None` for a public one.
pub fn non_public(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(ip) => non_public_v4(ip),
        IpAddr::V6(ip) => non_public_v6(ip),
    }
}

fn non_public_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_private() {
        Some("private")
    } else if ip.is_link_local() {
        Some("link-local")
    } else if a == 0 {
        Some("unspecified")
    } else if a == 100 && (64..128).contains(&b) {
        Some("shared (carrier-grade NAT)")
    } else if ip.is_multicast() || ip.is_broadcast() || a >= 240 {
        Some("multicast or reserved")
    } else if a == 198 && (b == 18 || b == 19) {
        Some("benchmarking")
    } else if ip.is_documentation() {
        Some("documentation")
    } else {
        None
    }
}

fn non_public_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return non_public_v4(v4);
    }
    let first = ip.segments()[0];
    // NAT64 (64:ff9b::/96) reaches the IPv4 address in its last 32 bits.
    if ip.segments()[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let [.., c, d] = ip.octets();
        let [.., a, b, _, _] = ip.octets();
        return non_public_v4(Ipv4Addr::new(a, b, c, d));
    }
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() {
        Some("unspecified")
    } else if first & 0xfe00 == 0xfc00 {
        Some("private (unique local)")
    } else if first & 0xffc0 == 0xfe80 || first & 0xffc0 == 0xfec0 {
        Some("link-local")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if first == 0x2001 && ip.segments()[1] == 0x0db8 {
        Some("documentation")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> UrlPolicy {
        UrlPolicy::default()
    }

    #[test]
    fn addresses_are_classified() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
        ] {
            let ip: IpAddr = private.parse().unwrap();
            assert!(non_public(ip).is_some(), "{private} must be refused");
        }
        for public in [
            "93.184.216.34",
            "1.1.1.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            let ip: IpAddr = public.parse().unwrap();
            assert_eq!(non_public(ip), None, "{public} is public");
        }
    }

    #[tokio::test]
    async fn schemes_other_than_http_are_refused() {
        for url in [
            "file:///etc/passwd",
            "chrome://version",
            "data:text/html,hi",
            "javascript:alert(1)",
            "ftp://example.com/",
            "about:blank",
        ] {
            let err = policy().check_input("url", url).await.unwrap_err();
            assert!(
                matches!(err, BrowserError::SchemeRefused { .. }),
                "{url}: {err:?}"
            );
        }
        let err = policy().check_input("url", "not a url").await.unwrap_err();
        assert!(matches!(err, BrowserError::InvalidUrl { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn private_destinations_are_refused_after_resolution() {
        for url in [
            "http://127.0.0.1:8080/",
            "http://[::1]/",
            "http://169.254.169.254/latest/meta-data/",
            "http://localhost/",
            "http://0x7f000001/",
            "http://2130706433/",
        ] {
            let err = policy().check_input("url", url).await.unwrap_err();
            assert!(
                matches!(err, BrowserError::DestinationRefused { .. }),
                "{url}: {err:?}"
            );
        }
        let open = UrlPolicy {
            allow_private_networks: true,
            ..UrlPolicy::default()
        };
        open.check_input("url", "http://localhost:1/")
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn the_allow_list_is_checked_before_anything_else() {
        let listed = UrlPolicy {
            allow_private_networks: true,
            allowed_hosts: vec!["127.0.0.1".into()],
        };
        listed
            .check_input("url", "http://127.0.0.1:9/")
            .await
            .unwrap();
        let err = listed
            .check_input("url", "http://93.184.216.34/")
            .await
            .unwrap_err();
        assert!(matches!(err, BrowserError::DestinationRefused { .. }));
    }
}
