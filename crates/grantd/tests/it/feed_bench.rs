//! Change-feed measurements (issue 12, "Measure it"), run by `bench/feed/run.sh` (ignored in the
//! normal test run; each prints `BENCH name value` lines). grantd and the emulator run in this
//! process (real HTTP on loopback): so CPU and RSS figures include the emulator, and say so.
//!
//! - `bench_feed_lag`: a user edit at the emulator → the record visible in `/records` and the
//!   `sync` webhook received, with push, then with every notification dropped (after the drive
//!   was detected as not notified, so polled every `GRANTD_SYNC_POLL_SECS` = 10 s; edits at
//!   random points of the polling cycle).
//! - `bench_initial_sync_large_drive`: initial sync of a drive seeded with `BENCH_BIG_FILES`
//!   (100,000) files: time and peak RSS growth.
//! - `bench_idle_watched_drives`: `BENCH_IDLE_DRIVES` (10,000) watched drives with push working:
//!   Graph calls per drive over one simulated day (driven clock) and CPU at rest.

use std::time::{Duration, Instant};

use grantd::clock::Clock;
use grantd::config::LifecycleConfig;
use grantd_emulator::actions::UserAction;
use grantd_emulator::faults::{FaultScope, FaultSpec};
use grantd_emulator::seed;
use serde_json::{Value, json};

use crate::feed::{KEY, act, own_drive, status_of, sync_hooks, total, trigger};
use crate::support::app::{Opts, TestApp};
use crate::support::webhook_receiver::Receiver;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The `p`-quantile (nearest rank) of `v`, in seconds.
fn quantile(v: &[f64], p: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p * s.len() as f64).ceil() as usize).clamp(1, s.len());
    s[rank - 1]
}

/// A `/proc/self/status` field in KiB (`VmRSS`, `VmHWM`).
fn proc_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// Resets the peak RSS (`VmHWM`) to the current RSS.
fn reset_peak_rss() {
    std::fs::write("/proc/self/clear_refs", "5").expect("clear_refs");
}

/// CPU seconds (user + system) this process used so far.
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime) are 12 and 13 after the command name.
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// Polling every 10 s (the smallest interval), the jobs loop every `jobs` seconds.
fn lifecycle(rx: Option<&Receiver>, push: bool, jobs: u64) -> LifecycleConfig {
    LifecycleConfig {
        webhook_url: rx.map(|r| url::Url::parse(&r.url).unwrap()),
        sync_push: Some(push),
        sync_poll_interval: Duration::from_secs(10),
        jobs_interval: Duration::from_secs(jobs),
        ..Default::default()
    }
}

async fn bench_app(rx: Option<&Receiver>, push: bool, jobs: u64) -> (TestApp, String) {
    let app = TestApp::spawn_with(Opts {
        lifecycle: Some(lifecycle(rx, push, jobs)),
        ..Default::default()
    })
    .await
    .unwrap();
    // The background jobs, as `grantd serve` runs them (the schedule, outbox retries).
    grantd::jobs::spawn(app.state.core.clone());
    app.create_integration(KEY, "User.Read,Files.ReadWrite.All")
        .await;
    let id = app.connect(KEY, "bench-user", seed::ADELE_UPN).await;
    (app, id)
}

/// Waits until the drive's run released its lease.
async fn run_finished(app: &TestApp, id: &str) -> grantd::store::SyncDrive {
    loop {
        let d = own_drive(app, id).await;
        if d.lease_until.is_none() && !d.run_requested {
            return d;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `n` file creations, each timed from the control API call to (record visible, webhook
/// received). `/records` is sampled every 5 ms (the measurement's resolution). With `phases`
/// (the polling interval), each edit waits a random (seeded) part of it first, so edits land at
/// random points of the polling cycle, as a user's would, rather than right after a poll.
async fn lags(
    app: &TestApp,
    rx: &Receiver,
    id: &str,
    label: &str,
    n: u64,
    phases: Option<Duration>,
) -> (Vec<f64>, Vec<f64>) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(env_num("BENCH_LAG_SEED", 7));
    let (mut rec, mut hook) = (Vec::new(), Vec::new());
    for i in 0..n {
        if let Some(cycle) = phases {
            // The measured scenario itself (a user acting at a random moment), not a wait.
            tokio::time::sleep(cycle.mul_f64(rng.gen_range(0.0..1.0))).await;
        }
        let seen = sync_hooks(&rx.received()).len();
        let t0 = Instant::now();
        let item = act(
            app,
            UserAction::CreateFile {
                path: format!("Lag/{label}-{i}.txt"),
                content: format!("{label} {i}"),
            },
        )
        .await;
        loop {
            let page: Value = app
                .get(&format!("/records?model=OneDriveFile&ids={item}"))
                .header("Connection-Id", id)
                .header("Provider-Config-Key", KEY)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if !page["records"].as_array().unwrap().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        rec.push(t0.elapsed().as_secs_f64());
        let got = rx
            .wait_until(|g| {
                let h = sync_hooks(g);
                total(&h, seen, "added") >= 1
            })
            .await;
        let at = got
            .iter()
            .filter(|r| r.json()["type"] == "sync")
            .nth(seen)
            .unwrap()
            .at;
        hook.push(at.duration_since(t0).as_secs_f64());
    }
    (rec, hook)
}

fn report(label: &str, v: &[f64]) {
    println!(
        "BENCH {label} n={} p50={:.3}s p95={:.3}s max={:.3}s",
        v.len(),
        quantile(v, 0.5),
        quantile(v, 0.95),
        quantile(v, 1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: bench/feed/run.sh"]
async fn bench_feed_lag() {
    let rx = Receiver::spawn().await;
    let (app, id) = bench_app(Some(&rx), true, 1).await;
    trigger(&app, &id, json!({})).await;
    rx.wait_until(|g| !sync_hooks(g).is_empty()).await;
    run_finished(&app, &id).await;
    let n = env_num("BENCH_LAG_EDITS", 40);
    let (rec, hook) = lags(&app, &rx, &id, "push", n, None).await;
    report("lag_push_records", &rec);
    report("lag_push_webhook", &hook);

    // Every notification dropped: the next run no notification started finds the change (the
    // daily reconciliation, driven clock) and the drive is polled from then on.
    let control = app.emu.control();
    control
        .add_fault(&FaultSpec {
            down: true,
            ..FaultSpec::new(FaultScope::Notifications)
        })
        .await
        .unwrap();
    let seen = sync_hooks(&rx.received()).len();
    act(
        &app,
        UserAction::CreateFile {
            path: "Lag/lost.txt".into(),
            content: "lost".into(),
        },
    )
    .await;
    app.clock.advance(86_400 + 1);
    rx.wait_until(|g| total(&sync_hooks(g), seen, "added") >= 1)
        .await;
    run_finished(&app, &id).await;
    let st = status_of(&app, &id).await;
    assert_eq!(st["push"], "stale", "{st}");
    println!(
        "BENCH dropped_detected_by=daily_reconciliation frequency={}",
        st["frequency"]
    );
    let poll = app.state.core.config.lifecycle.sync_poll_interval;
    let (rec, hook) = lags(&app, &rx, &id, "dropped", n / 2, Some(poll)).await;
    report("lag_dropped_records", &rec);
    report("lag_dropped_webhook", &hook);
    let dropped = control.notification_counters().await.unwrap().dropped;
    println!(
        "BENCH lag_dropped_notifications_dropped={dropped} poll_interval=10s jobs_interval=1s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: bench/feed/run.sh"]
async fn bench_initial_sync_large_drive() {
    let rx = Receiver::spawn().await;
    let (app, id) = bench_app(Some(&rx), false, 1).await;
    let files = env_num("BENCH_BIG_FILES", 100_000) as u32;
    let seeded = Instant::now();
    let made = app
        .emu
        .control()
        .bulk_create(seed::ADELE_UPN, "Big", files, 1_000)
        .await
        .unwrap();
    println!(
        "BENCH big_seeded files={} folders={} in {:.1}s",
        made.files,
        made.folders,
        seeded.elapsed().as_secs_f64()
    );
    reset_peak_rss();
    let base = proc_kib("VmRSS");
    let t0 = Instant::now();
    trigger(&app, &id, json!({})).await;
    rx.wait_until(|g| total(&sync_hooks(g), 0, "added") >= u64::from(files))
        .await;
    let d = run_finished(&app, &id).await;
    let secs = t0.elapsed().as_secs_f64();
    let peak = proc_kib("VmHWM");
    assert_eq!(d.last_error, None);
    let added = total(&sync_hooks(&rx.received()), 0, "added");
    let st = status_of(&app, &id).await;
    println!(
        "BENCH initial_sync items={added} records={} time={secs:.1}s rss_before={}MiB peak_growth={:.1}MiB webhooks={}",
        st["recordCount"]["OneDriveFile"],
        base / 1024,
        (peak.saturating_sub(base)) as f64 / 1024.0,
        sync_hooks(&rx.received()).len()
    );
    assert!(added >= u64::from(files));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: bench/feed/run.sh"]
async fn bench_idle_watched_drives() {
    let (app, first) = bench_app(None, true, 60).await;
    let drives = env_num("BENCH_IDLE_DRIVES", 10_000);
    let (_, conn) = app.connection(KEY, &first, "").await;
    let creds = &conn["credentials"];
    let mut ids = vec![first.clone()];
    let t0 = Instant::now();
    // Connections through the API, 100 requests in flight at a time.
    let all: Vec<u64> = (1..drives).collect();
    for chunk in all.chunks(100) {
        let made = futures::future::join_all(chunk.iter().map(|i| {
            let cid = format!("idle-{i}");
            let req = app.post(
                "/connections",
                &json!({
                    "provider_config_key": KEY,
                    "connection_id": cid,
                    "credentials": {
                        "type": "OAUTH2",
                        "access_token": creds["access_token"],
                        "refresh_token": creds["refresh_token"],
                        "expires_at": creds["expires_at"],
                    },
                }),
            );
            async move {
                let r = req.send().await.unwrap();
                assert!(r.status().is_success(), "{}", r.text().await.unwrap());
                cid
            }
        }))
        .await;
        ids.extend(made);
    }
    println!(
        "BENCH idle_connections drives={drives} in {:.0}s",
        t0.elapsed().as_secs_f64()
    );
    // Every drive's initial sync (which subscribes), 200 at a time.
    for chunk in ids.chunks(200) {
        for id in chunk {
            trigger(&app, id, json!({})).await;
        }
        for id in chunk {
            run_finished(&app, id).await;
        }
    }
    let subs = app.emu.control().subscriptions().await.unwrap().len();
    println!(
        "BENCH idle_setup drives={drives} subscriptions={subs} in {:.0}s",
        t0.elapsed().as_secs_f64()
    );
    assert_eq!(subs as u64, drives, "one subscription per watched drive");

    // At rest: no edits, the jobs loop ticking every 60 s (the default; real time).
    let window = env_num("BENCH_IDLE_WINDOW_SECS", 60);
    let before = app.emu.control().counters().await.unwrap();
    let (c0, w0) = (cpu_secs(), Instant::now());
    tokio::time::sleep(Duration::from_secs(window)).await; // the measured window itself
    let cpu = (cpu_secs() - c0) / w0.elapsed().as_secs_f64();
    let calls =
        |c: &grantd_emulator::counters::CounterSnapshot| -> u64 { c.graph_requests.values().sum() };
    let after = app.emu.control().counters().await.unwrap();
    println!(
        "BENCH idle_at_rest window={window}s cpu={:.1}% graph_calls={}",
        cpu * 100.0,
        calls(&after) - calls(&before)
    );

    // One simulated day, an hour at a time: each schedule pass runs what is due; the count is
    // the Graph calls the emulator answered.
    let before = after;
    for _ in 0..24 {
        app.clock.advance(3_600);
        loop {
            let n = grantd::jobs::sync::run_once(&app.state.core, app.clock.now())
                .await
                .unwrap();
            if n == 0 {
                break;
            }
        }
    }
    for id in &ids {
        run_finished(&app, id).await;
    }
    let after = app.emu.control().counters().await.unwrap();
    let day = calls(&after) - calls(&before);
    let by_route: Vec<String> = after
        .graph_requests
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}={}",
                v - before.graph_requests.get(k).copied().unwrap_or(0)
            )
        })
        .filter(|s| !s.ends_with("=0"))
        .collect();
    println!(
        "BENCH idle_day drives={drives} graph_calls={day} per_drive_per_day={:.3} routes={by_route:?} now={}",
        day as f64 / drives as f64,
        app.clock.now()
    );
}
