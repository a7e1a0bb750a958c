//! Bearer sessions held in memory, so that an authenticated request costs no SQL query.
//!
//! # Why a cached session is never one that has ended
//!
//! Only the `users` projection ends sessions in the read model ([`UserChange::EndSession`]: a
//! logout, an end from another device, an eviction by a newer login), and
//! every batch of it that this process applies goes through [`Watched`], the store decorator the
//! composition root puts in front of the read models. After a batch has committed, and before
//! the runner announces the new position in the [`projections::ProjectionHub`],
//! [`SessionCache::applied`]
//! - evicts the sessions the batch ended;
//! - empties the cache if the batch starts beyond the last position the cache has seen: the
//!   events in between were applied without passing here (by another process's projector on the
//!   same database, or by a rebuild promoted elsewhere);
//! - empties it as well when an account changed (`SetAdmin`), since entries carry the account;
//! - moves a cached session's last-seen day forward (`SeeSession`), which only decides whether
//!   a request notes the session again (see `last_seen`);
//!
//! and then records that position as `seen`. A lookup is answered from memory only while `seen`
//! is at least the users projection's position in the hub. When the hub is further ahead (the
//! projector re-attached beyond events it did not apply itself, or this process only observes a
//! users projection that a worker process runs), lookups go to SQL, as they did before the cache.
//!
//! A session read from SQL is remembered only if nothing was evicted since that read began (an
//! epoch taken as a [`Ticket`] before the query): a read that raced the commit of a logout may
//! have seen the session alive, and must not bring it back after its eviction.
//!
//! So a session ended anywhere is refused here as soon as this process's users projection
//! position (what `?after=` waits for and `X-Projection-Position` shows) has reached its
//! `SessionEnded` event. A logout answers once the users projection of the process that served
//! it has got there, so its token is dead on the very next request. Expiry is checked on every
//! hit, against the caller's clock.

use projections::{CommentChange, FeedChange, UserChange};
use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use domain::{Position, SessionId};
use lru::LruCache;
use projections::views::SessionView;
use projections::{
    Change, ForumQueries, Generation, Promotion, ReadModelError, ReadModelStore, users,
};

/// Sessions kept at most (about 300 bytes each).
pub const CAPACITY: usize = 50_000;

pub struct SessionCache {
    inner: Mutex<Inner>,
}

struct Inner {
    /// Live sessions by token hash.
    by_token: LruCache<String, SessionView>,
    /// The token hash of each cached session, for evicting by session id.
    tokens: HashMap<SessionId, String>,
    /// Every change of the users model up to here has been seen by [`SessionCache::applied`].
    seen: Position,
    /// Bumped by every eviction: a read that began before it must not be remembered.
    epoch: u64,
}

/// Taken before reading a session from SQL; see [`SessionCache::remember`].
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    epoch: u64,
}

/// The answer of [`SessionCache::lookup`].
#[derive(Debug)]
pub enum Lookup {
    Hit(SessionView),
    /// Not answerable from memory: read SQL, then [`SessionCache::remember`] with this ticket.
    Miss(Ticket),
}

impl SessionCache {
    pub fn new(capacity: usize) -> Self {
        let capacity = NonZeroUsize::new(capacity.max(1)).expect("at least one");
        Self {
            inner: Mutex::new(Inner {
                by_token: LruCache::new(capacity),
                tokens: HashMap::new(),
                seen: 0,
                epoch: 0,
            }),
        }
    }

    /// The live, unexpired session of `token_hash`, read from memory when the cache has seen
    /// every change of the users model up to `users_at` (its position in this process), else
    /// from `queries`.
    pub async fn session(
        &self,
        queries: &dyn ForumQueries,
        token_hash: &str,
        users_at: Position,
        now: DateTime<Utc>,
    ) -> Result<Option<SessionView>, ReadModelError> {
        let ticket = match self.lookup(token_hash, users_at, now) {
            Lookup::Hit(session) => return Ok(Some(session)),
            Lookup::Miss(ticket) => ticket,
        };
        let found = queries
            .session(token_hash)
            .await?
            .filter(|s| s.expires_at > now);
        if let Some(session) = &found {
            self.remember(token_hash, session.clone(), ticket);
        }
        Ok(found)
    }

    /// A cached session that has not expired at `now`, if the cache may answer at `users_at`.
    pub fn lookup(&self, token_hash: &str, users_at: Position, now: DateTime<Utc>) -> Lookup {
        let mut inner = self.lock();
        let ticket = Ticket { epoch: inner.epoch };
        if inner.seen < users_at {
            return Lookup::Miss(ticket);
        }
        match inner.by_token.get(token_hash) {
            Some(session) if session.expires_at > now => Lookup::Hit(session.clone()),
            Some(_) => {
                inner.remove(token_hash);
                Lookup::Miss(ticket)
            }
            None => Lookup::Miss(ticket),
        }
    }

    /// Keeps a session read from SQL, unless an eviction happened since `ticket` was taken.
    pub fn remember(&self, token_hash: &str, session: SessionView, ticket: Ticket) {
        let mut inner = self.lock();
        if inner.epoch != ticket.epoch {
            return;
        }
        let session_id = session.session_id;
        if let Some((old_hash, old)) = inner.by_token.push(token_hash.to_owned(), session)
            && old_hash != token_hash
        {
            inner.tokens.remove(&old.session_id);
        }
        inner.tokens.insert(session_id, token_hash.to_owned());
    }

    /// Takes note of a batch of the users projection that has just committed `changes` for the
    /// events after `from` up to `to`.
    pub fn applied(&self, changes: &[Change], from: Position, to: Position) {
        let mut ended = Vec::new();
        let mut seen = Vec::new();
        let mut account_changed = false;
        for change in changes {
            match change {
                Change::Users(UserChange::EndSession { session_id }) => ended.push(*session_id),
                Change::Users(UserChange::SeeSession { session_id, day }) => {
                    seen.push((*session_id, *day));
                }
                // Entries carry the account, its roles and its sanctions.
                Change::Users(UserChange::SetAdmin { .. })
                | Change::Users(UserChange::SetModerator { .. })
                | Change::Users(UserChange::InsertSanction { .. })
                | Change::Users(UserChange::DecideAppeal { .. })
                | Change::Users(UserChange::DeleteUser { .. }) => account_changed = true,
                Change::Users(UserChange::AppealSanction { .. }) => {}
                // New rows: no cached session can be one of them.
                Change::Users(UserChange::InsertUser { .. })
                | Change::Users(UserChange::InsertSession { .. }) => {}
                Change::Feed(FeedChange::InsertPost { .. })
                | Change::Feed(FeedChange::DeletePost { .. })
                | Change::Feed(FeedChange::CountComment { .. })
                | Change::Feed(FeedChange::SetReactions { .. })
                | Change::Feed(FeedChange::OpenPoll { .. })
                | Change::Feed(FeedChange::SetPollCounts { .. })
                | Change::Feed(FeedChange::SetFollowers { .. })
                | Change::Feed(FeedChange::Mark { .. })
                | Change::Comments(CommentChange::SetReactions { .. })
                | Change::Comments(CommentChange::InsertComment { .. })
                | Change::Comments(CommentChange::DeleteComment { .. })
                | Change::Comments(CommentChange::DeleteCommentsOf { .. })
                | Change::Feed(FeedChange::ForgetPostAuthor { .. })
                | Change::Comments(CommentChange::ForgetCommentAuthor { .. })
                | Change::Tasks(_)
                | Change::Feed(FeedChange::Fold { .. })
                | Change::Feed(FeedChange::Remove { .. })
                | Change::Comments(CommentChange::Fold { .. })
                | Change::Comments(CommentChange::Remove { .. })
                | Change::Stats(_)
                | Change::Inbox(_)
                | Change::Moderation(_) => {}
            }
        }
        let mut inner = self.lock();
        if from > inner.seen || account_changed {
            inner.by_token.clear();
            inner.tokens.clear();
            inner.epoch += 1;
        } else if !ended.is_empty() {
            for session_id in ended {
                if let Some(token_hash) = inner.tokens.remove(&session_id) {
                    inner.by_token.pop(&token_hash);
                }
            }
            inner.epoch += 1;
        }
        for (session_id, day) in seen {
            inner.see(session_id, day);
        }
        inner.seen = inner.seen.max(to);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Inner {
    fn see(&mut self, session_id: SessionId, day: NaiveDate) {
        let Some(token_hash) = self.tokens.get(&session_id) else {
            return;
        };
        if let Some(session) = self.by_token.peek_mut(token_hash) {
            session.last_seen = session.last_seen.max(day);
        }
    }

    fn remove(&mut self, token_hash: &str) {
        if let Some(session) = self.by_token.pop(token_hash) {
            self.tokens.remove(&session.session_id);
        }
    }
}

/// The read-model store as projectors write it, telling `cache` about every committed batch of
/// the users projection (see the module documentation).
pub struct Watched {
    inner: Arc<dyn ReadModelStore>,
    cache: Arc<SessionCache>,
}

impl Watched {
    pub fn new(inner: Arc<dyn ReadModelStore>, cache: Arc<SessionCache>) -> Self {
        Self { inner, cache }
    }
}

#[async_trait]
impl ReadModelStore for Watched {
    fn pace(&self, projection: &str) -> std::time::Duration {
        self.inner.pace(projection)
    }

    fn held(&self, projection: &str) -> Option<std::time::Duration> {
        self.inner.held(projection)
    }

    async fn live(&self, projection: &str) -> Result<Option<Generation>, ReadModelError> {
        self.inner.live(projection).await
    }

    async fn create_generation(
        &self,
        projection: &str,
        version: u32,
    ) -> Result<Generation, ReadModelError> {
        self.inner.create_generation(projection, version).await
    }

    async fn apply(
        &self,
        projection: &str,
        generation: u32,
        changes: &[Change],
        from: Position,
        to: Position,
    ) -> Result<(), ReadModelError> {
        self.inner
            .apply(projection, generation, changes, from, to)
            .await?;
        if projection == users::NAME {
            self.cache.applied(changes, from, to);
        }
        Ok(())
    }

    async fn promote(
        &self,
        projection: &str,
        generation: u32,
    ) -> Result<Promotion, ReadModelError> {
        self.inner.promote(projection, generation).await
    }

    async fn dump(&self, projection: &str) -> Result<Vec<String>, ReadModelError> {
        self.inner.dump(projection).await
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;
    use domain::UserId;
    use projections::views::UserView;
    use uuid::Uuid;

    use super::*;

    fn session(expires_at: DateTime<Utc>) -> SessionView {
        SessionView {
            session_id: SessionId::new(Uuid::now_v7()),
            user: UserView {
                user_id: UserId::new(Uuid::now_v7()),
                username: "ann".into(),
                email: "ann@campus.edu".into(),
                is_admin: false,
                is_moderator: false,
                registered_at: Utc::now(),
                sanctions: vec![],
            },
            expires_at,
            last_seen: Utc::now().date_naive(),
        }
    }

    fn ended(s: &SessionView) -> Change {
        Change::Users(UserChange::EndSession {
            session_id: s.session_id,
        })
    }

    fn ticket(cache: &SessionCache, hash: &str, users_at: Position) -> Ticket {
        match cache.lookup(hash, users_at, Utc::now()) {
            Lookup::Miss(t) => t,
            Lookup::Hit(s) => panic!("{hash} is cached already: {s:?}"),
        }
    }

    fn hit(cache: &SessionCache, hash: &str, users_at: Position) -> bool {
        matches!(cache.lookup(hash, users_at, Utc::now()), Lookup::Hit(_))
    }

    /// A cache that has seen the users model up to 10 and holds `hash`.
    fn holding(hash: &str, s: &SessionView) -> SessionCache {
        let cache = SessionCache::new(16);
        cache.applied(&[], 0, 10);
        let t = ticket(&cache, hash, 10);
        cache.remember(hash, s.clone(), t);
        assert!(hit(&cache, hash, 10));
        cache
    }

    #[test]
    fn an_ended_session_is_evicted_and_others_stay() {
        let (a, b) = (
            session(Utc::now() + Duration::hours(1)),
            session(Utc::now() + Duration::hours(1)),
        );
        let cache = holding("a", &a);
        let t = ticket(&cache, "b", 10);
        cache.remember("b", b.clone(), t);
        cache.applied(&[ended(&a)], 10, 11);
        assert!(!hit(&cache, "a", 11));
        assert!(hit(&cache, "b", 11));
    }

    #[test]
    fn a_read_that_raced_an_eviction_is_not_remembered() {
        let s = session(Utc::now() + Duration::hours(1));
        let cache = SessionCache::new(16);
        cache.applied(&[], 0, 10);
        // The SQL read begins, sees the session alive; the logout's batch commits meanwhile.
        let t = ticket(&cache, "a", 10);
        cache.applied(&[ended(&s)], 10, 11);
        cache.remember("a", s, t);
        assert!(!hit(&cache, "a", 11));
    }

    #[test]
    fn a_gap_in_the_applied_positions_empties_the_cache() {
        let s = session(Utc::now() + Duration::hours(1));
        let cache = holding("a", &s);
        // Events 11 to 20 were applied by another process; this one goes on from 20.
        cache.applied(&[], 20, 21);
        assert!(!hit(&cache, "a", 21));
    }

    #[test]
    fn the_cache_does_not_answer_while_the_model_is_beyond_what_it_has_seen() {
        let s = session(Utc::now() + Duration::hours(1));
        let cache = holding("a", &s);
        assert!(!hit(&cache, "a", 11));
        cache.applied(&[], 10, 11);
        assert!(hit(&cache, "a", 11));
    }

    #[test]
    fn an_admin_grant_empties_the_cache() {
        let s = session(Utc::now() + Duration::hours(1));
        let cache = holding("a", &s);
        let grant = Change::Users(UserChange::SetAdmin {
            user_id: s.user.user_id,
        });
        cache.applied(&[grant], 10, 11);
        assert!(!hit(&cache, "a", 11));
    }

    #[test]
    fn a_seen_day_moves_a_cached_session_forward_and_keeps_it() {
        let s = session(Utc::now() + Duration::hours(1));
        let cache = holding("a", &s);
        let tomorrow = s.last_seen + Duration::days(1);
        let seen = |day| {
            Change::Users(UserChange::SeeSession {
                session_id: s.session_id,
                day,
            })
        };
        cache.applied(&[seen(tomorrow)], 10, 11);
        cache.applied(&[seen(s.last_seen)], 11, 12);
        match cache.lookup("a", 12, Utc::now()) {
            Lookup::Hit(cached) => assert_eq!(cached.last_seen, tomorrow),
            Lookup::Miss(_) => panic!("a seen day does not evict"),
        }
    }

    #[test]
    fn an_expired_session_is_not_answered() {
        let s = session(Utc::now() + Duration::hours(1));
        let cache = holding("a", &s);
        let later = s.expires_at + Duration::seconds(1);
        assert!(matches!(cache.lookup("a", 10, later), Lookup::Miss(_)));
    }

    #[test]
    fn a_session_pushed_out_by_capacity_leaves_no_index_behind() {
        let cache = SessionCache::new(1);
        cache.applied(&[], 0, 10);
        let (a, b) = (
            session(Utc::now() + Duration::hours(1)),
            session(Utc::now() + Duration::hours(1)),
        );
        let t = ticket(&cache, "a", 10);
        cache.remember("a", a.clone(), t);
        let t = ticket(&cache, "b", 10);
        cache.remember("b", b, t);
        assert!(!hit(&cache, "a", 10));
        assert!(hit(&cache, "b", 10));
        assert_eq!(cache.lock().tokens.len(), 1);
    }
}
