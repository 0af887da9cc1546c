//! One module per resource.

pub mod browser;
pub mod console_auth;
pub mod deployment;
pub mod oauth;
pub mod objectives;
pub mod ops;
pub mod profiles;
