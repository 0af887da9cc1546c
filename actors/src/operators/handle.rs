//! [`OperatorsHandle`]: operator CRUD, password checks and API tokens, each a read of
//! the rows it needs and, for a change, one conditional write of them (see the module
//! documentation for why there is no cache).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use palyra_storage::{Storage, Table, WriteOp, WriteOutcome, Writer, decode_record, encode_record};
use rand::RngCore;
use subtle::ConstantTimeEq;

use crate::error::ActorError;
use crate::operators::model::{
    ApiToken, MintedToken, NewOperator, NewToken, Operator, OperatorPatch, OperatorRecord,
    TOKEN_PREFIX, TokenAuth, TokenRecord, validate_label, validate_operator_id,
};
use crate::operators::password;
use crate::secret::SecretString;
use crate::time::now_ms;

/// Attempts of an edit that another node's edit of the same row refused.
const ATTEMPTS: usize = 3;
/// `last_used_at` is stored at most this often per token, so a busy script costs no
/// write per request.
const LAST_USED_EVERY_MS: i64 = 60_000;
/// Characters of a token id (hex of 8 random bytes).
const TOKEN_ID_LEN: usize = 16;
/// Longest token lifetime a client may ask for: ten years.
const MAX_TOKEN_LIFETIME_S: u64 = 315_360_000;

/// What a bearer token turned out to be.
#[derive(Debug)]
pub enum TokenCheck {
    /// A live token of an enabled operator.
    Valid(TokenAuth),
    /// Not a token of this daemon, revoked, expired or wrong; the reason is for the
    /// log, never for the client.
    Refused(&'static str),
}

/// An operator after an edit, and whether its sessions must end (disabled, a new
/// role or a new password: a session carries the role it was created with).
#[derive(Debug)]
pub struct OperatorChange {
    pub operator: Operator,
    pub revoke_sessions: bool,
    /// Tokens deleted (disabled) in the same transaction.
    pub tokens_revoked: usize,
}

/// Handle to operators and tokens. Cloning is shallow.
#[derive(Clone)]
pub struct OperatorsHandle {
    storage: Storage,
    writer: Writer,
}

impl std::fmt::Debug for OperatorsHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperatorsHandle").finish_non_exhaustive()
    }
}

fn not_found(what: &'static str, id: &str) -> ActorError {
    ActorError::NotFound {
        what,
        id: id.to_owned(),
    }
}

fn conflict_after_retries() -> ActorError {
    ActorError::Conflict("the row kept changing under this edit; try again".to_owned())
}

impl OperatorsHandle {
    pub fn new(storage: Storage, writer: Writer) -> Self {
        Self { storage, writer }
    }

    async fn read_operator(
        &self,
        id: &str,
    ) -> Result<Option<(OperatorRecord, Vec<u8>)>, ActorError> {
        let Some(bytes) = self
            .storage
            .read_row(Table::Operators, id.as_bytes())
            .await?
        else {
            return Ok(None);
        };
        let record = decode_record::<OperatorRecord>(&bytes)?;
        Ok(Some((record, bytes)))
    }

    async fn tokens(&self) -> Result<Vec<(TokenRecord, Vec<u8>)>, ActorError> {
        let rows = self.storage.read_table(Table::ApiTokens).await?;
        Ok(rows
            .into_iter()
            .filter_map(|(_, bytes)| {
                decode_record::<TokenRecord>(&bytes)
                    .ok()
                    .map(|record| (record, bytes))
            })
            .collect())
    }

    /// Every operator, by id.
    pub async fn list(&self) -> Result<Vec<Operator>, ActorError> {
        let rows = self.storage.read_table(Table::Operators).await?;
        Ok(rows
            .iter()
            .filter_map(|(_, bytes)| decode_record::<OperatorRecord>(bytes).ok())
            .map(|r| r.view())
            .collect())
    }

    pub async fn get(&self, id: &str) -> Result<Operator, ActorError> {
        self.read_operator(id)
            .await?
            .map(|(r, _)| r.view())
            .ok_or_else(|| not_found("operator", id))
    }

    /// Creates an operator; 409 when the id is taken.
    pub async fn create(&self, new: NewOperator) -> Result<Operator, ActorError> {
        validate_operator_id(&new.operator_id)?;
        let display_name = new.display_name.unwrap_or_else(|| new.operator_id.clone());
        validate_label("display_name", &display_name, 128)?;
        let password_hash = match new.password {
            Some(p) => {
                password::check_policy(&p)?;
                Some(password::hash(p).await?)
            }
            None => None,
        };
        let now = now_ms();
        let record = OperatorRecord {
            operator_id: new.operator_id.clone(),
            display_name,
            role: new.role,
            disabled: false,
            created_at_ms: now,
            updated_at_ms: now,
            password_hash,
        };
        let op = WriteOp::insert_if_absent(new.operator_id.as_bytes().to_vec(), &record);
        match self.writer.submit_checked(vec![op]).await? {
            WriteOutcome::Applied { .. } => Ok(record.view()),
            WriteOutcome::Refused { .. } => Err(ActorError::Conflict(format!(
                "an operator with id {:?} exists",
                new.operator_id
            ))),
        }
    }

    /// Applies `patch`. Disabling deletes the operator's tokens and lowering its role
    /// lowers theirs, in the same transaction.
    pub async fn update(
        &self,
        id: &str,
        patch: OperatorPatch,
    ) -> Result<OperatorChange, ActorError> {
        if let Some(name) = &patch.display_name {
            validate_label("display_name", name, 128)?;
        }
        let new_hash = match &patch.password {
            Some(p) => {
                password::check_policy(p)?;
                Some(password::hash(p.clone()).await?)
            }
            None => None,
        };
        for _ in 0..ATTEMPTS {
            let Some((before, bytes)) = self.read_operator(id).await? else {
                return Err(not_found("operator", id));
            };
            let mut after = before.clone();
            if let Some(name) = &patch.display_name {
                after.display_name = name.clone();
            }
            if let Some(role) = patch.role {
                after.role = role;
            }
            if let Some(disabled) = patch.disabled {
                after.disabled = disabled;
            }
            if let Some(hash) = &new_hash {
                after.password_hash = Some(hash.clone());
            }
            after.updated_at_ms = now_ms();
            let mut ops = vec![WriteOp::CompareAndSet {
                table: Table::Operators,
                key: id.as_bytes().to_vec(),
                expected: Some(bytes),
                value: encode_record(&after),
            }];
            let mut tokens_revoked = 0;
            for (token, token_bytes) in self.tokens().await? {
                if token.operator_id != id {
                    continue;
                }
                let key = token.token_id.as_bytes().to_vec();
                if after.disabled {
                    tokens_revoked += 1;
                    ops.push(WriteOp::delete(Table::ApiTokens, key));
                } else if token.role > after.role {
                    let mut lowered = token.clone();
                    lowered.role = after.role;
                    ops.push(WriteOp::CompareAndSet {
                        table: Table::ApiTokens,
                        key,
                        expected: Some(token_bytes),
                        value: encode_record(&lowered),
                    });
                }
            }
            if let WriteOutcome::Applied { .. } = self.writer.submit_checked(ops).await? {
                let revoke_sessions = (after.disabled && !before.disabled)
                    || after.role != before.role
                    || new_hash.is_some();
                return Ok(OperatorChange {
                    operator: after.view(),
                    revoke_sessions,
                    tokens_revoked,
                });
            }
        }
        Err(conflict_after_retries())
    }

    /// Deletes an operator and its tokens in one transaction.
    pub async fn delete(&self, id: &str) -> Result<Operator, ActorError> {
        for _ in 0..ATTEMPTS {
            let Some((record, bytes)) = self.read_operator(id).await? else {
                return Err(not_found("operator", id));
            };
            let mut ops = vec![
                WriteOp::Expect {
                    table: Table::Operators,
                    key: id.as_bytes().to_vec(),
                    value: bytes,
                },
                WriteOp::delete(Table::Operators, id.as_bytes().to_vec()),
            ];
            for (token, _) in self.tokens().await? {
                if token.operator_id == id {
                    ops.push(WriteOp::delete(
                        Table::ApiTokens,
                        token.token_id.into_bytes(),
                    ));
                }
            }
            if let WriteOutcome::Applied { .. } = self.writer.submit_checked(ops).await? {
                return Ok(record.view());
            }
        }
        Err(conflict_after_retries())
    }

    /// The operator, when `password` is theirs and they may sign in. An unknown or
    /// disabled operator costs the same hash as a known one.
    pub async fn verify_password(
        &self,
        id: &str,
        password: SecretString,
    ) -> Result<Option<Operator>, ActorError> {
        let found = match validate_operator_id(id) {
            Ok(()) => self.read_operator(id).await?,
            Err(_) => None,
        };
        let hash = found
            .as_ref()
            .filter(|(r, _)| !r.disabled)
            .and_then(|(r, _)| r.password_hash.clone());
        let matches = password::verify(password, hash).await;
        Ok(found
            .filter(|(r, _)| matches && !r.disabled)
            .map(|(r, _)| r.view()))
    }

    /// Mints a token for an enabled operator, with a role no higher than theirs. The
    /// write expects the operator row as read, so a concurrent disable wins.
    pub async fn mint_token(
        &self,
        operator_id: &str,
        new: NewToken,
    ) -> Result<MintedToken, ActorError> {
        validate_label("name", &new.name, 64)?;
        if let Some(s) = new.expires_in_s
            && !(1..=MAX_TOKEN_LIFETIME_S).contains(&s)
        {
            return Err(ActorError::invalid(
                "expires_in_s",
                format!("use 1 to {MAX_TOKEN_LIFETIME_S} seconds"),
            ));
        }
        let Some((operator, bytes)) = self.read_operator(operator_id).await? else {
            return Err(not_found("operator", operator_id));
        };
        if operator.disabled {
            return Err(ActorError::Conflict(format!(
                "operator {operator_id:?} is disabled"
            )));
        }
        if new.role > operator.role {
            return Err(ActorError::invalid(
                "role",
                format!(
                    "a token's role is at most its operator's ({})",
                    operator.role.name()
                ),
            ));
        }
        let mut id_bytes = [0u8; TOKEN_ID_LEN / 2];
        rand::rng().fill_bytes(&mut id_bytes);
        let token_id: String = id_bytes.iter().map(|b| format!("{b:02x}")).collect();
        let mut secret = [0u8; 32];
        rand::rng().fill_bytes(&mut secret);
        let token = SecretString::new(format!(
            "{TOKEN_PREFIX}{token_id}_{}",
            URL_SAFE_NO_PAD.encode(secret)
        ));
        let now = now_ms();
        let expires_in_ms = new
            .expires_in_s
            .map(|s| i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX));
        let record = TokenRecord {
            token_id: token_id.clone(),
            operator_id: operator_id.to_owned(),
            name: new.name,
            role: new.role,
            created_at_ms: now,
            expires_at_ms: expires_in_ms.map(|ms| now.saturating_add(ms)),
            last_used_at_ms: None,
            secret_digest: hex(&crate::secret::token_digest(token.expose())),
        };
        let ops = vec![
            WriteOp::Expect {
                table: Table::Operators,
                key: operator_id.as_bytes().to_vec(),
                value: bytes,
            },
            WriteOp::insert_if_absent(token_id.into_bytes(), &record),
        ];
        match self.writer.submit_checked(ops).await? {
            WriteOutcome::Applied { .. } => Ok(MintedToken {
                token,
                view: record.view(),
            }),
            WriteOutcome::Refused { .. } => Err(ActorError::Conflict(
                "the operator changed while the token was minted; try again".to_owned(),
            )),
        }
    }

    /// Every token, or those of one operator, by token id.
    pub async fn list_tokens(
        &self,
        operator_id: Option<&str>,
    ) -> Result<Vec<ApiToken>, ActorError> {
        Ok(self
            .tokens()
            .await?
            .into_iter()
            .filter(|(t, _)| operator_id.is_none_or(|id| t.operator_id == id))
            .map(|(t, _)| t.view())
            .collect())
    }

    /// Revokes one token at once (its row is taken).
    pub async fn revoke_token(&self, token_id: &str) -> Result<ApiToken, ActorError> {
        let op = WriteOp::take(Table::ApiTokens, token_id.as_bytes().to_vec());
        match self.writer.submit_checked(vec![op]).await? {
            WriteOutcome::Applied { taken } => {
                let bytes = taken.into_iter().next().unwrap_or_default();
                Ok(decode_record::<TokenRecord>(&bytes)?.view())
            }
            WriteOutcome::Refused { .. } => Err(not_found("token", token_id)),
        }
    }

    /// Revokes every token of an operator; returns their ids.
    pub async fn revoke_tokens_of(&self, operator_id: &str) -> Result<Vec<String>, ActorError> {
        let ids: Vec<String> = self
            .tokens()
            .await?
            .into_iter()
            .filter(|(t, _)| t.operator_id == operator_id)
            .map(|(t, _)| t.token_id)
            .collect();
        if !ids.is_empty() {
            let ops = ids
                .iter()
                .map(|id| WriteOp::delete(Table::ApiTokens, id.as_bytes().to_vec()))
                .collect();
            self.writer.write(ops).await?;
        }
        Ok(ids)
    }

    /// Checks a bearer token: one read of its row. `None` when the value does not look
    /// like an API token at all (the caller then tries the admin token).
    pub async fn check_token(&self, presented: &str) -> Result<Option<TokenCheck>, ActorError> {
        let Some(token_id) = token_id_of(presented) else {
            return Ok(None);
        };
        let Some(bytes) = self
            .storage
            .read_row(Table::ApiTokens, token_id.as_bytes())
            .await?
        else {
            return Ok(Some(TokenCheck::Refused("unknown or revoked token")));
        };
        let record = decode_record::<TokenRecord>(&bytes)?;
        let digest = hex(&crate::secret::token_digest(presented));
        if !bool::from(digest.as_bytes().ct_eq(record.secret_digest.as_bytes())) {
            return Ok(Some(TokenCheck::Refused("wrong token secret")));
        }
        let now = now_ms();
        if record.expires_at_ms.is_some_and(|at| at <= now) {
            return Ok(Some(TokenCheck::Refused("expired token")));
        }
        let auth = TokenAuth {
            token_id: record.token_id.clone(),
            operator_id: record.operator_id.clone(),
            role: record.role,
        };
        if record
            .last_used_at_ms
            .is_none_or(|at| now.saturating_sub(at) >= LAST_USED_EVERY_MS)
        {
            let mut used = record;
            used.last_used_at_ms = Some(now);
            // Best effort, off the request path: refused if the row changed (revoked,
            // lowered) meanwhile, which is then the newer truth.
            let write = self.writer.submit_checked(vec![WriteOp::CompareAndSet {
                table: Table::ApiTokens,
                key: token_id.as_bytes().to_vec(),
                expected: Some(bytes),
                value: encode_record(&used),
            }]);
            tokio::spawn(async move {
                if let Err(e) = write.await {
                    tracing::debug!(error = %e, "recording a token's last use failed");
                }
            });
        }
        Ok(Some(TokenCheck::Valid(auth)))
    }
}

/// The token id inside `palyra_<id>_<secret>`, if the value has that shape.
fn token_id_of(presented: &str) -> Option<&str> {
    let rest = presented.strip_prefix(TOKEN_PREFIX)?;
    let id = rest.get(..TOKEN_ID_LEN)?;
    let secret = rest.get(TOKEN_ID_LEN..)?.strip_prefix('_')?;
    (id.bytes().all(|b| b.is_ascii_hexdigit()) && !secret.is_empty()).then_some(id)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn token_ids_are_read_from_the_prefix() {
        assert_eq!(
            super::token_id_of("palyra_0123456789abcdef_secret"),
            Some("0123456789abcdef")
        );
        assert_eq!(super::token_id_of("palyra_0123456789abcdef"), None);
        assert_eq!(super::token_id_of("palyra_0123456789abcdeX_s"), None);
        assert_eq!(super::token_id_of("an admin token"), None);
    }
}
