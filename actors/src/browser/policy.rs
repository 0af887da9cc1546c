//! Which URLs a browser session may load: http and https only, and, unless the
//! configuration allows it, no destination on a private, link-local or loopback
//! address, checked on the addresses the host name resolves to. The egress proxy
//! connects only to addresses [`UrlPolicy::destination`] returned, so what it
//! checked is what it reaches.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::{Host, Url};

use super::error::BrowserError;
use super::resolver::{ResolveError, Resolver};

/// The destination rules of every session.
#[derive(Debug, Clone, Default)]
pub struct UrlPolicy {
    /// Private, link-local and loopback destinations are allowed.
    pub allow_private_networks: bool,
    /// When not empty, only these hosts (names or IP addresses, lowercase) may be visited.
    pub allowed_hosts: Vec<String>,
    /// Resolves host names, for the checks and for the proxy (bounded, cached).
    pub resolver: Resolver,
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
        self.check_name(url)?;
        if self.allow_private_networks {
            return Ok(());
        }
        self.destination(url).await.map(drop)
    }

    /// What can be checked without resolving: the scheme and the allow-list. The
    /// request interceptor uses this; the addresses are the proxy's to check.
    pub fn check_name(&self, url: &Url) -> Result<(), BrowserError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(BrowserError::SchemeRefused {
                scheme: url.scheme().to_owned(),
            });
        }
        let Some(host) = url.host() else {
            return Err(refused(url, "it has no host".into()));
        };
        if !self.allowed_hosts.is_empty() {
            let name = match &host {
                Host::Domain(d) => d.to_ascii_lowercase(),
                Host::Ipv4(ip) => ip.to_string(),
                Host::Ipv6(ip) => ip.to_string(),
            };
            if !self.allowed_hosts.contains(&name) {
                return Err(refused(
                    url,
                    format!("{name} is not in browser.allowed_hosts"),
                ));
            }
        }
        Ok(())
    }

    /// Resolves the URL's host once and checks every address; the answer is the
    /// addresses to connect to, and no others. The caller checked the name.
    pub async fn destination(&self, url: &Url) -> Result<Vec<IpAddr>, BrowserError> {
        let addresses: Vec<IpAddr> = match url.host() {
            None => return Err(refused(url, "it has no host".into())),
            Some(Host::Ipv4(ip)) => vec![IpAddr::V4(ip)],
            Some(Host::Ipv6(ip)) => vec![IpAddr::V6(ip)],
            Some(Host::Domain(name)) => match self.resolver.lookup(name).await {
                Ok(addresses) => addresses,
                Err(ResolveError::NoAddress | ResolveError::Timeout) => {
                    return Err(BrowserError::Unresolvable {
                        host: url.host_str().unwrap_or_default().to_owned(),
                    });
                }
            },
        };
        if self.allow_private_networks {
            return Ok(addresses);
        }
        // Every address must be public: a browser may pick any of them, and the
        // proxy tries them in turn.
        for ip in &addresses {
            if let Some(kind) = non_public(*ip) {
                return Err(refused(
                    url,
                    format!(
                        "it resolves to {ip}, a {kind} address (browser.allow_private_networks is off)"
                    ),
                ));
            }
        }
        Ok(addresses)
    }
}

fn refused(url: &Url, reason: String) -> BrowserError {
    BrowserError::DestinationRefused {
        url: url.to_string(),
        reason,
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
    if ip.is_loopback() {
        return Some("loopback");
    }
    if ip.is_unspecified() {
        return Some("unspecified");
    }
    // The forms that embed an IPv4 address reach it: IPv4-mapped (::ffff:0:0/96),
    // IPv4-compatible (::/96), NAT64 (64:ff9b::/96) and 6to4 (2002::/16).
    if let Some(v4) = embedded_v4(ip) {
        return non_public_v4(v4);
    }
    let segments = ip.segments();
    let first = segments[0];
    if segments[..3] == [0x64, 0xff9b, 1] {
        // Local-use NAT64 (RFC 8215): a translator of the site's own, to anything.
        Some("local-use NAT64")
    } else if first & 0xfe00 == 0xfc00 {
        Some("private (unique local)")
    } else if first & 0xffc0 == 0xfe80 || first & 0xffc0 == 0xfec0 {
        Some("link-local")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if first == 0x2001 && segments[1] == 0x0db8 {
        Some("documentation")
    } else {
        None
    }
}

/// The IPv4 address an IPv6 address embeds, for the forms that route to it.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let o = ip.octets();
    let last32 = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    if s[..5] == [0; 5] && (s[5] == 0xffff || s[5] == 0) {
        // ::ffff:a.b.c.d and ::a.b.c.d.
        Some(last32)
    } else if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        Some(last32)
    } else if s[0] == 0x2002 {
        Some(Ipv4Addr::new(o[2], o[3], o[4], o[5]))
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
            "::a9fe:a9fe",
            "::7f00:1",
            "::ffff:a9fe:a9fe",
            "64:ff9b:1::a9fe:a9fe",
            "64:ff9b:1:ffff::1",
            "2002:a9fe:a9fe::1",
            "2002:7f00:1::",
            "2002:c0a8:101::1",
        ] {
            let ip: IpAddr = private.parse().unwrap();
            assert!(non_public(ip).is_some(), "{private} must be refused");
        }
        for public in [
            "93.184.216.34",
            "1.1.1.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
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
            ..UrlPolicy::default()
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
