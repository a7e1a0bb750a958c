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
use domain::{Position, PostId, UserId};
use projections::search::{
    self, SearchCursor, SearchDocument, SearchHit, SearchIndex, SearchRequest, SearchResults,
};
use projections::{Change, Generation, Promotion, ReadModelError, ReadModelStore};

use super::unavailable;
use serde::{Deserialize, Serialize};
use tantivy::collector::{Collector, DocSetCollector, SegmentCollector, TopDocs};
use tantivy::query::{BooleanQuery, BoostQuery, FuzzyTermQuery, Occur, Query, TermQuery};
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing,
    TextOptions, Value,
};
use tantivy::{
    DocAddress, Index, IndexReader, IndexSettings, IndexWriter, ReloadPolicy, TantivyDocument, Term,
};

/// Memory the writer may buffer before it flushes a segment (split over its threads).
const WRITER_BUDGET: usize = 64 * 1024 * 1024;

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
    id: Field,
    post_position: Field,
    tags: Field,
    searched: Searched,
    /// The named author's id; `None` in a generation older than the field.
    author_id: Option<Field>,
    doc: Field,
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

    /// The term of `author`'s documents; an error in a generation older than the field.
    fn author_term(&self, author: UserId) -> Result<Term, ReadModelError> {
        let field = self.author_id.ok_or_else(|| {
            backend("this search index predates author ids and must be rebuilt".into())
        })?;
        Ok(Term::from_field_text(field, &author.to_string()))
    }

    fn document(&self, doc: &SearchDocument) -> Result<TantivyDocument, ReadModelError> {
        let mut d = TantivyDocument::default();
        d.add_text(self.id, doc.id.to_string());
        d.add_u64(self.post_position, doc.post_position);
        for tag in &doc.tags {
            d.add_text(self.tags, tag);
        }
        match self.searched {
            Searched::One(all) => {
                // A word counts three times in a title, twice in the body, once in a comment.
                let t = &doc.title_terms;
                let b = &doc.body_terms;
                d.add_text(all, format!("{t} {t} {t} {b} {b} {}", doc.comment_terms));
            }
            Searched::PerPart {
                title,
                body,
                comments,
            } => {
                d.add_text(title, &doc.title_terms);
                d.add_text(body, &doc.body_terms);
                d.add_text(comments, &doc.comment_terms);
            }
        }
        if let (Some(field), Some(author)) = (self.author_id, doc.author_id) {
            d.add_text(field, author.to_string());
        }
        d.add_text(
            self.doc,
            serde_json::to_string(&Stored::of(doc)).map_err(|e| backend(e.to_string()))?,
        );
        Ok(d)
    }

    fn read(&self, d: &TantivyDocument) -> Result<SearchDocument, ReadModelError> {
        let json = d
            .get_first(self.doc)
            .and_then(|v| v.as_str())
            .ok_or_else(|| backend("search document without its stored body".into()))?;
        serde_json::from_str(json).map_err(|e| backend(format!("stored search document: {e}")))
    }
}

/// A document as the index stores it: without its analysed terms, which follow from its text
/// (about half its size: each batch serialises and compresses every touched post's document
/// whole). Reading it back gives empty terms; [`Gen::load`] makes them again.
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
    comments: &'a [search::SearchComment],
    created_at: &'a chrono::DateTime<chrono::Utc>,
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
            comments: &d.comments,
            created_at: &d.created_at,
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
            let query = TermQuery::new(self.fields.id_term(*id), IndexRecordOption::Basic);
            let hits = searcher
                .search(&query, &TopDocs::with_limit(1).order_by_score())
                .map_err(tantivy_error)?;
            if let Some((_, addr)) = hits.first() {
                let d: TantivyDocument = searcher.doc(*addr).map_err(tantivy_error)?;
                let mut doc = self.fields.read(&d)?;
                doc.ensure_terms();
                found.insert(*id, doc);
            }
        }
        Ok(found)
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
            let query = TermQuery::new(self.fields.author_term(author)?, IndexRecordOption::Basic);
            for addr in searcher
                .search(&query, &DocSetCollector)
                .map_err(tantivy_error)?
            {
                let d: TantivyDocument = searcher.doc(addr).map_err(tantivy_error)?;
                let mut doc = self.fields.read(&d)?;
                doc.ensure_terms();
                found.insert(doc.id, doc);
            }
        }
        Ok(found)
    }
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
        let mut writer = g.index.writer(WRITER_BUDGET).map_err(tantivy_error)?;
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
            *slot = Some(g.index.writer(WRITER_BUDGET).map_err(tantivy_error)?);
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
        let outcome = search::apply_changes(stored, changes)?;
        for (id, doc) in &outcome {
            writer.delete_term(g.fields.id_term(*id));
            if let Some(doc) = doc {
                writer
                    .add_document(g.fields.document(doc)?)
                    .map_err(tantivy_error)?;
            }
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
            hits.push(SearchHit {
                document: f.read(&d)?,
                score,
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
        let ranked = Ranked {
            limit: request.limit + 1,
            after: request.after.map(|c| (c.score, c.post_position)),
        };
        searcher.search(&query, &ranked).map_err(tantivy_error)
    }

    fn documents_blocking(&self) -> Result<Vec<SearchDocument>, ReadModelError> {
        let g = self.live_gen()?;
        let searcher = g.reader.searcher();
        let mut docs = Vec::new();
        for segment in searcher.segment_readers() {
            let store = segment
                .get_store_reader(1)
                .map_err(|e| backend(format!("search store: {e}")))?;
            for doc in segment.doc_ids_alive() {
                let d: TantivyDocument = store.get(doc).map_err(tantivy_error)?;
                docs.push(g.fields.read(&d)?);
            }
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

/// Counts every match and keeps the best `limit` strictly after the cursor, in one pass. A
/// hit's post position (the tie-breaker, from a fast field) is read only when its score could
/// enter the kept hits or equals the cursor's, so most matches cost their score alone.
struct Ranked {
    /// At least one: a page's size plus the hit that says whether more follow.
    limit: usize,
    after: Option<(f32, Position)>,
}

struct SegmentRanked {
    segment: tantivy::SegmentOrdinal,
    positions: tantivy::columnar::Column<u64>,
    limit: usize,
    after: Option<(f32, Position)>,
    count: usize,
    /// The kept hits, worst on top.
    kept: std::collections::BinaryHeap<std::cmp::Reverse<Ranking>>,
}

impl Collector for Ranked {
    type Fruit = (usize, Vec<(f32, DocAddress)>);
    type Child = SegmentRanked;

    fn for_segment(
        &self,
        segment: tantivy::SegmentOrdinal,
        reader: &tantivy::SegmentReader,
    ) -> tantivy::Result<SegmentRanked> {
        Ok(SegmentRanked {
            segment,
            positions: reader.fast_fields().u64("post_position")?,
            limit: self.limit,
            after: self.after,
            count: 0,
            kept: std::collections::BinaryHeap::with_capacity(self.limit + 1),
        })
    }

    fn requires_scoring(&self) -> bool {
        true
    }

    fn merge_fruits(&self, segments: Vec<(usize, Vec<Ranking>)>) -> tantivy::Result<Self::Fruit> {
        let total = segments.iter().map(|(n, _)| n).sum();
        let mut all: Vec<Ranking> = segments.into_iter().flat_map(|(_, r)| r).collect();
        all.sort_unstable_by(|a, b| b.cmp(a));
        all.truncate(self.limit);
        Ok((total, all.into_iter().map(|r| (r.score, r.doc)).collect()))
    }
}

impl SegmentCollector for SegmentRanked {
    type Fruit = (usize, Vec<Ranking>);

    fn collect(&mut self, doc: tantivy::DocId, score: tantivy::Score) {
        self.count += 1;
        if let Some((s, _)) = self.after
            && score > s
        {
            return;
        }
        let full = self.kept.len() >= self.limit;
        if full && self.kept.peek().is_some_and(|w| score < w.0.score) {
            return;
        }
        let hit = Ranking {
            score,
            position: self.positions.first(doc).unwrap_or(0),
            doc: DocAddress::new(self.segment, doc),
        };
        if let Some(cursor) = self.after
            && hit.key() >= cursor
        {
            return;
        }
        if !full {
            self.kept.push(std::cmp::Reverse(hit));
        } else if let Some(mut worst) = self.kept.peek_mut()
            && hit > worst.0
        {
            *worst = std::cmp::Reverse(hit);
        }
    }

    fn harvest(self) -> Self::Fruit {
        (self.count, self.kept.into_iter().map(|r| r.0).collect())
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
