//! The integration tests: one binary, modules per area, all through the real daemon
//! on 127.0.0.1:0 with a temporary data dir.

mod api;
mod audit;
mod auth;
mod browser;
mod browser_isolation;
mod cli;
mod cluster_faults;
mod cluster_objectives;
mod cluster_refresh;
mod cluster_sessions;
mod cluster_vault;
mod console;
mod crash;
mod fakes;
mod handoff;
mod helpers;
mod oauth;
mod oauth_device;
mod oauth_strict;
mod objectives;
mod objectives_cluster_cancel;
mod objectives_limits;
mod operators_cli;
mod operators_console;
mod operators_roles;
mod operators_tls;
mod postgres_copy;
mod postgres_faults;
mod posture;
mod process;
mod profiles;
mod providers_console;
mod providers_failover;
mod providers_resolve;
mod startup;
