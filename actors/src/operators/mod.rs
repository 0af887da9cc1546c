//! Operators and their API tokens: who may sign in, with which role, and the tokens
//! scripts act with.
//!
//! There is no in-memory copy to keep in step: every check reads the row it needs
//! (one primary-key read), on redb and on a database several nodes share alike, so a
//! disabled operator or a revoked token is refused by every node on its next request.
//! Every write is a compare-and-set on the bytes read (an edit on another node in
//! between is read again and the edit applied to it), and the invariants that checks
//! rely on are kept in the same transaction as the change that could break them:
//! disabling or deleting an operator deletes its tokens, lowering its role lowers
//! theirs, and minting a token expects the operator row it read.
//!
//! Layout:
//! - `model.rs`: roles, the records, the views, the checks of what clients send.
//! - `password.rs`: argon2id hashing and verification, and the password policy.
//! - `handle.rs`: [`OperatorsHandle`]: operator CRUD, password checks, tokens.

mod handle;
mod model;
mod password;

pub use handle::{OperatorChange, OperatorsHandle, TokenCheck};
pub use model::{
    ApiToken, MintedToken, NewOperator, NewToken, Operator, OperatorPatch, Role, TOKEN_PREFIX,
    TokenAuth, validate_operator_id,
};
pub use password::{MIN_PASSWORD_CHARS, hash_cost_note};
