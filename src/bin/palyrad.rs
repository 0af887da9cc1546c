//! palyrad: the Palyra daemon.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use palyra::settings::{LogFormat, Overrides, Settings};

/// The Palyra daemon: credentials for AI model providers and standing orders for
/// agents, administered over the HTTP admin API at /console/v1.
#[derive(Debug, Parser)]
#[command(name = "palyrad", version)]
struct Args {
    /// TOML config file (overrides the built-in defaults).
    #[arg(long, env = "PALYRA_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:7142].
    #[arg(long)]
    bind: Option<String>,
    /// Directory for the database and the admin token [default: the platform state dir].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Log format [default: human].
    #[arg(long, value_enum)]
    log_format: Option<LogFormat>,
    /// Acknowledge listening on a non-loopback address (TLS and an operator-set admin
    /// token are still required).
    #[arg(long)]
    allow_remote: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate the configuration (file, environment, flags), the TLS files and the
    /// remote-bind guard without starting; exit 0 when it can start, 2 with the reasons.
    CheckConfig,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let overrides = Overrides {
        bind: args.bind,
        data_dir: args.data_dir,
        log_format: args.log_format,
        allow_remote: args.allow_remote,
    };
    let env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("PALYRA_"))
        .collect();
    let settings = match Settings::load(args.config.as_deref(), env, &overrides) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("palyrad: {e}");
            return ExitCode::from(2);
        }
    };
    let secrets = palyra::application::EnvSecrets::from_env();
    if let Some(Command::CheckConfig) = args.command {
        let problems = palyra::application::check_config(&settings, secrets.admin_token.as_ref());
        if problems.is_empty() {
            println!("palyrad: the configuration is valid");
            return ExitCode::SUCCESS;
        }
        for problem in problems {
            eprintln!("palyrad: {problem}");
        }
        return ExitCode::from(2);
    }
    palyra::telemetry::init(&settings.log);
    match palyra::run_daemon(settings, secrets, |_| {}, palyra::shutdown_signal()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "palyrad cannot run");
            eprintln!("palyrad: {e}");
            ExitCode::FAILURE
        }
    }
}
