//! `treehole bench`: a load generator that drives a treehole server over real HTTP with many
//! concurrent connections and reports throughput and latency percentiles (HDR histograms) as a
//! table or as JSON, each scenario beside a baseline measured in the same run.
//!
//! Scenarios (see `scenarios.rs`): `commands` (a realistic write mix), `hot-post` (N users
//! comment for the first time on one post at once, then again; the pseudonym rule is checked on
//! the result), `reads` (feed, post, comment and search pages on a pre-loaded data set) and
//! `read-your-writes` (command, then query with `?after=`: the time until visible).
//!
//! Without `--url` the tool starts `treehole serve` itself on a fresh data directory (rate
//! limits off) and stops it at the end; with `--url` it drives that server, and reads
//! verification codes from `--data <its data dir>/outbox` when it must register users.

mod client;
mod report;
mod scenarios;
mod server;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use clap::{Args, Subcommand};

pub use client::parse_mail;
pub use report::{Compared, Figures, Latencies, Recorder, Report};
pub use server::serve_baseline;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("bench setup: {0}")]
    Setup(String),
    #[error("request failed: {0}")]
    Request(String),
    /// The server broke a rule of the product (e.g. two users share a pseudonym).
    #[error("RULE BROKEN: {0}")]
    Broken(String),
    #[error("{count} requests failed (pass --allow-errors to accept); the first: {first}")]
    Errors { count: u64, first: String },
}

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub scenario: Scenario,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Scenario {
    /// A realistic write mix: registrations, logins, posts and comments, named and anonymous.
    Commands {
        #[command(flatten)]
        common: Common,
    },
    /// The write path alone: each connection's user comments on a post of its own, named and
    /// anonymous; reports the in-process projectors' lag at the end.
    Comments {
        #[command(flatten)]
        common: Common,
    },
    /// N users comment for the first time on one post at once, then again; checks the
    /// pseudonym rule on the result and fails loudly if it is broken.
    HotPost {
        #[command(flatten)]
        common: Common,
        /// Commenters on the one post.
        #[arg(long, default_value_t = 1000)]
        users: usize,
    },
    /// Feed pages, post pages, comment pages and searches on a pre-loaded data set.
    Reads {
        #[command(flatten)]
        common: Common,
        /// Synthetic events loaded before the server starts (only when the tool starts it).
        #[arg(long, default_value_t = 100_000)]
        preload_events: u64,
        /// What is read: `full` (feed 40%, post 25%, comments 25%, search 10%) or `pages`
        /// (the same pages without the searches).
        #[arg(long, value_enum, default_value_t = scenarios::ReadMix::Full)]
        mix: scenarios::ReadMix,
    },
    /// A comment, then the query that waits for it with `?after=`: the time until visible.
    ReadYourWrites {
        #[command(flatten)]
        common: Common,
    },
    /// N users follow one post and hold its notification stream open while `--connections`
    /// writers comment on it: the time from a comment's answer to its delivery on every
    /// stream, beside the time until a plain read shows it.
    Notify {
        #[command(flatten)]
        common: Common,
        /// Connected stream clients following the post.
        #[arg(long, default_value_t = 1000)]
        listeners: usize,
    },
    /// The baseline server (a minimal axum handler with a fixed body); the tool starts it.
    #[command(hide = true)]
    BaselineServer {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
    },
}

#[derive(Debug, Clone, Args)]
pub struct Common {
    /// Drive this running server (e.g. http://127.0.0.1:8080) instead of starting one.
    #[arg(long)]
    pub url: Option<String>,
    /// Concurrent connections (one request in flight on each).
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Requests (or operations) of the measured phase, across all connections.
    #[arg(long, default_value_t = 20_000)]
    pub requests: u64,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Skip the baseline (no ratios).
    #[arg(long)]
    pub no_baseline: bool,
    /// Report failed requests instead of failing the run.
    #[arg(long)]
    pub allow_errors: bool,
}

/// Where the server's data is: `--data` (global) or, when the tool starts the server, a fresh
/// directory removed at the end.
pub struct Target {
    pub data: Option<PathBuf>,
    pub database_url: Option<String>,
}

/// Runs one scenario and prints its report.
pub async fn run(args: &BenchArgs, target: Target) -> Result<(), BenchError> {
    let (common, report) = match &args.scenario {
        Scenario::BaselineServer { listen } => return serve_baseline(listen).await,
        Scenario::Commands { common } => (common, scenarios::commands(common, &target).await?),
        Scenario::Comments { common } => (common, scenarios::comments(common, &target).await?),
        Scenario::HotPost { common, users } => {
            (common, scenarios::hot_post(common, &target, *users).await?)
        }
        Scenario::Reads {
            common,
            preload_events,
            mix,
        } => (
            common,
            scenarios::reads(common, &target, *preload_events, *mix).await?,
        ),
        Scenario::ReadYourWrites { common } => {
            (common, scenarios::read_your_writes(common, &target).await?)
        }
        Scenario::Notify { common, listeners } => (
            common,
            scenarios::notify(common, &target, *listeners).await?,
        ),
    };
    let (report, errors) = report;
    if common.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("a report serialises")
        );
    } else {
        print!("{}", report.table());
    }
    let failed: u64 = report.operations.get("all").map_or(0, |f| f.errors);
    if failed > 0 && !common.allow_errors {
        return Err(BenchError::Errors {
            count: failed,
            first: errors.first().cloned().unwrap_or_default(),
        });
    }
    Ok(())
}

/// Hands out the measured phase's operations to the connections.
#[derive(Clone)]
pub(crate) struct Tickets {
    next: Arc<AtomicU64>,
    total: u64,
}

impl Tickets {
    pub fn new(total: u64) -> Self {
        Self {
            next: Arc::new(AtomicU64::new(0)),
            total,
        }
    }

    /// The next operation's number, while any are left.
    pub fn take(&self) -> Option<u64> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        (n < self.total).then_some(n)
    }
}
