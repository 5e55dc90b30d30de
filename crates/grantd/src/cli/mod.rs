//! The `grantd` command line: `dev` (the one-command local setup), `serve`, `emulator`,
//! `migrate` and `config check`; `keys` (local) and `integrations`, `connections`, `connect-link`
//! (over the HTTP API of a running grantd, `remote.rs`). Thin: parse, build, call into `server`.

mod dev;
mod keys;
pub mod remote;

use clap::{Parser, Subcommand};
use tokio::net::TcpListener;

use crate::config::Config;
use crate::server::{self, AppState};

#[derive(Debug, Parser)]
#[command(
    name = "grantd",
    version,
    about = "OAuth token broker and Graph proxy for Microsoft 365 (Nango-compatible API)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run grantd with SQLite, the Microsoft emulator and a ready OneDrive for Business
    /// integration: the quickest way to try it.
    Dev(dev::DevArgs),
    /// Run the server (configuration from GRANTD_* environment variables).
    Serve {
        /// Port to listen on (overrides GRANTD_PORT).
        #[arg(long)]
        port: Option<u16>,
    },
    /// Run the Microsoft Entra ID + Graph emulator on its own.
    Emulator(grantd_emulator::cli::Args),
    /// Apply database migrations and exit.
    Migrate,
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Encryption key commands (local: uses the GRANTD_* configuration and the database).
    Keys {
        #[command(subcommand)]
        command: keys::KeysCommand,
    },
    /// Manage integrations of a running grantd (GRANTD_URL, GRANTD_SECRET_KEY).
    Integrations {
        #[command(flatten)]
        remote: remote::Remote,
        #[command(subcommand)]
        command: remote::IntegrationsCommand,
    },
    /// Manage connections of a running grantd (GRANTD_URL, GRANTD_SECRET_KEY).
    Connections {
        #[command(flatten)]
        remote: remote::Remote,
        #[command(subcommand)]
        command: remote::ConnectionsCommand,
    },
    /// The change feed of a connection of a running grantd: status, trigger, pause, start.
    Sync {
        #[command(flatten)]
        remote: remote::Remote,
        #[command(subcommand)]
        command: remote::SyncCommand,
    },
    /// Print a Connect link (a new connect session) for an integration.
    ConnectLink {
        #[command(flatten)]
        remote: remote::Remote,
        #[command(flatten)]
        args: remote::ConnectLinkArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration and print it with secrets hidden.
    Check,
}

pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("GRANTD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tower_http=warn,sqlx=warn"));
    // Logs go to stderr (stdout carries command output), coloured only on a terminal.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .try_init();
}

pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}

fn load_config() -> anyhow::Result<Config> {
    Config::from_env().map_err(|e| anyhow::anyhow!("{e}"))
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Dev(args) => dev::run(args).await,
        Command::Serve { port } => {
            init_tracing();
            let mut config = load_config()?;
            if let Some(p) = port {
                config.port = p;
            }
            let listener = TcpListener::bind((config.host.as_str(), config.port)).await?;
            let state = AppState::build(config, None).await?;
            tracing::info!(
                "grantd listening on {} (callback URL {})",
                listener.local_addr()?,
                state.core.config.callback_url()
            );
            let jobs = crate::jobs::spawn(state.core.clone());
            server::start(state, listener, shutdown_signal()).await?;
            jobs.abort();
            Ok(())
        }
        Command::Emulator(args) => grantd_emulator::cli::run(args).await,
        Command::Keys { command } => keys::run(command).await,
        Command::Integrations { remote, command } => remote::integrations(&remote, command).await,
        Command::Connections { remote, command } => remote::connections(&remote, command).await,
        Command::Sync { remote, command } => remote::sync(&remote, command).await,
        Command::ConnectLink { remote, args } => remote::connect_link(&remote, args).await,
        Command::Migrate => {
            init_tracing();
            let config = load_config()?;
            let state = AppState::build(config, None).await?;
            println!(
                "migrations applied ({} database)",
                state.core.backend_name()
            );
            Ok(())
        }
        Command::Config {
            command: ConfigCommand::Check,
        } => {
            let config = load_config()?;
            print!("{}", config.redacted());
            println!("configuration is valid");
            Ok(())
        }
    }
}
