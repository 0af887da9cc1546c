//! One module per resource; each lists its own routes (`routes()`), and the crate root
//! concatenates them into the route table.

pub mod browser;
pub mod cluster;
pub mod console_auth;
pub mod deployment;
pub mod handoff_redeem;
pub mod metrics;
pub mod notifications;
pub mod oauth;
pub mod oauth_client_secret;
pub mod objectives;
pub mod operators;
pub mod ops;
pub mod profiles;
pub mod tokens;
pub mod usage;
