//! palyra: the operator CLI of the Palyra daemon.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use palyra::client::{ClientError, ControlPlaneClient, DEFAULT_URL};

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
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check the admin token against the daemon and print the principal.
    Login {
        #[arg(long)]
        principal: Option<String>,
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
}

#[derive(Debug, Subcommand)]
enum ConsoleCommand {
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
    Ok(ControlPlaneClient::new(&cli.url, Some(token)))
}

async fn run(cli: &Cli) -> Result<(), ClientError> {
    match &cli.command {
        Command::Login {
            principal,
            device_id,
        } => {
            let client = client(cli)?;
            let session = client
                .login(principal.as_deref(), device_id.as_deref())
                .await?;
            // The CLI keeps no cookie: the check's session is revoked straight away.
            client.logout(&session).await?;
            if cli.json {
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
        }
        Command::Console {
            command:
                ConsoleCommand::Open {
                    open,
                    redirect_path,
                },
        } => {
            let handoff = client(cli)?
                .create_browser_handoff(redirect_path.as_deref())
                .await?;
            if cli.json {
                println!("{}", serde_json::to_string(&handoff).unwrap_or_default());
            } else {
                println!("{}", handoff.handoff_url);
                eprintln!("single use, valid until {}", handoff.expires_at);
            }
            if *open {
                open_browser(&handoff.handoff_url);
            }
        }
        Command::Status => {
            let client = ControlPlaneClient::new(&cli.url, None);
            let health = client.healthz().await?;
            let ready = client.readyz().await?;
            if cli.json {
                println!(
                    "{}",
                    serde_json::json!({ "health": health.status, "readiness": ready.status })
                );
            } else {
                println!("{}: {}, {}", cli.url, health.status, ready.status);
            }
        }
    }
    Ok(())
}

fn open_browser(url: &str) {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    if let Err(e) = std::process::Command::new(opener).arg(url).spawn() {
        eprintln!("palyra: cannot start {opener}: {e}; open the link by hand");
    }
}
