//! How moderation is read: the public log, the moderators' queue, and the sanctions due.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::Position;
use domain::moderation::{Item, Reason, Role};
use serde::Serialize;

use crate::ports::{Page, ReadModelError};

/// One act in the public log: what, on which item, why, by which role, when. Never who.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogEntry {
    pub position: Position,
    pub act: String,
    pub item: Item,
    pub reason: String,
    pub note: Option<String>,
    pub role: String,
    pub at: DateTime<Utc>,
}

/// A reported item as moderators see it: counts, reasons and texts, never reporters.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueItem {
    pub item: Item,
    pub reports: i64,
    pub weight: i64,
    pub folded: Option<String>,
    pub removed: bool,
    /// Reports per reason code, most first.
    pub reasons: Vec<(String, i64)>,
    /// The reports' texts, oldest first.
    pub texts: Vec<String>,
    pub last_reported_at: DateTime<Utc>,
}

#[async_trait]
pub trait ModerationQueries: Send + Sync + 'static {
    /// The log, newest first: entries before `page.cursor`.
    async fn moderation_log(&self, page: Page) -> Result<Vec<LogEntry>, ReadModelError>;
    /// Reported items that are not removed, by weight (heaviest first), then latest report.
    async fn queue(&self, limit: usize) -> Result<Vec<QueueItem>, ReadModelError>;
    /// Removed items whose authors are still to be sanctioned: each with the removal's reason
    /// and the role that removed it.
    async fn sanctions_due(
        &self,
        limit: usize,
    ) -> Result<Vec<(Item, Reason, Role)>, ReadModelError>;
}
