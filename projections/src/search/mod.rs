//! The `search` projection: one search document per live post, holding its title, body, tags
//! and the text of its live comments, and the port the search engines implement.
//!
//! Documents carry the author only as the public read model shows it (`洞主` or a pseudonym
//! for anonymous posts) and comments carry no author at all (ARCHITECTURE.md §6). The id of a
//! *named* author is kept, privately, so that when that user unregisters their documents show
//! [`DELETED_USER`] as the feed does ([`FeedChange::ForgetPostAuthor`]) and keep neither their
//! name nor their id: a rebuild, which can no longer read the name, gives the same documents.
//! A search engine cannot share a transaction with anything else, so applying a batch is
//! idempotent: documents are upserted by post id, a comment at or below a document's position
//! is already in it, and forgetting an author twice forgets nothing more.

pub mod text;

use crate::{CommentChange, FeedChange};
use std::collections::{BTreeMap, BTreeSet, HashMap};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::{CommentId, Envelope, Event, Position, PostId, UserId};
use serde::{Deserialize, Serialize};

use crate::comments::Comments;
use crate::feed::Feed;
use crate::{Change, DELETED_USER, Projection, ReadModelError, ReadModelStore};

pub use text::Term;

/// The name of the search projection (and of its index).
pub const NAME: &str = "search";

/// The least time between two batches of the live search projector while events come slowly.
pub const QUIET_PACE: std::time::Duration = std::time::Duration::from_millis(200);
/// The same under load: after a batch of at least [`BUSY`] events (a thousand or more a
/// second at the quiet pace).
pub const BUSY_PACE: std::time::Duration = std::time::Duration::from_secs(1);
/// The size of a batch from which the search projector takes the [`BUSY_PACE`].
pub const BUSY: usize = 200;

pub struct Search;

impl Projection for Search {
    fn name(&self) -> &'static str {
        NAME
    }

    /// 2: documents keep the id of a named author, and forget it with the author's name; 3:
    /// folded and removed posts and comments are not found; 4: comments keep their position
    /// (the embedded engine indexes each comment as a document of its own).
    fn version(&self) -> u32 {
        4
    }

    /// Every batch writes each post it touches (Meilisearch: with all its comments; the
    /// embedded engine: its new or changed comments, and its own document if that changed)
    /// and commits the engine: at most five batches a second keep a busy post from being
    /// written again per comment on Meilisearch, and commits (segments) few.
    /// Under load (a batch of [`BUSY`] events or more) at most one a second, as
    /// Elasticsearch refreshes its indexes by default: each commit of the embedded engine is
    /// a segment of its own, and making, writing and merging segments was two thirds of the
    /// projection's cost under `treehole bench comments` at five a second (BENCHMARKS.md).
    fn pace(&self, events: usize) -> std::time::Duration {
        if events >= BUSY {
            BUSY_PACE
        } else {
            QUIET_PACE
        }
    }

    /// Room for a second at 4 000 events a second: under load a batch of 500 came every 80 ms
    /// and re-indexed every busy post each time, whatever the pace said. Faster than that, a
    /// full batch reads on at once, so the engine commits once per 4 096 events at most. The
    /// shared read of the log keeps four such batches (`infra::source::StoreSource::TAIL`), so
    /// that what arrives during the pace is still there when the next batch is read.
    fn batch(&self) -> usize {
        4096
    }

    /// The public rows of the `feed` and `comments` projections (so a document shows exactly
    /// what the public post and comments show), without their counters, and the feed's
    /// forgetting of named authors. Comments in documents carry no author, so the comments'
    /// forgetting has nothing to change.
    fn apply(&self, envelope: &Envelope, event: &Event) -> Vec<Change> {
        Feed.apply(envelope, event)
            .into_iter()
            .chain(Comments.apply(envelope, event))
            // Named, not excluded: a change the models gain later (counts, marks) stays out of
            // the documents until the index is taught it.
            .filter(|c| {
                matches!(
                    c,
                    Change::Feed(FeedChange::InsertPost { .. })
                        | Change::Feed(FeedChange::DeletePost { .. })
                        | Change::Feed(FeedChange::ForgetPostAuthor { .. })
                        | Change::Comments(CommentChange::InsertComment { .. })
                        | Change::Comments(CommentChange::DeleteComment { .. })
                        | Change::Feed(FeedChange::Fold { .. })
                        | Change::Feed(FeedChange::Remove { .. })
                        | Change::Comments(CommentChange::Fold { .. })
                        | Change::Comments(CommentChange::Remove { .. })
                )
            })
            .collect()
    }
}

/// A comment's text inside its post's document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchComment {
    pub comment_id: CommentId,
    /// Where the comment was added: its order among the post's comments.
    #[serde(default)]
    pub position: Position,
    pub body: String,
    /// Folded by moderation: kept (for unfolding) but not indexed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub folded: bool,
    /// Removed by moderation: kept (for restoring) but not indexed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub removed: bool,
}

/// What both engines store and index for one post.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchDocument {
    /// The post id: the primary key.
    pub id: PostId,
    /// Where the post was published: a stable, unique tie-break between equal scores.
    pub post_position: Position,
    /// The last event applied to this document.
    pub position: Position,
    pub author_name: String,
    /// The author of a *named* post, until they unregister; always `None` for an anonymous
    /// post (and then absent from the stored document). Internal: engines index it to find a
    /// leaving author's documents, and no answer of the API shows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author_id: Option<UserId>,
    pub anonymous: bool,
    pub title: Option<String>,
    pub body: String,
    pub tags: Vec<String>,
    #[serde(default)]
    pub comments: Vec<SearchComment>,
    pub created_at: DateTime<Utc>,
    /// Folded by moderation: kept, not indexed (its terms are empty), so not found.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub folded: bool,
    /// Removed by moderation: likewise.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub removed: bool,
    /// Analysed terms (see [`text`]) of the title, of the body and tags, and of the comments.
    /// An engine may store a document without them (they follow from its text) and give them
    /// back empty: [`SearchDocument::analyse_with`] makes them again.
    #[serde(default)]
    pub title_terms: String,
    #[serde(default)]
    pub body_terms: String,
    #[serde(default)]
    pub comment_terms: String,
}

impl SearchDocument {
    /// Whether moderation keeps the post out of search results.
    pub fn hidden(&self) -> bool {
        self.folded || self.removed
    }

    /// The comments search shows and finds.
    pub fn visible_comments(&self) -> impl Iterator<Item = &SearchComment> {
        self.comments.iter().filter(|c| !c.hidden())
    }

    /// Analyses the title, body and tags again (a hidden post has no terms), and the
    /// comments too for [`Terms::Whole`].
    pub fn analyse_with(&mut self, terms: Terms) {
        if self.hidden() {
            self.title_terms.clear();
            self.body_terms.clear();
            self.comment_terms.clear();
            return;
        }
        self.title_terms = text::terms_field(self.title.as_deref());
        self.body_terms = text::terms_field(
            std::iter::once(self.body.as_str()).chain(self.tags.iter().map(String::as_str)),
        );
        if terms == Terms::Whole {
            self.comment_terms =
                text::terms_field(self.visible_comments().map(|c| c.body.as_str()));
        }
    }
}

/// Which analysed terms [`apply_changes_with`] keeps up to date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Terms {
    /// The title's, the body's and the comments' (`comment_terms`): an engine that indexes a
    /// post with its comments as one document.
    Whole,
    /// The title's and the body's only (`comment_terms` stays empty): an engine that indexes
    /// each comment as a document of its own and analyses it itself, once.
    PostOnly,
}

impl SearchComment {
    /// Whether moderation keeps the comment out of search results.
    pub fn hidden(&self) -> bool {
        self.folded || self.removed
    }
}

/// The post a search change is about; `None` for a change of another read model.
fn post_of(change: &Change) -> Option<PostId> {
    match change {
        Change::Feed(FeedChange::InsertPost { post_id, .. })
        | Change::Comments(CommentChange::InsertComment { post_id, .. })
        | Change::Comments(CommentChange::DeleteComment { post_id, .. })
        | Change::Feed(FeedChange::DeletePost { post_id })
        | Change::Feed(FeedChange::Fold { post_id, .. })
        | Change::Feed(FeedChange::Remove { post_id, .. })
        | Change::Comments(CommentChange::Fold { post_id, .. })
        | Change::Comments(CommentChange::Remove { post_id, .. }) => Some(*post_id),
        _ => None,
    }
}

/// The posts a batch of changes touches: what an engine loads before [`apply_changes`],
/// beside the documents of the [`forgotten`] authors.
pub fn touched(changes: &[Change]) -> BTreeSet<PostId> {
    changes.iter().filter_map(post_of).collect()
}

/// The named authors a batch forgets: an engine also loads, before [`apply_changes`], every
/// stored document whose `author_id` is one of them.
pub fn forgotten(changes: &[Change]) -> BTreeSet<UserId> {
    changes
        .iter()
        .filter_map(|c| match c {
            Change::Feed(FeedChange::ForgetPostAuthor { user_id }) => Some(*user_id),
            _ => None,
        })
        .collect()
}

/// Applies a batch of changes to the stored documents of the posts it touches and of the
/// authors it forgets, and returns the outcome for each: `Some` to upsert, `None` to delete.
/// Applying a batch twice gives the same documents as applying it once.
pub fn apply_changes(
    stored: HashMap<PostId, SearchDocument>,
    changes: &[Change],
) -> Result<BTreeMap<PostId, Option<SearchDocument>>, ReadModelError> {
    apply_changes_with(stored, changes, Terms::Whole)
}

/// [`apply_changes`], keeping the analysed terms that `terms` names up to date.
pub fn apply_changes_with(
    mut stored: HashMap<PostId, SearchDocument>,
    changes: &[Change],
    terms: Terms,
) -> Result<BTreeMap<PostId, Option<SearchDocument>>, ReadModelError> {
    // Each document with whether its terms must be analysed again from all its text: a stored
    // document's terms are its text's, and a comment appended to it only adds its own terms,
    // so a post with a thousand comments is not cut into words again on each new one.
    let mut out: BTreeMap<PostId, (Option<SearchDocument>, bool)> = BTreeMap::new();
    for change in changes {
        if let Change::Feed(FeedChange::ForgetPostAuthor { user_id }) = change {
            forget_author(&mut stored, &mut out, *user_id);
            continue;
        }
        let post_id = post_of(change).ok_or_else(|| {
            ReadModelError::Backend(format!("the search index cannot apply {change:?}"))
        })?;
        let (doc, stale) = out
            .entry(post_id)
            .or_insert_with(|| (stored.remove(&post_id), false));
        apply_one(doc, stale, change, terms);
    }
    Ok(out
        .into_iter()
        .map(|(id, (mut doc, stale))| {
            if stale && let Some(d) = doc.as_mut() {
                d.analyse_with(terms);
            }
            (id, doc)
        })
        .collect())
}

/// Makes every document of `author`, stored or already changed by the batch, show
/// [`DELETED_USER`] and forget the author's id. The name is not among the analysed terms, so
/// the terms stay as they are.
fn forget_author(
    stored: &mut HashMap<PostId, SearchDocument>,
    out: &mut BTreeMap<PostId, (Option<SearchDocument>, bool)>,
    author: UserId,
) {
    let theirs: Vec<PostId> = stored
        .iter()
        .filter(|(_, d)| d.author_id == Some(author))
        .map(|(id, _)| *id)
        .collect();
    for id in theirs {
        if let Some(doc) = stored.remove(&id) {
            out.entry(id).or_insert((Some(doc), false));
        }
    }
    for (doc, _) in out.values_mut() {
        if let Some(d) = doc
            && d.author_id == Some(author)
        {
            d.author_name = DELETED_USER.to_owned();
            d.author_id = None;
        }
    }
}

/// Applies one change; sets `stale` when the document's terms must be analysed again in full,
/// and otherwise keeps them up to date itself.
fn apply_one(doc: &mut Option<SearchDocument>, stale: &mut bool, change: &Change, terms: Terms) {
    match change {
        Change::Feed(FeedChange::InsertPost {
            post_id,
            position,
            author_id,
            author_name,
            anonymous,
            title,
            body,
            tags,
            created_at,
            ..
        }) if doc.is_none() => {
            *doc = Some(SearchDocument {
                id: *post_id,
                post_position: *position,
                position: *position,
                author_name: author_name.clone(),
                // The change has no id for anonymous posts already; a document makes sure.
                author_id: author_id.filter(|_| !*anonymous),
                anonymous: *anonymous,
                title: title.clone(),
                body: body.clone(),
                tags: tags.clone(),
                comments: vec![],
                created_at: *created_at,
                folded: false,
                removed: false,
                title_terms: String::new(),
                body_terms: String::new(),
                comment_terms: String::new(),
            });
            *stale = true;
        }
        Change::Comments(CommentChange::InsertComment {
            comment_id,
            position,
            body,
            ..
        }) => {
            if let Some(d) = doc
                && *position > d.position
            {
                d.position = *position;
                d.comments.push(SearchComment {
                    comment_id: *comment_id,
                    position: *position,
                    body: body.clone(),
                    folded: false,
                    removed: false,
                });
                if !*stale && !d.hidden() && terms == Terms::Whole {
                    // The comments' terms in order: the new comment's come last.
                    text::extend_terms(&mut d.comment_terms, body);
                }
            }
        }
        Change::Comments(CommentChange::DeleteComment { comment_id, .. }) => {
            if let Some(d) = doc {
                let before = d.comments.len();
                d.comments.retain(|c| c.comment_id != *comment_id);
                *stale |= d.comments.len() != before;
            }
        }
        Change::Feed(FeedChange::DeletePost { .. }) => *doc = None,
        Change::Feed(FeedChange::Fold { reason, .. }) => {
            if let Some(d) = doc {
                d.folded = reason.is_some();
                *stale = true;
            }
        }
        Change::Feed(FeedChange::Remove { removed, .. }) => {
            if let Some(d) = doc {
                d.removed = *removed;
                *stale = true;
            }
        }
        Change::Comments(CommentChange::Fold {
            comment_id, reason, ..
        }) => mark_comment(doc, stale, *comment_id, |c| c.folded = reason.is_some()),
        Change::Comments(CommentChange::Remove {
            comment_id,
            removed,
            ..
        }) => mark_comment(doc, stale, *comment_id, |c| c.removed = *removed),
        _ => {}
    }
}

/// Sets a moderation mark of one of the document's comments; its terms follow.
fn mark_comment(
    doc: &mut Option<SearchDocument>,
    stale: &mut bool,
    comment_id: CommentId,
    mark: impl FnOnce(&mut SearchComment),
) {
    if let Some(d) = doc
        && let Some(c) = d.comments.iter_mut().find(|c| c.comment_id == comment_id)
    {
        mark(c);
        *stale = true;
    }
}

/// An analysed query: at least one term, every one of which a hit must match.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    terms: Vec<Term>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QueryError {
    #[error("the query is empty")]
    Empty,
    #[error("the query is longer than {max} characters")]
    TooLong { max: usize },
    #[error("the query has no searchable words")]
    NoWords,
    #[error("the query has more than {max} words")]
    TooManyWords { max: usize },
}

impl Query {
    pub const MAX_CHARS: usize = 200;
    pub const MAX_TERMS: usize = 16;

    /// Analyses a user's query (parse, don't validate: every `Query` can be run).
    pub fn parse(raw: &str) -> Result<Self, QueryError> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(QueryError::Empty);
        }
        if raw.chars().count() > Self::MAX_CHARS {
            return Err(QueryError::TooLong {
                max: Self::MAX_CHARS,
            });
        }
        let mut terms: Vec<Term> = Vec::new();
        for t in text::analyze(raw) {
            if !terms.iter().any(|seen| seen.text == t.text) {
                terms.push(t);
            }
        }
        match terms.len() {
            0 => Err(QueryError::NoWords),
            n if n > Self::MAX_TERMS => Err(QueryError::TooManyWords {
                max: Self::MAX_TERMS,
            }),
            _ => Ok(Self { terms }),
        }
    }

    pub fn terms(&self) -> &[Term] {
        &self.terms
    }

    /// The terms joined by spaces: what a text engine is asked for.
    pub fn text(&self) -> String {
        let words: Vec<&str> = self.terms.iter().map(|t| t.text.as_str()).collect();
        words.join(" ")
    }
}

/// Where the previous page ended. Engines use what suits them: the last hit's score and
/// `post_position` (a strict "after" in the ranking order), or its `offset` with the hit as an
/// anchor to find again.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SearchCursor {
    pub offset: usize,
    pub score: f32,
    pub post_position: Position,
}

#[derive(Debug, Clone)]
pub struct SearchRequest {
    pub query: Query,
    pub tag: Option<String>,
    pub limit: usize,
    pub after: Option<SearchCursor>,
}

#[derive(Debug, Clone)]
pub struct SearchHit {
    /// The post. Its `comments` hold at least the comments that matched best (an engine that
    /// indexes comments apart gives only those), and may hold them all.
    pub document: SearchDocument,
    pub score: f32,
    /// How many comments the post has.
    pub comment_count: usize,
}

#[derive(Debug, Clone)]
pub struct SearchResults {
    pub hits: Vec<SearchHit>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<SearchCursor>,
    /// How many documents match (an estimate on Meilisearch).
    pub total: usize,
}

/// A search engine: written by the search projection like any read-model store (generations,
/// checkpoints, atomic promotion) and queried by the API.
#[async_trait]
pub trait SearchIndex: ReadModelStore {
    /// The live generation's hits for `request`, best first, ties by newest post.
    async fn search(&self, request: &SearchRequest) -> Result<SearchResults, ReadModelError>;
    /// Every document of the live generation, ordered by id (for tests and comparisons).
    async fn documents(&self) -> Result<Vec<SearchDocument>, ReadModelError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn post(id: u128, position: Position) -> Change {
        Change::Feed(FeedChange::InsertPost {
            post_id: PostId::new(Uuid::from_u128(id)),
            position,
            author_id: None,
            author_name: "洞主".into(),
            anonymous: true,
            title: Some("Morning run".into()),
            body: "在操场跑步".into(),
            tags: vec!["sport".into()],
            created_at: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
        })
    }

    fn comment(post: u128, id: u128, position: Position, body: &str) -> Change {
        Change::Comments(CommentChange::InsertComment {
            comment_id: CommentId::new(Uuid::from_u128(id)),
            post_id: PostId::new(Uuid::from_u128(post)),
            position,
            author_id: None,
            author_name: "Alice".into(),
            anonymous: true,
            is_host: false,
            body: body.into(),
            reply_to: None,
            created_at: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
        })
    }

    #[test]
    fn the_search_projector_commits_at_most_once_a_second_under_load() {
        assert_eq!(Search.pace(0), QUIET_PACE);
        assert_eq!(Search.pace(BUSY - 1), QUIET_PACE);
        assert_eq!(Search.pace(BUSY), BUSY_PACE);
        assert_eq!(Search.pace(Search.batch()), BUSY_PACE);
        assert!(QUIET_PACE < BUSY_PACE);
    }

    #[test]
    fn a_batch_applied_twice_equals_once() {
        let changes = vec![
            post(1, 1),
            comment(1, 10, 2, "I was running too"),
            comment(1, 11, 3, "麻辣烫"),
            Change::Comments(CommentChange::DeleteComment {
                post_id: PostId::new(Uuid::from_u128(1)),
                comment_id: CommentId::new(Uuid::from_u128(11)),
            }),
        ];
        let once = apply_changes(HashMap::new(), &changes).unwrap();
        let stored: HashMap<_, _> = once
            .iter()
            .filter_map(|(k, v)| v.clone().map(|d| (*k, d)))
            .collect();
        let twice = apply_changes(stored, &changes).unwrap();
        assert_eq!(once, twice);
        let doc = once.values().next().unwrap().as_ref().unwrap();
        assert_eq!(doc.comments.len(), 1);
        assert_eq!(doc.comment_terms, "i was run too");
        assert_eq!(doc.title_terms, "morn run");
    }

    /// Comments added one batch at a time extend the stored terms instead of cutting every
    /// comment again; the result must be what a full analysis gives, deletes included.
    #[test]
    fn terms_kept_up_batch_by_batch_equal_a_full_analysis() {
        let id = PostId::new(Uuid::from_u128(1));
        let bodies = [
            "I was running too",
            "麻辣烫涨价了",
            "🙂",
            "Running late, 自习室见",
        ];
        let mut batches = vec![vec![post(1, 1)]];
        for (i, body) in bodies.iter().enumerate() {
            batches.push(vec![comment(1, 10 + i as u128, 2 + i as u64, body)]);
        }
        batches.push(vec![Change::Comments(CommentChange::DeleteComment {
            post_id: id,
            comment_id: CommentId::new(Uuid::from_u128(11)),
        })]);
        batches.push(vec![comment(1, 20, 9, "after the delete")]);
        let mut stored = HashMap::new();
        for batch in &batches {
            let out = apply_changes(stored, batch).unwrap();
            stored = out
                .into_iter()
                .filter_map(|(k, v)| v.map(|d| (k, d)))
                .collect();
            let kept = stored[&id].clone();
            let mut fresh = kept.clone();
            fresh.analyse_with(Terms::Whole);
            assert_eq!(kept, fresh, "after {batch:?}");
        }
        assert_eq!(stored[&id].comments.len(), 4);
    }

    #[test]
    fn deleted_posts_are_deleted_and_no_author_id_is_kept() {
        let id = PostId::new(Uuid::from_u128(1));
        let out = apply_changes(
            HashMap::new(),
            &[
                post(1, 1),
                Change::Feed(FeedChange::DeletePost { post_id: id }),
            ],
        )
        .unwrap();
        assert_eq!(out.get(&id), Some(&None));
        let fields = serde_json::to_value(
            apply_changes(HashMap::new(), &[post(1, 1)]).unwrap()[&id]
                .clone()
                .unwrap(),
        )
        .unwrap();
        assert!(fields.get("author_id").is_none());
    }

    fn named(id: u128, position: Position, author: UserId) -> Change {
        Change::Feed(FeedChange::InsertPost {
            post_id: PostId::new(Uuid::from_u128(id)),
            position,
            author_id: Some(author),
            author_name: format!("user{id}"),
            anonymous: false,
            title: Some("Signed".into()),
            body: "署名的帖子".into(),
            tags: vec![],
            created_at: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
        })
    }

    fn stored(out: &BTreeMap<PostId, Option<SearchDocument>>) -> HashMap<PostId, SearchDocument> {
        out.iter()
            .filter_map(|(k, v)| v.clone().map(|d| (*k, d)))
            .collect()
    }

    #[test]
    fn the_search_projection_passes_on_forgetting_post_authors_only() {
        let user_id = UserId::new(Uuid::from_u128(7));
        let envelope = Envelope {
            position: 5,
            event_id: Uuid::from_u128(5),
            stream: user_id.stream(),
            version: 2,
            event_type: "UserUnregistered".into(),
            schema: 1,
            occurred_at: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            data: serde_json::json!({ "user_id": user_id }),
            metadata: domain::Metadata::default(),
        };
        let event = Event::User(domain::user::UserEvent::UserUnregistered { user_id });
        assert_eq!(
            Search.apply(&envelope, &event),
            vec![Change::Feed(FeedChange::ForgetPostAuthor { user_id })]
        );
        assert_eq!(
            forgotten(&Search.apply(&envelope, &event)),
            [user_id].into()
        );
    }

    /// The named posts of a leaving author show the deleted user and keep no id; their
    /// anonymous posts and other authors' posts do not change; twice is once.
    #[test]
    fn forgetting_an_author_forgets_their_named_posts_only() {
        let (leaver, stayer) = (
            UserId::new(Uuid::from_u128(7)),
            UserId::new(Uuid::from_u128(8)),
        );
        let mut anonymous = post(2, 2);
        if let Change::Feed(FeedChange::InsertPost { author_id, .. }) = &mut anonymous {
            // Even a change that wrongly names the author of an anonymous post.
            *author_id = Some(leaver);
        }
        let before = stored(
            &apply_changes(
                HashMap::new(),
                &[named(1, 1, leaver), anonymous, named(3, 3, stayer)],
            )
            .unwrap(),
        );
        let [signed, hidden, other] = [1, 2, 3].map(|n| PostId::new(Uuid::from_u128(n)));
        assert_eq!(before[&signed].author_id, Some(leaver));
        assert_eq!(before[&hidden].author_id, None);
        assert_eq!(before[&other].author_id, Some(stayer));

        let forget = [Change::Feed(FeedChange::ForgetPostAuthor {
            user_id: leaver,
        })];
        let once = apply_changes(before.clone(), &forget).unwrap();
        assert_eq!(once.keys().collect::<Vec<_>>(), vec![&signed]);
        let after = once[&signed].clone().unwrap();
        assert_eq!(after.author_name, DELETED_USER);
        assert_eq!(after.author_id, None);
        assert_eq!(
            SearchDocument {
                author_name: "user1".into(),
                author_id: Some(leaver),
                ..after.clone()
            },
            before[&signed]
        );
        let mut now = before.clone();
        now.extend(stored(&once));
        let twice = apply_changes(now.clone(), &forget).unwrap();
        assert!(twice.is_empty(), "{twice:?}");
        let json = serde_json::to_string(&now.values().collect::<Vec<_>>()).unwrap();
        assert!(!json.contains(&leaver.to_string()) && !json.contains("user1"));
    }

    /// A post and its author's leaving in one batch, applied once or twice, give what the
    /// batches apart give: the live index and a rebuild agree however the log is cut.
    #[test]
    fn forgetting_in_the_batch_of_the_post_equals_forgetting_later() {
        let leaver = UserId::new(Uuid::from_u128(7));
        let id = PostId::new(Uuid::from_u128(1));
        let batch = [
            named(1, 1, leaver),
            comment(1, 10, 2, "hello"),
            Change::Feed(FeedChange::ForgetPostAuthor { user_id: leaver }),
        ];
        let together = apply_changes(HashMap::new(), &batch).unwrap();
        let again = apply_changes(stored(&together), &batch).unwrap();
        assert_eq!(together, again);
        let first = apply_changes(HashMap::new(), &batch[..2]).unwrap();
        let apart = apply_changes(stored(&first), &batch[2..]).unwrap();
        assert_eq!(together[&id], apart[&id]);
        assert_eq!(together[&id].as_ref().unwrap().author_name, DELETED_USER);
    }

    #[test]
    fn queries_are_checked_at_the_edge() {
        assert_eq!(Query::parse("  "), Err(QueryError::Empty));
        assert_eq!(Query::parse("!!! ???"), Err(QueryError::NoWords));
        assert!(matches!(
            Query::parse(&"a".repeat(201)),
            Err(QueryError::TooLong { .. })
        ));
        assert_eq!(Query::parse("Running runs").unwrap().text(), "run");
    }
}
