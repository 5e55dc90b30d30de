//! The `grantd-emulator` binary: parses [`grantd_emulator::cli::Args`] and runs the emulator.

use clap::Parser as _;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    grantd_emulator::cli::run(grantd_emulator::cli::Args::parse()).await
}
