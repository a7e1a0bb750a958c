//! The sanction ledger: which authors may not write, until when, and their appeals.
//!
//! One stream, [`ledger`], holds every sanction, so that the log does not group one user's
//! sanctions in a stream of their own: each sanction names its subject only sealed under a
//! handle for that sanction alone, and seals its terms (the step on the ladder and the dates,
//! which would tell how many sanctions came before) with it. What is in clear is what the
//! public moderation log shows anyway: the item it was for, the reason and who acted.
//!
//! The ladder (treehollow's escalation) counts the user's sanctions that were not overturned on
//! appeal: the `n`-th lasts `ladder[n - 1]`, beyond the ladder it is permanent, and a new one
//! starts when the current one ends.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::aggregate::{Aggregate, DomainEvent};
use crate::ids::{SanctionId, StreamId, UserId};
use crate::moderation::{Item, Reason, Role};
use crate::personal::{KeyRef, Personal};
use crate::values::AppealText;

/// The one stream of the ledger.
pub fn ledger() -> StreamId {
    StreamId::parse("sanctions-ledger").expect("a valid stream id")
}

/// The ladder of sanction lengths; past its end a sanction is permanent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SanctionPolicy {
    pub ladder: Vec<Duration>,
}

impl Default for SanctionPolicy {
    /// 1, 3, 7 and 30 days, then permanent.
    fn default() -> Self {
        Self {
            ladder: [1, 3, 7, 30].map(Duration::days).to_vec(),
        }
    }
}

#[derive(Debug, Clone)]
pub enum SanctionCommand {
    /// Sanctions `user`, the author of `item`, sealed under `subject` (a handle for this
    /// sanction alone). One sanction per item.
    Impose {
        sanction_id: SanctionId,
        user: UserId,
        subject: KeyRef,
        item: Item,
        reason: Reason,
        by: Role,
        at: DateTime<Utc>,
    },
    /// The sanctioned user appeals, once.
    Appeal {
        sanction_id: SanctionId,
        user: UserId,
        text: Option<AppealText>,
    },
    /// A moderator upholds the sanction or overturns it; an overturned sanction ends at once
    /// and leaves the ladder. Nobody decides on their own sanction.
    Decide {
        sanction_id: SanctionId,
        uphold: bool,
        by: Role,
        actor: UserId,
    },
}

/// A sanction's terms, sealed with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Terms {
    /// Its place on the ladder, from 1.
    pub step: u32,
    pub starts_at: DateTime<Utc>,
    /// `None`: permanent.
    pub ends_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, strum::VariantNames)]
#[serde(tag = "type", content = "data")]
pub enum SanctionEvent {
    SanctionImposed {
        sanction_id: SanctionId,
        item: Item,
        reason: Reason,
        by: Role,
        subject: Personal<UserId>,
        terms: Personal<Terms>,
    },
    SanctionAppealed {
        sanction_id: SanctionId,
        /// Sealed under the sanction's subject handle.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<Personal<String>>,
    },
    AppealDecided {
        sanction_id: SanctionId,
        /// The item the sanction was for, as the moderation log shows it.
        item: Item,
        upheld: bool,
        by: Role,
    },
}

impl DomainEvent for SanctionEvent {
    fn into_event(self) -> crate::Event {
        crate::Event::Sanction(self)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SanctionError {
    #[error("no such sanction")]
    NotFound,
    #[error("the author of this item has been sanctioned for it already")]
    AlreadySanctioned,
    #[error("this sanction has been appealed already; each sanction may be appealed once")]
    AlreadyAppealed,
    #[error("this sanction has not been appealed")]
    NotAppealed,
    #[error("the appeal has been decided already")]
    AlreadyDecided,
    #[error("moderators do not decide on their own sanctions")]
    OwnSanction,
}

#[derive(Debug, Clone)]
struct Record {
    /// `None` once the subject's key is destroyed.
    user: Option<UserId>,
    subject: KeyRef,
    item: Item,
    ends_at: Option<DateTime<Utc>>,
    appealed: bool,
    decided: Option<bool>,
}

impl Record {
    fn counts(&self) -> bool {
        self.decided != Some(false)
    }
}

/// The ledger's state.
#[derive(Debug, Clone, Default)]
pub struct Sanctions {
    records: HashMap<SanctionId, Record>,
    items: HashSet<Item>,
}

impl Sanctions {
    /// The terms a new sanction of `user` at `at` gets.
    fn terms(&self, user: UserId, at: DateTime<Utc>, policy: &SanctionPolicy) -> Terms {
        let counted: Vec<&Record> = self
            .records
            .values()
            .filter(|r| r.user == Some(user) && r.counts())
            .collect();
        let step = u32::try_from(counted.len()).map_or(u32::MAX, |n| n.saturating_add(1));
        let permanent = counted.iter().any(|r| r.ends_at.is_none());
        let starts_at = counted
            .iter()
            .filter_map(|r| r.ends_at)
            .fold(at, DateTime::max);
        let ends_at = match policy.ladder.get(counted.len()) {
            Some(length) if !permanent => Some(starts_at + *length),
            _ => None,
        };
        Terms {
            step,
            starts_at,
            ends_at,
        }
    }

    fn record(&self, id: SanctionId) -> Result<&Record, SanctionError> {
        self.records.get(&id).ok_or(SanctionError::NotFound)
    }
}

impl Aggregate for Sanctions {
    type Command = SanctionCommand;
    type Event = SanctionEvent;
    type Error = SanctionError;
    type Services = SanctionPolicy;

    fn decide(
        &self,
        command: &SanctionCommand,
        policy: &SanctionPolicy,
    ) -> Result<Vec<SanctionEvent>, SanctionError> {
        match command {
            SanctionCommand::Impose {
                sanction_id,
                user,
                subject,
                item,
                reason,
                by,
                at,
            } => {
                if self.items.contains(item) || self.records.contains_key(sanction_id) {
                    return Err(SanctionError::AlreadySanctioned);
                }
                Ok(vec![SanctionEvent::SanctionImposed {
                    sanction_id: *sanction_id,
                    item: *item,
                    reason: *reason,
                    by: *by,
                    subject: Personal::new(subject.clone(), *user),
                    terms: Personal::new(subject.clone(), self.terms(*user, *at, policy)),
                }])
            }
            SanctionCommand::Appeal {
                sanction_id,
                user,
                text,
            } => {
                let record = self.record(*sanction_id)?;
                if record.user != Some(*user) {
                    return Err(SanctionError::NotFound);
                }
                if record.appealed {
                    return Err(SanctionError::AlreadyAppealed);
                }
                Ok(vec![SanctionEvent::SanctionAppealed {
                    sanction_id: *sanction_id,
                    text: text
                        .as_ref()
                        .map(|t| Personal::new(record.subject.clone(), t.as_str().to_owned())),
                }])
            }
            SanctionCommand::Decide {
                sanction_id,
                uphold,
                by,
                actor,
            } => {
                let record = self.record(*sanction_id)?;
                if record.user == Some(*actor) {
                    return Err(SanctionError::OwnSanction);
                }
                if !record.appealed {
                    return Err(SanctionError::NotAppealed);
                }
                if record.decided.is_some() {
                    return Err(SanctionError::AlreadyDecided);
                }
                Ok(vec![SanctionEvent::AppealDecided {
                    sanction_id: *sanction_id,
                    item: record.item,
                    upheld: *uphold,
                    by: *by,
                }])
            }
        }
    }

    fn evolve(&mut self, event: &SanctionEvent) {
        match event {
            SanctionEvent::SanctionImposed {
                sanction_id,
                item,
                subject,
                terms,
                ..
            } => {
                self.items.insert(*item);
                self.records.insert(
                    *sanction_id,
                    Record {
                        user: subject.get().copied(),
                        subject: subject.key().clone(),
                        item: *item,
                        // Unreadable terms (the subject left) end at once: they bind nobody.
                        ends_at: terms
                            .get()
                            .map_or(Some(DateTime::UNIX_EPOCH), |t| t.ends_at),
                        appealed: false,
                        decided: None,
                    },
                );
            }
            SanctionEvent::SanctionAppealed { sanction_id, .. } => {
                if let Some(r) = self.records.get_mut(sanction_id) {
                    r.appealed = true;
                }
            }
            SanctionEvent::AppealDecided {
                sanction_id,
                upheld,
                ..
            } => {
                if let Some(r) = self.records.get_mut(sanction_id) {
                    r.decided = Some(*upheld);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::PostId;
    use crate::testing::given;
    use uuid::Uuid;

    fn user(n: u128) -> UserId {
        UserId::new(Uuid::from_u128(n))
    }

    fn day(n: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap() + Duration::days(n)
    }

    fn id(n: u128) -> SanctionId {
        SanctionId::new(Uuid::from_u128(1000 + n))
    }

    /// The handle sanction `n` is sealed under.
    fn subject(n: u128) -> KeyRef {
        KeyRef::handle(format!("s{n}"))
    }

    fn item(n: u128) -> Item {
        Item {
            post_id: PostId::new(Uuid::from_u128(n)),
            comment_id: None,
        }
    }

    /// Sanction `n` on `who` for item `n` at `at`.
    fn impose(n: u128, who: UserId, at: DateTime<Utc>) -> SanctionCommand {
        SanctionCommand::Impose {
            sanction_id: id(n),
            user: who,
            subject: subject(n),
            item: item(n),
            reason: Reason::Spam,
            by: Role::Community,
            at,
        }
    }

    /// What `impose(n, who, _)` records, with these terms.
    fn imposed(n: u128, who: UserId, step: u32, from: i64, to: Option<i64>) -> SanctionEvent {
        SanctionEvent::SanctionImposed {
            sanction_id: id(n),
            item: item(n),
            reason: Reason::Spam,
            by: Role::Community,
            subject: Personal::new(subject(n), who),
            terms: Personal::new(
                subject(n),
                Terms {
                    step,
                    starts_at: day(from),
                    ends_at: to.map(day),
                },
            ),
        }
    }

    fn appeal(n: u128, by: UserId, text: Option<&str>) -> SanctionCommand {
        SanctionCommand::Appeal {
            sanction_id: id(n),
            user: by,
            text: text.map(|t| AppealText::parse(t).unwrap()),
        }
    }

    fn appealed(n: u128, text: Option<&str>) -> SanctionEvent {
        SanctionEvent::SanctionAppealed {
            sanction_id: id(n),
            text: text.map(|t| Personal::new(subject(n), t.to_owned())),
        }
    }

    fn decide(n: u128, uphold: bool, actor: UserId) -> SanctionCommand {
        SanctionCommand::Decide {
            sanction_id: id(n),
            uphold,
            by: Role::Moderator,
            actor,
        }
    }

    fn decided(n: u128, upheld: bool) -> SanctionEvent {
        SanctionEvent::AppealDecided {
            sanction_id: id(n),
            item: item(n),
            upheld,
            by: Role::Moderator,
        }
    }

    #[test]
    fn the_ladder_climbs_and_a_new_sanction_starts_when_the_current_one_ends() {
        let a = user(1);
        given::<Sanctions>([])
            .when(&impose(1, a, day(0)))
            .then([imposed(1, a, 1, 0, Some(1))])
            // The second waits for the first to end.
            .when(&impose(2, a, day(0)))
            .then([imposed(2, a, 2, 1, Some(4))])
            .when(&impose(3, a, day(10)))
            .then([imposed(3, a, 3, 10, Some(17))])
            .when(&impose(4, a, day(20)))
            .then([imposed(4, a, 4, 20, Some(50))])
            // Beyond the ladder: permanent.
            .when(&impose(5, a, day(60)))
            .then([imposed(5, a, 5, 60, None)])
            // Another user starts at the bottom.
            .when(&impose(6, user(2), day(0)))
            .then([imposed(6, user(2), 1, 0, Some(1))]);
    }

    #[test]
    fn an_overturned_sanction_leaves_the_ladder() {
        let (a, moderator) = (user(1), user(9));
        let joke = Some("it was a joke");
        given::<Sanctions>([imposed(1, a, 1, 0, Some(1)), imposed(2, a, 2, 2, Some(5))])
            .when(&appeal(2, a, joke))
            .then([appealed(2, joke)])
            .when(&appeal(2, a, joke))
            .then_error(SanctionError::AlreadyAppealed)
            .when(&decide(2, false, moderator))
            .then([decided(2, false)])
            .when(&decide(2, true, moderator))
            .then_error(SanctionError::AlreadyDecided);
        given::<Sanctions>([
            imposed(1, a, 1, 0, Some(1)),
            imposed(2, a, 2, 2, Some(5)),
            appealed(2, joke),
            decided(2, false),
        ])
        .when(&impose(3, a, day(10)))
        .then([imposed(3, a, 2, 10, Some(13))]);
    }

    #[test]
    fn one_sanction_per_item_appeals_by_the_subject_only_and_no_own_decisions() {
        let (a, b) = (user(1), user(2));
        let mut again = impose(1, a, day(0));
        if let SanctionCommand::Impose { sanction_id, .. } = &mut again {
            *sanction_id = id(7);
        }
        given::<Sanctions>([imposed(1, a, 1, 0, Some(1))])
            .when(&again)
            .then_error(SanctionError::AlreadySanctioned)
            .when(&appeal(1, b, None))
            .then_error(SanctionError::NotFound)
            .when(&decide(1, true, b))
            .then_error(SanctionError::NotAppealed)
            .when(&appeal(1, a, None))
            .then([appealed(1, None)])
            .when(&decide(1, true, a))
            .then_error(SanctionError::OwnSanction)
            .when(&decide(1, true, b))
            .then([decided(1, true)]);
    }
}
