//! palyrad: the Palyra daemon.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use palyra::settings::{LogFormat, Overrides, Settings};

/// jemalloc rather than glibc's malloc (see the root Cargo.toml).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
    /// Validate the configuration (file, environment, flags), the TLS files, the
    /// remote-bind guard and the PostgreSQL database (reached and checked, not changed)
    /// without starting; exit 0 when it can start, 2 with the reasons.
    CheckConfig,
    /// The daemon's storage.
    #[command(subcommand)]
    Storage(StorageCommand),
    /// TLS material.
    #[command(subcommand)]
    Tls(TlsCommand),
}

#[derive(Debug, Subcommand)]
enum TlsCommand {
    /// Write a key and a self-signed certificate that rustls clients (the CLI with
    /// --ca-cert) accept: not a CA, for serverAuth, every --name a subject alternative
    /// name. Writes DIR/cert.pem and DIR/key.pem (0600); never overwrites.
    SelfSigned {
        /// A host name or IP address clients use (repeatable).
        #[arg(long = "name", required = true)]
        names: Vec<String>,
        /// Days of validity.
        #[arg(long, default_value_t = 365)]
        days: u32,
        #[arg(long)]
        out_dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum StorageCommand {
    /// Copy every table from one database to another and verify the row counts: a
    /// redb data dir to PostgreSQL, or back. Stop palyrad first. The vault key file
    /// stays in the data dir; the daemon on the target needs the same key.
    Copy {
        /// A redb data dir, or `postgres://user@host:port/database`.
        #[arg(long)]
        from: String,
        /// A redb data dir (created if missing), or `postgres://user@host:port/database`.
        #[arg(long)]
        to: String,
        /// A file holding the PostgreSQL password (so it is not on the command line).
        #[arg(long)]
        password_file: Option<PathBuf>,
        /// Empty a target that already holds rows instead of refusing it.
        #[arg(long)]
        overwrite: bool,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(Command::Tls(TlsCommand::SelfSigned {
        names,
        days,
        out_dir,
    })) = &args.command
    {
        return match palyra::tls_gen::self_signed(out_dir, names, *days) {
            Ok(written) => {
                println!("certificate: {}", written.cert_path.display());
                println!("key:         {}", written.key_path.display());
                println!("fingerprint: {}", written.fingerprint);
                println!(
                    "[tls]\ncert_path = {:?}\nkey_path = {:?}",
                    written.cert_path, written.key_path
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("palyrad tls self-signed: {e}");
                ExitCode::from(2)
            }
        };
    }
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
    if let Some(Command::Storage(StorageCommand::Copy {
        from,
        to,
        password_file,
        overwrite,
    })) = &args.command
    {
        return storage_copy(from, to, password_file.as_deref(), *overwrite);
    }
    if let Some(Command::CheckConfig) = args.command {
        let mut problems =
            palyra::application::check_config(&settings, secrets.admin_token.as_ref());
        match runtime() {
            Ok(rt) => {
                problems.extend(rt.block_on(palyra::storage_admin::check_database(&settings)))
            }
            Err(e) => problems.push(e),
        }
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

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))
}

/// `palyrad storage copy`: prints each table's row count, or why it did not copy.
fn storage_copy(
    from: &str,
    to: &str,
    password_file: Option<&std::path::Path>,
    overwrite: bool,
) -> ExitCode {
    use palyra::storage_admin::{Endpoint, copy};
    let password = match password_file {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) => Some(palyra_storage::Password::from_file_contents(
                text.lines().next().unwrap_or_default(),
            )),
            Err(e) => {
                eprintln!("palyrad: {}: {e}", path.display());
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    let endpoints = Endpoint::parse(from, password.clone())
        .and_then(|from| Ok((from, Endpoint::parse(to, password)?)));
    let (from, to) = match endpoints {
        Ok(pair) => pair,
        Err(e) => {
            eprintln!("palyrad: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime().and_then(|rt| rt.block_on(copy(&from, &to, overwrite)));
    match result {
        Ok(report) => {
            for (table, rows) in &report.tables {
                println!("{:<16} {rows}", table.name());
            }
            println!(
                "copied {} rows from {} to {}, counts verified",
                report.tables.iter().map(|(_, n)| n).sum::<u64>(),
                from.describe(),
                to.describe()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("palyrad: storage copy: {e}");
            ExitCode::FAILURE
        }
    }
}
