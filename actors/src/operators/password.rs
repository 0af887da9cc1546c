//! Operators' passwords: argon2id, and a policy of length rather than composition.
//!
//! The cost is OWASP's first recommendation for argon2id, m = 19 MiB, t = 2, p = 1:
//! memory-hard enough that a stolen database is slow to guess through, cheap enough
//! (tens of milliseconds) that a login is not. Hashing runs on tokio's blocking pool,
//! never on a request's worker thread.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::RngCore;

use crate::error::ActorError;
use crate::secret::SecretString;

/// Fewest characters of a password (NIST SP 800-63B asks for at least 8; an operator
/// of a daemon holding every provider key gets 12). No composition rules.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Most characters: bounds the work a login can ask for.
const MAX_PASSWORD_CHARS: usize = 256;

const MEMORY_KIB: u32 = 19 * 1024;
const ITERATIONS: u32 = 2;
const PARALLELISM: u32 = 1;

/// The cost, for the README and the log.
pub fn hash_cost_note() -> String {
    format!("argon2id m={MEMORY_KIB} KiB t={ITERATIONS} p={PARALLELISM}")
}

fn hasher() -> Argon2<'static> {
    let params = Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None)
        .unwrap_or_else(|e| panic!("argon2 parameters are constants: {e}"));
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

pub(crate) fn check_policy(password: &SecretString) -> Result<(), ActorError> {
    let n = password.len();
    if !(MIN_PASSWORD_CHARS..=MAX_PASSWORD_CHARS).contains(&n) {
        return Err(ActorError::invalid(
            "password",
            format!(
                "use {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters (a passphrase of several words is good)"
            ),
        ));
    }
    Ok(())
}

/// The PHC string of `password` under a fresh salt.
pub(crate) async fn hash(password: SecretString) -> Result<String, ActorError> {
    tokio::task::spawn_blocking(move || {
        let mut salt = [0u8; 16];
        rand::rng().fill_bytes(&mut salt);
        let salt = SaltString::encode_b64(&salt)
            .map_err(|e| ActorError::Conflict(format!("salt: {e}")))?;
        hasher()
            .hash_password(password.expose().as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| ActorError::Conflict(format!("hashing failed: {e}")))
    })
    .await
    .map_err(crate::error::stopped("password hashing"))?
}

/// True when `password` matches `phc`. With no hash (an unknown operator, one without
/// a password) a hash of the same cost is still computed, so the answer takes as long
/// and does not tell which operators exist.
pub(crate) async fn verify(password: SecretString, phc: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || {
        let argon = hasher();
        match phc.as_deref().map(PasswordHash::new) {
            Some(Ok(parsed)) => argon
                .verify_password(password.expose().as_bytes(), &parsed)
                .is_ok(),
            _ => {
                let salt = SaltString::encode_b64(&[0u8; 16]).ok();
                if let Some(salt) = salt {
                    let _ = argon.hash_password(password.expose().as_bytes(), &salt);
                }
                false
            }
        }
    })
    .await
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let phc = hash(SecretString::new("correct horse battery".into()))
            .await
            .unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(
            verify(
                SecretString::new("correct horse battery".into()),
                Some(phc.clone())
            )
            .await
        );
        assert!(
            !verify(
                SecretString::new("correct horse battery!".into()),
                Some(phc)
            )
            .await
        );
        assert!(!verify(SecretString::new("correct horse battery".into()), None).await);
    }

    /// Prints what one hash costs here (`cargo test -p palyra-actors hash_cost --
    /// --ignored --nocapture`); the figure is in the README. Not a timed assertion.
    #[tokio::test]
    #[ignore]
    async fn hash_cost() {
        let started = std::time::Instant::now();
        for _ in 0..10 {
            hash(SecretString::new("correct horse battery".into()))
                .await
                .unwrap();
        }
        println!(
            "{}: {:?} per hash",
            hash_cost_note(),
            started.elapsed() / 10
        );
    }

    #[test]
    fn the_policy_is_length() {
        assert!(check_policy(&SecretString::new("short".into())).is_err());
        assert!(check_policy(&SecretString::new("twelve chars".into())).is_ok());
        assert!(check_policy(&SecretString::new("x".repeat(257))).is_err());
    }
}
