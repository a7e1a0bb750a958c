//! The command handler's batches over a real store (see `commands::batch`): a hot post decided
//! in batches, a refused command failing alone, and handlers whose cached state went stale
//! (another process wrote the stream) deciding again rather than handing out a name twice.
//! Included by the SQLite and PostgreSQL suites.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::Utc;
use commands::{CommandContext, CommandError, CommandHandler, EventStore};
use domain::post::{Post, PostCommand, PostError, PostEvent, PostServices};
use domain::pseudonym::PseudonymScheme;
use domain::values::{Actor, CommentBody, PostBody};
use domain::{AuthorToken, CommentId, PostId, StreamId, UserId};
use tokio::sync::Barrier;
use tokio::task::JoinSet;
use uuid::Uuid;

/// User `n`'s author token (any post: these tests use one post at a time).
pub fn token(n: u128) -> AuthorToken {
    AuthorToken::new(format!("t{n}"))
}

pub fn actor(n: u128) -> Actor {
    Actor {
        user_id: UserId::new(Uuid::from_u128(n + 1)),
        username: format!("user{n}"),
        is_admin: false,
    }
}

/// Publishes an anonymous post by user 0 and returns its stream.
pub async fn publish(handler: &CommandHandler) -> (PostId, StreamId) {
    let post_id = PostId::new(Uuid::now_v7());
    let publish = PostCommand::Publish {
        post_id,
        author: actor(0),
        token: token(0),
        title: None,
        body: PostBody::parse("hot").expect("a body"),
        tags: vec![],
        anonymous: true,
        poll: None,
    };
    let ctx = CommandContext::new(Utc::now());
    handler
        .execute::<Post>(&post_id.stream(), &publish, &PostServices::default(), &ctx)
        .await
        .expect("published");
    (post_id, post_id.stream())
}

/// An anonymous comment by `user`, replying to a comment that does not exist when `refused`.
pub fn comment(user: u128, refused: bool) -> PostCommand {
    PostCommand::AddComment {
        comment_id: CommentId::new(Uuid::now_v7()),
        author: actor(user),
        token: token(user),
        body: CommentBody::parse("me too").expect("a body"),
        anonymous: true,
        reply_to: refused.then(|| CommentId::new(Uuid::now_v7())),
    }
}

/// The name a comment was given.
pub async fn name_of(
    handler: &CommandHandler,
    stream: &StreamId,
    command: PostCommand,
) -> Result<String, CommandError<PostError>> {
    let ctx = CommandContext::new(Utc::now());
    let outcome = handler
        .execute::<Post>(stream, &command, &PostServices::default(), &ctx)
        .await?;
    match outcome.events.as_slice() {
        [r] => match &r.event {
            PostEvent::CommentAdded { author, .. } => {
                Ok(author.display_name().unwrap_or_default().to_owned())
            }
            other => panic!("unexpected {other:?}"),
        },
        other => panic!("unexpected {other:?}"),
    }
}

/// `users` comment at once through `handlers` (round robin); every tenth is refused by the
/// aggregate. Returns the names given, in user order, after checking the refusals.
pub async fn comment_at_once(
    handlers: &[Arc<CommandHandler>],
    stream: &StreamId,
    users: std::ops::Range<u128>,
) -> Vec<(u128, String)> {
    let barrier = Arc::new(Barrier::new(users.clone().count()));
    let mut tasks = JoinSet::new();
    for user in users {
        let handler = handlers[user as usize % handlers.len()].clone();
        let (stream, barrier) = (stream.clone(), barrier.clone());
        tasks.spawn(async move {
            barrier.wait().await;
            let refused = user % 10 == 0;
            (
                user,
                refused,
                name_of(&handler, &stream, comment(user, refused)).await,
            )
        });
    }
    let mut named = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let (user, refused, result) = done.expect("the task ran");
        match (refused, result) {
            (true, Err(CommandError::Rejected(PostError::ReplyTargetNotFound))) => {}
            (false, Ok(name)) => named.push((user, name)),
            (refused, other) => panic!("user {user} (refused: {refused}): {other:?}"),
        }
    }
    named.sort();
    named
}

/// Every name given is one of the scheme's first names, and no two users share one.
#[track_caller]
pub fn assert_first_names_each_once(named: &[(u128, String)]) {
    let scheme = PseudonymScheme::default();
    let expected: HashSet<String> = (0..named.len()).map(|i| scheme.name_at(i)).collect();
    let given: HashSet<String> = named.iter().map(|(_, n)| n.clone()).collect();
    assert_eq!(
        given.len(),
        named.len(),
        "two users share a name: {named:?}"
    );
    assert_eq!(given, expected, "not the scheme's first names");
}

/// One handler, 300 commenters at once, every tenth refused: the others commit in far fewer
/// appends than commands, each with a name of its own.
pub async fn a_hot_post_commits_in_batches_and_a_refused_command_fails_alone(
    store: Arc<dyn EventStore>,
    appends: impl Fn() -> u64,
) {
    let handler = Arc::new(CommandHandler::new(store));
    let (_, stream) = publish(&handler).await;
    let before = appends();
    let named = comment_at_once(&[handler], &stream, 1..301).await;
    assert_eq!(named.len(), 270);
    assert_first_names_each_once(&named);
    let appended = appends() - before;
    assert!(
        appended <= 135,
        "{appended} appends for 300 commands: not batched"
    );
}

/// Two handlers on one log, as two processes would be: each one's cached state goes stale
/// whenever the other writes. Alternating writes take the stale path every time, and waves at
/// once through both never give two users one name.
pub async fn stale_handlers_decide_again(first: Arc<dyn EventStore>, second: Arc<dyn EventStore>) {
    let one = Arc::new(CommandHandler::new(first));
    let two = Arc::new(CommandHandler::new(second));
    let (_, stream) = publish(&one).await;
    let mut named = Vec::new();
    for user in 1..9 {
        // Each handler's cache is one write behind when its turn comes again.
        let handler = if user % 2 == 0 { &two } else { &one };
        let name = name_of(handler, &stream, comment(user, false))
            .await
            .expect("commented");
        named.push((user, name));
    }
    assert_first_names_each_once(&named);
    for (user, name) in named.clone() {
        let handler = if user % 2 == 0 { &one } else { &two };
        let again = name_of(handler, &stream, comment(user, false))
            .await
            .expect("commented");
        assert_eq!(again, name, "user {user} changed name");
    }
    let wave = comment_at_once(&[one, two], &stream, 11..211).await;
    let mut all: Vec<_> = named.into_iter().chain(wave).collect();
    all.sort();
    assert_first_names_each_once(&all);
}
