//! What an operator and an API token are: roles, the stored records, the API's views
//! and the checks of what clients send.

use chrono::{DateTime, Utc};
use palyra_storage::{StoredRecord, Table};
use serde::{Deserialize, Serialize};

use crate::error::ActorError;
use crate::secret::SecretString;
use crate::time::to_datetime;

/// What a caller may do. Ordered: each role may do everything the one before may.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads everything, changes nothing.
    Viewer,
    /// Runs and manages objectives, agents and browser sessions, signs in to
    /// providers; no operator, token or vault administration.
    Operator,
    /// Everything.
    Admin,
}

impl Role {
    /// Every role, lowest first.
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Operator, Role::Admin];

    pub fn name(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

/// What is stored per operator, keyed by operator id. No `Debug`: it holds the
/// password hash.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct OperatorRecord {
    pub(crate) operator_id: String,
    pub(crate) display_name: String,
    pub(crate) role: Role,
    pub(crate) disabled: bool,
    pub(crate) created_at_ms: i64,
    pub(crate) updated_at_ms: i64,
    /// argon2id PHC string; none for an operator who signs in only by handoff.
    pub(crate) password_hash: Option<String>,
}

impl StoredRecord for OperatorRecord {
    const TABLE: Table = Table::Operators;
    const VERSION: u32 = 1;
}

impl OperatorRecord {
    pub(crate) fn view(&self) -> Operator {
        Operator {
            operator_id: self.operator_id.clone(),
            display_name: self.display_name.clone(),
            role: self.role,
            disabled: self.disabled,
            has_password: self.password_hash.is_some(),
            created_at: to_datetime(self.created_at_ms),
            updated_at: to_datetime(self.updated_at_ms),
        }
    }
}

/// An operator as the API shows it (never the password hash).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Operator {
    pub operator_id: String,
    pub display_name: String,
    pub role: Role,
    /// A disabled operator cannot sign in and has no sessions or tokens.
    pub disabled: bool,
    /// Whether password login is possible.
    pub has_password: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A new operator, as a client sends it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewOperator {
    /// 1 to 64 of `a-z 0-9 . _ @ -`, starting with a letter or digit.
    #[schema(pattern = r"^[a-z0-9][a-z0-9._@-]{0,63}$")]
    pub operator_id: String,
    /// 1 to 128 characters; default the operator id.
    // No control characters, no surrounding spaces (`validate_label`).
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"^[^\s\x00-\x1f\x7f-\x9f]([^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f])?$"
    )]
    pub display_name: Option<String>,
    pub role: Role,
    /// At least 12 characters (at most 256); without one the operator signs in only
    /// through a handoff.
    #[schema(value_type = Option<String>, min_length = 12, max_length = 256)]
    pub password: Option<SecretString>,
}

/// Changes to an operator; absent fields stay.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OperatorPatch {
    // No control characters, no surrounding spaces (`validate_label`).
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"^[^\s\x00-\x1f\x7f-\x9f]([^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f])?$"
    )]
    pub display_name: Option<String>,
    pub role: Option<Role>,
    /// Disabling revokes every session and token of the operator.
    pub disabled: Option<bool>,
    /// A new password (at least 12 characters); it revokes the operator's sessions.
    #[schema(value_type = Option<String>, min_length = 12, max_length = 256)]
    pub password: Option<SecretString>,
}

/// The prefix of every API token (`palyra_<token id>_<secret>`), so secret scanners
/// can recognise one.
pub const TOKEN_PREFIX: &str = "palyra_";

/// What is stored per API token, keyed by token id. The secret only as its SHA-256.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct TokenRecord {
    pub(crate) token_id: String,
    pub(crate) operator_id: String,
    pub(crate) name: String,
    pub(crate) role: Role,
    pub(crate) created_at_ms: i64,
    pub(crate) expires_at_ms: Option<i64>,
    pub(crate) last_used_at_ms: Option<i64>,
    /// Hex SHA-256 of the whole token.
    pub(crate) secret_digest: String,
}

impl StoredRecord for TokenRecord {
    const TABLE: Table = Table::ApiTokens;
    const VERSION: u32 = 1;
}

impl TokenRecord {
    pub(crate) fn view(&self) -> ApiToken {
        ApiToken {
            token_id: self.token_id.clone(),
            prefix: format!("{TOKEN_PREFIX}{}", self.token_id),
            operator_id: self.operator_id.clone(),
            name: self.name.clone(),
            role: self.role,
            created_at: to_datetime(self.created_at_ms),
            expires_at: self.expires_at_ms.map(to_datetime),
            last_used_at: self.last_used_at_ms.map(to_datetime),
        }
    }
}

/// An API token as the API shows it (never the secret).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ApiToken {
    pub token_id: String,
    /// The start of the token (`palyra_<token_id>`), to recognise it.
    pub prefix: String,
    pub operator_id: String,
    pub name: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    /// Within a minute: the time is stored at most once a minute per token.
    pub last_used_at: Option<DateTime<Utc>>,
}

/// A new API token, as a client sends it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// 1 to 64 characters, a label for people.
    // No control characters, no surrounding spaces (`validate_label`).
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = r"^[^\s\x00-\x1f\x7f-\x9f]([^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f])?$"
    )]
    pub name: String,
    /// No higher than the operator's role.
    pub role: Role,
    /// Lifetime in seconds (1 to 10 years); none: until revoked.
    #[schema(minimum = 1, maximum = 315_360_000)]
    pub expires_in_s: Option<u64>,
}

/// A token just minted: the token itself, this once, and its view.
#[derive(Serialize, utoipa::ToSchema)]
pub struct MintedToken {
    /// The token; shown only in this answer.
    #[schema(value_type = String)]
    #[serde(serialize_with = "crate::secret::serialize_exposed")]
    pub token: SecretString,
    #[serde(flatten)]
    pub view: ApiToken,
}

impl std::fmt::Debug for MintedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MintedToken")
            .field("token", &self.token)
            .field("view", &self.view)
            .finish()
    }
}

/// A request authenticated by an API token.
#[derive(Debug, Clone)]
pub struct TokenAuth {
    pub token_id: String,
    pub operator_id: String,
    pub role: Role,
}

/// Operator ids: 1 to 64 of `[a-z0-9._@-]`, starting with a letter or digit.
pub fn validate_operator_id(id: &str) -> Result<(), ActorError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id.as_bytes()[0].is_ascii_alphanumeric()
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._@-".contains(&b));
    match ok {
        true => Ok(()),
        false => Err(ActorError::invalid(
            "operator_id",
            "use 1 to 64 of a-z 0-9 . _ @ -, starting with a letter or digit",
        )),
    }
}

pub(crate) fn validate_label(
    field: &'static str,
    value: &str,
    max: usize,
) -> Result<(), ActorError> {
    let n = value.chars().count();
    if n == 0 || n > max || value.chars().any(char::is_control) || value.trim() != value {
        return Err(ActorError::invalid(
            field,
            format!("use 1 to {max} characters, no control characters or surrounding spaces"),
        ));
    }
    Ok(())
}
