//! What a request carries that every layer reads: who is calling ([`Caller`]), from
//! where ([`peer_ip`], [`peer_key`]), under which id ([`RequestId`]), and the names of
//! the session cookie.
//!
//! It imports nothing else of this crate, so the pipeline, authentication, the audit
//! extractor and the throttles can all read it without importing each other.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use axum::extract::ConnectInfo;
use axum::http::{Extensions, HeaderName};
use palyra_actors::Authenticated;
use palyra_actors::operators::{Role, TokenAuth};
use palyra_actors::sessions::{OPERATOR_PREFIX, ROOT_PRINCIPAL, SessionGrant};

/// Name of the session cookie over plain HTTP (loopback).
pub const SESSION_COOKIE: &str = "palyra_console_session";
/// Name of the session cookie under TLS: the `__Host-` prefix makes browsers accept it
/// only with `Secure`, `Path=/` and no `Domain`.
pub const SECURE_SESSION_COOKIE: &str = "__Host-palyra_console_session";

/// The request id header, read and echoed.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The request's id, in its extensions for handlers (the audit log records it).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Who is calling; inserted into request extensions by the auth middleware.
#[derive(Debug, Clone)]
pub enum Caller {
    /// The admin token itself, presented as a bearer token: `root`.
    Root,
    /// A console session cookie (of root or of an operator).
    Session(Authenticated),
    /// An operator's API token.
    Token(TokenAuth),
}

impl Caller {
    /// The principal acting: `root` or `operator:<id>`.
    pub fn principal(&self) -> String {
        match self {
            Caller::Root => ROOT_PRINCIPAL.to_owned(),
            Caller::Session(a) => a.session.principal.clone(),
            Caller::Token(t) => format!("{OPERATOR_PREFIX}{}", t.operator_id),
        }
    }

    /// The audit log's actor: the principal, and the token it acted with, if any.
    pub fn actor(&self) -> String {
        match self {
            Caller::Token(t) => format!("{}/token:{}", self.principal(), t.token_id),
            Caller::Session(a) => match a.credential.strip_prefix("token:") {
                Some(token_id) => format!("{}/token:{token_id}", a.session.principal),
                None => a.session.principal.clone(),
            },
            Caller::Root => self.principal(),
        }
    }

    /// What the caller may do; root may do everything.
    pub fn role(&self) -> Role {
        match self {
            Caller::Root => Role::Admin,
            Caller::Session(a) => a.session.role,
            Caller::Token(t) => t.role,
        }
    }

    /// The session a handoff minted by this caller creates: the same principal, role
    /// and credential, so revoking the credential ends it too.
    pub fn grant(&self, root_credential: &str) -> SessionGrant {
        SessionGrant {
            principal: self.principal(),
            role: self.role(),
            credential: match self {
                Caller::Root => root_credential.to_owned(),
                Caller::Session(a) => a.credential.clone(),
                Caller::Token(t) => format!("token:{}", t.token_id),
            },
        }
    }
}

/// The peer's IP address (loopback when the server was not started with connect info,
/// as in `oneshot` router tests). An IPv4-mapped IPv6 address (a dual-stack listener)
/// is its IPv4 address, so `::ffff:127.0.0.1` is loopback.
pub fn peer_ip(req_extensions: &Extensions) -> IpAddr {
    req_extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_canonical())
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// The wider key a peer is also counted under by the failed-auth throttle: its IPv4
/// address, or its IPv6 /48 (what a site is usually given), so a host that rotates
/// through the /64s of its site still runs into a limit.
pub fn peer_site_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) if !v6.is_loopback() => {
            let prefix = u128::from(v6) & !((1u128 << 80) - 1);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
        other => other,
    }
}

/// The key a peer is counted under by the throttle and the rate limits: its IPv4
/// address, or its IPv6 /64 (one host usually holds a whole /64, so counting single
/// IPv6 addresses would let it rotate past any limit).
pub fn peer_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) if !v6.is_loopback() => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
        other => other,
    }
}
