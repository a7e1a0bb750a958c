//! The real `treehole` binary keeps transparent huge pages off for itself (see `main.rs`).

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// `THP_enabled` of a process's `/proc/PID/status`: 0 once `PR_SET_THP_DISABLE` is set.
fn thp_enabled(pid: u32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("THP_enabled:"))
        .unwrap_or_else(|| panic!("no THP_enabled line in {status}"))
        .trim()
        .to_owned()
}

#[tokio::test]
async fn the_server_runs_without_transparent_huge_pages() {
    // The test process itself may use them: the server turns them off for itself.
    assert_eq!(
        thp_enabled(std::process::id()),
        "1",
        "this test needs a process that may use transparent huge pages to compare with"
    );
    let data = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_treehole"));
    for (name, _) in std::env::vars() {
        if name.starts_with("TREEHOLE_") || name.starts_with("MIMALLOC_") {
            command.env_remove(name);
        }
    }
    let mut child = command
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(data.path())
        .env("TREEHOLE_RATE_LIMITS", "off")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(first.starts_with("treehole listening on "), "{first}");
    assert_eq!(thp_enabled(child.id().unwrap()), "0");
    child.kill().await.unwrap();
}
