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

impl DomainEvent for SanctionEvent {}

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
    use uuid::Uuid;

    fn user(n: u128) -> UserId {
        UserId::new(Uuid::from_u128(n))
    }

    fn day(n: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap() + Duration::days(n)
    }

    struct Ledger(Sanctions);

    impl Ledger {
        fn when(&mut self, command: &SanctionCommand) -> Result<Vec<SanctionEvent>, SanctionError> {
            let events = self.0.decide(command, &SanctionPolicy::default())?;
            for e in &events {
                self.0.evolve(e);
            }
            Ok(events)
        }

        /// Imposes sanction `n` on `who` for item `n` at `at`; its terms.
        fn impose(&mut self, n: u128, who: UserId, at: DateTime<Utc>) -> Terms {
            let events = self.when(&impose(n, who, at)).unwrap();
            let SanctionEvent::SanctionImposed { terms, .. } = &events[0] else {
                panic!("{events:?}")
            };
            terms.get().unwrap().clone()
        }
    }

    fn id(n: u128) -> SanctionId {
        SanctionId::new(Uuid::from_u128(1000 + n))
    }

    fn impose(n: u128, who: UserId, at: DateTime<Utc>) -> SanctionCommand {
        SanctionCommand::Impose {
            sanction_id: id(n),
            user: who,
            subject: KeyRef::handle(format!("s{n}")),
            item: Item {
                post_id: PostId::new(Uuid::from_u128(n)),
                comment_id: None,
            },
            reason: Reason::Spam,
            by: Role::Community,
            at,
        }
    }

    #[test]
    fn the_ladder_climbs_and_a_new_sanction_starts_when_the_current_one_ends() {
        let mut l = Ledger(Sanctions::default());
        let a = user(1);
        let first = l.impose(1, a, day(0));
        assert_eq!(
            (first.step, first.starts_at, first.ends_at),
            (1, day(0), Some(day(1)))
        );
        let second = l.impose(2, a, day(0));
        assert_eq!((second.step, second.starts_at), (2, day(1)));
        assert_eq!(second.ends_at, Some(day(4)));
        assert_eq!(l.impose(3, a, day(10)).ends_at, Some(day(17)));
        assert_eq!(l.impose(4, a, day(20)).ends_at, Some(day(50)));
        let fifth = l.impose(5, a, day(60));
        assert_eq!(
            (fifth.step, fifth.ends_at),
            (5, None),
            "beyond the ladder: permanent"
        );
        // Another user starts at the bottom.
        assert_eq!(l.impose(6, user(2), day(0)).step, 1);
    }

    #[test]
    fn an_overturned_sanction_leaves_the_ladder() {
        let mut l = Ledger(Sanctions::default());
        let (a, moderator) = (user(1), user(9));
        l.impose(1, a, day(0));
        l.impose(2, a, day(2));
        let appeal = SanctionCommand::Appeal {
            sanction_id: id(2),
            user: a,
            text: Some(AppealText::parse("it was a joke").unwrap()),
        };
        assert_eq!(l.when(&appeal).unwrap().len(), 1);
        assert_eq!(l.when(&appeal), Err(SanctionError::AlreadyAppealed));
        let decide = |uphold| SanctionCommand::Decide {
            sanction_id: id(2),
            uphold,
            by: Role::Moderator,
            actor: moderator,
        };
        l.when(&decide(false)).unwrap();
        assert_eq!(l.when(&decide(true)), Err(SanctionError::AlreadyDecided));
        let third = l.impose(3, a, day(10));
        assert_eq!((third.step, third.ends_at), (2, Some(day(13))));
    }

    #[test]
    fn one_sanction_per_item_appeals_by_the_subject_only_and_no_own_decisions() {
        let mut l = Ledger(Sanctions::default());
        let (a, b) = (user(1), user(2));
        l.impose(1, a, day(0));
        let mut again = impose(1, a, day(0));
        if let SanctionCommand::Impose { sanction_id, .. } = &mut again {
            *sanction_id = id(7);
        }
        assert_eq!(l.when(&again), Err(SanctionError::AlreadySanctioned));
        let by_b = SanctionCommand::Appeal {
            sanction_id: id(1),
            user: b,
            text: None,
        };
        assert_eq!(l.when(&by_b), Err(SanctionError::NotFound));
        let decide = |actor| SanctionCommand::Decide {
            sanction_id: id(1),
            uphold: true,
            by: Role::Moderator,
            actor,
        };
        assert_eq!(l.when(&decide(b)), Err(SanctionError::NotAppealed));
        let by_a = SanctionCommand::Appeal {
            sanction_id: id(1),
            user: a,
            text: None,
        };
        l.when(&by_a).unwrap();
        assert_eq!(l.when(&decide(a)), Err(SanctionError::OwnSanction));
        assert_eq!(l.when(&decide(b)).unwrap().len(), 1);
    }
}
