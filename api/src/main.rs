//! The `treehole` binary.

use std::path::PathBuf;

use anyhow::Context;
use api::config::{self, Settings};
use api::startup::{Application, Stores};
use clap::{Parser, Subcommand};

/// See the workspace's Cargo.toml: allocation was a fifth of the server's time on glibc's malloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "treehole",
    version,
    about = "An event-sourced anonymous campus forum"
)]
struct Cli {
    /// TOML configuration file (lowest precedence after the defaults).
    #[arg(long, global = true, env = "TREEHOLE_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory of the embedded stores.
    #[arg(long, global = true)]
    data: Option<PathBuf>,
    /// PostgreSQL URL for the event log and read models (instead of the embedded SQLite).
    #[arg(long, global = true)]
    database_url: Option<String>,
    /// Kafka brokers (`host:port[,host:port]`) for the event topic.
    #[arg(long, global = true)]
    kafka_brokers: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
        source: api::projector::SourceKind,
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
        command: AdminCommand,
    },
    /// The key store as a file (wrapped data keys and key handles), to move a deployment along
    /// with `events export --raw`; useless without the same server secret.
    Keys {
        #[command(subcommand)]
        command: api::keys::KeysCommand,
    },
    /// The event log as a file: export it for analysts, import a raw export into an empty store.
    Events {
        #[command(subcommand)]
        command: api::events::EventsCommand,
    },
    /// Runs tasks of one model: claims them from a server over HTTP, runs a command with the
    /// task input on stdin, and reports its stdout as the result.
    Worker(api::worker::WorkerArgs),
    /// Fills an empty store with a synthetic forum history (users, posts and comments in
    /// Chinese and English, pseudonyms, deletions, models and tasks) for benchmarks and demos.
    Load {
        /// Events to write.
        #[arg(long, default_value_t = 100_000)]
        events: u64,
    },
    /// The load tool: drives a server over HTTP and reports throughput and latency percentiles
    /// beside a baseline measured in the same run (see BENCHMARKS.md).
    Bench(api::bench::BenchArgs),
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Makes a user an admin (recorded as an AdminGranted event).
    Grant { username: String },
    /// Makes a user a moderator (ModeratorGranted), or with `--revoke` no longer one.
    Moderator {
        username: String,
        #[arg(long)]
        revoke: bool,
    },
}

fn settings(cli: &Cli, listen: Option<&String>) -> anyhow::Result<Settings> {
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match &cli.command {
        Command::Serve { listen } => {
            let settings = settings(&cli, listen.as_ref())?;
            api::telemetry::init(settings.log_format);
            let app = Application::build(settings)
                .await
                .context("starting treehole")?;
            // The one line of CLI output: scripts and tests read the bound address from it.
            println!("treehole listening on http://{}", app.local_addr());
            app.run_until(shutdown_signal()).await?;
            tracing::info!("stopped");
        }
        Command::Project { only, source } => {
            let settings = settings(&cli, None)?;
            api::telemetry::init(settings.log_format);
            let selection = api::projector::Selection::parse(only).map_err(anyhow::Error::msg)?;
            let stores = Stores::open(&settings).await?;
            let loops = api::supervisor::Supervisor::default();
            api::projector::spawn_workers(&stores, &selection, *source, &settings, &loops).await?;
            tracing::info!(only = %only, source = ?source, "projector worker running");
            // A projector that dies ends the worker with an error, for its process manager
            // to see and restart; a poisoned projection stays reported by its checkpoint.
            let died = tokio::select! {
                () = shutdown_signal() => None,
                stopped = loops.first_stopped() => Some(stopped),
            };
            loops.shutdown(api::startup::LOOP_GRACE).await;
            stores.read_models.close().await;
            if let Some(stopped) = died {
                anyhow::bail!("{} stopped: {}", stopped.name, stopped.reason);
            }
        }
        Command::Relay => {
            let settings = settings(&cli, None)?;
            api::telemetry::init(settings.log_format);
            let kafka = settings.kafka.settings().context(
                "no Kafka brokers configured: set TREEHOLE_KAFKA_BROKERS or --kafka-brokers",
            )?;
            let stores = Stores::open(&settings).await?;
            let relay =
                infra::kafka::Relay::new(kafka, stores.events.clone(), stores.read_models.clone())?;
            tracing::info!(topic = %settings.kafka.topic, "relay running");
            tokio::select! {
                () = relay.run() => {}
                () = shutdown_signal() => {}
            }
            stores.read_models.close().await;
        }
        Command::Migrate => {
            let settings = settings(&cli, None)?;
            api::telemetry::init(settings.log_format);
            let applied = api::startup::migrate(&settings).await?;
            if applied.is_empty() {
                println!("schema up to date");
            } else {
                println!("applied migrations: {}", applied.join(", "));
            }
        }
        Command::Rebuild { projections } => {
            let settings = settings(&cli, None)?;
            api::telemetry::init(settings.log_format);
            let stores = Stores::open(&settings).await?;
            api::rebuild::run(&stores, &settings, projections).await?;
        }
        Command::Admin { command } => {
            let settings = settings(&cli, None)?;
            api::telemetry::init(settings.log_format);
            let stores = Stores::open(&settings).await?;
            let handler = commands::CommandHandler::new(stores.events.clone());
            let secret = api::startup::server_secret(&settings)?;
            match command {
                AdminCommand::Grant { username } => {
                    let position = api::admin::grant(&handler, &secret, username).await?;
                    println!("{username} is now an admin (position {position})");
                }
                AdminCommand::Moderator { username, revoke } => {
                    let position =
                        api::admin::moderator(&handler, &secret, username, !*revoke).await?;
                    let now = if *revoke { "no longer" } else { "now" };
                    println!("{username} is {now} a moderator (position {position})");
                }
            }
        }
        Command::Keys { command } => {
            let settings = settings(&cli, None)?;
            api::telemetry::init(settings.log_format);
            api::keys::run(&settings, command).await?;
        }
        Command::Events { command } => {
            let settings = settings(&cli, None)?;
            api::telemetry::init(settings.log_format);
            api::events::run(&settings, command).await?;
        }
        Command::Worker(args) => {
            let settings = settings(&cli, None)?;
            api::telemetry::init(settings.log_format);
            tracing::info!(model = %args.model, server = %args.server, "worker running");
            api::worker::run(args.clone(), shutdown_signal()).await?;
        }
        Command::Load { events } => {
            let settings = settings(&cli, None)?;
            api::telemetry::init(settings.log_format);
            let bar = indicatif::ProgressBar::new(*events);
            let loaded = api::load::load(&settings, *events, |n| bar.set_position(n)).await?;
            bar.finish_and_clear();
            println!(
                "loaded {} events in {:.1} s ({:.0} events/s); the log ends at position {}",
                loaded.events,
                loaded.took.as_secs_f64(),
                loaded.events as f64 / loaded.took.as_secs_f64(),
                loaded.head
            );
        }
        Command::Bench(args) => {
            // The baseline server must be served exactly as `serve` is: same runtime, no
            // logging in the way.
            let target = api::bench::Target {
                data: cli.data.clone(),
                database_url: cli.database_url.clone(),
            };
            api::bench::run(args, target).await?;
        }
    }
    Ok(())
}

async fn shutdown_signal() {
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
