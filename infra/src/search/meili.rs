//! Meilisearch as the search engine (selected by `TREEHOLE_MEILI_URL`).
//!
//! Queries read the index `<uid>`; a rebuild fills `<uid>_build` and Meilisearch's index swap
//! makes it live atomically. Each index holds, beside its post documents (`kind = "post"`), one
//! checkpoint document (`kind = "checkpoint"`) with its generation number, code version and
//! position. It is uploaded in the same task as the batch's documents, so the two become
//! visible together, and it moves with its documents when the indexes are swapped.
//! Documents are the analysed ones of `projections::search`, and the index settings make
//! Meilisearch match them as the embedded engine does: every word must match, one typo from
//! five characters on, no prefix matching, ties broken by the newest post. A named post's
//! `author_id` is filterable (never searchable), so that the documents of a user who
//! unregisters are found by a filter; documents are always replaced whole, so one that forgot
//! its author loses the field.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use domain::{Position, PostId, UserId};
use meilisearch_sdk::client::{Client, SwapIndexes};
use meilisearch_sdk::documents::DocumentsQuery;
use meilisearch_sdk::errors::{Error as MeiliError, ErrorCode, MeilisearchError};
use meilisearch_sdk::indexes::Index;
use meilisearch_sdk::search::MatchingStrategies;
use meilisearch_sdk::settings::{
    MinWordSizeForTypos, PaginationSetting, PrefixSearchSettings, Settings, TypoToleranceSettings,
};
use meilisearch_sdk::task_info::TaskInfo;
use projections::search::{
    self, SearchCursor, SearchDocument, SearchHit, SearchIndex, SearchRequest, SearchResults,
};
use projections::{Change, Generation, Promotion, ReadModelError, ReadModelStore};

use super::unavailable;
use serde::{Deserialize, Serialize};

/// How long to wait for a Meilisearch task before calling the batch failed (it is retried).
const TASK_TIMEOUT: Duration = Duration::from_secs(120);
const CHECKPOINT_ID: &str = "treehole-checkpoint";
/// Documents fetched per request when listing an index.
const PAGE: usize = 1000;

/// A post document as uploaded: the shared document plus its kind.
#[derive(Serialize)]
struct Upload<'a> {
    kind: &'static str,
    #[serde(flatten)]
    doc: &'a SearchDocument,
}

/// The checkpoint document of an index.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Checkpoint {
    id: String,
    kind: String,
    generation: u32,
    version: u32,
    position: Position,
}

impl Checkpoint {
    fn new(generation: u32, version: u32, position: Position) -> Self {
        Self {
            id: CHECKPOINT_ID.into(),
            kind: "checkpoint".into(),
            generation,
            version,
            position,
        }
    }

    fn generation(&self) -> Generation {
        Generation {
            number: self.generation,
            version: self.version,
            position: self.position,
        }
    }
}

/// The Meilisearch engine.
pub struct MeiliSearch {
    client: Client,
    live_uid: String,
    build_uid: String,
    url: String,
}

impl MeiliSearch {
    /// Connects to `url` and checks that Meilisearch answers; `uid` names the live index.
    pub async fn connect(url: &str, key: Option<&str>, uid: &str) -> Result<Self, ReadModelError> {
        let client = Client::new(url, key)
            .map_err(|e| unavailable(format!("Meilisearch client for {url}: {e}")))?;
        let this = Self {
            client,
            live_uid: uid.to_owned(),
            build_uid: format!("{uid}_build"),
            url: url.to_owned(),
        };
        this.client
            .health()
            .await
            .map_err(|e| this.error("reaching Meilisearch", e))?;
        // A wrong key fails here rather than at the first batch.
        this.client
            .get_indexes()
            .await
            .map_err(|e| this.error("listing indexes", e))?;
        Ok(this)
    }

    /// Deletes this engine's live and build indexes, with every document and checkpoint in
    /// them: how a test (or an operator retiring a deployment) leaves the server as it found it.
    pub async fn delete_indexes(&self) -> Result<(), ReadModelError> {
        self.delete_index(&self.live_uid).await?;
        self.delete_index(&self.build_uid).await
    }

    fn error(&self, doing: &str, e: MeiliError) -> ReadModelError {
        match e {
            MeiliError::HttpError(_) | MeiliError::Timeout => unavailable(format!(
                "Meilisearch at {} is unreachable ({doing}): {e}",
                self.url
            )),
            e => ReadModelError::Backend(format!("Meilisearch ({doing}): {e}")),
        }
    }

    async fn wait(&self, doing: &str, task: TaskInfo) -> Result<(), ReadModelError> {
        self.outcome(doing, task)
            .await?
            .map_err(|e| failed(doing, &e))
    }

    /// Waits for `task`: the task's own failure inside, a failure to wait outside.
    async fn outcome(
        &self,
        doing: &str,
        task: TaskInfo,
    ) -> Result<Result<(), MeilisearchError>, ReadModelError> {
        let task = task
            .wait_for_completion(
                &self.client,
                Some(Duration::from_millis(20)),
                Some(TASK_TIMEOUT),
            )
            .await
            .map_err(|e| self.error(doing, e))?;
        Ok(if task.is_failure() {
            Err(task.unwrap_failure())
        } else {
            Ok(())
        })
    }

    /// The checkpoint of index `uid`, or `None` if the index does not exist.
    async fn checkpoint(&self, uid: &str) -> Result<Option<Checkpoint>, ReadModelError> {
        match self
            .client
            .index(uid)
            .get_document::<Checkpoint>(CHECKPOINT_ID)
            .await
        {
            Ok(c) => Ok(Some(c)),
            Err(MeiliError::Meilisearch(e))
                if matches!(
                    e.error_code,
                    ErrorCode::IndexNotFound | ErrorCode::DocumentNotFound
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(self.error("reading the checkpoint", e)),
        }
    }

    /// Creates index `uid` with the settings both engines agree on.
    async fn create_index(&self, uid: &str) -> Result<Index, ReadModelError> {
        let task = self
            .client
            .create_index(uid, Some("id"))
            .await
            .map_err(|e| self.error("creating an index", e))?;
        self.wait("creating an index", task).await?;
        let index = self.client.index(uid);
        let settings = Settings::new()
            .with_searchable_attributes(["title_terms", "body_terms", "comment_terms"])
            .with_filterable_attributes(["id", "kind", "tags", "author_id"])
            .with_sortable_attributes(["post_position"])
            .with_ranking_rules([
                "words",
                "typo",
                "proximity",
                "attribute",
                "exactness",
                "post_position:desc",
            ])
            .with_typo_tolerance(TypoToleranceSettings {
                enabled: Some(true),
                min_word_size_for_typos: Some(MinWordSizeForTypos {
                    one_typo: Some(
                        u8::try_from(search::text::TYPO_MIN_CHARS).expect("a small constant"),
                    ),
                    two_typos: Some(255),
                }),
                ..TypoToleranceSettings::default()
            })
            .with_pagination(PaginationSetting {
                max_total_hits: 100_000,
            });
        let task = index
            .set_settings(&settings)
            .await
            .map_err(|e| self.error("applying index settings", e))?;
        self.wait("applying index settings", task).await?;
        let task = index
            .set_prefix_search(PrefixSearchSettings::Disabled)
            .await
            .map_err(|e| self.error("turning prefix search off", e))?;
        self.wait("turning prefix search off", task).await?;
        Ok(index)
    }

    async fn delete_index(&self, uid: &str) -> Result<(), ReadModelError> {
        let doing = "deleting an index";
        let task = self
            .client
            .index(uid)
            .delete()
            .await
            .map_err(|e| self.error(doing, e))?;
        match self.outcome(doing, task).await? {
            // Deleting an index that is not there is fine.
            Err(e) if e.error_code != ErrorCode::IndexNotFound => Err(failed(doing, &e)),
            _ => Ok(()),
        }
    }

    /// The index holding generation `number`, and its checkpoint.
    async fn holding(&self, number: u32) -> Result<(String, Checkpoint), ReadModelError> {
        let live = self.checkpoint(&self.live_uid).await?;
        if let Some(c) = &live
            && c.generation == number
        {
            return Ok((self.live_uid.clone(), c.clone()));
        }
        if let Some(c) = self.checkpoint(&self.build_uid).await?
            && c.generation == number
        {
            return Ok((self.build_uid.clone(), c));
        }
        Err(ReadModelError::Superseded {
            projection: search::NAME.into(),
            generation: number,
        })
    }

    async fn load(
        &self,
        index: &Index,
        ids: &[PostId],
    ) -> Result<HashMap<PostId, SearchDocument>, ReadModelError> {
        let mut found = HashMap::new();
        for chunk in ids.chunks(PAGE) {
            let list: Vec<String> = chunk.iter().map(|id| format!("\"{id}\"")).collect();
            let filter = format!("kind = \"post\" AND id IN [{}]", list.join(", "));
            let docs = DocumentsQuery::new(index)
                .with_filter(&filter)
                .with_limit(chunk.len())
                .execute::<SearchDocument>()
                .await
                .map_err(|e| self.error("loading documents", e))?;
            found.extend(docs.results.into_iter().map(|d| (d.id, d)));
        }
        Ok(found)
    }

    /// The stored documents of `authors`, page by page (nothing writes the index meanwhile:
    /// the batch's own upload comes after).
    async fn load_authored(
        &self,
        index: &Index,
        authors: impl IntoIterator<Item = UserId>,
    ) -> Result<HashMap<PostId, SearchDocument>, ReadModelError> {
        let mut found = HashMap::new();
        for author in authors {
            // A UserId is a UUID: nothing in it needs escaping.
            let filter = format!("kind = \"post\" AND author_id = \"{author}\"");
            let mut offset = 0;
            loop {
                let page = DocumentsQuery::new(index)
                    .with_filter(&filter)
                    .with_offset(offset)
                    .with_limit(PAGE)
                    .execute::<SearchDocument>()
                    .await
                    .map_err(|e| self.error("loading an author's documents", e))?;
                let n = page.results.len();
                offset += n;
                found.extend(page.results.into_iter().map(|d| (d.id, d)));
                if n < PAGE {
                    break;
                }
            }
        }
        Ok(found)
    }
}

#[async_trait]
impl ReadModelStore for MeiliSearch {
    async fn live(&self, projection: &str) -> Result<Option<Generation>, ReadModelError> {
        super::only_search(projection)?;
        Ok(self
            .checkpoint(&self.live_uid)
            .await?
            .map(|c| c.generation()))
    }

    async fn create_generation(
        &self,
        projection: &str,
        version: u32,
    ) -> Result<Generation, ReadModelError> {
        super::only_search(projection)?;
        let live = self.checkpoint(&self.live_uid).await?;
        // With nothing live, the first generation is built where queries will read it.
        let uid = if live.is_some() {
            &self.build_uid
        } else {
            &self.live_uid
        };
        self.delete_index(uid).await?;
        let index = self.create_index(uid).await?;
        let number = live.map_or(1, |c| c.generation + 1);
        let checkpoint = Checkpoint::new(number, version, 0);
        let task = index
            .add_or_replace(std::slice::from_ref(&checkpoint), Some("id"))
            .await
            .map_err(|e| self.error("writing the checkpoint", e))?;
        self.wait("writing the checkpoint", task).await?;
        Ok(checkpoint.generation())
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
        let (uid, checkpoint) = self.holding(generation).await?;
        if checkpoint.position != from {
            return Err(ReadModelError::Moved {
                projection: search::NAME.into(),
                generation,
                position: checkpoint.position,
            });
        }
        let index = self.client.index(&uid);
        let ids: Vec<PostId> = search::touched(changes).into_iter().collect();
        let mut stored = self
            .load_authored(&index, search::forgotten(changes))
            .await?;
        // A document both touched and authored by a forgotten author is the same either way.
        stored.extend(self.load(&index, &ids).await?);
        let outcome = search::apply_changes(stored, changes)?;
        let gone: Vec<String> = outcome
            .iter()
            .filter(|(_, d)| d.is_none())
            .map(|(id, _)| id.to_string())
            .collect();
        if !gone.is_empty() {
            // Enqueued before the upload that moves the checkpoint, so it is applied first.
            self.client
                .index(&uid)
                .delete_documents(&gone)
                .await
                .map_err(|e| self.error("deleting documents", e))?;
        }
        let mut upload: Vec<serde_json::Value> = outcome
            .values()
            .flatten()
            .map(|doc| serde_json::to_value(Upload { kind: "post", doc }))
            .collect::<Result<_, _>>()
            .map_err(|e| ReadModelError::Backend(e.to_string()))?;
        let checkpoint = Checkpoint::new(generation, checkpoint.version, to);
        upload.push(
            serde_json::to_value(&checkpoint)
                .map_err(|e| ReadModelError::Backend(e.to_string()))?,
        );
        let task = index
            .add_or_replace(&upload, Some("id"))
            .await
            .map_err(|e| self.error("uploading documents", e))?;
        self.wait("uploading documents", task).await
    }

    async fn promote(
        &self,
        projection: &str,
        generation: u32,
    ) -> Result<Promotion, ReadModelError> {
        super::only_search(projection)?;
        let (uid, candidate) = self.holding(generation).await?;
        if uid == self.live_uid {
            return Ok(Promotion::Done);
        }
        if let Some(live) = self.checkpoint(&self.live_uid).await?
            && live.position > candidate.position
        {
            return Ok(Promotion::Behind {
                live_position: live.position,
            });
        }
        let swap = SwapIndexes {
            indexes: (self.live_uid.clone(), self.build_uid.clone()),
            rename: None,
        };
        let task = self
            .client
            .swap_indexes([&swap])
            .await
            .map_err(|e| self.error("swapping indexes", e))?;
        self.wait("swapping indexes", task).await?;
        // The build index now holds the replaced generation.
        self.delete_index(&self.build_uid).await?;
        Ok(Promotion::Done)
    }

    async fn dump(&self, projection: &str) -> Result<Vec<String>, ReadModelError> {
        super::only_search(projection)?;
        super::dump(self.documents().await?)
    }
}

#[async_trait]
impl SearchIndex for MeiliSearch {
    async fn search(&self, request: &SearchRequest) -> Result<SearchResults, ReadModelError> {
        let index = self.client.index(&self.live_uid);
        let text = request.query.text();
        let filter = match &request.tag {
            Some(tag) => format!(
                "kind = \"post\" AND tags = \"{}\"",
                tag.replace('\\', "\\\\").replace('"', "\\\"")
            ),
            None => "kind = \"post\"".to_owned(),
        };
        // Offsets move when documents are added or removed between two pages: read a window
        // around the cursor and continue after its last hit, wherever that is now.
        let (back, offset) = match request.after {
            Some(c) => {
                let back = c.offset.min(request.limit);
                (back, c.offset - back)
            }
            None => (0, 0),
        };
        let results = index
            .search()
            .with_query(&text)
            .with_filter(&filter)
            .with_offset(offset)
            .with_limit(back + request.limit + 1)
            .with_show_ranking_score(true)
            .with_matching_strategy(MatchingStrategies::ALL)
            .execute::<SearchDocument>()
            .await
            .map_err(|e| self.error("searching", e))?;
        let total = results
            .estimated_total_hits
            .or(results.total_hits)
            .unwrap_or(results.hits.len());
        let start = match request.after {
            Some(c) => results
                .hits
                .iter()
                .position(|h| h.result.post_position == c.post_position)
                .map_or(back, |i| i + 1),
            None => 0,
        };
        let window: Vec<_> = results.hits.into_iter().skip(start).collect();
        let more = window.len() > request.limit;
        // Meilisearch's scores are in [0, 1]: as `f32` they lose only precision.
        #[allow(clippy::cast_possible_truncation)]
        let hits: Vec<SearchHit> = window
            .into_iter()
            .take(request.limit)
            .map(|h| SearchHit {
                score: h.ranking_score.unwrap_or(0.0) as f32,
                comment_count: h.result.comments.len(),
                document: h.result,
            })
            .collect();
        let next = match hits.last() {
            Some(last) if more => Some(SearchCursor {
                offset: offset + start + hits.len(),
                score: last.score,
                post_position: last.document.post_position,
            }),
            _ => None,
        };
        Ok(SearchResults { hits, next, total })
    }

    async fn documents(&self) -> Result<Vec<SearchDocument>, ReadModelError> {
        let index = self.client.index(&self.live_uid);
        let mut docs: Vec<SearchDocument> = Vec::new();
        loop {
            let page = DocumentsQuery::new(&index)
                .with_filter("kind = \"post\"")
                .with_offset(docs.len())
                .with_limit(PAGE)
                .execute::<SearchDocument>()
                .await
                .map_err(|e| self.error("listing documents", e))?;
            let n = page.results.len();
            docs.extend(page.results);
            if n < PAGE {
                break;
            }
        }
        docs.sort_by_key(|d| d.id);
        Ok(docs)
    }
}

fn failed(doing: &str, e: &MeilisearchError) -> ReadModelError {
    ReadModelError::Backend(format!("Meilisearch ({doing}): {}", e.error_message))
}
