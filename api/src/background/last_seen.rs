//! The days sessions were last seen on, recorded apart from the requests that saw them.
//!
//! An authenticated request notes its session here, in memory, when the day the session was
//! last recorded as seen is before today ([`SeenBook::note`]: a map insert, no I/O). A loop of
//! its own ([`record_every`]) records what was noted every `sessions.seen_flush_secs` as
//! `SessionSeen` events, which the Session aggregate allows at most once per session and day,
//! so several processes noting one session record it once.
//!
//! Why not in the request: there the event would sit in the log beside what the request wrote,
//! under the same request id, and an anonymous post would be tied to its author's session by
//! its neighbour. Recorded by the loop, the event carries no request id and no actor, and its
//! time and position say only that the session was used at some point of the interval, as its
//! day does. What is noted is recorded once more when the process stops; what a crash leaves unrecorded
//! is lost, and last seen is coarse anyway.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use commands::{CommandContext, CommandError, CommandHandler, sessions};
use domain::SessionId;
use projections::views::SessionView;

use crate::background::supervisor::{LoopError, Shutdown};
use crate::http::state::AppState;

/// Sessions seen on a day later than their recorded last-seen day, not yet recorded.
#[derive(Default)]
pub struct SeenBook {
    noted: Mutex<HashMap<SessionId, NaiveDate>>,
}

impl SeenBook {
    /// Notes that `session` is used at `now`, if that is a day it is not yet recorded for.
    pub fn note(&self, session: &SessionView, now: DateTime<Utc>) {
        let today = now.date_naive();
        if session.last_seen >= today {
            return;
        }
        let mut noted = self.lock();
        let day = noted.entry(session.session_id).or_insert(today);
        *day = (*day).max(today);
    }

    /// Records every noted day; returns how many events that wrote. A day that could not be
    /// recorded for a technical reason stays noted for the next round.
    pub async fn record(&self, handler: &CommandHandler) -> usize {
        let noted = std::mem::take(&mut *self.lock());
        let ctx = CommandContext::new(Utc::now());
        let mut written = 0;
        for (session_id, day) in noted {
            match sessions::seen(handler, session_id, day, &ctx).await {
                Ok(recorded) => written += usize::from(recorded.is_some()),
                // Unknown to the log: nothing to record.
                Err(CommandError::Rejected(_)) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "a session's last-seen day was not recorded");
                    let mut noted = self.lock();
                    let again = noted.entry(session_id).or_insert(day);
                    *again = (*again).max(day);
                }
            }
        }
        written
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, NaiveDate>> {
        self.noted.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Records the noted days every `every`, and once more at shutdown.
pub async fn record_every(
    state: AppState,
    every: Duration,
    mut shutdown: Shutdown,
) -> Result<(), LoopError> {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        let stopping = tokio::select! {
            () = shutdown.requested() => true,
            _ = tick.tick() => false,
        };
        let written = state.seen.record(&state.handler).await;
        if written > 0 {
            tracing::debug!(written, "recorded the days sessions were seen on");
        }
        if stopping {
            return Ok(());
        }
    }
}
