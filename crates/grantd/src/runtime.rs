//! The runtime's shape: how many threads answer requests and how they share the work
//! (`GRANTD_RUNTIME`, `GRANTD_WORKER_THREADS`, `GRANTD_EVENT_INTERVAL`; docs/deployment.md).
//!
//! - `multi_thread`: tokio's work-stealing runtime, one worker per core, runs everything.
//! - `current_thread`: everything on one thread.
//! - `per_core`: requests are answered by one single-threaded runtime per core, each accepting
//!   from the same listening socket and keeping its own pool of upstream connections, so a
//!   proxied call is read, forwarded and answered on one thread with no cross-thread wake-up;
//!   background work (refreshes, the change feed, webhooks, the `last_fetched_at` flusher)
//!   runs on a multi-threaded runtime of its own, off the threads that answer requests.
//!
//! Read by `main` before anything else (the main runtime is built from it) and by `Config`
//! (`server::start` reads `serve_threads` to start the serving threads).

use std::io;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    MultiThread,
    CurrentThread,
    PerCore,
}

/// Which runtimes run what: `Flavor`, the thread count and tokio's event interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub flavor: Flavor,
    /// `multi_thread`: worker threads; `per_core`: serving threads. `None`: one per core.
    pub threads: Option<usize>,
    /// Tasks a thread runs between polls of the I/O driver (tokio's default 61).
    pub event_interval: Option<u32>,
}

impl Default for Shape {
    fn default() -> Self {
        Shape {
            flavor: Flavor::PerCore,
            threads: None,
            event_interval: None,
        }
    }
}

impl Shape {
    /// `per_core` with `threads` serving threads.
    pub fn per_core(threads: usize) -> Shape {
        Shape {
            flavor: Flavor::PerCore,
            threads: Some(threads),
            event_interval: None,
        }
    }

    /// Requests answered by tasks of the runtime `server::start` is called on.
    pub fn inline() -> Shape {
        Shape {
            flavor: Flavor::MultiThread,
            threads: None,
            event_interval: None,
        }
    }

    /// Reads the variables through `get`; each problem is added to `problems`.
    pub fn from_vars(get: &impl Fn(&str) -> Option<String>, problems: &mut Vec<String>) -> Shape {
        let d = Shape::default();
        let flavor = match get("GRANTD_RUNTIME").as_deref().map(str::trim) {
            None | Some("") => d.flavor,
            Some("per_core") => Flavor::PerCore,
            Some("multi_thread") => Flavor::MultiThread,
            Some("current_thread") => Flavor::CurrentThread,
            Some(other) => {
                problems.push(format!(
                    "GRANTD_RUNTIME: {other:?} must be per_core (the default), multi_thread or current_thread"
                ));
                d.flavor
            }
        };
        let mut num = |name: &str, max: usize| match get(name).as_deref().map(str::trim) {
            None | Some("") => None,
            Some(v) => match v.parse::<usize>() {
                Ok(n) if (1..=max).contains(&n) => Some(n),
                _ => {
                    problems.push(format!("{name}: {v:?} must be a number from 1 to {max}"));
                    None
                }
            },
        };
        let threads = num("GRANTD_WORKER_THREADS", 1024);
        let event_interval = num("GRANTD_EVENT_INTERVAL", u32::MAX as usize).map(|n| n as u32);
        Shape {
            flavor,
            threads,
            event_interval,
        }
    }

    /// From the process environment.
    pub fn from_env() -> Result<Shape, String> {
        let mut problems = Vec::new();
        let shape = Shape::from_vars(
            &|k| std::env::var(k).ok().filter(|v| !v.is_empty()),
            &mut problems,
        );
        match problems.is_empty() {
            true => Ok(shape),
            false => Err(problems.join("; ")),
        }
    }

    /// How many threads of their own `server::start` serves on (0: on the caller's runtime).
    pub fn serve_threads(&self) -> usize {
        match self.flavor {
            Flavor::PerCore => self.threads.unwrap_or_else(cores),
            Flavor::MultiThread | Flavor::CurrentThread => 0,
        }
    }

    /// The runtime `main` runs everything on: with `per_core`, everything but answering
    /// requests (tokio's default worker count, `TOKIO_WORKER_THREADS` honoured).
    pub fn main_runtime(&self) -> io::Result<tokio::runtime::Runtime> {
        let mut b = match self.flavor {
            Flavor::CurrentThread => tokio::runtime::Builder::new_current_thread(),
            Flavor::MultiThread | Flavor::PerCore => tokio::runtime::Builder::new_multi_thread(),
        };
        b.enable_all();
        if let (Flavor::MultiThread, Some(n)) = (self.flavor, self.threads) {
            b.worker_threads(n);
        }
        if let Some(n) = self.event_interval {
            b.event_interval(n);
        }
        b.build()
    }

    /// One serving thread's runtime (`per_core`).
    pub fn serving_runtime(&self) -> io::Result<tokio::runtime::Runtime> {
        let mut b = tokio::runtime::Builder::new_current_thread();
        b.enable_all();
        if let Some(n) = self.event_interval {
            b.event_interval(n);
        }
        b.build()
    }

    /// For `grantd config check`.
    pub fn describe(&self) -> String {
        let n = self.serve_threads();
        match self.flavor {
            Flavor::PerCore => format!("per_core ({n} serving threads)"),
            Flavor::MultiThread => match self.threads {
                Some(t) => format!("multi_thread ({t} workers)"),
                None => format!("multi_thread ({} workers)", cores()),
            },
            Flavor::CurrentThread => "current_thread".into(),
        }
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
