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

/// The tokio runtime: multi-threaded, one worker per core unless `GRANTD_WORKER_THREADS` (or
/// tokio's own `TOKIO_WORKER_THREADS`) says otherwise; `GRANTD_RUNTIME=current_thread` runs
/// everything on one thread; `GRANTD_EVENT_INTERVAL` sets how many tasks a worker runs between
/// polls of the I/O driver (tokio's default 61). See docs/deployment.md.
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let num = |name: &str| -> std::io::Result<Option<usize>> {
        match std::env::var(name) {
            Ok(v) if !v.trim().is_empty() => v.trim().parse::<usize>().map(Some).map_err(|_| {
                std::io::Error::other(format!("{name} must be a whole number, not {v:?}"))
            }),
            _ => Ok(None),
        }
    };
    let mut b = match std::env::var("GRANTD_RUNTIME").as_deref() {
        Ok("current_thread") => tokio::runtime::Builder::new_current_thread(),
        Ok("multi_thread") | Ok("") | Err(_) => tokio::runtime::Builder::new_multi_thread(),
        Ok(other) => {
            return Err(std::io::Error::other(format!(
                "GRANTD_RUNTIME must be multi_thread or current_thread, not {other:?}"
            )));
        }
    };
    b.enable_all();
    if let Some(n) = num("GRANTD_WORKER_THREADS")?.filter(|n| *n > 0) {
        b.worker_threads(n);
    }
    if let Some(n) = num("GRANTD_EVENT_INTERVAL")?.filter(|n| *n > 0) {
        b.event_interval(u32::try_from(n).unwrap_or(u32::MAX));
    }
    b.build()
}
