//! The `grantd` binary's commands, run as a user would (`env!("CARGO_BIN_EXE_grantd")`): the
//! API commands (`integrations`, `connections`, `connect-link`) against a live grantd with its
//! emulator, their `--json` output and exit codes (`keys` is tested in `rekey.rs`).

use grantd_emulator::seed;
use serde_json::Value;

use crate::support::app::{SECRET, TestApp};

pub(crate) struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub(crate) async fn grantd(app: &TestApp, args: &[&str]) -> Out {
    grantd_env(
        &[("GRANTD_URL", &app.url), ("GRANTD_SECRET_KEY", SECRET)],
        args,
    )
    .await
}

pub(crate) async fn grantd_env(env: &[(&str, &str)], args: &[&str]) -> Out {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_grantd"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let o = cmd.output().await.expect("grantd runs");
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

pub(crate) fn ok(o: &Out) -> &str {
    assert_eq!(o.code, 0, "stdout: {}\nstderr: {}", o.stdout, o.stderr);
    &o.stdout
}

fn json(o: &Out) -> Value {
    serde_json::from_str(ok(o)).unwrap_or_else(|e| panic!("{e}: {}", o.stdout))
}

#[tokio::test]
async fn integrations_commands() {
    let app = TestApp::spawn().await;
    let out = grantd(
        &app,
        &[
            "integrations",
            "create",
            "drive-a",
            "--client-id",
            seed::DEV_CLIENT_ID,
            "--client-secret",
            seed::DEV_CLIENT_SECRET,
            "--display-name",
            "Drive A",
        ],
    )
    .await;
    let text = ok(&out);
    assert!(text.contains("created integration drive-a"), "{text}");
    assert!(
        text.contains(&format!("{}/oauth/callback", app.url)),
        "{text}"
    );
    assert!(
        !text.contains(seed::DEV_CLIENT_SECRET) && !out.stderr.contains(seed::DEV_CLIENT_SECRET)
    );

    let text = ok(&grantd(&app, &["integrations", "list"]).await).to_owned();
    let mut lines = text.lines();
    assert!(lines.next().unwrap().starts_with("KEY"), "{text}");
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("drive-a  one-drive  Drive A"),
        "{text}"
    );

    let list = json(&grantd(&app, &["integrations", "list", "--json"]).await);
    assert_eq!(list[0]["unique_key"], "drive-a");

    let show = json(&grantd(&app, &["integrations", "show", "drive-a", "--json"]).await);
    assert_eq!(show["provider"], "one-drive");
    let text = ok(&grantd(&app, &["integrations", "show", "drive-a"]).await).to_owned();
    assert!(text.contains("redirect URI"), "{text}");

    // Exit codes: duplicate (2), missing (3), bad key (4), unreachable (5), usage (2).
    let dup = grantd(
        &app,
        &[
            "integrations",
            "create",
            "drive-a",
            "--client-id",
            "x",
            "--client-secret",
            "y",
        ],
    )
    .await;
    assert_eq!(dup.code, 2, "{}", dup.stderr);
    let missing = grantd(&app, &["integrations", "show", "nope"]).await;
    assert_eq!(missing.code, 3, "{}", missing.stderr);
    let bad = grantd_env(
        &[
            ("GRANTD_URL", &app.url),
            ("GRANTD_SECRET_KEY", "wrong-key-wrong-key"),
        ],
        &["integrations", "list"],
    )
    .await;
    assert_eq!(bad.code, 4, "{}", bad.stderr);
    assert!(bad.stderr.contains("secret key"), "{}", bad.stderr);
    let down = grantd_env(
        &[
            ("GRANTD_URL", "http://127.0.0.1:9"),
            ("GRANTD_SECRET_KEY", SECRET),
        ],
        &["integrations", "list"],
    )
    .await;
    assert_eq!(down.code, 5, "{}", down.stderr);
    let no_key = grantd_env(&[("GRANTD_URL", &app.url)], &["integrations", "list"]).await;
    assert_eq!(no_key.code, 2, "{}", no_key.stderr);
    let usage = grantd(&app, &["integrations", "frobnicate"]).await;
    assert_eq!(usage.code, 2);

    ok(&grantd(&app, &["integrations", "delete", "drive-a"]).await);
    let gone = grantd(&app, &["integrations", "delete", "drive-a"]).await;
    assert_eq!(gone.code, 3, "{}", gone.stderr);
}

#[tokio::test]
async fn connections_commands_and_connect_link() {
    let app = TestApp::spawn().await;
    app.create_integration("one-drive", "offline_access,User.Read,Files.Read.All")
        .await;

    // connect-link prints a link that opens the Connect UI.
    let link = ok(&grantd(&app, &["connect-link", "one-drive", "--end-user-id", "u-1"]).await)
        .trim()
        .to_owned();
    assert!(
        link.starts_with(&format!("{}/connect?session_token=", app.url)),
        "{link}"
    );
    let page = app.http.get(&link).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("/oauth/connect/one-drive")
    );
    let j = json(&grantd(&app, &["connect-link", "one-drive", "--json"]).await);
    assert!(
        j["connect_link"]
            .as_str()
            .unwrap()
            .contains("session_token=")
    );
    let unknown = grantd(&app, &["connect-link", "nope"]).await;
    assert_ne!(unknown.code, 0);

    let id = app
        .connect("one-drive", "u-1", "adele@contoso.onmicrosoft.com")
        .await;

    let text = ok(&grantd(&app, &["connections", "list"]).await).to_owned();
    assert!(
        text.contains(&id) && text.contains("u-1") && text.contains("ok"),
        "{text}"
    );
    let list = json(&grantd(&app, &["connections", "list", "--json", "--search", "u-1"]).await);
    assert_eq!(list[0]["connection_id"], id.as_str());
    let none = json(&grantd(&app, &["connections", "list", "--json", "--search", "zzz"]).await);
    assert_eq!(none.as_array().unwrap().len(), 0);

    // sync: trigger, status, pause, start (the change feed of the connection).
    let sync = |cmd: &'static str, extra: &'static [&'static str]| {
        let mut args = vec!["sync", cmd, id.as_str(), "--integration", "one-drive"];
        args.extend_from_slice(extra);
        args
    };
    assert!(ok(&grantd(&app, &sync("trigger", &[])).await).contains("ok"));
    ok(&grantd(&app, &sync("pause", &[])).await);
    let st = json(&grantd(&app, &sync("status", &["--json"])).await);
    assert_eq!(st["syncs"][0]["name"], "user-files");
    assert_eq!(st["syncs"][0]["status"], "PAUSED");
    let text = ok(&grantd(&app, &sync("status", &[])).await).to_owned();
    assert!(
        text.contains("PAUSED") && text.contains("records"),
        "{text}"
    );
    ok(&grantd(&app, &sync("start", &[])).await);
    // Without a connection id: every watched connection of the integration.
    let all = ["--integration", "one-drive"];
    let paused = ok(&grantd(&app, &[&["sync", "pause"][..], &all].concat()).await).to_owned();
    assert!(paused.contains("every watched connection"), "{paused}");
    let st = json(&grantd(&app, &[&["sync", "status", "--json"][..], &all].concat()).await);
    let syncs = st["syncs"].as_array().unwrap();
    assert_eq!(syncs.len(), 1, "the one watched connection: {st}");
    assert_eq!(syncs[0]["connection_id"], id.as_str());
    assert_eq!(syncs[0]["status"], "PAUSED", "paused without naming it");
    let text = ok(&grantd(&app, &[&["sync", "status"][..], &all].concat()).await).to_owned();
    assert!(
        text.contains(id.as_str()) && text.contains("PAUSED"),
        "{text}"
    );
    ok(&grantd(&app, &[&["sync", "start"][..], &all].concat()).await);
    let st = json(&grantd(&app, &sync("status", &["--json"])).await);
    assert_ne!(
        st["syncs"][0]["status"], "PAUSED",
        "started without naming it"
    );
    ok(&grantd(&app, &[&["sync", "trigger", "--full"][..], &all].concat()).await);
    let unknown = grantd(
        &app,
        &["sync", "status", "nope", "--integration", "one-drive"],
    )
    .await;
    assert_ne!(unknown.code, 0);

    // show: tokens are hidden unless asked for.
    let (_, full) = app.connection("one-drive", &id, "").await;
    let access = full["credentials"]["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let shown = grantd(
        &app,
        &["connections", "show", &id, "--integration", "one-drive"],
    )
    .await;
    let text = ok(&shown);
    assert!(
        text.contains("token expires") && text.contains("status            ok"),
        "{text}"
    );
    assert!(!text.contains(&access));
    let j = json(
        &grantd(
            &app,
            &[
                "connections",
                "show",
                &id,
                "--integration",
                "one-drive",
                "--json",
            ],
        )
        .await,
    );
    assert_eq!(j["credentials"]["access_token"], "***");
    let j = json(
        &grantd(
            &app,
            &[
                "connections",
                "show",
                &id,
                "--integration",
                "one-drive",
                "--json",
                "--reveal-tokens",
            ],
        )
        .await,
    );
    assert!(j["credentials"]["access_token"].as_str().unwrap().len() > 20);

    // refresh: works, then fails with exit code 6 once the user is revoked.
    let text = ok(&grantd(
        &app,
        &["connections", "refresh", &id, "--integration", "one-drive"],
    )
    .await)
    .to_owned();
    assert!(text.starts_with(&format!("refreshed {id}")), "{text}");
    app.emu
        .control()
        .revoke_user("adele@contoso.onmicrosoft.com")
        .await
        .unwrap();
    let failed = grantd(
        &app,
        &["connections", "refresh", &id, "--integration", "one-drive"],
    )
    .await;
    assert_eq!(failed.code, 6, "{}\n{}", failed.stdout, failed.stderr);
    assert!(
        failed.stderr.contains("AADSTS") || failed.stderr.contains("reconnect"),
        "{}",
        failed.stderr
    );

    let missing = grantd(
        &app,
        &["connections", "show", "nope", "--integration", "one-drive"],
    )
    .await;
    assert_ne!(missing.code, 0);
    ok(&grantd(
        &app,
        &["connections", "delete", &id, "--integration", "one-drive"],
    )
    .await);
    let list = json(&grantd(&app, &["connections", "list", "--json"]).await);
    assert_eq!(list.as_array().unwrap().len(), 0);
}
