//! The analysts' export of the log (ARCHITECTURE.md §6): every user id replaced by a keyed
//! pseudonymous id, every private secret redacted.
//!
//! The rewrite is typed: an envelope is decoded into its [`Event`], each field is decided by an
//! exhaustive `match`, and the event is encoded again in its current schema. A new event variant
//! or field (or a new envelope or metadata field) does not compile until someone decides what
//! the export does with it.
//!
//! Pseudonymous ids are UUIDs (version 8) made of HMAC-SHA256(key, label), so they keep the type
//! of the id and join across exports made with one key, while nobody without the key can tell
//! whose they are:
//! - `user(u)`, label `user:<u>`: a user's named activity, their own streams and sessions;
//! - `anonymous(p, u)`, label `anon:<p>:<u>`: a user's anonymous posts and comments under post
//!   `p`. Like the public pseudonyms, it is stable within one post and different across posts and
//!   from `user(u)`, so anonymous content never becomes linkable to its author's named activity.
//!
//! Personal values ([`Personal`]) stay personal values, exported as open markers
//! (`{"$personal": {"key": ..., "value": ...}}`) that the export never seals. Their key
//! reference is pseudonymised like an id: a user id becomes the id of the act it appears in
//! (`user(u)`, or `anonymous(p, u)` in an anonymous item), a handle (an author token, a
//! reservation handle) its keyed hash, label `handle:<handle>`. A known value is replaced by its
//! stand-in; a value that cannot be read (its key was destroyed, or the log was read without the
//! key store and holds it sealed) exports shredded, the key without a value.
//!
//! The decisions, event by event:
//! - `UserRegistered`: `user_id` is `user(u)`; `email` becomes `<hex>@pseudonymised.invalid`
//!   and `username` a keyed hash `u_<hex>` (a username is public, so it would link the pseudonym
//!   to a person), both under the key `user(u)`; `password_hash` is always shredded, known or
//!   not. `AdminGranted`, `ModeratorGranted`, `ModeratorRevoked`, `UserUnregistered`: `user(u)`. `NotificationsRead`, `FavouriteSet`,
//!   `FavouriteRemoved`: `user(u)`, and their sealed value (a read mark, which is the position
//!   of a comment the user was told of; a favourite post and its folder) always shredded: what
//!   a user follows, wrote or keeps is theirs.
//! - `SessionStarted`: `user(u)`, `token_hash` emptied, the `device` label (sealed under the
//!   user's key) always shredded: what a person calls their devices is theirs; session ids stay
//!   (they are random and useless without the token's secret half). `SessionEnded`: `user(u)`.
//!   `SessionSeen`: as it is (a session id and a day). `SessionOpened`, `SessionClosed` (the
//!   user stream's record of their live sessions): `user(u)`, session ids, expiry and reason
//!   as they are.
//! - `IdentityReserved`: `owner` is a personal value under a reservation handle (in an old log,
//!   under the owner's id); its stand-in is `user(u)`. `IdentityReleased` carries nothing.
//!   `VerificationCodeIssued`: `code_hash` emptied. The streams of all three are named by a
//!   digest of the e-mail address or username: an HMAC under the server secret
//!   ([`crate::reservation::email_stream`] and the like), or, in stores written before keyed
//!   names, an unkeyed SHA-256 ([`crate::reservation::legacy_stream`]) that a dictionary attack
//!   would reverse. Either way the key is hashed again with the export key, label
//!   `digest:<key>` without the kind, so an address's reservation and verification streams
//!   still share their key.
//! - `PostPublished`, `CommentAdded`: a `named` author's `user_id` is `user(u)` and their
//!   `username` the keyed hash of the username (the same as in `UserRegistered`). An
//!   `anonymous` author keeps the public `pseudonym`; the `token` is replaced by its keyed hash,
//!   label `token:<token>`, which is still one per author and post (a legacy token, made from the
//!   author's id, is hashed alike); the `user_id` sealed beside it gets the stand-in
//!   `anonymous(post, u)`. Titles, bodies and tags are public already, and so is `is_host`,
//!   which marks only the anonymous host's anonymous comments (a named comment marked by a log
//!   written before that rule loses its mark), and `new_commenter`, which says no more than
//!   the pseudonym or name beside it.
//! - `CommentDeleted`, `PostDeleted`: `deleted_by` is set only when an admin deleted
//!   (`by_admin: true`) and becomes `user(admin)`; an author's own delete names nobody (an old
//!   log's `deleted_by` is dropped when the event is upcast). Its `metadata.actor` gets
//!   `deleted(item, u)`, label `deleted:<item>:<u>`, an id used once: the event does not say
//!   whether the item was anonymous, and `by_admin: false` says its author deleted it, so any id
//!   shared with other activity would tie a named item to anonymous ones.
//! - `PollOpened`: as it is (the options are public); its `metadata.actor`, present when a
//!   named post opened it, gets an id for that post alone (label `reacted:<post>:<u>`), which
//!   joins nothing even if the post were anonymous. `PollVoted`: the `voter` handle (one
//!   user's in one poll only) is replaced by its keyed hash, label `vote:<handle>`; no actor.
//! - `CommentAdded`'s `addressee` (the anonymous author a comment answers, sealed under their
//!   token) is always shredded, its key hashed as the comment's: the export names that author
//!   by their own item already. `FollowSet`: the `follower`, sealed under a follow handle, gets
//!   an id for that post alone (label `reacted:<post>:<u>`), its key the handle's keyed hash;
//!   `followers` is public.
//! - `ReactionSet`: the `reactor` handle (one user's on one item only) is replaced by its
//!   keyed hash, label `reaction:<handle>`; the counts are public. It has no `metadata.actor`
//!   (reactions are decided unnamed); were one there, it would get an id for that item alone,
//!   label `reacted:<item>:<u>`.
//! - `ItemReported`: the `reporter` (sealed under a handle of one user's on one item only) and
//!   the report's `text` (sealed with it) are always shredded, their key hashed: what a
//!   reporter wrote is theirs, and moderators read it in the queue. Reports are decided
//!   unnamed; an actor, were one there, would get an id for that item alone. `ItemFolded`,
//!   `ItemUnfolded`, `ItemRemoved`, `ItemRestored`: as they are (reasons, notes and roles are
//!   public in the moderation log), but for the anonymous `author` sealed beside them for the
//!   inbox, always shredded like an addressee; the moderator in `metadata.actor` gets `user(u)`.
//! - `SanctionImposed`: the `subject` (sealed under a handle for that sanction alone) and the
//!   `terms` (step and dates, which would tell how many sanctions came before) are always
//!   shredded, their key the handle's keyed hash; item, reason and role are public.
//!   `SanctionAppealed`: its text always shredded. `AppealDecided`: as it is. Sanctions and
//!   appeals are decided unnamed; a moderator deciding an appeal is `user(u)`.
//! - `metadata.actor` follows the event's actor field; an actor that is not a UUID (such as
//!   `operator`) is hashed as a user id would be. Correlation and causation ids (request ids)
//!   stay.
//! - `user-<u>` streams become `user-<user(u)>`; post and session streams keep their ids.

use std::fmt;

use uuid::{Builder, Uuid};

use crate::aggregate::DecodeError;
use crate::envelope::{Envelope, Metadata};
use crate::event::Event;
use crate::ids::{PostId, StreamId, UserId};
use crate::keyed_hash::keyed_hash;
use crate::model::ModelEvent;
use crate::personal::{AuthorToken, ItemHandle, KeyRef, Personal};
use crate::post::{Author, PostEvent};
use crate::reservation::ReservationEvent;
use crate::sanction::SanctionEvent;
use crate::session::SessionEvent;
use crate::task::TaskEvent;
use crate::user::UserEvent;
use crate::verification::VerificationEvent;
use crate::worker::WorkerEvent;

/// The domain of pseudonymised e-mail addresses: `.invalid` is reserved (RFC 2606), so no
/// message can ever be sent to one.
pub const EMAIL_DOMAIN: &str = "pseudonymised.invalid";

/// What the default export key is derived under from the server secret.
const KEY_DERIVATION_LABEL: &[u8] = b"treehole export pseudonyms v1";

/// The export key to use when none is configured: HMAC-SHA256(server secret, label), so one
/// deployment's exports join without a second key to keep, and nobody can recompute them from
/// the log alone.
pub fn derive_key(server_secret: &[u8]) -> Vec<u8> {
    keyed_hash(server_secret, &[KEY_DERIVATION_LABEL]).to_vec()
}

/// Rewrites envelopes for the analysts' export with one key.
///
/// ```
/// use domain::export::Pseudonymiser;
/// let p = Pseudonymiser::new(b"an export key of at least 16 bytes");
/// let u = "0190a6d1-0000-7000-8000-000000000001";
/// assert_eq!(p.user(u), p.user(u));
/// assert_ne!(p.user(u).to_string(), u);
/// assert_eq!(p.user(u).get_version_num(), 8);
/// ```
#[derive(Clone)]
pub struct Pseudonymiser {
    key: Vec<u8>,
}

impl fmt::Debug for Pseudonymiser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pseudonymiser { key: *** }")
    }
}

/// Whose act an event records: a user under their own name, anonymously under a post, or
/// deleting their own item (post or comment id).
#[derive(Debug, Clone, Copy)]
enum Acting {
    Named,
    Anonymously(PostId),
    DeletingOwn(Uuid),
    /// Reacting to one item (a post or a comment): an id for that item alone.
    Reacting(Uuid),
}

impl Pseudonymiser {
    pub fn new(key: &[u8]) -> Self {
        Self { key: key.to_vec() }
    }

    fn mac(&self, label: &str) -> [u8; 32] {
        keyed_hash(&self.key, &[label.as_bytes()])
    }

    fn hex(&self, label: &str) -> String {
        hex::encode(self.mac(label))
    }

    fn uuid(&self, label: &str) -> Uuid {
        let digest = self.mac(label);
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        Builder::from_custom_bytes(bytes).into_uuid()
    }

    /// The pseudonymous id of a user's named activity. `user` is a user id (any UUID spelling;
    /// it is read as the hyphenated form) or, for actors that are not users, any string.
    pub fn user(&self, user: &str) -> Uuid {
        self.uuid(&format!("user:{}", canonical(user)))
    }

    /// The pseudonymous id of a user's anonymous activity under one post.
    pub fn anonymous(&self, post: PostId, user: &str) -> Uuid {
        self.uuid(&format!("anon:{post}:{}", canonical(user)))
    }

    /// A deliverable-nowhere address that stands for one e-mail address.
    pub fn email(&self, email: &str) -> String {
        let digest = self.hex(&format!("email:{}", email.to_lowercase()));
        format!("{}@{EMAIL_DOMAIN}", &digest[..32])
    }

    /// A valid username that stands for one username (compared case-insensitively, as
    /// usernames are unique).
    pub fn username(&self, username: &str) -> String {
        let digest = self.hex(&format!("username:{}", username.to_lowercase()));
        format!("u_{}", &digest[..24])
    }

    fn acted_by(&self, acting: Acting, user: &str) -> Uuid {
        match acting {
            Acting::Named => self.user(user),
            Acting::Anonymously(post) => self.anonymous(post, user),
            Acting::DeletingOwn(item) => self.own_deletion(item, user),
            Acting::Reacting(item) => self.uuid(&format!("reacted:{item}:{}", canonical(user))),
        }
    }

    /// The pseudonymous id of an author deleting their own item: new for every item, so it
    /// joins nothing. The event does not say whether the item was anonymous, and `by_admin:
    /// false` already says that its author deleted it; an id shared with the author's other
    /// activity would therefore tie a named item to anonymous ones.
    fn own_deletion(&self, item: Uuid, user: &str) -> Uuid {
        self.uuid(&format!("deleted:{item}:{}", canonical(user)))
    }

    fn user_id(&self, acting: Acting, user: UserId) -> UserId {
        UserId::new(self.acted_by(acting, &user.to_string()))
    }

    /// `user-<u>` becomes `user-<user(u)>`.
    fn user_stream(&self, stream: &StreamId) -> StreamId {
        let key = self.user(stream.key());
        StreamId::parse(format!("{}-{key}", stream.kind())).expect("a UUID key is valid")
    }

    /// `<kind>-<sha256>` becomes `<kind>-<hmac(key, sha256)>`. The label leaves out the kind so
    /// that an address's reservation and verification streams still share their key.
    fn digest_stream(&self, stream: &StreamId) -> StreamId {
        let key = self.hex(&format!("digest:{}", stream.key()));
        StreamId::parse(format!("{}-{key}", stream.kind())).expect("a hex key is valid")
    }

    /// The envelope as the analysts' export carries it. An event this code cannot decode (an
    /// unknown type or schema) is an error: the caller skips and reports it.
    pub fn envelope(&self, envelope: &Envelope) -> Result<Envelope, DecodeError> {
        let Envelope {
            position,
            event_id,
            stream,
            version,
            event_type: _,
            schema: _,
            occurred_at,
            data: _,
            metadata,
        } = envelope;
        let (event, stream, acting) = match Event::decode(envelope)? {
            Event::User(e) => (
                Event::User(self.user_event(e)),
                self.user_stream(stream),
                Acting::Named,
            ),
            Event::Session(e) => (
                Event::Session(self.session_event(e)),
                stream.clone(),
                Acting::Named,
            ),
            Event::Reservation(e) => (
                Event::Reservation(self.reservation_event(e)),
                self.digest_stream(stream),
                Acting::Named,
            ),
            Event::Verification(e) => (
                Event::Verification(verification_event(e)),
                self.digest_stream(stream),
                Acting::Named,
            ),
            Event::Post(e) => {
                let (e, acting) = self.post_event(e);
                (Event::Post(e), stream.clone(), acting)
            }
            Event::Model(e) => (
                Event::Model(self.model_event(e)),
                stream.clone(),
                Acting::Named,
            ),
            Event::Task(e) => (
                Event::Task(self.task_event(e)),
                stream.clone(),
                Acting::Named,
            ),
            Event::Worker(e) => (
                Event::Worker(self.worker_event(e)),
                stream.clone(),
                Acting::Named,
            ),
            Event::Sanction(e) => (
                Event::Sanction(self.sanction_event(e)),
                stream.clone(),
                Acting::Named,
            ),
        };
        let (event_type, schema, data) = event.encode();
        Ok(Envelope {
            position: *position,
            event_id: *event_id,
            stream,
            version: *version,
            event_type: event_type.to_owned(),
            schema,
            occurred_at: *occurred_at,
            data,
            metadata: self.metadata(metadata, acting),
        })
    }

    fn metadata(&self, metadata: &Metadata, acting: Acting) -> Metadata {
        let Metadata {
            correlation_id,
            causation_id,
            actor,
        } = metadata;
        Metadata {
            correlation_id: correlation_id.clone(),
            causation_id: causation_id.clone(),
            actor: actor
                .as_deref()
                .map(|a| self.acted_by(acting, a).to_string()),
        }
    }

    fn user_event(&self, event: UserEvent) -> UserEvent {
        match event {
            UserEvent::UserRegistered {
                user_id,
                email,
                username,
                password_hash,
            } => UserEvent::UserRegistered {
                user_id: self.user_id(Acting::Named, user_id),
                email: self.personal(&email, |e| self.email(e)),
                username: self.personal(&username, |u| self.username(u)),
                password_hash: Personal::shredded(self.key_ref(password_hash.key())),
            },
            UserEvent::AdminGranted { user_id } => UserEvent::AdminGranted {
                user_id: self.user_id(Acting::Named, user_id),
            },
            UserEvent::ModeratorGranted { user_id } => UserEvent::ModeratorGranted {
                user_id: self.user_id(Acting::Named, user_id),
            },
            UserEvent::ModeratorRevoked { user_id } => UserEvent::ModeratorRevoked {
                user_id: self.user_id(Acting::Named, user_id),
            },
            UserEvent::UserUnregistered { user_id } => UserEvent::UserUnregistered {
                user_id: self.user_id(Acting::Named, user_id),
            },
            // Which posts a user keeps, and their folders' names, are the user's own: dropped.
            UserEvent::FavouriteSet { user_id, favourite } => UserEvent::FavouriteSet {
                user_id: self.user_id(Acting::Named, user_id),
                favourite: Personal::shredded(self.key_ref(favourite.key())),
            },
            UserEvent::FavouriteRemoved { user_id, post_id } => UserEvent::FavouriteRemoved {
                user_id: self.user_id(Acting::Named, user_id),
                post_id: Personal::shredded(self.key_ref(post_id.key())),
            },
            // The mark is a position that tells what the user follows or wrote: dropped.
            UserEvent::NotificationsRead { user_id, up_to } => UserEvent::NotificationsRead {
                user_id: self.user_id(Acting::Named, user_id),
                up_to: Personal::shredded(self.key_ref(up_to.key())),
            },
            UserEvent::SessionOpened {
                user_id,
                session_id,
                expires_at,
            } => UserEvent::SessionOpened {
                user_id: self.user_id(Acting::Named, user_id),
                session_id,
                expires_at,
            },
            UserEvent::SessionClosed {
                user_id,
                session_id,
                reason,
            } => UserEvent::SessionClosed {
                user_id: self.user_id(Acting::Named, user_id),
                session_id,
                reason,
            },
        }
    }

    /// A personal value's key reference: a user id becomes `user(u)`, a handle its keyed hash.
    fn key_ref(&self, key: &KeyRef) -> KeyRef {
        self.key_ref_as(Acting::Named, key)
    }

    /// A key reference in an act: a user id becomes the actor's id (so the key of an anonymous
    /// item written before author tokens, which is its author's id, becomes `anonymous(p, u)`
    /// and not `user(u)`), a handle its keyed hash.
    fn key_ref_as(&self, acting: Acting, key: &KeyRef) -> KeyRef {
        match key.as_user() {
            Some(u) => KeyRef::user(self.user_id(acting, u)),
            None => KeyRef::handle(self.hex(&format!("handle:{key}"))),
        }
    }

    /// A personal value with its stand-in, if the value is known.
    fn personal<T, U>(&self, value: &Personal<T>, stand_in: impl FnOnce(&T) -> U) -> Personal<U> {
        self.personal_as(Acting::Named, value, stand_in)
    }

    /// A personal value in an act, with its stand-in if the value is known.
    fn personal_as<T, U>(
        &self,
        acting: Acting,
        value: &Personal<T>,
        stand_in: impl FnOnce(&T) -> U,
    ) -> Personal<U> {
        let key = self.key_ref_as(acting, value.key());
        match value.get() {
            Some(v) => Personal::new(key, stand_in(v)),
            None => Personal::shredded(key),
        }
    }

    fn author(&self, author: Author, acting: Acting) -> Author {
        match author {
            Author::Named { user_id, username } => Author::Named {
                user_id: self.user_id(acting, user_id),
                username: self.personal(&username, |u| self.username(u)),
            },
            Author::Anonymous {
                token,
                pseudonym,
                user_id,
            } => Author::Anonymous {
                token: AuthorToken::new(self.hex(&format!("token:{}", token.as_str()))),
                pseudonym,
                user_id: self.personal_as(acting, &user_id, |u| self.user_id(acting, *u)),
            },
        }
    }

    fn session_event(&self, event: SessionEvent) -> SessionEvent {
        match event {
            SessionEvent::SessionStarted {
                session_id,
                user_id,
                token_hash: _,
                expires_at,
                device,
            } => SessionEvent::SessionStarted {
                session_id,
                user_id: self.user_id(Acting::Named, user_id),
                token_hash: String::new(),
                expires_at,
                // What a person calls their devices is theirs: dropped.
                device: device.map(|d| Personal::shredded(self.key_ref(d.key()))),
            },
            SessionEvent::SessionEnded {
                session_id,
                user_id,
            } => SessionEvent::SessionEnded {
                session_id,
                user_id: self.user_id(Acting::Named, user_id),
            },
            SessionEvent::SessionSeen { session_id, day } => {
                SessionEvent::SessionSeen { session_id, day }
            }
        }
    }

    fn reservation_event(&self, event: ReservationEvent) -> ReservationEvent {
        match event {
            ReservationEvent::IdentityReserved { owner } => ReservationEvent::IdentityReserved {
                owner: self.personal(&owner, |u| self.user_id(Acting::Named, *u)),
            },
            ReservationEvent::IdentityReleased {} => ReservationEvent::IdentityReleased {},
        }
    }

    /// The post event and who it is the act of.
    fn post_event(&self, event: PostEvent) -> (PostEvent, Acting) {
        match event {
            PostEvent::PostPublished {
                post_id,
                author,
                anonymous,
                title,
                body,
                tags,
            } => {
                let acting = authoring(post_id, author.is_anonymous());
                let event = PostEvent::PostPublished {
                    post_id,
                    author: self.author(author, acting),
                    anonymous,
                    title,
                    body,
                    tags,
                };
                (event, acting)
            }
            PostEvent::CommentAdded {
                post_id,
                comment_id,
                author,
                anonymous,
                is_host,
                body,
                reply_to,
                new_commenter,
                addressee,
            } => {
                let acting = authoring(post_id, author.is_anonymous());
                let event = PostEvent::CommentAdded {
                    post_id,
                    comment_id,
                    author: self.author(author, acting),
                    anonymous,
                    // Logs written before the host rule was fixed may mark a named comment.
                    is_host: is_host && anonymous,
                    body,
                    reply_to,
                    new_commenter,
                    // Whom the comment answers is the answered item's author, whom the export
                    // names by that item already; a copy here, under the commenter's key
                    // reference, would tie the two together (a host answering their own
                    // named post): dropped, its key hashed as the comment's.
                    addressee: addressee
                        .map(|a| Personal::shredded(self.key_ref_as(acting, a.key()))),
                };
                (event, acting)
            }
            PostEvent::CommentDeleted {
                post_id,
                comment_id,
                deleted_by,
                by_admin,
            } => {
                let acting = deleting(comment_id.as_uuid(), by_admin);
                let event = PostEvent::CommentDeleted {
                    post_id,
                    comment_id,
                    deleted_by: deleted_by.map(|u| self.user_id(acting, u)),
                    by_admin,
                };
                (event, acting)
            }
            PostEvent::PostDeleted {
                post_id,
                deleted_by,
                by_admin,
            } => {
                let acting = deleting(post_id.as_uuid(), by_admin);
                let event = PostEvent::PostDeleted {
                    post_id,
                    deleted_by: deleted_by.map(|u| self.user_id(acting, u)),
                    by_admin,
                };
                (event, acting)
            }
            // The options are public, as the post is; an actor, if any, gets an id that joins
            // nothing.
            e @ PostEvent::PollOpened { post_id, .. } => (e, Acting::Reacting(post_id.as_uuid())),
            // Like a reaction: a handle for this poll alone, hashed again.
            PostEvent::PollVoted {
                post_id,
                voter,
                option,
                counts,
            } => {
                let event = PostEvent::PollVoted {
                    post_id,
                    voter: ItemHandle::new(self.hex(&format!("vote:{}", voter.as_str()))),
                    option,
                    counts,
                };
                (event, Acting::Reacting(post_id.as_uuid()))
            }
            // The handle is already one item's alone; its pseudonym is too.
            PostEvent::ReactionSet {
                post_id,
                comment_id,
                reactor,
                value,
                likes,
                dislikes,
            } => {
                let item = comment_id.map_or(post_id.as_uuid(), |c| c.as_uuid());
                let event = PostEvent::ReactionSet {
                    post_id,
                    comment_id,
                    reactor: ItemHandle::new(self.hex(&format!("reaction:{}", reactor.as_str()))),
                    value,
                    likes,
                    dislikes,
                };
                (event, Acting::Reacting(item))
            }
            // Like a reaction: an id for this post's follows alone.
            PostEvent::FollowSet {
                post_id,
                follower,
                following,
                followers,
            } => {
                let acting = Acting::Reacting(post_id.as_uuid());
                let event = PostEvent::FollowSet {
                    post_id,
                    follower: self.personal_as(acting, &follower, |u| self.user_id(acting, *u)),
                    following,
                    followers,
                };
                (event, acting)
            }
            // Like a reaction: a handle for this item alone, hashed again; the text shredded.
            PostEvent::ItemReported {
                post_id,
                comment_id,
                reporter,
                reason,
                text,
                reports,
                weight,
            } => {
                let item = comment_id.map_or(post_id.as_uuid(), |c| c.as_uuid());
                let acting = Acting::Reacting(item);
                let event = PostEvent::ItemReported {
                    post_id,
                    comment_id,
                    reporter: Personal::shredded(self.key_ref_as(acting, reporter.key())),
                    reason,
                    text: text.map(|t| Personal::shredded(self.key_ref_as(acting, t.key()))),
                    reports,
                    weight,
                };
                (event, acting)
            }
            // Public but for the anonymous author the inbox is told of: shredded, as an
            // addressee is.
            PostEvent::ItemFolded {
                post_id,
                comment_id,
                reason,
                note,
                by,
                author,
            } => (
                PostEvent::ItemFolded {
                    post_id,
                    comment_id,
                    reason,
                    note,
                    by,
                    author: self.shred_author(author),
                },
                Acting::Named,
            ),
            PostEvent::ItemUnfolded {
                post_id,
                comment_id,
                reason,
                note,
                by,
                author,
            } => (
                PostEvent::ItemUnfolded {
                    post_id,
                    comment_id,
                    reason,
                    note,
                    by,
                    author: self.shred_author(author),
                },
                Acting::Named,
            ),
            PostEvent::ItemRemoved {
                post_id,
                comment_id,
                reason,
                note,
                by,
                author,
                sanction,
            } => (
                PostEvent::ItemRemoved {
                    post_id,
                    comment_id,
                    reason,
                    note,
                    by,
                    author: self.shred_author(author),
                    sanction,
                },
                Acting::Named,
            ),
            PostEvent::ItemRestored {
                post_id,
                comment_id,
                reason,
                note,
                by,
                author,
            } => (
                PostEvent::ItemRestored {
                    post_id,
                    comment_id,
                    reason,
                    note,
                    by,
                    author: self.shred_author(author),
                },
                Acting::Named,
            ),
        }
    }

    /// The anonymous author a moderation event carries for the inbox: never exported, its key
    /// hashed as a handle.
    fn shred_author(&self, author: Option<Personal<UserId>>) -> Option<Personal<UserId>> {
        author.map(|a| Personal::shredded(self.key_ref_as(Acting::Named, a.key())))
    }

    /// A sanction event: whom and on what terms is never exported.
    fn sanction_event(&self, event: SanctionEvent) -> SanctionEvent {
        let shred = |key: &KeyRef| KeyRef::handle(self.hex(&format!("handle:{key}")));
        match event {
            SanctionEvent::SanctionImposed {
                sanction_id,
                item,
                reason,
                by,
                subject,
                terms,
            } => SanctionEvent::SanctionImposed {
                sanction_id,
                item,
                reason,
                by,
                subject: Personal::shredded(shred(subject.key())),
                terms: Personal::shredded(shred(terms.key())),
            },
            SanctionEvent::SanctionAppealed { sanction_id, text } => {
                SanctionEvent::SanctionAppealed {
                    sanction_id,
                    text: text.map(|t| Personal::shredded(shred(t.key()))),
                }
            }
            e @ SanctionEvent::AppealDecided { .. } => e,
        }
    }

    /// A user acting under their own name (an admin, a submitter): `user(u)`.
    fn named(&self, user: UserId) -> UserId {
        self.user_id(Acting::Named, user)
    }

    fn model_event(&self, event: ModelEvent) -> ModelEvent {
        match event {
            ModelEvent::ModelRegistered {
                name,
                spec,
                enabled,
                by,
            } => ModelEvent::ModelRegistered {
                name,
                spec,
                enabled,
                by: self.named(by),
            },
            ModelEvent::ModelUpdated { name, spec, by } => ModelEvent::ModelUpdated {
                name,
                spec,
                by: self.named(by),
            },
            ModelEvent::ModelDisabled { name, by } => ModelEvent::ModelDisabled {
                name,
                by: self.named(by),
            },
            ModelEvent::ModelEnabled { name, by } => ModelEvent::ModelEnabled {
                name,
                by: self.named(by),
            },
        }
    }

    /// Submitters become pseudonymous ids; webhook URLs keep only their origin, since paths
    /// and queries often carry the receiver's secrets.
    fn task_event(&self, event: TaskEvent) -> TaskEvent {
        match event {
            TaskEvent::TaskPublished {
                task_id,
                submitter_id,
                model,
                input,
                webhook_url,
                priority,
                max_attempts,
            } => TaskEvent::TaskPublished {
                task_id,
                submitter_id: self.named(submitter_id),
                model,
                input,
                webhook_url: webhook_url.map(|u| origin(&u)),
                priority,
                max_attempts,
            },
            TaskEvent::TaskCancelled { task_id, by } => TaskEvent::TaskCancelled {
                task_id,
                by: self.named(by),
            },
            other => other,
        }
    }

    fn worker_event(&self, event: WorkerEvent) -> WorkerEvent {
        match event {
            WorkerEvent::WorkerRegistered {
                worker_id,
                name,
                models,
                token_hash: _,
                by,
            } => WorkerEvent::WorkerRegistered {
                worker_id,
                name,
                models,
                token_hash: String::new(),
                by: self.named(by),
            },
            WorkerEvent::WorkerRevoked { worker_id, by } => WorkerEvent::WorkerRevoked {
                worker_id,
                by: self.named(by),
            },
        }
    }
}

fn verification_event(event: VerificationEvent) -> VerificationEvent {
    match event {
        VerificationEvent::VerificationCodeIssued {
            code_hash: _,
            expires_at,
        } => VerificationEvent::VerificationCodeIssued {
            code_hash: String::new(),
            expires_at,
        },
        VerificationEvent::VerificationFailed => VerificationEvent::VerificationFailed,
        VerificationEvent::VerificationCodeConsumed => VerificationEvent::VerificationCodeConsumed,
    }
}

fn authoring(post: PostId, anonymous: bool) -> Acting {
    if anonymous {
        Acting::Anonymously(post)
    } else {
        Acting::Named
    }
}

/// An author deleting their own post or comment may be deleting anonymous content.
fn deleting(item: Uuid, by_admin: bool) -> Acting {
    if by_admin {
        Acting::Named
    } else {
        Acting::DeletingOwn(item)
    }
}

/// `scheme://host[:port]` of a URL (what is left of a webhook URL in an export).
fn origin(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return String::new();
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    // Credentials in the authority go too.
    let host = host.rsplit('@').next().unwrap_or_default();
    format!("{scheme}://{host}")
}

/// One spelling per UUID, so that `metadata.actor` and typed ids hash alike.
fn canonical(id: &str) -> String {
    Uuid::parse_str(id).map_or_else(|_| id.to_owned(), |u| u.to_string())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use chrono::{DateTime, Utc};
    use proptest::prelude::*;
    use serde_json::Value;

    use super::*;
    use crate::NewEvent;
    use crate::ids::SanctionId;
    use crate::ids::{CommentId, SessionId, TaskId, WorkerId};
    use crate::model::{ModelName, ModelSpec};
    use crate::moderation::{Item, Reason, Role};
    use crate::personal::{OPEN, SEALED, visit_mut};
    use crate::reservation::{email_stream, legacy_stream, username_stream};
    use crate::sanction::Terms;
    use crate::values::{Email, Username};

    const KEY: &[u8] = b"test export key, 32 bytes long!!";
    const OTHER_KEY: &[u8] = b"another key, also 32 bytes long!";
    /// The server secret the sample's reservation streams are keyed with.
    const SECRET_BYTES: &[u8] = b"test server secret, never exported";

    fn at() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap()
    }

    fn envelope(
        position: u64,
        stream: &StreamId,
        version: u64,
        event: Event,
        actor: Option<String>,
    ) -> Envelope {
        let (event_type, schema, data) = event.encode();
        raw_envelope(position, stream, version, event_type, schema, data, actor)
    }

    /// An envelope as a store holds it, of any schema.
    fn raw_envelope(
        position: u64,
        stream: &StreamId,
        version: u64,
        event_type: &str,
        schema: u32,
        data: Value,
        actor: Option<String>,
    ) -> Envelope {
        Envelope {
            position,
            event_id: Uuid::from_u128(u128::from(position)),
            stream: stream.clone(),
            version,
            event_type: event_type.into(),
            schema,
            occurred_at: at(),
            data,
            metadata: Metadata {
                correlation_id: Some("req-1".into()),
                causation_id: Some("req-1".into()),
                actor,
            },
        }
    }

    /// The private values of the sample log, which no exported event may carry.
    struct Private {
        user: UserId,
        admin: UserId,
        email: String,
        username: String,
        password_hash: String,
        token_hash: String,
        code_hash: String,
        email_digest: String,
        username_digest: String,
        /// The anonymous author's token under the anonymous post.
        author_token: String,
        /// The handles the reservations' owners are sealed under.
        handles: [String; 2],
    }

    struct Sample {
        private: Private,
        anonymous_post: PostId,
        named_post: PostId,
        /// The anonymous comment its author deletes.
        comment: CommentId,
        log: Vec<Envelope>,
    }

    /// A log with every event type: Zhang San registers, logs in and out, posts anonymously and
    /// under his name, comments both ways, deletes his comment; an admin deletes a post; at the
    /// end Zhang San unregisters and his names are released.
    fn sample() -> Sample {
        let user = UserId::new(Uuid::from_u128(0x0190_a6d1_0000_7000_8000_0000_0000_0001));
        let admin = UserId::new(Uuid::from_u128(0x0190_a6d1_0000_7000_8000_0000_0000_0002));
        let email = Email::parse("zhang.san@campus.edu").unwrap();
        let username = Username::parse("ZhangSan42").unwrap();
        let password_hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2g".to_owned();
        let token_hash = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        let code_hash = "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752";
        let token =
            AuthorToken::new("t80b3ad2d438bfafa1ea690c5a59f54548dcc76ad6a839c6704ac1d9d565d9c80");
        let handles = [
            "r33112ee14ee469c3eb52fe90322ec81dd404a0093d565a6d71ce77cbc8124e3b".to_owned(),
            "rf998fe06afa0cfbe73e0449dc2b1698309e1b5714960f027b2858312b152c275".to_owned(),
        ];
        let mine = KeyRef::user(user);
        let session = SessionId::new(Uuid::from_u128(7));
        let admin_session = SessionId::new(Uuid::from_u128(8));
        let anonymous_post = PostId::new(Uuid::from_u128(100));
        let named_post = PostId::new(Uuid::from_u128(200));
        let comment = CommentId::new(Uuid::from_u128(300));
        let email_reservation = email_stream(SECRET_BYTES, &email);
        let username_reservation = username_stream(SECRET_BYTES, &username);
        let verification =
            StreamId::parse(format!("verification-{}", email_reservation.key())).unwrap();
        let me = Some(user.to_string());
        let anonymously = || Author::Anonymous {
            token: token.clone(),
            pseudonym: "洞主".into(),
            user_id: Personal::new(token.key_ref(), user),
        };
        let named = || Author::Named {
            user_id: user,
            username: Personal::new(mine.clone(), username.as_str().to_owned()),
        };
        let model = ModelName::parse("sdxl").unwrap();
        let spec = ModelSpec {
            kind: "text-to-image".into(),
            input_schema: serde_json::json!({"type": "object"}),
            max_concurrent: 1,
        };
        let worker = WorkerId::new(Uuid::from_u128(400));
        let task = TaskId::new(Uuid::from_u128(500));
        let other_task = TaskId::new(Uuid::from_u128(501));
        let third_task = TaskId::new(Uuid::from_u128(502));
        let events = vec![
            (
                verification.clone(),
                1,
                Event::Verification(VerificationEvent::VerificationCodeIssued {
                    code_hash: code_hash.into(),
                    expires_at: at(),
                }),
                None,
            ),
            (
                verification.clone(),
                2,
                Event::Verification(VerificationEvent::VerificationFailed),
                None,
            ),
            (
                verification,
                3,
                Event::Verification(VerificationEvent::VerificationCodeConsumed),
                None,
            ),
            (
                email_reservation.clone(),
                1,
                Event::Reservation(ReservationEvent::IdentityReserved {
                    owner: Personal::new(KeyRef::handle(handles[0].clone()), user),
                }),
                None,
            ),
            (
                username_reservation.clone(),
                1,
                Event::Reservation(ReservationEvent::IdentityReserved {
                    owner: Personal::new(KeyRef::handle(handles[1].clone()), user),
                }),
                None,
            ),
            (
                user.stream(),
                1,
                Event::User(UserEvent::UserRegistered {
                    user_id: user,
                    email: Personal::new(mine.clone(), email.as_str().into()),
                    username: Personal::new(mine.clone(), username.as_str().into()),
                    password_hash: Personal::new(mine.clone(), password_hash.clone()),
                }),
                None,
            ),
            (
                user.stream(),
                2,
                Event::User(UserEvent::AdminGranted { user_id: user }),
                Some("operator".into()),
            ),
            (
                session.stream(),
                1,
                Event::Session(SessionEvent::SessionStarted {
                    session_id: session,
                    user_id: user,
                    token_hash: token_hash.into(),
                    expires_at: at(),
                    device: Some(Personal::new(mine.clone(), DEVICE.into())),
                }),
                None,
            ),
            (
                anonymous_post.stream(),
                1,
                Event::Post(PostEvent::PostPublished {
                    post_id: anonymous_post,
                    author: anonymously(),
                    anonymous: true,
                    title: None,
                    body: "secret thoughts".into(),
                    tags: vec!["life".into()],
                }),
                me.clone(),
            ),
            (
                anonymous_post.stream(),
                2,
                Event::Post(PostEvent::CommentAdded {
                    post_id: anonymous_post,
                    comment_id: comment,
                    author: anonymously(),
                    anonymous: true,
                    is_host: true,
                    body: "bump".into(),
                    reply_to: None,
                    new_commenter: true,
                    addressee: Some(Personal::new(token.key_ref(), user)),
                }),
                me.clone(),
            ),
            (
                anonymous_post.stream(),
                3,
                Event::Post(PostEvent::CommentDeleted {
                    post_id: anonymous_post,
                    comment_id: comment,
                    deleted_by: None,
                    by_admin: false,
                }),
                me.clone(),
            ),
            (
                named_post.stream(),
                1,
                Event::Post(PostEvent::PostPublished {
                    post_id: named_post,
                    author: named(),
                    anonymous: false,
                    title: Some("hello".into()),
                    body: "named thoughts".into(),
                    tags: vec![],
                }),
                me.clone(),
            ),
            (
                named_post.stream(),
                2,
                Event::Post(PostEvent::CommentAdded {
                    post_id: named_post,
                    comment_id: CommentId::new(Uuid::from_u128(301)),
                    author: named(),
                    anonymous: false,
                    is_host: true,
                    body: "named comment".into(),
                    reply_to: None,
                    new_commenter: true,
                    addressee: None,
                }),
                me.clone(),
            ),
            (
                named_post.stream(),
                3,
                Event::Post(PostEvent::PostDeleted {
                    post_id: named_post,
                    deleted_by: Some(admin),
                    by_admin: true,
                }),
                Some(admin.to_string()),
            ),
            (
                anonymous_post.stream(),
                4,
                Event::Post(PostEvent::PostDeleted {
                    post_id: anonymous_post,
                    deleted_by: None,
                    by_admin: false,
                }),
                me.clone(),
            ),
            (
                session.stream(),
                2,
                Event::Session(SessionEvent::SessionEnded {
                    session_id: session,
                    user_id: user,
                }),
                me.clone(),
            ),
            (
                model.stream(),
                1,
                Event::Model(ModelEvent::ModelRegistered {
                    name: model.clone(),
                    spec: spec.clone(),
                    enabled: true,
                    by: admin,
                }),
                Some(admin.to_string()),
            ),
            (
                model.stream(),
                2,
                Event::Model(ModelEvent::ModelUpdated {
                    name: model.clone(),
                    spec,
                    by: admin,
                }),
                Some(admin.to_string()),
            ),
            (
                model.stream(),
                3,
                Event::Model(ModelEvent::ModelDisabled {
                    name: model.clone(),
                    by: admin,
                }),
                Some(admin.to_string()),
            ),
            (
                model.stream(),
                4,
                Event::Model(ModelEvent::ModelEnabled {
                    name: model.clone(),
                    by: admin,
                }),
                Some(admin.to_string()),
            ),
            (
                worker.stream(),
                1,
                Event::Worker(WorkerEvent::WorkerRegistered {
                    worker_id: worker,
                    name: "gpu-1".into(),
                    models: vec![model.clone()],
                    token_hash: token_hash.into(),
                    by: admin,
                }),
                Some(admin.to_string()),
            ),
            (
                task.stream(),
                1,
                Event::Task(TaskEvent::TaskPublished {
                    task_id: task,
                    submitter_id: user,
                    model: model.clone(),
                    input: serde_json::json!({"prompt": "a cat"}),
                    webhook_url: Some(format!("https://hooks.campus.edu/t?key={token_hash}")),
                    priority: 0,
                    max_attempts: 3,
                }),
                me.clone(),
            ),
            (
                task.stream(),
                2,
                Event::Task(TaskEvent::TaskClaimed {
                    task_id: task,
                    worker_id: worker,
                    attempt: 1,
                    lease_until: at(),
                }),
                None,
            ),
            (
                task.stream(),
                3,
                Event::Task(TaskEvent::TaskLeaseExtended {
                    task_id: task,
                    worker_id: worker,
                    lease_until: at(),
                }),
                None,
            ),
            (
                task.stream(),
                4,
                Event::Task(TaskEvent::TaskAttemptFailed {
                    task_id: task,
                    worker_id: worker,
                    attempt: 1,
                    error: "oom".into(),
                    retryable: true,
                    lease_expired: false,
                }),
                None,
            ),
            (
                task.stream(),
                5,
                Event::Task(TaskEvent::TaskRequeued {
                    task_id: task,
                    attempts: 1,
                }),
                None,
            ),
            (
                task.stream(),
                6,
                Event::Task(TaskEvent::TaskSucceeded {
                    task_id: task,
                    worker_id: worker,
                    attempt: 2,
                    result: serde_json::json!("done"),
                }),
                None,
            ),
            (
                task.stream(),
                7,
                Event::Task(TaskEvent::WebhookAttempted {
                    task_id: task,
                    attempt: 1,
                    status: Some(500),
                    error: None,
                    delivered: false,
                }),
                None,
            ),
            (
                task.stream(),
                8,
                Event::Task(TaskEvent::WebhookAbandoned {
                    task_id: task,
                    attempts: 1,
                }),
                None,
            ),
            (
                other_task.stream(),
                1,
                Event::Task(TaskEvent::TaskPublished {
                    task_id: other_task,
                    submitter_id: user,
                    model: model.clone(),
                    input: serde_json::json!({}),
                    webhook_url: None,
                    priority: 0,
                    max_attempts: 3,
                }),
                me.clone(),
            ),
            (
                other_task.stream(),
                2,
                Event::Task(TaskEvent::TaskCancelled {
                    task_id: other_task,
                    by: user,
                }),
                me.clone(),
            ),
            (
                third_task.stream(),
                1,
                Event::Task(TaskEvent::TaskFailed {
                    task_id: third_task,
                    attempts: 3,
                    reason: "gave up".into(),
                }),
                None,
            ),
            (
                worker.stream(),
                2,
                Event::Worker(WorkerEvent::WorkerRevoked {
                    worker_id: worker,
                    by: admin,
                }),
                Some(admin.to_string()),
            ),
            (
                user.stream(),
                5,
                Event::User(UserEvent::NotificationsRead {
                    user_id: user,
                    up_to: Personal::new(mine.clone(), 4242),
                }),
                me.clone(),
            ),
            (
                user.stream(),
                6,
                Event::User(UserEvent::FavouriteSet {
                    user_id: user,
                    favourite: Personal::new(
                        mine.clone(),
                        crate::user::Favourite {
                            post_id: anonymous_post,
                            folder: Some("秘密".into()),
                        },
                    ),
                }),
                me.clone(),
            ),
            (
                user.stream(),
                7,
                Event::User(UserEvent::FavouriteRemoved {
                    user_id: user,
                    post_id: Personal::new(mine.clone(), anonymous_post),
                }),
                me.clone(),
            ),
            (
                user.stream(),
                8,
                Event::User(UserEvent::UserUnregistered { user_id: user }),
                me.clone(),
            ),
            (
                email_reservation.clone(),
                2,
                Event::Reservation(ReservationEvent::IdentityReleased {}),
                None,
            ),
            (
                username_reservation.clone(),
                2,
                Event::Reservation(ReservationEvent::IdentityReleased {}),
                None,
            ),
            // A reaction is recorded with no actor: the command runs unnamed.
            (
                PostId::new(Uuid::from_u128(203)).stream(),
                2,
                Event::Post(PostEvent::ReactionSet {
                    post_id: PostId::new(Uuid::from_u128(203)),
                    comment_id: None,
                    reactor: ItemHandle::new(REACTOR),
                    value: 1,
                    likes: 1,
                    dislikes: 0,
                }),
                None,
            ),
            (
                PostId::new(Uuid::from_u128(204)).stream(),
                2,
                Event::Post(PostEvent::PollOpened {
                    post_id: PostId::new(Uuid::from_u128(204)),
                    options: vec!["食堂".into(), "外卖".into()],
                }),
                None,
            ),
            (
                PostId::new(Uuid::from_u128(204)).stream(),
                3,
                Event::Post(PostEvent::PollVoted {
                    post_id: PostId::new(Uuid::from_u128(204)),
                    voter: ItemHandle::new(VOTER),
                    option: 1,
                    counts: vec![0, 1],
                }),
                None,
            ),
            (
                PostId::new(Uuid::from_u128(204)).stream(),
                4,
                Event::Post(PostEvent::FollowSet {
                    post_id: PostId::new(Uuid::from_u128(204)),
                    follower: Personal::new(KeyRef::handle(FOLLOWER), user),
                    following: true,
                    followers: 1,
                }),
                None,
            ),
            (
                user.stream(),
                9,
                Event::User(UserEvent::ModeratorGranted { user_id: admin }),
                Some(admin.to_string()),
            ),
            (
                user.stream(),
                10,
                Event::User(UserEvent::ModeratorRevoked { user_id: admin }),
                Some(admin.to_string()),
            ),
            (
                anonymous_post.stream(),
                20,
                Event::Post(PostEvent::ItemReported {
                    post_id: anonymous_post,
                    comment_id: None,
                    reporter: Personal::new(KeyRef::handle(handles[0].clone()), user),
                    reason: Reason::Abuse,
                    text: Some(Personal::new(
                        KeyRef::handle(handles[0].clone()),
                        "ZhangSan42 wrote this".to_owned(),
                    )),
                    reports: 1,
                    weight: 10,
                }),
                None,
            ),
            (
                anonymous_post.stream(),
                21,
                Event::Post(PostEvent::ItemFolded {
                    post_id: anonymous_post,
                    comment_id: None,
                    reason: Reason::Abuse,
                    note: None,
                    by: Role::Community,
                    author: Some(Personal::new(token.key_ref(), user)),
                }),
                None,
            ),
            (
                anonymous_post.stream(),
                22,
                Event::Post(PostEvent::ItemUnfolded {
                    post_id: anonymous_post,
                    comment_id: None,
                    reason: Reason::Other,
                    note: Some("a misunderstanding".into()),
                    by: Role::Moderator,
                    author: None,
                }),
                Some(admin.to_string()),
            ),
            (
                anonymous_post.stream(),
                23,
                Event::Post(PostEvent::ItemRemoved {
                    post_id: anonymous_post,
                    comment_id: None,
                    reason: Reason::Abuse,
                    note: None,
                    by: Role::Admin,
                    author: Some(Personal::new(token.key_ref(), user)),
                    sanction: true,
                }),
                Some(admin.to_string()),
            ),
            (
                anonymous_post.stream(),
                24,
                Event::Post(PostEvent::ItemRestored {
                    post_id: anonymous_post,
                    comment_id: None,
                    reason: Reason::Other,
                    note: None,
                    by: Role::Admin,
                    author: None,
                }),
                Some(admin.to_string()),
            ),
            (
                crate::sanction::ledger(),
                1,
                Event::Sanction(SanctionEvent::SanctionImposed {
                    sanction_id: SanctionId::new(Uuid::from_u128(900)),
                    item: Item {
                        post_id: anonymous_post,
                        comment_id: None,
                    },
                    reason: Reason::Abuse,
                    by: Role::Community,
                    subject: Personal::new(KeyRef::handle(handles[1].clone()), user),
                    terms: Personal::new(
                        KeyRef::handle(handles[1].clone()),
                        Terms {
                            step: 1,
                            starts_at: DateTime::UNIX_EPOCH,
                            ends_at: None,
                        },
                    ),
                }),
                None,
            ),
            (
                crate::sanction::ledger(),
                2,
                Event::Sanction(SanctionEvent::SanctionAppealed {
                    sanction_id: SanctionId::new(Uuid::from_u128(900)),
                    text: Some(Personal::new(
                        KeyRef::handle(handles[1].clone()),
                        "I am ZhangSan42, zhang.san@campus.edu".to_owned(),
                    )),
                }),
                None,
            ),
            (
                crate::sanction::ledger(),
                3,
                Event::Sanction(SanctionEvent::AppealDecided {
                    sanction_id: SanctionId::new(Uuid::from_u128(900)),
                    item: Item {
                        post_id: anonymous_post,
                        comment_id: None,
                    },
                    upheld: true,
                    by: Role::Moderator,
                }),
                Some(admin.to_string()),
            ),
            // The admin's session on their stream: recorded, seen on a day, evicted.
            (
                admin.stream(),
                1,
                Event::User(UserEvent::SessionOpened {
                    user_id: admin,
                    session_id: admin_session,
                    expires_at: at(),
                }),
                None,
            ),
            (
                admin_session.stream(),
                2,
                Event::Session(SessionEvent::SessionSeen {
                    session_id: admin_session,
                    day: at().date_naive(),
                }),
                None,
            ),
            (
                admin.stream(),
                2,
                Event::User(UserEvent::SessionClosed {
                    user_id: admin,
                    session_id: admin_session,
                    reason: crate::user::CloseReason::Evicted,
                }),
                None,
            ),
        ];
        let log = events
            .into_iter()
            .enumerate()
            .map(|(i, (stream, version, event, actor))| {
                envelope(i as u64 + 1, &stream, version, event, actor)
            })
            .collect();
        Sample {
            private: Private {
                user,
                admin,
                email: email.as_str().into(),
                username: username.as_str().into(),
                password_hash,
                token_hash: token_hash.into(),
                code_hash: code_hash.into(),
                email_digest: email_reservation.key().into(),
                username_digest: username_reservation.key().into(),
                author_token: token.as_str().into(),
                handles,
            },
            anonymous_post,
            named_post,
            comment,
            log,
        }
    }

    #[test]
    fn webhook_urls_keep_only_their_origin() {
        assert_eq!(
            origin("https://u:p@hooks.edu:8443/x/y?k=1#f"),
            "https://hooks.edu:8443"
        );
        assert_eq!(origin("http://h"), "http://h");
        assert_eq!(origin("garbage"), "");
    }

    /// Fails if the JSON of `exported` contains any private value, in any case or UUID spelling.
    fn assert_carries_nothing_private(exported: &Envelope, private: &Private) {
        let json = serde_json::to_string(exported).unwrap().to_lowercase();
        let mut forbidden = Vec::new();
        for id in [private.user, private.admin] {
            forbidden.push(id.as_uuid().hyphenated().to_string());
            forbidden.push(id.as_uuid().simple().to_string());
        }
        forbidden.extend([
            private.email.clone(),
            private.username.to_lowercase(),
            private.password_hash.to_lowercase(),
            private.token_hash.clone(),
            private.code_hash.clone(),
            private.email_digest.clone(),
            private.username_digest.clone(),
            private.author_token.clone(),
            String::from_utf8_lossy(SECRET_BYTES).to_lowercase(),
            DEVICE.to_lowercase(),
            "张三".into(),
        ]);
        forbidden.extend(private.handles.iter().cloned());
        for f in forbidden {
            assert!(!json.contains(&f), "{f} leaked into {json}");
        }
    }

    fn exported(key: &[u8], log: &[Envelope]) -> Vec<Envelope> {
        let p = Pseudonymiser::new(key);
        log.iter().map(|e| p.envelope(e).unwrap()).collect()
    }

    /// The value at a JSON pointer into an event's data (`/author/named/user_id`), which must be
    /// there.
    fn data_at<'a>(e: &'a Envelope, pointer: &str) -> &'a Value {
        e.data
            .pointer(pointer)
            .unwrap_or_else(|| panic!("no {pointer} in {}", e.data))
    }

    fn data_id(e: &Envelope, pointer: &str) -> Uuid {
        data_at(e, pointer)
            .as_str()
            .unwrap_or_else(|| panic!("{pointer} is not a string in {}", e.data))
            .parse()
            .unwrap()
    }

    fn of_type<'a>(log: &'a [Envelope], event_type: &str) -> &'a Envelope {
        log.iter()
            .find(|e| e.event_type == event_type)
            .unwrap_or_else(|| panic!("no {event_type}"))
    }

    /// Every personal value in `data` (open or sealed): its tag and its inner object.
    fn personal_values(data: &Value) -> Vec<(String, Value)> {
        let mut found = Vec::new();
        visit_mut::<()>(&mut data.clone(), &mut |tag, v| {
            found.push((tag.to_owned(), v[tag].clone()));
            Ok(())
        })
        .unwrap();
        found
    }

    /// The label Zhang San gave his device at login.
    const DEVICE: &str = "张三的手机 (ZhangSan42)";

    const FOLLOWER: &str = "f0d1c2b3a4958677e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3";

    const VOTER: &str = "w7a1c9e3b5d7f9a1c3e5b7d9f1a3c5e7";

    #[test]
    fn a_voters_handle_is_hashed_again_and_the_counts_stay() {
        let sample = sample();
        let raw = of_type(&sample.log, "PollVoted");
        let exported = Pseudonymiser::new(KEY).envelope(raw).unwrap();
        let voter = data_at(&exported, "/voter").as_str().unwrap().to_owned();
        assert_ne!(voter, VOTER);
        assert_eq!(data_at(&exported, "/counts"), &serde_json::json!([0, 1]));
        let opened = Pseudonymiser::new(KEY)
            .envelope(of_type(&sample.log, "PollOpened"))
            .unwrap();
        assert_eq!(data_at(&opened, "/options/0"), "食堂");
    }

    const REACTOR: &str = "v5d1f1a8c0e4b7f2a9c3d6e8f0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c";

    #[test]
    fn a_reactors_handle_is_hashed_again_and_names_nobody() {
        let sample = sample();
        let raw = of_type(&sample.log, "ReactionSet");
        let exported = Pseudonymiser::new(KEY).envelope(raw).unwrap();
        let reactor = data_at(&exported, "/reactor").as_str().unwrap().to_owned();
        assert_ne!(reactor, REACTOR);
        assert_eq!(reactor.len(), 64);
        assert_eq!(exported.metadata.actor, None);
        assert_eq!(data_at(&exported, "/likes"), 1);
        // One handle keeps one stand-in under one key.
        let again = Pseudonymiser::new(KEY).envelope(raw).unwrap();
        assert_eq!(data_at(&again, "/reactor"), reactor.as_str());
    }

    /// A process hands its own appends to its projectors with the typed event they were made
    /// from ([`crate::Typed`]); a projector reading the log decodes them. Both must be one
    /// event, for every event type: else a rebuild would differ from the live read models.
    #[test]
    fn the_event_an_append_carries_is_what_decoding_its_data_gives() {
        let log = sample().log;
        for env in &log {
            let event = Event::decode(env).unwrap();
            let (id, at, meta) = (uuid::Uuid::now_v7(), Utc::now(), Metadata::default());
            let new = match &event {
                Event::User(e) => NewEvent::from_domain(e, id, at, meta),
                Event::Session(e) => NewEvent::from_domain(e, id, at, meta),
                Event::Reservation(e) => NewEvent::from_domain(e, id, at, meta),
                Event::Verification(e) => NewEvent::from_domain(e, id, at, meta),
                Event::Post(e) => NewEvent::from_domain(e, id, at, meta),
                Event::Model(e) => NewEvent::from_domain(e, id, at, meta),
                Event::Task(e) => NewEvent::from_domain(e, id, at, meta),
                Event::Worker(e) => NewEvent::from_domain(e, id, at, meta),
                Event::Sanction(e) => NewEvent::from_domain(e, id, at, meta),
            };
            // As the store gives it back: its text parsed again.
            let stored: Value = serde_json::from_str(&new.data.to_string()).unwrap();
            let read = Event::decode(&Envelope {
                event_type: new.event_type.clone(),
                schema: new.schema,
                data: stored,
                ..env.clone()
            })
            .unwrap();
            let carried = new.typed.clone().take();
            assert_eq!(carried.as_ref(), Some(&read), "{}", env.event_type);
            assert_eq!(carried, Some(event), "{}", env.event_type);
        }
        assert!(log.len() >= Event::types().count());
    }

    #[test]
    fn the_sample_covers_every_event_type() {
        let covered: BTreeSet<String> = sample().log.into_iter().map(|e| e.event_type).collect();
        let all: BTreeSet<String> = Event::types().map(str::to_owned).collect();
        assert_eq!(covered, all, "add the new event type to the sample");
        assert!(covered.contains("UserUnregistered") && covered.contains("IdentityReleased"));
    }

    #[test]
    fn no_exported_event_carries_a_user_id_address_name_or_secret() {
        let sample = sample();
        // The check itself must see the values in the raw log (task progress events carry
        // task and worker ids only, a reaction an opaque handle).
        let impersonal = [
            "ReactionSet",
            "PollOpened",
            "PollVoted",
            "TaskClaimed",
            "TaskLeaseExtended",
            "TaskAttemptFailed",
            "TaskRequeued",
            "TaskSucceeded",
            "TaskFailed",
            "WebhookAttempted",
            "WebhookAbandoned",
            "ItemReported",
            "SanctionAppealed",
            "SessionSeen",
        ];
        for raw in sample
            .log
            .iter()
            .filter(|e| !impersonal.contains(&e.event_type.as_str()))
        {
            let json = serde_json::to_string(raw).unwrap();
            assert!(
                json.contains(&sample.private.user.to_string())
                    || json.contains(&sample.private.admin.to_string())
                    || json.contains(&sample.private.code_hash)
                    || json.contains(&sample.private.email_digest)
                    || json.contains(&sample.private.username_digest),
                "the sample event carries nothing private: {json}"
            );
        }
        for (raw, out) in sample.log.iter().zip(exported(KEY, &sample.log)) {
            assert_carries_nothing_private(&out, &sample.private);
            assert_eq!(
                (out.position, out.event_id, out.version, &out.event_type),
                (raw.position, raw.event_id, raw.version, &raw.event_type)
            );
            assert_eq!(out.occurred_at, raw.occurred_at);
            assert_eq!(out.metadata.correlation_id, raw.metadata.correlation_id);
            let decoded = Event::decode(&out).expect("the export decodes");
            assert_eq!(decoded.encode().1, out.schema);
            // Personal values stay open markers, which the export never seals.
            assert_eq!(
                personal_values(&out.data).len(),
                personal_values(&raw.data).len()
            );
            assert!(!crate::personal::has_sealed(&out.data));
        }
    }

    #[test]
    fn secrets_are_shredded_or_emptied_and_stand_ins_are_valid_values() {
        let sample = sample();
        let out = exported(KEY, &sample.log);
        let registered = of_type(&out, "UserRegistered");
        assert_eq!(
            data_at(registered, "/password_hash/$personal").get("value"),
            None
        );
        let email = data_at(registered, "/email/$personal/value")
            .as_str()
            .unwrap();
        assert!(email.ends_with("@pseudonymised.invalid"), "{email}");
        assert!(Email::parse(email).is_ok());
        let username = data_at(registered, "/username/$personal/value");
        assert!(Username::parse(username.as_str().unwrap()).is_ok());
        assert_eq!(of_type(&out, "SessionStarted").data["token_hash"], "");
        assert_eq!(
            of_type(&out, "VerificationCodeIssued").data["code_hash"],
            ""
        );
    }

    #[test]
    fn a_device_label_exports_shredded_under_the_pseudonymous_key() {
        let sample = sample();
        let raw = of_type(&sample.log, "SessionStarted");
        assert_eq!(data_at(raw, "/device/$personal/value"), DEVICE);
        let out = Pseudonymiser::new(KEY).envelope(raw).unwrap();
        let device = data_at(&out, "/device/$personal");
        assert_eq!(device.get("value"), None);
        let named = Pseudonymiser::new(KEY).user(&sample.private.user.to_string());
        assert_eq!(device["key"], named.to_string());
    }

    #[test]
    fn the_password_hash_never_exports_a_value() {
        let sample = sample();
        let p = Pseudonymiser::new(KEY);
        let raw = of_type(&sample.log, "UserRegistered");
        // The log has it, open (as the sealing store hands it to a reader with the key store).
        assert_eq!(
            data_at(raw, "/password_hash/$personal/value"),
            sample.private.password_hash.as_str()
        );
        let out = p.envelope(raw).unwrap();
        let hash = data_at(&out, "/password_hash/$personal");
        assert_eq!(hash.get("value"), None, "{hash}");
        // Still a personal value, under the user's pseudonymous key, as the other fields are.
        let named = p.user(&sample.private.user.to_string());
        assert_eq!(data_id(&out, "/password_hash/$personal/key"), named);
        assert!(data_at(&out, "/email/$personal/value").is_string());
        let Ok(Event::User(UserEvent::UserRegistered {
            password_hash,
            email,
            ..
        })) = Event::decode(&out)
        else {
            panic!("{out:?}")
        };
        assert_eq!(password_hash.get(), None);
        assert_eq!(password_hash.key().as_user(), Some(UserId::new(named)));
        assert!(email.get().is_some());
        let json = serde_json::to_string(&out).unwrap();
        assert!(!json.contains("argon2"), "{json}");
    }

    #[test]
    fn shredded_personal_values_export_shredded() {
        let user = UserId::new(Uuid::from_u128(0x0190_a6d1_0000_7000_8000_0000_0000_0003));
        let post = PostId::new(Uuid::from_u128(600));
        let token =
            AuthorToken::new("t8690c3af015e6294ff67fcfd334f181a4704b579e9b2bce79ec9716ac62da2d6");
        let handle =
            KeyRef::handle("r97fb5f8538b89f6c1accfd19836b65a73b61fbc2e0cbf84bb858a0fffa3f1592");
        let mine = KeyRef::user(user);
        let email = Email::parse("li.si@campus.edu").unwrap();
        let events = [
            (
                user.stream(),
                Event::User(UserEvent::UserRegistered {
                    user_id: user,
                    email: Personal::shredded(mine.clone()),
                    username: Personal::shredded(mine.clone()),
                    password_hash: Personal::shredded(mine.clone()),
                }),
            ),
            (
                post.stream(),
                Event::Post(PostEvent::PostPublished {
                    post_id: post,
                    author: Author::Anonymous {
                        token: token.clone(),
                        pseudonym: "洞主".into(),
                        user_id: Personal::shredded(token.key_ref()),
                    },
                    anonymous: true,
                    title: None,
                    body: "b".into(),
                    tags: vec![],
                }),
            ),
            (
                post.stream(),
                Event::Post(PostEvent::CommentAdded {
                    post_id: post,
                    comment_id: CommentId::new(Uuid::from_u128(601)),
                    author: Author::Named {
                        user_id: user,
                        username: Personal::shredded(mine.clone()),
                    },
                    anonymous: false,
                    is_host: false,
                    body: "b".into(),
                    reply_to: None,
                    new_commenter: true,
                    addressee: None,
                }),
            ),
            (
                email_stream(SECRET_BYTES, &email),
                Event::Reservation(ReservationEvent::IdentityReserved {
                    owner: Personal::shredded(handle.clone()),
                }),
            ),
        ];
        let p = Pseudonymiser::new(KEY);
        let raw_keys = [mine.as_str(), token.as_str(), handle.as_str()];
        let mut raw_log: Vec<Envelope> = events
            .into_iter()
            .enumerate()
            .map(|(i, (stream, event))| envelope(i as u64 + 1, &stream, 1, event, None))
            .collect();
        // A log read without the key store: every value sealed, none known.
        let mut sealed = envelope(
            5,
            &user.stream(),
            1,
            Event::User(UserEvent::UserRegistered {
                user_id: user,
                email: Personal::new(mine.clone(), email.as_str().into()),
                username: Personal::new(mine.clone(), "LiSi".into()),
                password_hash: Personal::new(mine.clone(), "$argon2id$v=19$lisi".into()),
            }),
            None,
        );
        visit_mut::<()>(&mut sealed.data, &mut |tag, v| {
            let key = v[tag]["key"].clone();
            *v = serde_json::json!({ SEALED: { "key": key, "ct": "q2lwaGVydGV4dA" } });
            Ok(())
        })
        .unwrap();
        raw_log.push(sealed);
        for raw in &raw_log {
            let out = p.envelope(raw).unwrap();
            let values = personal_values(&out.data);
            assert!(!values.is_empty(), "{}", out.data);
            assert_eq!(values.len(), personal_values(&raw.data).len());
            for (tag, inner) in values {
                assert_eq!(tag, OPEN);
                assert_eq!(inner.get("value"), None, "{inner}");
                let key = inner["key"].as_str().unwrap();
                assert!(!key.is_empty());
                assert!(!raw_keys.contains(&key), "{key} exported as is");
            }
            let json = serde_json::to_string(&out).unwrap().to_lowercase();
            for private in [
                user.to_string(),
                "li.si".into(),
                "lisi".into(),
                "q2lwaGVydGV4dA".to_lowercase(),
            ] {
                assert!(!json.contains(&private), "{private} leaked into {json}");
            }
            assert!(Event::decode(&out).is_ok());
        }
        // A user's key keeps the user's pseudonymous id, so that it joins their other values.
        let out = p.envelope(&raw_log[0]).unwrap();
        assert_eq!(
            data_id(&out, "/email/$personal/key"),
            p.user(&user.to_string())
        );
        // Values sealed in the log (read without the key store) export as the shredded ones.
        assert_eq!(out.data, p.envelope(&raw_log[4]).unwrap().data);
    }

    #[test]
    fn anonymous_author_tokens_are_not_exported_as_is() {
        let sample = sample();
        let raw_token = sample.private.author_token.as_str();
        let a = exported(KEY, &sample.log);
        let b = exported(OTHER_KEY, &sample.log);
        let (post, comment) = (&a[8], &a[9]);
        let token = data_at(post, "/author/anonymous/token").as_str().unwrap();
        // The log has the token, and the export replaces it with a keyed hash.
        assert_eq!(
            data_at(&sample.log[8], "/author/anonymous/token"),
            raw_token
        );
        assert_ne!(token, raw_token);
        assert!(!token.contains(raw_token.trim_start_matches('t')));
        for e in &a {
            let json = serde_json::to_string(e).unwrap();
            assert!(!json.contains(raw_token), "{json}");
        }
        // One author under one post keeps one token, but not across export keys.
        assert_eq!(data_at(comment, "/author/anonymous/token"), token);
        assert_ne!(data_at(&b[8], "/author/anonymous/token"), token);
        // Another author under the same post keeps another token.
        let other =
            AuthorToken::new("t0de90da5aa026ef0c704b7a7c6eed5981af4f7c5c95539afc605a621f39e1c13");
        let reply = envelope(
            99,
            &sample.anonymous_post.stream(),
            5,
            Event::Post(PostEvent::CommentAdded {
                post_id: sample.anonymous_post,
                comment_id: CommentId::new(Uuid::from_u128(302)),
                author: Author::Anonymous {
                    token: other.clone(),
                    pseudonym: "Alice".into(),
                    user_id: Personal::new(other.key_ref(), sample.private.admin),
                },
                anonymous: true,
                is_host: false,
                body: "reply".into(),
                reply_to: None,
                new_commenter: true,
                addressee: None,
            }),
            None,
        );
        let reply = Pseudonymiser::new(KEY).envelope(&reply).unwrap();
        let other_token = data_at(&reply, "/author/anonymous/token").as_str().unwrap();
        assert_ne!(other_token, token);
        assert_ne!(other_token, other.as_str());
    }

    #[test]
    fn ids_are_stable_for_one_key_and_differ_across_keys() {
        let sample = sample();
        let a = exported(KEY, &sample.log);
        assert_eq!(a, exported(KEY, &sample.log));
        let b = exported(OTHER_KEY, &sample.log);
        let p = Pseudonymiser::new(KEY);
        let user = sample.private.user.to_string();
        assert_eq!(data_id(&a[5], "/user_id"), p.user(&user));
        assert_eq!(p.user(&user).get_version_num(), 8);
        assert_ne!(data_id(&a[5], "/user_id"), data_id(&b[5], "/user_id"));
        assert_ne!(a[5].stream, b[5].stream);
        let email = "/email/$personal/value";
        assert_ne!(data_at(&a[5], email), data_at(&b[5], email));
        let owner = "/owner/$personal/key";
        assert_ne!(data_at(&a[3], owner), data_at(&b[3], owner));
        // Any spelling of a UUID is the same user.
        let simple = sample.private.user.as_uuid().simple().to_string();
        assert_eq!(p.user(&simple), p.user(&user));
    }

    #[test]
    fn named_activity_joins_and_anonymous_activity_stays_apart() {
        let sample = sample();
        let p = Pseudonymiser::new(KEY);
        let user = sample.private.user.to_string();
        let named = p.user(&user);
        let anonymous = p.anonymous(sample.anonymous_post, &user);
        let out = exported(KEY, &sample.log);
        let actor = |e: &Envelope| e.metadata.actor.clone().unwrap();

        // Named: the user stream and the keys of its personal values, reservations, sessions,
        // the named post and comment, the unregistration.
        assert_eq!(out[5].stream.as_str(), format!("user-{named}"));
        for field in ["email", "username", "password_hash"] {
            assert_eq!(data_id(&out[5], &format!("/{field}/$personal/key")), named);
        }
        for e in [&out[3], &out[4]] {
            assert_eq!(data_id(e, "/owner/$personal/value"), named);
        }
        assert_eq!(data_id(&out[7], "/user_id"), named);
        assert_eq!(data_id(&out[15], "/user_id"), named);
        assert_eq!(actor(&out[15]), named.to_string());
        for e in [&out[11], &out[12]] {
            assert_eq!(data_id(e, "/author/named/user_id"), named);
            assert_eq!(data_id(e, "/author/named/username/$personal/key"), named);
            assert_eq!(
                data_at(e, "/author/named/username/$personal/value"),
                data_at(&out[5], "/username/$personal/value")
            );
        }
        assert_eq!(actor(&out[11]), named.to_string());
        let unregistered = of_type(&out, "UserUnregistered");
        assert_eq!(data_id(unregistered, "/user_id"), named);
        assert_eq!(unregistered.stream, out[5].stream);
        assert_eq!(actor(unregistered), named.to_string());
        // An admin's delete names the admin.
        let admin = p.user(&sample.private.admin.to_string());
        assert_eq!(data_id(&out[13], "/deleted_by"), admin);
        assert_eq!(actor(&out[13]), admin.to_string());
        // An actor that is not a user id is hashed all the same.
        assert_eq!(actor(&out[6]), p.user("operator").to_string());

        // Anonymous: the post and the comment share one id, one token and one key, which are
        // neither the named id nor the ones under another post.
        for e in [&out[8], &out[9]] {
            assert_eq!(
                data_id(e, "/author/anonymous/user_id/$personal/value"),
                anonymous
            );
            assert_eq!(actor(e), anonymous.to_string());
            assert_eq!(data_at(e, "/author/anonymous/pseudonym"), "洞主");
            assert_eq!(e.data["author"].as_object().unwrap().len(), 1);
        }
        for pointer in [
            "/author/anonymous/token",
            "/author/anonymous/user_id/$personal/key",
        ] {
            assert_eq!(data_at(&out[8], pointer), data_at(&out[9], pointer));
        }
        // The author's own deletes name nobody, and their actors get an id each, which joins
        // nothing: `by_admin: false` says the author deleted the item, so a shared id would tie
        // named and anonymous items.
        for (e, item) in [
            (&out[10], sample.comment.as_uuid()),
            (&out[14], sample.anonymous_post.as_uuid()),
        ] {
            assert!(data_at(e, "/deleted_by").is_null(), "{}", e.data);
            assert_eq!(actor(e), p.own_deletion(item, &user).to_string());
        }
        let (comment_deleted, post_deleted) = (actor(&out[10]), actor(&out[14]));
        for id in [&comment_deleted, &post_deleted] {
            assert!(![anonymous.to_string(), named.to_string()].contains(id));
        }
        assert_ne!(comment_deleted, post_deleted);
        // A named comment marked as the host's by an old log loses the mark.
        assert_eq!(out[12].data["is_host"], false);
        assert_eq!(out[9].data["is_host"], true);
        assert_ne!(anonymous, named);
        assert_ne!(anonymous, p.anonymous(sample.named_post, &user));
        let json = serde_json::to_string(&out[11..13]).unwrap();
        assert!(!json.contains(&anonymous.to_string()));
        for e in [&out[8], &out[9], &out[10], &out[14]] {
            let json = serde_json::to_string(e).unwrap();
            assert!(!json.contains(&named.to_string()), "{json}");
        }
    }

    #[test]
    fn streams_named_by_digests_are_rehashed_and_others_keep_their_ids() {
        let sample = sample();
        let out = exported(KEY, &sample.log);
        let (verification, email, username) = (&out[0].stream, &out[3].stream, &out[4].stream);
        assert_eq!(verification.kind(), "verification");
        assert_eq!(email.kind(), "email");
        assert_eq!(username.kind(), "username");
        // The log's streams are the keyed ones the write side uses.
        let address = Email::parse(&sample.private.email).unwrap();
        assert_eq!(sample.log[3].stream, email_stream(SECRET_BYTES, &address));
        assert_eq!(sample.log[0].stream.key(), sample.private.email_digest);
        assert_eq!(verification.key(), email.key(), "one address, one key");
        assert_ne!(email.key(), sample.private.email_digest);
        assert_ne!(username.key(), sample.private.username_digest);
        assert_ne!(email.key(), username.key());
        assert_eq!(out[0].stream, out[2].stream);
        // A released name is the same stream as its reservation.
        let released: Vec<&Envelope> = out
            .iter()
            .filter(|e| e.event_type == "IdentityReleased")
            .collect();
        assert_eq!(released.len(), 2);
        assert_eq!(released[0].stream, *email);
        assert_eq!(released[1].stream, *username);
        for i in [7, 8, 11, 15] {
            assert_eq!(out[i].stream, sample.log[i].stream);
        }
    }

    /// A log written before crypto-shredding (schema 1: names in clear, unkeyed reservation
    /// streams) exports like a new one.
    #[test]
    fn schema_1_events_export_like_current_ones() {
        let user = UserId::new(Uuid::from_u128(0x0190_a6d1_0000_7000_8000_0000_0000_0004));
        let post = PostId::new(Uuid::from_u128(700));
        let comment = Uuid::from_u128(701);
        let reservation = legacy_stream("wang.wu@campus.edu");
        let me = Some(user.to_string());
        let old = [
            (
                user.stream(),
                "UserRegistered",
                serde_json::json!({"user_id": user, "email": "wang.wu@campus.edu",
                    "username": "WangWu", "password_hash": "$argon2id$v=19$old"}),
            ),
            (
                reservation.clone(),
                "IdentityReserved",
                serde_json::json!({"owner": user}),
            ),
            (
                post.stream(),
                "PostPublished",
                serde_json::json!({"post_id": post, "author_id": user, "author_name": "洞主",
                    "anonymous": true, "title": null, "body": "b", "tags": []}),
            ),
            (
                post.stream(),
                "CommentAdded",
                serde_json::json!({"post_id": post, "comment_id": comment, "author_id": user,
                    "author_name": "洞主", "anonymous": true, "is_host": true, "body": "c",
                    "reply_to": null}),
            ),
            (
                post.stream(),
                "CommentDeleted",
                serde_json::json!({"post_id": post, "comment_id": comment, "deleted_by": user,
                    "by_admin": false}),
            ),
        ];
        let p = Pseudonymiser::new(KEY);
        let named = p.user(&user.to_string()).to_string();
        let anonymous = p.anonymous(post, &user.to_string());
        let out: Vec<Envelope> = old
            .into_iter()
            .enumerate()
            .map(|(i, (stream, event_type, data))| {
                let raw = raw_envelope(i as u64 + 1, &stream, 1, event_type, 1, data, me.clone());
                p.envelope(&raw).unwrap()
            })
            .collect();
        for e in &out {
            let json = serde_json::to_string(e).unwrap().to_lowercase();
            for private in [
                user.to_string(),
                user.as_uuid().simple().to_string(),
                "wang.wu".into(),
                "wangwu".into(),
                "argon2".into(),
                reservation.key().into(),
            ] {
                assert!(!json.contains(&private), "{private} leaked into {json}");
            }
            assert_eq!(e.schema, Event::decode(e).unwrap().encode().1);
        }
        assert_eq!(
            data_at(&out[0], "/password_hash/$personal").get("value"),
            None
        );
        assert_eq!(out[1].stream.kind(), "email");
        assert_eq!(data_at(&out[1], "/owner/$personal/value"), &named);
        // The anonymous author, whose id the old log had in clear, gets the post's anonymous id,
        // a hashed token and nothing that joins their named activity.
        for e in &out[2..] {
            let json = serde_json::to_string(e).unwrap();
            assert!(!json.contains(&named), "{json}");
        }
        for e in &out[2..4] {
            assert_eq!(
                data_id(e, "/author/anonymous/user_id/$personal/value"),
                anonymous
            );
        }
        assert_eq!(
            data_at(&out[2], "/author/anonymous/token"),
            data_at(&out[3], "/author/anonymous/token")
        );
        assert!(data_at(&out[4], "/deleted_by").is_null());
    }

    #[test]
    fn an_unknown_event_type_is_an_error() {
        let mut e = sample().log[0].clone();
        e.event_type = "SomethingNew".into();
        let err = Pseudonymiser::new(KEY).envelope(&e).unwrap_err();
        assert_eq!(err.event_type, "SomethingNew");
    }

    #[test]
    fn the_default_key_is_derived_from_the_server_secret() {
        assert_eq!(derive_key(b"secret"), derive_key(b"secret"));
        assert_ne!(derive_key(b"secret"), derive_key(b"other"));
        assert_eq!(derive_key(b"secret").len(), 32);
        assert_ne!(derive_key(b"secret"), b"secret".to_vec());
    }

    proptest! {
        #[test]
        fn authors_never_leak(
            user in any::<u128>(),
            post in any::<u128>(),
            token in any::<u128>(),
            anonymous in any::<bool>(),
            legacy in any::<bool>(),
            by_admin in any::<bool>(),
            password_hash in "\\$argon2id\\$[A-Za-z0-9+/]{16,43}",
            key in proptest::collection::vec(any::<u8>(), 16..64),
        ) {
            // Ids that the sample's fixed comment and event ids would contain.
            prop_assume!(user > 1_000 && post != user);
            let user = UserId::new(Uuid::from_u128(user));
            let post = PostId::new(Uuid::from_u128(post));
            let actor = Some(user.to_string());
            // A schema 1 item upcasts to a legacy token, which carries the author's id, and to
            // a value under the author's own key.
            let (token, key_ref) = if legacy {
                (AuthorToken::legacy(user), KeyRef::user(user))
            } else {
                let token = AuthorToken::new(format!("t{token:032x}"));
                let key_ref = token.key_ref();
                (token, key_ref)
            };
            let author = || if anonymous {
                Author::Anonymous {
                    token: token.clone(),
                    pseudonym: "someone".into(),
                    user_id: Personal::new(key_ref.clone(), user),
                }
            } else {
                Author::Named {
                    user_id: user,
                    username: Personal::new(KeyRef::user(user), "someone".into()),
                }
            };
            let mine = KeyRef::user(user);
            let events = [
                Event::Post(PostEvent::PostPublished {
                    post_id: post,
                    author: author(),
                    anonymous,
                    title: None,
                    body: "b".into(),
                    tags: vec![],
                }),
                Event::Post(PostEvent::CommentAdded {
                    post_id: post,
                    comment_id: CommentId::new(Uuid::from_u128(1)),
                    author: author(),
                    anonymous,
                    is_host: false,
                    body: "b".into(),
                    reply_to: None,
                    new_commenter: true, addressee: None, }),
                Event::Post(PostEvent::CommentDeleted {
                    post_id: post,
                    comment_id: CommentId::new(Uuid::from_u128(1)),
                    deleted_by: by_admin.then_some(user),
                    by_admin,
                }),
                Event::User(UserEvent::AdminGranted { user_id: user }),
                Event::User(UserEvent::UserRegistered {
                    user_id: user,
                    email: Personal::new(mine.clone(), "someone@campus.edu".into()),
                    username: Personal::new(mine.clone(), "someone".into()),
                    password_hash: Personal::new(mine, password_hash.clone()),
                }),
            ];
            let p = Pseudonymiser::new(&key);
            let named = p.user(&user.to_string()).to_string();
            for (i, event) in events.into_iter().enumerate() {
                let stream = match &event {
                    Event::User(_) => user.stream(),
                    _ => post.stream(),
                };
                // Anonymous items and own deletes must not join the author's named activity.
                let apart = match &event {
                    Event::Post(PostEvent::CommentDeleted { .. }) => !by_admin,
                    Event::Post(_) => anonymous,
                    _ => false,
                };
                let raw = envelope(i as u64 + 1, &stream, 1, event, actor.clone());
                let out = p.envelope(&raw).unwrap();
                let json = serde_json::to_string(&out).unwrap();
                prop_assert!(!json.contains(&user.to_string()), "{}", json);
                prop_assert!(!json.contains(&user.as_uuid().simple().to_string()), "{}", json);
                prop_assert!(!json.contains(token.as_str()), "{}", json);
                prop_assert!(!json.contains(&password_hash), "{}", json);
                if apart {
                    prop_assert!(!json.contains(&named), "{}", json);
                }
                prop_assert!(Event::decode(&out).is_ok());
            }
        }
    }
}
