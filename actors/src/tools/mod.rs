//! The tools a run offers its model, and their execution within the daemon's
//! policies: which tools an agent may enable, what each is offered as, and the
//! per-run tool box that executes calls and tells refusals back to the model.
//!
//! Layout:
//! - `browse.rs`: `browser_open`, `browser_click`, `browser_type`, `browser_read` on
//!   one browser session owned by the run, closed when the run ends.
//! - `fetch.rs`: `http_fetch` through the browser sessions' egress policy, pinned to
//!   the addresses checked, the daemon's own listeners refused, answers capped and
//!   HTML reduced to text.
//! - `workspace.rs`: `workspace_list`, `workspace_read`, `workspace_write` inside the
//!   agent's roots (symlinks resolved, protected paths refused, atomic writes).
//!
//! Tool results are untrusted input to the model: no tool reads the daemon's data
//! dir or config, and none reaches the admin API or changes the daemon's state.

pub mod browse;
pub mod fetch;
mod nofollow;
pub mod workspace;

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::adapter::{ToolCall, ToolSpec};
use crate::audit::{AuditEntry, AuditKind, AuditLog, AuditOutcome};

/// A tool an agent enables by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AgentTool {
    /// `http_fetch`.
    HttpFetch,
    /// `browser_open`, `browser_click`, `browser_type`, `browser_read`.
    Browser,
    /// `workspace_list` and `workspace_read`.
    WorkspaceRead,
    /// `workspace_write`.
    WorkspaceWrite,
}

/// Tool calls a run makes, at most, when the agent does not say.
pub const DEFAULT_MAX_TOOL_CALLS: u32 = 20;

/// The daemon-wide settings of tools.
#[derive(Debug, Clone)]
pub struct ToolsPolicy {
    /// Paths no workspace root may be, contain or lie in, and no tool may touch: the
    /// data dir and the config file.
    pub protected: Vec<PathBuf>,
    /// One tool call at most this long; the run's deadline bounds all of them.
    pub call_timeout: Duration,
    /// What `http_fetch` may reach.
    pub fetch: fetch::FetchPolicy,
    /// The browser actor, for the browser tools (none: they refuse).
    pub browser: Option<crate::browser::BrowserHandle>,
}

impl ToolsPolicy {
    /// Refuses workspace roots a tool must never reach.
    pub fn check_roots(&self, roots: &[String]) -> Result<(), String> {
        roots
            .iter()
            .try_for_each(|r| workspace::check_root(r, &self.protected))
    }
}

/// What a call came to, as told to the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolOutput {
    pub content: String,
    /// A refusal or failure: the model is told, the run goes on.
    pub is_error: bool,
}

impl ToolOutput {
    fn ok(content: String) -> Self {
        Self {
            content,
            is_error: false,
        }
    }

    fn refused(reason: impl std::fmt::Display) -> Self {
        Self {
            content: format!("refused: {reason}"),
            is_error: true,
        }
    }
}

/// The tools of one run: what its agent enabled, its workspace, and who audits writes.
pub struct ToolBox {
    enabled: Vec<AgentTool>,
    roots: Vec<String>,
    policy: ToolsPolicy,
    audit: AuditLog,
    agent_id: String,
    run_id: String,
    /// The run's browser session, opened by its first `browser_open`; dropping the
    /// tool box (the run ended) closes it.
    browser: Option<browse::RunBrowser>,
}

impl std::fmt::Debug for ToolBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolBox")
            .field("enabled", &self.enabled)
            .field("roots", &self.roots)
            .field("run_id", &self.run_id)
            .finish_non_exhaustive()
    }
}

impl ToolBox {
    pub fn new(
        enabled: Vec<AgentTool>,
        roots: Vec<String>,
        policy: ToolsPolicy,
        audit: AuditLog,
        agent_id: String,
        run_id: String,
    ) -> Self {
        Self {
            enabled,
            roots,
            policy,
            audit,
            agent_id,
            run_id,
            browser: None,
        }
    }

    /// The tools offered to the model, in a fixed order.
    pub fn specs(&self) -> Vec<ToolSpec> {
        let mut specs = Vec::new();
        if self.enabled.contains(&AgentTool::HttpFetch) {
            specs.push(ToolSpec {
                name: "http_fetch",
                description: "Send one HTTP request (http or https) and read the answer's text (HTML reduced to text, at most 64 KiB).",
                parameters: json!({ "type": "object", "required": ["url"], "properties": {
                    "url": { "type": "string" },
                    "method": { "type": "string", "enum": ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"] },
                    "headers": { "type": "object", "additionalProperties": { "type": "string" } },
                    "body": { "type": "string" }
                }}),
            });
        }
        if self.enabled.contains(&AgentTool::Browser) {
            let selector = json!({ "type": "string", "description": "A CSS selector; the first match is used." });
            specs.push(ToolSpec {
                name: "browser_open",
                description: "Open a URL in the run's browser page (opening the page on first use).",
                parameters: json!({ "type": "object", "required": ["url"], "properties": { "url": { "type": "string" } } }),
            });
            specs.push(ToolSpec {
                name: "browser_click",
                description: "Click the first element matching a CSS selector on the open page.",
                parameters: json!({ "type": "object", "required": ["selector"], "properties": { "selector": selector } }),
            });
            specs.push(ToolSpec {
                name: "browser_type",
                description: "Type text into the first element matching a CSS selector on the open page.",
                parameters: json!({ "type": "object", "required": ["selector", "text"], "properties": {
                    "selector": selector, "text": { "type": "string" }
                }}),
            });
            specs.push(ToolSpec {
                name: "browser_read",
                description: "Read the open page's visible text.",
                parameters: json!({ "type": "object", "properties": {} }),
            });
        }
        if self.enabled.contains(&AgentTool::WorkspaceRead) {
            specs.push(ToolSpec {
                name: "workspace_list",
                description: "List a directory of the agent's workspace (the first workspace root by default).",
                parameters: json!({ "type": "object", "properties": {
                    "path": { "type": "string", "description": "Relative to the first workspace root, or absolute inside a root." }
                }}),
            });
            specs.push(ToolSpec {
                name: "workspace_read",
                description: "Read a text file of the agent's workspace (at most 64 KiB).",
                parameters: json!({ "type": "object", "required": ["path"], "properties": {
                    "path": { "type": "string" }
                }}),
            });
        }
        if self.enabled.contains(&AgentTool::WorkspaceWrite) {
            specs.push(ToolSpec {
                name: "workspace_write",
                description: "Write a text file of the agent's workspace, replacing it atomically (at most 1 MiB).",
                parameters: json!({ "type": "object", "required": ["path", "content"], "properties": {
                    "path": { "type": "string" }, "content": { "type": "string" }
                }}),
            });
        }
        specs
    }

    fn offers(&self, name: &str) -> bool {
        self.specs().iter().any(|s| s.name == name)
    }

    /// Executes one call within the per-call timeout; never fails the run.
    pub async fn call(&mut self, call: &ToolCall) -> ToolOutput {
        if !self.offers(&call.name) {
            return ToolOutput::refused(format!("{:?} is not a tool of this agent", call.name));
        }
        let timeout = self.policy.call_timeout;
        match tokio::time::timeout(timeout, self.dispatch(call)).await {
            Ok(output) => output,
            Err(_) => ToolOutput::refused(format!(
                "the tool did not finish within {} s",
                timeout.as_secs()
            )),
        }
    }

    async fn dispatch(&mut self, call: &ToolCall) -> ToolOutput {
        let args = &call.arguments;
        let text = |field: &str| args.get(field).and_then(Value::as_str).map(str::to_owned);
        let workspace = || workspace::Workspace::new(&self.roots, &self.policy.protected);
        if call.name.starts_with("browser_") {
            let Some(handle) = self.policy.browser.clone() else {
                return ToolOutput::refused("browser sessions are not available on this daemon");
            };
            let browser = self
                .browser
                .get_or_insert_with(|| browse::RunBrowser::new(handle));
            let result = match call.name.as_str() {
                "browser_open" => match text("url") {
                    Some(url) => browser.open(&url).await,
                    None => Err("browser_open needs a string `url`".into()),
                },
                "browser_click" => match text("selector") {
                    Some(selector) => browser.click(&selector).await,
                    None => Err("browser_click needs a string `selector`".into()),
                },
                "browser_type" => match (text("selector"), text("text")) {
                    (Some(selector), Some(t)) => browser.type_text(&selector, &t).await,
                    _ => Err("browser_type needs a string `selector` and a string `text`".into()),
                },
                _ => browser.read().await,
            };
            return match result {
                Ok(text) => ToolOutput::ok(text),
                Err(reason) => ToolOutput::refused(reason),
            };
        }
        match call.name.as_str() {
            "http_fetch" => {
                let request = match fetch::FetchRequest::parse(args) {
                    Ok(r) => r,
                    Err(reason) => return ToolOutput::refused(reason),
                };
                let writes = request.writes();
                let what = format!("{} {}", request.method, cut_url(&request.url));
                let result =
                    fetch::fetch(&self.policy.fetch, request, self.policy.call_timeout).await;
                if writes {
                    self.audit.submit(AuditEntry::system(
                        AuditKind::ToolWrite,
                        self.agent_id.clone(),
                        if result.is_ok() {
                            AuditOutcome::Success
                        } else {
                            AuditOutcome::Failure
                        },
                        format!("run {}: http_fetch {what}", self.run_id),
                    ));
                }
                match result {
                    Ok(text) => ToolOutput::ok(text),
                    Err(reason) => ToolOutput::refused(reason),
                }
            }
            "workspace_list" => {
                let (ws, path) = (workspace(), text("path"));
                blocking(move || ws.list(path.as_deref())).await
            }
            "workspace_read" => {
                let Some(path) = text("path") else {
                    return ToolOutput::refused("workspace_read needs a string `path`");
                };
                let ws = workspace();
                blocking(move || ws.read(&path)).await
            }
            "workspace_write" => {
                let (Some(path), Some(content)) = (text("path"), text("content")) else {
                    return ToolOutput::refused(
                        "workspace_write needs a string `path` and a string `content`",
                    );
                };
                let ws = workspace();
                let bytes = content.len();
                let shown = path.clone();
                let result = tokio::task::spawn_blocking(move || ws.write(&path, &content))
                    .await
                    .unwrap_or_else(|_| Err("the write was interrupted".into()));
                let (outcome, detail, output) = match result {
                    Ok(written) => (
                        AuditOutcome::Success,
                        format!(
                            "run {}: workspace_write {} ({bytes} bytes)",
                            self.run_id,
                            written.display()
                        ),
                        ToolOutput::ok(format!("wrote {bytes} bytes to {}", written.display())),
                    ),
                    Err(reason) => (
                        AuditOutcome::Failure,
                        format!(
                            "run {}: workspace_write {shown:?} refused: {reason}",
                            self.run_id
                        ),
                        ToolOutput::refused(reason),
                    ),
                };
                self.audit.submit(AuditEntry::system(
                    AuditKind::ToolWrite,
                    self.agent_id.clone(),
                    outcome,
                    detail,
                ));
                output
            }
            other => ToolOutput::refused(format!("{other:?} is not a tool")),
        }
    }
}

/// A URL as audited: its origin only. The path, query and fragment may carry a
/// credential (a Slack or Discord webhook's is its path), and the audit log is read
/// by viewers.
fn cut_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(url) => match url.path() {
            "" | "/" => url.origin().ascii_serialization(),
            _ => format!("{}/…", url.origin().ascii_serialization()),
        },
        Err(_) => "(an invalid URL)".into(),
    }
}

/// Runs file-system work on tokio's blocking pool.
async fn blocking(work: impl FnOnce() -> Result<String, String> + Send + 'static) -> ToolOutput {
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(text)) => ToolOutput::ok(text),
        Ok(Err(reason)) => ToolOutput::refused(reason),
        Err(_) => ToolOutput::refused("the tool was interrupted"),
    }
}
