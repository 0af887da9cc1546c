//! palyra: the operator CLI of the Palyra daemon.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use palyra::client::{ClientError, ControlPlaneClient, DEFAULT_URL};
use palyra_actors::SecretString;
use palyra_actors::registry::{AuthProfile, AuthProfileScope, HealthState, NewCredential};
use palyra_http::routes::profiles::{CreateProfileRequest, ListQuery, ResolveQuery};

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
}

#[derive(Debug, Args)]
struct OAuthLogin {
    /// openai, anthropic or custom:<name>
    provider: String,
    /// A name for people (default: the provider).
    #[arg(long)]
    profile_name: Option<String>,
    /// Lowercase id of the profile to create or replace.
    #[arg(long)]
    profile_id: Option<String>,
    /// Scope the profile to one agent (default: global).
    #[arg(long)]
    agent_id: Option<String>,
    /// Make it the default of its provider and scope.
    #[arg(long)]
    set_default: bool,
    /// Also open the sign-in URL in the system browser.
    #[arg(long)]
    open: bool,
    /// Headless: paste the URL the browser was redirected to instead of waiting.
    #[arg(long, conflicts_with = "open")]
    manual: bool,
    /// Give up waiting after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout_s: u64,
}

#[derive(Debug, Subcommand)]
enum ProfilesCommand {
    /// List profiles.
    List {
        #[arg(long)]
        provider: Option<String>,
        /// global or agent
        #[arg(long)]
        scope: Option<String>,
        #[arg(long)]
        agent_id: Option<String>,
        #[arg(long)]
        limit: Option<usize>,
        #[arg(long)]
        after: Option<String>,
    },
    /// Show one profile.
    Show { profile_id: String },
    /// Add (or replace) a profile holding an API key. The key never comes from argv.
    AddApiKey(AddApiKey),
    /// Remove a profile and its secrets.
    Remove { profile_id: String },
    /// Make a profile the default of its provider and scope.
    SetDefault { profile_id: String },
    /// Health of every credential.
    Health,
    /// Refresh an OAuth profile's tokens now.
    Refresh { profile_id: String },
    /// Which profile an agent would use for a provider, and why.
    Resolve {
        #[arg(long)]
        provider: String,
        #[arg(long)]
        agent_id: Option<String>,
    },
}

#[derive(Debug, Args)]
struct AddApiKey {
    /// openai, anthropic or custom:<name>
    #[arg(long)]
    provider: String,
    /// A name for people.
    #[arg(long)]
    name: String,
    /// Lowercase id; generated when absent. An existing id is replaced.
    #[arg(long)]
    profile_id: Option<String>,
    /// Scope the profile to one agent (default: global).
    #[arg(long)]
    agent_id: Option<String>,
    /// Make it the default of its provider and scope.
    #[arg(long)]
    set_default: bool,
    /// Skip the check against the provider's /v1/models.
    #[arg(long)]
    no_validate: bool,
    /// Read the key from this environment variable.
    #[arg(long, conflicts_with = "api_key_stdin")]
    api_key_env: Option<String>,
    /// Read the key from standard input (first line).
    #[arg(long)]
    api_key_stdin: bool,
}

#[derive(Debug, Subcommand)]
enum VaultCommand {
    /// Re-seal every secret under a new master key.
    RotateKey,
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
            if ready.status != "ready" {
                return Err(ClientError::Protocol(format!(
                    "the daemon is {}",
                    ready.status
                )));
            }
        }
        Command::Auth {
            command: AuthCommand::Profiles { command },
        } => profiles(cli, &client(cli)?, command).await?,
        Command::Auth {
            command: AuthCommand::Login(args),
        } => oauth_login(cli, &client(cli)?, args).await?,
        Command::Vault {
            command: VaultCommand::RotateKey,
        } => {
            let report = client(cli)?.rotate_vault_key().await?;
            if cli.json {
                print_json(&report);
            } else {
                println!(
                    "vault key rotated: {} -> {} ({} secrets re-sealed)",
                    report.previous_key_id, report.key_id, report.secrets_resealed
                );
            }
        }
    }
    Ok(())
}

fn print_json<T: serde::Serialize>(value: &T) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

/// Prints rows as a table with aligned columns.
fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.iter().map(|h| (*h).to_owned()).collect());
    for row in rows {
        line(row.clone());
    }
}

fn scope_text(scope: &AuthProfileScope) -> String {
    match scope {
        AuthProfileScope::Global => "global".into(),
        AuthProfileScope::Agent { agent_id } => format!("agent:{agent_id}"),
    }
}

fn profile_row(p: &AuthProfile) -> Vec<String> {
    let (kind, hint) = match &p.record.credential {
        palyra_actors::registry::AuthCredential::ApiKey { hint, .. } => ("api_key", hint.clone()),
        palyra_actors::registry::AuthCredential::Oauth { .. } => ("oauth", String::new()),
    };
    vec![
        p.record.profile_id.clone(),
        p.record.provider.clone(),
        p.record.profile_name.clone(),
        scope_text(&p.record.scope),
        kind.into(),
        hint,
        if p.is_default {
            "yes".into()
        } else {
            String::new()
        },
    ]
}

const PROFILE_HEADER: [&str; 7] = ["ID", "PROVIDER", "NAME", "SCOPE", "TYPE", "HINT", "DEFAULT"];

fn read_api_key(args: &AddApiKey) -> Result<SecretString, ClientError> {
    let invalid = |m: &str| ClientError::Protocol(m.to_owned());
    let key = if let Some(var) = &args.api_key_env {
        std::env::var(var)
            .map_err(|_| invalid(&format!("environment variable {var} is not set")))?
    } else if args.api_key_stdin {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map_err(|e| invalid(&format!("cannot read standard input: {e}")))?;
        line
    } else {
        rpassword::prompt_password("API key: ")
            .map_err(|e| invalid(&format!("cannot read the key from the terminal: {e}")))?
    };
    Ok(SecretString::new(key.trim().to_owned()))
}

async fn profiles(
    cli: &Cli,
    client: &ControlPlaneClient,
    command: &ProfilesCommand,
) -> Result<(), ClientError> {
    match command {
        ProfilesCommand::List {
            provider,
            scope,
            agent_id,
            limit,
            after,
        } => {
            let page = client
                .list_profiles(&ListQuery {
                    provider: provider.clone(),
                    scope: scope.clone(),
                    agent_id: agent_id.clone(),
                    limit: *limit,
                    after: after.clone(),
                })
                .await?;
            if cli.json {
                print_json(&page);
            } else {
                let rows: Vec<_> = page.items.iter().map(profile_row).collect();
                print_table(&PROFILE_HEADER, &rows);
                if let Some(next) = page.next_after {
                    println!("more: --after {next}");
                }
            }
        }
        ProfilesCommand::Show { profile_id } => {
            let profile = client.get_profile(profile_id).await?;
            if cli.json {
                print_json(&profile);
            } else {
                print_table(&PROFILE_HEADER, &[profile_row(&profile)]);
            }
        }
        ProfilesCommand::AddApiKey(args) => {
            let api_key = read_api_key(args)?;
            let request = CreateProfileRequest {
                profile_id: args.profile_id.clone(),
                provider: args.provider.clone(),
                profile_name: args.name.clone(),
                scope: Some(match &args.agent_id {
                    Some(agent_id) => AuthProfileScope::Agent {
                        agent_id: agent_id.clone(),
                    },
                    None => AuthProfileScope::Global,
                }),
                credential: NewCredential::ApiKey { api_key },
                set_default: args.set_default,
                validate: Some(!args.no_validate),
            };
            let profile = client.create_profile(&request).await?;
            if cli.json {
                print_json(&profile);
            } else {
                println!("saved profile {}", profile.record.profile_id);
            }
        }
        ProfilesCommand::Remove { profile_id } => {
            client.delete_profile(profile_id).await?;
            if cli.json {
                print_json(&serde_json::json!({ "removed": profile_id }));
            } else {
                println!("removed profile {profile_id}");
            }
        }
        ProfilesCommand::SetDefault { profile_id } => {
            let profile = client.set_default_profile(profile_id).await?;
            if cli.json {
                print_json(&profile);
            } else {
                println!(
                    "{} is now the default {} profile for {}",
                    profile.record.profile_id,
                    profile.record.provider,
                    scope_text(&profile.record.scope)
                );
            }
        }
        ProfilesCommand::Health => {
            let report = client.auth_health().await?;
            if cli.json {
                print_json(&report);
            } else {
                let rows: Vec<_> = report
                    .profiles
                    .iter()
                    .map(|h| {
                        vec![
                            h.profile_id.clone(),
                            h.provider.clone(),
                            scope_text(&h.scope),
                            serde_json::to_value(h.state)
                                .ok()
                                .and_then(|v| v.as_str().map(str::to_owned))
                                .unwrap_or_default(),
                            h.until.map(|t| t.to_rfc3339()).unwrap_or_default(),
                        ]
                    })
                    .collect();
                print_table(&["ID", "PROVIDER", "SCOPE", "STATE", "UNTIL"], &rows);
                let counts: Vec<String> = HealthState::ALL
                    .iter()
                    .filter_map(|s| {
                        let n = report.counts.get(s).copied().unwrap_or(0);
                        let name = serde_json::to_value(s).ok()?.as_str()?.to_owned();
                        (n > 0).then(|| format!("{name}: {n}"))
                    })
                    .collect();
                println!(
                    "{}",
                    if counts.is_empty() {
                        "no profiles".into()
                    } else {
                        counts.join(", ")
                    }
                );
            }
        }
        ProfilesCommand::Refresh { profile_id } => {
            let report = client.refresh_profile(profile_id).await?;
            if cli.json {
                print_json(&report);
            } else {
                let outcome = serde_json::to_value(report.outcome)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                match &report.reason {
                    Some(reason) => println!("{profile_id}: {outcome}: {reason}"),
                    None => println!("{profile_id}: {outcome}"),
                }
            }
            if report.outcome != palyra_actors::refresher::RefreshOutcomeKind::Succeeded {
                return Err(ClientError::Protocol("the refresh did not succeed".into()));
            }
        }
        ProfilesCommand::Resolve { provider, agent_id } => {
            let answer = client
                .resolve_profile(&ResolveQuery {
                    provider: provider.clone(),
                    agent_id: agent_id.clone(),
                })
                .await?;
            if cli.json {
                print_json(&answer);
            } else {
                match &answer.profile_id {
                    Some(id) => println!("{id} ({})", answer.detail),
                    None => println!("none: {}", answer.detail),
                }
            }
        }
    }
    Ok(())
}

/// The whole sign-in: bootstrap, print (or open) the URL, then wait for the callback,
/// or take the pasted redirect URL on a headless server.
async fn oauth_login(
    cli: &Cli,
    client: &ControlPlaneClient,
    args: &OAuthLogin,
) -> Result<(), ClientError> {
    use palyra_actors::registry::oauth_flow::AttemptStatus;
    let started = client
        .bootstrap_sign_in(
            &args.provider,
            &palyra_http::routes::oauth::BootstrapRequest {
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
            },
        )
        .await?;
    eprintln!(
        "Open this URL to sign in (valid until {}):",
        started.expires_at
    );
    println!("{}", started.authorization_url);
    if args.open {
        open_browser(&started.authorization_url);
    }
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
            let outcome = client
                .sign_in_state(&args.provider, &started.attempt_id)
                .await?;
            if outcome.status != AttemptStatus::Pending || std::time::Instant::now() > deadline {
                break outcome;
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    };
    if cli.json {
        print_json(&outcome);
    }
    match outcome.status {
        AttemptStatus::Succeeded { profile_id } => {
            if !cli.json {
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

fn open_browser(url: &str) {
    // Only a link of the daemon's own form goes to the system opener.
    if !url.starts_with("http://") && !url.starts_with("https://") {
        eprintln!("palyra: not opening an unexpected link; open it by hand");
        return;
    }
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    if let Err(e) = std::process::Command::new(opener).arg(url).spawn() {
        eprintln!("palyra: cannot start {opener}: {e}; open the link by hand");
    }
}
