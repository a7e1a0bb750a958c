//! One suite for every search engine: the corpus through the real SQLite log and the search
//! projection into the engine, then queries, paging, deletions, a restart, a rebuild and the
//! anonymity promise; and ([`forget`]) the forgetting of a user who unregisters.

pub mod corpus;
pub mod forget;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use commands::{EventStore, ExpectedVersion};
use domain::post::{Author, PostEvent};
use domain::{AuthorToken, CommentId, DomainEvent, Metadata, NewEvent, PostId, StreamId, UserId};
use infra::event_store::SqliteEventStore;
use infra::source::StoreSource;
use projections::search::{Query, Search, SearchDocument, SearchIndex, SearchRequest};
use projections::{EventSource, Projection, ProjectionHub, ReadModelError, ReadModelStore, runner};
use uuid::Uuid;

use corpus::{BROAD_EN, BROAD_ZH, EXPECTATIONS, FILTERED_OUT};

pub const FILLERS: usize = 190;

/// Opens the engine under test; called again to simulate a restart.
pub type Open = Box<dyn Fn() -> Arc<dyn SearchIndex> + Send + Sync>;

/// The log the suite writes, with what it must never find in a search document.
struct World {
    events: Arc<SqliteEventStore>,
    posts: HashMap<String, PostId>,
    comments: HashMap<String, Vec<CommentId>>,
    /// Ids and usernames of the real authors of anonymous content.
    secrets: Vec<String>,
    _dir: tempfile::TempDir,
}

impl World {
    /// A log with nothing in it.
    async fn empty() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let events = Arc::new(
            SqliteEventStore::open(&dir.path().join("events.db"))
                .await
                .expect("event store"),
        );
        Self {
            events,
            posts: HashMap::new(),
            comments: HashMap::new(),
            secrets: Vec::new(),
            _dir: dir,
        }
    }

    /// A log holding the corpus.
    async fn new() -> Self {
        let mut world = Self::empty().await;
        for (n, post) in corpus::posts(FILLERS).into_iter().enumerate() {
            let author = UserId::new(Uuid::now_v7());
            let username = format!("student{n:04}");
            if post.anonymous {
                world.secrets.push(author.to_string());
                world.secrets.push(username.clone());
            }
            let post_id = PostId::new(Uuid::now_v7());
            let mut events = vec![PostEvent::PostPublished {
                post_id,
                author: if post.anonymous {
                    Author::anonymous(AuthorToken::new(format!("t{n}")), "洞主", author)
                } else {
                    Author::named(author, username)
                },
                anonymous: post.anonymous,
                title: post.title,
                body: post.body,
                tags: post.tags,
            }];
            for (i, body) in post.comments.into_iter().enumerate() {
                let commenter = UserId::new(Uuid::now_v7());
                world.secrets.push(commenter.to_string());
                let comment_id = CommentId::new(Uuid::now_v7());
                world
                    .comments
                    .entry(post.key.clone())
                    .or_default()
                    .push(comment_id);
                events.push(PostEvent::CommentAdded {
                    post_id,
                    comment_id,
                    author: Author::anonymous(
                        AuthorToken::new(format!("t{n}-{i}")),
                        ["Alice", "Bob", "Carol"][i % 3],
                        commenter,
                    ),
                    anonymous: true,
                    is_host: false,
                    body,
                    reply_to: None,
                    new_commenter: true,
                    addressee: None,
                });
            }
            world.append(post_id, events).await;
            world.posts.insert(post.key, post_id);
        }
        world
    }

    async fn append(&self, post_id: PostId, events: Vec<PostEvent>) {
        self.append_to(&post_id.stream(), &events).await;
    }

    async fn append_to<E: DomainEvent>(&self, stream: &StreamId, events: &[E]) {
        let events = events
            .iter()
            .map(|e| NewEvent::from_domain(e, Uuid::now_v7(), Utc::now(), Metadata::default()))
            .collect();
        self.events
            .append(stream, ExpectedVersion::Any, events)
            .await
            .expect("append");
    }

    fn source(&self) -> Arc<dyn EventSource> {
        Arc::new(StoreSource::new(self.events.clone()))
    }

    fn key_of(&self, id: PostId) -> String {
        self.posts
            .iter()
            .find(|(_, v)| **v == id)
            .map(|(k, _)| k.clone())
            .unwrap_or_else(|| format!("unknown {id}"))
    }
}

fn request(query: &str, tag: Option<&str>, limit: usize) -> SearchRequest {
    SearchRequest {
        query: Query::parse(query).expect("query"),
        tag: tag.map(str::to_owned),
        limit,
        after: None,
    }
}

/// Every hit of `query`, page by page; fails on a repeated hit.
async fn page_through(index: &dyn SearchIndex, query: &str, limit: usize) -> Vec<PostId> {
    let mut req = request(query, None, limit);
    let mut seen = Vec::new();
    for _ in 0..1000 {
        let page = index.search(&req).await.expect("search");
        assert!(page.hits.len() <= limit);
        for hit in &page.hits {
            assert!(
                !seen.contains(&hit.document.id),
                "{query}: a hit came twice"
            );
            seen.push(hit.document.id);
        }
        match page.next {
            Some(next) => req.after = Some(next),
            None => return seen,
        }
    }
    panic!("{query}: paging never ended");
}

async fn build(world: &World, index: &Arc<dyn SearchIndex>) {
    let store: Arc<dyn ReadModelStore> = index.clone();
    runner::rebuild(Arc::new(Search), world.source(), store, None, &|_, _| {})
        .await
        .expect("build the index");
}

/// Follows the log with the live projector until the index has applied the head.
async fn catch_up(world: &World, index: &Arc<dyn SearchIndex>) {
    let projection: Arc<dyn Projection> = Arc::new(Search);
    let hub = ProjectionHub::new(std::slice::from_ref(&projection), world.events.watch());
    let store: Arc<dyn ReadModelStore> = index.clone();
    let task = tokio::spawn(runner::run(projection, world.source(), store, hub.clone()));
    let head = world.events.head().await.expect("head");
    hub.wait_for(&["search"], head, Duration::from_secs(30))
        .await
        .expect("the search projector caught up");
    task.abort();
}

async fn documents(index: &dyn SearchIndex) -> Vec<SearchDocument> {
    index.documents().await.expect("documents")
}

pub async fn run(open: Open) {
    let world = World::new().await;
    let index = open();
    build(&world, &index).await;
    let total = corpus::posts(FILLERS).len();
    assert!(total >= 200, "the corpus has {total} posts");
    assert_eq!(documents(index.as_ref()).await.len(), total);

    // Expected top results.
    let mut failures = Vec::new();
    for e in EXPECTATIONS {
        let page = index
            .search(&request(e.query, e.tag, 10))
            .await
            .expect("search");
        let keys: Vec<String> = page
            .hits
            .iter()
            .map(|h| world.key_of(h.document.id))
            .collect();
        if keys.first().map(String::as_str) != Some(e.first) || keys.len() != e.hits {
            failures.push(format!(
                "{:?} (tag {:?}): got {keys:?}, want {} first of {}",
                e.query, e.tag, e.first, e.hits
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "queries that missed:\n{}",
        failures.join("\n")
    );
    assert!(EXPECTATIONS.len() >= 20);
    for (query, tag) in FILTERED_OUT {
        let page = index
            .search(&request(query, Some(tag), 10))
            .await
            .expect("search");
        assert!(
            page.hits.is_empty(),
            "{query} with tag {tag} found {}",
            page.hits.len()
        );
    }

    // Snippets can be made for every hit.
    let query = Query::parse("running").expect("query");
    let page = index
        .search(&request("running", None, 5))
        .await
        .expect("search");
    let doc = &page.hits[0].document;
    let marked =
        projections::search::text::snippet(doc.title.as_deref().unwrap_or(""), query.terms(), 80);
    assert_eq!(marked.as_deref(), Some("Morning <mark>run</mark>"));

    // Paging through broad queries returns every hit exactly once.
    let (en, zh) = corpus::broad_hits(FILLERS);
    for (query, expected, limit) in [(BROAD_EN, en, 7), (BROAD_ZH, zh, 10), (BROAD_EN, en, 1)] {
        let all = page_through(index.as_ref(), query, limit).await;
        assert_eq!(all.len(), expected, "{query} with pages of {limit}");
        let unique: HashSet<_> = all.iter().collect();
        assert_eq!(unique.len(), expected);
        let first = index
            .search(&request(query, None, 3))
            .await
            .expect("search");
        assert_eq!(first.total, expected, "{query}: total");
    }

    // No document and no hit carries the real author of anonymous content.
    let docs = documents(index.as_ref()).await;
    let text = serde_json::to_string(&docs).expect("json");
    for secret in &world.secrets {
        assert!(
            !text.contains(secret.as_str()),
            "a search document carries {secret}"
        );
    }
    for e in EXPECTATIONS {
        let page = index
            .search(&request(e.query, None, 10))
            .await
            .expect("search");
        let text =
            serde_json::to_string(&page.hits.iter().map(|h| &h.document).collect::<Vec<_>>())
                .expect("json");
        assert!(world.secrets.iter().all(|s| !text.contains(s.as_str())));
    }

    // Deletions through the live projector: a post and a comment disappear.
    let bike = world.posts["bike"];
    let kayak = world.posts["kayak"];
    world
        .append(
            bike,
            vec![PostEvent::PostDeleted {
                post_id: bike,
                deleted_by: None,
                by_admin: false,
            }],
        )
        .await;
    world
        .append(
            kayak,
            vec![PostEvent::CommentDeleted {
                post_id: kayak,
                comment_id: world.comments["kayak"][0],
                deleted_by: None,
                by_admin: false,
            }],
        )
        .await;
    catch_up(&world, &index).await;
    for gone in ["自行车", "kayak"] {
        let page = index
            .search(&request(gone, None, 10))
            .await
            .expect("search");
        assert!(
            page.hits.is_empty(),
            "{gone} still found after its deletion"
        );
    }
    let before = documents(index.as_ref()).await;
    assert_eq!(before.len(), total - 1);

    // A batch applied again is refused by the checkpoint guard and changes nothing.
    let live = index.live("search").await.expect("live").expect("built");
    let again = index
        .apply("search", live.number, &[], live.position - 1, live.position)
        .await;
    assert!(
        matches!(again, Err(ReadModelError::Moved { .. })),
        "{again:?}"
    );
    assert_eq!(documents(index.as_ref()).await, before);

    // A restart keeps the index.
    let head = world.events.head().await.expect("head");
    drop(index);
    let index = open();
    let live = index
        .live("search")
        .await
        .expect("live")
        .expect("still built");
    assert_eq!(live.position, head);
    assert_eq!(documents(index.as_ref()).await, before);
    assert!(
        index
            .search(&request("自习室", None, 5))
            .await
            .expect("search")
            .hits
            .len()
            == 1
    );

    // A rebuild reproduces it, in a new generation swapped in.
    build(&world, &index).await;
    let rebuilt = index.live("search").await.expect("live").expect("built");
    assert!(rebuilt.number > live.number);
    assert_eq!(rebuilt.position, head);
    assert_eq!(documents(index.as_ref()).await, before);
    assert_eq!(
        index.dump("search").await.expect("dump").len(),
        before.len()
    );
}
