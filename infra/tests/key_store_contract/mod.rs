//! The key-store contract (`commands::KeyStore`, crypto-shredding): what every backend that
//! keeps wrapped data keys and key handles must do, written once against the port and run on
//! each (SQLite in `sqlite_key_store.rs`, PostgreSQL in `postgres_key_store.rs`).
//!
//! A backend's test file implements [`Harness`] and invokes [`key_store_contract!`]. The last
//! rules go through `commands::Keys` over the real store: sealing, opening, and opening again
//! in a fresh process after the key was shredded.

#![allow(dead_code)]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use commands::{KeyDump, KeyError, KeyStore, Keys};
use domain::post::{Author, PostEvent};
use domain::user::UserEvent;
use domain::{
    DomainEvent, Envelope, KeyRef, Metadata, NewEvent, Personal, PostId, StreamId, UserId,
};
use uuid::Uuid;

pub type Store = Arc<dyn KeyStore>;

/// How long any single contract test may take before it counts as hung.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(120);

/// The server secret the key-encryption key is derived from, in these tests.
pub const SECRET: &[u8] = b"key store contract secret";

/// How the suite reaches a backend. Every test creates its own harness.
pub trait Harness: Sized + Send + Sync {
    /// Fresh, empty storage and a store on it, or `None` when the backend's server is not
    /// configured (the harness says so on stderr, as a skipped test).
    fn create() -> impl Future<Output = Option<(Self, Store)>> + Send;
    /// Another store on the same storage, as a second process (or the next start) opens it.
    fn reopen(&self) -> impl Future<Output = Store> + Send;
}

/// Expands to one `#[tokio::test]` per contract rule for the given [`Harness`] type.
macro_rules! key_store_contract {
    ($harness:ty) => {
        $crate::key_store_contract::key_store_contract!(@each $harness;
            a_fresh_store_knows_no_key_and_no_handle,
            put_key_keeps_the_first_key_and_returns_it,
            keys_survive_reopening,
            put_handle_is_idempotent_and_never_repoints_a_handle,
            resolve_names_the_user_only_while_their_key_exists,
            subjects_are_listed_by_literal_prefix_while_the_key_exists,
            shred_destroys_that_users_key_and_handles_only,
            shredded_handles_stay_dead_under_a_new_key,
            batches_resolve_and_read_only_live_keys,
            bulk_puts_keep_what_exists,
            only_the_deployments_secret_passes_the_start_up_check,
            two_shreds_at_once_both_succeed,
            all_lists_every_key_and_handle_until_shredded,
            sealed_values_open_in_a_fresh_process_until_the_key_is_shredded,
            author_tokens_made_at_once_are_all_stored,
        );
    };
    (@each $harness:ty; $($test:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                let Some((harness, store)) =
                    <$harness as $crate::key_store_contract::Harness>::create().await
                else {
                    return;
                };
                tokio::time::timeout(
                    $crate::key_store_contract::TEST_TIMEOUT,
                    $crate::key_store_contract::$test(&harness, store),
                )
                .await
                .expect(concat!(stringify!($test), " timed out"));
            }
        )*
    };
}
pub(crate) use key_store_contract;

// ---------------------------------------------------------------------------------------------
// Helpers

fn user(n: u128) -> UserId {
    UserId::new(Uuid::from_u128(0x5eed_0000 + n))
}

/// Bytes standing in for a wrapped key (the store keeps them as they are).
fn wrapped(tag: u8) -> Vec<u8> {
    (0..72u8).map(|i| i.wrapping_mul(31) ^ tag).collect()
}

async fn sorted_subjects(store: &Store, user: UserId, prefix: &str) -> Vec<String> {
    let mut s = store.subjects(user, prefix).await.expect("subjects");
    s.sort();
    s
}

/// The stored form of a sealed event, as a reader of the log gets it.
fn stored(e: &NewEvent, stream: &StreamId) -> Envelope {
    Envelope {
        position: 1,
        event_id: e.event_id,
        stream: stream.clone(),
        version: 1,
        event_type: e.event_type.clone(),
        schema: e.schema,
        occurred_at: e.occurred_at,
        data: e.data.clone(),
        metadata: Metadata::default(),
    }
}

fn registered(user: UserId, name: &str) -> NewEvent {
    let k = KeyRef::user(user);
    let e = UserEvent::UserRegistered {
        user_id: user,
        email: Personal::new(k.clone(), format!("{name}@campus.edu")),
        username: Personal::new(k.clone(), name.to_owned()),
        password_hash: Personal::new(k, format!("$argon2id$hash-of-{name}")),
    };
    NewEvent::from_domain(
        &e,
        Uuid::now_v7(),
        Utc.timestamp_opt(1_700_000_000, 0).unwrap(),
        Metadata::default(),
    )
}

/// What `keys` reads of a sealed registration: (email, username, password hash).
async fn open_registration(
    keys: &Keys,
    event: &NewEvent,
    user: UserId,
) -> (Option<String>, Option<String>, Option<String>) {
    let mut env = stored(event, &user.stream());
    keys.open(&mut env)
        .await
        .expect("opening never fails for a lost key");
    match UserEvent::decode(&env.event_type, env.schema, &env.data).expect("decodes") {
        UserEvent::UserRegistered {
            email,
            username,
            password_hash,
            ..
        } => (
            email.into_inner(),
            username.into_inner(),
            password_hash.into_inner(),
        ),
        other => panic!("not a registration: {other:?}"),
    }
}

/// What `keys` reads of the author of a sealed anonymous post: (token, pseudonym, user id).
async fn open_anonymous_author(
    keys: &Keys,
    event: &NewEvent,
    post: PostId,
) -> (String, String, Option<UserId>) {
    let mut env = stored(event, &post.stream());
    keys.open(&mut env)
        .await
        .expect("opening never fails for a lost key");
    match PostEvent::decode(&env.event_type, env.schema, &env.data).expect("decodes") {
        PostEvent::PostPublished {
            author:
                Author::Anonymous {
                    token,
                    pseudonym,
                    user_id,
                },
            ..
        } => (token.as_str().to_owned(), pseudonym, user_id.get().copied()),
        other => panic!("not an anonymous post: {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The rules

pub async fn a_fresh_store_knows_no_key_and_no_handle<H: Harness>(_h: &H, store: Store) {
    assert_eq!(store.get_key(user(1)).await.expect("get_key"), None);
    assert_eq!(store.resolve("t0123").await.expect("resolve"), None);
    assert!(sorted_subjects(&store, user(1), "").await.is_empty());
    // Shredding a user who never had a key is not an error.
    store.shred(user(1)).await.expect("shred");
}

pub async fn put_key_keeps_the_first_key_and_returns_it<H: Harness>(_h: &H, store: Store) {
    let (a, b) = (user(1), user(2));
    assert_eq!(
        store.put_key(a, wrapped(1)).await.expect("put_key"),
        wrapped(1)
    );
    // A second key for the same user (a racing registration) loses: the stored one comes back.
    assert_eq!(
        store.put_key(a, wrapped(2)).await.expect("put_key"),
        wrapped(1),
        "put_key must keep the first key"
    );
    assert_eq!(
        store.put_key(a, wrapped(1)).await.expect("put_key"),
        wrapped(1)
    );
    assert_eq!(store.get_key(a).await.expect("get_key"), Some(wrapped(1)));
    // Another user's key is their own.
    assert_eq!(store.get_key(b).await.expect("get_key"), None);
    assert_eq!(
        store.put_key(b, wrapped(2)).await.expect("put_key"),
        wrapped(2)
    );
    assert_eq!(store.get_key(b).await.expect("get_key"), Some(wrapped(2)));
    assert_eq!(store.get_key(a).await.expect("get_key"), Some(wrapped(1)));
}

pub async fn keys_survive_reopening<H: Harness>(h: &H, store: Store) {
    let a = user(1);
    store.put_key(a, wrapped(7)).await.expect("put_key");
    store
        .put_handle("tkept", a, "subject")
        .await
        .expect("put_handle");
    let other = h.reopen().await;
    assert_eq!(other.get_key(a).await.expect("get_key"), Some(wrapped(7)));
    assert_eq!(other.resolve("tkept").await.expect("resolve"), Some(a));
    // Racing first keys from two processes: the first one stored wins in both.
    assert_eq!(
        other.put_key(a, wrapped(8)).await.expect("put_key"),
        wrapped(7)
    );
}

pub async fn put_handle_is_idempotent_and_never_repoints_a_handle<H: Harness>(
    _h: &H,
    store: Store,
) {
    let (a, b) = (user(1), user(2));
    store.put_key(a, wrapped(1)).await.expect("put_key");
    store.put_key(b, wrapped(2)).await.expect("put_key");
    for _ in 0..3 {
        store
            .put_handle("tpost1", a, "post-1")
            .await
            .expect("put_handle is idempotent");
    }
    assert_eq!(store.resolve("tpost1").await.expect("resolve"), Some(a));
    assert_eq!(
        sorted_subjects(&store, a, "t").await,
        vec!["post-1".to_string()],
        "a repeated handle is recorded once"
    );
    // A handle, once recorded, names its user for good: recording it again for someone else
    // (or about something else) changes nothing.
    store
        .put_handle("tpost1", b, "post-2")
        .await
        .expect("put_handle");
    store
        .put_handle("tpost1", a, "post-3")
        .await
        .expect("put_handle");
    assert_eq!(store.resolve("tpost1").await.expect("resolve"), Some(a));
    assert_eq!(
        sorted_subjects(&store, a, "t").await,
        vec!["post-1".to_string()]
    );
    assert!(sorted_subjects(&store, b, "t").await.is_empty());
}

pub async fn resolve_names_the_user_only_while_their_key_exists<H: Harness>(_h: &H, store: Store) {
    let (a, b) = (user(1), user(2));
    // A handle recorded before its user has a key does not resolve yet.
    store
        .put_handle("ra", a, "stream-a")
        .await
        .expect("put_handle");
    assert_eq!(store.resolve("ra").await.expect("resolve"), None);
    store.put_key(a, wrapped(1)).await.expect("put_key");
    assert_eq!(store.resolve("ra").await.expect("resolve"), Some(a));
    store.put_key(b, wrapped(2)).await.expect("put_key");
    store
        .put_handle("rb", b, "stream-b")
        .await
        .expect("put_handle");
    assert_eq!(store.resolve("rb").await.expect("resolve"), Some(b));
    // Exact names only.
    for near in ["r", "RA", "ra ", " ra", "rab", "r%", "r_"] {
        assert_eq!(
            store.resolve(near).await.expect("resolve"),
            None,
            "{near:?}"
        );
    }
    store.shred(a).await.expect("shred");
    assert_eq!(store.resolve("ra").await.expect("resolve"), None);
    assert_eq!(store.resolve("rb").await.expect("resolve"), Some(b));
}

pub async fn subjects_are_listed_by_literal_prefix_while_the_key_exists<H: Harness>(
    _h: &H,
    store: Store,
) {
    let (a, b, keyless) = (user(1), user(2), user(3));
    store.put_key(a, wrapped(1)).await.expect("put_key");
    store.put_key(b, wrapped(2)).await.expect("put_key");
    for (handle, u, subject) in [
        ("t02", a, "post-b"),
        ("t01", a, "post-a"),
        ("r01", a, "stream-x"),
        ("tx_9", a, "post-underscore"),
        ("T03", a, "post-upper"),
        ("t04", b, "post-of-b"),
        ("t05", keyless, "post-of-keyless"),
    ] {
        store
            .put_handle(handle, u, subject)
            .await
            .expect("put_handle");
    }
    assert_eq!(
        sorted_subjects(&store, a, "t").await,
        vec!["post-a", "post-b", "post-underscore"],
        "prefix `t`: the user's author tokens only (case-sensitive)"
    );
    assert_eq!(sorted_subjects(&store, a, "r").await, vec!["stream-x"]);
    assert_eq!(sorted_subjects(&store, a, "T").await, vec!["post-upper"]);
    assert_eq!(
        sorted_subjects(&store, a, "").await,
        vec![
            "post-a",
            "post-b",
            "post-underscore",
            "post-upper",
            "stream-x"
        ]
    );
    assert_eq!(
        sorted_subjects(&store, a, "t0").await,
        vec!["post-a", "post-b"]
    );
    assert_eq!(sorted_subjects(&store, a, "t01").await, vec!["post-a"]);
    // The prefix is literal text, not a pattern.
    assert_eq!(
        sorted_subjects(&store, a, "tx_").await,
        vec!["post-underscore"]
    );
    for pattern in ["%", "_", "t%", "t_", "t_9", "*", ".*"] {
        assert!(
            sorted_subjects(&store, a, pattern).await.is_empty(),
            "{pattern:?} is not a wildcard"
        );
    }
    assert!(sorted_subjects(&store, a, "t011").await.is_empty());
    assert_eq!(sorted_subjects(&store, b, "t").await, vec!["post-of-b"]);
    // No key, no subjects.
    assert!(sorted_subjects(&store, keyless, "t").await.is_empty());
    assert!(sorted_subjects(&store, user(9), "").await.is_empty());
}

pub async fn shred_destroys_that_users_key_and_handles_only<H: Harness>(h: &H, store: Store) {
    let (a, b) = (user(1), user(2));
    store.put_key(a, wrapped(1)).await.expect("put_key");
    store.put_key(b, wrapped(2)).await.expect("put_key");
    // The same subject under both users: only the handles' owner decides what goes.
    for (handle, u, subject) in [
        ("ta1", a, "post-1"),
        ("ta2", a, "post-2"),
        ("ra1", a, "stream-a"),
        ("tb1", b, "post-1"),
        ("rb1", b, "stream-b"),
    ] {
        store
            .put_handle(handle, u, subject)
            .await
            .expect("put_handle");
    }
    store.shred(a).await.expect("shred");

    assert_eq!(store.get_key(a).await.expect("get_key"), None);
    for handle in ["ta1", "ta2", "ra1"] {
        assert_eq!(
            store.resolve(handle).await.expect("resolve"),
            None,
            "{handle}"
        );
    }
    assert!(sorted_subjects(&store, a, "").await.is_empty());

    assert_eq!(store.get_key(b).await.expect("get_key"), Some(wrapped(2)));
    assert_eq!(store.resolve("tb1").await.expect("resolve"), Some(b));
    assert_eq!(store.resolve("rb1").await.expect("resolve"), Some(b));
    assert_eq!(
        sorted_subjects(&store, b, "").await,
        vec!["post-1", "stream-b"]
    );

    // Shredding again is not an error, and a second process sees the same.
    store.shred(a).await.expect("shred twice");
    let other = h.reopen().await;
    assert_eq!(other.get_key(a).await.expect("get_key"), None);
    assert_eq!(other.resolve("ta1").await.expect("resolve"), None);
    assert_eq!(other.get_key(b).await.expect("get_key"), Some(wrapped(2)));
    assert_eq!(other.resolve("tb1").await.expect("resolve"), Some(b));
}

/// Shredding deletes the handles, not only hides them behind the missing key: a key made
/// again for the same id (say, by a process that still had the user in memory) brings none of
/// them back.
pub async fn shredded_handles_stay_dead_under_a_new_key<H: Harness>(_h: &H, store: Store) {
    let a = user(1);
    store.put_key(a, wrapped(1)).await.expect("put_key");
    store
        .put_handle("told", a, "post-old")
        .await
        .expect("put_handle");
    store.shred(a).await.expect("shred");
    // A tombstone keeps its place: no key is ever made again for a user who left.
    assert!(matches!(
        store.put_key(a, wrapped(3)).await,
        Err(KeyError::Destroyed(u)) if u == a
    ));
    assert_eq!(store.get_key(a).await.expect("get_key"), None);
    store
        .put_handle("tnew", a, "post-new")
        .await
        .expect("put_handle");
    assert_eq!(store.resolve("tnew").await.expect("resolve"), None);
    assert_eq!(store.resolve("told").await.expect("resolve"), None);
    assert_eq!(store.all().await.expect("all").destroyed, vec![a]);
    assert!(sorted_subjects(&store, a, "").await.is_empty());
}

/// `all` (what `treehole keys export` copies): every key, still wrapped, and every handle;
/// nothing of a shredded user.
pub async fn all_lists_every_key_and_handle_until_shredded<H: Harness>(_h: &H, store: Store) {
    let (a, b) = (user(1), user(2));
    assert_eq!(store.all().await.expect("all"), KeyDump::default());
    store.put_key(a, wrapped(1)).await.expect("put_key");
    store.put_key(b, wrapped(2)).await.expect("put_key");
    store
        .put_handle("ta", a, "post-1")
        .await
        .expect("put_handle");
    store
        .put_handle("rb", b, "stream-b")
        .await
        .expect("put_handle");
    store
        .put_handle("tb", b, "post-1")
        .await
        .expect("put_handle");
    let listed = |dump: KeyDump| {
        let (mut keys, mut handles) = (dump.keys, dump.handles);
        keys.sort();
        handles.sort();
        (keys, handles)
    };
    let mut keys = vec![(a, wrapped(1)), (b, wrapped(2))];
    keys.sort();
    assert_eq!(
        listed(store.all().await.expect("all")),
        (
            keys,
            vec![
                ("rb".to_string(), b, "stream-b".to_string()),
                ("ta".to_string(), a, "post-1".to_string()),
                ("tb".to_string(), b, "post-1".to_string()),
            ]
        )
    );
    store.shred(a).await.expect("shred");
    assert_eq!(
        listed(store.all().await.expect("all")),
        (
            vec![(b, wrapped(2))],
            vec![
                ("rb".to_string(), b, "stream-b".to_string()),
                ("tb".to_string(), b, "post-1".to_string()),
            ]
        )
    );
}

/// Through `commands::Keys` over the real store: values sealed for a user open (in this
/// process and in a fresh one) until `Keys::shred`; afterwards a fresh process can open
/// nothing of theirs, and decodes each value as unknown, while other users' values still open.
pub async fn sealed_values_open_in_a_fresh_process_until_the_key_is_shredded<H: Harness>(
    h: &H,
    store: Store,
) {
    let keys = Keys::new(store, SECRET);
    let (ann, bob) = (user(1), user(2));
    keys.create(ann).await.expect("a key for ann");
    keys.create(bob).await.expect("a key for bob");

    // Values under the user's id (their own stream) and under an author token (a handle).
    let mut ann_registered = registered(ann, "ann");
    let mut bob_registered = registered(bob, "bob");
    keys.seal(&mut ann_registered).await.expect("seal");
    keys.seal(&mut bob_registered).await.expect("seal");
    let text = ann_registered.data.to_string();
    assert!(
        !text.contains("ann@campus.edu") && !text.contains("argon2id"),
        "sealed: {text}"
    );
    let post = PostId::new(Uuid::from_u128(0x9057));
    let token = keys.author_token(ann, post).await.expect("token");
    let mut ann_post = NewEvent::from_domain(
        &PostEvent::PostPublished {
            post_id: post,
            author: Author::anonymous(token.clone(), "洞主", ann),
            anonymous: true,
            title: None,
            body: "匿名的帖子".into(),
            tags: vec![],
        },
        Uuid::now_v7(),
        Utc.timestamp_opt(1_700_000_100, 0).unwrap(),
        Metadata::default(),
    );
    keys.seal(&mut ann_post).await.expect("seal");
    assert!(
        !ann_post.data.to_string().contains(&ann.to_string()),
        "the anonymous author is sealed: {}",
        ann_post.data
    );

    let ann_clear = (
        Some("ann@campus.edu".to_string()),
        Some("ann".to_string()),
        Some("$argon2id$hash-of-ann".to_string()),
    );
    let bob_clear = (
        Some("bob@campus.edu".to_string()),
        Some("bob".to_string()),
        Some("$argon2id$hash-of-bob".to_string()),
    );
    // This process opens them, and so does a fresh one (nothing cached).
    assert_eq!(
        open_registration(&keys, &ann_registered, ann).await,
        ann_clear
    );
    let fresh = Keys::new(h.reopen().await, SECRET);
    assert_eq!(
        open_registration(&fresh, &ann_registered, ann).await,
        ann_clear
    );
    assert_eq!(
        open_anonymous_author(&fresh, &ann_post, post).await,
        (token.as_str().to_owned(), "洞主".to_owned(), Some(ann))
    );
    assert_eq!(fresh.posts_of(ann).await.expect("posts_of"), vec![post]);
    drop(fresh);

    keys.shred(ann).await.expect("shred");

    // A fresh process, after the shred: nothing of ann's opens; each value is unknown.
    let fresh = Keys::new(h.reopen().await, SECRET);
    assert_eq!(
        open_registration(&fresh, &ann_registered, ann).await,
        (None, None, None)
    );
    assert_eq!(
        open_anonymous_author(&fresh, &ann_post, post).await,
        (token.as_str().to_owned(), "洞主".to_owned(), None),
        "the clear parts stay, the sealed author is unknown"
    );
    assert!(fresh.posts_of(ann).await.expect("posts_of").is_empty());
    // Nor in the process that shredded.
    assert_eq!(
        open_registration(&keys, &ann_registered, ann).await,
        (None, None, None)
    );
    // Bob's values are untouched, in both.
    assert_eq!(
        open_registration(&fresh, &bob_registered, bob).await,
        bob_clear
    );
    assert_eq!(
        open_registration(&keys, &bob_registered, bob).await,
        bob_clear
    );
    // Nothing can be sealed for ann any more, through her id or her old token.
    let mut late = registered(ann, "ann");
    assert!(
        fresh.seal(&mut late).await.is_err(),
        "sealing without a key"
    );
}

/// `resolve_many` and `get_keys` (one round trip for a batch of events): the live ones only.
pub async fn batches_resolve_and_read_only_live_keys<H: Harness>(_h: &H, store: Store) {
    let (a, b, c) = (user(1), user(2), user(3));
    store.put_key(a, wrapped(1)).await.expect("put_key");
    store.put_key(b, wrapped(2)).await.expect("put_key");
    for (h, u) in [("ta", a), ("tb", b), ("ta2", a)] {
        store.put_handle(h, u, "post-1").await.expect("put_handle");
    }
    store.shred(b).await.expect("shred");
    let asked: Vec<String> = ["ta", "tb", "ta2", "nobody"]
        .into_iter()
        .map(String::from)
        .collect();
    let mut resolved = store.resolve_many(&asked).await.expect("resolve_many");
    resolved.sort();
    assert_eq!(
        resolved,
        vec![("ta".to_string(), a), ("ta2".to_string(), a)]
    );
    assert_eq!(
        store.get_keys(&[a, b, c]).await.expect("get_keys"),
        vec![(a, wrapped(1))]
    );
    assert!(store.resolve_many(&[]).await.expect("empty").is_empty());
}

/// `put_keys` and `put_handles` (bulk loads) store as the single puts do, keeping what exists
/// and repeats within one call, and never bring back a destroyed key.
pub async fn bulk_puts_keep_what_exists<H: Harness>(_h: &H, store: Store) {
    let (a, b, c) = (user(1), user(2), user(3));
    store.put_key(a, wrapped(1)).await.expect("put_key");
    store.put_key(c, wrapped(3)).await.expect("put_key");
    store.shred(c).await.expect("shred");
    store
        .put_keys(&[(a, wrapped(9)), (b, wrapped(2)), (c, wrapped(8))])
        .await
        .expect("put_keys");
    assert_eq!(store.get_key(a).await.expect("a"), Some(wrapped(1)));
    assert_eq!(store.get_key(b).await.expect("b"), Some(wrapped(2)));
    assert_eq!(store.get_key(c).await.expect("c"), None);
    let h = |n: &str, u, s: &str| (n.to_string(), u, s.to_string());
    store
        .put_handles(&[
            h("t1", a, "p1"),
            h("t1", b, "p9"),
            h("t2", b, "p2"),
            h("t2", b, "p2"),
        ])
        .await
        .expect("put_handles");
    assert_eq!(store.resolve("t1").await.expect("t1"), Some(a));
    assert_eq!(store.resolve("t2").await.expect("t2"), Some(b));
    assert_eq!(
        sorted_subjects(&store, b, "t").await,
        vec!["p2".to_string()]
    );
}

/// The start-up check: an empty store passes any secret; once a key is stored, only the secret
/// that wrapped it passes (a replica with another secret would read every value as unknown).
pub async fn only_the_deployments_secret_passes_the_start_up_check<H: Harness>(
    _h: &H,
    store: Store,
) {
    Keys::new(store.clone(), b"another secret")
        .check_secret()
        .await
        .expect("an empty store passes");
    let keys = Keys::new(store.clone(), SECRET);
    keys.create(user(1)).await.expect("a key");
    keys.check_secret().await.expect("the same secret passes");
    assert!(matches!(
        Keys::new(store, b"another secret").check_secret().await,
        Err(KeyError::WrongSecret)
    ));
}

/// The unregister command and a projector reading past its event may destroy one key at once.
pub async fn two_shreds_at_once_both_succeed<H: Harness>(_h: &H, store: Store) {
    for n in 1..=5 {
        let u = user(n);
        store.put_key(u, wrapped(n as u8)).await.expect("put_key");
        let (a, b) = tokio::join!(store.shred(u), store.shred(u));
        a.expect("the first shred");
        b.expect("the second shred");
        assert_eq!(store.get_key(u).await.expect("get_key"), None);
        assert!(matches!(
            store.put_key(u, wrapped(9)).await,
            Err(KeyError::Destroyed(_))
        ));
    }
}

/// Through `commands::Keys`: 300 first comments at once (150 users on two posts, each asking
/// twice) store their handles together; each handle is stored, under its own user, and a
/// fresh process resolves every one.
pub async fn author_tokens_made_at_once_are_all_stored<H: Harness>(h: &H, store: Store) {
    let keys = Arc::new(Keys::new(store, SECRET));
    let users: Vec<UserId> = (1..=150).map(user).collect();
    for u in &users {
        keys.create(*u).await.expect("a key");
    }
    let posts = [
        PostId::new(Uuid::from_u128(0x51)),
        PostId::new(Uuid::from_u128(0x52)),
    ];
    let mut asks = Vec::new();
    for u in &users {
        for post in posts {
            for _ in 0..2 {
                let (keys, u) = (keys.clone(), *u);
                asks.push(tokio::spawn(async move {
                    (u, keys.author_token(u, post).await.expect("a token"))
                }));
            }
        }
    }
    let mut tokens = std::collections::BTreeMap::new();
    for ask in asks {
        let (u, token) = ask.await.expect("joined");
        tokens.insert(token.as_str().to_owned(), u);
    }
    assert_eq!(tokens.len(), 300, "one token per user and post");
    let fresh = h.reopen().await;
    for (token, u) in &tokens {
        assert_eq!(
            fresh.resolve(token).await.expect("resolve"),
            Some(*u),
            "the handle {token} is stored under its user"
        );
    }
}
