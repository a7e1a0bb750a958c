//! What the `moderation` projection writes. No change carries a user id.

use chrono::{DateTime, Utc};
use domain::moderation::Item;
use domain::{Position, UserId};

#[derive(Debug, Clone, PartialEq)]
pub enum ModerationChange {
    /// One line of the public moderation log.
    Log {
        position: Position,
        act: String,
        item: Item,
        reason: String,
        note: Option<String>,
        /// `community`, `moderator` or `admin`.
        role: String,
        at: DateTime<Utc>,
    },
    /// A report of an item: its reason and text, and the item's count and weight after it.
    Report {
        position: Position,
        item: Item,
        /// Kept privately, so that a reporter who leaves takes their text along; never shown.
        reporter: Option<UserId>,
        reason: String,
        text: Option<String>,
        reports: i64,
        weight: i64,
        at: DateTime<Utc>,
    },
    /// The item was folded (`reason`) or unfolded (`None`).
    Fold { item: Item, reason: Option<String> },
    /// The item was removed (its author to be sanctioned when `sanction_due`) or restored
    /// (which starts its count of reports again).
    Remove {
        item: Item,
        removed: bool,
        sanction_due: bool,
        /// The removal's (or restoration's) reason code and the role that acted.
        reason: String,
        role: String,
    },
    /// The item's author has been sanctioned for it.
    Sanctioned { item: Item },
    /// A user left: what they wrote in reports goes (their reports still count).
    ForgetReporter { user_id: UserId },
}
