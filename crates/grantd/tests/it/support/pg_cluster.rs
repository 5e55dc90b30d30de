//! A private PostgreSQL cluster for crash tests: `initdb` into a temp directory, `pg_ctl` on a
//! free loopback port, crashed with `pg_ctl stop -m immediate` (the postmaster and every backend
//! die at once, as in a crash; recovery replays the WAL at the next start) and started again.
//! Never the machine's shared cluster, which other tests use.
//!
//! The cluster runs with `fsync=off`: these tests crash the server *process*, not the machine, so
//! everything PostgreSQL wrote has reached the kernel and survives; only power loss would need
//! the fsyncs. PostgreSQL refuses to run as root, so as root (CI) every command runs as the
//! `postgres` user through `runuser`.
//!
//! Missing binaries print `SKIPPED: …` and give `None`; with `GRANTD_TEST_NO_SKIP=1` (CI) the test
//! fails instead.
#![allow(dead_code)] // shared by several test modules; each uses a part

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct PgCluster {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    /// `Some("postgres")` when running as root: commands go through `runuser -u postgres`.
    run_as: Option<&'static str>,
}

fn skip(reason: String) -> Option<PgCluster> {
    let reason = format!("SKIPPED: {reason}");
    if std::env::var("GRANTD_TEST_NO_SKIP").is_ok_and(|v| v == "1") {
        panic!("{reason}, and GRANTD_TEST_NO_SKIP=1");
    }
    println!("{reason}");
    None
}

/// The directory holding `initdb` and `pg_ctl`: `pg_config --bindir`, else the newest
/// `/usr/lib/postgresql/*/bin` (Debian keeps them off the PATH).
fn bin_dir() -> Option<PathBuf> {
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").exists() && dir.join("pg_ctl").exists() {
            return Some(dir);
        }
    }
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    dirs.sort();
    dirs.pop().map(|(_, d)| d)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl PgCluster {
    /// A new cluster, started, with trust authentication for `postgres`.
    pub fn start(what: &str) -> Option<PgCluster> {
        let Some(bin) = bin_dir() else {
            return skip(format!("PostgreSQL's initdb/pg_ctl not found ({what})"));
        };
        let run_as = if is_root() {
            if !Path::new("/usr/sbin/runuser").exists() && !Path::new("/sbin/runuser").exists() {
                return skip(format!("running as root without runuser ({what})"));
            }
            Some("postgres")
        } else {
            None
        };
        let dir = std::env::temp_dir().join(format!(
            "grantd-pgcluster-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let cluster = PgCluster {
            dir,
            bin,
            port: free_port(),
            run_as,
        };
        if run_as.is_some() {
            let chown = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&cluster.dir)
                .output()
                .unwrap();
            assert!(chown.status.success(), "chown: {chown:?}");
        }
        let data = cluster.data_dir();
        let init = cluster.run(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        assert!(init.status.success(), "initdb failed: {init:?}");
        cluster.start_server();
        Some(cluster)
    }

    fn data_dir(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    fn run(&self, tool: &str, args: &[&str]) -> Output {
        let exe = self.bin.join(tool);
        let mut cmd = match self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(exe);
                c
            }
            None => Command::new(exe),
        };
        cmd.args(args).output().unwrap()
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the server and waits until it accepts connections (`pg_ctl -w`).
    pub fn start_server(&self) {
        let data = self.data_dir();
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c fsync=off \
             -c full_page_writes=off -c max_connections=200",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("server.log").display().to_string();
        let out = self.run(
            "pg_ctl",
            &[
                "-D", &data, "-l", &log, "-o", &opts, "-w", "-t", "60", "start",
            ],
        );
        assert!(
            out.status.success(),
            "pg_ctl start failed: {out:?}\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Kills the server as a crash would: `pg_ctl stop -m immediate` (no checkpoint, every
    /// connection cut; the next start runs crash recovery).
    pub fn crash(&self) {
        let data = self.data_dir();
        let out = self.run("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]);
        assert!(out.status.success(), "pg_ctl stop failed: {out:?}");
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let data = self.data_dir();
        let _ = self.run("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
