//! Sign-in attempts as stored: where each stands, the SHA-256 of its state, the
//! vault ref of its sealed PKCE verifier, loading them at start and purging old ones.

use std::collections::HashMap;

use palyra_storage::{StoredRecord, Table, WriteOp, decode_record};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::model::AuthProfileScope;
use crate::error::ActorError;
use crate::snapshot::Snapshot;
use crate::time::now_ms;
use crate::vault::Vault;

/// Where a sign-in attempt stands (`callback-state`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum AttemptStatus {
    Pending,
    Succeeded { profile_id: String },
    Failed { reason: String },
}

/// A sign-in attempt as stored. The PKCE verifier is sealed in the vault; the state
/// is kept only as its SHA-256.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct AttemptRecord {
    pub(super) attempt_id: String,
    pub(super) provider: String,
    pub(super) profile_id: String,
    pub(super) profile_name: String,
    pub(super) scope: AuthProfileScope,
    pub(super) scopes: Vec<String>,
    pub(super) set_default: bool,
    pub(super) state_digest: String,
    pub(super) redirect_uri: String,
    pub(super) expires_at_ms: i64,
    pub(super) status: AttemptStatus,
}

impl StoredRecord for AttemptRecord {
    const TABLE: Table = Table::OAuthAttempts;
    const VERSION: u32 = 1;
}

pub(super) fn state_digest(state: &str) -> String {
    Sha256::digest(state.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub(super) fn verifier_ref(attempt_id: &str) -> String {
    format!("vault://system/oauth.{attempt_id}.verifier")
}

/// Sign-in attempts by id.
pub(super) type Attempts = HashMap<String, AttemptRecord>;
/// Attempt id by SHA-256 (hex) of its state.
pub(super) type AttemptsByState = HashMap<String, String>;

/// Loads attempts; finished or expired ones are kept for `callback-state` until they
/// are a day old.
pub(super) fn load_attempts(
    snapshot: &Snapshot,
) -> Result<(Attempts, AttemptsByState), ActorError> {
    let mut attempts = HashMap::new();
    let mut by_state = HashMap::new();
    let horizon = now_ms() - 24 * 3600 * 1000;
    for (_, value) in snapshot.rows(Table::OAuthAttempts) {
        let Ok(record) = decode_record::<AttemptRecord>(value) else {
            continue;
        };
        if record.expires_at_ms < horizon {
            // Purged by `stale_attempt_ops` at start.
            continue;
        }
        if record.status == AttemptStatus::Pending {
            by_state.insert(record.state_digest.clone(), record.attempt_id.clone());
        }
        attempts.insert(record.attempt_id.clone(), record);
    }
    Ok((attempts, by_state))
}

/// The writes that delete attempts older than a day and their sealed verifiers.
pub(super) fn stale_attempt_ops(snapshot: &Snapshot) -> Result<Vec<WriteOp>, ActorError> {
    let horizon = now_ms() - 24 * 3600 * 1000;
    let mut ops = Vec::new();
    for (key, value) in snapshot.rows(Table::OAuthAttempts) {
        let stale =
            decode_record::<AttemptRecord>(value).map_or(true, |r| r.expires_at_ms < horizon);
        if stale {
            let id = String::from_utf8_lossy(key).into_owned();
            ops.push(Vault::delete(&verifier_ref(&id)));
            ops.push(WriteOp::delete(Table::OAuthAttempts, key.clone()));
        }
    }
    Ok(ops)
}
