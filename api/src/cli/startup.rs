//! Builds the application from settings: the one place that picks concrete adapters.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use commands::{CommandHandler, EventStore, KeyStore, Keys, Mailer, Passwords, SealedStore};
use domain::post::PostServices;
use infra::event_store::{PostgresEventStore, SqliteEventStore};
use infra::keys::{PostgresKeyStore, SqliteKeyStore};
use infra::mail::{LettreMailer, SmtpSettings};
use infra::read_model::{PostgresReadModels, ReadModels, SqliteReadModels};
use infra::search::{Embedded, MeiliSearch};
use infra::source::StoreSource;
use projections::routed::Routed;
use projections::search::SearchIndex;
use projections::{
    EventSource, ForumQueries, ProjectionHub, ReadModelError, ReadModelStore, StatsQueries,
};
use rand::RngCore;
use secrecy::ExposeSecret;
use tokio::net::TcpListener;

use crate::background::projector::{Projectors, Selection};
use crate::background::supervisor::Supervisor;
use crate::cli::config::{HttpTimeouts, Settings};
use crate::http::rate_limit::RateLimiters;
use crate::http::session_cache::{self, SessionCache, Watched};
use crate::http::state::{AppState, Inner};

/// The longest `serve` goes without looking for webhooks to deliver when nothing happens.
const WEBHOOK_IDLE: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("data directory {path}: {source}")]
    Data {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] commands::StoreError),
    #[error(transparent)]
    ReadModels(#[from] projections::ReadModelError),
    #[error(transparent)]
    Mail(#[from] commands::MailError),
}

/// The log and the read models: PostgreSQL when a database URL is configured, else the
/// embedded SQLite files of the data directory.
pub struct Stores {
    /// The log, sealing personal values on append and opening them on read (see
    /// `commands::sealed`): what every reader and writer of the application uses.
    pub events: Arc<dyn EventStore>,
    /// The log as stored, ciphertext and all (imports of sealed exports).
    pub raw_events: Arc<dyn EventStore>,
    /// The users' data keys, beside the log.
    pub keys: Arc<Keys>,
    pub read_models: Arc<dyn ReadModels>,
}

impl Stores {
    pub async fn open(settings: &Settings) -> Result<Self, StartupError> {
        let data = &settings.data;
        std::fs::create_dir_all(data).map_err(|source| StartupError::Data {
            path: data.display().to_string(),
            source,
        })?;
        let secret = server_secret(settings)?;
        let keys_failed = |e: commands::KeyError| commands::StoreError::Unavailable(e.to_string());
        let (raw_events, key_store, read_models): (
            Arc<dyn EventStore>,
            Arc<dyn KeyStore>,
            Arc<dyn ReadModels>,
        ) = match &settings.database_url {
            Some(url) => {
                let url = url.expose_secret();
                if !settings.migrate_on_start {
                    refuse_pending_migrations(url).await?;
                }
                (
                    Arc::new(PostgresEventStore::connect(url).await?),
                    Arc::new(PostgresKeyStore::connect(url).await.map_err(keys_failed)?),
                    Arc::new(PostgresReadModels::connect(url).await?),
                )
            }
            None => (
                Arc::new(SqliteEventStore::open(&data.join("events.db")).await?),
                Arc::new(
                    SqliteKeyStore::open(&data.join("events.db"))
                        .await
                        .map_err(keys_failed)?,
                ),
                Arc::new(SqliteReadModels::open(&data.join("readmodels.db")).await?),
            ),
        };
        let key_store: Arc<dyn KeyStore> =
            match settings.key_store.as_ref().map(|k| k.expose_secret()) {
                None => key_store,
                Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                    Arc::new(PostgresKeyStore::connect(url).await.map_err(keys_failed)?)
                }
                Some(path) => Arc::new(
                    SqliteKeyStore::open(Path::new(path))
                        .await
                        .map_err(keys_failed)?,
                ),
            };
        let keys = Arc::new(Keys::new(key_store, &secret));
        keys.check_secret()
            .await
            .map_err(|e| StartupError::Config(e.to_string()))?;
        Ok(Self {
            events: Arc::new(SealedStore::new(raw_events.clone(), keys.clone())),
            raw_events,
            keys,
            read_models,
        })
    }
}

/// The search index: Meilisearch when its URL is configured, else the embedded engine in
/// `<data>/search`. Opened only by the processes that project or query it, so that the
/// relay, exports and admin commands never wait for a search server.
pub async fn open_search(settings: &Settings) -> Result<Arc<dyn SearchIndex>, ReadModelError> {
    Ok(match &settings.search.meili_url {
        Some(url) => Arc::new(
            MeiliSearch::connect(
                url,
                settings
                    .search
                    .meili_key
                    .as_ref()
                    .map(|k| k.expose_secret()),
                &settings.search.meili_index,
            )
            .await?,
        ),
        None => Arc::new(Embedded::open(&settings.data.join("search"))?),
    })
}

/// Where projections write: the search projection to the search index, every other one to
/// the read models.
pub fn projection_store(
    read_models: Arc<dyn ReadModels>,
    search: Arc<dyn SearchIndex>,
) -> Arc<dyn ReadModelStore> {
    let search: Arc<dyn ReadModelStore> = search;
    Arc::new(Routed::new(read_models).route(projections::search::NAME, search))
}

/// Fails when the PostgreSQL schema is behind this binary (start-up without migrating).
async fn refuse_pending_migrations(url: &str) -> Result<(), StartupError> {
    let pending = infra::migrations::pending(url)
        .await
        .map_err(|e| StartupError::Config(e.to_string()))?;
    if pending.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = pending.iter().map(|(v, d)| format!("{v} ({d})")).collect();
    Err(StartupError::Config(format!(
        "the database schema is behind: migrations {} are pending; run `treehole migrate` or set TREEHOLE_MIGRATE_ON_START=true",
        list.join(", ")
    )))
}

/// `treehole migrate`: applies every pending migration and builds the first read-model
/// generations. Returns what it applied (nothing on the embedded default, whose schema is
/// created with its files).
pub async fn migrate(settings: &Settings) -> Result<Vec<String>, StartupError> {
    let mut applied = Vec::new();
    if let Some(url) = &settings.database_url {
        let done = infra::migrations::migrate(url.expose_secret())
            .await
            .map_err(|e| StartupError::Config(e.to_string()))?;
        applied = done.iter().map(|(v, d)| format!("{v} {d}")).collect();
    }
    let stores = Stores::open(settings).await?;
    let search = open_search(settings).await?;
    let store = projection_store(stores.read_models.clone(), search);
    projections::runner::prepare(&projections::all(), store.as_ref()).await?;
    stores.read_models.close().await;
    Ok(applied)
}

pub struct Application {
    listener: TcpListener,
    router: Router,
    timeouts: HttpTimeouts,
    loops: Supervisor,
    stores: Stores,
    clock: crate::clock::Clock,
}

impl Application {
    /// Opens the stores, starts the projectors and binds the listener.
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        crate::http::metrics::handle();
        // Secrets are `SecretString`s, whose `Debug` is `[REDACTED]`.
        tracing::debug!(?settings, "configuration");
        let mut stores = Stores::open(&settings).await?;
        let secret = server_secret(&settings)?;
        let scheme = settings
            .pseudonyms
            .scheme()
            .map_err(|e| StartupError::Config(e.to_string()))?;
        let passwords = Passwords::new(settings.password.policy()).map_err(StartupError::Config)?;
        let mailer: Arc<dyn Mailer> = match &settings.mail.smtp_url {
            Some(url) => Arc::new(LettreMailer::smtp(
                &settings.mail.from,
                &SmtpSettings {
                    url: url.clone(),
                    username: settings.mail.smtp_username.clone(),
                    password: settings
                        .mail
                        .smtp_password
                        .as_ref()
                        .map(|p| p.expose_secret().to_owned()),
                },
            )?),
            None => Arc::new(LettreMailer::outbox(
                &settings.mail.from,
                settings.data.join("outbox"),
            )?),
        };

        let all = projections::all();
        let selection = Selection::parse(&settings.projectors).map_err(StartupError::Config)?;
        // The projectors of this process take the events of its appends as they commit,
        // instead of reading them back from the log.
        let source: Arc<dyn EventSource> = if all.iter().any(|p| selection.includes(p.name())) {
            let (source, through) = StoreSource::write_through(stores.events.clone());
            stores.events = through;
            source
        } else {
            Arc::new(StoreSource::new(stores.events.clone()))
        };
        let hub = ProjectionHub::new(&all, stores.events.watch());
        let search = open_search(&settings).await?;
        // The text analysis builds its dictionaries on first use (about 0.15 s of CPU): here,
        // beside the startup, rather than in the first write or search that needs them.
        tokio::task::spawn_blocking(projections::search::text::warm);
        let sessions = Arc::new(SessionCache::new(session_cache::CAPACITY));
        let writer: Arc<dyn ReadModelStore> = Arc::new(Watched::new(
            projection_store(stores.read_models.clone(), search.clone()),
            sessions.clone(),
        ));
        projections::runner::prepare(&all, writer.as_ref()).await?;
        let projectors = Projectors::new(all, source, writer, hub.clone());
        let loops = Supervisor::default();
        projectors.spawn(&selection, &loops);
        let pages = crate::http::page_cache::PageCache::new(
            hub.names()
                .into_iter()
                .filter(|n| selection.includes(n))
                .collect(),
            crate::http::page_cache::CAPACITY,
        );
        let relay = match settings.kafka.settings() {
            Some(kafka) if settings.kafka.relay => {
                let relay = Arc::new(
                    infra::kafka::Relay::new(
                        kafka,
                        stores.events.clone(),
                        stores.read_models.clone(),
                    )
                    .map_err(|e| StartupError::Config(e.to_string()))?,
                );
                let status = relay.status();
                // Stops by being aborted: it resumes from its checkpoint.
                loops.spawn("relay", |_| async move {
                    relay.run().await;
                    Ok(())
                });
                Some(status)
            }
            _ => None,
        };

        let limits = RateLimiters::new(&settings.rate_limits);
        let listener =
            TcpListener::bind(settings.listen)
                .await
                .map_err(|source| StartupError::Listen {
                    addr: settings.listen,
                    source,
                })?;
        let max_body = settings.max_body_bytes;
        let timeouts = settings.http.clone();
        let queries: Arc<dyn ForumQueries> = stores.read_models.clone();
        let webhooks = infra::webhook::WebhookPolicy {
            allow_internal: settings.webhooks.allow_internal,
        };
        let stats: Arc<dyn StatsQueries> = stores.read_models.clone();
        let pseudonymiser = domain::export::Pseudonymiser::new(&match settings.export_key {
            Some(_) => crate::cli::events::export_key(&settings)
                .map_err(|e| StartupError::Config(e.to_string()))?,
            None => domain::export::derive_key(&secret),
        });
        let clock = crate::clock::Clock::default();
        let state = AppState::new(Inner {
            handler: CommandHandler::new(stores.events.clone()),
            queries,
            sessions,
            seen: Default::default(),
            stats,
            search,
            tasks: stores.read_models.clone(),
            schemas: Default::default(),
            webhooks,
            hub,
            pages,
            projectors,
            mailer,
            passwords,
            secret,
            keys: stores.keys.clone(),
            post_services: PostServices {
                pseudonyms: scheme,
                thresholds: settings.moderation.thresholds(),
            },
            sanction_policy: settings.moderation.policy(),
            clock: clock.clone(),
            pseudonymiser,
            limits,
            settings,
            relay,
            notifier: Default::default(),
            loops: loops.clone(),
        });
        spawn_loops(&state);
        Ok(Self {
            listener,
            clock,
            router: crate::http::router(state, max_body),
            timeouts,
            loops,
            stores,
        })
    }

    /// The clock requests decide with (tests move it forward).
    pub fn clock(&self) -> crate::clock::Clock {
        self.clock.clone()
    }

    /// The background loops (tests stop one to see `/readyz` report it).
    pub fn loops(&self) -> Supervisor {
        self.loops.clone()
    }

    /// The log of record this application writes to (tests read it to check what was stored).
    pub fn event_store(&self) -> Arc<dyn EventStore> {
        self.stores.events.clone()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until `shutdown` resolves, then drains in-flight requests and stops the
    /// projectors (their batches are transactions, so stopping anywhere is safe).
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartupError> {
        crate::http::server::serve(self.listener, self.router, &self.timeouts, shutdown).await;
        self.loops.shutdown(LOOP_GRACE).await;
        self.stores.read_models.close().await;
        Ok(())
    }
}

/// How long the background loops get to finish at shutdown before they are aborted.
pub const LOOP_GRACE: Duration = Duration::from_secs(5);

/// The loops `serve` runs beside the HTTP server and its projectors, each supervised.
fn spawn_loops(state: &AppState) {
    let settings = &state.settings;
    let loops = &state.loops;
    let (notifier, hub, queries) = (
        state.notifier.clone(),
        state.hub.clone(),
        state.queries.clone(),
    );
    loops.spawn("notifier", |shutdown| notifier.run(hub, queries, shutdown));
    let reap = Duration::from_millis(settings.tasks.reap_interval_ms.max(10));
    let s = state.clone();
    loops.spawn("lease reaper", |shutdown| {
        crate::background::dispatch::reap_leases(s, reap, shutdown)
    });
    if settings.webhooks.deliver {
        let s = state.clone();
        loops.spawn("webhook dispatcher", |shutdown| {
            crate::background::dispatch::deliver_webhooks(s, WEBHOOK_IDLE, shutdown)
        });
    }
    let seen_every = Duration::from_secs(settings.sessions.seen_flush_secs.max(1));
    let s = state.clone();
    loops.spawn("last-seen flush", |shutdown| {
        crate::background::last_seen::record_every(s, seen_every, shutdown)
    });
    let s = state.clone();
    loops.spawn("rate-limit pruner", |mut shutdown| async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tokio::select! {
                () = shutdown.requested() => return Ok(()),
                _ = tick.tick() => s.limits.prune(),
            }
        }
    });
    let sweep = Duration::from_millis(settings.moderation.sweep_interval_ms.max(10));
    let s = state.clone();
    loops.spawn("sanction sweep", |shutdown| {
        crate::http::routes::moderation::sanction_due(s, sweep, shutdown)
    });
}

/// The server's private key: `secret` when configured, else `<data>/secret.key`, created on
/// first use. Replicas sharing one database must share it: set `secret` for them.
pub fn server_secret(settings: &Settings) -> Result<Vec<u8>, StartupError> {
    match &settings.secret {
        Some(hex_key) => hex::decode(hex_key.expose_secret().trim())
            .map_err(|e| StartupError::Config(format!("secret: not a hex key: {e}"))),
        None => load_or_create_secret(&settings.data.join("secret.key")),
    }
}

/// The server's private key (verification-code hashes), created on first start.
fn load_or_create_secret(path: &Path) -> Result<Vec<u8>, StartupError> {
    let io = |source| StartupError::Data {
        path: path.display().to_string(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => hex::decode(text.trim())
            .map_err(|e| StartupError::Config(format!("{}: not a hex key: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut key = vec![0u8; 32];
            rand::thread_rng().fill_bytes(&mut key);
            write_private(path, &hex::encode(&key)).map_err(io)?;
            Ok(key)
        }
        Err(e) => Err(io(e)),
    }
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)
}
