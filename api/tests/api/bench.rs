//! Smoke runs of the load tool (`treehole bench`) and the data loader (`treehole load`): every
//! scenario runs briefly against a server the tool starts (on PostgreSQL too, in that pass of
//! the suite), and its JSON report must show the work done, no failed request, the scenario's
//! own checks passed and a baseline measured beside it.

use std::process::Stdio;

use serde_json::Value;
use tokio::process::Command;

use crate::helpers::postgres_backend;

/// `treehole [--database-url <fresh db>] [--data <data>] <args>` with nothing of the
/// environment's `TREEHOLE_*`; returns (success, stdout, stderr).
async fn treehole(args: &[&str], data: Option<&std::path::Path>) -> (bool, String, String) {
    treehole_with(args, data, &[]).await
}

/// `treehole` with `env` set for it and for the server it starts.
async fn treehole_with(
    args: &[&str],
    data: Option<&std::path::Path>,
    env: &[(&str, &str)],
) -> (bool, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_treehole"));
    for (name, _) in std::env::vars() {
        if name.starts_with("TREEHOLE_") {
            command.env_remove(name);
        }
    }
    command.envs(env.iter().copied());
    if let Some(url) = postgres_backend().await {
        command.args(["--database-url", &url]);
    }
    if let Some(d) = data {
        command.arg("--data").arg(d);
    }
    let out = command
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("treehole runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn bench(args: &[&str]) -> Value {
    bench_with(args, &[]).await
}

async fn bench_with(args: &[&str], env: &[(&str, &str)]) -> Value {
    let mut all = vec!["bench"];
    all.extend_from_slice(args);
    all.push("--json");
    let (ok, stdout, stderr) = treehole_with(&all, None, env).await;
    assert!(ok, "treehole {all:?} failed:\n{stderr}\n{stdout}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not a JSON report ({e}):\n{stdout}"))
}

fn count(report: &Value, op: &str) -> u64 {
    report["operations"][op]["count"]
        .as_u64()
        .unwrap_or_else(|| panic!("no {op} in {report}"))
}

/// Every comparison has a measured baseline and a finite ratio.
fn assert_compared(report: &Value, figures: &[&str]) {
    let compared = report["compared"].as_array().expect("comparisons");
    for figure in figures {
        let c = compared
            .iter()
            .find(|c| c["what"] == *figure)
            .unwrap_or_else(|| panic!("no {figure} in {compared:?}"));
        assert!(c["baseline_value"].as_f64().is_some_and(|v| v > 0.0), "{c}");
        assert!(c["ratio"].as_f64().is_some_and(f64::is_finite), "{c}");
    }
}

#[tokio::test]
async fn the_commands_and_hot_post_scenarios_run_and_check_the_pseudonym_rule() {
    let report = bench(&["commands", "--connections", "4", "--requests", "120"]).await;
    assert_eq!(report["operations"]["all"]["errors"], 0, "{report}");
    // Every ticket is one operation; registrations add their code and login requests.
    assert!(count(&report, "all") >= 120, "{report}");
    assert!(count(&report, "register") >= 4, "{report}");
    let comments = report["operations"]
        .as_object()
        .expect("operations")
        .keys()
        .filter(|k| k.starts_with("comment"))
        .count();
    assert_eq!(comments, 2, "named and anonymous comments: {report}");
    assert_compared(&report, &["commands per s", "commands p99"]);

    let report = bench(&["comments", "--connections", "4", "--requests", "120"]).await;
    assert_eq!(report["operations"]["all"]["errors"], 0, "{report}");
    let commented = count(&report, "comment (anonymous)") + count(&report, "comment (named)");
    assert_eq!(commented, 120, "{report}");
    assert!(
        report["notes"]["projector lag at the end, events"].is_u64(),
        "{report}"
    );
    // The clock started once the projectors had caught up with the setup.
    let settled = "projectors caught up with the setup before the clock, s";
    assert!(report["notes"][settled].is_f64(), "{report}");
    assert_compared(&report, &["comments per s", "comments p99"]);

    let report = bench(&["hot-post", "--users", "25", "--connections", "4"]).await;
    assert_hot_post_kept_the_rule(&report, 25);
    assert!(report["notes"][settled].is_f64(), "{report}");
    assert_compared(
        &report,
        &["hot-post comments per s", "hot-post comments p99"],
    );
}

/// The viral post at full size: 1 000 users comment at once, twice, through the batched write
/// path. The tool's own check must find exactly the scheme's first 1 000 names, each kept on the
/// second wave. Cheap argon2 costs keep the (unmeasured) registrations short.
#[tokio::test]
async fn hot_post_with_a_thousand_users_hands_out_exactly_the_first_thousand_names() {
    let report = bench_with(
        &["hot-post", "--users", "1000", "--connections", "8"],
        &[
            ("TREEHOLE_PASSWORD_MEMORY_KIB", "1024"),
            ("TREEHOLE_PASSWORD_ITERATIONS", "1"),
        ],
    )
    .await;
    assert_eq!(report["operations"]["all"]["errors"], 0, "{report}");
    assert_hot_post_kept_the_rule(&report, 1000);
    if std::path::Path::new("/proc/self/stat").exists() {
        // 2 000 comments keep the server busy for many ticks of 10 ms.
        let cpu = report["notes"]["server CPU per comment, µs"].as_f64();
        assert!(cpu.is_some_and(|c| c > 0.0 && c.is_finite()), "{report}");
        let cores = report["notes"]["server CPU busy, cores"].as_f64();
        assert!(cores.is_some_and(|c| c > 0.0 && c < 64.0), "{report}");
        assert!(
            report["notes"]["tool CPU per request, µs"]
                .as_f64()
                .is_some(),
            "{report}"
        );
    }
}

/// Every one of `users` commented twice, and the tool's own check of the pseudonym rule found
/// `users` distinct names, each kept, exactly the scheme's first ones.
fn assert_hot_post_kept_the_rule(report: &Value, users: u64) {
    assert_eq!(count(report, "first comment"), users, "{report}");
    assert_eq!(count(report, "second comment"), users, "{report}");
    let rule = report["notes"]["pseudonym rule"]
        .as_str()
        .expect("the check");
    let expected = format!(
        "ok: {users} users, {users} distinct names, each kept on the second comment, {} comments listed",
        2 * users
    );
    assert!(
        rule.starts_with(&expected) && rule.contains("exactly the scheme's first names"),
        "{rule}"
    );
}

/// A small `reads` run with the given mix, on 3 000 preloaded events.
async fn reads(mix: &str) -> Value {
    bench(&[
        "reads",
        "--preload-events",
        "3000",
        "--connections",
        "4",
        "--requests",
        "200",
        "--mix",
        mix,
    ])
    .await
}

#[tokio::test]
async fn the_reads_and_read_your_writes_scenarios_run_on_loaded_and_fresh_data() {
    let report = reads("full").await;
    assert_eq!(count(&report, "all"), 200, "{report}");
    assert_eq!(report["operations"]["all"]["errors"], 0, "{report}");
    assert_eq!(report["notes"]["preloaded events"], 3000, "{report}");
    for op in ["feed page", "post page", "comments page", "search"] {
        assert!(count(&report, op) > 0, "no {op}: {report}");
    }
    assert_compared(&report, &["reads per s", "reads p99"]);
    assert_eq!(report["notes"]["mix"], "full", "{report}");

    // The pages alone: no search among them.
    let report = reads("pages").await;
    assert_eq!(count(&report, "all"), 200, "{report}");
    assert_eq!(report["notes"]["mix"], "pages", "{report}");
    assert!(report["operations"]["search"].is_null(), "{report}");
    for op in ["feed page", "post page", "comments page"] {
        assert!(count(&report, op) > 0, "no {op}: {report}");
    }

    let report = bench(&["read-your-writes", "--connections", "4", "--requests", "80"]).await;
    assert_eq!(report["operations"]["all"]["errors"], 0, "{report}");
    assert_eq!(count(&report, "comment"), 80, "{report}");
    assert_eq!(
        count(&report, "time to visible (from send)"),
        80,
        "{report}"
    );
    assert_compared(&report, &["time to visible p50", "time to visible p99"]);
}

#[tokio::test]
async fn load_fills_an_empty_store_once() {
    let data = tempfile::tempdir().expect("a temp dir");
    let (ok, stdout, stderr) = treehole(&["load", "--events", "2500"], Some(data.path())).await;
    assert!(ok, "{stderr}");
    assert!(
        stdout.starts_with("loaded 2500 events in ") && stdout.contains("ends at position 2500"),
        "{stdout}"
    );
    // A second load into the same store is refused, and changes nothing.
    // (On PostgreSQL each call gets a fresh database, so this half runs on SQLite only.)
    if !crate::helpers::on_postgres() {
        let (ok, _, stderr) = treehole(&["load", "--events", "10"], Some(data.path())).await;
        assert!(!ok);
        assert!(
            stderr.contains("not empty (it ends at position 2500)"),
            "{stderr}"
        );
    }
}

#[tokio::test]
async fn the_notify_scenario_delivers_every_comment_to_every_stream() {
    let report = bench(&[
        "notify",
        "--listeners",
        "25",
        "--connections",
        "2",
        "--requests",
        "40",
    ])
    .await;
    assert_eq!(report["operations"]["all"]["errors"], 0, "{report}");
    assert_eq!(count(&report, "comment"), 40, "{report}");
    // Every comment on every stream: 25 x 40.
    assert_eq!(
        count(&report, "delivered after the answer"),
        1000,
        "{report}"
    );
    assert_compared(
        &report,
        &["delivery to 25 streams p50", "delivery to 25 streams p99"],
    );
}
