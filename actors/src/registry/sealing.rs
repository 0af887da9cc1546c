//! Secrets other actors keep in the vault (a notification channel's signing secret):
//! sealed in the same write as the row that names them, opened for a send, deleted
//! with their row. The vault stays the registry's: key material lives in one place.

use actix::prelude::*;
use palyra_storage::WriteOp;

use super::actor::RegistryActor;
use super::handle::RegistryHandle;
use crate::error::{ActorError, stopped};
use crate::secret::SecretString;
use crate::vault::Vault;

#[derive(Message)]
#[rtype(result = "Result<(), ActorError>")]
struct SealWith {
    vault_ref: String,
    secret: SecretString,
    ops: Vec<WriteOp>,
}

impl Handler<SealWith> for RegistryActor {
    type Result = ResponseActFuture<Self, Result<(), ActorError>>;

    fn handle(&mut self, msg: SealWith, _ctx: &mut Self::Context) -> Self::Result {
        let mut ops = vec![self.vault.seal(&msg.vault_ref, &msg.secret)];
        ops.extend(msg.ops);
        Box::pin(self.commit(ops))
    }
}

#[derive(Message)]
#[rtype(result = "Result<Option<SecretString>, ActorError>")]
struct OpenSealed(String);

impl Handler<OpenSealed> for RegistryActor {
    type Result = Result<Option<SecretString>, ActorError>;

    fn handle(
        &mut self,
        OpenSealed(vault_ref): OpenSealed,
        _ctx: &mut Self::Context,
    ) -> Self::Result {
        Ok(self.vault.open_secret(&vault_ref)?)
    }
}

#[derive(Message)]
#[rtype(result = "Result<(), ActorError>")]
struct DeleteWith {
    vault_ref: String,
    ops: Vec<WriteOp>,
}

impl Handler<DeleteWith> for RegistryActor {
    type Result = ResponseActFuture<Self, Result<(), ActorError>>;

    fn handle(&mut self, msg: DeleteWith, _ctx: &mut Self::Context) -> Self::Result {
        let mut ops = msg.ops;
        ops.push(Vault::delete(&msg.vault_ref));
        Box::pin(self.commit(ops))
    }
}

impl RegistryHandle {
    /// Seals `secret` at `vault_ref` and commits `ops` in the same transaction; answers
    /// once both are durable. `ops` must not touch the registry's own tables.
    pub async fn seal_with(
        &self,
        vault_ref: &str,
        secret: &SecretString,
        ops: Vec<WriteOp>,
    ) -> Result<(), ActorError> {
        self.retrying(|| SealWith {
            vault_ref: vault_ref.to_owned(),
            secret: secret.clone(),
            ops: ops.clone(),
        })
        .await
    }

    /// The plaintext of the secret at `vault_ref`, for a send. Never for responses.
    pub async fn open_sealed(&self, vault_ref: &str) -> Result<Option<SecretString>, ActorError> {
        self.addr()
            .send(OpenSealed(vault_ref.to_owned()))
            .await
            .map_err(stopped("registry"))?
    }

    /// Deletes the secret at `vault_ref` in the same transaction as `ops`.
    pub async fn delete_with(&self, vault_ref: &str, ops: Vec<WriteOp>) -> Result<(), ActorError> {
        self.addr()
            .send(DeleteWith {
                vault_ref: vault_ref.to_owned(),
                ops,
            })
            .await
            .map_err(stopped("registry"))?
    }
}
