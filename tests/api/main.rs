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
mod objectives;
mod postgres_copy;
mod postgres_faults;
mod posture;
mod process;
mod profiles;
mod startup;
