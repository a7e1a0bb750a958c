//! A user who unregisters: the search documents of their named posts show the deleted user and
//! keep neither their name nor their id, live as after a rebuild (which can no longer read the
//! name); their anonymous posts and everyone else's stay as they were; and the batch that
//! forgets them, applied again, changes nothing.

use projections::FeedChange;
use std::collections::BTreeMap;

use commands::EventStore;
use domain::post::{Author, PostEvent};
use domain::user::UserEvent;
use domain::{AuthorToken, Position, PostId, UserId};
use projections::search::{Search, SearchDocument};
use projections::{Change, DELETED_USER, Projection};
use uuid::Uuid;

use super::{Open, World, build, catch_up, documents, request};

const LEAVER: &str = "leaving_student";
const STAYER: &str = "staying_student";

/// Publishes a post whose body says `lantern`, the word the test searches for.
async fn publish(world: &World, author: Author, anonymous: bool, title: &str) -> PostId {
    let post_id = PostId::new(Uuid::now_v7());
    world
        .append(
            post_id,
            vec![PostEvent::PostPublished {
                post_id,
                author,
                anonymous,
                title: Some(title.into()),
                body: format!("{title}: paper lanterns by the lake tonight"),
                tags: vec![],
            }],
        )
        .await;
    post_id
}

/// The search projection's changes for the events after `position`: what the live projector
/// applies when it reads them in one batch.
async fn changes_after(world: &World, position: Position) -> Vec<Change> {
    let events = world
        .source()
        .read_after(position, 1000)
        .await
        .expect("read the log");
    events
        .iter()
        .flat_map(|d| Search.apply(&d.envelope, d.event.as_ref().expect("decodes")))
        .collect()
}

fn by_id(docs: Vec<SearchDocument>) -> BTreeMap<PostId, SearchDocument> {
    docs.into_iter().map(|d| (d.id, d)).collect()
}

/// Whether `json` shows anything of the leaving user.
fn names(json: &str, leaver: UserId) -> bool {
    json.contains(&leaver.to_string()) || json.contains(LEAVER)
}

pub async fn run(open: Open) {
    let world = World::empty().await;
    let (leaver, stayer) = (UserId::new(Uuid::now_v7()), UserId::new(Uuid::now_v7()));
    let signed = publish(&world, Author::named(leaver, LEAVER), false, "Signed").await;
    let hidden = publish(
        &world,
        Author::anonymous(AuthorToken::new("t-hidden"), "洞主", leaver),
        true,
        "Hidden",
    )
    .await;
    let other = publish(&world, Author::named(stayer, STAYER), false, "Other").await;
    let index = open();
    build(&world, &index).await;
    let before = by_id(documents(index.as_ref()).await);
    assert_eq!(before.len(), 3);
    let shown = |d: &SearchDocument| (d.author_name.clone(), d.author_id);
    assert_eq!(shown(&before[&signed]), (LEAVER.into(), Some(leaver)));
    assert_eq!(shown(&before[&hidden]), ("洞主".into(), None));
    assert_eq!(shown(&before[&other]), (STAYER.into(), Some(stayer)));

    // The leaver unregisters, and the live projector forgets them.
    let head = world.events.head().await.expect("head");
    world
        .append_to(
            &leaver.stream(),
            &[UserEvent::UserUnregistered { user_id: leaver }],
        )
        .await;
    catch_up(&world, &index).await;
    let page = index
        .search(&request("lantern", None, 10))
        .await
        .expect("search");
    assert_eq!(page.hits.len(), 3);
    let hits = by_id(page.hits.into_iter().map(|h| h.document).collect());
    assert_eq!(shown(&hits[&signed]), (DELETED_USER.into(), None));
    assert_eq!(
        SearchDocument {
            author_name: LEAVER.into(),
            author_id: Some(leaver),
            ..hits[&signed].clone()
        },
        before[&signed],
        "only the author changes"
    );
    assert_eq!(hits[&hidden], before[&hidden]);
    assert_eq!(hits[&other], before[&other]);
    let hits_json = serde_json::to_string(&hits).expect("json");
    assert!(!names(&hits_json, leaver), "a hit names the leaver");
    let after = documents(index.as_ref()).await;
    assert_eq!(by_id(after.clone()), hits);
    let stored = serde_json::to_string(&after).expect("json");
    assert!(!names(&stored, leaver), "a document names the leaver");

    // A rebuild from the log gives the documents the live projector made.
    build(&world, &index).await;
    assert_eq!(documents(index.as_ref()).await, after);

    // The batch that forgot the leaver, applied again, changes nothing; nor does the whole
    // log applied again on top.
    let forgetting = changes_after(&world, head).await;
    assert_eq!(
        forgetting,
        vec![Change::Feed(FeedChange::ForgetPostAuthor {
            user_id: leaver
        })]
    );
    let everything = changes_after(&world, 0).await;
    for batch in [forgetting, everything] {
        let live = index.live("search").await.expect("live").expect("built");
        index
            .apply(
                "search",
                live.number,
                &batch,
                live.position,
                live.position + 1,
            )
            .await
            .expect("apply the batch again");
        assert_eq!(documents(index.as_ref()).await, after, "{batch:?} again");
    }
}
