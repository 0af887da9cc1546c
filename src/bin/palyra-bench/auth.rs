//! The console-auth scenarios: `session-check` (cookie validation), `login` (a full
//! login, one durable write) and `handoff` (mint and consume a browser handoff).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use hyper::StatusCode;
use hyper::header::{self, HeaderValue};

use crate::bench::Bench;
use crate::driver::{BoxError, Client, Limit, Work, drive};
use crate::http::HttpLoad;
use crate::plan::Plan;
use crate::report::Row;

const LOGIN_PATH: &str = "/console/v1/auth/login";
const SESSION_PATH: &str = "/console/v1/auth/session";
const HANDOFF_PATH: &str = "/console/v1/auth/browser-handoff";
const SESSION_COOKIE: &str = "palyra_console_session";

/// `GET /console/v1/auth/session` with the session cookie and its CSRF token (the
/// daemon refuses a cookie without it, reads included); 200 expected.
#[derive(Debug)]
pub struct SessionCheck {
    pub cookie: SessionCookie,
}

/// A session as a console holds it: the `Cookie` header value and the CSRF token.
#[derive(Debug, Clone)]
pub struct SessionCookie {
    pub cookie: HeaderValue,
    pub csrf: HeaderValue,
}

impl Work for SessionCheck {
    async fn iterate(&self, client: &mut Client) -> Result<bool, BoxError> {
        let mut request = client.get(SESSION_PATH, Some((header::COOKIE, &self.cookie.cookie)))?;
        request
            .headers_mut()
            .insert("x-palyra-csrf-token", self.cookie.csrf.clone());
        Ok(client.send(request).await?.status() == StatusCode::OK)
    }
}

/// `POST /console/v1/auth/login`: a full login, one durable write; 200 expected.
#[derive(Debug)]
pub struct Login {
    pub body: Bytes,
}

impl Work for Login {
    async fn iterate(&self, client: &mut Client) -> Result<bool, BoxError> {
        let request = client.post(LOGIN_PATH, None, self.body.clone())?;
        Ok(client.send(request).await?.status() == StatusCode::OK)
    }
}

/// Mint a handoff with the bearer token (200), then redeem its link as the link page's
/// button does, a form POST (200).
#[derive(Debug)]
struct Handoff {
    bearer: HeaderValue,
}

impl Work for Handoff {
    async fn iterate(&self, client: &mut Client) -> Result<bool, BoxError> {
        let request = client.post(
            HANDOFF_PATH,
            Some((header::AUTHORIZATION, &self.bearer)),
            Bytes::from_static(b"{}"),
        )?;
        let minted = client.send(request).await?;
        if minted.status() != StatusCode::OK {
            return Ok(false);
        }
        let Some(path) = handoff_path(minted.body()) else {
            return Ok(false);
        };
        let Some((path, query)) = path.split_once('?') else {
            return Ok(false);
        };
        let mut redeem = client.post(path, None, Bytes::from(query.to_owned()))?;
        redeem.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        let consumed = client.send(redeem).await?;
        Ok(consumed.status() == StatusCode::OK)
    }
}

/// `session-check` with `sessions` live sessions, seeded by concurrent logins.
pub async fn session_check(bench: &Bench, sessions: usize) -> Result<Row, BoxError> {
    let plan = Plan::SessionCheck { sessions };
    let target = bench.http_target(plan).await?;
    let login_body = target.login_body();
    let mut notes = Vec::new();
    let seed = (sessions - 1) as u64;
    if seed > 0 {
        eprintln!("  seeding {seed} sessions by concurrent logins");
        let login = Arc::new(Login {
            body: login_body.clone(),
        });
        let seeded = drive(target.addr, &login, bench.clients, Limit::Count(seed)).await?;
        if seeded.errors > 0 {
            notes.push(format!("{} seeding logins failed", seeded.errors));
        }
    }
    // The last login, so that it is the newest session and never evicted.
    let cookie = login_cookie(target.addr, &login_body).await?;
    notes.push(format!("{sessions} live session(s), one cookie"));
    let load = HttpLoad {
        work: SessionCheck { cookie },
        requests_per_iteration: 1,
        writes_per_iteration: 0,
    };
    bench.measure(plan, target, load, notes).await
}

pub async fn login(bench: &Bench) -> Result<Row, BoxError> {
    let target = bench.http_target(Plan::Login).await?;
    let load = HttpLoad {
        work: Login {
            body: target.login_body(),
        },
        requests_per_iteration: 1,
        writes_per_iteration: 1,
    };
    bench.measure(Plan::Login, target, load, Vec::new()).await
}

pub async fn handoff(bench: &Bench) -> Result<Row, BoxError> {
    let target = bench.http_target(Plan::Handoff).await?;
    let notes = vec![
        "rps = iterations/s; 1 iteration = mint (bearer, 200) + redeem (form POST, 200) = 2 requests, 2 durable writes"
            .into(),
    ];
    let load = HttpLoad {
        work: Handoff {
            bearer: target.bearer()?,
        },
        requests_per_iteration: 2,
        writes_per_iteration: 2,
    };
    bench.measure(Plan::Handoff, target, load, notes).await
}

/// Logs in once with `admin_token` and returns the session's cookie and CSRF token.
pub async fn login_cookie_for(
    addr: SocketAddr,
    admin_token: &str,
) -> Result<SessionCookie, BoxError> {
    let body = Bytes::from(serde_json::json!({ "admin_token": admin_token }).to_string());
    login_cookie(addr, &body).await
}

/// Logs in once and returns the new session's cookie and CSRF token.
async fn login_cookie(addr: SocketAddr, body: &Bytes) -> Result<SessionCookie, BoxError> {
    let mut client = Client::connect(addr).await?;
    let response = client
        .send(client.post(LOGIN_PATH, None, body.clone())?)
        .await?;
    if response.status() != StatusCode::OK {
        return Err(format!("login answered {}", response.status()).into());
    }
    let token = response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .filter_map(|pair| pair.split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.to_owned())
        .ok_or("login answered no session cookie")?;
    let mut cookie = HeaderValue::from_str(&format!("{SESSION_COOKIE}={token}"))?;
    cookie.set_sensitive(true);
    let body: serde_json::Value = serde_json::from_slice(response.body())?;
    let mut csrf = HeaderValue::from_str(
        body["csrf_token"]
            .as_str()
            .ok_or("login answered no csrf_token")?,
    )?;
    csrf.set_sensitive(true);
    Ok(SessionCookie { cookie, csrf })
}

/// Path and query of the `handoff_url` in a mint answer. The link is followed on the
/// same connection: the daemon names itself by its loopback address, which may be
/// spelled differently from `--url`.
fn handoff_path(body: &Bytes) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let url = value.get("handoff_url")?.as_str()?;
    let rest = url.strip_prefix("http://")?;
    let slash = rest.find('/')?;
    Some(rest[slash..].to_owned())
}
