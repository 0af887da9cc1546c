//! palyra: the operator CLI of the Palyra daemon.
//!
//! One module per resource, mirroring the admin API's routes (http/src/routes/):
//! [`console_auth`] (login, console links), [`ops`] (status), [`profiles`] (auth
//! profiles, the vault), [`oauth`] (sign-in), [`objectives`] (agents, objectives),
//! [`browser`] (browser sessions), [`deployment`] (posture, audit), [`operators`]
//! (operators, API tokens, password login), [`usage`] (the usage report); [`output`] formats
//! what they print.

mod browser;
mod console_auth;
mod deployment;
mod notifications;
mod oauth;
mod objectives;
mod operators;
mod ops;
mod output;
mod profiles;
mod transcript;
mod usage;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use palyra::client::{ClientError, ControlPlaneClient, DEFAULT_URL};
use palyra_actors::SecretString;

use crate::browser::BrowserCommand;
use crate::console_auth::ConsoleCommand;
use crate::notifications::NotificationsCommand;
use crate::oauth::{ClientSecretCommand, OAuthLogin};
use crate::objectives::{AgentsCommand, ObjectivesCommand};
use crate::operators::{OperatorsCommand, TokensCommand};
use crate::profiles::{ProfilesCommand, VaultCommand};

#[derive(Debug, Parser)]
#[command(name = "palyra", version, about = "Operator CLI of the Palyra daemon")]
struct Cli {
    /// The daemon's URL.
    #[arg(long, env = "PALYRA_URL", default_value = DEFAULT_URL, global = true)]
    url: String,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// The daemon's data dir, where the admin token file is (when PALYRA_ADMIN_TOKEN is unset).
    #[arg(long, env = "PALYRA_DATA_DIR", global = true)]
    data_dir: Option<PathBuf>,
    /// A PEM CA certificate to trust for an https URL (for a self-signed certificate,
    /// the certificate itself).
    #[arg(long, env = "PALYRA_CA_CERT", global = true)]
    ca_cert: Option<PathBuf>,
    /// Instead of --ca-cert: trust exactly the certificate with this SHA-256
    /// fingerprint (`sha256:...`, as palyrad logs it at start).
    #[arg(
        long,
        env = "PALYRA_TLS_PIN",
        global = true,
        conflicts_with = "ca_cert"
    )]
    tls_pin: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check the admin token (or, with --operator, an operator's password) against the
    /// daemon and print the principal and role.
    Login {
        /// Log in as this operator; the password is asked for (never an argument).
        #[arg(long)]
        operator: Option<String>,
        /// Read the operator's password from standard input instead of a prompt.
        #[arg(long, requires = "operator")]
        password_stdin: bool,
        #[arg(long)]
        device_id: Option<String>,
    },
    /// The web console.
    Console {
        #[command(subcommand)]
        command: ConsoleCommand,
    },
    /// Health and readiness of the daemon.
    Status,
    /// Auth profiles: credentials for model providers.
    Auth {
        #[command(subcommand)]
        command: AuthCommand,
    },
    /// The vault that holds the secrets.
    Vault {
        #[command(subcommand)]
        command: VaultCommand,
    },
    /// Operators: who signs in, with which role (admin).
    Operators {
        #[command(subcommand)]
        command: OperatorsCommand,
    },
    /// API tokens of operators, for scripts (admin).
    Tokens {
        #[command(subcommand)]
        command: TokensCommand,
    },
    /// Notification channels (signed webhooks) and their deliveries (admin).
    Notifications {
        #[command(subcommand)]
        command: NotificationsCommand,
    },
    /// Agents: who runs objectives, with which model and credential.
    Agents {
        #[command(subcommand)]
        command: AgentsCommand,
    },
    /// Objectives: standing orders, heartbeats and programs on schedules.
    Objectives {
        #[command(subcommand)]
        command: ObjectivesCommand,
    },
    /// The deployment's security posture: binds, TLS, token and key sources, warnings.
    Posture,
    /// The cluster of nodes sharing this daemon's PostgreSQL database.
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// The audit log, newest first.
    Audit {
        /// Only events of this kind (login, login_failed, profile_created, ...).
        #[arg(long)]
        kind: Option<String>,
        /// Only events at or after this RFC 3339 instant.
        #[arg(long)]
        since: Option<String>,
        /// Only events at or before this RFC 3339 instant.
        #[arg(long)]
        until: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// The cursor printed after the previous page.
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Headless browser sessions run by the daemon.
    Browser {
        #[command(subcommand)]
        command: BrowserCommand,
    },
    /// Tokens and cost estimates per agent, profile, model or objective, per day.
    Usage(usage::UsageArgs),
}

#[derive(Debug, Subcommand)]
enum ClusterCommand {
    /// Nodes, their last heartbeat, the shards each holds and the lease epochs.
    Status,
}

#[derive(Debug, Subcommand)]
enum AuthCommand {
    /// Auth profiles.
    Profiles {
        #[command(subcommand)]
        command: ProfilesCommand,
    },
    /// Sign in with an OAuth provider (PKCE); the daemon keeps the tokens fresh.
    Login(OAuthLogin),
    /// A provider's OAuth client secret, sealed in the vault (admin).
    ClientSecret {
        #[command(subcommand)]
        command: ClientSecretCommand,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if cli.json {
                println!("{}", serde_json::json!({ "error": e.to_string() }));
            } else {
                eprintln!("palyra: {e}");
            }
            ExitCode::FAILURE
        }
    }
}

fn client(cli: &Cli) -> Result<ControlPlaneClient, ClientError> {
    let token = ControlPlaneClient::find_admin_token(
        std::env::var("PALYRA_ADMIN_TOKEN").ok(),
        cli.data_dir.as_deref(),
    )?;
    client_with(cli, Some(token))
}

fn client_with(cli: &Cli, token: Option<SecretString>) -> Result<ControlPlaneClient, ClientError> {
    if let Some(pin) = &cli.tls_pin {
        return ControlPlaneClient::with_tls_pin(&cli.url, token, pin);
    }
    match &cli.ca_cert {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| {
                ClientError::Protocol(format!("cannot read {}: {e}", path.display()))
            })?;
            ControlPlaneClient::with_ca_cert(&cli.url, token, &pem)
        }
        None => Ok(ControlPlaneClient::new(&cli.url, token)),
    }
}

async fn run(cli: &Cli) -> Result<(), ClientError> {
    let json = cli.json;
    match &cli.command {
        Command::Login {
            operator: Some(operator),
            password_stdin,
            device_id,
        } => {
            let password = operators::read_password(*password_stdin, "Password: ")?;
            let client = client_with(cli, None)?;
            console_auth::login_operator(json, &client, operator, &password, device_id.as_deref())
                .await
        }
        Command::Login {
            operator: None,
            device_id,
            ..
        } => console_auth::login(json, &client(cli)?, device_id.as_deref()).await,
        Command::Operators { command } => operators::operators(json, &client(cli)?, command).await,
        Command::Tokens { command } => operators::tokens(json, &client(cli)?, command).await,
        Command::Notifications { command } => {
            notifications::notifications(json, &client(cli)?, command).await
        }
        Command::Console { command } => console_auth::console(json, &client(cli)?, command).await,
        Command::Status => ops::status(json, &cli.url, &client_with(cli, None)?).await,
        Command::Auth {
            command: AuthCommand::Profiles { command },
        } => profiles::profiles(json, &client(cli)?, command).await,
        Command::Auth {
            command: AuthCommand::Login(args),
        } => oauth::oauth_login(json, &client(cli)?, args).await,
        Command::Auth {
            command: AuthCommand::ClientSecret { command },
        } => oauth::client_secret(json, &client(cli)?, command).await,
        Command::Agents { command } => objectives::agents(json, &client(cli)?, command).await,
        Command::Objectives { command } => {
            objectives::objectives(json, &client(cli)?, command).await
        }
        Command::Posture => deployment::posture(json, &client(cli)?).await,
        Command::Cluster {
            command: ClusterCommand::Status,
        } => deployment::cluster_status(json, &client(cli)?).await,
        Command::Audit {
            kind,
            since,
            until,
            limit,
            cursor,
        } => {
            let query = deployment::audit_query(kind, since, until, *limit, cursor)?;
            deployment::audit(json, &client(cli)?, &query).await
        }
        Command::Browser { command } => browser::browser(json, &client(cli)?, command).await,
        Command::Vault { command } => profiles::vault(json, &client(cli)?, command).await,
        Command::Usage(args) => usage::usage(json, &client(cli)?, args).await,
    }
}
