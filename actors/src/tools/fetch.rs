//! The `http_fetch {url, method?, headers?, body?}` tool: one HTTP request through the
//! browser sessions' egress policy (`browser::UrlPolicy`: schemes, `allowed_hosts`,
//! private and link-local addresses refused unless allowed), with the host resolved
//! once and the connection pinned to the addresses checked, so what was checked is
//! what is reached; the daemon's own listeners are always refused. Redirects are
//! followed by hand, each hop checked again. The answer is capped and HTML reduced to
//! text; no response header but the content type reaches the model.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde_json::Value;
use url::Url;

use crate::browser::UrlPolicy;

/// Most bytes of an answer's body read; the rest is not fetched.
const MAX_BODY_READ: usize = 512 * 1024;
/// Most bytes of text returned to the model.
pub const MAX_RESULT_BYTES: usize = 64 * 1024;
/// Most bytes of a request body the model may send.
const MAX_REQUEST_BODY: usize = 256 * 1024;
/// Redirects followed, at most.
const MAX_REDIRECTS: usize = 5;

/// What `http_fetch` may reach.
#[derive(Debug, Clone)]
pub struct FetchPolicy {
    /// The browser sessions' policy and resolver, shared.
    pub urls: UrlPolicy,
    /// The daemon's own listeners (API, metrics): never a destination.
    pub own_listeners: Vec<SocketAddr>,
}

/// A request as the model asked for it.
#[derive(Debug)]
pub struct FetchRequest {
    pub url: String,
    pub method: reqwest::Method,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
}

impl FetchRequest {
    /// Reads the call's arguments.
    pub fn parse(args: &Value) -> Result<Self, String> {
        let url = args
            .get("url")
            .and_then(Value::as_str)
            .ok_or("http_fetch needs a string `url`")?
            .to_owned();
        let method = match args.get("method").and_then(Value::as_str) {
            None => reqwest::Method::GET,
            Some(m) => match m.to_ascii_uppercase().as_str() {
                "GET" => reqwest::Method::GET,
                "HEAD" => reqwest::Method::HEAD,
                "POST" => reqwest::Method::POST,
                "PUT" => reqwest::Method::PUT,
                "PATCH" => reqwest::Method::PATCH,
                "DELETE" => reqwest::Method::DELETE,
                other => {
                    return Err(format!(
                        "method {other:?} is not one of GET, HEAD, POST, PUT, PATCH, DELETE"
                    ));
                }
            },
        };
        let mut headers = Vec::new();
        if let Some(map) = args.get("headers").and_then(Value::as_object) {
            for (name, value) in map {
                let lower = name.to_ascii_lowercase();
                // The connection is the daemon's to decide: a Host header would ask a
                // checked address for another site.
                if matches!(
                    lower.as_str(),
                    "host"
                        | "connection"
                        | "proxy-authorization"
                        | "transfer-encoding"
                        | "content-length"
                ) {
                    return Err(format!("header {name:?} may not be set"));
                }
                let value = value.as_str().ok_or("header values must be strings")?;
                headers.push((name.clone(), value.to_owned()));
            }
        }
        let body = args.get("body").and_then(Value::as_str).map(str::to_owned);
        if body.as_ref().is_some_and(|b| b.len() > MAX_REQUEST_BODY) {
            return Err(format!("the body is over {MAX_REQUEST_BODY} bytes"));
        }
        Ok(Self {
            url,
            method,
            headers,
            body,
        })
    }

    /// Whether the request changes something elsewhere (audited).
    pub fn writes(&self) -> bool {
        !matches!(self.method, reqwest::Method::GET | reqwest::Method::HEAD)
    }
}

/// Whether `addr` is one of the daemon's listeners: the same port on the listener's
/// address, or on any local address when the listener is on every interface (or on
/// loopback, which any loopback address reaches).
fn is_own(policy: &FetchPolicy, addr: SocketAddr) -> bool {
    policy.own_listeners.iter().any(|l| {
        l.port() == addr.port()
            && (l.ip() == addr.ip()
                || l.ip().is_unspecified()
                || (l.ip().is_loopback() && addr.ip().is_loopback()))
    })
}

/// The addresses `url` may be reached at, checked.
async fn checked(policy: &FetchPolicy, url: &Url) -> Result<Vec<SocketAddr>, String> {
    policy.urls.check_name(url).map_err(|e| e.to_string())?;
    let port = url.port_or_known_default().ok_or("the URL has no port")?;
    let ips: Vec<IpAddr> = policy
        .urls
        .destination(url)
        .await
        .map_err(|e| e.to_string())?;
    let addrs: Vec<SocketAddr> = ips
        .into_iter()
        .map(|ip| SocketAddr::new(ip, port))
        .collect();
    if addrs.iter().any(|a| is_own(policy, *a)) {
        return Err(format!(
            "{} is the daemon's own listener, which no tool may reach",
            url.host_str().unwrap_or_default()
        ));
    }
    Ok(addrs)
}

/// Sends the request and answers the text returned to the model.
pub async fn fetch(
    policy: &FetchPolicy,
    request: FetchRequest,
    timeout: Duration,
) -> Result<String, String> {
    let mut url = Url::parse(&request.url).map_err(|e| format!("the URL is invalid: {e}"))?;
    let (mut method, mut body) = (request.method.clone(), request.body.clone());
    // The model's headers (a credential, say) go only to the origin it named; a
    // redirect elsewhere is followed without them.
    let named = url.origin();
    for _ in 0..=MAX_REDIRECTS {
        let addrs = checked(policy, &url).await?;
        let host = url.host_str().unwrap_or_default().to_owned();
        // A client of its own per hop: no proxy from the environment, no redirects,
        // and its one host pinned to the addresses checked.
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .resolve_to_addrs(&host, &addrs)
            .timeout(timeout)
            .build()
            .map_err(|_| "the request could not be prepared".to_owned())?;
        let mut builder = client.request(method.clone(), url.clone());
        if url.origin() == named {
            for (name, value) in &request.headers {
                builder = builder.header(name.as_str(), value.as_str());
            }
        }
        if let Some(b) = &body {
            builder = builder.body(b.clone());
        }
        let response = builder.send().await.map_err(|e| {
            if e.is_timeout() {
                "the request timed out".to_owned()
            } else {
                "the destination could not be reached".to_owned()
            }
        })?;
        let status = response.status();
        if status.is_redirection()
            && let Some(location) = response.headers().get(reqwest::header::LOCATION)
        {
            let location = location
                .to_str()
                .map_err(|_| "a redirect's location is not text")?;
            url = url
                .join(location)
                .map_err(|e| format!("a redirect's location is invalid: {e}"))?;
            if matches!(status.as_u16(), 301..=303) {
                method = reqwest::Method::GET;
                body = None;
            } else if body.is_some() && url.origin() != named {
                return Err(
                    "a redirect to another origin would send the body there; not followed".into(),
                );
            }
            continue;
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let (bytes, cut) = read_capped(response).await?;
        let raw = String::from_utf8_lossy(&bytes);
        let mut text = if content_type.contains("html") {
            html_to_text(&raw)
        } else {
            raw.into_owned()
        };
        let cut = cut || text.len() > MAX_RESULT_BYTES;
        truncate(&mut text, MAX_RESULT_BYTES);
        let mut out = format!("HTTP {} {content_type}\n\n{text}", status.as_u16());
        if cut {
            out.push_str("\n[cut]");
        }
        return Ok(out);
    }
    Err(format!("more than {MAX_REDIRECTS} redirects"))
}

async fn read_capped(mut response: reqwest::Response) -> Result<(Vec<u8>, bool), String> {
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_BODY_READ {
                    let room = MAX_BODY_READ - body.len();
                    body.extend_from_slice(&chunk[..room]);
                    return Ok((body, true));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok((body, false)),
            Err(_) => return Err("the answer was cut off".into()),
        }
    }
}

fn truncate(text: &mut String, max: usize) {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
}

/// HTML reduced to its text: scripts, styles and tags dropped, a few entities
/// decoded, blank runs collapsed.
pub fn html_to_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len() / 2);
    let lower = html.to_ascii_lowercase();
    let mut i = 0;
    let bytes = html.as_bytes();
    while i < bytes.len() {
        if bytes[i] == b'<' {
            let rest = &lower[i..];
            let skip_to = ["script", "style", "noscript", "template"]
                .iter()
                .find(|t| rest[1..].starts_with(**t))
                .and_then(|t| rest.find(&format!("</{t}")).map(|end| i + end));
            let from = skip_to.unwrap_or(i);
            // Block elements end a line; inline ones only separate words.
            let name: String = rest[1..]
                .trim_start_matches('/')
                .chars()
                .take_while(char::is_ascii_alphanumeric)
                .collect();
            let block = matches!(
                name.as_str(),
                "p" | "div"
                    | "br"
                    | "li"
                    | "tr"
                    | "h1"
                    | "h2"
                    | "h3"
                    | "h4"
                    | "h5"
                    | "h6"
                    | "title"
                    | "section"
                    | "article"
                    | "header"
                    | "footer"
                    | "table"
                    | "ul"
                    | "ol"
            );
            match lower[from..].find('>') {
                Some(end) => i = from + end + 1,
                None => break,
            }
            out.push(if block { '\n' } else { ' ' });
            continue;
        }
        let next = html[i..].find('<').map_or(html.len(), |n| i + n);
        out.push_str(&html[i..next]);
        i = next;
    }
    let decoded = out
        .replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&");
    let mut text = String::new();
    for line in decoded.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if !words.is_empty() {
            text.push_str(&words.join(" "));
            text.push('\n');
        }
    }
    text.trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_reduced_to_its_text() {
        let html = "<html><head><style>p{}</style><script>var k='x';</script></head>\n<body><h1>Alerts</h1>\n<p>disk &amp; cpu</p></body></html>";
        assert_eq!(html_to_text(html), "Alerts\ndisk & cpu");
    }

    #[test]
    fn the_daemons_listeners_are_its_own_on_every_local_address() {
        let policy = FetchPolicy {
            urls: UrlPolicy::default(),
            own_listeners: vec![
                "127.0.0.1:8080".parse().unwrap(),
                "0.0.0.0:9090".parse().unwrap(),
            ],
        };
        assert!(is_own(&policy, "127.0.0.1:8080".parse().unwrap()));
        assert!(is_own(&policy, "127.0.0.2:8080".parse().unwrap()));
        assert!(is_own(&policy, "10.1.2.3:9090".parse().unwrap()));
        assert!(!is_own(&policy, "10.1.2.3:8080".parse().unwrap()));
    }
}
