//! The search engines against one shared suite (`search_suite`).

#![allow(
    // Test code: unwrapping is how a test fails, and its casts are of its own small numbers.
    clippy::unwrap_used,
    clippy::cast_possible_truncation
)]

mod search_suite;

use std::sync::Arc;

use infra::search::{Embedded, MeiliSearch};
use projections::search::SearchIndex;

/// The embedded engine in a directory of its own; the directory is kept while the returned
/// guard lives.
fn embedded() -> (search_suite::Open, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("search");
    let open: search_suite::Open = Box::new(move || {
        Arc::new(Embedded::open(&root).expect("open the embedded engine")) as Arc<dyn SearchIndex>
    });
    (open, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_engine_passes_the_search_suite() {
    let (open, _dir) = embedded();
    search_suite::run(open).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_engine_forgets_named_authors() {
    let (open, _dir) = embedded();
    search_suite::forget::run(open).await;
}

/// Says that a test was skipped, where `scripts/test` counts it: straight to stderr, past the
/// harness's capture (which swallows `eprintln!` of a passing test), so that a test that
/// returns early is not taken for one that passed.
fn skipped(test: &str, reason: &str) {
    use std::io::Write;
    let line = format!("test-skipped: {test}: {reason}\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// A real Meilisearch for one test, in indexes of its own: the server `MEILI_URL` (and
/// `MEILI_MASTER_KEY` if it has one) names, as `scripts/test` sets them with the server it
/// starts.
struct Meili {
    url: String,
    key: Option<String>,
    uid: String,
}

impl Meili {
    /// `None`, having said that `test` was skipped, when `MEILI_URL` is not set.
    fn from_env(test: &str) -> Option<Self> {
        let Some(url) = std::env::var("MEILI_URL").ok().filter(|u| !u.is_empty()) else {
            skipped(test, "MEILI_URL not set");
            return None;
        };
        let key = std::env::var("MEILI_MASTER_KEY")
            .ok()
            .filter(|k| !k.is_empty());
        let uid = format!("treehole_test_{}", uuid::Uuid::new_v4().simple());
        Some(Self { url, key, uid })
    }

    async fn connect(&self) -> MeiliSearch {
        MeiliSearch::connect(&self.url, self.key.as_deref(), &self.uid)
            .await
            .expect("connect to Meilisearch")
    }

    /// Opens the engine from the suite's synchronous `open`: connects on the test's runtime
    /// from a helper thread.
    fn open(&self) -> search_suite::Open {
        let runtime = tokio::runtime::Handle::current();
        let (url, key, uid) = (self.url.clone(), self.key.clone(), self.uid.clone());
        Box::new(move || {
            let handle = runtime.clone();
            let this = Meili {
                url: url.clone(),
                key: key.clone(),
                uid: uid.clone(),
            };
            std::thread::spawn(move || {
                Arc::new(handle.block_on(this.connect())) as Arc<dyn SearchIndex>
            })
            .join()
            .expect("connect thread")
        })
    }

    /// Leaves the server as the test found it.
    async fn delete_indexes(&self) {
        self.connect()
            .await
            .delete_indexes()
            .await
            .expect("delete the test's indexes");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meilisearch_passes_the_search_suite() {
    let Some(meili) = Meili::from_env("meilisearch_passes_the_search_suite") else {
        return;
    };
    search_suite::run(meili.open()).await;
    meili.delete_indexes().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meilisearch_forgets_named_authors() {
    let Some(meili) = Meili::from_env("meilisearch_forgets_named_authors") else {
        return;
    };
    search_suite::forget::run(meili.open()).await;
    meili.delete_indexes().await;
}

#[tokio::test]
async fn a_search_server_that_is_not_there_is_a_clear_error() {
    let err = infra::search::MeiliSearch::connect("http://127.0.0.1:9", None, "posts")
        .await
        .err()
        .expect("nothing listens on port 9");
    let message = err.to_string();
    assert!(
        message.contains("unreachable") && message.contains("127.0.0.1:9"),
        "{message}"
    );
}

/// An anonymous comment as the search projection passes it on.
fn comment_change(
    post_id: domain::PostId,
    comment_id: domain::CommentId,
    position: u64,
    body: &str,
) -> projections::Change {
    projections::Change::Comments(projections::CommentChange::InsertComment {
        comment_id,
        post_id,
        position,
        author_id: None,
        author_name: "Alice".into(),
        anonymous: true,
        is_host: false,
        body: body.into(),
        reply_to: None,
        created_at: chrono::Utc::now(),
    })
}

/// The embedded engine stores documents without their analysed terms. A post written by one
/// process and commented by the next (nothing remembered in memory) must keep the words of
/// its earlier comments: the terms are made again from the stored text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_commented_after_a_reopen_keeps_its_earlier_words() {
    use chrono::Utc;
    use domain::{CommentId, PostId};
    use projections::search::{Query, SearchRequest};
    use projections::{Change, FeedChange, ReadModelStore};

    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("search");
    let post_id = PostId::new(uuid::Uuid::now_v7());
    let comment = |position: u64, body: &str| {
        comment_change(
            post_id,
            CommentId::new(uuid::Uuid::now_v7()),
            position,
            body,
        )
    };
    let first = vec![
        Change::Feed(FeedChange::InsertPost {
            post_id,
            position: 1,
            author_id: None,
            author_name: "洞主".into(),
            anonymous: true,
            title: Some("Library hours".into()),
            body: "When does it close?".into(),
            tags: vec![],
            created_at: Utc::now(),
        }),
        comment(2, "麻辣烫 at the canteen"),
    ];
    let number = {
        let engine = Embedded::open(&root).expect("open");
        let g = engine
            .create_generation("search", 1)
            .await
            .expect("generation");
        engine.promote("search", g.number).await.expect("promote");
        engine
            .apply("search", g.number, &first, 0, 2)
            .await
            .expect("apply");
        g.number
    };
    let engine = Embedded::open(&root).expect("open again");
    engine
        .apply("search", number, &[comment(3, "midnight snacks")], 2, 3)
        .await
        .expect("apply after the reopen");
    for (words, what) in [
        ("麻辣烫", "the first comment"),
        ("midnight", "the second comment"),
        ("library", "the title"),
    ] {
        let hits = engine
            .search(&SearchRequest {
                query: Query::parse(words).expect("a query"),
                tag: None,
                limit: 10,
                after: None,
            })
            .await
            .expect("search")
            .hits;
        assert_eq!(hits.len(), 1, "{what} is still found");
        assert_eq!(hits[0].comment_count, 2);
    }
}

/// Comments are documents of their own in the embedded engine: a post found through its
/// title and several comments is one hit; folding a post hides its comments too and the mark
/// outlives the process that wrote it; folding a comment hides that comment only; the
/// documents come back whole, comments in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_and_its_comments_are_one_hit_and_moderation_reaches_its_comments() {
    use chrono::Utc;
    use domain::{CommentId, PostId};
    use projections::search::{Query, SearchHit, SearchRequest};
    use projections::{Change, CommentChange, FeedChange, ReadModelStore};

    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("search");
    let (p1, p2) = (
        PostId::new(uuid::Uuid::now_v7()),
        PostId::new(uuid::Uuid::now_v7()),
    );
    let ids: Vec<CommentId> = (0..4)
        .map(|_| CommentId::new(uuid::Uuid::now_v7()))
        .collect();
    let post = |post_id, position, title: &str, body: &str| {
        Change::Feed(FeedChange::InsertPost {
            post_id,
            position,
            author_id: None,
            author_name: "洞主".into(),
            anonymous: true,
            title: Some(title.into()),
            body: body.into(),
            tags: vec![],
            created_at: Utc::now(),
        })
    };
    let comment = comment_change;
    let search = |engine: &Embedded, words: &str| {
        let request = SearchRequest {
            query: Query::parse(words).expect("a query"),
            tag: None,
            limit: 10,
            after: None,
        };
        let engine = engine.clone();
        async move { engine.search(&request).await.expect("search") }
    };
    let found = |hits: &[SearchHit]| hits.iter().map(|h| h.document.id).collect::<Vec<_>>();

    let engine = Embedded::open(&root).expect("open");
    let g = engine.create_generation("search", 1).await.expect("gen");
    engine.promote("search", g.number).await.expect("promote");
    let first = vec![
        post(p1, 1, "Library hours", "When does it close?"),
        comment(p1, ids[0], 2, "the library closes at ten"),
        comment(p1, ids[1], 3, "library on sunday?"),
        post(p2, 4, "Canteen", "noodles tonight"),
        comment(p2, ids[2], 5, "library noodles"),
    ];
    engine
        .apply("search", g.number, &first, 0, 5)
        .await
        .expect("apply");
    let page = search(&engine, "library").await;
    let mut hits = found(&page.hits);
    hits.sort();
    assert_eq!(hits, [p1, p2], "each post once");
    assert_eq!(page.total, 2);
    let by_comment = page.hits.iter().find(|h| h.document.id == p2).unwrap();
    assert_eq!(by_comment.comment_count, 1);
    assert_eq!(by_comment.document.comments[0].body, "library noodles");
    assert_eq!(
        page.hits
            .iter()
            .find(|h| h.document.id == p1)
            .unwrap()
            .comment_count,
        2
    );

    let fold = Change::Feed(FeedChange::Fold {
        post_id: p1,
        reason: Some("off topic".into()),
    });
    engine
        .apply("search", g.number, &[fold], 5, 6)
        .await
        .expect("fold");
    // A new process (nothing in memory) comments on the folded post.
    drop(engine);
    let engine = Embedded::open(&root).expect("open again");
    engine
        .apply(
            "search",
            g.number,
            &[comment(p1, ids[3], 7, "library again")],
            6,
            7,
        )
        .await
        .expect("comment");
    assert_eq!(found(&search(&engine, "library").await.hits), [p2]);
    assert!(search(&engine, "sunday").await.hits.is_empty());

    let fold_comment = Change::Comments(CommentChange::Fold {
        post_id: p2,
        comment_id: ids[2],
        reason: Some("spam".into()),
    });
    engine
        .apply("search", g.number, &[fold_comment], 7, 8)
        .await
        .expect("fold the comment");
    assert!(search(&engine, "library").await.hits.is_empty());
    assert_eq!(found(&search(&engine, "noodles").await.hits), [p2]);

    let unfold = Change::Feed(FeedChange::Fold {
        post_id: p1,
        reason: None,
    });
    let delete = Change::Comments(CommentChange::DeleteComment {
        post_id: p1,
        comment_id: ids[1],
    });
    engine
        .apply("search", g.number, &[unfold, delete], 8, 10)
        .await
        .expect("unfold");
    let page = search(&engine, "library").await;
    assert_eq!(found(&page.hits), [p1]);
    assert_eq!(page.hits[0].comment_count, 2);
    assert!(search(&engine, "sunday").await.hits.is_empty());

    let docs = engine.documents().await.expect("documents");
    let doc = docs.iter().find(|d| d.id == p1).unwrap();
    let order: Vec<CommentId> = doc.comments.iter().map(|c| c.comment_id).collect();
    assert_eq!(order, [ids[0], ids[3]]);
    assert!(!doc.folded);
    let other = docs.iter().find(|d| d.id == p2).unwrap();
    assert!(other.comments[0].folded);
}

/// A new comment is one new document in the embedded engine: its post's own document is not
/// written again (its comment count is counted when read), so comment-only batches delete
/// nothing. Counts stay right through a reopen (nothing in memory), a deleted comment and a
/// folded one, and the documents equal those of one batch with every change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_comment_adds_one_document_and_counts_stay_right() {
    use chrono::Utc;
    use domain::{CommentId, PostId};
    use projections::search::{Query, SearchRequest};
    use projections::{Change, CommentChange, FeedChange, ReadModelStore};

    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("search");
    let post_id = PostId::new(uuid::Uuid::now_v7());
    let ids: Vec<CommentId> = (0..6)
        .map(|_| CommentId::new(uuid::Uuid::now_v7()))
        .collect();
    let mut changes = vec![Change::Feed(FeedChange::InsertPost {
        post_id,
        position: 1,
        author_id: None,
        author_name: "洞主".into(),
        anonymous: true,
        title: Some("Lost umbrella".into()),
        body: "a red one, near the gym".into(),
        tags: vec![],
        created_at: Utc::now(),
    })];
    for (i, id) in ids.iter().enumerate() {
        changes.push(comment_change(
            post_id,
            *id,
            i as u64 + 2,
            "seen it at the gym",
        ));
    }
    let count = |engine: &Embedded| {
        let engine = engine.clone();
        async move {
            let page = engine
                .search(&SearchRequest {
                    query: Query::parse("umbrella").unwrap(),
                    tag: None,
                    limit: 10,
                    after: None,
                })
                .await
                .expect("search");
            assert_eq!(page.hits.len(), 1);
            page.hits[0].comment_count
        }
    };
    let deleted_documents = |generation: u32| {
        let dir = root.join(format!("gen-{generation:06}"));
        let index = tantivy::Index::open_in_dir(dir).unwrap();
        let searcher = index.reader().unwrap().searcher();
        searcher
            .segment_readers()
            .iter()
            .map(tantivy::SegmentReader::num_deleted_docs)
            .sum::<u32>()
    };

    let mut engine = Embedded::open(&root).expect("open");
    let g = engine.create_generation("search", 1).await.expect("gen");
    engine.promote("search", g.number).await.expect("promote");
    // The post, then one comment per batch; the process is replaced after the third.
    for (i, change) in changes.iter().enumerate() {
        if i == 3 {
            drop(engine);
            engine = Embedded::open(&root).expect("open again");
        }
        let at = i as u64;
        engine
            .apply("search", g.number, std::slice::from_ref(change), at, at + 1)
            .await
            .expect("apply");
        assert_eq!(count(&engine).await, i, "after {i} comments");
    }
    assert_eq!(
        deleted_documents(g.number),
        0,
        "a comment-only batch wrote its post's document again"
    );

    // A deleted and a folded comment, in one batch with a new one, after a reopen.
    drop(engine);
    let engine = Embedded::open(&root).expect("open again");
    let last = ids.len() as u64 + 1;
    let more = vec![
        Change::Comments(CommentChange::DeleteComment {
            post_id,
            comment_id: ids[5],
        }),
        Change::Comments(CommentChange::Fold {
            post_id,
            comment_id: ids[0],
            reason: Some("spam".into()),
        }),
        comment_change(
            post_id,
            CommentId::new(uuid::Uuid::now_v7()),
            last + 1,
            "it is at the desk now",
        ),
    ];
    engine
        .apply("search", g.number, &more, last, last + 3)
        .await
        .expect("apply");
    assert_eq!(
        count(&engine).await,
        6,
        "five of six left, and the late one"
    );
    changes.extend(more);
    let incremental = engine.documents().await.expect("documents");

    // The same changes in one batch, in a generation of their own.
    let whole = engine.create_generation("search", 1).await.expect("gen");
    engine
        .apply("search", whole.number, &changes, 0, last + 3)
        .await
        .expect("apply all");
    engine
        .promote("search", whole.number)
        .await
        .expect("promote");
    assert_eq!(count(&engine).await, 6);
    assert_eq!(engine.documents().await.expect("documents"), incremental);
    let doc = &incremental[0];
    assert_eq!(doc.comments.len(), 6);
    assert!(doc.comments[0].folded);
    assert_eq!(doc.position, last + 1, "the latest live comment's position");
}

/// An index made before comments were documents of their own (search projection version 3:
/// post documents holding their comments) still answers queries while the new version is
/// rebuilt beside it, comments and counts included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_made_before_comment_documents_still_answers() {
    use projections::ReadModelStore;
    use projections::search::text::terms_field;
    use projections::search::{Query, SearchRequest};
    use tantivy::schema::{
        FAST, INDEXED, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing, TextOptions,
    };

    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("search");
    let gen_dir = root.join("gen-000001");
    std::fs::create_dir_all(&gen_dir).unwrap();
    let mut b = Schema::builder();
    let terms = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer("whitespace")
            .set_index_option(IndexRecordOption::WithFreqs),
    );
    let id = b.add_text_field("id", STRING);
    let post_position = b.add_u64_field("post_position", FAST | INDEXED);
    b.add_text_field("tags", STRING);
    let all = b.add_text_field("terms", terms);
    b.add_text_field("author_id", STRING);
    let doc = b.add_text_field("doc", STORED);
    let index = tantivy::Index::create_in_dir(&gen_dir, b.build()).unwrap();
    let mut writer: tantivy::IndexWriter = index.writer(16 * 1024 * 1024).unwrap();
    let post_id = uuid::Uuid::now_v7();
    let mut d = tantivy::TantivyDocument::default();
    d.add_text(id, post_id.to_string());
    d.add_u64(post_position, 1);
    let title = terms_field(Some("Library hours"));
    d.add_text(
        all,
        format!(
            "{title} {title} {title} {} {}",
            terms_field(Some("When does it close?")),
            terms_field(Some("kayak trip"))
        ),
    );
    d.add_text(
        doc,
        serde_json::json!({
            "id": post_id, "post_position": 1, "position": 2, "author_name": "洞主",
            "anonymous": true, "title": "Library hours", "body": "When does it close?",
            "tags": [], "created_at": "2026-12-01T00:00:00Z",
            "comments": [{ "comment_id": uuid::Uuid::now_v7(), "body": "kayak trip" }],
        })
        .to_string(),
    );
    writer.add_document(d).unwrap();
    let mut commit = writer.prepare_commit().unwrap();
    commit.set_payload(r#"{"version":3,"position":2}"#);
    commit.commit().unwrap();
    drop(writer);
    std::fs::write(root.join("live"), "1").unwrap();

    let engine = Embedded::open(&root).expect("open");
    let live = engine.live("search").await.unwrap().unwrap();
    assert_eq!((live.number, live.version, live.position), (1, 3, 2));
    for words in ["kayak", "library"] {
        let page = engine
            .search(&SearchRequest {
                query: Query::parse(words).unwrap(),
                tag: None,
                limit: 10,
                after: None,
            })
            .await
            .expect("search");
        assert_eq!(page.total, 1, "{words}");
        assert_eq!(page.hits[0].document.id.to_string(), post_id.to_string());
        assert_eq!(page.hits[0].comment_count, 1);
    }
}
