//! `palyra operators`, `palyra tokens` and `palyra login --operator`: operators,
//! their API tokens and password login (`/console/v1/operators`, `/console/v1/tokens`).
//! A password is read from a hidden prompt or standard input, never from argv.

use clap::Subcommand;
use palyra::client::{ClientError, ControlPlaneClient};
use palyra_actors::SecretString;

use crate::output::{print_json, print_table};

#[derive(Debug, Subcommand)]
pub enum OperatorsCommand {
    List,
    Show {
        operator_id: String,
    },
    /// Create an operator; the password is asked for (or read from stdin).
    Create {
        operator_id: String,
        /// viewer, operator or admin.
        #[arg(long)]
        role: String,
        #[arg(long)]
        display_name: Option<String>,
        /// Read the password from standard input instead of a prompt.
        #[arg(long, conflicts_with = "no_password")]
        password_stdin: bool,
        /// No password: the operator signs in only through a handoff link.
        #[arg(long)]
        no_password: bool,
    },
    Update {
        operator_id: String,
        #[arg(long)]
        role: Option<String>,
        #[arg(long)]
        display_name: Option<String>,
        /// Set a new password (asked for, or read from stdin with --password-stdin).
        #[arg(long)]
        new_password: bool,
        #[arg(long, requires = "new_password")]
        password_stdin: bool,
    },
    /// Disable: the operator's sessions and tokens are revoked.
    Disable {
        operator_id: String,
    },
    Enable {
        operator_id: String,
    },
    Remove {
        operator_id: String,
    },
    /// Revoke every session and token of the operator.
    RevokeSessions {
        operator_id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    List {
        #[arg(long)]
        operator_id: Option<String>,
    },
    /// Mint a token; it is printed once.
    Create {
        operator_id: String,
        #[arg(long)]
        name: String,
        /// viewer, operator or admin (at most the operator's role).
        #[arg(long)]
        role: String,
        #[arg(long)]
        expires_in_s: Option<u64>,
    },
    Revoke {
        token_id: String,
    },
}

/// A password from standard input (one line) or a hidden prompt.
pub fn read_password(stdin: bool, prompt: &str) -> Result<SecretString, ClientError> {
    let invalid = |m: String| ClientError::Protocol(m);
    let line = if stdin {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map_err(|e| invalid(format!("cannot read standard input: {e}")))?;
        line
    } else {
        rpassword::prompt_password(prompt)
            .map_err(|e| invalid(format!("cannot read the password from the terminal: {e}")))?
    };
    Ok(SecretString::new(
        line.trim_end_matches(['\r', '\n']).to_owned(),
    ))
}

const OPERATOR_HEADER: [&str; 4] = ["ID", "NAME", "ROLE", "STATE"];

fn operator_row(o: &palyra_actors::operators::Operator) -> Vec<String> {
    vec![
        o.operator_id.clone(),
        o.display_name.clone(),
        o.role.name().to_owned(),
        if o.disabled { "disabled" } else { "enabled" }.to_owned(),
    ]
}

pub async fn operators(
    json: bool,
    client: &ControlPlaneClient,
    command: &OperatorsCommand,
) -> Result<(), ClientError> {
    let one = |o: palyra_actors::operators::Operator| {
        if json {
            print_json(&o);
        } else {
            print_table(&OPERATOR_HEADER, &[operator_row(&o)]);
        }
    };
    match command {
        OperatorsCommand::List => {
            let list = client.list_operators().await?;
            if json {
                print_json(&list.operators);
            } else {
                let rows: Vec<_> = list.operators.iter().map(operator_row).collect();
                print_table(&OPERATOR_HEADER, &rows);
            }
        }
        OperatorsCommand::Show { operator_id } => one(client.get_operator(operator_id).await?),
        OperatorsCommand::Create {
            operator_id,
            role,
            display_name,
            password_stdin,
            no_password,
        } => {
            let password = match no_password {
                true => None,
                false => Some(read_password(
                    *password_stdin,
                    "Password for the operator: ",
                )?),
            };
            let body = serde_json::json!({
                "operator_id": operator_id,
                "role": role,
                "display_name": display_name,
                "password": password.as_ref().map(SecretString::expose),
            });
            one(client.create_operator(body).await?);
        }
        OperatorsCommand::Update {
            operator_id,
            role,
            display_name,
            new_password,
            password_stdin,
        } => {
            let password = match new_password {
                true => Some(read_password(*password_stdin, "New password: ")?),
                false => None,
            };
            let mut body = serde_json::Map::new();
            if let Some(role) = role {
                body.insert("role".into(), role.clone().into());
            }
            if let Some(name) = display_name {
                body.insert("display_name".into(), name.clone().into());
            }
            if let Some(p) = &password {
                body.insert("password".into(), p.expose().into());
            }
            one(client.update_operator(operator_id, body.into()).await?);
        }
        OperatorsCommand::Disable { operator_id } | OperatorsCommand::Enable { operator_id } => {
            let disabled = matches!(command, OperatorsCommand::Disable { .. });
            let body = serde_json::json!({ "disabled": disabled });
            one(client.update_operator(operator_id, body).await?);
        }
        OperatorsCommand::Remove { operator_id } => {
            client.delete_operator(operator_id).await?;
            if !json {
                println!("operator {operator_id} removed");
            }
        }
        OperatorsCommand::RevokeSessions { operator_id } => {
            let revoked = client.revoke_operator_sessions(operator_id).await?;
            if json {
                print_json(&revoked);
            } else {
                println!(
                    "revoked {} sessions and {} tokens of {operator_id}",
                    revoked.sessions_revoked, revoked.tokens_revoked
                );
            }
        }
    }
    Ok(())
}

const TOKEN_HEADER: [&str; 6] = ["ID", "OPERATOR", "NAME", "ROLE", "EXPIRES", "LAST USED"];

pub async fn tokens(
    json: bool,
    client: &ControlPlaneClient,
    command: &TokensCommand,
) -> Result<(), ClientError> {
    match command {
        TokensCommand::List { operator_id } => {
            let list = client.list_tokens(operator_id.as_deref()).await?;
            if json {
                print_json(&list.tokens);
            } else {
                let when = |t: Option<chrono::DateTime<chrono::Utc>>| {
                    t.map_or_else(|| "-".to_owned(), |t| t.to_rfc3339())
                };
                let rows: Vec<_> = list
                    .tokens
                    .iter()
                    .map(|t| {
                        vec![
                            t.token_id.clone(),
                            t.operator_id.clone(),
                            t.name.clone(),
                            t.role.name().to_owned(),
                            when(t.expires_at),
                            when(t.last_used_at),
                        ]
                    })
                    .collect();
                print_table(&TOKEN_HEADER, &rows);
            }
        }
        TokensCommand::Create {
            operator_id,
            name,
            role,
            expires_in_s,
        } => {
            let body = serde_json::json!({
                "name": name, "role": role, "expires_in_s": expires_in_s,
            });
            let minted = client.create_token(operator_id, body).await?;
            if json {
                print_json(&serde_json::json!({
                    "token": minted.token.expose(),
                    "token_id": minted.view.token_id,
                    "operator_id": minted.view.operator_id,
                    "role": minted.view.role,
                }));
            } else {
                println!(
                    "token {} for {operator_id} (shown once):",
                    minted.view.token_id
                );
                println!("{}", minted.token.expose());
            }
        }
        TokensCommand::Revoke { token_id } => {
            client.revoke_token(token_id).await?;
            if !json {
                println!("token {token_id} revoked");
            }
        }
    }
    Ok(())
}
