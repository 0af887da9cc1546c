//! `palyra login` and `palyra console`: the admin token check and browser handoff
//! links (`/console/v1/auth/login`, `/console/v1/auth/browser-handoff`).

use clap::Subcommand;
use palyra::client::{ClientError, ControlPlaneClient};

use crate::output::open_browser;

#[derive(Debug, Subcommand)]
pub enum ConsoleCommand {
    /// Mint a single-use browser login link and print it.
    Open {
        /// Also open the link in the system browser.
        #[arg(long)]
        open: bool,
        /// Where the browser lands after login.
        #[arg(long)]
        redirect_path: Option<String>,
    },
}

/// `palyra login`: checks the admin token with a login and prints the principal.
pub async fn login(
    json: bool,
    client: &ControlPlaneClient,
    device_id: Option<&str>,
) -> Result<(), ClientError> {
    let session = client.login(device_id).await?;
    // The CLI keeps no cookie: the check's session is revoked straight away.
    client.logout(&session).await?;
    if json {
        println!(
            "{}",
            serde_json::json!({
                "principal": session.session.principal,
                "device_id": session.session.device_id,
            })
        );
    } else {
        println!(
            "admin token accepted; principal {}",
            session.session.principal
        );
    }
    Ok(())
}

/// `palyra login --operator ID`: checks the operator's password with a login and
/// prints the principal and role.
pub async fn login_operator(
    json: bool,
    client: &ControlPlaneClient,
    operator_id: &str,
    password: &palyra_actors::SecretString,
    device_id: Option<&str>,
) -> Result<(), ClientError> {
    let session = client
        .login_operator(operator_id, password, device_id)
        .await?;
    client.logout(&session).await?;
    if json {
        println!(
            "{}",
            serde_json::json!({
                "principal": session.session.principal,
                "role": session.session.role,
                "device_id": session.session.device_id,
            })
        );
    } else {
        println!(
            "password accepted; principal {}, role {}",
            session.session.principal,
            session.session.role.name()
        );
    }
    Ok(())
}

/// `palyra console ...`.
pub async fn console(
    json: bool,
    client: &ControlPlaneClient,
    command: &ConsoleCommand,
) -> Result<(), ClientError> {
    let ConsoleCommand::Open {
        open,
        redirect_path,
    } = command;
    let handoff = client
        .create_browser_handoff(redirect_path.as_deref())
        .await?;
    if json {
        println!("{}", serde_json::to_string(&handoff).unwrap_or_default());
    } else {
        println!("{}", handoff.handoff_url);
        eprintln!("single use, valid until {}", handoff.expires_at);
    }
    if *open {
        open_browser(&handoff.handoff_url);
    }
    Ok(())
}
