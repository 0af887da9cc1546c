//! `palyra auth profiles` and `palyra vault`: auth profiles, health, resolution and
//! vault key rotation (`/console/v1/auth/profiles`, `/console/v1/vault`).

use clap::{Args, Subcommand};
use palyra::client::{ClientError, ControlPlaneClient};
use palyra_actors::registry::{AuthProfile, AuthProfileScope, HealthState, NewCredential};
use palyra_actors::{SecretString, wire_name};
use palyra_http::routes::profiles::{CreateProfileRequest, ListQuery, ResolveQuery};

use crate::output::{print_json, print_table, scope_text};

#[derive(Debug, Subcommand)]
pub enum ProfilesCommand {
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
    /// Which profile a provider resolves to (for an agent, or globally); without
    /// --provider, which of the agent's candidates its runs would try first. Prints
    /// every profile passed over and why.
    Resolve {
        #[arg(long, required_unless_present = "agent_id")]
        provider: Option<String>,
        #[arg(long)]
        agent_id: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct AddApiKey {
    /// openai, anthropic or custom:<name>
    #[arg(long)]
    pub provider: String,
    /// A name for people.
    #[arg(long)]
    pub name: String,
    /// Lowercase id; generated when absent. An existing id is replaced.
    #[arg(long)]
    pub profile_id: Option<String>,
    /// Scope the profile to one agent (default: global).
    #[arg(long)]
    pub agent_id: Option<String>,
    /// Make it the default of its provider and scope.
    #[arg(long)]
    pub set_default: bool,
    /// Skip the check against the provider's /v1/models.
    #[arg(long)]
    pub no_validate: bool,
    /// Read the key from this environment variable.
    #[arg(long, conflicts_with = "api_key_stdin")]
    pub api_key_env: Option<String>,
    /// Read the key from standard input (first line).
    #[arg(long)]
    pub api_key_stdin: bool,
}

#[derive(Debug, Subcommand)]
pub enum VaultCommand {
    /// Re-seal every secret under a new master key.
    RotateKey,
}

pub fn profile_row(p: &AuthProfile) -> Vec<String> {
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

pub const PROFILE_HEADER: [&str; 7] =
    ["ID", "PROVIDER", "NAME", "SCOPE", "TYPE", "HINT", "DEFAULT"];

pub fn read_api_key(args: &AddApiKey) -> Result<SecretString, ClientError> {
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

pub async fn profiles(
    json: bool,
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
            if json {
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
            if json {
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
            if json {
                print_json(&profile);
            } else {
                println!("saved profile {}", profile.record.profile_id);
            }
        }
        ProfilesCommand::Remove { profile_id } => {
            client.delete_profile(profile_id).await?;
            if json {
                print_json(&serde_json::json!({ "removed": profile_id }));
            } else {
                println!("removed profile {profile_id}");
            }
        }
        ProfilesCommand::SetDefault { profile_id } => {
            let profile = client.set_default_profile(profile_id).await?;
            if json {
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
            if json {
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
            if json {
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
            if json {
                print_json(&answer);
            } else {
                match &answer.profile_id {
                    Some(id) => println!("{id} ({})", answer.detail),
                    None => println!("none: {}", answer.detail),
                }
                for skip in &answer.skipped {
                    println!(
                        "  skipped {} ({}): {}",
                        skip.profile_id,
                        palyra_actors::wire_name(skip.reason),
                        skip.detail
                    );
                }
            }
        }
    }
    Ok(())
}

/// `palyra vault ...`.
pub async fn vault(
    json: bool,
    client: &ControlPlaneClient,
    command: &VaultCommand,
) -> Result<(), ClientError> {
    let VaultCommand::RotateKey = command;
    let report = client.rotate_vault_key().await?;
    if json {
        print_json(&report);
    } else {
        println!(
            "vault key rotated: {} -> {} ({} secrets re-sealed)",
            report.previous_key_id, report.key_id, report.secrets_resealed
        );
    }
    Ok(())
}
