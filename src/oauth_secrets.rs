//! Start-up wiring of OAuth client secrets: those the config names
//! (`client_secret_env`, `client_secret_file`) are read once and sealed into the
//! vault, which is the one place a client secret lives from then on.

use palyra_actors::ActorError;
use palyra_actors::registry::RegistryHandle;

use crate::settings::ProvidersSettings;

/// Seals the config's client secrets (each only when the vault does not hold it
/// already); durable when this returns. A variable or file that became unreadable
/// since the settings were checked is a refusal to start, naming where it looked.
pub async fn seal_configured(
    providers: &ProvidersSettings,
    registry: &RegistryHandle,
) -> Result<(), ActorError> {
    let secrets = providers
        .configured_client_secrets()
        .map_err(|message| ActorError::invalid("providers", message))?;
    registry.seal_configured_client_secrets(secrets).await
}
