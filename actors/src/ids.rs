//! Validation of the ids that name stored things (profiles, agents), shared by the
//! registry and the objectives actor so neither has to import the other for it.

use crate::ActorError;

/// 1 to `max` of `a-z 0-9 . _ -`.
pub(crate) fn valid_id(id: &str, max: usize) -> bool {
    !id.is_empty()
        && id.len() <= max
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

/// A profile id: 1 to 128 of `a-z 0-9 . _ -`.
pub fn validate_profile_id(id: &str) -> Result<(), ActorError> {
    if valid_id(id, 128) {
        Ok(())
    } else {
        Err(ActorError::invalid(
            "profile_id",
            "use 1 to 128 of a-z 0-9 . _ -",
        ))
    }
}

/// An agent id: 1 to 128 of `a-z 0-9 . _ -`.
pub fn validate_agent_id(id: &str) -> Result<(), ActorError> {
    if valid_id(id, 128) {
        Ok(())
    } else {
        Err(ActorError::invalid(
            "agent_id",
            "use 1 to 128 of a-z 0-9 . _ -",
        ))
    }
}
