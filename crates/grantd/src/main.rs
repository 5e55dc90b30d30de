//! The `grantd` binary: parses the command line and hands over to `grantd::cli`.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = grantd::cli::Cli::parse();
    // Sockets are descriptors: use what the hard limit allows (often 1,024 soft vs much more).
    grantd::listener::raise_fd_limit();
    match grantd::cli::run(cli).await {
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
