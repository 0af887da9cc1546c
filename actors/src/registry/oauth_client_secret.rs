//! A provider's OAuth client secret (`client_secret_basic` / `client_secret_post`),
//! which lives in the vault and nowhere else: sealed at `vault://global/oauth-client/
//! <provider>` from the config's `client_secret_env` / `client_secret_file` at start
//! or through the API, and opened only for the copy of the provider's settings one
//! token, device or revocation request is made with (zeroized when that is dropped).
//!
//! On several nodes the vault table is shared: a secret set through one node is read
//! through from storage by another before the change feed brings it there.

use actix::prelude::*;
use palyra_storage::{Table, WriteOp};

use super::actor::RegistryActor;
use super::handle::RegistryHandle;
use super::model::validate_provider;
use crate::audit::{AuditEntry, AuditKind, AuditOutcome};
use crate::error::{ActorError, stopped};
use crate::oauth::{ClientAuth, OAuthSettings};
use crate::provider::ProviderSettings;
use crate::secret::SecretString;
use crate::vault::Vault;

/// The vault ref of a provider's client secret.
pub fn client_secret_ref(provider: &str) -> String {
    format!("vault://global/oauth-client/{provider}")
}

/// The longest client secret taken (real ones are 32 to 128 characters).
const MAX_SECRET_CHARS: usize = 4096;

/// What storing or removing a client secret changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientSecretChange {
    /// Sealed: there was none, or another one.
    Sealed,
    /// The vault already held this secret: nothing was written.
    Unchanged,
    /// Removed from the vault.
    Removed,
    /// There was none to remove.
    Absent,
}

/// Who asks for a change, for the audit event the actor writes with it (start-up
/// seals only; the HTTP layer audits what its routes change).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Config,
    Api,
}

impl RegistryHandle {
    /// `provider`'s OAuth settings with the client secret opened from the vault when
    /// its client authentication needs one. The copy is for one request: drop it
    /// right after (the secret is zeroized then). Without a stored secret the copy has
    /// none, and the request fails before it is sent, saying how to set one.
    pub async fn oauth_client(
        &self,
        provider: &str,
    ) -> Result<(&ProviderSettings, OAuthSettings), ActorError> {
        let settings = self.providers().get(provider).ok_or_else(|| {
            ActorError::invalid("provider", format!("provider {provider} is not configured"))
        })?;
        let mut oauth = settings.oauth.clone().ok_or_else(|| {
            ActorError::invalid(
                "provider",
                format!("provider {provider} is not configured for OAuth"),
            )
        })?;
        if oauth.client_auth != ClientAuth::None {
            oauth.client_secret = self.open_client_secret(provider).await?;
        }
        Ok((settings, oauth))
    }

    /// Refuses to start a sign-in whose code exchange would fail for want of a client
    /// secret, so the operator learns it before the browser round trip.
    pub(super) async fn require_client_secret(
        &self,
        provider: &str,
        oauth: &OAuthSettings,
    ) -> Result<(), ActorError> {
        if oauth.client_auth == ClientAuth::None
            || oauth.client_secret.is_some()
            || self.open_client_secret(provider).await?.is_some()
        {
            return Ok(());
        }
        Err(ActorError::invalid(
            "provider",
            format!(
                "provider {provider} authenticates with a client secret and none is set: `palyra auth client-secret set {provider}`, or client_secret_env / client_secret_file in its config"
            ),
        ))
    }

    async fn open_client_secret(&self, provider: &str) -> Result<Option<SecretString>, ActorError> {
        let ask = |row| OpenClientSecret {
            provider: provider.to_owned(),
            row,
        };
        let found = self
            .addr()
            .send(ask(None))
            .await
            .map_err(stopped("registry"))??;
        if found.is_some() || !self.storage().is_shared() {
            return Ok(found);
        }
        // Set through another node a moment ago, before its change reached this one.
        let key = client_secret_ref(provider);
        let Some(row) = self
            .storage()
            .read_row(Table::Vault, key.as_bytes())
            .await?
        else {
            return Ok(None);
        };
        self.addr()
            .send(ask(Some(row)))
            .await
            .map_err(stopped("registry"))?
    }

    /// Seals the client secrets the config gives (`client_secret_env` /
    /// `client_secret_file`) at start, each only when the vault does not hold it
    /// already; durable when this returns. The config's secret replaces one set
    /// through the API.
    pub async fn seal_configured_client_secrets(
        &self,
        secrets: Vec<(String, SecretString)>,
    ) -> Result<(), ActorError> {
        for (provider, secret) in secrets {
            let change = self
                .retrying(|| StoreClientSecret {
                    provider: provider.clone(),
                    secret: Some(secret.clone()),
                    origin: Origin::Config,
                })
                .await?;
            if change == ClientSecretChange::Sealed {
                tracing::info!(%provider, "the provider's client secret from the config was sealed into the vault");
            }
        }
        Ok(())
    }

    /// Sets (`Some`) or removes (`None`) `provider`'s client secret through the API;
    /// durable when this returns. Refused for a provider that is not configured for
    /// OAuth, that needs no secret, or whose secret comes from the config (change it
    /// there).
    pub async fn store_client_secret(
        &self,
        provider: &str,
        secret: Option<SecretString>,
    ) -> Result<ClientSecretChange, ActorError> {
        validate_provider(provider)?;
        let (_, oauth) = super::oauth_flow::oauth_settings(self, provider)?;
        if let Some(secret) = &secret {
            if secret.is_empty() || secret.len() > MAX_SECRET_CHARS {
                return Err(ActorError::invalid(
                    "client_secret",
                    format!("1 to {MAX_SECRET_CHARS} characters"),
                ));
            }
            if secret.expose().chars().any(char::is_control) {
                return Err(ActorError::invalid(
                    "client_secret",
                    "control characters are not allowed",
                ));
            }
            if oauth.client_auth == ClientAuth::None {
                return Err(ActorError::invalid(
                    "provider",
                    format!(
                        "provider {provider} is a public client (client_auth = \"none\"): set client_auth to client_secret_basic or client_secret_post first"
                    ),
                ));
            }
        }
        if oauth.client_secret_from_config {
            return Err(ActorError::Conflict(format!(
                "provider {provider}'s client secret comes from client_secret_env / client_secret_file in the config: change it there"
            )));
        }
        self.retrying(|| StoreClientSecret {
            provider: provider.to_owned(),
            secret: secret.clone(),
            origin: Origin::Api,
        })
        .await
    }
}

#[derive(Message)]
#[rtype(result = "Result<Option<SecretString>, ActorError>")]
struct OpenClientSecret {
    provider: String,
    /// The stored row, read from storage (a read-through); `None`: memory's.
    row: Option<Vec<u8>>,
}

impl Handler<OpenClientSecret> for RegistryActor {
    type Result = Result<Option<SecretString>, ActorError>;

    fn handle(&mut self, msg: OpenClientSecret, _ctx: &mut Self::Context) -> Self::Result {
        let key = client_secret_ref(&msg.provider);
        match msg.row {
            None => Ok(self.vault.open_secret(&key)?),
            Some(row) => Ok(Some(self.vault.open_row(&key, &row)?)),
        }
    }
}

#[derive(Message)]
#[rtype(result = "Result<ClientSecretChange, ActorError>")]
struct StoreClientSecret {
    provider: String,
    secret: Option<SecretString>,
    origin: Origin,
}

impl Handler<StoreClientSecret> for RegistryActor {
    type Result = ResponseActFuture<Self, Result<ClientSecretChange, ActorError>>;

    fn handle(&mut self, msg: StoreClientSecret, _ctx: &mut Self::Context) -> Self::Result {
        let key = client_secret_ref(&msg.provider);
        // An unreadable secret (sealed under a lost key) is replaced like another one.
        let current = self.vault.open_secret(&key).ok().flatten();
        // The write expects the row as memory holds it (none included), so a secret
        // another node changed meanwhile is reread and compared again (`retrying`).
        let expected = self.vault.expect_sealed(&key);
        let (mut ops, change) = match &msg.secret {
            Some(secret) if current.as_ref() == Some(secret) => {
                return Box::pin(actix::fut::ready(Ok(ClientSecretChange::Unchanged)));
            }
            Some(secret) => {
                let op = match self.vault.seal(&key, secret) {
                    // The vault notes and guards a compare-and-set as it does a put.
                    WriteOp::Put { table, key, value } if expected.is_none() => {
                        WriteOp::CompareAndSet {
                            table,
                            key,
                            expected: None,
                            value,
                        }
                    }
                    op => op,
                };
                (
                    expected.into_iter().chain([op]).collect::<Vec<_>>(),
                    ClientSecretChange::Sealed,
                )
            }
            None if expected.is_none() => {
                return Box::pin(actix::fut::ready(Ok(ClientSecretChange::Absent)));
            }
            None => (
                expected.into_iter().chain([Vault::delete(&key)]).collect(),
                ClientSecretChange::Removed,
            ),
        };
        drop(current);
        drop(msg.secret);
        if msg.origin == Origin::Config {
            ops.push(self.audit.op(AuditEntry::system(
                AuditKind::ClientSecretChanged,
                msg.provider.clone(),
                AuditOutcome::Success,
                "sealed from the config (client_secret_env / client_secret_file)",
            )));
        }
        Box::pin(self.commit(ops).map(move |result, _act, _| {
            result?;
            tracing::info!(provider = %msg.provider, ?change, "provider client secret changed");
            Ok(change)
        }))
    }
}
