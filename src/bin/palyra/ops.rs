//! `palyra status`: the daemon's health and readiness (`/healthz`, `/readyz`).

use palyra::client::{ClientError, ControlPlaneClient};

/// Prints health and readiness; an error unless the daemon is ready.
pub async fn status(json: bool, url: &str, client: &ControlPlaneClient) -> Result<(), ClientError> {
    let health = client.healthz().await?;
    let ready = client.readyz().await?;
    if json {
        println!(
            "{}",
            serde_json::json!({ "health": health.status, "readiness": ready.status })
        );
    } else {
        println!("{url}: {}, {}", health.status, ready.status);
    }
    if ready.status != "ready" {
        return Err(ClientError::Protocol(format!(
            "the daemon is {}",
            ready.status
        )));
    }
    Ok(())
}
