//! `palyra auth login`: OAuth sign-in of a provider (`/console/v1/auth/providers`).

use clap::Args;
use palyra::client::{ClientError, ControlPlaneClient};
use palyra_actors::SecretString;
use palyra_actors::registry::AuthProfileScope;

use crate::output::{open_browser, print_json};

#[derive(Debug, Args)]
pub struct OAuthLogin {
    /// openai, anthropic or custom:<name>
    pub provider: String,
    /// A name for people (default: the provider).
    #[arg(long)]
    pub profile_name: Option<String>,
    /// Lowercase id of the profile to create or replace.
    #[arg(long)]
    pub profile_id: Option<String>,
    /// Scope the profile to one agent (default: global).
    #[arg(long)]
    pub agent_id: Option<String>,
    /// Make it the default of its provider and scope.
    #[arg(long)]
    pub set_default: bool,
    /// Also open the sign-in URL in the system browser.
    #[arg(long)]
    pub open: bool,
    /// Headless: paste the URL the browser was redirected to instead of waiting.
    #[arg(long, conflicts_with = "open")]
    pub manual: bool,
    /// Headless: device sign-in (RFC 8628); enter the printed code on any device.
    #[arg(long, conflicts_with_all = ["open", "manual"])]
    pub device: bool,
    /// Give up waiting after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout_s: u64,
}

/// The whole sign-in: bootstrap, print (or open) the URL, then wait for the callback,
/// or take the pasted redirect URL on a headless server.
pub async fn oauth_login(
    json: bool,
    client: &ControlPlaneClient,
    args: &OAuthLogin,
) -> Result<(), ClientError> {
    use palyra_actors::registry::oauth_flow::AttemptStatus;
    let request = palyra_http::routes::oauth::BootstrapRequest {
        profile_name: args
            .profile_name
            .clone()
            .unwrap_or_else(|| args.provider.clone()),
        profile_id: args.profile_id.clone(),
        scope: args
            .agent_id
            .as_ref()
            .map(|agent_id| AuthProfileScope::Agent {
                agent_id: agent_id.clone(),
            }),
        scopes: None,
        set_default: args.set_default,
    };
    let attempt_id = if args.device {
        let started = client
            .begin_device_sign_in(&args.provider, &request)
            .await?;
        eprintln!(
            "On any device, open the URL below and enter the code (valid until {}):",
            started.expires_at
        );
        println!("{}", started.verification_uri);
        println!("code: {}", started.user_code);
        if let Some(complete) = &started.verification_uri_complete {
            eprintln!("(or open {complete}, which carries the code)");
        }
        started.attempt_id
    } else {
        let started = client.bootstrap_sign_in(&args.provider, &request).await?;
        eprintln!(
            "Open this URL to sign in (valid until {}):",
            started.expires_at
        );
        println!("{}", started.authorization_url);
        if args.open {
            open_browser(&started.authorization_url);
        }
        started.attempt_id
    };
    let outcome = if args.manual {
        eprintln!("After signing in, paste the URL your browser was sent to:");
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map_err(|e| ClientError::Protocol(format!("cannot read standard input: {e}")))?;
        client
            .complete_sign_in_manually(&args.provider, &SecretString::new(line.trim().to_owned()))
            .await?
    } else {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(args.timeout_s);
        loop {
            let outcome = client.sign_in_state(&args.provider, &attempt_id).await?;
            if outcome.status != AttemptStatus::Pending || std::time::Instant::now() > deadline {
                break outcome;
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    };
    if json {
        print_json(&outcome);
    }
    match outcome.status {
        AttemptStatus::Succeeded { profile_id } => {
            if !json {
                println!("signed in: profile {profile_id}");
            }
            Ok(())
        }
        AttemptStatus::Failed { reason } => {
            Err(ClientError::Protocol(format!("sign-in failed: {reason}")))
        }
        AttemptStatus::Pending => Err(ClientError::Protocol(
            "timed out waiting for the sign-in".into(),
        )),
    }
}

/// `palyra auth client-secret`: a provider's OAuth client secret, sealed in the
/// daemon's vault. The secret is read from a hidden prompt or standard input, never
/// from argv (which other users of the host can read).
#[derive(Debug, clap::Subcommand)]
pub enum ClientSecretCommand {
    /// Seal the provider's client secret in the vault (replacing one set before).
    Set {
        /// openai, anthropic or custom:<name>
        provider: String,
        /// Read the secret from standard input (one line) instead of a prompt.
        #[arg(long)]
        stdin: bool,
    },
    /// Remove the provider's client secret from the vault.
    Remove {
        /// openai, anthropic or custom:<name>
        provider: String,
    },
}

pub async fn client_secret(
    json: bool,
    client: &ControlPlaneClient,
    command: &ClientSecretCommand,
) -> Result<(), ClientError> {
    let (provider, what) = match command {
        ClientSecretCommand::Set { provider, stdin } => {
            let secret = crate::operators::read_password(*stdin, "Client secret: ")?;
            if secret.is_empty() {
                return Err(ClientError::Protocol("the client secret is empty".into()));
            }
            client.set_client_secret(provider, &secret).await?;
            (provider, "sealed")
        }
        ClientSecretCommand::Remove { provider } => {
            client.delete_client_secret(provider).await?;
            (provider, "removed")
        }
    };
    if json {
        print_json(&serde_json::json!({ "provider": provider, "client_secret": what }));
    } else {
        println!("{provider}: client secret {what}");
    }
    Ok(())
}
