//! Which receiver URLs a channel may have, and the resolver of the delivery client:
//! the browser's address rules (`browser/policy.rs`) and resolver, so the address
//! checked is the address connected to.

use std::net::SocketAddr;
use std::sync::Arc;

use url::{Host, Url};

use super::model::NotificationPolicy;
use crate::browser::UrlPolicy;
use crate::error::ActorError;

/// Checks a channel's URL when it is created: https, or http to loopback (or with
/// `allow_insecure_urls`), and (unless allowed) no private destination.
pub async fn check_channel_url(policy: &NotificationPolicy, raw: &str) -> Result<Url, ActorError> {
    if raw.len() > 2048 {
        return Err(ActorError::invalid("url", "at most 2048 characters"));
    }
    let url = Url::parse(raw).map_err(|e| ActorError::invalid("url", e.to_string()))?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) || policy.allow_insecure_urls => {}
        "http" => {
            return Err(ActorError::invalid(
                "url",
                "http is allowed only to loopback (or with notifications.allow_insecure_urls); use https",
            ));
        }
        other => {
            return Err(ActorError::invalid(
                "url",
                format!("the scheme {other} is not https"),
            ));
        }
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ActorError::invalid(
            "url",
            "credentials in the URL are not accepted",
        ));
    }
    policy.urls.check(&url).await?;
    Ok(url)
}

/// Checks a URL right before a send. Host names are checked by [`PolicyResolver`]
/// as the client connects; an IP literal is not resolved, so it is checked here.
pub async fn check_before_send(urls: &UrlPolicy, url: &Url) -> Result<(), ActorError> {
    urls.check_name(url)?;
    if matches!(url.host(), Some(Host::Ipv4(_) | Host::Ipv6(_))) {
        urls.destination(url).await?;
    }
    Ok(())
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// The delivery client's resolver: each name is resolved once, every address is
/// checked, and only the checked addresses are returned, so a DNS answer that changes
/// between a check and the connection (rebinding) cannot reach a refused address.
pub(crate) struct PolicyResolver {
    pub(crate) urls: UrlPolicy,
}

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let urls = self.urls.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let url = Url::parse(&format!("http://{host}/"))
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?;
            let addresses = urls
                .destination(&url)
                .await
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?;
            let addrs: reqwest::dns::Addrs = Box::new(
                addresses
                    .into_iter()
                    .map(|ip| SocketAddr::new(ip, 0))
                    .collect::<Vec<_>>()
                    .into_iter(),
            );
            Ok(addrs)
        })
    }
}

/// The client deliveries are sent with: no redirects, the resolver above.
pub(crate) fn delivery_client(urls: &UrlPolicy) -> Result<reqwest::Client, ActorError> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(crate::outbound::CONNECT_TIMEOUT)
        .dns_resolver(Arc::new(PolicyResolver { urls: urls.clone() }))
        .build()
        .map_err(|e| ActorError::Conflict(format!("the notification client: {e}")))
}
