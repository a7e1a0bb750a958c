//! `treehole worker`: the reference worker. It claims tasks of one model over HTTP, runs a
//! command with the task's input (JSON) on stdin, and reports the command's stdout as the
//! result, so any model runner (a ComfyUI client, a script) plugs in without code.
//!
//! Exit status 0 completes the task: stdout is the result, as JSON if it parses as JSON, else
//! as a JSON string. Exit status 65 (`EX_DATAERR`: the input cannot be processed) fails the
//! task for good; any other failure (another status, a signal, a timeout) is retryable, so the
//! task is queued again while it has attempts left. While the command runs the worker extends
//! its lease; if the lease is lost anyway, the command is killed and its output dropped. Each
//! reported task is one JSON line on stdout: `{"task_id", "status", "position"}`.

use std::process::Stdio;
use std::time::Duration;

use clap::Args;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use crate::http::routes::workers::ClaimedTask;

#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    /// The model whose tasks to run.
    #[arg(long)]
    pub model: String,
    /// Shell command run per task (`sh -c`), input on stdin, result on stdout. It also gets
    /// TREEHOLE_TASK_ID, TREEHOLE_MODEL and TREEHOLE_ATTEMPT in its environment.
    #[arg(long)]
    pub exec: String,
    /// The treehole server.
    #[arg(
        long,
        env = "TREEHOLE_SERVER_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub server: String,
    /// The worker token (`thw_...`) from `POST /api/v1/workers`.
    #[arg(long, env = "TREEHOLE_WORKER_TOKEN", hide_env_values = true)]
    pub token: String,
    /// Lease asked for per claim and per heartbeat, in seconds.
    #[arg(long, default_value_t = 60)]
    pub lease_secs: u32,
    /// Kill the command after this many seconds (the attempt then fails, retryably).
    #[arg(long)]
    pub timeout_secs: Option<u64>,
    /// Exit after this many tasks (default: run until stopped).
    #[arg(long)]
    pub max_tasks: Option<u64>,
}

/// Largest stdout taken as a result; more fails the attempt.
const MAX_OUTPUT: usize = 1024 * 1024;
/// Exit status meaning "this input can never succeed".
const EX_DATAERR: i32 = 65;

/// How one run of the command ended.
#[derive(Debug)]
enum Run {
    Done(Value),
    Failed { error: String, retryable: bool },
    LeaseLost,
}

struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    async fn post(&self, path: &str, body: Value) -> reqwest::Result<reqwest::Response> {
        self.http
            .post(format!("{}/api/v1{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
    }
}

/// Runs the worker until `stop` resolves (finishing the task in hand) or `max_tasks` are done.
pub async fn run(
    args: WorkerArgs,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let client = Client {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .pool_idle_timeout(crate::cli::config::CLIENT_IDLE)
            .build()?,
        base: args.server.trim_end_matches('/').to_owned(),
        token: args.token.clone(),
    };
    tokio::pin!(stop);
    let mut done = 0u64;
    let mut failures = 0u32;
    while args.max_tasks.is_none_or(|max| done < max) {
        let claim = tokio::select! {
            () = &mut stop => break,
            claim = client.post("/workers/claim", json!({
                "models": [args.model],
                "lease_secs": args.lease_secs,
                "wait_secs": 20,
            })) => claim,
        };
        let task = match claim {
            Ok(r) if r.status() == StatusCode::NO_CONTENT => continue,
            Ok(r) if r.status() == StatusCode::OK => r.json::<ClaimedTask>().await?,
            Ok(r) if r.status().is_client_error() => {
                let status = r.status();
                anyhow::bail!(
                    "the server refused the claim ({status}): {}",
                    r.text().await?
                );
            }
            other => {
                failures += 1;
                let wait = Duration::from_millis(200 << failures.min(6));
                match other {
                    Ok(r) => tracing::warn!(status = %r.status(), ?wait, "claim failed; retrying"),
                    Err(e) => {
                        tracing::warn!(error = %e, ?wait, "cannot reach the server; retrying")
                    }
                }
                tokio::time::sleep(wait).await;
                continue;
            }
        };
        failures = 0;
        tracing::info!(task_id = %task.task_id, attempt = task.attempt, "claimed");
        let outcome = execute(&client, &args, &task).await;
        report(&client, &task, outcome).await?;
        done += 1;
    }
    Ok(())
}

/// Runs the command for `task`, heartbeating its lease meanwhile.
async fn execute(client: &Client, args: &WorkerArgs, task: &ClaimedTask) -> Run {
    let child = Command::new("sh")
        .arg("-c")
        .arg(&args.exec)
        .env("TREEHOLE_TASK_ID", task.task_id.to_string())
        .env("TREEHOLE_MODEL", &task.model)
        .env("TREEHOLE_ATTEMPT", task.attempt.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => {
            return Run::Failed {
                error: format!("cannot start the command: {e}"),
                retryable: true,
            };
        }
    };
    let input = task.input.to_string();
    let mut stdin = child.stdin.take();
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let feed = async {
        if let Some(stdin) = stdin.as_mut() {
            // A command that does not read its input closes the pipe early; that is its right.
            let _ = stdin.write_all(input.as_bytes()).await;
        }
        drop(stdin.take());
    };
    let collect = async {
        let mut out = Vec::new();
        let mut err = Vec::new();
        if let Some(s) = stdout.as_mut() {
            let _ = s.take(MAX_OUTPUT as u64 + 1).read_to_end(&mut out).await;
        }
        if let Some(s) = stderr.as_mut() {
            let _ = s.take(64 * 1024).read_to_end(&mut err).await;
        }
        (out, err)
    };
    let finished = async {
        let ((), (out, err), status) = tokio::join!(feed, collect, child.wait());
        (out, err, status)
    };
    let timeout = args.timeout_secs.map(Duration::from_secs);
    let beat = Duration::from_secs(u64::from(args.lease_secs.max(3)) / 3);
    let heartbeats = async {
        loop {
            tokio::time::sleep(beat).await;
            let path = format!("/workers/tasks/{}/heartbeat", task.task_id);
            match client
                .post(&path, json!({ "lease_secs": args.lease_secs }))
                .await
            {
                Ok(r) if r.status() == StatusCode::CONFLICT => return,
                Ok(r) if !r.status().is_success() => {
                    tracing::warn!(status = %r.status(), "heartbeat refused");
                }
                Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
                Ok(_) => {}
            }
        }
    };
    let deadline = async {
        match timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        (out, err, status) = finished => outcome(out, err, status),
        () = heartbeats => Run::LeaseLost,
        () = deadline => Run::Failed {
            error: format!("the command ran longer than {}s", timeout.unwrap_or_default().as_secs()),
            retryable: true,
        },
    }
}

fn outcome(out: Vec<u8>, err: Vec<u8>, status: std::io::Result<std::process::ExitStatus>) -> Run {
    let status = match status {
        Ok(s) => s,
        Err(e) => {
            return Run::Failed {
                error: format!("cannot wait for the command: {e}"),
                retryable: true,
            };
        }
    };
    if status.success() {
        if out.len() > MAX_OUTPUT {
            return Run::Failed {
                error: format!("the command wrote more than {MAX_OUTPUT} bytes"),
                retryable: false,
            };
        }
        let text = String::from_utf8_lossy(&out);
        let result = serde_json::from_str(&text).unwrap_or_else(|_| Value::String(text.into()));
        return Run::Done(result);
    }
    let stderr = String::from_utf8_lossy(&err);
    let stderr = stderr.trim();
    // Its last 1000 characters say what went wrong.
    let start = stderr.char_indices().rev().nth(999).map_or(0, |(i, _)| i);
    let tail = &stderr[start..];
    let error = if tail.is_empty() {
        format!("the command failed ({status})")
    } else {
        format!("the command failed ({status}): {tail}")
    };
    Run::Failed {
        error,
        retryable: status.code() != Some(EX_DATAERR),
    }
}

async fn report(client: &Client, task: &ClaimedTask, run: Run) -> anyhow::Result<()> {
    let (path, body) = match run {
        Run::Done(result) => ("complete", json!({ "result": result })),
        Run::Failed { error, retryable } => {
            ("fail", json!({ "error": error, "retryable": retryable }))
        }
        Run::LeaseLost => {
            tracing::warn!(task_id = %task.task_id, "lease lost; the command was stopped");
            return Ok(());
        }
    };
    let path = format!("/workers/tasks/{}/{path}", task.task_id);
    // The report is the attempt's whole value: retry it a few times before giving it up.
    for attempt in 0..5u32 {
        match client.post(&path, body.clone()).await {
            Ok(r) if r.status().is_success() => {
                let answer: Value = r.json().await.unwrap_or_default();
                let status = answer["status"].as_str().unwrap_or("succeeded");
                // One JSON line per task on stdout, for scripts (`?after=` takes the position).
                println!(
                    "{}",
                    json!({"task_id": task.task_id, "status": status, "position": answer["position"]})
                );
                return Ok(());
            }
            Ok(r) if r.status() == StatusCode::CONFLICT => {
                tracing::warn!(task_id = %task.task_id, "lease lost before the report");
                return Ok(());
            }
            Ok(r) if r.status().is_client_error() => {
                let status = r.status();
                anyhow::bail!(
                    "the server refused the report ({status}): {}",
                    r.text().await?
                );
            }
            Ok(r) => tracing::warn!(status = %r.status(), "report failed; retrying"),
            Err(e) => tracing::warn!(error = %e, "report failed; retrying"),
        }
        tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
    }
    tracing::error!(task_id = %task.task_id, "could not report; the lease will run out");
    Ok(())
}
