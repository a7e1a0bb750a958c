//! Moderation's shared vocabulary: why an item is reported, who acts, and the thresholds of
//! community weight (treehollow's rule) the Post aggregate decides with.
//!
//! Reports and acts name content (a post, or a comment under it), never a user: a moderator
//! need not learn who wrote an anonymous item to fold or remove it (OpenTreeHole's rule), and
//! the public moderation log can show every act.

use serde::{Deserialize, Serialize};

use crate::ids::{CommentId, PostId};
use crate::values::InvalidValue;

/// Why an item is reported, folded, removed or sanctioned: a code from a fixed list, so that
/// "two reports with the same reason" means something and the public log can show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Advertising, repeated posting, link farms.
    Spam,
    /// Insults, harassment or threats against a person.
    Abuse,
    /// Sexual or graphic content.
    Nsfw,
    /// A quarrel that has turned into a flame war.
    FlameWar,
    /// Someone's personal data: a name, a phone number, an address, a photo.
    Privacy,
    /// Content that breaks the law or the campus rules.
    Illegal,
    /// False claims presented as fact.
    Misinformation,
    /// Anything else (say what in the text).
    Other,
}

impl Reason {
    pub const ALL: [Reason; 8] = [
        Reason::Spam,
        Reason::Abuse,
        Reason::Nsfw,
        Reason::FlameWar,
        Reason::Privacy,
        Reason::Illegal,
        Reason::Misinformation,
        Reason::Other,
    ];

    /// The code clients send and the log shows.
    pub fn code(self) -> &'static str {
        match self {
            Reason::Spam => "spam",
            Reason::Abuse => "abuse",
            Reason::Nsfw => "nsfw",
            Reason::FlameWar => "flame_war",
            Reason::Privacy => "privacy",
            Reason::Illegal => "illegal",
            Reason::Misinformation => "misinformation",
            Reason::Other => "other",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        Self::ALL
            .into_iter()
            .find(|r| r.code() == raw)
            .ok_or_else(|| InvalidValue {
                field: "reason",
                reason: format!(
                    "{raw:?} is not a reason code; one of {}",
                    Self::ALL.map(Reason::code).join(", ")
                ),
            })
    }
}

/// Who acted, as the moderation log shows it: the community (reports reaching a threshold),
/// a moderator or an admin. Never which user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Community,
    Moderator,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Community => "community",
            Role::Moderator => "moderator",
            Role::Admin => "admin",
        }
    }

    pub fn parse(raw: &str) -> Option<Role> {
        [Role::Community, Role::Moderator, Role::Admin]
            .into_iter()
            .find(|r| r.as_str() == raw)
    }
}

/// What a moderator does to an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    Fold,
    Unfold,
    Remove,
    Restore,
}

/// The item a report or an act is about: a post, or one comment under it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Item {
    pub post_id: PostId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment_id: Option<CommentId>,
}

/// Community weight (treehollow v3's defaults): each report weighs `weight`; a total of
/// `remove_at` removes the item and sanctions its author; `fold_at` reports with one reason
/// fold it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    pub weight: u64,
    pub remove_at: u64,
    pub fold_at: u64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            weight: 10,
            remove_at: 100,
            fold_at: 2,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_codes_round_trip_and_match_their_wire_form() {
        for r in Reason::ALL {
            assert_eq!(Reason::parse(r.code()), Ok(r));
            assert_eq!(serde_json::to_value(r).unwrap(), r.code());
        }
        let err = Reason::parse("rude").unwrap_err();
        assert!(err.reason.contains("flame_war"), "{err}");
        assert!(Reason::parse("Spam").is_err());
    }
}
