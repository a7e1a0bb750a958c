//! The servers a benchmark drives: `treehole serve` started by the tool on a data directory of
//! its own, and the baseline, a minimal axum handler served the way `serve` serves.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::routing::get;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};

use super::BenchError;

/// A child process serving HTTP; killed when dropped.
pub struct Server {
    child: Child,
    pub url: String,
}

impl Server {
    /// `treehole serve` on `data` (and `database_url`, if given), rate limits off, on a free
    /// loopback port. Its log goes to `<data>/bench-server.log`.
    pub async fn treehole(data: &Path, database_url: Option<&str>) -> Result<Self, BenchError> {
        let mut command = Command::new(current_exe()?);
        command.arg("--data").arg(data);
        if let Some(url) = database_url {
            command.arg("--database-url").arg(url);
        }
        command
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("TREEHOLE_RATE_LIMITS", "off")
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            );
        Self::start(
            command,
            "treehole listening on ",
            &data.join("bench-server.log"),
        )
        .await
    }

    /// The baseline server (`treehole bench baseline-server`), its log in `log`.
    pub async fn baseline(log: &Path) -> Result<Self, BenchError> {
        let mut command = Command::new(current_exe()?);
        command.args(["bench", "baseline-server", "--listen", "127.0.0.1:0"]);
        Self::start(command, "baseline listening on ", log).await
    }

    async fn start(mut command: Command, banner: &str, log: &Path) -> Result<Self, BenchError> {
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| BenchError::Setup(format!("{}: {e}", log.display())))?;
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| BenchError::Setup(format!("starting a server: {e}")))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(120), lines.next_line())
            .await
            .map_err(|_| {
                BenchError::Setup(format!(
                    "no server banner in 120 s (log: {})",
                    log.display()
                ))
            })?
            .map_err(|e| BenchError::Setup(e.to_string()))?
            .ok_or_else(|| {
                BenchError::Setup(format!(
                    "the server exited before listening (log: {})",
                    log.display()
                ))
            })?;
        let url = line
            .strip_prefix(banner)
            .ok_or_else(|| BenchError::Setup(format!("unexpected server banner: {line}")))?
            .trim()
            .to_owned();
        // Keep reading stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self { child, url })
    }

    /// The CPU time (user and system) the server has used so far, where the system tells.
    pub fn cpu_time(&self) -> Option<Duration> {
        self.child.id().and_then(|pid| cpu_time(&pid.to_string()))
    }

    /// Stops the server with SIGTERM-like gentleness where possible.
    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// The CPU time (user and system) process `pid` (`self` for this one) has used so far, from
/// Linux's `/proc/<pid>/stat`; `None` elsewhere or when it cannot be read. The file counts in
/// clock ticks of 1/100 s (`USER_HZ`, 100 on every architecture Linux runs this on).
pub fn cpu_time(pid: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    cpu_ticks(&stat).map(|ticks| Duration::from_millis(ticks * 10))
}

/// User plus system ticks from a `/proc/<pid>/stat` line: fields 14 and 15, counted after the
/// command name, which is in parentheses and may itself hold spaces and parentheses.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(user + system)
}

fn current_exe() -> Result<PathBuf, BenchError> {
    std::env::current_exe().map_err(|e| BenchError::Setup(format!("the treehole binary: {e}")))
}

/// The HTTP ceiling here: one route answering every GET and POST with a fixed JSON body (a POST's
/// body is read, as any handler would), served by `axum::serve` with connect info, on the same
/// runtime as `treehole serve` (the binary's `#[tokio::main]`).
pub async fn serve_baseline(listen: &str) -> Result<(), BenchError> {
    const BODY: &str = r#"{"ok":true,"position":1}"#;
    async fn fixed() -> ([(&'static str, &'static str); 1], &'static str) {
        ([("content-type", "application/json")], BODY)
    }
    async fn fixed_post(_body: Bytes) -> ([(&'static str, &'static str); 1], &'static str) {
        fixed().await
    }
    let app = Router::new().route("/{*path}", get(fixed).post(fixed_post));
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| BenchError::Setup(format!("binding {listen}: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| BenchError::Setup(e.to_string()))?;
    println!("baseline listening on http://{addr}");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
    .map_err(|e| BenchError::Setup(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_user_plus_system_whatever_the_command_name() {
        let stat = "4242 (tokio (rt) 2) S 1 4242 4242 0 -1 4194560 1207 0 0 0 \
                    1270 572 0 0 20 0 9 0 8816 1500000000 9000 18446744073709551615";
        assert_eq!(cpu_ticks(stat), Some(1270 + 572));
        assert_eq!(cpu_ticks("4242 (cut short) S 1 2"), None);
        assert_eq!(cpu_ticks("no parenthesis"), None);
    }

    #[test]
    fn this_process_has_used_some_cpu_and_the_count_grows() {
        let Some(before) = cpu_time("self") else {
            // Not Linux: nothing to read, and the bench reports no CPU figures.
            assert!(!std::path::Path::new("/proc/self/stat").exists());
            return;
        };
        // Spin until the count has grown by 20 ms, for at most 5 s of wall time (a loaded
        // machine gives this thread less than all of a core).
        let mut x = 0u64;
        let spin = std::time::Instant::now();
        let mut after = before;
        while after < before + Duration::from_millis(20) && spin.elapsed() < Duration::from_secs(5)
        {
            for _ in 0..100_000 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
            after = cpu_time("self").expect("read once, read again");
        }
        assert!(
            after >= before + Duration::from_millis(20),
            "{before:?} then {after:?}"
        );
    }
}
