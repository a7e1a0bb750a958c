//! Hearing of commits made by any process: `LISTEN treehole_events`.
//!
//! Every batch that appends sends its new head on the channel, delivered once it has committed.
//! The listener raises the store's watch to it. Notifications sent while the connection is
//! down are lost, so after reconnecting the listener first listens again and then re-reads the
//! head: anything committed in between is covered by that read, anything later is notified.

use std::sync::Arc;
use std::time::{Duration, Instant};

use domain::Position;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use tokio::sync::{oneshot, watch};
use tracing::{debug, warn};

use super::{
    CHANNEL, CONNECT_TIMEOUT, LISTENER_APPLICATION_NAME, advance, backend, max_position,
    unreachable,
};
use commands::StoreError;

/// The first wait before listening again after a failure; doubled up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

pub(super) struct Listener {
    /// At most one connection: the one that listens.
    pool: PgPool,
    /// For re-reading the head.
    reads: PgPool,
    server: Arc<str>,
}

impl Listener {
    pub(super) fn new(options: &PgConnectOptions, reads: PgPool, server: &Arc<str>) -> Self {
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(CONNECT_TIMEOUT)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_lazy_with(options.clone().application_name(LISTENER_APPLICATION_NAME));
        Self {
            pool,
            reads,
            server: Arc::clone(server),
        }
    }

    /// A connection that listens on [`CHANNEL`].
    pub(super) async fn listen(&self) -> Result<PgListener, StoreError> {
        let mut listener = PgListener::connect_with(&self.pool)
            .await
            .map_err(|e| unreachable(&self.server, e))?;
        listener.ignore_pool_close_event(true);
        // A lost connection is reported, not silently replaced: `run` must re-read the head.
        listener.eager_reconnect(false);
        listener
            .listen(CHANNEL)
            .await
            .map_err(|e| backend("cannot listen for commits", e))?;
        Ok(listener)
    }

    /// Follows the notifications, starting with the `listening` connection, until `stop`
    /// fires (the store was dropped).
    pub(super) async fn run(
        self,
        listening: PgListener,
        head: Arc<watch::Sender<Position>>,
        stop: oneshot::Receiver<()>,
    ) {
        let follow_forever = async {
            let mut listening = Some(listening);
            let mut backoff = MIN_BACKOFF;
            loop {
                let listener = match listening.take() {
                    Some(listener) => listener,
                    None => match self.resume(&head).await {
                        Ok(listener) => listener,
                        Err(e) => {
                            warn!(error = %e, retry_in = ?backoff, "cannot listen for commits");
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(MAX_BACKOFF);
                            continue;
                        }
                    },
                };
                let since = Instant::now();
                let lost = self.follow(listener, &head).await;
                if since.elapsed() > MAX_BACKOFF {
                    backoff = MIN_BACKOFF;
                }
                warn!(error = %lost, retry_in = ?backoff, "stopped hearing of commits; listening again");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        };
        tokio::select! {
            _ = stop => {}
            _ = follow_forever => {}
        }
        debug!("event store listener stopped");
    }

    /// Listens again, then catches up with whatever was committed while nobody listened.
    async fn resume(&self, head: &watch::Sender<Position>) -> Result<PgListener, StoreError> {
        let listener = self.listen().await?;
        advance(head, max_position(&self.reads).await?);
        debug!("listening for commits again");
        Ok(listener)
    }

    /// Raises the head with each notification until the connection fails.
    async fn follow(&self, mut listener: PgListener, head: &watch::Sender<Position>) -> StoreError {
        loop {
            let notification = match listener.try_recv().await {
                Ok(Some(notification)) => notification,
                Ok(None) => return StoreError::Unavailable("the connection was lost".into()),
                Err(e) => return backend("waiting for notifications failed", e),
            };
            match notification.payload().parse::<Position>() {
                Ok(position) => advance(head, position),
                // A bare `NOTIFY treehole_events` (say, by an operator) asks to look again.
                Err(_) => match max_position(&self.reads).await {
                    Ok(position) => advance(head, position),
                    Err(e) => return e,
                },
            }
        }
    }
}
