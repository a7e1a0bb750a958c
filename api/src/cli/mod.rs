//! The `treehole` command line: the subcommands, one file each, the configuration
//! ([`config`]) and the composition root ([`startup`]).

pub mod admin;
pub mod config;
pub mod events;
pub mod events_tail;
pub mod keys;
pub mod load;
pub mod migrate;
pub mod project;
pub mod rebuild;
pub mod relay;
pub mod serve;
pub mod startup;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use self::config::Settings;

#[derive(Parser)]
#[command(
    name = "treehole",
    version,
    about = "An event-sourced anonymous campus forum"
)]
pub struct Cli {
    /// TOML configuration file (lowest precedence after the defaults).
    #[arg(long, global = true, env = "TREEHOLE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory of the embedded stores.
    #[arg(long, global = true)]
    pub data: Option<PathBuf>,
    /// PostgreSQL URL for the event log and read models (instead of the embedded SQLite).
    #[arg(long, global = true)]
    pub database_url: Option<String>,
    /// Kafka brokers (`host:port[,host:port]`) for the event topic.
    #[arg(long, global = true)]
    pub kafka_brokers: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Runs the HTTP API with in-process projectors.
    Serve {
        /// Address to listen on, e.g. 127.0.0.1:8080 (port 0 picks a free port).
        #[arg(long)]
        listen: Option<String>,
    },
    /// Runs projectors as a worker process, without HTTP (pair it with `serve` configured with
    /// `TREEHOLE_PROJECTORS=none` or a list of the ones `serve` keeps).
    Project {
        /// Comma-separated projections to run (default: all).
        #[arg(long, default_value = "all")]
        only: String,
        /// Where the events come from: the store (`store`) or the Kafka topic (`kafka`, one
        /// consumer group per projection; needs the brokers configured).
        #[arg(long, value_enum, default_value = "store")]
        source: crate::background::projector::SourceKind,
    },
    /// Publishes every event of the store to the Kafka topic, in position order, and follows
    /// the log (`serve` does this in-process unless `TREEHOLE_KAFKA_RELAY=off`).
    Relay,
    /// Creates or updates the database schema (the log and the read models) and exits.
    Migrate,
    /// Rebuilds projections beside the live ones and swaps each atomically when caught up.
    /// Works while `serve` runs on the same data: queries keep answering from the old model.
    Rebuild {
        /// Projection names (users, feed, comments, search, tasks, stats), or `all`.
        #[arg(required = true)]
        projections: Vec<String>,
    },
    /// Administrative commands.
    Admin {
        #[command(subcommand)]
        command: admin::AdminCommand,
    },
    /// The key store as a file (wrapped data keys and key handles), to move a deployment along
    /// with `events export --raw`; useless without the same server secret.
    Keys {
        #[command(subcommand)]
        command: crate::cli::keys::KeysCommand,
    },
    /// The event log as a file: export it for analysts, import a raw export into an empty store.
    Events {
        #[command(subcommand)]
        command: crate::cli::events::EventsCommand,
    },
    /// Runs tasks of one model: claims them from a server over HTTP, runs a command with the
    /// task input on stdin, and reports its stdout as the result.
    Worker(crate::tools::worker_client::WorkerArgs),
    /// Fills an empty store with a synthetic forum history (users, posts and comments in
    /// Chinese and English, pseudonyms, deletions, models and tasks) for benchmarks and demos.
    Load {
        /// Events to write.
        #[arg(long, default_value_t = 100_000)]
        events: u64,
    },
    /// The load tool: drives a server over HTTP and reports throughput and latency percentiles
    /// beside a baseline measured in the same run (see BENCHMARKS.md).
    Bench(crate::tools::bench::BenchArgs),
}

/// The settings of a subcommand: the configuration layers with the global flags on top.
pub fn settings(cli: &Cli, listen: Option<&String>) -> anyhow::Result<Settings> {
    let mut flags: Vec<(&str, String)> = Vec::new();
    if let Some(d) = &cli.data {
        flags.push(("data", d.display().to_string()));
    }
    if let Some(u) = &cli.database_url {
        flags.push(("database_url", u.clone()));
    }
    if let Some(b) = &cli.kafka_brokers {
        flags.push(("kafka.brokers", b.clone()));
    }
    if let Some(l) = listen {
        flags.push(("listen", l.clone()));
    }
    Ok(config::load(
        cli.config.as_deref(),
        &|k| std::env::var(k).ok(),
        &flags,
    )?)
}

/// Runs the subcommand `cli` names.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Serve { listen } => serve::run(settings(&cli, listen.as_ref())?).await,
        Command::Project { only, source } => {
            project::run(settings(&cli, None)?, only, *source).await
        }
        Command::Relay => relay::run(settings(&cli, None)?).await,
        Command::Migrate => migrate::run(settings(&cli, None)?).await,
        Command::Rebuild { projections } => {
            let settings = init(settings(&cli, None)?);
            let stores = startup::Stores::open(&settings).await?;
            Ok(rebuild::run(&stores, &settings, projections).await?)
        }
        Command::Admin { command } => admin::run(settings(&cli, None)?, command).await,
        Command::Keys { command } => {
            let settings = init(settings(&cli, None)?);
            Ok(keys::run(&settings, command).await?)
        }
        Command::Events { command } => {
            let settings = init(settings(&cli, None)?);
            Ok(events::run(&settings, command).await?)
        }
        Command::Worker(args) => {
            init(settings(&cli, None)?);
            tracing::info!(model = %args.model, server = %args.server, "worker running");
            Ok(crate::tools::worker_client::run(args.clone(), shutdown_signal()).await?)
        }
        Command::Load { events } => load::run(settings(&cli, None)?, *events).await,
        Command::Bench(args) => {
            // The baseline server must be served exactly as `serve` is: same runtime, no
            // logging in the way.
            let target = crate::tools::bench::Target {
                data: cli.data.clone(),
                database_url: cli.database_url.clone(),
            };
            Ok(crate::tools::bench::run(args, target).await?)
        }
    }
}

/// Starts logging as `settings` say; returns them.
pub fn init(settings: Settings) -> Settings {
    crate::telemetry::init(settings.log_format);
    settings
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down: draining requests");
}
