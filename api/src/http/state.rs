//! What every request handler shares.

use std::sync::Arc;
use std::time::Duration;

use commands::{CommandHandler, Mailer, Passwords};
use domain::post::PostServices;
use projections::{ForumQueries, ProjectionHub, StatsQueries};

use crate::background::projector::Projectors;

use crate::cli::config::Settings;
use crate::http::rate_limit::RateLimiters;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub handler: CommandHandler,
    pub queries: Arc<dyn ForumQueries>,
    /// Bearer sessions already looked up, kept in step with the users projection.
    pub sessions: Arc<crate::http::session_cache::SessionCache>,
    /// Sessions seen on a new day, until the last-seen loop records them.
    pub seen: crate::background::last_seen::SeenBook,
    /// The statistics (`GET /stats/...`).
    pub stats: Arc<dyn StatsQueries>,
    /// The search index queries read (`GET /search`).
    pub search: Arc<dyn projections::search::SearchIndex>,
    /// Models, workers and tasks (`GET /tasks`, claims, the dispatch loops).
    pub tasks: Arc<dyn projections::tasks::TaskQueries>,
    /// Compiled input schemas of the models.
    pub schemas: crate::http::routes::tasks::Schemas,
    /// The SSRF guard of webhook URLs.
    pub webhooks: infra::webhook::WebhookPolicy,
    pub hub: ProjectionHub,
    /// Public pages kept while their read models stand still.
    pub pages: crate::http::page_cache::PageCache,
    pub projectors: Projectors,
    pub mailer: Arc<dyn Mailer>,
    pub passwords: Passwords,
    /// Key for verification-code hashes; from `<data>/secret.key`.
    pub secret: Vec<u8>,
    /// The users' data keys: author tokens, unregistering.
    pub keys: Arc<commands::Keys>,
    pub post_services: PostServices,
    /// The sanction ladder.
    pub sanction_policy: domain::sanction::SanctionPolicy,
    /// What "now" is for sessions and sanctions (tests move it).
    pub clock: crate::clock::Clock,
    /// The analysts' pseudonyms: what `GET /admin/events` shows the log with.
    pub pseudonymiser: domain::export::Pseudonymiser,
    pub limits: RateLimiters,
    pub settings: Settings,
    /// Hands new notifications to this process's open streams.
    pub notifier: std::sync::Arc<crate::background::notifier::Notifier>,
    /// The background loops of this process (`/readyz` reports any that stopped).
    pub loops: crate::background::supervisor::Supervisor,
    /// The in-process Kafka relay's progress, when `serve` runs one.
    pub relay: Option<tokio::sync::watch::Receiver<infra::kafka::RelayStatus>>,
}

impl AppState {
    pub fn new(inner: Inner) -> Self {
        Self(Arc::new(inner))
    }

    pub fn consistency_timeout(&self) -> Duration {
        Duration::from_millis(self.0.settings.consistency_timeout_ms)
    }
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}
