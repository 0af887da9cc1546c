//! `palyra browser`: headless browser sessions run by the daemon
//! (`/console/v1/browser/sessions`).

use std::path::PathBuf;

use clap::Subcommand;
use palyra::client::{ClientError, ControlPlaneClient};

use crate::output::{print_json, print_table};

#[derive(Debug, Subcommand)]
pub enum BrowserCommand {
    /// Start a session; prints its id.
    Open {
        /// An http or https URL to load first.
        start_url: Option<String>,
        /// Viewport width in CSS pixels (with --height).
        #[arg(long, requires = "height")]
        width: Option<u32>,
        /// Viewport height in CSS pixels (with --width).
        #[arg(long, requires = "width")]
        height: Option<u32>,
    },
    /// Load a URL and wait until it has loaded.
    Navigate {
        session_id: String,
        /// An http or https URL. (Not named `url`: that is the daemon's `--url`.)
        #[arg(value_name = "URL")]
        page_url: String,
    },
    /// Click the first element matching a CSS selector.
    Click {
        session_id: String,
        selector: String,
    },
    /// Type text into the first element matching a CSS selector.
    Type {
        session_id: String,
        selector: String,
        text: String,
    },
    /// Save a PNG of the viewport.
    Screenshot {
        session_id: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the page's text.
    Content { session_id: String },
    /// End a session.
    Close { session_id: String },
    /// The live sessions.
    List,
}

/// `palyra browser ...`.
pub async fn browser(
    json: bool,
    client: &ControlPlaneClient,
    command: &BrowserCommand,
) -> Result<(), ClientError> {
    use palyra_actors::browser::{PageState, Viewport};
    let page_line = |page: &PageState| format!("{}  {}", page.url, page.title);
    match command {
        BrowserCommand::Open {
            start_url,
            width,
            height,
        } => {
            let viewport = width
                .zip(*height)
                .map(|(width, height)| Viewport { width, height });
            let info = client
                .create_browser_session(
                    &palyra_http::routes::browser::CreateBrowserSessionRequest {
                        start_url: start_url.clone(),
                        viewport,
                    },
                )
                .await?;
            if json {
                print_json(&info);
            } else {
                println!("{}  {}  {}", info.session_id, info.url, info.title);
            }
        }
        BrowserCommand::Navigate {
            session_id,
            page_url,
        } => {
            let result = client
                .navigate_browser_session(session_id, page_url)
                .await?;
            if json {
                print_json(&result);
            } else {
                let status = result.status.map(|s| s.to_string()).unwrap_or_default();
                println!("{status}  {}  {}", result.url, result.title);
            }
        }
        BrowserCommand::Click {
            session_id,
            selector,
        } => {
            let page = client.click_browser_session(session_id, selector).await?;
            if json {
                print_json(&page);
            } else {
                println!("{}", page_line(&page));
            }
        }
        BrowserCommand::Type {
            session_id,
            selector,
            text,
        } => {
            let page = client
                .type_browser_session(session_id, selector, text)
                .await?;
            if json {
                print_json(&page);
            } else {
                println!("{}", page_line(&page));
            }
        }
        BrowserCommand::Screenshot { session_id, out } => {
            let png = client.browser_screenshot(session_id).await?;
            std::fs::write(out, &png).map_err(|e| {
                ClientError::Protocol(format!("cannot write {}: {e}", out.display()))
            })?;
            if json {
                print_json(&serde_json::json!({ "path": out, "bytes": png.len() }));
            } else {
                println!("saved {} ({} bytes)", out.display(), png.len());
            }
        }
        BrowserCommand::Content { session_id } => {
            let content = client.browser_content(session_id).await?;
            if json {
                print_json(&content);
            } else {
                println!("{}", content.text);
                if content.truncated {
                    eprintln!("(cut at the daemon's browser.content_max_bytes)");
                }
            }
        }
        BrowserCommand::Close { session_id } => {
            client.close_browser_session(session_id).await?;
            if json {
                print_json(&serde_json::json!({ "closed": session_id }));
            } else {
                println!("closed {session_id}");
            }
        }
        BrowserCommand::List => {
            let list = client.list_browser_sessions().await?;
            if json {
                print_json(&list);
            } else {
                let rows: Vec<Vec<String>> = list
                    .sessions
                    .iter()
                    .map(|s| {
                        vec![
                            s.session_id.clone(),
                            s.url.clone(),
                            s.title.clone(),
                            s.last_activity_at.to_rfc3339(),
                        ]
                    })
                    .collect();
                print_table(&["ID", "URL", "TITLE", "LAST ACTIVITY"], &rows);
            }
        }
    }
    Ok(())
}
