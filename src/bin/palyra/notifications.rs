//! `palyra notifications`: webhook channels and their deliveries
//! (`/console/v1/notifications/...`, admin).

use clap::Subcommand;
use palyra::client::{ClientError, ControlPlaneClient};

use crate::output::{print_json, print_table};

#[derive(Debug, Subcommand)]
pub enum NotificationsCommand {
    /// The channels (never their secrets).
    Channels,
    /// Add a channel; its signing secret is printed this once.
    Add {
        /// The receiver: https (http only to loopback unless
        /// notifications.allow_insecure_urls). Not `url`: that is the daemon's.
        #[arg(value_name = "URL")]
        receiver: String,
        /// Event kinds, comma-separated: run_completed, run_failed, objective_paused,
        /// budget_threshold, profile_needs_reauth, refresh_failing,
        /// certificate_expiring, node_lost.
        #[arg(long, value_delimiter = ',', required = true)]
        events: Vec<String>,
        /// palyra (signed JSON), slack ({text}) or discord ({content}).
        #[arg(long, default_value = "palyra")]
        format: String,
        /// Only events of this agent.
        #[arg(long)]
        agent_id: Option<String>,
        /// Only events of this objective.
        #[arg(long)]
        objective_id: Option<String>,
    },
    /// Delete a channel and its secret.
    Remove { channel_id: String },
    /// Send a test event to one channel, through the outbox.
    Test { channel_id: String },
    /// Deliveries, newest first.
    Deliveries {
        #[arg(long)]
        channel_id: Option<String>,
        /// pending, delivered or failed.
        #[arg(long)]
        status: Option<String>,
    },
}

const CHANNEL_HEADER: [&str; 5] = ["ID", "FORMAT", "URL", "EVENTS", "STATE"];
const DELIVERY_HEADER: [&str; 7] = [
    "DELIVERY",
    "KIND",
    "STATUS",
    "ATTEMPTS",
    "CODE",
    "NEXT",
    "LAST ERROR",
];

pub async fn notifications(
    json: bool,
    client: &ControlPlaneClient,
    command: &NotificationsCommand,
) -> Result<(), ClientError> {
    match command {
        NotificationsCommand::Channels => {
            let list = client.list_channels().await?;
            if json {
                print_json(&list.channels);
            } else {
                let rows: Vec<_> = list
                    .channels
                    .iter()
                    .map(|c| {
                        vec![
                            c.channel_id.clone(),
                            palyra_actors::wire_name(c.format),
                            c.url.clone(),
                            c.events
                                .iter()
                                .map(|k| k.name())
                                .collect::<Vec<_>>()
                                .join(","),
                            if c.disabled {
                                "disabled".into()
                            } else {
                                "active".into()
                            },
                        ]
                    })
                    .collect();
                print_table(&CHANNEL_HEADER, &rows);
            }
        }
        NotificationsCommand::Add {
            receiver,
            events,
            format,
            agent_id,
            objective_id,
        } => {
            let body = serde_json::json!({
                "url": receiver, "events": events, "format": format,
                "agent_id": agent_id, "objective_id": objective_id,
            });
            let created = client.create_channel(body).await?;
            if json {
                let mut value = serde_json::to_value(&created.channel).unwrap_or_default();
                value["secret"] = created.secret.expose().into();
                print_json(&value);
            } else {
                println!(
                    "channel {} (its signing secret, shown once):",
                    created.channel.channel_id
                );
                println!("{}", created.secret.expose());
            }
        }
        NotificationsCommand::Remove { channel_id } => {
            client.delete_channel(channel_id).await?;
            if !json {
                println!("channel {channel_id} removed");
            }
        }
        NotificationsCommand::Test { channel_id } => {
            let queued = client.test_channel(channel_id).await?;
            if json {
                print_json(&queued);
            } else {
                println!("test event {} queued for {channel_id}", queued.event_id);
            }
        }
        NotificationsCommand::Deliveries { channel_id, status } => {
            let list = client
                .list_deliveries(channel_id.as_deref(), status.as_deref())
                .await?;
            if json {
                print_json(&list.deliveries);
            } else {
                let rows: Vec<_> = list
                    .deliveries
                    .iter()
                    .map(|d| {
                        vec![
                            d.delivery_id.clone(),
                            d.kind.name(),
                            palyra_actors::wire_name(d.status),
                            d.attempts.to_string(),
                            d.last_status_code
                                .map_or_else(|| "-".into(), |c| c.to_string()),
                            d.next_attempt_at
                                .map_or_else(|| "-".into(), |t| t.to_rfc3339()),
                            d.last_error.clone().unwrap_or_else(|| "-".into()),
                        ]
                    })
                    .collect();
                print_table(&DELIVERY_HEADER, &rows);
            }
        }
    }
    Ok(())
}
