//! The embedded search engine (the default): tantivy indexes under `data/search/`.
//!
//! Each generation is an index directory of its own (`gen-000001`, ...); the file `live` names
//! the one queries read, and promoting a rebuild rewrites it atomically (write, fsync, rename).
//! A generation's checkpoint travels in the payload of its tantivy commit, so documents and
//! checkpoint become durable together. One process at a time writes a generation (tantivy's
//! writer lock); others get a transient error and retry.
//!
//! The id of a named post's author is indexed (the stored document already holds it) so that
//! the documents of a user who unregisters are found by one term query. Generations made before
//! that field existed still open and answer queries, but cannot forget an author: the search
//! projection's version changed with the field, so such a generation is rebuilt and replaced.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use domain::{CommentId, Position, PostId, UserId};
use projections::search::{
    self, SearchCursor, SearchDocument, SearchHit, SearchIndex, SearchRequest, SearchResults,
};
use projections::{Change, CommentChange, Generation, Promotion, ReadModelError, ReadModelStore};

use super::unavailable;
use serde::{Deserialize, Serialize};
use tantivy::query::{BooleanQuery, BoostQuery, FuzzyTermQuery, Occur, Query, TermQuery};
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing,
    TextOptions, Value,
};
use tantivy::{
    DocAddress, Index, IndexReader, IndexSettings, IndexWriter, ReloadPolicy, TantivyDocument, Term,
};

/// Memory the writer may buffer before it flushes a segment.
const WRITER_BUDGET: usize = 64 * 1024 * 1024;

/// A generation's writer, indexing on one thread. tantivy's default is a thread per core, each
/// making a segment of its own at every commit: on two cores, two segments a second under
/// load for merges to join again, where the documents of a commit fit one.
fn writer_of(index: &Index) -> Result<IndexWriter, ReadModelError> {
    index
        .writer_with_num_threads(1, WRITER_BUDGET)
        .map_err(tantivy_error)
}

/// The size of the stored documents' compressed blocks (tantivy's default is 16 KiB). A hit
/// decompresses its whole block, so a small block makes a page of hits cheaper to read.
const DOCSTORE_BLOCK: usize = 4096;
/// Decompressed blocks each segment's reader keeps (tantivy's default is 100): 1 MiB.
const DOCSTORE_CACHE_BLOCKS: usize = 256;

/// Where the words of a document are searched.
#[derive(Clone, Copy)]
enum Searched {
    /// One field: the title's words three times, the body's twice, the comments' once, so a
    /// query word is one posting list (generations made since 2026-12-05).
    One(Field),
    /// A field per part, weighted at query time: a query word is the union of three posting
    /// lists (older generations; a rebuild moves them to `One`).
    PerPart {
        title: Field,
        body: Field,
        comments: Field,
    },
}

/// The schema's fields.
#[derive(Clone, Copy)]
struct Fields {
    /// The post's id on a post's document, the comment's on a comment's.
    id: Field,
    post_position: Field,
    tags: Field,
    searched: Searched,
    /// The named author's id; `None` in a generation older than the field.
    author_id: Option<Field>,
    doc: Field,
    /// Comments as documents of their own (generations made since 2026-12-05, thirteenth
    /// session); `None` in an older generation, whose post documents hold their comments.
    split: Option<Split>,
}

/// The fields of a generation whose comments are documents of their own.
#[derive(Clone, Copy)]
struct Split {
    /// The one weighted field of the searched words.
    terms: Field,
    /// On a comment's document: its post's id (stored, so a hit tells a comment from a post).
    comment_of: Field,
}

impl Fields {
    /// The schema of a new generation; [`Fields::of`] finds its fields again.
    fn schema() -> Schema {
        let mut b = Schema::builder();
        // The analysed terms are already cut and normalised: split them on spaces only.
        let terms = TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer("whitespace")
                .set_index_option(IndexRecordOption::WithFreqs),
        );
        b.add_text_field("id", STRING);
        b.add_u64_field("post_position", FAST | INDEXED);
        b.add_text_field("tags", STRING);
        b.add_text_field("terms", terms);
        b.add_text_field("author_id", STRING);
        b.add_text_field("doc", STORED);
        b.add_text_field("comment_of", STRING | STORED);
        // A post's comment count, written until 2026-12-07 (when a new comment stopped
        // rewriting its post's document) and read no more: hits count their post's comment
        // documents. Kept so that every generation since comments were split has one schema.
        b.add_u64_field("comment_count", STORED);
        b.build()
    }

    fn of(schema: &Schema) -> Result<Self, ReadModelError> {
        let f = |name: &str| {
            schema
                .get_field(name)
                .map_err(|e| backend(format!("search index schema: {e}")))
        };
        Ok(Self {
            id: f("id")?,
            post_position: f("post_position")?,
            tags: f("tags")?,
            searched: match schema.get_field("terms") {
                Ok(all) => Searched::One(all),
                Err(_) => Searched::PerPart {
                    title: f("title_terms")?,
                    body: f("body_terms")?,
                    comments: f("comment_terms")?,
                },
            },
            author_id: schema.get_field("author_id").ok(),
            doc: f("doc")?,
            split: match schema.get_field("comment_of") {
                Ok(comment_of) => Some(Split {
                    terms: f("terms")?,
                    comment_of,
                }),
                Err(_) => None,
            },
        })
    }

    /// The split fields; an error in a generation older than them, which is only read (its
    /// projection version is older, so a rebuild replaces it rather than writing it).
    fn split(&self) -> Result<Split, ReadModelError> {
        self.split.ok_or_else(|| {
            backend("this search index predates comment documents and must be rebuilt".into())
        })
    }

    /// The searched fields with their weights.
    fn weighted(&self) -> Vec<(Field, f32)> {
        match self.searched {
            Searched::One(all) => vec![(all, 1.0)],
            Searched::PerPart {
                title,
                body,
                comments,
            } => vec![(title, 3.0), (body, 2.0), (comments, 1.0)],
        }
    }

    fn id_term(&self, id: PostId) -> Term {
        Term::from_field_text(self.id, &id.to_string())
    }

    fn comment_term(&self, comment: CommentId) -> Term {
        Term::from_field_text(self.id, &comment.to_string())
    }

    /// The term of `author`'s documents; an error in a generation older than the field.
    fn author_term(&self, author: UserId) -> Result<Term, ReadModelError> {
        let field = self.author_id.ok_or_else(|| {
            backend("this search index predates author ids and must be rebuilt".into())
        })?;
        Ok(Term::from_field_text(field, &author.to_string()))
    }

    /// A post's own document (without its comments, which are documents of their own).
    fn post_document(&self, doc: &SearchDocument) -> Result<TantivyDocument, ReadModelError> {
        let split = self.split()?;
        let mut d = TantivyDocument::default();
        d.add_text(self.id, doc.id.to_string());
        d.add_u64(self.post_position, doc.post_position);
        for tag in &doc.tags {
            d.add_text(self.tags, tag);
        }
        // A word counts three times in a title, twice in the body, once in a comment (whose
        // document is its own).
        let (t, b) = (&doc.title_terms, &doc.body_terms);
        d.add_text(split.terms, format!("{t} {t} {t} {b} {b}"));
        if let (Some(field), Some(author)) = (self.author_id, doc.author_id) {
            d.add_text(field, author.to_string());
        }
        d.add_text(
            self.doc,
            serde_json::to_string(&Stored::of(doc)).map_err(|e| backend(e.to_string()))?,
        );
        Ok(d)
    }

    /// A comment's document: its own terms (none while it or its post is hidden), its post's
    /// id, position and tags (so a tag filter and the ranking's tie-break apply to it).
    fn comment_document(
        &self,
        post: &SearchDocument,
        comment: &search::SearchComment,
    ) -> Result<TantivyDocument, ReadModelError> {
        let split = self.split()?;
        let mut d = TantivyDocument::default();
        d.add_text(self.id, comment.comment_id.to_string());
        d.add_text(split.comment_of, post.id.to_string());
        d.add_u64(self.post_position, post.post_position);
        for tag in &post.tags {
            d.add_text(self.tags, tag);
        }
        if !post.hidden() && !comment.hidden() {
            d.add_text(
                split.terms,
                search::text::terms_field(Some(comment.body.as_str())),
            );
        }
        d.add_text(
            self.doc,
            serde_json::to_string(comment).map_err(|e| backend(e.to_string()))?,
        );
        Ok(d)
    }

    /// Writes what a batch made of one post: its own document when its own fields changed
    /// (a new comment does not rewrite it: its comment count is counted when it is read), and
    /// of the comments the batch touched those that are new, changed or gone; all of its
    /// documents when it is new or its visibility changed. `before` is how the post was
    /// stored. The work is the batch's, not the post's: a post with ten thousand comments
    /// costs a new comment what a post with none does.
    fn write(
        &self,
        writer: &IndexWriter,
        id: PostId,
        before: Option<&Shape>,
        doc: Option<&SearchDocument>,
    ) -> Result<(), ReadModelError> {
        let split = self.split()?;
        let post_term = || Term::from_field_text(split.comment_of, &id.to_string());
        let Some(doc) = doc else {
            writer.delete_term(self.id_term(id));
            writer.delete_term(post_term());
            return Ok(());
        };
        let add = |d: TantivyDocument| writer.add_document(d).map(|_| ()).map_err(tantivy_error);
        match before {
            Some(shape) if shape.hidden == doc.hidden() => {
                if shape.own != own_fields(doc) {
                    writer.delete_term(self.id_term(id));
                    add(self.post_document(doc)?)?;
                }
                for (comment, marks) in &shape.comments {
                    // A new comment is last, and a batch's comments are near the end.
                    let now = doc.comments.iter().rev().find(|c| c.comment_id == *comment);
                    match (marks, now) {
                        (Some(marks), Some(c)) if *marks == (c.folded, c.removed) => {}
                        (Some(_), Some(c)) => {
                            writer.delete_term(self.comment_term(*comment));
                            add(self.comment_document(doc, c)?)?;
                        }
                        (None, Some(c)) => add(self.comment_document(doc, c)?)?,
                        (Some(_), None) => {
                            writer.delete_term(self.comment_term(*comment));
                        }
                        (None, None) => {}
                    }
                }
            }
            _ => {
                writer.delete_term(self.id_term(id));
                add(self.post_document(doc)?)?;
                writer.delete_term(post_term());
                for c in &doc.comments {
                    add(self.comment_document(doc, c)?)?;
                }
            }
        }
        Ok(())
    }

    /// Whether a stored document is a comment's, and then of which post.
    fn comment_of(&self, d: &TantivyDocument) -> Option<PostId> {
        let split = self.split?;
        d.get_first(split.comment_of)
            .and_then(|v| v.as_str())
            .and_then(|s| uuid::Uuid::parse_str(s).ok())
            .map(PostId::new)
    }

    /// How many comments post `doc` has: its live comment documents, each hidden one too
    /// (counted from the postings of its id, a segment without deletions by its term's
    /// document frequency); an older generation's documents hold their comments.
    fn comment_count(
        &self,
        searcher: &tantivy::Searcher,
        doc: &SearchDocument,
    ) -> Result<usize, ReadModelError> {
        use tantivy::{DocSet, TERMINATED};
        let Some(split) = self.split else {
            return Ok(doc.comments.len());
        };
        let term = Term::from_field_text(split.comment_of, &doc.id.to_string());
        let mut count = 0;
        for reader in searcher.segment_readers() {
            let index = reader
                .inverted_index(split.comment_of)
                .map_err(tantivy_error)?;
            let Some(alive) = reader.alive_bitset() else {
                count += index
                    .doc_freq(&term)
                    .map_err(|e| backend(format!("search index: {e}")))?
                    as usize;
                continue;
            };
            let Some(mut postings) = index
                .read_postings(&term, IndexRecordOption::Basic)
                .map_err(|e| backend(format!("search index: {e}")))?
            else {
                continue;
            };
            let mut d = postings.doc();
            while d != TERMINATED {
                count += usize::from(alive.is_alive(d));
                d = postings.advance();
            }
        }
        Ok(count)
    }

    fn read_comment(&self, d: &TantivyDocument) -> Result<search::SearchComment, ReadModelError> {
        self.stored(d, "comment")
    }

    fn read(&self, d: &TantivyDocument) -> Result<SearchDocument, ReadModelError> {
        self.stored(d, "document")
    }

    /// The stored JSON of a document, decoded.
    fn stored<T: serde::de::DeserializeOwned>(
        &self,
        d: &TantivyDocument,
        what: &str,
    ) -> Result<T, ReadModelError> {
        let json = d
            .get_first(self.doc)
            .and_then(|v| v.as_str())
            .ok_or_else(|| backend("search document without its stored body".into()))?;
        serde_json::from_str(json).map_err(|e| backend(format!("stored search {what}: {e}")))
    }
}

/// How a post was stored before a batch, as far as the batch's changes go: what decides which
/// of its documents it rewrites.
struct Shape {
    hidden: bool,
    /// A hash of its own stored fields ([`own_fields`]).
    own: u64,
    /// The comments the batch touches, each with its moderation marks (folded, removed) as
    /// stored, or `None` when it was not stored.
    comments: Vec<(CommentId, Option<(bool, bool)>)>,
}

impl Shape {
    fn of(doc: &SearchDocument, touched: &[Touched]) -> Self {
        // A document's position is at or past each of its comments' (the projection moves it
        // with every comment, and one read back takes it from them: `position_of`).
        let stored_up_to = doc.position;
        Self {
            hidden: doc.hidden(),
            own: own_fields(doc),
            comments: touched
                .iter()
                .map(|t| {
                    let marks = match t.inserted_at {
                        // Inserted past the stored document: not stored, no need to look.
                        Some(at) if at > stored_up_to => None,
                        _ => doc
                            .comments
                            .iter()
                            .rev()
                            .find(|c| c.comment_id == t.comment)
                            .map(|c| (c.folded, c.removed)),
                    };
                    (t.comment, marks)
                })
                .collect(),
        }
    }
}

/// A comment a batch's changes touch.
struct Touched {
    comment: CommentId,
    /// Where the batch inserts it, if it does.
    inserted_at: Option<Position>,
}

/// The comments each post's changes in a batch touch, each once, in the batch's order.
fn comments_touched(changes: &[Change]) -> HashMap<PostId, Vec<Touched>> {
    let mut touched: HashMap<PostId, Vec<Touched>> = HashMap::new();
    let mut seen: HashMap<CommentId, (PostId, usize)> = HashMap::new();
    for change in changes {
        let (post_id, comment, inserted_at) = match change {
            Change::Comments(CommentChange::InsertComment {
                post_id,
                comment_id,
                position,
                ..
            }) => (*post_id, *comment_id, Some(*position)),
            Change::Comments(
                CommentChange::DeleteComment {
                    post_id,
                    comment_id,
                }
                | CommentChange::Fold {
                    post_id,
                    comment_id,
                    ..
                }
                | CommentChange::Remove {
                    post_id,
                    comment_id,
                    ..
                },
            ) => (*post_id, *comment_id, None),
            _ => continue,
        };
        let ids = touched.entry(post_id).or_default();
        match seen.get(&comment) {
            Some(&(post, i)) if post == post_id => {
                let t = &mut ids[i];
                t.inserted_at = t.inserted_at.or(inserted_at);
            }
            _ => {
                seen.insert(comment, (post_id, ids.len()));
                ids.push(Touched {
                    comment,
                    inserted_at,
                });
            }
        }
    }
    touched
}

/// A hash of what a post's own document holds but its position: what, changed, makes a batch
/// write that document again.
fn own_fields(d: &SearchDocument) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (
        &d.id,
        d.post_position,
        &d.author_name,
        &d.author_id,
        d.anonymous,
        &d.title,
        &d.body,
        &d.tags,
        &d.created_at,
        d.folded,
        d.removed,
    )
        .hash(&mut h);
    h.finish()
}

/// A document's position as its stored documents give it, whatever batches wrote them: the
/// post's own, or its latest comment's. A post's own document is not written again for a new
/// comment, so its stored position is not kept.
fn position_of(doc: &SearchDocument) -> Position {
    doc.comments
        .iter()
        .map(|c| c.position)
        .fold(doc.post_position, Position::max)
}

/// A post's document as the index stores it: without its analysed terms, which follow from
/// its text, and without its comments, which are documents of their own. Reading it back
/// gives empty terms; [`Gen::load`] makes them again.
#[derive(Serialize)]
struct Stored<'a> {
    id: &'a PostId,
    post_position: Position,
    position: Position,
    author_name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    author_id: Option<UserId>,
    anonymous: bool,
    title: &'a Option<String>,
    body: &'a str,
    tags: &'a [String],
    created_at: &'a chrono::DateTime<chrono::Utc>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    folded: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    removed: bool,
}

impl<'a> Stored<'a> {
    fn of(d: &'a SearchDocument) -> Self {
        Self {
            id: &d.id,
            post_position: d.post_position,
            position: d.position,
            author_name: &d.author_name,
            author_id: d.author_id,
            anonymous: d.anonymous,
            title: &d.title,
            body: &d.body,
            tags: &d.tags,
            created_at: &d.created_at,
            folded: d.folded,
            removed: d.removed,
        }
    }
}

/// What a commit of a generation records beside its documents.
#[derive(Debug, Serialize, Deserialize)]
struct Checkpoint {
    version: u32,
    position: Position,
}

/// One generation's index, reader and (while this process writes it) writer.
struct Gen {
    number: u32,
    index: Index,
    reader: IndexReader,
    fields: Fields,
    writer: Mutex<Option<IndexWriter>>,
    /// A checkpoint the reader's view is known to include.
    seen: AtomicU64,
    /// The documents this process last wrote, as of the checkpoint they reflect: a busy post's
    /// document is then not read back and decoded from the index for every batch. Only used
    /// while the checkpoint on disk is still that one (no other process wrote since).
    recent: Mutex<Recent>,
}

/// Recently written documents (at most [`Recent::CAPACITY`]) as of `position`.
struct Recent {
    position: Option<Position>,
    docs: lru::LruCache<PostId, SearchDocument>,
}

impl Recent {
    const CAPACITY: usize = 256;

    fn new() -> Self {
        Self {
            position: None,
            docs: lru::LruCache::new(std::num::NonZeroUsize::new(Self::CAPACITY).expect("> 0")),
        }
    }
}

impl Gen {
    fn checkpoint(&self) -> Result<Checkpoint, ReadModelError> {
        let metas = self.index.load_metas().map_err(tantivy_error)?;
        let payload = metas
            .payload
            .ok_or_else(|| backend(format!("generation {} has no checkpoint", self.number)))?;
        serde_json::from_str(&payload).map_err(|e| backend(format!("checkpoint: {e}")))
    }

    fn generation(&self) -> Result<Generation, ReadModelError> {
        let c = self.checkpoint()?;
        Ok(Generation {
            number: self.number,
            version: c.version,
            position: c.position,
        })
    }

    fn commit(&self, writer: &mut IndexWriter, checkpoint: &Checkpoint) -> tantivy::Result<()> {
        let mut prepared = writer.prepare_commit()?;
        prepared.set_payload(&serde_json::to_string(checkpoint).unwrap_or_default());
        prepared.commit()?;
        self.reader.reload()?;
        self.seen.fetch_max(checkpoint.position, Ordering::Relaxed);
        Ok(())
    }

    /// Reloads the reader if the checkpoint on disk is past what it has seen (another process
    /// committed), so that queries see a position before anyone is told it was reached.
    fn catch_up_reader(&self, position: Position) -> Result<(), ReadModelError> {
        if position > self.seen.load(Ordering::Relaxed) {
            self.reader.reload().map_err(tantivy_error)?;
            self.seen.fetch_max(position, Ordering::Relaxed);
        }
        Ok(())
    }

    /// The stored documents of `ids` that exist, as of checkpoint `at`: from the recently
    /// written ones when they are as of `at`, else from the index.
    fn load(
        &self,
        ids: &[PostId],
        at: Position,
    ) -> Result<HashMap<PostId, SearchDocument>, ReadModelError> {
        let mut found = HashMap::new();
        let mut missing = Vec::new();
        {
            let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
            if recent.position != Some(at) {
                *recent = Recent::new();
            }
            for id in ids {
                match recent.docs.pop(id) {
                    Some(doc) => {
                        found.insert(*id, doc);
                    }
                    None => missing.push(*id),
                }
            }
        }
        let searcher = self.reader.searcher();
        for id in &missing {
            if let Some(d) = post_of(&searcher, self.fields, *id)? {
                let doc = self.whole(&searcher, &d)?;
                found.insert(*id, doc);
            }
        }
        Ok(found)
    }

    /// A stored post document with its comments (from their own documents) and its terms.
    fn whole(
        &self,
        searcher: &tantivy::Searcher,
        d: &TantivyDocument,
    ) -> Result<SearchDocument, ReadModelError> {
        let f = self.fields;
        let mut doc = f.read(d)?;
        let split = f.split()?;
        let comments = Term::from_field_text(split.comment_of, &doc.id.to_string());
        for c in documents_with(searcher, &comments, usize::MAX)? {
            doc.comments.push(f.read_comment(&c)?);
        }
        doc.comments.sort_by_key(|c| c.position);
        doc.position = position_of(&doc);
        doc.analyse_with(search::Terms::PostOnly);
        Ok(doc)
    }

    /// The stored documents of `authors`, each author's found by its term. The index holds
    /// the same documents as [`Recent`] (both are as of the last commit), so reading it is
    /// enough.
    fn load_authored(
        &self,
        authors: impl IntoIterator<Item = UserId>,
    ) -> Result<HashMap<PostId, SearchDocument>, ReadModelError> {
        let searcher = self.reader.searcher();
        let mut found = HashMap::new();
        for author in authors {
            let theirs = self.fields.author_term(author)?;
            for d in documents_with(&searcher, &theirs, usize::MAX)? {
                let doc = self.whole(&searcher, &d)?;
                found.insert(doc.id, doc);
            }
        }
        Ok(found)
    }
}

/// The stored document of post `id`, if the index has it.
fn post_of(
    searcher: &tantivy::Searcher,
    f: Fields,
    id: PostId,
) -> Result<Option<TantivyDocument>, ReadModelError> {
    Ok(documents_with(searcher, &f.id_term(id), 1)?.pop())
}

/// The stored documents (at most `limit`) that hold `term`, read from its postings in each
/// segment, without a query's weights and collectors (a page of hits found through comments
/// looks up one post each).
fn documents_with(
    searcher: &tantivy::Searcher,
    term: &Term,
    limit: usize,
) -> Result<Vec<TantivyDocument>, ReadModelError> {
    use tantivy::{DocSet, TERMINATED};
    let mut found = Vec::new();
    for (ord, reader) in searcher.segment_readers().iter().enumerate() {
        let postings = reader
            .inverted_index(term.field())
            .map_err(tantivy_error)?
            .read_postings(term, IndexRecordOption::Basic)
            .map_err(|e| backend(format!("search index: {e}")))?;
        let Some(mut postings) = postings else {
            continue;
        };
        let ord = tantivy::SegmentOrdinal::try_from(ord)
            .map_err(|_| backend("too many search segments".into()))?;
        let alive = reader.alive_bitset();
        let mut doc = postings.doc();
        while doc != TERMINATED {
            if found.len() >= limit {
                return Ok(found);
            }
            if alive.is_none_or(|a| a.is_alive(doc)) {
                let address = DocAddress::new(ord, doc);
                found.push(searcher.doc(address).map_err(tantivy_error)?);
            }
            doc = postings.advance();
        }
    }
    Ok(found)
}

/// The embedded engine over a directory of generations.
pub struct EmbeddedSearch {
    root: PathBuf,
    open: Mutex<HashMap<u32, Arc<Gen>>>,
}

impl EmbeddedSearch {
    /// Opens (creating if needed) the engine in `root`, e.g. `data/search`.
    pub fn open(root: &Path) -> Result<Self, ReadModelError> {
        std::fs::create_dir_all(root)
            .map_err(|e| unavailable(format!("search directory {}: {e}", root.display())))?;
        Ok(Self {
            root: root.to_owned(),
            open: Mutex::default(),
        })
    }

    fn dir(&self, number: u32) -> PathBuf {
        self.root.join(format!("gen-{number:06}"))
    }

    fn live_number(&self) -> Result<Option<u32>, ReadModelError> {
        match std::fs::read_to_string(self.root.join("live")) {
            Ok(text) => text
                .trim()
                .parse()
                .map(Some)
                .map_err(|e| backend(format!("search `live` file: {e}"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(unavailable(format!("search `live` file: {e}"))),
        }
    }

    /// Every generation directory on disk.
    fn numbers(&self) -> Result<Vec<u32>, ReadModelError> {
        let entries = std::fs::read_dir(&self.root).map_err(|e| unavailable(e.to_string()))?;
        Ok(entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str()?.strip_prefix("gen-")?.parse().ok())
            .collect())
    }

    fn generation_handle(&self, number: u32) -> Result<Arc<Gen>, ReadModelError> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(g) = open.get(&number) {
            return Ok(g.clone());
        }
        let dir = self.dir(number);
        if !dir.exists() {
            return Err(ReadModelError::Superseded {
                projection: search::NAME.into(),
                generation: number,
            });
        }
        let index = Index::open_in_dir(&dir).map_err(tantivy_error)?;
        let g = Arc::new(Self::handle(number, index)?);
        open.insert(number, g.clone());
        Ok(g)
    }

    fn handle(number: u32, index: Index) -> Result<Gen, ReadModelError> {
        let fields = Fields::of(&index.schema())?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .doc_store_cache_num_blocks(DOCSTORE_CACHE_BLOCKS)
            .try_into()
            .map_err(tantivy_error)?;
        Ok(Gen {
            number,
            index,
            reader,
            fields,
            writer: Mutex::new(None),
            seen: AtomicU64::new(0),
            recent: Mutex::new(Recent::new()),
        })
    }

    fn forget(&self, keep: impl Fn(u32) -> bool) {
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|n, _| keep(*n));
    }

    fn live_gen(&self) -> Result<Arc<Gen>, ReadModelError> {
        let number = self
            .live_number()?
            .ok_or_else(|| unavailable("the search index has not been built yet".into()))?;
        self.generation_handle(number)
    }

    fn create_blocking(&self, version: u32) -> Result<Generation, ReadModelError> {
        let live = self.live_number()?;
        // Unfinished generations of an earlier rebuild are dropped.
        for n in self.numbers()? {
            if Some(n) != live {
                self.forget(|k| k != n);
                let _ = std::fs::remove_dir_all(self.dir(n));
            }
        }
        let number = live.unwrap_or(0) + 1;
        let dir = self.dir(number);
        std::fs::create_dir_all(&dir).map_err(|e| unavailable(e.to_string()))?;
        let index = Index::builder()
            .schema(Fields::schema())
            .settings(IndexSettings {
                docstore_blocksize: DOCSTORE_BLOCK,
                ..IndexSettings::default()
            })
            .create_in_dir(&dir)
            .map_err(tantivy_error)?;
        let g = Self::handle(number, index)?;
        let mut writer = writer_of(&g.index)?;
        g.commit(
            &mut writer,
            &Checkpoint {
                version,
                position: 0,
            },
        )
        .map_err(tantivy_error)?;
        *g.writer.lock().unwrap_or_else(|p| p.into_inner()) = Some(writer);
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(number, Arc::new(g));
        Ok(Generation {
            number,
            version,
            position: 0,
        })
    }

    fn apply_blocking(
        &self,
        number: u32,
        changes: &[Change],
        from: Position,
        to: Position,
    ) -> Result<(), ReadModelError> {
        if self.live_number()?.is_some_and(|l| l > number) {
            return Err(ReadModelError::Superseded {
                projection: search::NAME.into(),
                generation: number,
            });
        }
        let g = self.generation_handle(number)?;
        let mut slot = g.writer.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            // Another process may have written since this one last looked.
            *slot = Some(writer_of(&g.index)?);
            g.reader.reload().map_err(tantivy_error)?;
        }
        let Some(writer) = slot.as_mut() else {
            return Err(backend("search writer missing".into()));
        };
        let checkpoint = g.checkpoint()?;
        if checkpoint.position != from {
            return Err(ReadModelError::Moved {
                projection: search::NAME.into(),
                generation: number,
                position: checkpoint.position,
            });
        }
        let ids: Vec<PostId> = search::touched(changes).into_iter().collect();
        let mut stored = g.load_authored(search::forgotten(changes))?;
        // A document both touched and authored by a forgotten author is the same either way.
        stored.extend(g.load(&ids, checkpoint.position)?);
        let touched = comments_touched(changes);
        let before: HashMap<PostId, Shape> = stored
            .iter()
            .map(|(id, d)| {
                let t = touched.get(id).map_or(&[][..], Vec::as_slice);
                (*id, Shape::of(d, t))
            })
            .collect();
        let outcome = search::apply_changes_with(stored, changes, search::Terms::PostOnly)?;
        for (id, doc) in &outcome {
            g.fields.write(writer, *id, before.get(id), doc.as_ref())?;
        }
        let result = g.commit(
            writer,
            &Checkpoint {
                version: checkpoint.version,
                position: to,
            },
        );
        let mut recent = g.recent.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = result {
            // A failed commit leaves the writer unusable; the next batch opens a new one.
            *slot = None;
            *recent = Recent::new();
            return Err(tantivy_error(e));
        }
        recent.position = Some(to);
        for (id, doc) in outcome {
            match doc {
                Some(doc) => {
                    recent.docs.put(id, doc);
                }
                None => {
                    recent.docs.pop(&id);
                }
            }
        }
        Ok(())
    }

    fn promote_blocking(&self, number: u32) -> Result<Promotion, ReadModelError> {
        let candidate = self.generation_handle(number)?.generation()?;
        if let Some(live) = self.live_number()? {
            if live == number {
                return Ok(Promotion::Done);
            }
            let live_position = self.generation_handle(live)?.generation()?.position;
            if live_position > candidate.position {
                return Ok(Promotion::Behind { live_position });
            }
        }
        let tmp = self.root.join("live.tmp");
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(number.to_string().as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, self.root.join("live"))?;
            std::fs::File::open(&self.root)?.sync_all()
        };
        write().map_err(|e| unavailable(format!("switching the live search index: {e}")))?;
        // Queries now read `number`; older generations go.
        self.forget(|n| n >= number);
        for n in self.numbers()? {
            if n < number {
                let _ = std::fs::remove_dir_all(self.dir(n));
            }
        }
        Ok(Promotion::Done)
    }

    fn search_blocking(&self, request: &SearchRequest) -> Result<SearchResults, ReadModelError> {
        let g = self.live_gen()?;
        let f = g.fields;
        let searcher = g.reader.searcher();
        // Exact first: a word the index knows is taken as meant, and only the others are
        // looked up with one typo (fuzzy queries cost most of a query's time). If that finds
        // nothing (the known word is only in removed documents), every word is tried again
        // with a typo.
        let terms = request.query.terms();
        let known: Vec<bool> = terms
            .iter()
            .map(|term| {
                term.typo_tolerant()
                    && f.weighted().into_iter().any(|(field, _)| {
                        searcher
                            .doc_freq(&Term::from_field_text(field, &term.text))
                            .map_or(true, |n| n > 0)
                    })
            })
            .collect();
        let (total, ranked) = Self::run_query(f, &searcher, request, &|i| !known[i])?;
        let (total, ranked) = if total == 0 && known.contains(&true) {
            Self::run_query(f, &searcher, request, &|_| true)?
        } else {
            (total, ranked)
        };
        let more = ranked.len() > request.limit;
        let skipped = request.after.map_or(0, |c| c.offset);
        let mut hits = Vec::with_capacity(request.limit);
        for (score, addr) in ranked.into_iter().take(request.limit) {
            let d: TantivyDocument = searcher.doc(addr).map_err(tantivy_error)?;
            // A comment matched best: the hit is its post, showing that comment.
            let (post, comment) = match f.comment_of(&d) {
                Some(post_id) => {
                    let comment = f.read_comment(&d)?;
                    let post = post_of(&searcher, f, post_id)?.ok_or_else(|| {
                        backend(format!("search comment without its post {post_id}"))
                    })?;
                    (post, Some(comment))
                }
                None => (d, None),
            };
            let mut document = f.read(&post)?;
            let comment_count = f.comment_count(&searcher, &document)?;
            if let Some(c) = comment {
                document.comments = vec![c];
            }
            hits.push(SearchHit {
                document,
                score,
                comment_count,
            });
        }
        let next = match hits.last() {
            Some(last) if more => Some(SearchCursor {
                offset: skipped + hits.len(),
                score: last.score,
                post_position: last.document.post_position,
            }),
            _ => None,
        };
        Ok(SearchResults { hits, next, total })
    }

    /// The hit count and the hits of the page (and one more, if there are more) of the
    /// request's words, the `i`-th looked up with one typo too when `fuzzy(i)` says so (and the
    /// word allows it), ranked by score, then by newest post.
    fn run_query(
        f: Fields,
        searcher: &tantivy::Searcher,
        request: &SearchRequest,
        fuzzy: &dyn Fn(usize) -> bool,
    ) -> Result<(usize, Vec<(f32, DocAddress)>), ReadModelError> {
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = request
            .query
            .terms()
            .iter()
            .enumerate()
            .map(|(i, term)| {
                let mut any: Vec<(Occur, Box<dyn Query>)> = Vec::new();
                for (field, weight) in f.weighted() {
                    let t = Term::from_field_text(field, &term.text);
                    any.push((
                        Occur::Should,
                        Box::new(BoostQuery::new(
                            Box::new(TermQuery::new(t.clone(), IndexRecordOption::WithFreqs)),
                            weight,
                        )),
                    ));
                    if term.typo_tolerant() && fuzzy(i) {
                        // Fuzzy matches score a constant, below exact ones.
                        any.push((
                            Occur::Should,
                            Box::new(BoostQuery::new(
                                Box::new(FuzzyTermQuery::new(t, 1, true)),
                                weight * 0.5,
                            )),
                        ));
                    }
                }
                (
                    Occur::Must,
                    Box::new(BooleanQuery::new(any)) as Box<dyn Query>,
                )
            })
            .collect();
        if let Some(tag) = &request.tag {
            clauses.push((
                Occur::Must,
                Box::new(TermQuery::new(
                    Term::from_field_text(f.tags, tag),
                    IndexRecordOption::Basic,
                )),
            ));
        }
        let query = BooleanQuery::new(clauses);
        rank(
            searcher,
            &query,
            request.limit + 1,
            request.after.map(|c| (c.score, c.post_position)),
        )
        .map_err(tantivy_error)
    }

    fn documents_blocking(&self) -> Result<Vec<SearchDocument>, ReadModelError> {
        let g = self.live_gen()?;
        let searcher = g.reader.searcher();
        let mut docs = HashMap::new();
        let mut comments = Vec::new();
        for segment in searcher.segment_readers() {
            let store = segment
                .get_store_reader(1)
                .map_err(|e| backend(format!("search store: {e}")))?;
            for doc in segment.doc_ids_alive() {
                let d: TantivyDocument = store.get(doc).map_err(tantivy_error)?;
                match g.fields.comment_of(&d) {
                    Some(post) => comments.push((post, g.fields.read_comment(&d)?)),
                    None => {
                        let doc = g.fields.read(&d)?;
                        docs.insert(doc.id, doc);
                    }
                }
            }
        }
        for (post, comment) in comments {
            docs.get_mut(&post)
                .ok_or_else(|| backend(format!("search comment without its post {post}")))?
                .comments
                .push(comment);
        }
        let mut docs: Vec<SearchDocument> = docs.into_values().collect();
        for doc in &mut docs {
            doc.comments.sort_by_key(|c| c.position);
            doc.position = position_of(doc);
        }
        docs.sort_by_key(|d| d.id);
        Ok(docs)
    }

    async fn blocking<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Self) -> Result<T, ReadModelError> + Send + 'static,
    ) -> Result<T, ReadModelError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || f(&this))
            .await
            .map_err(|e| backend(format!("search task: {e}")))?
    }
}

/// The engine behind an `Arc`, so its blocking work can move to the blocking pool.
#[derive(Clone)]
pub struct Embedded(Arc<EmbeddedSearch>);

/// A hit ranked by (score, post position), both descending: the position (unique) breaks ties.
#[derive(Clone, Copy)]
struct Ranking {
    score: f32,
    position: Position,
    doc: DocAddress,
}

impl Ranking {
    fn key(&self) -> (f32, Position) {
        (self.score, self.position)
    }
}

impl PartialEq for Ranking {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for Ranking {}

impl PartialOrd for Ranking {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Ranking {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.score
            .total_cmp(&other.score)
            .then(self.position.cmp(&other.position))
    }
}

/// Counts the posts that match `query` and keeps the best `limit` (at least one) strictly
/// after the cursor, in one pass over the matches. A post scores as its best document: its
/// own, or one of its comments'. Most matches cost their score, their post's position (a
/// fast field) and a bit: only a score that could enter the kept hits is compared further.
fn rank(
    searcher: &tantivy::Searcher,
    query: &dyn Query,
    limit: usize,
    after: Option<(f32, Position)>,
) -> tantivy::Result<(usize, Vec<(f32, DocAddress)>)> {
    let weight = query.weight(tantivy::query::EnableScoring::enabled_from_searcher(
        searcher,
    ))?;
    let mut seen = Seen::default();
    let mut kept = Kept::new(limit, after);
    for (ord, reader) in searcher.segment_readers().iter().enumerate() {
        let ord = tantivy::SegmentOrdinal::try_from(ord)
            .map_err(|_| tantivy::TantivyError::InternalError("too many segments".into()))?;
        let positions = reader.fast_fields().u64("post_position")?;
        let alive = reader.alive_bitset();
        let mut chunk = Chunk::default();
        weight.for_each(reader, &mut |doc, score| {
            if alive.is_some_and(|a| !a.is_alive(doc)) {
                return;
            }
            chunk.docs.push(doc);
            chunk.scores.push(score);
            if chunk.docs.len() == Chunk::SIZE {
                chunk.drain(ord, &positions, &mut seen, &mut kept);
            }
        })?;
        chunk.drain(ord, &positions, &mut seen, &mut kept);
    }
    Ok((seen.count(), kept.best_first()))
}

/// Matches waiting for their post positions, which the fast field decodes faster a chunk at a
/// time than one by one.
#[derive(Default)]
struct Chunk {
    docs: Vec<tantivy::DocId>,
    scores: Vec<f32>,
    positions: Vec<Option<u64>>,
}

impl Chunk {
    const SIZE: usize = 256;

    fn drain(
        &mut self,
        ord: tantivy::SegmentOrdinal,
        column: &tantivy::columnar::Column<u64>,
        seen: &mut Seen,
        kept: &mut Kept,
    ) {
        self.positions.clear();
        self.positions.resize(self.docs.len(), None);
        column.first_vals(&self.docs, &mut self.positions);
        for ((&doc, &score), position) in self.docs.iter().zip(&self.scores).zip(&self.positions) {
            let position = position.unwrap_or(0);
            seen.insert(position);
            kept.offer(score, position, DocAddress::new(ord, doc));
        }
        self.docs.clear();
        self.scores.clear();
    }
}

/// The posts seen, by position: a bit each, in pages of 4 096 positions made as matches reach
/// them, so a query over a long log pays for the pages its matches touch (and a pointer per
/// page of the log), not for a bit per event.
#[derive(Default)]
struct Seen {
    pages: Vec<Option<Box<[u64; 64]>>>,
    count: usize,
}

impl Seen {
    fn insert(&mut self, position: Position) {
        let page = usize::try_from(position >> 12).unwrap_or(usize::MAX);
        if page >= self.pages.len() {
            self.pages
                .resize_with(page.saturating_add(1).max(self.pages.len() * 2), || None);
        }
        let bits = self.pages[page].get_or_insert_with(|| Box::new([0; 64]));
        let (word, bit) = (((position >> 6) & 63) as usize, position & 63);
        if bits[word] & (1 << bit) == 0 {
            bits[word] |= 1 << bit;
            self.count += 1;
        }
    }

    fn count(&self) -> usize {
        self.count
    }
}

/// The best hits so far, one per post: at most `limit`, unordered, the worst one's index
/// kept (a page is small, so a linear scan is cheapest).
struct Kept {
    limit: usize,
    after: Option<(f32, Position)>,
    hits: Vec<Ranking>,
    worst: usize,
}

impl Kept {
    fn new(limit: usize, after: Option<(f32, Position)>) -> Self {
        Self {
            limit: limit.max(1),
            after,
            hits: Vec::with_capacity(limit.max(1)),
            worst: 0,
        }
    }

    fn offer(&mut self, score: f32, position: Position, doc: DocAddress) {
        if let Some((s, _)) = self.after
            && score > s
        {
            return;
        }
        let full = self.hits.len() >= self.limit;
        if full && score < self.hits[self.worst].score {
            return;
        }
        let hit = Ranking {
            score,
            position,
            doc,
        };
        if let Some(cursor) = self.after
            && hit.key() >= cursor
        {
            return;
        }
        if let Some(same) = self.hits.iter().position(|h| h.position == position) {
            // Another document of a kept post: the post keeps the better one.
            if hit > self.hits[same] {
                self.hits[same] = hit;
                self.find_worst();
            }
        } else if !full {
            self.hits.push(hit);
            self.find_worst();
        } else if hit > self.hits[self.worst] {
            self.hits[self.worst] = hit;
            self.find_worst();
        }
    }

    fn find_worst(&mut self) {
        self.worst = (0..self.hits.len())
            .min_by(|&a, &b| self.hits[a].cmp(&self.hits[b]))
            .unwrap_or(0);
    }

    fn best_first(mut self) -> Vec<(f32, DocAddress)> {
        self.hits.sort_unstable_by(|a, b| b.cmp(a));
        self.hits.into_iter().map(|r| (r.score, r.doc)).collect()
    }
}

impl Embedded {
    pub fn open(root: &Path) -> Result<Self, ReadModelError> {
        Ok(Self(Arc::new(EmbeddedSearch::open(root)?)))
    }
}

#[async_trait]
impl ReadModelStore for Embedded {
    async fn live(&self, projection: &str) -> Result<Option<Generation>, ReadModelError> {
        super::only_search(projection)?;
        self.0
            .blocking(|s| {
                let Some(number) = s.live_number()? else {
                    return Ok(None);
                };
                let g = s.generation_handle(number)?;
                let generation = g.generation()?;
                g.catch_up_reader(generation.position)?;
                Ok(Some(generation))
            })
            .await
    }

    async fn create_generation(
        &self,
        projection: &str,
        version: u32,
    ) -> Result<Generation, ReadModelError> {
        super::only_search(projection)?;
        self.0.blocking(move |s| s.create_blocking(version)).await
    }

    async fn apply(
        &self,
        projection: &str,
        generation: u32,
        changes: &[Change],
        from: Position,
        to: Position,
    ) -> Result<(), ReadModelError> {
        super::only_search(projection)?;
        let changes = changes.to_vec();
        self.0
            .blocking(move |s| s.apply_blocking(generation, &changes, from, to))
            .await
    }

    async fn promote(
        &self,
        projection: &str,
        generation: u32,
    ) -> Result<Promotion, ReadModelError> {
        super::only_search(projection)?;
        self.0
            .blocking(move |s| s.promote_blocking(generation))
            .await
    }

    async fn dump(&self, projection: &str) -> Result<Vec<String>, ReadModelError> {
        super::only_search(projection)?;
        super::dump(self.documents().await?)
    }
}

#[async_trait]
impl SearchIndex for Embedded {
    async fn search(&self, request: &SearchRequest) -> Result<SearchResults, ReadModelError> {
        let request = request.clone();
        self.0.blocking(move |s| s.search_blocking(&request)).await
    }

    async fn documents(&self) -> Result<Vec<SearchDocument>, ReadModelError> {
        self.0.blocking(|s| s.documents_blocking()).await
    }
}

fn backend(message: String) -> ReadModelError {
    ReadModelError::Backend(message)
}

fn tantivy_error(e: tantivy::TantivyError) -> ReadModelError {
    match e {
        // Another process holds the writer: try again later.
        tantivy::TantivyError::LockFailure(..) => unavailable(format!(
            "the search index is being written by another process: {e}"
        )),
        e => backend(format!("search index: {e}")),
    }
}
