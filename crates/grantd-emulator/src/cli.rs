//! Command line of the emulator (`grantd emulator …` and the `grantd-emulator` binary): clap
//! [`Args`] and [`run`], which serves until Ctrl-C.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;

use crate::seed::{self, Seed};
use crate::server::{EmulatorConfig, spawn};

/// Run the Microsoft Entra ID + Graph emulator.
#[derive(Debug, Clone, Parser)]
#[command(name = "grantd-emulator", version, about)]
pub struct Args {
    /// HTTP port.
    #[arg(long, default_value_t = 4100, env = "GRANTD_EMULATOR_PORT")]
    pub port: u16,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1", env = "GRANTD_EMULATOR_HOST")]
    pub host: IpAddr,
    /// Also serve HTTPS (self-signed CA generated at start).
    #[arg(long)]
    pub tls: bool,
    /// HTTPS port (implies --tls); default 4443 with --tls.
    #[arg(long)]
    pub https_port: Option<u16>,
    /// Where to write the CA certificate PEM (with --tls); default `./emulator-ca.pem`.
    #[arg(long)]
    pub ca_out: Option<PathBuf>,
    /// TOML file overriding the seed (tenants, users, apps, admin_consents).
    #[arg(long)]
    pub seed: Option<PathBuf>,
    /// Size in bytes of the generated large file in every drive.
    #[arg(long, default_value_t = 1 << 30)]
    pub large_file_size: u64,
    /// Fixed access-token lifetime in seconds (default: random 3600–5399 like Microsoft).
    #[arg(long)]
    pub token_lifetime: Option<u64>,
    /// Origin to put in issuers and endpoint URLs (e.g. when behind a proxy).
    #[arg(long)]
    pub public_base_url: Option<String>,
    /// Batching delay of change notifications in milliseconds (default 3000).
    #[arg(long)]
    pub notification_delay_ms: Option<u64>,
    /// Mint upload-session and copy-monitor URLs on Graph's origin (default: the other loopback
    /// name, a different origin as in production).
    #[arg(long)]
    pub same_origin_upload_urls: bool,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let seed = match &args.seed {
        Some(p) => Some(Seed::from_file(p)?),
        None => None,
    };
    let tls = args.tls || args.https_port.is_some();
    let config = EmulatorConfig {
        seed,
        large_file_size: args.large_file_size,
        access_token_lifetime: args.token_lifetime,
        tls,
        https_addr: tls.then(|| SocketAddr::new(args.host, args.https_port.unwrap_or(4443))),
        ca_pem_path: tls.then(|| {
            args.ca_out
                .clone()
                .unwrap_or_else(|| PathBuf::from("emulator-ca.pem"))
        }),
        public_base_url: args.public_base_url.clone(),
        notification_delay_ms: args.notification_delay_ms,
        same_origin_upload_urls: args.same_origin_upload_urls,
        ..EmulatorConfig::default()
    };
    let addr = SocketAddr::new(args.host, args.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let handle = spawn(config, listener).await?;
    println!("grantd emulator listening on {}", handle.base_url);
    if let (Some(u), Some(p)) = (&handle.https_url, &handle.ca_pem_path) {
        println!("  HTTPS on {u} (trust the CA in {})", p.display());
    }
    println!(
        "  authority: {}/common   Graph: {}/v1.0   control: {}/_emulator",
        handle.base_url, handle.base_url, handle.base_url
    );
    println!(
        "  dev app client_id={} secret={}",
        seed::DEV_CLIENT_ID,
        seed::DEV_CLIENT_SECRET
    );
    println!(
        "  users: {}, {} (admin), {}, {} — password '{}'",
        seed::ADELE_UPN,
        seed::MEGAN_UPN,
        seed::DIEGO_UPN,
        seed::SAM_UPN,
        seed::PASSWORD
    );
    tokio::signal::ctrl_c().await?;
    handle.shutdown().await;
    Ok(())
}
