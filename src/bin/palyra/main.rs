//! palyra: the operator CLI of the Palyra daemon.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use palyra::client::{ClientError, ControlPlaneClient, DEFAULT_URL};
use palyra_actors::registry::{AuthProfile, AuthProfileScope, HealthState, NewCredential};
use palyra_actors::{SecretString, wire_name};
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
    /// A PEM CA certificate to trust for an https URL (for a self-signed certificate,
    /// the certificate itself).
    #[arg(long, env = "PALYRA_CA_CERT", global = true)]
    ca_cert: Option<PathBuf>,
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
}

#[derive(Debug, Subcommand)]
enum BrowserCommand {
    /// Start a session; prints its id.
    Open {
        /// An http or https URL to load first.
        start_url: Option<String>,
        /// Viewport width in CSS pixels (with --height).
        #[arg(long, requires = "height")]
        width: Option<u32>,
        /// Viewport height in CSS pixels (with --width).
        #[arg(long, requires = "width")]
        height: Option<u32>,
    },
    /// Load a URL and wait until it has loaded.
    Navigate {
        session_id: String,
        /// An http or https URL. (Not named `url`: that is the daemon's `--url`.)
        #[arg(value_name = "URL")]
        page_url: String,
    },
    /// Click the first element matching a CSS selector.
    Click {
        session_id: String,
        selector: String,
    },
    /// Type text into the first element matching a CSS selector.
    Type {
        session_id: String,
        selector: String,
        text: String,
    },
    /// Save a PNG of the viewport.
    Screenshot {
        session_id: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the page's text.
    Content { session_id: String },
    /// End a session.
    Close { session_id: String },
    /// The live sessions.
    List,
}

#[derive(Debug, Subcommand)]
enum AgentsCommand {
    List,
    Show {
        agent_id: String,
    },
    Create {
        #[arg(long)]
        agent_id: String,
        #[arg(long)]
        model: String,
        #[arg(long)]
        display_name: Option<String>,
        /// An absolute path the agent works in (repeatable).
        #[arg(long = "workspace-root")]
        workspace_roots: Vec<String>,
        /// The auth profile its runs use.
        #[arg(long)]
        profile: Option<String>,
    },
    Update {
        agent_id: String,
        #[arg(long)]
        model: Option<String>,
        #[arg(long)]
        display_name: Option<String>,
        #[arg(long = "workspace-root")]
        workspace_roots: Vec<String>,
        #[arg(long, conflicts_with = "clear_profile")]
        profile: Option<String>,
        #[arg(long)]
        clear_profile: bool,
    },
    Remove {
        agent_id: String,
    },
}

#[derive(Debug, Args)]
struct ObjectiveFields {
    #[arg(long)]
    name: Option<String>,
    #[arg(long)]
    prompt: Option<String>,
    /// A program step (repeatable, in order).
    #[arg(long = "step")]
    steps: Vec<String>,
    /// Cron (5 fields, or 6 with seconds first) or @hourly, @daily, @weekly.
    #[arg(long)]
    schedule: Option<String>,
    /// IANA time zone of the schedule (default UTC).
    #[arg(long)]
    timezone: Option<String>,
    /// skip or run_once
    #[arg(long)]
    misfire: Option<String>,
    /// forbid or queue_one
    #[arg(long)]
    overlap: Option<String>,
    #[arg(long)]
    jitter_s: Option<u32>,
    #[arg(long)]
    max_runs: Option<u64>,
    #[arg(long)]
    max_tokens: Option<u64>,
}

#[derive(Debug, Subcommand)]
enum ObjectivesCommand {
    List {
        #[arg(long)]
        kind: Option<String>,
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        agent_id: Option<String>,
    },
    Show {
        objective_id: String,
    },
    Create {
        #[arg(long)]
        agent_id: String,
        #[arg(long)]
        objective_id: Option<String>,
        /// objective, heartbeat, standing_order or program
        #[arg(long, default_value = "objective")]
        kind: String,
        /// Start active instead of draft.
        #[arg(long)]
        activate: bool,
        #[command(flatten)]
        fields: ObjectiveFields,
    },
    Update {
        objective_id: String,
        #[command(flatten)]
        fields: ObjectiveFields,
    },
    Activate(LifecycleArgs),
    Pause(LifecycleArgs),
    Resume(LifecycleArgs),
    Cancel(LifecycleArgs),
    Archive(LifecycleArgs),
    /// Run now, within budget.
    Fire(LifecycleArgs),
    /// Run history, newest first.
    Runs {
        objective_id: String,
        #[arg(long)]
        limit: Option<usize>,
    },
}

#[derive(Debug, Args)]
struct LifecycleArgs {
    objective_id: String,
    #[arg(long)]
    reason: Option<String>,
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
    client_with(cli, Some(token))
}

fn client_with(cli: &Cli, token: Option<SecretString>) -> Result<ControlPlaneClient, ClientError> {
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
            let client = client_with(cli, None)?;
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
        Command::Agents { command } => agents(cli, &client(cli)?, command).await?,
        Command::Objectives { command } => objectives(cli, &client(cli)?, command).await?,
        Command::Posture => {
            let posture = client(cli)?.posture().await?;
            if cli.json {
                print_json(&posture);
            } else {
                print_posture(&posture);
            }
        }
        Command::Audit {
            kind,
            since,
            until,
            limit,
            cursor,
        } => {
            let query = audit_query(kind, since, until, *limit, cursor)?;
            let page = client(cli)?.audit(&query).await?;
            if cli.json {
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
        }
        Command::Browser { command } => browser(cli, &client(cli)?, command).await?,
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

/// The audit query from the command line; values are checked by their types here so
/// a typo is named before anything is sent.
fn audit_query(
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
        "session timeouts:    idle {} s, absolute {} s",
        p.session_idle_timeout_s, p.session_absolute_timeout_s
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
                            wire_name(h.state),
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
                let outcome = wire_name(report.outcome);
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

fn agent_row(a: &palyra_actors::objectives::AgentRecord) -> Vec<String> {
    vec![
        a.agent_id.clone(),
        a.display_name.clone(),
        a.model.clone(),
        a.default_model_profile.clone().unwrap_or_default(),
        a.workspace_roots.join(","),
    ]
}

const AGENT_HEADER: [&str; 5] = ["ID", "NAME", "MODEL", "PROFILE", "WORKSPACES"];

async fn agents(
    cli: &Cli,
    client: &ControlPlaneClient,
    command: &AgentsCommand,
) -> Result<(), ClientError> {
    let agent = match command {
        AgentsCommand::List => {
            let page = client.list_agents(&Default::default()).await?;
            if cli.json {
                print_json(&page);
            } else {
                print_table(
                    &AGENT_HEADER,
                    &page.items.iter().map(agent_row).collect::<Vec<_>>(),
                );
            }
            return Ok(());
        }
        AgentsCommand::Remove { agent_id } => {
            client.delete_agent(agent_id).await?;
            if cli.json {
                print_json(&serde_json::json!({ "removed": agent_id }));
            } else {
                println!("removed agent {agent_id}");
            }
            return Ok(());
        }
        AgentsCommand::Show { agent_id } => client.get_agent(agent_id).await?,
        AgentsCommand::Create {
            agent_id,
            model,
            display_name,
            workspace_roots,
            profile,
        } => {
            client
                .create_agent(serde_json::json!({
                    "agent_id": agent_id, "model": model, "display_name": display_name,
                    "workspace_roots": workspace_roots, "default_model_profile": profile,
                }))
                .await?
        }
        AgentsCommand::Update {
            agent_id,
            model,
            display_name,
            workspace_roots,
            profile,
            clear_profile,
        } => {
            let mut patch = serde_json::Map::new();
            if let Some(v) = model {
                patch.insert("model".into(), v.clone().into());
            }
            if let Some(v) = display_name {
                patch.insert("display_name".into(), v.clone().into());
            }
            if !workspace_roots.is_empty() {
                patch.insert("workspace_roots".into(), serde_json::json!(workspace_roots));
            }
            if let Some(v) = profile {
                patch.insert("default_model_profile".into(), v.clone().into());
            } else if *clear_profile {
                patch.insert("default_model_profile".into(), serde_json::Value::Null);
            }
            client.update_agent(agent_id, patch.into()).await?
        }
    };
    if cli.json {
        print_json(&agent);
    } else {
        print_table(&AGENT_HEADER, &[agent_row(&agent)]);
    }
    Ok(())
}

fn objective_row(o: &palyra_actors::objectives::ObjectiveRecord) -> Vec<String> {
    vec![
        o.objective_id.clone(),
        o.agent_id.clone(),
        wire_name(o.kind),
        wire_name(o.state),
        o.automation
            .as_ref()
            .map(|a| a.schedule.clone())
            .unwrap_or_default(),
        o.next_run_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
        format!("{} runs, {} tokens", o.usage.runs, o.usage.tokens),
    ]
}

const OBJECTIVE_HEADER: [&str; 7] = [
    "ID", "AGENT", "KIND", "STATE", "SCHEDULE", "NEXT RUN", "USAGE",
];

fn objective_fields(fields: &ObjectiveFields) -> serde_json::Map<String, serde_json::Value> {
    let mut body = serde_json::Map::new();
    if let Some(v) = &fields.name {
        body.insert("name".into(), v.clone().into());
    }
    if let Some(v) = &fields.prompt {
        body.insert("prompt".into(), v.clone().into());
    }
    if !fields.steps.is_empty() {
        body.insert("steps".into(), serde_json::json!(fields.steps));
    }
    if fields.max_runs.is_some() || fields.max_tokens.is_some() {
        body.insert(
            "budget".into(),
            serde_json::json!({ "max_runs": fields.max_runs, "max_tokens": fields.max_tokens }),
        );
    }
    let mut automation = serde_json::Map::new();
    for (key, value) in [
        ("schedule", fields.schedule.clone()),
        ("timezone", fields.timezone.clone()),
        ("misfire", fields.misfire.clone()),
        ("overlap", fields.overlap.clone()),
    ] {
        if let Some(v) = value {
            automation.insert(key.into(), v.into());
        }
    }
    if let Some(j) = fields.jitter_s {
        automation.insert("jitter_s".into(), j.into());
    }
    if !automation.is_empty() {
        body.insert("automation".into(), automation.into());
    }
    body
}

async fn objectives(
    cli: &Cli,
    client: &ControlPlaneClient,
    command: &ObjectivesCommand,
) -> Result<(), ClientError> {
    use palyra_actors::objectives::LifecycleAction as A;
    use palyra_http::routes::objectives::{LifecycleRequest, ObjectiveQuery, RunQuery};
    let objective = match command {
        ObjectivesCommand::List {
            kind,
            state,
            agent_id,
        } => {
            fn parse<T: serde::de::DeserializeOwned>(
                value: &Option<String>,
                help: &str,
            ) -> Result<Option<T>, ClientError> {
                value
                    .as_ref()
                    .map(|v| serde_json::from_value(serde_json::Value::String(v.clone())))
                    .transpose()
                    .map_err(|_| ClientError::Protocol(help.to_owned()))
            }
            let query = ObjectiveQuery {
                kind: parse(
                    kind,
                    "--kind: objective, heartbeat, standing_order or program",
                )?,
                state: parse(
                    state,
                    "--state: draft, active, paused, cancelled or archived",
                )?,
                agent_id: agent_id.clone(),
                ..Default::default()
            };
            let page = client.list_objectives(&query).await?;
            if cli.json {
                print_json(&page);
            } else {
                print_table(
                    &OBJECTIVE_HEADER,
                    &page.items.iter().map(objective_row).collect::<Vec<_>>(),
                );
            }
            return Ok(());
        }
        ObjectivesCommand::Runs {
            objective_id,
            limit,
        } => {
            let page = client
                .objective_runs(
                    objective_id,
                    &RunQuery {
                        limit: *limit,
                        before: None,
                    },
                )
                .await?;
            if cli.json {
                print_json(&page);
            } else {
                let rows: Vec<_> = page
                    .items
                    .iter()
                    .map(|r| {
                        vec![
                            r.run_id.clone(),
                            wire_name(r.trigger),
                            wire_name(r.status),
                            r.scheduled_for.map(|t| t.to_rfc3339()).unwrap_or_default(),
                            r.tokens.to_string(),
                            r.error.clone().unwrap_or_default(),
                        ]
                    })
                    .collect();
                print_table(
                    &[
                        "RUN",
                        "TRIGGER",
                        "STATUS",
                        "SCHEDULED FOR",
                        "TOKENS",
                        "ERROR",
                    ],
                    &rows,
                );
            }
            return Ok(());
        }
        ObjectivesCommand::Show { objective_id } => client.get_objective(objective_id).await?,
        ObjectivesCommand::Create {
            agent_id,
            objective_id,
            kind,
            activate,
            fields,
        } => {
            let mut body = objective_fields(fields);
            body.insert("agent_id".into(), agent_id.clone().into());
            body.insert("kind".into(), kind.clone().into());
            body.insert("activate".into(), (*activate).into());
            if let Some(id) = objective_id {
                body.insert("objective_id".into(), id.clone().into());
            }
            if !body.contains_key("name") {
                body.insert(
                    "name".into(),
                    objective_id.clone().unwrap_or_else(|| kind.clone()).into(),
                );
            }
            client.create_objective(body.into()).await?
        }
        ObjectivesCommand::Update {
            objective_id,
            fields,
        } => {
            client
                .update_objective(objective_id, objective_fields(fields).into())
                .await?
        }
        ObjectivesCommand::Activate(a)
        | ObjectivesCommand::Pause(a)
        | ObjectivesCommand::Resume(a)
        | ObjectivesCommand::Cancel(a)
        | ObjectivesCommand::Archive(a)
        | ObjectivesCommand::Fire(a) => {
            let action = match command {
                ObjectivesCommand::Activate(_) => A::Activate,
                ObjectivesCommand::Pause(_) => A::Pause,
                ObjectivesCommand::Resume(_) => A::Resume,
                ObjectivesCommand::Cancel(_) => A::Cancel,
                ObjectivesCommand::Archive(_) => A::Archive,
                _ => A::Fire,
            };
            let request = LifecycleRequest {
                action,
                reason: a.reason.clone(),
            };
            client
                .objective_lifecycle(&a.objective_id, &request)
                .await?
        }
    };
    if cli.json {
        print_json(&objective);
    } else {
        print_table(&OBJECTIVE_HEADER, &[objective_row(&objective)]);
    }
    Ok(())
}

/// `palyra browser ...`.
async fn browser(
    cli: &Cli,
    client: &ControlPlaneClient,
    command: &BrowserCommand,
) -> Result<(), ClientError> {
    use palyra_actors::browser::{PageState, Viewport};
    let page_line = |page: &PageState| format!("{}  {}", page.url, page.title);
    match command {
        BrowserCommand::Open {
            start_url,
            width,
            height,
        } => {
            let viewport = width
                .zip(*height)
                .map(|(width, height)| Viewport { width, height });
            let info = client
                .create_browser_session(
                    &palyra_http::routes::browser::CreateBrowserSessionRequest {
                        start_url: start_url.clone(),
                        viewport,
                    },
                )
                .await?;
            if cli.json {
                print_json(&info);
            } else {
                println!("{}  {}  {}", info.session_id, info.url, info.title);
            }
        }
        BrowserCommand::Navigate {
            session_id,
            page_url,
        } => {
            let result = client
                .navigate_browser_session(session_id, page_url)
                .await?;
            if cli.json {
                print_json(&result);
            } else {
                let status = result.status.map(|s| s.to_string()).unwrap_or_default();
                println!("{status}  {}  {}", result.url, result.title);
            }
        }
        BrowserCommand::Click {
            session_id,
            selector,
        } => {
            let page = client.click_browser_session(session_id, selector).await?;
            if cli.json {
                print_json(&page);
            } else {
                println!("{}", page_line(&page));
            }
        }
        BrowserCommand::Type {
            session_id,
            selector,
            text,
        } => {
            let page = client
                .type_browser_session(session_id, selector, text)
                .await?;
            if cli.json {
                print_json(&page);
            } else {
                println!("{}", page_line(&page));
            }
        }
        BrowserCommand::Screenshot { session_id, out } => {
            let png = client.browser_screenshot(session_id).await?;
            std::fs::write(out, &png).map_err(|e| {
                ClientError::Protocol(format!("cannot write {}: {e}", out.display()))
            })?;
            if cli.json {
                print_json(&serde_json::json!({ "path": out, "bytes": png.len() }));
            } else {
                println!("saved {} ({} bytes)", out.display(), png.len());
            }
        }
        BrowserCommand::Content { session_id } => {
            let content = client.browser_content(session_id).await?;
            if cli.json {
                print_json(&content);
            } else {
                println!("{}", content.text);
                if content.truncated {
                    eprintln!("(cut at the daemon's browser.content_max_bytes)");
                }
            }
        }
        BrowserCommand::Close { session_id } => {
            client.close_browser_session(session_id).await?;
            if cli.json {
                print_json(&serde_json::json!({ "closed": session_id }));
            } else {
                println!("closed {session_id}");
            }
        }
        BrowserCommand::List => {
            let list = client.list_browser_sessions().await?;
            if cli.json {
                print_json(&list);
            } else {
                let rows: Vec<Vec<String>> = list
                    .sessions
                    .iter()
                    .map(|s| {
                        vec![
                            s.session_id.clone(),
                            s.url.clone(),
                            s.title.clone(),
                            s.last_activity_at.to_rfc3339(),
                        ]
                    })
                    .collect();
                print_table(&["ID", "URL", "TITLE", "LAST ACTIVITY"], &rows);
            }
        }
    }
    Ok(())
}
