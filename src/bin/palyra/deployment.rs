//! `palyra posture` and `palyra audit`: the deployment's security posture and the
//! audit log (`/console/v1/deployment/posture`, `/console/v1/audit`).

use palyra::client::{ClientError, ControlPlaneClient};
use palyra_actors::wire_name;

use crate::output::print_json;

/// The audit query from the command line; values are checked by their types here so
/// a typo is named before anything is sent.
pub fn audit_query(
    kind: &Option<String>,
    since: &Option<String>,
    until: &Option<String>,
    limit: usize,
    cursor: &Option<String>,
) -> Result<palyra_http::routes::deployment::AuditParams, ClientError> {
    let instant = |name: &str, v: &Option<String>| {
        v.as_deref()
            .map(|t| {
                chrono::DateTime::parse_from_rfc3339(t)
                    .map(|d| d.with_timezone(&chrono::Utc))
                    .map_err(|e| ClientError::Protocol(format!("--{name}: {e}")))
            })
            .transpose()
    };
    let kind = kind
        .as_deref()
        .map(|k| {
            serde_json::from_value(serde_json::Value::String(k.to_owned()))
                .map_err(|_| ClientError::Protocol(format!("--kind: unknown kind {k:?}")))
        })
        .transpose()?;
    Ok(palyra_http::routes::deployment::AuditParams {
        kind,
        since: instant("since", since)?,
        until: instant("until", until)?,
        limit: Some(limit),
        cursor: cursor.clone(),
    })
}

fn print_posture(p: &palyra_http::routes::deployment::DeploymentPostureSummary) {
    println!("bind addresses:      {}", p.bind_addresses.join(", "));
    println!(
        "exposure:            {}",
        if p.remote_bind_detected {
            "REMOTE (not loopback)"
        } else {
            "loopback only"
        }
    );
    let tls = match (p.tls.enabled, p.tls.cert_not_after) {
        (true, Some(at)) => format!("on, certificate valid until {}", at.to_rfc3339()),
        (true, None) => "on".to_owned(),
        (false, _) => "off".to_owned(),
    };
    println!("tls:                 {tls}");
    println!("secure cookies:      {}", p.cookie_secure);
    println!("admin token source:  {}", p.admin_token_source);
    println!("vault key source:    {}", p.vault_key_source);
    println!(
        "storage:             {}{} ({} node {})",
        p.storage.backend,
        p.storage
            .target
            .as_deref()
            .map(|t| format!(" {t}"))
            .unwrap_or_default(),
        p.storage.cluster_mode,
        p.storage.node_id
    );
    println!(
        "session timeouts:    idle {} s, absolute {} s",
        p.session_idle_timeout_s, p.session_absolute_timeout_s
    );
    let b = &p.browser;
    let sandbox = match b.sandbox {
        palyra_actors::browser::SandboxState::On => "on",
        palyra_actors::browser::SandboxState::Unavailable => "UNAVAILABLE",
        palyra_actors::browser::SandboxState::Unknown => "not probed yet",
    };
    println!(
        "browser:             {}, user {}, sandbox {sandbox}, devtools over a {}, egress through the {} ({} refused)",
        if b.enabled { "enabled" } else { "disabled" },
        b.user,
        b.devtools,
        b.egress,
        b.refused_requests
    );
    match &p.last_remote_admin_access {
        Some(a) => println!(
            "last remote access:  {} {} {} {} -> {}",
            a.at.to_rfc3339(),
            a.peer,
            a.method,
            a.path,
            a.status
        ),
        None => println!("last remote access:  none"),
    }
    if p.warnings.is_empty() {
        println!("warnings:            none");
    } else {
        println!("warnings:");
        for w in &p.warnings {
            println!("  - {w}");
        }
    }
}

/// `palyra cluster status`: nodes, heartbeats, shards and lease epochs.
pub async fn cluster_status(json: bool, client: &ControlPlaneClient) -> Result<(), ClientError> {
    let status = client.cluster().await?;
    if json {
        print_json(&status);
        return Ok(());
    }
    println!("mode:        {}", status.mode);
    println!("this node:   {}", status.node_id);
    println!(
        "shards held: {} of {}",
        status.shards_held.len(),
        status.shards_total
    );
    println!("lease ttl:   {} s", status.lease_ttl_s);
    if status.nodes.is_empty() {
        return Ok(());
    }
    println!(
        "{:<28} {:<6} {:<26} {:>6}  listen",
        "node", "alive", "last heartbeat", "shards"
    );
    for n in &status.nodes {
        println!(
            "{:<28} {:<6} {:<26} {:>6}  {}",
            n.node_id,
            if n.alive { "yes" } else { "no" },
            n.last_heartbeat_at.to_rfc3339(),
            n.shards.len(),
            n.listen.as_deref().unwrap_or("-")
        );
    }
    let epochs: Vec<String> = status
        .leases
        .iter()
        .filter(|l| l.live)
        .map(|l| {
            format!(
                "{}:{}@{}",
                l.shard,
                l.owner.as_deref().unwrap_or("-"),
                l.epoch
            )
        })
        .collect();
    println!("live leases (shard:owner@epoch): {}", epochs.join(" "));
    Ok(())
}

/// `palyra posture`.
pub async fn posture(json: bool, client: &ControlPlaneClient) -> Result<(), ClientError> {
    let posture = client.posture().await?;
    if json {
        print_json(&posture);
    } else {
        print_posture(&posture);
    }
    Ok(())
}

/// `palyra audit`: one page of the audit log.
pub async fn audit(
    json: bool,
    client: &ControlPlaneClient,
    query: &palyra_http::routes::deployment::AuditParams,
) -> Result<(), ClientError> {
    let page = client.audit(query).await?;
    if json {
        print_json(&page);
    } else {
        for e in &page.events {
            println!(
                "{}  {:<22} {:<8} {:<24} {:<16} {}  {}",
                e.at.format("%Y-%m-%dT%H:%M:%SZ"),
                wire_name(e.kind),
                wire_name(e.outcome),
                e.actor,
                e.peer.as_deref().unwrap_or("-"),
                e.subject,
                e.detail
            );
        }
        if let Some(next) = &page.next_cursor {
            println!("more: --cursor {next}");
        }
    }
    Ok(())
}
