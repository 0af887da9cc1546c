//! The secrets the daemon takes from its environment, and where the admin token
//! comes from.

use palyra_actors::SecretString;

use crate::settings::Settings;

/// Secrets the daemon takes from its environment: `PALYRA_ADMIN_TOKEN` and
/// `PALYRA_VAULT_KEY`. Passed in so tests need not touch the process environment.
#[derive(Debug, Default)]
pub struct EnvSecrets {
    pub admin_token: Option<SecretString>,
    pub vault_key: Option<SecretString>,
}

impl EnvSecrets {
    /// Reads both variables from the process environment.
    pub fn from_env() -> Self {
        let read = |name| std::env::var(name).ok().map(SecretString::new);
        Self {
            admin_token: read("PALYRA_ADMIN_TOKEN"),
            vault_key: read("PALYRA_VAULT_KEY"),
        }
    }
}

/// Where the admin token came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminTokenSource {
    Env,
    Config,
    Generated,
}

impl AdminTokenSource {
    /// Where the token will come from, decided without reading or generating a file.
    pub fn of(env: Option<&SecretString>, settings: &Settings) -> Self {
        if env.is_some() {
            Self::Env
        } else if settings.server.admin_token.is_some() {
            Self::Config
        } else {
            Self::Generated
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Env => "env",
            Self::Config => "config",
            Self::Generated => "generated",
        }
    }
}
