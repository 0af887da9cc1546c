//! The web console: its page and assets over HTTP, and the whole console end to end in
//! headless Chromium (Debian's `chromium` and `chromium-driver`, driven through
//! WebDriver). The browser tests fail, never skip, when Chromium is missing.
//! Screenshots of the main pages go to `<target>/console-screenshots/`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use palyra_http::console::{ASSETS, CONSOLE_CSP};
use reqwest::header::{
    ACCEPT, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_NONE_MATCH,
    X_CONTENT_TYPE_OPTIONS,
};
use serde_json::{Value, json};

use palyra::settings::{ProviderConfig, Validation};

use crate::fakes::{FakeModel, FakeOAuth, FakeProvider};
use crate::helpers::{TestApp, error_code, session_cookie, spawn_app, spawn_app_with};

const BROWSER_ACCEPT: &str =
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8";

#[tokio::test]
async fn the_page_and_its_assets_are_served_with_a_strict_policy() {
    let app = spawn_app().await;
    // Public: the page holds no data, so no cookie is needed.
    let page = app.http.get(app.url("/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let headers = page.headers().clone();
    assert_eq!(headers[CONTENT_TYPE], "text/html; charset=utf-8");
    assert_eq!(headers[CONTENT_SECURITY_POLICY], CONSOLE_CSP);
    assert_eq!(headers[X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert_eq!(headers[CACHE_CONTROL], "no-cache");
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"<script type="module" src="/assets/app.js"></script>"#));
    assert!(html.contains(r#"href="/assets/console.css""#));

    // A browser's revalidation is answered 304 without a body.
    let etag = headers[ETAG].to_str().unwrap().to_owned();
    let again = app
        .http
        .get(app.url("/"))
        .header(IF_NONE_MATCH, &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    assert_eq!(again.headers()[ETAG], etag.as_str());
    assert!(again.bytes().await.unwrap().is_empty());

    let mut etags = vec![etag];
    for asset in ASSETS {
        let response = app
            .http
            .get(app.url(&format!("/assets/{}", asset.name)))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{}", asset.name);
        let expected = if asset.name.ends_with(".js") {
            "text/javascript; charset=utf-8"
        } else {
            "text/css; charset=utf-8"
        };
        assert_eq!(response.headers()[CONTENT_TYPE], expected, "{}", asset.name);
        assert_eq!(response.headers()[X_CONTENT_TYPE_OPTIONS], "nosniff");
        etags.push(response.headers()[ETAG].to_str().unwrap().to_owned());
        assert_eq!(response.text().await.unwrap(), asset.body);
    }
    etags.sort();
    etags.dedup();
    assert_eq!(etags.len(), ASSETS.len() + 1, "every file has its own ETag");

    for missing in ["/assets/nope.js", "/assets/", "/assets/..%2fCargo.toml"] {
        let response = app.http.get(app.url(missing)).send().await.unwrap();
        assert_eq!(response.status(), 404, "{missing}");
        assert_eq!(error_code(response).await, "not_found");
    }
    // The console is not part of the API document.
    let doc = app.bearer_get_json("/console/v1/openapi.json").await;
    assert!(doc["paths"].get("/").is_none());
    assert!(doc["paths"].get("/assets/{name}").is_none());
}

/// The CSP forbids inline code; this keeps the sources from depending on it, and keeps
/// daemon data from ever being parsed as HTML.
#[test]
fn the_console_has_no_inline_code_and_builds_no_html_from_strings() {
    let index = palyra_http::console::INDEX.body;
    let scripts = index.matches("<script").count();
    assert_eq!(
        scripts,
        index
            .matches("<script type=\"module\" src=\"/assets/")
            .count(),
        "every script in the page is an external module"
    );
    for (name, body) in
        std::iter::once(("index.html", index)).chain(ASSETS.iter().map(|a| (a.name, a.body)))
    {
        for forbidden in [
            "style=",
            "<style",
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
            "javascript:",
            ".style.",
            " onclick=\"",
            " onload=\"",
            " onsubmit=\"",
        ] {
            assert!(!body.contains(forbidden), "{name} contains {forbidden:?}");
        }
    }
    // Every module the shell loads is served.
    for asset in ASSETS.iter().filter(|a| a.name.ends_with(".js")) {
        for import in asset.body.lines().filter_map(|l| {
            let from = l.split(" from './").nth(1)?;
            from.split('\'').next()
        }) {
            assert!(
                ASSETS.iter().any(|a| a.name == import),
                "{} imports {import}, which is not embedded",
                asset.name
            );
        }
    }
}

#[tokio::test]
async fn a_used_handoff_link_shows_a_browser_a_readable_page_and_scripts_json() {
    let app = spawn_app().await;
    let minted: Value = app.mint_handoff(json!({})).await.json().await.unwrap();
    let url = minted["handoff_url"].as_str().unwrap();
    let first = crate::helpers::redeem_link(&app.http, url).await;
    assert_eq!(first.status, 200);
    assert!(first.cookie.is_some());

    let (action, token) = url.split_once("?token=").unwrap();
    let second = app
        .http
        .post(action)
        .header(ACCEPT, BROWSER_ACCEPT)
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), 401);
    assert!(session_cookie(second.headers()).is_none());
    assert_eq!(second.headers()[CONTENT_TYPE], "text/html; charset=utf-8");
    assert_eq!(second.headers()[CONTENT_SECURITY_POLICY], CONSOLE_CSP);
    assert_eq!(second.headers()[CACHE_CONTROL], "no-store");
    let page = second.text().await.unwrap();
    assert!(page.contains("expired or was already used"), "{page}");
    assert!(page.contains(r#"href="/#/login""#));
    assert!(!page.contains("<script"));

    // Without asking for HTML (scripts, the CLI) the answer stays the JSON error.
    let json = app
        .http
        .post(action)
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(json.status(), 401);
    assert_eq!(error_code(json).await, "handoff_rejected");
    let missing = app
        .http
        .get(app.url("/console/v1/auth/browser-handoff/consume"))
        .header(ACCEPT, BROWSER_ACCEPT)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 401);
    assert_eq!(missing.headers()[CONTENT_TYPE], "text/html; charset=utf-8");
}

/// chromedriver and the Chromium it starts, in their own process group so that
/// nothing outlives the test, not even after a failed assertion.
pub(crate) struct Browser {
    client: Option<Client>,
    driver: std::process::Child,
    /// A fresh --user-data-dir, removed when the test ends.
    profile_dir: tempfile::TempDir,
    shots: PathBuf,
}

fn on_path(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(name))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            panic!(
                "{name} is not installed: the console tests need Debian's chromium and \
                 chromium-driver (bash scripts/test installs them)"
            )
        })
}

impl Browser {
    pub(crate) async fn start() -> Browser {
        use std::os::unix::process::CommandExt;
        let chromium = on_path("chromium");
        let chromedriver = on_path("chromedriver");
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let driver = std::process::Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .spawn()
            .expect("chromedriver starts");
        let profile = tempfile::tempdir().unwrap();
        let mut browser = Browser {
            client: None,
            driver,
            shots: screenshot_dir(),
            profile_dir: profile,
        };
        let args = vec![
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--window-size=1280,800".to_owned(),
            format!("--user-data-dir={}", browser.profile_dir.path().display()),
        ];
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert(
            "goog:chromeOptions".into(),
            json!({ "binary": chromium, "args": args }),
        );
        // chromedriver listens within moments; then one session request starts Chromium.
        let mut listening = false;
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                listening = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(listening, "chromedriver did not listen within 10 s");
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .unwrap_or_else(|e| panic!("chromedriver could not start Chromium: {e}"));
        browser.client = Some(client);
        browser
    }

    pub(crate) fn client(&self) -> &Client {
        self.client.as_ref().expect("session")
    }

    pub(crate) async fn goto(&self, url: &str) {
        self.client().goto(url).await.expect("navigation");
    }

    pub(crate) async fn find(&self, css: &str) -> fantoccini::elements::Element {
        match self
            .client()
            .wait()
            .at_most(Duration::from_secs(15))
            .for_element(Locator::Css(css))
            .await
        {
            Ok(element) => element,
            Err(e) => {
                self.screenshot("failure").await;
                panic!("no element {css}: {e}");
            }
        }
    }

    /// Waits until the element's text contains `needle`; returns the text.
    pub(crate) async fn wait_text(&self, css: &str, needle: &str) -> String {
        let mut last = String::new();
        for _ in 0..150 {
            if let Ok(element) = self.client().find(Locator::Css(css)).await
                && let Ok(text) = element.text().await
            {
                if text.contains(needle) {
                    return text;
                }
                last = text;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.screenshot("failure").await;
        panic!("{css} never showed {needle:?}; last text: {last:?}");
    }

    pub(crate) async fn fill(&self, css: &str, text: &str) {
        let input = self.find(css).await;
        input.clear().await.unwrap();
        input.send_keys(text).await.unwrap();
    }

    pub(crate) async fn click(&self, css: &str) {
        self.find(css).await.click().await.unwrap();
    }

    pub(crate) async fn choose(&self, css: &str, value: &str) {
        self.find(css).await.select_by_value(value).await.unwrap();
    }

    /// The whole DOM as the browser holds it now.
    pub(crate) async fn source(&self) -> String {
        self.client().source().await.unwrap()
    }

    pub(crate) async fn screenshot(&self, name: &str) {
        if let Ok(png) = self.client().screenshot().await {
            let _ = std::fs::write(self.shots.join(format!("{name}.png")), png);
        }
    }

    pub(crate) async fn stop(mut self) {
        if let Some(client) = self.client.take() {
            let _ = client.close().await;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // chromedriver's group holds Chromium and its helpers: end them all.
        let group = rustix::process::Pid::from_child(&self.driver);
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        let _ = self.driver.wait();
    }
}

fn screenshot_dir() -> PathBuf {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .join("console-screenshots");
    std::fs::create_dir_all(&target).unwrap();
    target
}

/// A daemon whose `openai` key checks go to a fake provider (and which has no OAuth
/// client id), whose `custom:model` provider answers chat completions, and whose
/// `custom:acme` signs in at a fake OAuth server; with a profile for `custom:model`
/// made by API.
async fn console_app(provider: &FakeProvider, model: &FakeModel, oauth: &FakeOAuth) -> TestApp {
    let (provider_url, model_url, oauth_url) = (provider.url(), model.url(), oauth.url());
    let app = spawn_app_with(move |s| {
        s.providers.openai.api_base_url = provider_url;
        let mut custom = s.providers.openai.clone();
        custom.api_base_url = model_url;
        custom.authorization_endpoint = None;
        custom.token_endpoint = None;
        s.providers.custom.insert("model".into(), custom);
        s.providers.custom.insert(
            "acme".into(),
            ProviderConfig {
                api_base_url: oauth_url.clone(),
                api_style: None,
                authorization_endpoint: Some(format!("{oauth_url}/authorize")),
                token_endpoint: Some(format!("{oauth_url}/token")),
                revocation_endpoint: Some(format!("{oauth_url}/revoke")),
                client_id: Some("palyra-console-test".into()),
                // offline_access (with the prompt=consent the daemon adds) is what gets
                // a refresh token from a provider as strict as the fake.
                scopes: vec!["openid".into(), "offline_access".into()],
                validation: Validation::Models,
                backoff_base_ms: 200,
                backoff_cap_ms: 1_000,
                ..ProviderConfig::default()
            },
        );
    })
    .await;
    let response = app
        .bearer_post(
            "/console/v1/auth/profiles",
            json!({ "profile_id": "model.key", "provider": "custom:model", "profile_name": "Model key",
                    "credential": { "type": "api_key", "api_key": "good-model-key-0000" },
                    "validate": false }),
        )
        .await;
    assert_eq!(response.status(), 200);
    app
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_end_to_end_in_chromium() {
    let provider = FakeProvider::start().await;
    let model = FakeModel::start(7).await;
    let oauth = FakeOAuth::start(3600).await;
    let app = console_app(&provider, &model, &oauth).await;
    let browser = Browser::start().await;
    let base = app.url("/");

    // Log in: a wrong token is refused with the API's message, the right one lands
    // on the overview.
    browser.goto(&base).await;
    browser.find("#login-form").await;
    browser.screenshot("login").await;
    browser.fill("#admin-token", "not-the-token").await;
    browser.click("#login-form button[type=submit]").await;
    browser
        .wait_text("#login-form .form-error", "wrong admin token")
        .await;
    browser
        .fill("#admin-token", crate::helpers::ADMIN_TOKEN)
        .await;
    browser.click("#login-form button[type=submit]").await;
    browser.wait_text("main h1", "Overview").await;
    browser.wait_text("#who", "root").await;
    browser.wait_text("#health", "1 profile").await;
    let posture = browser.wait_text("#posture", "loopback only").await;
    assert!(posture.contains("No posture warnings."), "{posture}");
    assert!(posture.contains(&app.addr.to_string()), "{posture}");
    browser.screenshot("overview").await;

    // Add an API key: a rejected key shows the provider's refusal; a good one is
    // listed with its hint and never with its secret.
    browser.click("nav a[href='#/profiles']").await;
    browser.find("#add-api-key").await;
    browser
        .fill("#add-api-key [name=profile_name]", "Work key")
        .await;
    browser
        .fill("#add-api-key [name=profile_id]", "openai.work")
        .await;
    browser
        .fill("#add-api-key [name=api_key]", "bad-console-key-99999999")
        .await;
    browser.click("#add-api-key button[type=submit]").await;
    browser
        .wait_text("#add-api-key .form-error", "rejected the API key")
        .await;
    let secret = "good-console-key-1234abcd";
    browser.fill("#add-api-key [name=api_key]", secret).await;
    browser.click("#add-api-key [name=set_default]").await;
    browser.click("#add-api-key button[type=submit]").await;
    browser
        .wait_text("#add-api-key .result", "The provider accepted the key")
        .await;
    let row = browser
        .wait_text("tr[data-profile-id='openai.work']", "…abcd")
        .await;
    assert!(!row.contains("Set default"), "{row}");
    browser
        .wait_text("tr[data-profile-id='openai.work'] .badge-info", "default")
        .await;
    assert!(row.contains("static"), "health badge: {row}");
    assert!(
        provider
            .keys_seen
            .lock()
            .unwrap()
            .iter()
            .any(|k| k == secret),
        "the key was checked against the fake provider"
    );
    assert!(!browser.source().await.contains(secret));
    let input_value = browser
        .find("#add-api-key [name=api_key]")
        .await
        .prop("value")
        .await
        .unwrap();
    assert_eq!(input_value.as_deref(), Some(""), "the key input is cleared");
    // OAuth without a client id: the API's reason is shown, not a blank.
    browser
        .fill("#oauth-sign-in [name=profile_name]", "Work OAuth")
        .await;
    browser.click("#oauth-sign-in button[type=submit]").await;
    browser
        .wait_text(
            "#oauth-sign-in [data-field-for=provider] .field-error",
            "openai is not configured for OAuth",
        )
        .await;
    browser
        .wait_text("#oauth-sign-in .form-error", "see Provider")
        .await;
    // OAuth with a configured provider: the popup goes to the provider, which sends
    // it to the daemon's callback; the console shows the outcome and lists the profile.
    let console_window = browser.client().window().await.unwrap();
    browser
        .fill("#oauth-sign-in [name=provider]", "custom:acme")
        .await;
    browser
        .fill("#oauth-sign-in [name=profile_id]", "acme.oauth")
        .await;
    browser.click("#oauth-sign-in button[type=submit]").await;
    browser
        .wait_text("#oauth-result", "Waiting for the sign-in")
        .await;
    let popup = browser
        .client()
        .windows()
        .await
        .unwrap()
        .into_iter()
        .find(|w| *w != console_window)
        .expect("the sign-in popup is open");
    browser.client().switch_to_window(popup).await.unwrap();
    let mut authorization_url = String::new();
    for _ in 0..100 {
        authorization_url = browser.client().current_url().await.unwrap().to_string();
        if authorization_url.contains("/authorize?") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_code, callback) = oauth.authorize(&authorization_url);
    browser.goto(&callback).await;
    browser.wait_text("h1", "Signed in").await;
    browser.client().close_window().await.unwrap();
    browser
        .client()
        .switch_to_window(console_window)
        .await
        .unwrap();
    browser
        .wait_text("#oauth-result", "Signed in: profile acme.oauth is ready")
        .await;
    let row = browser
        .wait_text("tr[data-profile-id='acme.oauth']", "OAuth")
        .await;
    assert!(row.contains("ok"), "health badge: {row}");
    assert_eq!(oauth.snapshot(|s| s.code_redemptions), 1);
    // Refresh now, set default, and remove with confirmation.
    browser
        .click("tr[data-profile-id='acme.oauth'] [data-action=refresh]")
        .await;
    browser.wait_text("#flash", "Work OAuth: refreshed.").await;
    assert_eq!(oauth.snapshot(|s| s.refresh_redemptions), 1);
    browser.screenshot("profiles").await;
    browser
        .click("tr[data-profile-id='model.key'] [data-action=set-default]")
        .await;
    browser
        .wait_text("tr[data-profile-id='model.key'] .badge-info", "default")
        .await;
    browser
        .click("tr[data-profile-id='acme.oauth'] [data-action=remove]")
        .await;
    browser
        .wait_text(
            "tr[data-profile-id='acme.oauth']",
            "Remove Work OAuth and its secret?",
        )
        .await;
    browser
        .click("tr[data-profile-id='acme.oauth'] [data-action=confirm-remove]")
        .await;
    browser.wait_text("#flash", "Removed Work OAuth").await;
    // The message comes first, then the list reloads.
    let mut listed = true;
    for _ in 0..50 {
        let rows = browser
            .client()
            .find_all(Locator::Css("tr[data-profile-id='acme.oauth']"))
            .await
            .unwrap();
        listed = !rows.is_empty();
        if !listed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!listed, "the removed profile is no longer listed");
    assert_eq!(oauth.snapshot(|s| s.revoked.len()), 1);

    // Create an agent that runs with the model profile.
    browser.click("nav a[href='#/agents']").await;
    browser.find("#agent-form").await;
    browser.fill("#agent-form [name=agent_id]", "ops").await;
    browser.fill("#agent-form [name=display_name]", "Ops").await;
    browser.fill("#agent-form [name=model]", "gpt-test").await;
    browser
        .choose("#agent-form [name=default_model_profile]", "model.key")
        .await;
    browser
        .fill("#agent-form [name=workspace_roots]", "relative/path")
        .await;
    browser.click("#agent-form button[type=submit]").await;
    browser
        .wait_text(
            "#agent-form [data-field-for=workspace_roots] .field-error",
            "absolute path",
        )
        .await;
    browser
        .fill("#agent-form [name=workspace_roots]", "/srv/ops")
        .await;
    browser.click("#agent-form button[type=submit]").await;
    browser
        .wait_text("tr[data-agent-id='ops']", "gpt-test")
        .await;
    // Edit it: the form fills with the agent, the change is saved.
    browser.click("tr[data-agent-id='ops'] button").await;
    browser.wait_text("#agent-form h2", "Edit agent ops").await;
    browser.fill("#agent-form [name=model]", "gpt-test-2").await;
    browser.click("#agent-form button[type=submit]").await;
    browser
        .wait_text("tr[data-agent-id='ops']", "gpt-test-2")
        .await;
    browser.wait_text("#flash", "Saved agent ops").await;
    browser.screenshot("agents").await;
    let agent = app.bearer_get_json("/console/v1/agents/ops").await;
    assert_eq!(agent["model"], "gpt-test-2");
    assert_eq!(agent["default_model_profile"], "model.key");
    assert_eq!(agent["workspace_roots"], json!(["/srv/ops"]));

    // Create an objective: the API's validation error lands under its field; then
    // fire it and see the run with its output and tokens.
    browser.goto(&app.url("/#/objectives/new")).await;
    browser.find("#objective-form").await;
    browser
        .fill("#objective-form [name=name]", "Morning report")
        .await;
    browser
        .fill("#objective-form [name=prompt]", "summarize the night")
        .await;
    browser
        .fill(
            "#objective-form [name='automation.schedule']",
            "every morning",
        )
        .await;
    browser.click("#objective-form [name=activate]").await;
    browser.click("#objective-form button[type=submit]").await;
    browser
        .wait_text(
            "#objective-form [data-field-for='automation.schedule'] .field-error",
            "\"every morning\" is not a cron pattern",
        )
        .await;
    browser
        .wait_text("#objective-form .form-error", "see Cron schedule")
        .await;
    browser
        .fill(
            "#objective-form [name='automation.schedule']",
            "0 8 * * 1-5",
        )
        .await;
    browser
        .fill(
            "#objective-form [name='automation.timezone']",
            "Europe/Prague",
        )
        .await;
    browser
        .fill("#objective-form [name='budget.max_runs']", "50")
        .await;
    browser.click("#objective-form button[type=submit]").await;
    browser.wait_text("main h1", "Morning report").await;
    browser.wait_text("main .title-row", "active").await;
    browser.wait_text("#no-runs", "No runs yet").await;
    browser.click("#lifecycle [data-action=fire]").await;
    let run = browser
        .wait_text(
            "#runs-table tr[data-status=succeeded]",
            "answer 1 to summarize the night",
        )
        .await;
    assert!(run.contains("manual"), "{run}");
    assert!(run.contains('7'), "tokens: {run}");
    assert_eq!(model.calls(), 1);
    // Lifecycle buttons follow the state: pause offers resume.
    browser.click("#lifecycle [data-action=pause]").await;
    browser.find("#lifecycle [data-action=resume]").await;
    browser.wait_text("main .title-row", "paused").await;
    // Edit the budget; the details show it.
    browser
        .fill("#objective-form [name='budget.max_tokens']", "10000")
        .await;
    browser.click("#objective-form button[type=submit]").await;
    browser.wait_text("#details", "7 / 10000 tokens").await;
    // A reload keeps the session and shows the page from its top.
    browser.client().refresh().await.unwrap();
    browser.wait_text("#details", "7 / 10000 tokens").await;
    browser.screenshot("objective").await;
    let runs = browser.find("#run-history").await;
    if let Ok(png) = runs.screenshot().await {
        std::fs::write(browser.shots.join("objective-runs.png"), png).unwrap();
    }
    let stored: Value = app.bearer_get_json("/console/v1/objectives").await;
    let objective = &stored["items"][0];
    assert_eq!(objective["name"], "Morning report");
    assert_eq!(objective["state"], "paused");
    assert_eq!(objective["automation"]["timezone"], "Europe/Prague");
    assert_eq!(objective["budget"]["max_runs"], 50);
    assert_eq!(objective["budget"]["max_tokens"], 10000);

    browser.goto(&app.url("/#/objectives?state=paused")).await;
    browser
        .wait_text("#objectives-table", "Morning report")
        .await;
    browser.screenshot("objectives").await;

    // The audit log shows what this session did, the failed login first of all.
    browser.goto(&app.url("/#/audit")).await;
    let log = browser.wait_text("#audit-log", "objective_lifecycle").await;
    for kind in [
        "login_failed",
        "profile_created",
        "signin_completed",
        "agent_created",
    ] {
        assert!(
            log.contains(kind),
            "{kind} missing from the audit page: {log}"
        );
    }
    assert!(!log.contains(crate::helpers::ADMIN_TOKEN));
    browser.screenshot("audit").await;

    // A narrow window: still one readable column.
    browser.client().set_window_size(420, 860).await.unwrap();
    browser.goto(&app.url("/#/profiles")).await;
    browser
        .wait_text("tr[data-profile-id='openai.work']", "…abcd")
        .await;
    browser.screenshot("profiles-narrow").await;
    let objective_id = objective["objective_id"].as_str().unwrap().to_owned();
    browser
        .goto(&app.url(&format!("/#/objectives/{objective_id}")))
        .await;
    browser
        .wait_text("#runs-table", "answer 1 to summarize the night")
        .await;
    browser.screenshot("objective-narrow").await;
    browser.client().set_window_size(1280, 800).await.unwrap();

    // Logout ends the session: a reload shows the login form.
    browser.click("#logout").await;
    browser.wait_text("main", "You are logged out").await;
    browser.goto(&base).await;
    browser.find("#login-form").await;

    // A handoff link minted through the API opens a page whose button signs the
    // browser in, once; a scanner's fetch of the link first uses nothing up.
    let minted: Value = app.mint_handoff(json!({})).await.json().await.unwrap();
    let handoff = minted["handoff_url"].as_str().unwrap().to_owned();
    let scanned = app.http.get(&handoff).send().await.unwrap();
    assert_eq!(scanned.status(), 200);
    browser.goto(&handoff).await;
    browser
        .wait_text("main h1", "Sign in to the Palyra console")
        .await;
    browser.screenshot("handoff-page").await;
    browser.click("#handoff-sign-in").await;
    browser.wait_text("main h1", "Overview").await;
    browser.wait_text("#who", "root").await;
    let url = browser.client().current_url().await.unwrap();
    assert_eq!(url.path(), "/");
    assert!(
        url.query().is_none(),
        "the token does not stay in the address bar"
    );
    // The console reads with the CSRF token the handoff's page left in this tab.
    browser.goto(&format!("{base}#/agents")).await;
    browser.wait_text("main h1", "Agents").await;
    browser.client().delete_all_cookies().await.unwrap();
    browser.goto(&handoff).await;
    browser.click("#handoff-sign-in").await;
    browser
        .wait_text("#handoff-error", "expired or was already used")
        .await;
    browser.screenshot("handoff-used").await;
    browser.goto(&base).await;
    browser.find("#login-form").await;

    browser.stop().await;
}

/// What the fake daemon's audit endpoint was asked.
type Seen = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// A stand-in daemon serving the real console assets and canned answers in the exact
/// shapes of `GET /deployment/posture` and `GET /audit`: the pages' rendering of a
/// remote, TLS deployment with warnings, and the audit filters and paging, without
/// staging all of that on a real daemon.
async fn posture_and_audit_daemon(seen: Seen) -> String {
    use axum::extract::RawQuery;
    use axum::routing::get;
    let audit = move |RawQuery(query): RawQuery| {
        let seen = std::sync::Arc::clone(&seen);
        async move {
            let query = query.unwrap_or_default();
            seen.lock().unwrap().push(query.clone());
            let event = |id: &str, kind: &str, outcome: &str| {
                json!({ "id": id, "at": "2026-11-20T08:00:00Z", "actor": "admin:local",
                        "peer": "192.0.2.7", "kind": kind, "subject": "openai.work",
                        "outcome": outcome, "detail": "from the fake daemon" })
            };
            let page = if query.contains("cursor=c2") {
                json!({ "events": [event("e3", "profile_created", "ok")], "next_cursor": null })
            } else {
                json!({ "events": [event("e1", "login_failed", "failure"), event("e2", "login", "ok")],
                        "next_cursor": "c2" })
            };
            axum::Json(page)
        }
    };
    let app = palyra_http::console::router::<()>()
        .route(
            "/console/v1/auth/login",
            axum::routing::post(|| async {
                axum::Json(json!({ "principal": "admin:fake", "role": "admin", "device_id": "d",
                    "csrf_token": "fake-csrf", "issued_at": "2026-11-20T08:00:00Z",
                    "expires_at": "2026-11-20T16:00:00Z", "idle_expires_at": "2026-11-20T08:15:00Z" }))
            }),
        )
        .route(
            "/console/v1/auth/session",
            // As the daemon: only with the CSRF token that login answered, which the
            // console keeps in sessionStorage, and without it in the answer.
            get(|headers: axum::http::HeaderMap| async move {
                if headers.get("x-palyra-csrf-token").is_none_or(|v| v != "fake-csrf") {
                    return (axum::http::StatusCode::FORBIDDEN, axum::Json(json!({
                        "error": { "code": "csrf_rejected", "message": "CSRF token missing" } })));
                }
                (axum::http::StatusCode::OK, axum::Json(json!({ "principal": "admin:fake",
                    "role": "admin", "device_id": "d", "issued_at": "2026-11-20T08:00:00Z",
                    "expires_at": "2026-11-20T16:00:00Z", "idle_expires_at": "2026-11-20T08:15:00Z" })))
            }),
        )
        .route(
            "/console/v1/deployment/posture",
            get(|| async {
                axum::Json(json!({
                    "bind_addresses": ["0.0.0.0:7142"], "loopback_only": false, "remote_bind_detected": true,
                    "tls": { "enabled": false, "cert_not_after": null }, "cookie_secure": false,
                    "admin_token_source": "generated", "vault_key_source": "file",
                    "session_idle_timeout_s": 900, "session_absolute_timeout_s": 28800,
                    "last_remote_admin_access": { "at": "2026-11-20T07:00:00Z", "peer": "192.0.2.7",
                        "method": "GET", "path": "/console/v1/auth/profiles", "status": 200 },
                    "warnings": ["The admin API listens on 0.0.0.0:7142 without TLS."] }))
            }),
        )
        .route(
            "/console/v1/auth/health",
            get(|| async { axum::Json(json!({ "profiles": [], "counts": { "needs_reauth": 2, "ok": 1 } })) }),
        )
        .route(
            "/console/v1/objectives",
            get(|| async {
                axum::Json(json!({ "items": [{
                    "objective_id": "nightly", "agent_id": "ops", "kind": "standing_order", "state": "active",
                    "name": "Nightly digest", "prompt": "p", "steps": [], "priority": 0,
                    "budget": { "max_runs": null, "max_tokens": null }, "usage": { "runs": 0, "tokens": 0 },
                    "automation": { "schedule": "0 2 * * *", "timezone": "Europe/Prague", "misfire": "skip",
                        "overlap": "forbid", "jitter_s": 0, "enabled": true },
                    "state_reason": null, "last_run": null, "next_run_at": "2030-01-01T01:00:00Z",
                    "run_seq": 0, "created_at": "2026-11-20T08:00:00Z", "updated_at": "2026-11-20T08:00:00Z" }],
                    "next_after": null }))
            }),
        )
        .route("/console/v1/audit", get(audit));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_posture_and_audit_pages_render_the_issue_7_shapes() {
    let seen = Seen::default();
    let base = posture_and_audit_daemon(std::sync::Arc::clone(&seen)).await;
    let browser = Browser::start().await;

    // No CSRF token in this tab yet: the login form; logging in keeps the token, and
    // the reload after it reads the session with it.
    browser.goto(&format!("{base}/")).await;
    browser.fill("#admin-token", "any-token").await;
    browser.click("#login-form button[type=submit]").await;
    browser.wait_text("main h1", "Overview").await;
    browser.goto(&format!("{base}/")).await;
    browser.wait_text("#who", "admin:fake").await;
    browser
        .wait_text(
            "#posture",
            "The admin API listens on 0.0.0.0:7142 without TLS.",
        )
        .await;
    let posture = browser.wait_text("#posture", "reachable remotely").await;
    assert!(posture.contains("192.0.2.7"), "{posture}");
    assert!(posture.contains("idle 15 min, absolute 8 h"), "{posture}");
    browser.wait_text("#health", "needs reauth 2").await;
    browser.wait_text("#next-runs", "Nightly digest").await;
    browser.screenshot("overview-posture").await;

    browser.goto(&format!("{base}/#/audit")).await;
    browser.wait_text("#audit-table", "login_failed").await;
    assert_eq!(
        browser
            .client()
            .find_all(Locator::Css("#audit-table tbody tr"))
            .await
            .unwrap()
            .len(),
        2
    );
    browser.click("#audit-log .pager button").await;
    browser.wait_text("#audit-table", "profile_created").await;
    assert!(seen.lock().unwrap().last().unwrap().contains("cursor=c2"));
    browser.screenshot("audit").await;
    browser
        .choose("#audit-filters [name=kind]", "login_failed")
        .await;
    browser
        .fill("#audit-filters [name=since]", "01012026\t0800AM")
        .await;
    browser.click("#audit-filters button[type=submit]").await;
    browser.wait_text("#audit-table", "login_failed").await;
    let query = seen.lock().unwrap().last().unwrap().clone();
    assert!(query.contains("kind=login_failed"), "{query}");
    assert!(query.contains("since=2026-01-01T"), "{query}");

    browser.stop().await;
}
