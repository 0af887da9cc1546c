//! A fake OAuth 2.0 provider on loopback, at least as strict as the specifications
//! and the certified providers operators use: PKCE with S256 required (the verifier
//! checked against the challenge), the exact redirect URI and client id of the code,
//! single-use codes, rotation of refresh tokens with reuse refused, no refresh token
//! unless `offline_access` came with `prompt=consent` (OpenID Connect Core 11), the
//! client authentication it is configured for (and no other), a JSON-body mode that
//! refuses forms (and the form mode JSON), and an RFC 8628 device endpoint that
//! answers `authorization_pending` until approved and `slow_down` to a client that
//! polls faster than the interval. It counts what it answered, so tests can assert on
//! it and the bench can report it.
//!
//! Like RFC 9700 (section 4.14.2) asks of a provider that rotates refresh tokens, a
//! refresh token presented a second time is refused (`invalid_grant`) and its whole
//! family (every token descended from the same sign-in) is revoked; every refresh
//! token presented is logged, so a test can ask whether any was presented twice.
//!
//! The fault tests also see every token request while it is in flight (received and
//! not yet answered, or dropped because its client went away), and can hold an answer
//! back after the request was processed: a refresh token is then already rotated when
//! the client that asked for it dies, as with a real provider.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};

use crate::testkit::served::Served;

/// What the fake OAuth server's token endpoint should answer next, before normal
/// behaviour resumes.
#[derive(Debug, Clone)]
pub enum ForcedAnswer {
    /// HTTP status with an OAuth error body.
    Status(u16, &'static str),
    /// The same with a `Retry-After` header of this value (seconds or an HTTP date).
    RetryAfter(u16, &'static str, String),
}

/// Expiries that put every signed-in profile's refresh due time (expiry minus the
/// lead) in the second that starts at `from_unix_ms`, or `lead_s` from now if that is
/// later: the bench's way to make thousands of refreshes fall due at once.
#[derive(Debug, Clone, Copy)]
struct DueWindow {
    from_unix_ms: i64,
    lead_s: u64,
}

/// How the fake wants clients to authenticate at `/token` and `/revoke`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum FakeClientAuth {
    /// A public client: `client_id` in the body, no secret anywhere.
    #[default]
    None,
    /// HTTP Basic with this secret, and no secret in the body.
    Basic(String),
    /// `client_secret` with this value in the body, and no Authorization header.
    Post(String),
}

/// A code the consent step issued.
#[derive(Debug)]
struct IssuedCode {
    challenge: String,
    redirect_uri: String,
    client_id: String,
    /// `offline_access` was asked for with `prompt=consent`: a refresh token is due.
    offline: bool,
    used: bool,
}

/// A device authorization (RFC 8628) the fake handed out.
#[derive(Debug)]
struct DeviceGrant {
    user_code: String,
    client_id: String,
    offline: bool,
    approved: bool,
    denied: bool,
    used: bool,
    interval_s: u64,
    expires_at: Instant,
    last_poll: Option<Instant>,
}

#[derive(Debug, Default)]
pub struct OAuthState {
    codes: HashMap<String, IssuedCode>,
    devices: HashMap<String, DeviceGrant>,
    /// Client authentication the fake requires.
    pub client_auth: FakeClientAuth,
    /// Token requests must be JSON (and forms are refused); otherwise forms only.
    pub json_body: bool,
    /// Answer code and refresh grants without `expires_in`.
    pub omit_expires_in: bool,
    /// Added as `iss` to the consent redirect (RFC 9207), when set.
    pub issuer: Option<String>,
    /// The device grant's polling interval, in seconds.
    pub device_interval_s: u64,
    /// Answer the device grant's next polls with `slow_down`, however paced.
    pub forced_slow_downs: u32,
    /// Device polls that came sooner than the interval (each answered `slow_down`).
    pub device_polls_too_fast: u64,
    /// Device polls answered, by answer.
    pub device_pending: u64,
    pub device_slow_downs: u64,
    /// The query of the latest authorization request, for tests to look at.
    pub last_authorization: Option<HashMap<String, String>>,
    /// Token and revocation requests whose client authentication was as configured.
    pub client_auth_ok: u64,
    /// Token and revocation requests refused for their client authentication.
    pub client_auth_refused: u64,
    /// Token requests refused for their body format.
    pub wrong_format: u64,
    /// The `resource` of each code grant, for tests of RFC 8707.
    pub token_resources: Vec<Option<String>>,
    /// Pad every token answer with a field of this many bytes (the size cap's test).
    pub pad_answer_bytes: usize,
    /// The one refresh token that is currently valid (rotation invalidates the old).
    valid_refresh: HashSet<String>,
    /// Family (the code grant that began it) of every refresh token issued.
    family_of: HashMap<String, usize>,
    /// Families revoked after a reuse: none of their tokens is accepted again.
    revoked_families: HashSet<usize>,
    /// Every refresh token presented, in order.
    pub presented: Vec<String>,
    /// How many times each refresh token was presented.
    presented_count: HashMap<String, u32>,
    issued: usize,
    pub code_redemptions: usize,
    pub refresh_redemptions: usize,
    /// Code exchanges answered with tokens.
    pub code_grants: u64,
    /// Refresh requests answered with tokens.
    pub refresh_grants: u64,
    /// Token requests answered with an error.
    pub refused: u64,
    pub pkce_failures: usize,
    pub revoked: Vec<String>,
    pub forced: VecDeque<ForcedAnswer>,
    /// Seconds until issued access tokens expire (code grants: unless a due window is open).
    pub expires_in: u64,
    /// Delay of every token answer (to observe single flight).
    pub delay_ms: u64,
    due_window: Option<DueWindow>,
    /// Earliest and latest due time handed out under the due window, in Unix ms.
    pub due_range: Option<(i64, i64)>,
    /// When the first and the latest refresh grant were answered.
    pub first_refresh: Option<Instant>,
    pub last_refresh: Option<Instant>,
    /// Delay of every token answer after the request was processed (a refresh token
    /// is rotated before it), so a client that dies meanwhile loses the new tokens.
    pub answer_delay_ms: u64,
    /// A longer answer delay for the refreshes of some families (by family id).
    pub slow_families: HashMap<usize, u64>,
    /// Token requests received and not yet answered (or dropped with their client).
    pub in_flight: usize,
    /// The families of the refresh requests in flight, one entry per request.
    pub in_flight_families: Vec<usize>,
    /// The family of the latest code grant: which family a sign-in just began.
    pub last_code_family: Option<usize>,
    /// Every refresh request, in the order received.
    pub refresh_log: Vec<PresentedRefresh>,
}

/// One refresh request as the fake saw it.
#[derive(Debug, Clone)]
pub struct PresentedRefresh {
    /// The family of the token presented (None: a token the fake never issued).
    pub family: Option<usize>,
    /// When it was received, in Unix ms.
    pub at_unix_ms: i64,
    /// Answered with new tokens (false: refused).
    pub granted: bool,
}

/// Counts a token request in flight until it is answered or dropped.
struct InFlight<'a> {
    state: &'a Mutex<OAuthState>,
    family: Option<usize>,
}

impl InFlight<'_> {
    fn family(&mut self, family: usize) {
        self.family = Some(family);
        lock(self.state).in_flight_families.push(family);
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut s = lock(self.state);
        s.in_flight = s.in_flight.saturating_sub(1);
        if let Some(family) = self.family
            && let Some(i) = s.in_flight_families.iter().position(|f| *f == family)
        {
            s.in_flight_families.swap_remove(i);
        }
    }
}

/// A fake OAuth 2.0 provider: `/token` (authorization_code with a real PKCE check,
/// refresh_token with rotation), `/revoke`, and `/v1/models` for token validation.
/// `authorize` plays the browser's consent step.
#[derive(Debug)]
pub struct FakeOAuth {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<OAuthState>>,
    served: Served,
}

impl FakeOAuth {
    pub async fn start(expires_in: u64) -> Self {
        Self::try_start(expires_in).expect("the fake OAuth server starts")
    }

    pub fn try_start(expires_in: u64) -> std::io::Result<Self> {
        let state = Arc::new(Mutex::new(OAuthState {
            expires_in,
            device_interval_s: 1,
            ..OAuthState::default()
        }));
        let token_state = Arc::clone(&state);
        let revoke_state = Arc::clone(&state);
        let device_state = Arc::clone(&state);
        let app = Router::new()
            .route(
                "/token",
                post(move |headers: HeaderMap, body: axum::body::Bytes| {
                    let state = Arc::clone(&token_state);
                    async move {
                        match read_request(&state, &headers, &body, true) {
                            Ok(form) => token(&state, form).await,
                            Err(refused) => *refused,
                        }
                    }
                }),
            )
            .route(
                "/revoke",
                post(move |headers: HeaderMap, body: axum::body::Bytes| {
                    let state = Arc::clone(&revoke_state);
                    async move {
                        // RFC 7009: always a form, with the client's authentication.
                        match read_request(&state, &headers, &body, false) {
                            Ok(form) => {
                                let token = form.get("token").cloned().unwrap_or_default();
                                lock(&state).revoked.push(token);
                                StatusCode::OK.into_response()
                            }
                            Err(refused) => *refused,
                        }
                    }
                }),
            )
            .route(
                "/device_authorization",
                post(move |headers: HeaderMap, body: axum::body::Bytes| {
                    let state = Arc::clone(&device_state);
                    async move {
                        match read_request(&state, &headers, &body, false) {
                            Ok(form) => device_authorization(&state, &form),
                            Err(refused) => *refused,
                        }
                    }
                }),
            )
            .route(
                "/v1/models",
                get(|headers: HeaderMap| async move {
                    let ok = headers
                        .get(header::AUTHORIZATION)
                        .and_then(|v| v.to_str().ok())
                        .is_some_and(|v| v.starts_with("Bearer ACCESS-TOKEN-"));
                    if ok {
                        StatusCode::OK
                    } else {
                        StatusCode::UNAUTHORIZED
                    }
                }),
            );
        let served = Served::start("fake-oauth", app)?;
        Ok(Self {
            addr: served.addr(),
            state,
            served,
        })
    }

    pub fn url(&self) -> String {
        self.served.url()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.served.connections()
    }

    /// The user consents: checks the authorization URL and returns a code for it, and
    /// the redirect the browser would follow.
    pub fn authorize(&self, authorization_url: &str) -> (String, String) {
        consent(&self.state, authorization_url).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Changes the fake's configuration (client authentication, body format, ...).
    pub fn configure(&self, f: impl FnOnce(&mut OAuthState)) {
        f(&mut lock(&self.state));
    }

    /// The operator enters the user code and approves (or refuses) the device sign-in.
    /// False when no device grant has that user code.
    pub fn answer_device(&self, user_code: &str, approve: bool) -> bool {
        let mut s = lock(&self.state);
        let Some(grant) = s.devices.values_mut().find(|g| g.user_code == user_code) else {
            return false;
        };
        if approve {
            grant.approved = true;
        } else {
            grant.denied = true;
        }
        true
    }

    pub fn force(&self, answer: ForcedAnswer) {
        lock(&self.state).forced.push_back(answer);
    }

    pub fn snapshot<T>(&self, f: impl FnOnce(&OAuthState) -> T) -> T {
        f(&lock(&self.state))
    }

    /// The refresh tokens presented more than once (each once), in no order.
    pub fn reused_refresh_tokens(&self) -> Vec<String> {
        lock(&self.state).reused()
    }

    /// Whether any refresh token was presented twice.
    pub fn any_refresh_token_reused(&self) -> bool {
        !self.reused_refresh_tokens().is_empty()
    }

    /// Token requests received and not yet answered.
    pub fn in_flight(&self) -> usize {
        lock(&self.state).in_flight
    }

    /// From now on, code grants get expiries that make the profile's refresh fall due
    /// in the second from `from_unix_ms` (at the earliest `lead_s` from the grant),
    /// where `lead_s` is the daemon's `oauth.refresh_lead_s`.
    pub fn open_due_window(&self, from_unix_ms: i64, lead_s: u64) {
        lock(&self.state).due_window = Some(DueWindow {
            from_unix_ms,
            lead_s,
        });
    }

    /// Graceful stop; an error if the server failed.
    pub fn stop(self) -> Result<(), String> {
        self.served.stop()
    }
}

/// The consent step of [`FakeOAuth::authorize`] on the server's state, for callers that
/// hold only the state (the bench, from many tasks) and want an error, not a panic.
pub fn consent(
    state: &Mutex<OAuthState>,
    authorization_url: &str,
) -> Result<(String, String), String> {
    let url = url::Url::parse(authorization_url).map_err(|e| format!("authorization URL: {e}"))?;
    let q: HashMap<String, String> = url.query_pairs().into_owned().collect();
    let param = |name: &str| {
        q.get(name)
            .cloned()
            .ok_or_else(|| format!("the authorization URL has no {name}"))
    };
    if url.path() != "/authorize" {
        return Err(format!("authorization path {}", url.path()));
    }
    if param("response_type")? != "code" {
        return Err("response_type is not code".into());
    }
    if param("code_challenge_method")? != "S256" {
        return Err("code_challenge_method is not S256".into());
    }
    let oauth_state = param("state")?;
    if oauth_state.len() < 22 {
        return Err("the state has fewer than 128 bits".into());
    }
    let challenge = param("code_challenge")?;
    if challenge.len() != 43 {
        return Err("the code_challenge is not a base64url SHA-256".into());
    }
    let redirect_uri = param("redirect_uri")?;
    let mut redirect = url::Url::parse(&redirect_uri).map_err(|e| format!("redirect_uri: {e}"))?;
    let offline = offline_granted(&q);
    let mut state = lock(state);
    state.issued += 1;
    let code = format!("AUTH-CODE-{}", state.issued);
    state.codes.insert(
        code.clone(),
        IssuedCode {
            challenge,
            redirect_uri,
            client_id: param("client_id")?,
            offline,
            used: false,
        },
    );
    {
        let mut pairs = redirect.query_pairs_mut();
        pairs
            .append_pair("code", &code)
            .append_pair("state", &oauth_state);
        if let Some(issuer) = &state.issuer {
            pairs.append_pair("iss", issuer);
        }
    }
    state.last_authorization = Some(q);
    Ok((code, redirect.into()))
}

/// OpenID Connect Core 11: `offline_access` is ignored unless the request carries
/// `prompt=consent`.
fn offline_granted(q: &HashMap<String, String>) -> bool {
    let scopes = q.get("scope").map(String::as_str).unwrap_or_default();
    let consent = q
        .get("prompt")
        .is_some_and(|p| p.split(' ').any(|v| v == "consent"));
    scopes.split(' ').any(|s| s == "offline_access") && consent
}

/// The body of a request as the fake's configuration wants it (form or, for the
/// token endpoint in JSON mode, JSON), with the client authenticated as configured.
/// An error is the answer to send.
fn read_request(
    state: &Mutex<OAuthState>,
    headers: &HeaderMap,
    body: &[u8],
    token_endpoint: bool,
) -> Result<HashMap<String, String>, Box<axum::response::Response>> {
    let mut s = lock(state);
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let json = token_endpoint && s.json_body;
    let refuse = |s: &mut OAuthState, status: u16, code: &str| {
        s.refused += 1;
        (
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            axum::Json(serde_json::json!({ "error": code })),
        )
            .into_response()
    };
    let form: HashMap<String, String> = if json {
        let parsed = content_type
            .starts_with("application/json")
            .then(|| serde_json::from_slice::<HashMap<String, String>>(body).ok())
            .flatten();
        let Some(form) = parsed else {
            s.wrong_format += 1;
            return Err(Box::new(refuse(&mut s, 400, "invalid_request")));
        };
        form
    } else {
        if !content_type.starts_with("application/x-www-form-urlencoded") {
            s.wrong_format += 1;
            return Err(Box::new(refuse(&mut s, 400, "invalid_request")));
        }
        url::form_urlencoded::parse(body).into_owned().collect()
    };
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.decode(b).ok()
        })
        .and_then(|b| String::from_utf8(b).ok());
    let decode = |v: &str| {
        url::form_urlencoded::parse(format!("v={v}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    let basic = basic.and_then(|b| {
        let (id, secret) = b.split_once(':')?;
        Some((decode(id), decode(secret)))
    });
    let body_secret = form.get("client_secret");
    let body_id = form.get("client_id");
    let ok = match &s.client_auth {
        FakeClientAuth::None => basic.is_none() && body_secret.is_none() && body_id.is_some(),
        FakeClientAuth::Basic(secret) => {
            body_secret.is_none()
                && basic
                    .as_ref()
                    .is_some_and(|(id, given)| given == secret && body_id.is_none_or(|b| b == id))
        }
        FakeClientAuth::Post(secret) => {
            basic.is_none() && body_id.is_some() && body_secret == Some(secret)
        }
    };
    if !ok {
        s.client_auth_refused += 1;
        return Err(Box::new(refuse(&mut s, 401, "invalid_client")));
    }
    s.client_auth_ok += 1;
    let mut form = form;
    if let Some((id, _)) = basic {
        form.entry("client_id".into()).or_insert(id);
    }
    form.remove("client_secret");
    Ok(form)
}

/// RFC 8628 section 3.2: a device code and a user code.
fn device_authorization(
    state: &Mutex<OAuthState>,
    form: &HashMap<String, String>,
) -> axum::response::Response {
    let mut s = lock(state);
    s.issued += 1;
    let n = s.issued;
    let device_code = format!("DEVICE-CODE-{n}");
    let user_code = format!("WDJB-{n:04}");
    let scopes = form.get("scope").cloned().unwrap_or_default();
    let interval_s = s.device_interval_s;
    // A device grant has no prompt: offline_access is granted as asked.
    let offline = scopes.split(' ').any(|v| v == "offline_access");
    s.devices.insert(
        device_code.clone(),
        DeviceGrant {
            user_code: user_code.clone(),
            client_id: form.get("client_id").cloned().unwrap_or_default(),
            offline,
            approved: false,
            denied: false,
            used: false,
            interval_s,
            expires_at: Instant::now() + std::time::Duration::from_secs(600),
            last_poll: None,
        },
    );
    axum::Json(serde_json::json!({
        "device_code": device_code,
        "user_code": user_code,
        "verification_uri": "https://fake-oauth.example/device",
        "verification_uri_complete": format!("https://fake-oauth.example/device?user_code={user_code}"),
        "expires_in": 600,
        "interval": interval_s,
    }))
    .into_response()
}

impl OAuthState {
    /// The refresh tokens presented more than once.
    pub fn reused(&self) -> Vec<String> {
        self.presented_count
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(t, _)| t.clone())
            .collect()
    }

    /// The family of a refresh token the fake issued.
    pub fn family_of(&self, token: &str) -> Option<usize> {
        self.family_of.get(token).copied()
    }
}

fn lock(state: &Mutex<OAuthState>) -> std::sync::MutexGuard<'_, OAuthState> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn token(
    state: &Mutex<OAuthState>,
    form: HashMap<String, String>,
) -> axum::response::Response {
    // Counted in flight from here until the answer leaves or the client goes away
    // (hyper drops this future when the connection closes).
    let mut in_flight = InFlight {
        state,
        family: None,
    };
    let delay = {
        let mut s = lock(state);
        s.in_flight += 1;
        s.delay_ms
    };
    if delay > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
    }
    let (response, family) = answer(state, &form);
    let mut answer_delay = lock(state).answer_delay_ms;
    if let Some(family) = family {
        in_flight.family(family);
        answer_delay += lock(state).slow_families.get(&family).copied().unwrap_or(0);
    }
    if answer_delay > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(answer_delay)).await;
    }
    drop(in_flight);
    response
}

/// Processes one token request at once (codes redeemed, refresh tokens rotated) and
/// returns the answer and, for a refresh, the family of the token presented.
fn answer(
    state: &Mutex<OAuthState>,
    form: &HashMap<String, String>,
) -> (axum::response::Response, Option<usize>) {
    let family = form
        .get("refresh_token")
        .filter(|_| form.get("grant_type").map(String::as_str) == Some("refresh_token"))
        .and_then(|t| lock(state).family_of(t));
    let response = process(state, form);
    (response, family)
}

fn process(state: &Mutex<OAuthState>, form: &HashMap<String, String>) -> axum::response::Response {
    use base64::Engine;
    use sha2::Digest;
    let mut s = lock(state);
    let error = |s: &mut OAuthState, status: u16, code: &str| {
        s.refused += 1;
        (
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            axum::Json(serde_json::json!({ "error": code })),
        )
            .into_response()
    };
    let grant = form.get("grant_type").map(String::as_str);
    if grant == Some("refresh_token") {
        s.refresh_redemptions += 1;
        match s.forced.pop_front() {
            Some(ForcedAnswer::Status(status, code)) => return error(&mut s, status, code),
            Some(ForcedAnswer::RetryAfter(status, code, retry_after)) => {
                let mut response = error(&mut s, status, code);
                if let Ok(value) = axum::http::HeaderValue::from_str(&retry_after) {
                    response.headers_mut().insert(header::RETRY_AFTER, value);
                }
                return response;
            }
            None => {}
        }
    }
    match grant {
        Some("authorization_code") => {
            s.code_redemptions += 1;
            let code = form.get("code").cloned().unwrap_or_default();
            let verifier = form.get("code_verifier").cloned().unwrap_or_default();
            let Some(issued) = s.codes.get_mut(&code) else {
                return error(&mut s, 400, "invalid_grant");
            };
            if issued.used {
                return error(&mut s, 400, "invalid_grant");
            }
            issued.used = true;
            let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(sha2::Sha256::digest(verifier.as_bytes()));
            let (challenge, redirect_uri, client_id, offline) = (
                issued.challenge.clone(),
                issued.redirect_uri.clone(),
                issued.client_id.clone(),
                issued.offline,
            );
            if computed != challenge || !(43..=128).contains(&verifier.len()) {
                s.pkce_failures += 1;
                return error(&mut s, 400, "invalid_grant");
            }
            if form.get("redirect_uri") != Some(&redirect_uri)
                || form.get("client_id") != Some(&client_id)
            {
                return error(&mut s, 400, "invalid_request");
            }
            s.code_grants += 1;
            s.token_resources.push(form.get("resource").cloned());
            let expires_in = code_expiry(&mut s);
            let family = s.issued + 1;
            s.last_code_family = Some(family);
            issue(&mut s, expires_in, family, offline)
        }
        Some(DEVICE_CODE_GRANT) => {
            let device_code = form.get("device_code").cloned().unwrap_or_default();
            let now = Instant::now();
            let forced = s.forced_slow_downs > 0;
            let Some(grant) = s.devices.get_mut(&device_code) else {
                return error(&mut s, 400, "invalid_grant");
            };
            if grant.used || form.get("client_id") != Some(&grant.client_id) {
                return error(&mut s, 400, "invalid_grant");
            }
            if now >= grant.expires_at {
                return error(&mut s, 400, "expired_token");
            }
            // RFC 8628 3.5: polling sooner than the interval earns slow_down, and the
            // interval grows by 5 s for every later poll.
            let too_fast = grant.last_poll.is_some_and(|last| {
                now.duration_since(last) + std::time::Duration::from_millis(250)
                    < std::time::Duration::from_secs(grant.interval_s)
            });
            grant.last_poll = Some(now);
            if too_fast || forced {
                grant.interval_s += 5;
                if too_fast {
                    s.device_polls_too_fast += 1;
                } else {
                    s.forced_slow_downs -= 1;
                }
                s.device_slow_downs += 1;
                return error(&mut s, 400, "slow_down");
            }
            if grant.denied {
                grant.used = true;
                return error(&mut s, 400, "access_denied");
            }
            if !grant.approved {
                s.device_pending += 1;
                return error(&mut s, 400, "authorization_pending");
            }
            grant.used = true;
            let offline = grant.offline;
            s.code_grants += 1;
            let expires_in = s.expires_in;
            let family = s.issued + 1;
            s.last_code_family = Some(family);
            issue(&mut s, expires_in, family, offline)
        }
        Some("refresh_token") => {
            let presented = form.get("refresh_token").cloned().unwrap_or_default();
            s.presented.push(presented.clone());
            *s.presented_count.entry(presented.clone()).or_default() += 1;
            let family = s.family_of.get(&presented).copied();
            s.refresh_log.push(PresentedRefresh {
                family,
                at_unix_ms: unix_ms(),
                granted: false,
            });
            if family.is_some_and(|f| s.revoked_families.contains(&f)) {
                return error(&mut s, 400, "invalid_grant");
            }
            if !s.valid_refresh.remove(&presented) {
                // A token of a known family presented again: reuse, so the whole family
                // goes (the thief and the victim both sign in again).
                if let Some(family) = family {
                    s.revoked_families.insert(family);
                    let family_tokens: Vec<String> = s
                        .family_of
                        .iter()
                        .filter(|(_, f)| **f == family)
                        .map(|(t, _)| t.clone())
                        .collect();
                    for token in family_tokens {
                        s.valid_refresh.remove(&token);
                    }
                }
                return error(&mut s, 400, "invalid_grant");
            }
            s.refresh_grants += 1;
            if let Some(entry) = s.refresh_log.last_mut() {
                entry.granted = true;
            }
            let now = Instant::now();
            s.first_refresh.get_or_insert(now);
            s.last_refresh = Some(now);
            let expires_in = s.expires_in;
            let family = family.unwrap_or(0);
            issue(&mut s, expires_in, family, true)
        }
        _ => error(&mut s, 400, "unsupported_grant_type"),
    }
}

/// `expires_in` of a code grant: the fixed one, or under a due window whole seconds
/// until the window opens (at least the lead, so that expiry minus the lead is also
/// past halfway to expiry, which the refresher would otherwise pick) plus the lead,
/// so the due time lands in [window, window + 1 s) whenever the window is far enough
/// ahead.
fn code_expiry(s: &mut OAuthState) -> u64 {
    let Some(window) = s.due_window else {
        return s.expires_in;
    };
    let now = unix_ms();
    let ahead = window.from_unix_ms - now;
    let wait_s = u64::try_from((ahead + 999).div_euclid(1000))
        .unwrap_or(0)
        .max(window.lead_s.max(1));
    let due = now + i64::try_from(wait_s * 1000).unwrap_or(i64::MAX / 2);
    let (min, max) = s.due_range.unwrap_or((due, due));
    s.due_range = Some((min.min(due), max.max(due)));
    wait_s + window.lead_s
}

/// Tokens: an access token, a refresh token when `offline` (rotation: a refresh
/// always gets a new one), and `expires_in` unless the fake omits it.
fn issue(
    s: &mut OAuthState,
    expires_in: u64,
    family: usize,
    offline: bool,
) -> axum::response::Response {
    s.issued += 1;
    let n = s.issued;
    let mut body = serde_json::json!({
        "access_token": format!("ACCESS-TOKEN-{n}"),
        "token_type": "Bearer",
    });
    if offline {
        let refresh = format!("REFRESH-TOKEN-{n}");
        s.valid_refresh.insert(refresh.clone());
        s.family_of.insert(refresh.clone(), family);
        body["refresh_token"] = refresh.into();
    }
    if !s.omit_expires_in {
        body["expires_in"] = expires_in.into();
    }
    if s.pad_answer_bytes > 0 {
        body["padding"] = "x".repeat(s.pad_answer_bytes).into();
    }
    axum::Json(body).into_response()
}

/// The grant type of RFC 8628.
const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// Wall-clock time in Unix milliseconds, the clock the daemon stamps expiries with.
fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
