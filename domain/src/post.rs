//! The Post aggregate: a post and its comments, and the pseudonym rule under it.
//!
//! The aggregate never learns who wrote anonymous content. Each command carries the acting
//! user's [`AuthorToken`] for this post (a keyed hash of the post and the user under the user's
//! own data key, computed by the write side); anonymous items record only that token in clear,
//! with the author's id sealed beside it. Equal tokens under one post are one author, which is
//! all the pseudonym rule and the deletion rights need.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::aggregate::{Aggregate, DecodeError, DomainEvent};
use crate::ids::{CommentId, PostId, UserId};
use crate::moderation::{Act, Item, Reason, Role, Thresholds};
use crate::personal::{AuthorToken, ItemHandle, KeyRef, OPEN, Personal};
use crate::pseudonym::PseudonymScheme;
use crate::values::{
    Actor, CommentBody, ModerationNote, PollOptions, PostBody, PostTitle, ReportText, Tag,
};

/// What can be asked of a post. `token` is the acting user's author token for this post.
#[derive(Debug, Clone)]
pub enum PostCommand {
    Publish {
        post_id: PostId,
        author: Actor,
        token: AuthorToken,
        title: Option<PostTitle>,
        body: PostBody,
        tags: Vec<Tag>,
        anonymous: bool,
        /// A poll opened with the post, if any.
        poll: Option<PollOptions>,
    },
    AddComment {
        comment_id: CommentId,
        author: Actor,
        token: AuthorToken,
        body: CommentBody,
        anonymous: bool,
        reply_to: Option<CommentId>,
    },
    DeleteComment {
        comment_id: CommentId,
        actor: Actor,
        token: AuthorToken,
    },
    Delete {
        actor: Actor,
        token: AuthorToken,
    },
    /// Casts the voter's one vote in the post's poll: `option` is an index into its options.
    /// A vote is final.
    Vote {
        voter: ItemHandle,
        option: usize,
    },
    /// Sets the reactor's reaction to the post (`comment_id` `None`) or to one of its live
    /// comments. Setting the value it already has changes nothing and records nothing.
    React {
        reactor: ItemHandle,
        comment_id: Option<CommentId>,
        value: Reaction,
    },
    /// Follows (or stops following) the post explicitly. `follower` is the user's id sealed
    /// under their follow handle for this post (see [`PostEvent::FollowSet`]). Following is
    /// also automatic on posting and on a first comment; the read side derives that from the
    /// comments themselves, and an explicit choice overrides it.
    Follow {
        follower: Personal<UserId>,
        following: bool,
    },
    /// Reports the post (`comment_id` `None`) or one of its live comments. `reporter` is the
    /// reporter's id sealed under their report handle for this item alone (so one report per
    /// user and item, and two reports of one user cannot be linked); the text is sealed under
    /// it too. Reporting again records
    /// nothing. Enough weight, or enough reports with one reason, fold or remove the item (see
    /// [`Thresholds`]).
    Report {
        reporter: Personal<UserId>,
        comment_id: Option<CommentId>,
        reason: Reason,
        text: Option<ReportText>,
    },
    /// A moderator's (or admin's) act on the post or one of its comments, by content id. The
    /// same act again records nothing. Refused on the actor's own content, which `token` (their
    /// author token for this post) tells without naming anyone. A removal sanctions the
    /// item's author when `sanction` is set.
    Moderate {
        comment_id: Option<CommentId>,
        act: Act,
        reason: Reason,
        note: Option<ModerationNote>,
        by: Role,
        actor: UserId,
        token: AuthorToken,
        sanction: bool,
    },
}

/// A reaction's value: set, not toggled (OpenTreeHole's rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reaction {
    Dislike,
    #[default]
    None,
    Like,
}

impl Reaction {
    pub fn value(self) -> i8 {
        match self {
            Reaction::Dislike => -1,
            Reaction::None => 0,
            Reaction::Like => 1,
        }
    }

    /// `-1`, `0` or `1`; anything else is `None`.
    pub fn from_value(value: i64) -> Option<Self> {
        match value {
            -1 => Some(Reaction::Dislike),
            0 => Some(Reaction::None),
            1 => Some(Reaction::Like),
            _ => None,
        }
    }
}

/// The reactions to one item, as counts: the only form in which anyone sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Tally {
    pub likes: u64,
    pub dislikes: u64,
}

impl Tally {
    fn without(mut self, r: Reaction) -> Self {
        match r {
            Reaction::Like => self.likes = self.likes.saturating_sub(1),
            Reaction::Dislike => self.dislikes = self.dislikes.saturating_sub(1),
            Reaction::None => {}
        }
        self
    }

    fn with(mut self, r: Reaction) -> Self {
        match r {
            Reaction::Like => self.likes += 1,
            Reaction::Dislike => self.dislikes += 1,
            Reaction::None => {}
        }
        self
    }
}

/// Who wrote a post or comment, as the log records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Author {
    /// Named content: the author's id in clear (the content shows their name anyway), the
    /// username sealed with their key, so that it is gone when they leave.
    Named {
        user_id: UserId,
        username: Personal<String>,
    },
    /// Anonymous content: the pseudonym and the author token in clear, the author's id sealed
    /// under the token, so that nobody without the key store can tell who wrote it or link two
    /// anonymous items across posts.
    Anonymous {
        token: AuthorToken,
        pseudonym: String,
        user_id: Personal<UserId>,
    },
}

impl Author {
    /// A named author, the username sealed under their own key.
    pub fn named(user_id: UserId, username: impl Into<String>) -> Self {
        Author::Named {
            user_id,
            username: Personal::new(KeyRef::user(user_id), username.into()),
        }
    }

    /// An anonymous author known by `token` under one post, shown as `pseudonym`.
    pub fn anonymous(token: AuthorToken, pseudonym: impl Into<String>, user_id: UserId) -> Self {
        Author::Anonymous {
            user_id: Personal::new(token.key_ref(), user_id),
            token,
            pseudonym: pseudonym.into(),
        }
    }

    /// The name the content shows: the pseudonym, the username, or `None` if the named author's
    /// key was destroyed (a deleted user).
    pub fn display_name(&self) -> Option<&str> {
        match self {
            Author::Named { username, .. } => username.get().map(String::as_str),
            Author::Anonymous { pseudonym, .. } => Some(pseudonym),
        }
    }

    /// The author's id, if it can be read.
    pub fn user_id(&self) -> Option<UserId> {
        match self {
            Author::Named { user_id, .. } => Some(*user_id),
            Author::Anonymous { user_id, .. } => user_id.get().copied(),
        }
    }

    pub fn is_anonymous(&self) -> bool {
        matches!(self, Author::Anonymous { .. })
    }

    /// The author's id as a personal value under the key reference this author's item names:
    /// the user's own for named content, the author token for anonymous content.
    pub fn sealed_id(&self) -> Personal<UserId> {
        match self {
            Author::Named { user_id, username } => match username.get() {
                Some(_) => Personal::new(KeyRef::user(*user_id), *user_id),
                None => Personal::shredded(KeyRef::user(*user_id)),
            },
            Author::Anonymous { user_id, .. } => user_id.clone(),
        }
    }

    fn owner(&self) -> Owner {
        match self {
            Author::Named { user_id, .. } => Owner::User(*user_id),
            Author::Anonymous { token, .. } => Owner::Token(token.clone()),
        }
    }
}

/// What happened to a post. Schema 2: authors as [`Author`]; deletions name the deleting user
/// only when an admin deleted (an author deleting their own anonymous comment is not unmasked).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, strum::VariantNames)]
#[serde(tag = "type", content = "data")]
pub enum PostEvent {
    PostPublished {
        post_id: PostId,
        author: Author,
        anonymous: bool,
        title: Option<String>,
        body: String,
        tags: Vec<String>,
    },
    CommentAdded {
        post_id: PostId,
        comment_id: CommentId,
        author: Author,
        anonymous: bool,
        /// Whether this is the anonymous post's author commenting anonymously (shown as the
        /// host name). Never set on a named comment or under a named post, where it would tie
        /// anonymous content to a name (see `Post::hosts_anonymously`).
        is_host: bool,
        body: String,
        reply_to: Option<CommentId>,
        /// Whether this is its author's first comment under the post in this mode (named, or
        /// anonymous under their pseudonym): what the hot list counts, so that one busy
        /// commenter does not lift a post. Per mode, because a named comment saying "not my
        /// first" while its author has no named comment before would tie them to an anonymous
        /// one. Absent (false) in logs written before it existed.
        #[serde(default)]
        new_commenter: bool,
        /// Whom this comment answers when that is an anonymous author (of the comment replied
        /// to, else of the post): their id sealed under their author token, which their item
        /// shows already, so that the notification inbox can tell them without keeping a table
        /// of who wrote what anonymously. Absent for a named author (their item names them) and
        /// in logs written before it existed; present, unreadable, when the author has left.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        addressee: Option<Personal<UserId>>,
    },
    CommentDeleted {
        post_id: PostId,
        comment_id: CommentId,
        /// The admin who deleted it; `None` when its author did.
        deleted_by: Option<UserId>,
        by_admin: bool,
    },
    PostDeleted {
        post_id: PostId,
        /// The admin who deleted it; `None` when its author did.
        deleted_by: Option<UserId>,
        by_admin: bool,
    },
    /// The post's poll, opened with it (right after [`PostEvent::PostPublished`]).
    PollOpened {
        post_id: PostId,
        options: Vec<String>,
    },
    /// A vote for option `option` (an index); `counts` are the poll's counts after it, one per
    /// option. The voter is known only by a handle for this poll alone.
    PollVoted {
        post_id: PostId,
        voter: ItemHandle,
        option: usize,
        counts: Vec<u64>,
    },
    /// A reaction set to `value` (-1, 0 or 1) on the post (`comment_id` `None`) or a comment;
    /// `likes` and `dislikes` are the item's counts after it. The reactor is known only by a
    /// handle for this item alone (see [`ItemHandle`]).
    ReactionSet {
        post_id: PostId,
        comment_id: Option<CommentId>,
        reactor: ItemHandle,
        value: i8,
        likes: u64,
        dislikes: u64,
    },
    /// A user followed the post (`following`) or stopped following it, explicitly. The
    /// follower's id is sealed under a handle for this post and user alone, so the log tells
    /// neither who follows nor which follows are one user's.
    FollowSet {
        post_id: PostId,
        follower: Personal<UserId>,
        following: bool,
        /// How many users follow the post explicitly after it (what the hot list counts;
        /// following by posting or commenting counts as a commenter there).
        followers: u64,
    },
    /// A report of the post (`comment_id` `None`) or a comment. The reporter's id is sealed
    /// under a handle for this item alone, and their text with it (so that both go when they
    /// leave); `reports` and `weight` are the
    /// item's count and total weight of reports after it (since its last restoration).
    ItemReported {
        post_id: PostId,
        comment_id: Option<CommentId>,
        reporter: Personal<UserId>,
        reason: Reason,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<Personal<String>>,
        reports: u64,
        weight: u64,
    },
    /// The item is collapsed in feeds and left out of the hot list and search, still readable
    /// on request.
    ItemFolded {
        post_id: PostId,
        comment_id: Option<CommentId>,
        reason: Reason,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
        by: Role,
        /// The item's author when anonymous, sealed under their author token (as
        /// `CommentAdded.addressee`), so that the inbox can tell them; absent for a named
        /// author, whom the item names.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        author: Option<Personal<UserId>>,
    },
    ItemUnfolded {
        post_id: PostId,
        comment_id: Option<CommentId>,
        reason: Reason,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
        by: Role,
        /// The item's author when anonymous, sealed under their author token (as
        /// `CommentAdded.addressee`), so that the inbox can tell them; absent for a named
        /// author, whom the item names.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        author: Option<Personal<UserId>>,
    },
    /// The item is hidden from everyone until restored. `sanction`: its author is to be
    /// sanctioned for it (a community removal always; a moderator's when they say so).
    ItemRemoved {
        post_id: PostId,
        comment_id: Option<CommentId>,
        reason: Reason,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
        by: Role,
        /// The item's author when anonymous, sealed under their author token (as
        /// `CommentAdded.addressee`), so that the inbox can tell them; absent for a named
        /// author, whom the item names.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        author: Option<Personal<UserId>>,
        sanction: bool,
    },
    ItemRestored {
        post_id: PostId,
        comment_id: Option<CommentId>,
        reason: Reason,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
        by: Role,
        /// The item's author when anonymous, sealed under their author token (as
        /// `CommentAdded.addressee`), so that the inbox can tell them; absent for a named
        /// author, whom the item names.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        author: Option<Personal<UserId>>,
    },
}

impl DomainEvent for PostEvent {
    fn into_event(self) -> crate::Event {
        crate::Event::Post(self)
    }

    fn schema(&self) -> u32 {
        2
    }

    /// Schema 1 carried `author_id` and `author_name` in clear, and `deleted_by` always.
    fn upcast<'a>(
        event_type: &str,
        schema: u32,
        data: &'a Value,
    ) -> Result<std::borrow::Cow<'a, Value>, DecodeError> {
        match schema {
            2 => Ok(std::borrow::Cow::Borrowed(data)),
            1 => Ok(std::borrow::Cow::Owned(upcast_v1(event_type, data.clone()))),
            _ => Err(DecodeError {
                event_type: event_type.to_owned(),
                schema,
                reason: "unknown schema".into(),
            }),
        }
    }
}

fn upcast_v1(event_type: &str, mut data: Value) -> Value {
    let Value::Object(map) = &mut data else {
        return data;
    };
    match event_type {
        "PostPublished" | "CommentAdded" => {
            let id = map.remove("author_id").unwrap_or(Value::Null);
            let name = map.remove("author_name").unwrap_or(Value::Null);
            let author = if map.get("anonymous") == Some(&Value::Bool(true)) {
                let token = id.as_str().map(|u| format!("legacy-{u}"));
                // Keyed by the legacy token, not by the user id: a key reference in clear
                // must not name the author of anonymous content.
                serde_json::json!({"anonymous": {"token": token, "pseudonym": name,
                    "user_id": { OPEN: { "key": token, "value": id } }}})
            } else {
                serde_json::json!({"named": {"user_id": id,
                    "username": { OPEN: { "key": id, "value": name } }}})
            };
            map.insert("author".into(), author);
        }
        "CommentDeleted" | "PostDeleted" if map.get("by_admin") != Some(&Value::Bool(true)) => {
            map.insert("deleted_by".into(), Value::Null);
        }
        _ => {}
    }
    data
}

/// One of the four moderation events (`ItemFolded`, `ItemUnfolded`, `ItemRemoved`,
/// `ItemRestored`), read alike: they carry the same fields.
#[derive(Debug, Clone, Copy)]
pub struct Moderated<'a> {
    pub act: Act,
    pub item: Item,
    pub reason: Reason,
    pub note: Option<&'a String>,
    pub by: Role,
    pub author: Option<&'a Personal<UserId>>,
    /// Set on a removal that sanctions the author.
    pub sanction: bool,
}

impl PostEvent {
    /// The moderation act this event records, if it is one.
    pub fn moderated(&self) -> Option<Moderated<'_>> {
        let (act, post_id, comment_id, reason, note, by, author, sanction) = match self {
            PostEvent::ItemFolded {
                post_id,
                comment_id,
                reason,
                note,
                by,
                author,
            } => (
                Act::Fold,
                post_id,
                comment_id,
                reason,
                note,
                by,
                author,
                false,
            ),
            PostEvent::ItemUnfolded {
                post_id,
                comment_id,
                reason,
                note,
                by,
                author,
            } => (
                Act::Unfold,
                post_id,
                comment_id,
                reason,
                note,
                by,
                author,
                false,
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
                Act::Remove,
                post_id,
                comment_id,
                reason,
                note,
                by,
                author,
                *sanction,
            ),
            PostEvent::ItemRestored {
                post_id,
                comment_id,
                reason,
                note,
                by,
                author,
            } => (
                Act::Restore,
                post_id,
                comment_id,
                reason,
                note,
                by,
                author,
                false,
            ),
            _ => return None,
        };
        Some(Moderated {
            act,
            item: Item {
                post_id: *post_id,
                comment_id: *comment_id,
            },
            reason: *reason,
            note: note.as_ref(),
            by: *by,
            author: author.as_ref(),
            sanction,
        })
    }
}

/// Why a post command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PostError {
    #[error("the post does not exist")]
    NotFound,
    #[error("the post already exists")]
    AlreadyExists,
    #[error("the post has been deleted")]
    Deleted,
    #[error("the comment does not exist")]
    CommentNotFound,
    #[error("the comment replied to does not exist under this post")]
    ReplyTargetNotFound,
    #[error("only the author or an admin may do this")]
    NotAllowed,
    #[error("the comment id is already used")]
    DuplicateComment,
    #[error("the post has no poll")]
    NoPoll,
    #[error("the poll has no option {0}")]
    NoSuchOption(usize),
    #[error("you have voted in this poll already; a vote is final")]
    AlreadyVoted,
    #[error("the item has been removed by moderation")]
    Removed,
    #[error("moderators do not act on their own content")]
    OwnContent,
}

/// Configuration the Post aggregate decides with.
#[derive(Debug, Clone, Default)]
pub struct PostServices {
    pub pseudonyms: PseudonymScheme,
    /// Community weight: when reports fold or remove an item.
    pub thresholds: Thresholds,
}

/// Who owns an item, as far as the write model knows.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Owner {
    User(UserId),
    Token(AuthorToken),
}

impl Owner {
    /// Whether the acting user (with their token for this post) owns the item. An anonymous
    /// item of schema 1 has a legacy token made from its author's id.
    fn is(&self, user: UserId, token: &AuthorToken) -> bool {
        match self {
            Owner::User(u) => *u == user,
            Owner::Token(t) => t == token || *t == AuthorToken::legacy(user),
        }
    }
}

#[derive(Debug, Clone)]
struct Comment {
    owner: Owner,
    /// The author's id as the event gives it (sealed under their key reference): whom a reply
    /// to it addresses.
    author: Option<Personal<UserId>>,
    deleted: bool,
}

/// An item's standing under moderation, since its last restoration.
#[derive(Debug, Clone, Default)]
struct Standing {
    /// Who reported it, by report handle: each counts once, for good.
    reporters: HashSet<KeyRef>,
    reports: u64,
    weight: u64,
    /// Reports per reason since it was last unfolded.
    reasons: HashMap<Reason, u64>,
    folded: bool,
    removed: bool,
}

/// A post's write-side state.
#[derive(Debug, Clone, Default)]
pub struct Post {
    id: Option<PostId>,
    owner: Option<Owner>,
    /// The post's author's id, as [`Comment::author`].
    author: Option<Personal<UserId>>,
    /// Whether the post itself is anonymous.
    anonymous: bool,
    deleted: bool,
    comments: HashMap<CommentId, Comment>,
    /// Pseudonyms handed out under this post, by author token; never removed.
    pseudonyms: HashMap<AuthorToken, String>,
    used_names: HashSet<String>,
    /// Every standing reaction by its handle (one handle per user and item); none at 0.
    reactions: HashMap<ItemHandle, Reaction>,
    /// The counts of the post (`None`) and of each comment reacted to.
    tallies: HashMap<Option<CommentId>, Tally>,
    poll: Option<Poll>,
    /// The owners of every comment ever made here (named by user, anonymous by token).
    commenters: HashSet<Owner>,
    /// Explicit follow choices by follow handle (one per user and post).
    follows: HashMap<KeyRef, bool>,
    /// The post (`None`) and the comments that were ever reported or moderated.
    standing: HashMap<Option<CommentId>, Standing>,
}

/// A post's poll on the write side.
#[derive(Debug, Clone, Default)]
pub struct Poll {
    /// Votes per option.
    pub counts: Vec<u64>,
    /// Who voted for what, by handle.
    votes: HashMap<ItemHandle, usize>,
}

impl Poll {
    /// The option the holder of `voter` chose, if they voted.
    pub fn vote_of(&self, voter: &ItemHandle) -> Option<usize> {
        self.votes.get(voter).copied()
    }
}

impl Post {
    pub fn exists(&self) -> bool {
        self.id.is_some()
    }

    /// Whether the post exists and is not deleted.
    pub fn is_live(&self) -> bool {
        self.live().is_ok()
    }

    /// The reaction counts of the post (`None`) or of one of its comments.
    pub fn tally(&self, comment: Option<CommentId>) -> Tally {
        self.tallies.get(&comment).copied().unwrap_or_default()
    }

    /// How many users follow the post explicitly.
    pub fn followers(&self) -> u64 {
        self.follows.values().filter(|f| **f).count() as u64
    }

    /// The post's poll, if it has one.
    pub fn poll(&self) -> Option<&Poll> {
        self.poll.as_ref()
    }

    /// The reaction the holder of `handle` has set.
    pub fn reaction(&self, handle: &ItemHandle) -> Reaction {
        self.reactions.get(handle).copied().unwrap_or_default()
    }

    /// The pseudonym the holder of `token` (user `user`) has under this post, if any.
    pub fn pseudonym_of(&self, user: UserId, token: &AuthorToken) -> Option<&str> {
        self.pseudonyms
            .get(token)
            .or_else(|| self.pseudonyms.get(&AuthorToken::legacy(user)))
            .map(String::as_str)
    }

    /// Whether a comment by the holder of `token` is the host's anonymous comment under an
    /// anonymous post: the only case where saying "this is the post's author" reveals nothing,
    /// because both items are anonymous under one post. Under a named post the marker would
    /// unmask the comment, and on a named comment it would unmask the post.
    fn hosts_anonymously(&self, user: UserId, token: &AuthorToken, anonymous: bool) -> bool {
        anonymous && self.anonymous && self.owner.as_ref().is_some_and(|o| o.is(user, token))
    }

    /// Names the anonymous author of a new comment: the host name for the author of an
    /// anonymous post, the user's existing pseudonym, or the next unused name of the scheme.
    /// The author of a named post gets a pseudonym like anyone else.
    fn anonymous_name(
        &self,
        user: UserId,
        token: &AuthorToken,
        scheme: &PseudonymScheme,
    ) -> String {
        if self.hosts_anonymously(user, token, true) {
            return scheme.host_name().to_owned();
        }
        if let Some(name) = self.pseudonym_of(user, token) {
            return name.to_owned();
        }
        // Skipping used names keeps names unique even if the scheme was reconfigured.
        (self.pseudonyms.len()..)
            .map(|i| scheme.name_at(i))
            .find(|n| !self.used_names.contains(n) && n != scheme.host_name())
            .expect("the scheme is unbounded")
    }

    fn live(&self) -> Result<PostId, PostError> {
        let id = self.present()?;
        if self.is_removed(None) {
            return Err(PostError::Removed);
        }
        Ok(id)
    }

    /// The post's id if it exists and its author has not deleted it (it may be removed).
    fn present(&self) -> Result<PostId, PostError> {
        match self.id {
            None => Err(PostError::NotFound),
            Some(_) if self.deleted => Err(PostError::Deleted),
            Some(id) => Ok(id),
        }
    }

    /// Whether moderation has removed the post (`None`) or a comment.
    pub fn is_removed(&self, comment: Option<CommentId>) -> bool {
        self.standing.get(&comment).is_some_and(|s| s.removed)
    }

    /// The author of the post (`None`) or of one of its comments, if their id can be read:
    /// what a sanction is imposed on. Only the write side ever asks.
    pub fn author_of(&self, comment: Option<CommentId>) -> Option<UserId> {
        let sealed = match comment {
            None => self.author.as_ref(),
            Some(id) => self.comments.get(&id).and_then(|c| c.author.as_ref()),
        };
        sealed.and_then(|a| a.get().copied())
    }

    /// Whether the holder of `token` (user `user`) wrote the post (`None`) or the comment: what
    /// keeps moderators off their own content. Refused for an item that is not there.
    pub fn is_own(
        &self,
        comment: Option<CommentId>,
        user: UserId,
        token: &AuthorToken,
    ) -> Result<bool, PostError> {
        self.present()?;
        Ok(self.owner_of(comment)?.is(user, token))
    }

    /// The author of the post (`None`) or a comment, sealed, when it is anonymous: what an
    /// event about the item carries for the inbox (a named author is public on the item).
    fn anonymous_author(&self, comment: Option<CommentId>) -> Option<Personal<UserId>> {
        match comment {
            None => self.author.as_ref(),
            Some(id) => self.comments.get(&id).and_then(|c| c.author.as_ref()),
        }
        .filter(|a| a.key().as_user().is_none())
        .cloned()
    }

    /// The owner of the post (`None`) or of a comment not deleted by its author.
    fn owner_of(&self, comment: Option<CommentId>) -> Result<&Owner, PostError> {
        match comment {
            None => self.owner.as_ref().ok_or(PostError::NotFound),
            Some(id) => match self.comments.get(&id) {
                Some(c) if !c.deleted => Ok(&c.owner),
                _ => Err(PostError::CommentNotFound),
            },
        }
    }

    fn report(
        &self,
        post_id: PostId,
        reporter: &Personal<UserId>,
        comment_id: Option<CommentId>,
        reason: Reason,
        text: Option<&ReportText>,
        thresholds: &Thresholds,
    ) -> Result<Vec<PostEvent>, PostError> {
        self.owner_of(comment_id)?;
        let standing = self.standing.get(&comment_id).cloned().unwrap_or_default();
        if standing.removed {
            return Err(PostError::Removed);
        }
        let handle = reporter.key();
        if standing.reporters.contains(handle) {
            return Ok(vec![]);
        }
        let weight = standing.weight + thresholds.weight;
        let same_reason = standing.reasons.get(&reason).copied().unwrap_or(0) + 1;
        let mut events = vec![PostEvent::ItemReported {
            post_id,
            comment_id,
            reporter: reporter.clone(),
            reason,
            text: text.map(|t| Personal::new(handle.clone(), t.as_str().to_owned())),
            reports: standing.reports + 1,
            weight,
        }];
        if !standing.folded && same_reason >= thresholds.fold_at {
            events.push(PostEvent::ItemFolded {
                post_id,
                comment_id,
                reason,
                note: None,
                by: Role::Community,
                author: self.anonymous_author(comment_id),
            });
        }
        if weight >= thresholds.remove_at {
            events.push(PostEvent::ItemRemoved {
                post_id,
                comment_id,
                reason,
                note: None,
                by: Role::Community,
                author: self.anonymous_author(comment_id),
                sanction: true,
            });
        }
        Ok(events)
    }

    #[allow(clippy::too_many_arguments)]
    fn moderate(
        &self,
        comment_id: Option<CommentId>,
        act: Act,
        reason: Reason,
        note: Option<&ModerationNote>,
        by: Role,
        actor: UserId,
        token: &AuthorToken,
        sanction: bool,
    ) -> Result<Vec<PostEvent>, PostError> {
        let post_id = self.present()?;
        if self.owner_of(comment_id)?.is(actor, token) {
            return Err(PostError::OwnContent);
        }
        let standing = self.standing.get(&comment_id);
        let folded = standing.is_some_and(|s| s.folded);
        let removed = standing.is_some_and(|s| s.removed);
        let note = note.map(|n| n.as_str().to_owned());
        let author = self.anonymous_author(comment_id);
        let event = match act {
            Act::Fold if !folded => PostEvent::ItemFolded {
                post_id,
                comment_id,
                reason,
                note,
                by,
                author,
            },
            Act::Unfold if folded => PostEvent::ItemUnfolded {
                post_id,
                comment_id,
                reason,
                note,
                by,
                author,
            },
            Act::Remove if !removed => PostEvent::ItemRemoved {
                post_id,
                comment_id,
                reason,
                note,
                by,
                author,
                sanction,
            },
            Act::Restore if removed => PostEvent::ItemRestored {
                post_id,
                comment_id,
                reason,
                note,
                by,
                author,
            },
            _ => return Ok(vec![]),
        };
        Ok(vec![event])
    }

    /// Whether the actor may delete an item of `owner`; `Ok(true)` when as an admin only.
    fn may_moderate(
        &self,
        actor: &Actor,
        token: &AuthorToken,
        owner: &Owner,
    ) -> Result<bool, PostError> {
        if owner.is(actor.user_id, token) {
            Ok(false)
        } else if actor.is_admin {
            Ok(true)
        } else {
            Err(PostError::NotAllowed)
        }
    }
}

fn author_of(actor: &Actor, token: &AuthorToken, anonymous: bool, name: String) -> Author {
    if anonymous {
        Author::Anonymous {
            token: token.clone(),
            pseudonym: name,
            user_id: Personal::new(token.key_ref(), actor.user_id),
        }
    } else {
        Author::Named {
            user_id: actor.user_id,
            username: Personal::new(KeyRef::user(actor.user_id), name),
        }
    }
}

impl Aggregate for Post {
    type Command = PostCommand;
    type Event = PostEvent;
    type Error = PostError;
    type Services = PostServices;

    fn decide(
        &self,
        command: &PostCommand,
        services: &PostServices,
    ) -> Result<Vec<PostEvent>, PostError> {
        match command {
            PostCommand::Publish {
                post_id,
                author,
                token,
                title,
                body,
                tags,
                anonymous,
                poll,
            } => {
                if self.exists() {
                    return Err(PostError::AlreadyExists);
                }
                let name = if *anonymous {
                    services.pseudonyms.host_name().to_owned()
                } else {
                    author.username.clone()
                };
                let published = PostEvent::PostPublished {
                    post_id: *post_id,
                    author: author_of(author, token, *anonymous, name),
                    anonymous: *anonymous,
                    title: title.as_ref().map(|t| t.as_str().to_owned()),
                    body: body.as_str().to_owned(),
                    tags: tags.iter().map(|t| t.as_str().to_owned()).collect(),
                };
                let opened = poll.as_ref().map(|p| PostEvent::PollOpened {
                    post_id: *post_id,
                    options: p.as_slice().to_vec(),
                });
                Ok(std::iter::once(published).chain(opened).collect())
            }
            PostCommand::AddComment {
                comment_id,
                author,
                token,
                body,
                anonymous,
                reply_to,
            } => {
                let post_id = self.live()?;
                if self.comments.contains_key(comment_id) {
                    return Err(PostError::DuplicateComment);
                }
                if let Some(target) = reply_to {
                    match self.comments.get(target) {
                        Some(c) if !c.deleted && !self.is_removed(Some(*target)) => {}
                        _ => return Err(PostError::ReplyTargetNotFound),
                    }
                }
                let name = if *anonymous {
                    self.anonymous_name(author.user_id, token, &services.pseudonyms)
                } else {
                    author.username.clone()
                };
                let new_commenter = if *anonymous {
                    !self.commenters.contains(&Owner::Token(token.clone()))
                        && !self
                            .commenters
                            .contains(&Owner::Token(AuthorToken::legacy(author.user_id)))
                } else {
                    !self.commenters.contains(&Owner::User(author.user_id))
                };
                let written_by = author_of(author, token, *anonymous, name);
                let addressee = match reply_to {
                    Some(target) => self.comments.get(target).and_then(|c| c.author.as_ref()),
                    None => self.author.as_ref(),
                }
                // Only an anonymous addressee: a named one is public on their item, which the
                // read side knows by its id (a user id here would stand in clear beside
                // anonymous content). Present whether or not their id can still be read, so
                // that the log does not say when they left (see `commands::keys`).
                .filter(|a| a.key().as_user().is_none())
                .cloned();
                Ok(vec![PostEvent::CommentAdded {
                    post_id,
                    comment_id: *comment_id,
                    author: written_by,
                    anonymous: *anonymous,
                    is_host: self.hosts_anonymously(author.user_id, token, *anonymous),
                    body: body.as_str().to_owned(),
                    reply_to: *reply_to,
                    new_commenter,
                    addressee,
                }])
            }
            PostCommand::DeleteComment {
                comment_id,
                actor,
                token,
            } => {
                let post_id = self.live()?;
                let comment = match self.comments.get(comment_id) {
                    Some(c) if !c.deleted => c,
                    _ => return Err(PostError::CommentNotFound),
                };
                let by_admin = self.may_moderate(actor, token, &comment.owner)?;
                Ok(vec![PostEvent::CommentDeleted {
                    post_id,
                    comment_id: *comment_id,
                    deleted_by: by_admin.then_some(actor.user_id),
                    by_admin,
                }])
            }
            PostCommand::Delete { actor, token } => {
                let post_id = self.live()?;
                let owner = self.owner.as_ref().ok_or(PostError::NotFound)?;
                let by_admin = self.may_moderate(actor, token, owner)?;
                Ok(vec![PostEvent::PostDeleted {
                    post_id,
                    deleted_by: by_admin.then_some(actor.user_id),
                    by_admin,
                }])
            }
            PostCommand::Vote { voter, option } => {
                let post_id = self.live()?;
                let poll = self.poll.as_ref().ok_or(PostError::NoPoll)?;
                if *option >= poll.counts.len() {
                    return Err(PostError::NoSuchOption(*option));
                }
                if poll.votes.contains_key(voter) {
                    return Err(PostError::AlreadyVoted);
                }
                let mut counts = poll.counts.clone();
                counts[*option] += 1;
                Ok(vec![PostEvent::PollVoted {
                    post_id,
                    voter: voter.clone(),
                    option: *option,
                    counts,
                }])
            }
            PostCommand::React {
                reactor,
                comment_id,
                value,
            } => {
                let post_id = self.live()?;
                if let Some(id) = comment_id {
                    match self.comments.get(id) {
                        Some(c) if !c.deleted => {}
                        _ => return Err(PostError::CommentNotFound),
                    }
                    if self.is_removed(Some(*id)) {
                        return Err(PostError::Removed);
                    }
                }
                let previous = self.reaction(reactor);
                if previous == *value {
                    return Ok(vec![]);
                }
                let tally = self.tally(*comment_id).without(previous).with(*value);
                Ok(vec![PostEvent::ReactionSet {
                    post_id,
                    comment_id: *comment_id,
                    reactor: reactor.clone(),
                    value: value.value(),
                    likes: tally.likes,
                    dislikes: tally.dislikes,
                }])
            }
            PostCommand::Follow {
                follower,
                following,
            } => {
                let post_id = self.live()?;
                let handle = follower.key();
                if self.follows.get(handle) == Some(following) {
                    return Ok(vec![]);
                }
                let was = self.follows.get(handle) == Some(&true);
                let followers = match (was, *following) {
                    (false, true) => self.followers() + 1,
                    (true, false) => self.followers() - 1,
                    _ => self.followers(),
                };
                Ok(vec![PostEvent::FollowSet {
                    post_id,
                    follower: follower.clone(),
                    following: *following,
                    followers,
                }])
            }
            PostCommand::Report {
                reporter,
                comment_id,
                reason,
                text,
            } => {
                let post_id = self.live()?;
                self.report(
                    post_id,
                    reporter,
                    *comment_id,
                    *reason,
                    text.as_ref(),
                    &services.thresholds,
                )
            }
            PostCommand::Moderate {
                comment_id,
                act,
                reason,
                note,
                by,
                actor,
                token,
                sanction,
            } => self.moderate(
                *comment_id,
                *act,
                *reason,
                note.as_ref(),
                *by,
                *actor,
                token,
                *sanction,
            ),
        }
    }

    fn evolve(&mut self, event: &PostEvent) {
        match event {
            PostEvent::PostPublished {
                post_id,
                author,
                anonymous,
                ..
            } => {
                self.id = Some(*post_id);
                self.owner = Some(author.owner());
                self.author = Some(author.sealed_id());
                self.anonymous = *anonymous;
            }
            PostEvent::CommentAdded {
                comment_id,
                author,
                is_host,
                ..
            } => {
                self.comments.insert(
                    *comment_id,
                    Comment {
                        owner: author.owner(),
                        author: Some(author.sealed_id()),
                        deleted: false,
                    },
                );
                self.commenters.insert(author.owner());
                if let Author::Anonymous {
                    token, pseudonym, ..
                } = author
                    && !*is_host
                    && !self.pseudonyms.contains_key(token)
                {
                    self.pseudonyms.insert(token.clone(), pseudonym.clone());
                    self.used_names.insert(pseudonym.clone());
                }
            }
            PostEvent::CommentDeleted { comment_id, .. } => {
                if let Some(c) = self.comments.get_mut(comment_id) {
                    c.deleted = true;
                }
            }
            PostEvent::PostDeleted { .. } => self.deleted = true,
            PostEvent::PollOpened { options, .. } => {
                self.poll = Some(Poll {
                    counts: vec![0; options.len()],
                    votes: HashMap::new(),
                });
            }
            PostEvent::PollVoted {
                voter,
                option,
                counts,
                ..
            } => {
                if let Some(poll) = self.poll.as_mut() {
                    poll.votes.insert(voter.clone(), *option);
                    poll.counts.clone_from(counts);
                }
            }
            PostEvent::FollowSet {
                follower,
                following,
                ..
            } => {
                self.follows.insert(follower.key().clone(), *following);
            }
            PostEvent::ItemReported {
                comment_id,
                reporter,
                reason,
                reports,
                weight,
                ..
            } => {
                let s = self.standing.entry(*comment_id).or_default();
                s.reporters.insert(reporter.key().clone());
                s.reports = *reports;
                s.weight = *weight;
                *s.reasons.entry(*reason).or_default() += 1;
            }
            PostEvent::ItemFolded { comment_id, .. } => {
                self.standing.entry(*comment_id).or_default().folded = true;
            }
            PostEvent::ItemUnfolded { comment_id, .. } => {
                let s = self.standing.entry(*comment_id).or_default();
                s.folded = false;
                s.reasons.clear();
            }
            PostEvent::ItemRemoved { comment_id, .. } => {
                self.standing.entry(*comment_id).or_default().removed = true;
            }
            PostEvent::ItemRestored { comment_id, .. } => {
                let s = self.standing.entry(*comment_id).or_default();
                s.removed = false;
                s.reports = 0;
                s.weight = 0;
            }
            PostEvent::ReactionSet {
                comment_id,
                reactor,
                value,
                likes,
                dislikes,
                ..
            } => {
                match Reaction::from_value(i64::from(*value)) {
                    Some(Reaction::None) | None => self.reactions.remove(reactor),
                    Some(r) => self.reactions.insert(reactor.clone(), r),
                };
                self.tallies.insert(
                    *comment_id,
                    Tally {
                        likes: *likes,
                        dislikes: *dislikes,
                    },
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::given;
    use proptest::prelude::*;
    use uuid::Uuid;

    const HOST: &str = "洞主";

    fn actor(n: u128) -> Actor {
        Actor {
            user_id: UserId::new(Uuid::from_u128(n)),
            username: format!("user{n}"),
            is_admin: false,
        }
    }

    fn admin() -> Actor {
        Actor {
            is_admin: true,
            ..actor(999_999)
        }
    }

    fn tok(a: &Actor) -> AuthorToken {
        AuthorToken::new(format!("t{}", a.user_id))
    }

    fn post_id() -> PostId {
        PostId::new(Uuid::from_u128(42))
    }

    fn comment_id(n: u128) -> CommentId {
        CommentId::new(Uuid::from_u128(n))
    }

    fn name_of(e: &PostEvent) -> &str {
        match e {
            PostEvent::PostPublished { author, .. } | PostEvent::CommentAdded { author, .. } => {
                author.display_name().unwrap()
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    /// Events that begin with a post or a comment shown as `name`.
    fn shown_as(name: &str) -> impl FnOnce(&[PostEvent]) -> bool + '_ {
        move |events| matches!(events, [e, ..] if name_of(e) == name)
    }

    fn kinds(events: &[PostEvent]) -> Vec<&'static str> {
        events.iter().map(|e| e.encode().0).collect()
    }

    fn publish(by: &Actor, anonymous: bool) -> PostCommand {
        publish_with(by, anonymous, None)
    }

    fn publish_with(by: &Actor, anonymous: bool, poll: Option<PollOptions>) -> PostCommand {
        PostCommand::Publish {
            post_id: post_id(),
            author: by.clone(),
            token: tok(by),
            title: None,
            body: PostBody::parse("body").unwrap(),
            tags: vec![],
            anonymous,
            poll,
        }
    }

    /// What `publish(by, anonymous)` records.
    fn published(by: &Actor, anonymous: bool) -> PostEvent {
        PostEvent::PostPublished {
            post_id: post_id(),
            author: if anonymous {
                Author::anonymous(tok(by), HOST, by.user_id)
            } else {
                Author::named(by.user_id, by.username.clone())
            },
            anonymous,
            title: None,
            body: "body".into(),
            tags: vec![],
        }
    }

    /// Comment `n` by `by`, at the top level.
    fn comment(n: u128, by: &Actor, anonymous: bool) -> PostCommand {
        PostCommand::AddComment {
            comment_id: comment_id(n),
            author: by.clone(),
            token: tok(by),
            body: CommentBody::parse("hi").unwrap(),
            anonymous,
            reply_to: None,
        }
    }

    /// Comment `n` by `by`, a first one, at the top level, named or under `pseudonym`; as a
    /// history, it need not carry what a decision would add (an addressee).
    fn added(n: u128, by: &Actor, pseudonym: Option<&str>) -> PostEvent {
        PostEvent::CommentAdded {
            post_id: post_id(),
            comment_id: comment_id(n),
            author: match pseudonym {
                Some(name) => Author::anonymous(tok(by), name, by.user_id),
                None => Author::named(by.user_id, by.username.clone()),
            },
            anonymous: pseudonym.is_some(),
            is_host: false,
            body: "hi".into(),
            reply_to: None,
            new_commenter: true,
            addressee: None,
        }
    }

    fn delete_comment(n: u128, by: &Actor) -> PostCommand {
        PostCommand::DeleteComment {
            comment_id: comment_id(n),
            actor: by.clone(),
            token: tok(by),
        }
    }

    /// Comment `n` deleted by its author.
    fn comment_deleted(n: u128) -> PostEvent {
        PostEvent::CommentDeleted {
            post_id: post_id(),
            comment_id: comment_id(n),
            deleted_by: None,
            by_admin: false,
        }
    }

    fn delete(by: &Actor) -> PostCommand {
        PostCommand::Delete {
            actor: by.clone(),
            token: tok(by),
        }
    }

    /// The post deleted by its author.
    fn post_deleted() -> PostEvent {
        PostEvent::PostDeleted {
            post_id: post_id(),
            deleted_by: None,
            by_admin: false,
        }
    }

    fn report(reporter: &str, comment_id: Option<CommentId>, reason: Reason) -> PostCommand {
        PostCommand::Report {
            reporter: Personal::new(KeyRef::handle(reporter), UserId::new(Uuid::from_u128(77))),
            comment_id,
            reason,
            text: None,
        }
    }

    #[test]
    fn ten_reports_remove_an_item_and_each_reporter_counts_once() {
        let author = actor(1);
        let mut g = given::<Post>([published(&author, true)]);
        let reasons = [Reason::Spam, Reason::Abuse, Reason::Nsfw, Reason::Privacy];
        for n in 0..9 {
            let expected: &[&str] = if n == 4 {
                // The second spam report folds it.
                &["ItemReported", "ItemFolded"]
            } else {
                &["ItemReported"]
            };
            g = g
                .when(&report(&format!("r{n}"), None, reasons[n % 4]))
                .then_matches(|events| kinds(events) == expected)
                .when(&report(&format!("r{n}"), None, Reason::Spam))
                .then([]);
        }
        assert!(!g.state().is_removed(None));
        let g = g
            .when(&report("r9", None, Reason::Other))
            .then_matches(|events| {
                kinds(events) == ["ItemReported", "ItemRemoved"]
                    && matches!(
                        &events[1],
                        PostEvent::ItemRemoved {
                            by: Role::Community,
                            sanction: true,
                            ..
                        }
                    )
            })
            .when(&report("r10", None, Reason::Spam))
            .then_error(PostError::Removed)
            // A removed post takes no comments.
            .when(&comment(1, &actor(2), true))
            .then_error(PostError::Removed);
        assert_eq!(g.state().author_of(None), Some(author.user_id));
    }

    #[test]
    fn moderators_act_once_on_others_content_only_and_a_restore_starts_the_count_again() {
        let (author, moderator) = (actor(1), actor(2));
        let moderate = |comment_id, act, by: &Actor| PostCommand::Moderate {
            comment_id,
            act,
            reason: Reason::Spam,
            note: None,
            by: Role::Moderator,
            actor: by.user_id,
            token: tok(by),
            sanction: false,
        };
        let kind = |kind: &'static str| move |events: &[PostEvent]| kinds(events) == [kind];
        let mut g = given::<Post>([
            published(&author, true),
            added(1, &moderator, Some("Alice")),
        ])
        // Their own anonymous comment.
        .when(&moderate(Some(comment_id(1)), Act::Remove, &moderator))
        .then_error(PostError::OwnContent)
        .when(&moderate(None, Act::Fold, &moderator))
        .then_matches(kind("ItemFolded"))
        .when(&moderate(None, Act::Fold, &moderator))
        .then([])
        .when(&moderate(None, Act::Restore, &moderator))
        .then([])
        .when(&moderate(None, Act::Remove, &moderator))
        .then_matches(kind("ItemRemoved"))
        .when(&moderate(None, Act::Restore, &moderator))
        .then_matches(kind("ItemRestored"));
        // Nine new reporters do not remove it again; the tenth does.
        for n in 0..9 {
            g = g
                .when(&report(&format!("n{n}"), None, Reason::Other))
                .then_matches(|events| matches!(events, [PostEvent::ItemReported { .. }, ..]));
        }
        assert!(!g.state().is_removed(None));
        g.when(&report("n9", None, Reason::Other))
            .then_matches(|events| kinds(events) == ["ItemReported", "ItemRemoved"])
            // The post is removed.
            .when(&report("r", Some(comment_id(1)), Reason::Spam))
            .then_error(PostError::Removed);
    }

    fn follow(handle: &str, user: u128, following: bool) -> PostCommand {
        PostCommand::Follow {
            follower: Personal::new(KeyRef::handle(handle), UserId::new(Uuid::from_u128(user))),
            following,
        }
    }

    fn follow_set(handle: &str, user: u128, following: bool, followers: u64) -> PostEvent {
        PostEvent::FollowSet {
            post_id: post_id(),
            follower: Personal::new(KeyRef::handle(handle), UserId::new(Uuid::from_u128(user))),
            following,
            followers,
        }
    }

    #[test]
    fn an_explicit_follow_is_set_once_and_counted_per_handle() {
        given::<Post>([published(&actor(1), true)])
            .when(&follow("f2", 2, true))
            .then([follow_set("f2", 2, true, 1)])
            .when(&follow("f2", 2, true))
            .then([])
            .when(&follow("f3", 3, true))
            .then([follow_set("f3", 3, true, 2)])
            .when(&follow("f2", 2, false))
            .then([follow_set("f2", 2, false, 1)])
            // Turning off a follow that was only automatic records the choice; the count is of
            // explicit follows.
            .when(&follow("f1", 1, false))
            .then([follow_set("f1", 1, false, 1)])
            .when(&follow("f1", 1, false))
            .then([])
            .when(&delete(&actor(1)))
            .then([post_deleted()])
            .when(&follow("f4", 4, true))
            .then_error(PostError::Deleted);
        given::<Post>([])
            .when(&follow("f4", 4, true))
            .then_error(PostError::NotFound);
    }

    #[test]
    fn a_comment_addresses_an_anonymous_author_it_answers_under_their_token_only() {
        let (host, b, c) = (actor(1), actor(2), actor(3));
        let reply = PostCommand::AddComment {
            comment_id: comment_id(8),
            author: c.clone(),
            token: tok(&c),
            body: CommentBody::parse("re").unwrap(),
            anonymous: true,
            reply_to: Some(comment_id(7)),
        };
        given::<Post>([published(&host, true)])
            // A top-level comment answers the post's (anonymous) author, under their token
            // (which the post shows already).
            .when(&comment(7, &b, false))
            .then_matches(|events| {
                matches!(events, [PostEvent::CommentAdded { addressee: Some(a), .. }]
                    if a.get() == Some(&host.user_id) && a.key() == &tok(&host).key_ref())
            })
            // A reply to a named comment carries no addressee: its author is public on that
            // comment, and a user id here would stand in clear beside anonymous content.
            .when(&reply)
            .then_matches(|events| {
                matches!(
                    events,
                    [PostEvent::CommentAdded {
                        addressee: None,
                        ..
                    }]
                )
            });
    }

    fn react(handle: &str, comment_id: Option<CommentId>, value: Reaction) -> PostCommand {
        PostCommand::React {
            reactor: ItemHandle::new(handle),
            comment_id,
            value,
        }
    }

    fn reaction_set(
        handle: &str,
        comment_id: Option<CommentId>,
        value: i8,
        (likes, dislikes): (u64, u64),
    ) -> PostEvent {
        PostEvent::ReactionSet {
            post_id: post_id(),
            comment_id,
            reactor: ItemHandle::new(handle),
            value,
            likes,
            dislikes,
        }
    }

    #[test]
    fn a_reaction_is_set_not_toggled_and_setting_it_again_records_nothing() {
        let like = react("va", None, Reaction::Like);
        let g = given::<Post>([published(&actor(1), true)])
            .when(&like)
            .then([reaction_set("va", None, 1, (1, 0))])
            .when(&like)
            .then([]);
        assert_eq!(
            g.state().tally(None),
            Tally {
                likes: 1,
                dislikes: 0
            }
        );
        let g = g
            .when(&react("va", None, Reaction::Dislike))
            .then([reaction_set("va", None, -1, (0, 1))])
            .when(&react("vb", None, Reaction::Like))
            .then([reaction_set("vb", None, 1, (1, 1))])
            .when(&react("va", None, Reaction::None))
            .then([reaction_set("va", None, 0, (1, 0))])
            .when(&react("va", None, Reaction::None))
            .then([]);
        assert_eq!(g.state().reaction(&ItemHandle::new("vb")), Reaction::Like);
        assert_eq!(g.state().reaction(&ItemHandle::new("va")), Reaction::None);
    }

    #[test]
    fn comments_have_their_own_counts_and_a_deleted_one_takes_no_reaction() {
        let c = Some(comment_id(1));
        let g = given::<Post>([
            published(&actor(1), false),
            added(1, &actor(2), Some("Alice")),
        ])
        .when(&react("vc", c, Reaction::Like))
        .then([reaction_set("vc", c, 1, (1, 0))]);
        assert_eq!(g.state().tally(None), Tally::default());
        assert_eq!(
            g.state().tally(c),
            Tally {
                likes: 1,
                dislikes: 0
            }
        );
        g.when(&react("vd", Some(comment_id(2)), Reaction::Like))
            .then_error(PostError::CommentNotFound)
            .when(&delete_comment(1, &actor(2)))
            .then([comment_deleted(1)])
            .when(&react("vc", c, Reaction::None))
            .then_error(PostError::CommentNotFound);
    }

    #[test]
    fn no_reaction_to_a_missing_or_deleted_post() {
        let like = react("va", None, Reaction::Like);
        given::<Post>([])
            .when(&like)
            .then_error(PostError::NotFound);
        given::<Post>([published(&actor(1), false), post_deleted()])
            .when(&like)
            .then_error(PostError::Deleted);
    }

    fn with_poll(options: &[&str]) -> PostCommand {
        let options: Vec<String> = options.iter().map(|o| (*o).to_owned()).collect();
        publish_with(&actor(1), true, Some(PollOptions::parse(&options).unwrap()))
    }

    fn poll_opened(options: &[&str]) -> PostEvent {
        PostEvent::PollOpened {
            post_id: post_id(),
            options: options.iter().map(|o| (*o).to_owned()).collect(),
        }
    }

    fn vote(voter: &str, option: usize) -> PostCommand {
        PostCommand::Vote {
            voter: ItemHandle::new(voter),
            option,
        }
    }

    fn voted(voter: &str, option: usize, counts: [u64; 3]) -> PostEvent {
        PostEvent::PollVoted {
            post_id: post_id(),
            voter: ItemHandle::new(voter),
            option,
            counts: counts.to_vec(),
        }
    }

    #[test]
    fn a_poll_opens_with_its_post_and_each_voter_votes_once() {
        let options = ["yes", "no", "maybe"];
        let g = given::<Post>([])
            .when(&with_poll(&options))
            .then([published(&actor(1), true), poll_opened(&options)])
            .when(&vote("wa", 1))
            .then([voted("wa", 1, [0, 1, 0])])
            .when(&vote("wb", 1))
            .then([voted("wb", 1, [0, 2, 0])])
            .when(&vote("wc", 0))
            .then([voted("wc", 0, [1, 2, 0])])
            .when(&vote("wa", 0))
            .then_error(PostError::AlreadyVoted)
            .when(&vote("wa", 1))
            .then_error(PostError::AlreadyVoted)
            .when(&vote("wd", 3))
            .then_error(PostError::NoSuchOption(3));
        let poll = g.state().poll().unwrap();
        assert_eq!(poll.counts, vec![1, 2, 0]);
        assert_eq!(poll.vote_of(&ItemHandle::new("wb")), Some(1));
        assert_eq!(poll.vote_of(&ItemHandle::new("wd")), None);
    }

    #[test]
    fn no_vote_without_a_poll_or_on_a_deleted_post() {
        given::<Post>([published(&actor(1), false)])
            .when(&vote("wa", 0))
            .then_error(PostError::NoPoll);
        given::<Post>([
            published(&actor(1), true),
            poll_opened(&["a", "b"]),
            post_deleted(),
        ])
        .when(&vote("wa", 0))
        .then_error(PostError::Deleted);
        given::<Post>([])
            .when(&vote("wa", 0))
            .then_error(PostError::NotFound);
    }

    #[test]
    fn poll_options_are_two_to_four_short_distinct_texts() {
        let parse =
            |o: &[&str]| PollOptions::parse(&o.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>());
        assert!(parse(&["a", "b"]).is_ok());
        assert!(parse(&["a", "b", "c", "d"]).is_ok());
        assert!(parse(&["a"]).is_err());
        assert!(parse(&["a", "b", "c", "d", "e"]).is_err());
        assert!(parse(&["a", " A "]).is_err());
        assert!(parse(&["a", " "]).is_err());
        assert!(parse(&["a", &"x".repeat(31)]).is_err());
        assert_eq!(
            parse(&[" 食堂 ", &"好".repeat(30)]).unwrap().as_slice()[0],
            "食堂"
        );
    }

    #[test]
    fn a_commenter_is_new_once_per_mode_so_modes_stay_unlinked() {
        let new = |expected: bool| {
            move |events: &[PostEvent]| {
                matches!(events, [PostEvent::CommentAdded { new_commenter, .. }]
                    if *new_commenter == expected)
            }
        };
        given::<Post>([published(&actor(1), false)])
            .when(&comment(1, &actor(2), true))
            .then_matches(new(true))
            .when(&comment(2, &actor(2), true))
            .then_matches(new(false))
            // Their first named comment is new too: "not new" would say they commented before,
            // which only their anonymous comment did.
            .when(&comment(3, &actor(2), false))
            .then_matches(new(true))
            .when(&comment(4, &actor(2), false))
            .then_matches(new(false))
            .when(&comment(5, &actor(3), false))
            .then_matches(new(true))
            .when(&comment(6, &actor(1), true))
            .then_matches(new(true));
    }

    #[test]
    fn reaction_values_are_minus_one_zero_and_one_only() {
        assert_eq!(Reaction::from_value(-1), Some(Reaction::Dislike));
        assert_eq!(Reaction::from_value(0), Some(Reaction::None));
        assert_eq!(Reaction::from_value(1), Some(Reaction::Like));
        assert_eq!(Reaction::from_value(2), None);
        assert_eq!(Reaction::from_value(-2), None);
    }

    #[test]
    fn anonymous_post_shows_the_host_name_and_named_post_the_username() {
        given::<Post>([])
            .when(&publish(&actor(1), true))
            .then_matches(shown_as(HOST));
        given::<Post>([])
            .when(&publish(&actor(1), false))
            .then_matches(shown_as("user1"));
    }

    #[test]
    fn commenters_get_names_in_order_of_first_anonymous_comment() {
        given::<Post>([published(&actor(1), true)])
            .when(&comment(1, &actor(2), true))
            .then_matches(shown_as("Alice"))
            .when(&comment(2, &actor(1), true))
            .then_matches(shown_as(HOST))
            .when(&comment(3, &actor(3), false))
            .then_matches(shown_as("user3"))
            .when(&comment(4, &actor(3), true))
            .then_matches(shown_as("Bob"))
            .when(&comment(5, &actor(2), true))
            .then_matches(shown_as("Alice"));
    }

    /// The host marker and name for each of the four combinations of an anonymous or named
    /// post and an anonymous or named comment by the post's author.
    #[test]
    fn only_the_anonymous_host_commenting_anonymously_is_marked_host() {
        for (post_anonymous, comment_anonymous, name, host) in [
            (true, true, HOST, true),
            (true, false, "user1", false),
            (false, true, "Alice", false),
            (false, false, "user1", false),
        ] {
            let (_, events) = given::<Post>([published(&actor(1), post_anonymous)])
                .when(&comment(1, &actor(1), comment_anonymous))
                .then_take();
            let PostEvent::CommentAdded { is_host, .. } = &events[0] else {
                panic!("unexpected {events:?}");
            };
            let case = (post_anonymous, comment_anonymous);
            assert_eq!(name_of(&events[0]), name, "{case:?}");
            assert_eq!(*is_host, host, "{case:?}");
        }
    }

    #[test]
    fn the_author_of_a_named_post_keeps_one_pseudonym_and_nobody_shares_it() {
        given::<Post>([published(&actor(1), false)])
            .when(&comment(1, &actor(2), true))
            .then_matches(shown_as("Alice"))
            .when(&comment(2, &actor(1), true))
            .then_matches(shown_as("Bob"))
            .when(&comment(3, &actor(3), true))
            .then_matches(shown_as("Carol"))
            .when(&comment(4, &actor(1), true))
            .then_matches(shown_as("Bob"));
    }

    #[test]
    fn a_pseudonym_survives_deleting_the_comment() {
        given::<Post>([
            published(&actor(1), false),
            added(1, &actor(2), Some("Alice")),
        ])
        .when(&delete_comment(1, &actor(2)))
        .then([comment_deleted(1)])
        .when(&comment(2, &actor(3), true))
        .then_matches(shown_as("Bob"))
        .when(&comment(3, &actor(2), true))
        .then_matches(shown_as("Alice"));
    }

    #[test]
    fn only_authors_and_admins_delete() {
        let late = PostCommand::AddComment {
            comment_id: comment_id(2),
            author: actor(4),
            token: tok(&actor(4)),
            body: CommentBody::parse("late").unwrap(),
            anonymous: true,
            reply_to: None,
        };
        given::<Post>([
            published(&actor(1), true),
            added(1, &actor(2), Some("Alice")),
        ])
        .when(&delete_comment(1, &actor(3)))
        .then_error(PostError::NotAllowed)
        .when(&delete(&actor(2)))
        .then_error(PostError::NotAllowed)
        .when(&delete_comment(1, &admin()))
        .then([PostEvent::CommentDeleted {
            post_id: post_id(),
            comment_id: comment_id(1),
            deleted_by: Some(admin().user_id),
            by_admin: true,
        }])
        .when(&delete_comment(1, &admin()))
        .then_error(PostError::CommentNotFound)
        // The author deleting their own anonymous post is not named in the event.
        .when(&delete(&actor(1)))
        .then([post_deleted()])
        .when(&delete(&actor(1)))
        .then_error(PostError::Deleted)
        .when(&late)
        .then_error(PostError::Deleted);
    }

    #[test]
    fn replies_need_a_live_target_and_posts_are_created_once() {
        let reply = PostCommand::AddComment {
            comment_id: comment_id(1),
            author: actor(2),
            token: tok(&actor(2)),
            body: CommentBody::parse("re").unwrap(),
            anonymous: false,
            reply_to: Some(comment_id(7)),
        };
        given::<Post>([published(&actor(1), true)])
            .when(&publish(&actor(1), true))
            .then_error(PostError::AlreadyExists)
            .when(&reply)
            .then_error(PostError::ReplyTargetNotFound);
        given::<Post>([])
            .when(&delete(&actor(1)))
            .then_error(PostError::NotFound);
    }

    #[test]
    fn events_round_trip_through_their_wire_form() {
        given::<Post>([
            published(&actor(1), true),
            added(1, &actor(2), Some("Alice")),
        ])
        .when(&publish(&actor(1), true))
        .then_error(PostError::AlreadyExists);
        let user = UserId::new(Uuid::from_u128(3));
        let token = AuthorToken::new("abc");
        let e = PostEvent::CommentAdded {
            post_id: PostId::new(Uuid::from_u128(1)),
            comment_id: CommentId::new(Uuid::from_u128(2)),
            author: Author::Anonymous {
                token: token.clone(),
                pseudonym: "Alice".into(),
                user_id: Personal::new(token.key_ref(), user),
            },
            anonymous: true,
            is_host: false,
            body: "b".into(),
            reply_to: None,
            new_commenter: true,
            addressee: None,
        };
        let (name, data) = e.encode();
        assert_eq!(name, "CommentAdded");
        assert_eq!(PostEvent::decode(name, 2, &data).unwrap(), e);
        assert!(PostEvent::decode(name, 9, &data).is_err());
    }

    /// Schema 1 events (author id in clear) still load, and their anonymous authors keep their
    /// pseudonym and their rights through the legacy token.
    #[test]
    fn schema_1_events_upcast_and_keep_pseudonyms_and_rights() {
        let a = actor(2);
        let post = serde_json::json!({"post_id": Uuid::from_u128(42), "author_id": actor(1).user_id,
            "author_name": HOST, "anonymous": true, "title": null, "body": "b", "tags": []});
        let comment_v1 = serde_json::json!({"post_id": Uuid::from_u128(42),
            "comment_id": Uuid::from_u128(5), "author_id": a.user_id, "author_name": "Alice",
            "anonymous": true, "is_host": false, "body": "c", "reply_to": null});
        let history = [("PostPublished", post), ("CommentAdded", comment_v1)]
            .map(|(t, d)| PostEvent::decode(t, 1, &d).unwrap());
        given::<Post>(history)
            .when(&comment(6, &a, true))
            .then_matches(shown_as("Alice"))
            .when(&comment(7, &actor(1), true))
            .then_matches(shown_as(HOST))
            .when(&delete_comment(5, &a))
            .then([comment_deleted(5)]);
    }

    #[derive(Debug, Clone)]
    enum Step {
        Comment { user: u8, anonymous: bool },
        DeleteOwnComment { user: u8 },
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (0u8..60, any::<bool>()).prop_map(|(user, anonymous)| Step::Comment { user, anonymous }),
            1 => (0u8..60).prop_map(|user| Step::DeleteOwnComment { user }),
        ]
    }

    proptest! {
        /// Any interleaving of commenters: each anonymous user keeps one name under the post, no
        /// two users share one, nobody but the host gets the host name, and names are handed out
        /// in the scheme's order of first anonymous comment.
        #[test]
        fn the_pseudonym_rule_holds_for_any_interleaving(host_anonymous in any::<bool>(), steps in prop::collection::vec(step(), 1..300)) {
            // User 0 is the post's author.
            let mut g = given::<Post>([published(&actor(0), host_anonymous)]);
            let mut names: HashMap<u8, String> = HashMap::new();
            let mut first_seen: Vec<u8> = Vec::new();
            let mut own_comments: HashMap<u8, Vec<u128>> = HashMap::new();
            for (n, s) in (1u128..).zip(steps) {
                match s {
                    Step::Comment { user, anonymous } => {
                        let (after, events) = g.when(&comment(n, &actor(u128::from(user)), anonymous)).then_take();
                        g = after;
                        let name = name_of(&events[0]).to_owned();
                        own_comments.entry(user).or_default().push(n);
                        if !anonymous {
                            prop_assert_eq!(name, format!("user{user}"));
                            continue;
                        }
                        if user == 0 && host_anonymous {
                            prop_assert_eq!(&name, HOST);
                            continue;
                        }
                        prop_assert_ne!(&name, HOST);
                        match names.get(&user) {
                            Some(prev) => prop_assert_eq!(prev, &name),
                            None => {
                                prop_assert!(!names.values().any(|n| n == &name), "{} reused", name);
                                prop_assert_eq!(&name, &PseudonymScheme::default().name_at(first_seen.len()));
                                first_seen.push(user);
                                names.insert(user, name);
                            }
                        }
                    }
                    Step::DeleteOwnComment { user } => {
                        if let Some(id) = own_comments.get_mut(&user).and_then(Vec::pop) {
                            g = g.when(&delete_comment(id, &actor(u128::from(user)))).then([comment_deleted(id)]);
                        }
                    }
                }
            }
        }
    }
}
