//! Fake external services the tests start on loopback. They check what they receive.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

/// A model provider's `GET /v1/models`. The key decides the answer:
/// `good-*` 200, `limited-*` 429 with Retry-After 7, `broken-*` 500, anything else 401.
pub struct FakeProvider {
    pub addr: SocketAddr,
    /// Calls of `/v1/models`.
    pub calls: Arc<AtomicUsize>,
    /// Every bearer token received, to prove what the daemon sent.
    pub keys_seen: Arc<Mutex<Vec<String>>>,
}

impl FakeProvider {
    pub async fn start() -> Self {
        let calls = Arc::new(AtomicUsize::new(0));
        let keys_seen = Arc::new(Mutex::new(Vec::new()));
        let (c, k) = (Arc::clone(&calls), Arc::clone(&keys_seen));
        let app = Router::new().route(
            "/v1/models",
            get(move |headers: HeaderMap| {
                let (c, k) = (Arc::clone(&c), Arc::clone(&k));
                async move {
                    c.fetch_add(1, Ordering::SeqCst);
                    let key = headers
                        .get(header::AUTHORIZATION)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.strip_prefix("Bearer "))
                        .unwrap_or("")
                        .to_owned();
                    k.lock().unwrap().push(key.clone());
                    if key.starts_with("good-") {
                        (StatusCode::OK, r#"{"object":"list","data":[]}"#).into_response()
                    } else if key.starts_with("limited-") {
                        let mut r = (StatusCode::TOO_MANY_REQUESTS, "slow down").into_response();
                        r.headers_mut()
                            .insert(header::RETRY_AFTER, HeaderValue::from_static("7"));
                        r
                    } else if key.starts_with("broken-") {
                        (StatusCode::INTERNAL_SERVER_ERROR, "oops").into_response()
                    } else {
                        (StatusCode::UNAUTHORIZED, r#"{"error":"invalid_api_key"}"#).into_response()
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            addr,
            calls,
            keys_seen,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

/// What the fake OAuth server's token endpoint should answer next, before normal
/// behaviour resumes.
#[derive(Debug, Clone)]
pub enum ForcedAnswer {
    /// HTTP status with an OAuth error body.
    Status(u16, &'static str),
}

#[derive(Default)]
pub struct OAuthState {
    /// code -> (challenge, redirect_uri, client_id, used)
    codes: std::collections::HashMap<String, (String, String, String, bool)>,
    /// The one refresh token that is currently valid (rotation invalidates the old).
    valid_refresh: std::collections::HashSet<String>,
    issued: usize,
    pub code_redemptions: usize,
    pub refresh_redemptions: usize,
    pub pkce_failures: usize,
    pub revoked: Vec<String>,
    pub forced: std::collections::VecDeque<ForcedAnswer>,
    /// Seconds until issued access tokens expire.
    pub expires_in: u64,
    /// Delay of every token answer (to observe single flight).
    pub delay_ms: u64,
}

/// A fake OAuth 2.0 provider: `/token` (authorization_code with a real PKCE check,
/// refresh_token with rotation), `/revoke`, and `/v1/models` for token validation.
/// `authorize` plays the browser's consent step.
pub struct FakeOAuth {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<OAuthState>>,
}

impl FakeOAuth {
    pub async fn start(expires_in: u64) -> Self {
        use axum::Form;
        use axum::routing::post;
        use std::collections::HashMap;
        let state = Arc::new(Mutex::new(OAuthState {
            expires_in,
            ..OAuthState::default()
        }));
        let token_state = Arc::clone(&state);
        let revoke_state = Arc::clone(&state);
        let app = Router::new()
            .route(
                "/token",
                post(move |Form(form): Form<HashMap<String, String>>| {
                    let state = Arc::clone(&token_state);
                    async move { token(&state, form).await }
                }),
            )
            .route(
                "/revoke",
                post(move |Form(form): Form<HashMap<String, String>>| {
                    let state = Arc::clone(&revoke_state);
                    async move {
                        let token = form.get("token").cloned().unwrap_or_default();
                        state.lock().unwrap().revoked.push(token);
                        StatusCode::OK
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
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The user consents: checks the authorization URL and returns a code for it, and
    /// the redirect the browser would follow.
    pub fn authorize(&self, authorization_url: &str) -> (String, String) {
        let url = url::Url::parse(authorization_url).unwrap();
        assert_eq!(url.path(), "/authorize");
        let q: std::collections::HashMap<String, String> = url.query_pairs().into_owned().collect();
        assert_eq!(q["response_type"], "code");
        assert_eq!(q["code_challenge_method"], "S256");
        assert!(q["state"].len() >= 22, "state of at least 128 bits");
        let mut state = self.state.lock().unwrap();
        state.issued += 1;
        let code = format!("AUTH-CODE-{}", state.issued);
        state.codes.insert(
            code.clone(),
            (
                q["code_challenge"].clone(),
                q["redirect_uri"].clone(),
                q["client_id"].clone(),
                false,
            ),
        );
        let mut redirect = url::Url::parse(&q["redirect_uri"]).unwrap();
        redirect
            .query_pairs_mut()
            .append_pair("code", &code)
            .append_pair("state", &q["state"]);
        (code, redirect.into())
    }

    pub fn force(&self, answer: ForcedAnswer) {
        self.state.lock().unwrap().forced.push_back(answer);
    }

    pub fn snapshot<T>(&self, f: impl FnOnce(&OAuthState) -> T) -> T {
        f(&self.state.lock().unwrap())
    }
}

async fn token(
    state: &Arc<Mutex<OAuthState>>,
    form: std::collections::HashMap<String, String>,
) -> axum::response::Response {
    use base64::Engine;
    use sha2::Digest;
    let delay = state.lock().unwrap().delay_ms;
    if delay > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
    }
    let error = |status: u16, code: &str| {
        (
            StatusCode::from_u16(status).unwrap(),
            axum::Json(serde_json::json!({ "error": code })),
        )
            .into_response()
    };
    let mut s = state.lock().unwrap();
    let grant = form.get("grant_type").map(String::as_str);
    if grant == Some("refresh_token") {
        s.refresh_redemptions += 1;
        if let Some(ForcedAnswer::Status(status, code)) = s.forced.pop_front() {
            return error(status, code);
        }
    }
    match grant {
        Some("authorization_code") => {
            s.code_redemptions += 1;
            let code = form.get("code").cloned().unwrap_or_default();
            let verifier = form.get("code_verifier").cloned().unwrap_or_default();
            let Some((challenge, redirect_uri, client_id, used)) = s.codes.get_mut(&code) else {
                return error(400, "invalid_grant");
            };
            if *used {
                return error(400, "invalid_grant");
            }
            *used = true;
            let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(sha2::Sha256::digest(verifier.as_bytes()));
            let (challenge, redirect_uri, client_id) =
                (challenge.clone(), redirect_uri.clone(), client_id.clone());
            if computed != challenge || verifier.len() < 43 {
                s.pkce_failures += 1;
                return error(400, "invalid_grant");
            }
            if form.get("redirect_uri") != Some(&redirect_uri)
                || form.get("client_id") != Some(&client_id)
            {
                return error(400, "invalid_request");
            }
            issue(&mut s)
        }
        Some("refresh_token") => {
            let presented = form.get("refresh_token").cloned().unwrap_or_default();
            if !s.valid_refresh.remove(&presented) {
                return error(400, "invalid_grant");
            }
            issue(&mut s)
        }
        _ => error(400, "unsupported_grant_type"),
    }
}

fn issue(s: &mut OAuthState) -> axum::response::Response {
    s.issued += 1;
    let n = s.issued;
    let refresh = format!("REFRESH-TOKEN-{n}");
    s.valid_refresh.insert(refresh.clone());
    axum::Json(serde_json::json!({
        "access_token": format!("ACCESS-TOKEN-{n}"),
        "refresh_token": refresh,
        "token_type": "Bearer",
        "expires_in": s.expires_in,
    }))
    .into_response()
}

/// A model provider's OpenAI-compatible `POST /v1/chat/completions`: answers keys
/// starting with `good-` with a message and `usage.total_tokens`, anything else 401.
/// Counts calls and the most calls in flight at once.
pub struct FakeModel {
    pub addr: SocketAddr,
    pub calls: Arc<AtomicUsize>,
    pub max_in_flight: Arc<AtomicUsize>,
    /// Tokens each answer reports (a test may change it).
    #[allow(dead_code)]
    pub tokens: Arc<AtomicUsize>,
    /// Delay of each answer, in milliseconds.
    pub delay_ms: Arc<AtomicUsize>,
    pub models_seen: Arc<Mutex<Vec<String>>>,
}

impl FakeModel {
    pub async fn start(tokens: usize) -> Self {
        use axum::routing::post;
        let calls = Arc::new(AtomicUsize::new(0));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let max_in_flight = Arc::new(AtomicUsize::new(0));
        let token_count = Arc::new(AtomicUsize::new(tokens));
        let delay_ms = Arc::new(AtomicUsize::new(0));
        let models_seen = Arc::new(Mutex::new(Vec::new()));
        let (c, f, m, t, d, ms) = (
            Arc::clone(&calls),
            Arc::clone(&in_flight),
            Arc::clone(&max_in_flight),
            Arc::clone(&token_count),
            Arc::clone(&delay_ms),
            Arc::clone(&models_seen),
        );
        let app = Router::new().route(
            "/v1/chat/completions",
            post(move |headers: HeaderMap, axum::Json(body): axum::Json<serde_json::Value>| {
                let (c, f, m, t, d, ms) = (
                    Arc::clone(&c),
                    Arc::clone(&f),
                    Arc::clone(&m),
                    Arc::clone(&t),
                    Arc::clone(&d),
                    Arc::clone(&ms),
                );
                async move {
                    let ok = headers
                        .get(header::AUTHORIZATION)
                        .and_then(|v| v.to_str().ok())
                        .is_some_and(|v| v.starts_with("Bearer good-"));
                    if !ok {
                        return (StatusCode::UNAUTHORIZED, "{}").into_response();
                    }
                    let n = c.fetch_add(1, Ordering::SeqCst) + 1;
                    let now = f.fetch_add(1, Ordering::SeqCst) + 1;
                    m.fetch_max(now, Ordering::SeqCst);
                    ms.lock().unwrap().push(body["model"].as_str().unwrap_or("").to_owned());
                    let delay = d.load(Ordering::SeqCst) as u64;
                    if delay > 0 {
                        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
                    }
                    f.fetch_sub(1, Ordering::SeqCst);
                    let prompt = body["messages"][0]["content"].as_str().unwrap_or("").to_owned();
                    axum::Json(serde_json::json!({
                        "choices": [{ "message": { "role": "assistant", "content": format!("answer {n} to {prompt}") } }],
                        "usage": { "total_tokens": t.load(Ordering::SeqCst) }
                    }))
                    .into_response()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            addr,
            calls,
            max_in_flight,
            tokens: token_count,
            delay_ms,
            models_seen,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}
