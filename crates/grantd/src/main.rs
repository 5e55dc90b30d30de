//! The `grantd` binary: parses the command line and hands over to `grantd::cli`.

use clap::Parser;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = grantd::cli::Cli::parse();
    // Sockets are descriptors: use what the hard limit allows (often 1,024 soft vs much more).
    grantd::listener::raise_fd_limit();
    let runtime = match runtime() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(grantd::cli::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            // Commands that mean something by their exit code say so with `ExitError`.
            match e.downcast_ref::<grantd::cli::remote::ExitError>() {
                Some(x) => std::process::ExitCode::from(x.code),
                None => std::process::ExitCode::FAILURE,
            }
        }
    }
}

/// The main runtime, shaped by `GRANTD_RUNTIME`, `GRANTD_WORKER_THREADS` and
/// `GRANTD_EVENT_INTERVAL` (`grantd::runtime`, docs/deployment.md).
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    grantd::runtime::Shape::from_env()
        .map_err(std::io::Error::other)?
        .main_runtime()
}
