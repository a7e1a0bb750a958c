//! The log keeps secrets (crypto-shredding): what a reader of the stored log, of a raw export
//! or of the Kafka topic can learn, unregistering, and "my data". Runs on the suite's backend
//! (SQLite, or PostgreSQL in the PostgreSQL pass); the topic is scanned in `kafka.rs`.

use std::collections::BTreeSet;

use commands::CommandHandler;
use domain::user::{User, UserEvent};
use domain::{DomainEvent, UserId};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::export::{Target, stdout, succeeded};
use crate::helpers::{PASSWORD, TestApp, TestUser, position, spawn_app, str_field};

/// A user with distinctive personal data, and what they wrote.
pub(crate) struct Writer {
    pub user: TestUser,
    pub password_hash: String,
    /// Ids of their anonymous posts and comments.
    pub anonymous: Vec<String>,
}

/// Registers two users with distinctive e-mails and usernames; each writes a named post, an
/// anonymous post, and anonymous comments under both of the other's posts and under their own.
pub(crate) async fn two_writers(app: &TestApp, tag: &str) -> (Writer, Writer, u64) {
    let mut writers = Vec::new();
    for who in ["kestrel", "marten"] {
        let name = format!("{who}_{tag}");
        let user = app.new_user(&name).await;
        writers.push(Writer {
            password_hash: password_hash(app, &user).await,
            user,
            anonymous: Vec::new(),
        });
    }
    let mut last = 0;
    let mut posts = Vec::new();
    for (i, w) in writers.iter_mut().enumerate() {
        for anonymous in [false, true] {
            let body = json!({"body": format!("post {i} {anonymous}"), "anonymous": anonymous});
            let made = app.create_post(&w.user.token, &body).await.expect(201);
            last = last.max(position(&made));
            let id = str_field(&made, "post_id").to_owned();
            if anonymous {
                w.anonymous.push(id.clone());
            }
            posts.push(id);
        }
    }
    for (i, w) in writers.iter_mut().enumerate() {
        for post in &posts {
            let body = json!({"body": format!("comment by writer {i}"), "anonymous": true});
            let made = app.comment(&w.user.token, post, &body).await.expect(201);
            last = last.max(position(&made));
            w.anonymous.push(str_field(&made, "comment_id").to_owned());
        }
    }
    let second = writers.pop().expect("two");
    let first = writers.pop().expect("two");
    (first, second, last)
}

/// The user's argon2 hash, read through the write side (which holds the keys).
async fn password_hash(app: &TestApp, user: &TestUser) -> String {
    let handler = CommandHandler::new(app.event_store());
    let id = UserId::new(Uuid::parse_str(&user.user_id).expect("a user id"));
    let state = handler
        .load::<User>(&id.stream())
        .await
        .expect("the user")
        .state;
    assert!(state.password_hash.starts_with("$argon2"), "{state:?}");
    state.password_hash
}

/// Fails if `text` holds any personal value of `w`: e-mail, username, password hash.
#[track_caller]
pub(crate) fn assert_no_personal_data(text: &str, w: &Writer, what: &str) {
    for (label, value) in [
        ("e-mail address", w.user.email.as_str()),
        ("username", w.user.username.as_str()),
        ("password hash", w.password_hash.as_str()),
    ] {
        assert!(
            !text.contains(value),
            "{what} carries the {label} {value:?}"
        );
    }
}

/// The stored records (stream, data and metadata as stored) of the log.
pub(crate) async fn stored_records(app: &TestApp) -> Vec<Value> {
    let store = app.event_store();
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let page = store.read_all_raw(after, 1000).await.expect("the log");
        let Some(last) = page.last() else { break };
        after = last.position;
        for e in page {
            out.push(serde_json::to_value(&e).expect("an envelope serialises"));
        }
    }
    out
}

/// Records whose item is one of `ids` (a post or a comment), as stored.
#[track_caller]
pub(crate) fn assert_anonymous_records_name_nobody(
    records: &[Value],
    w: &Writer,
    what: &str,
) -> usize {
    let mut seen = 0;
    for r in records {
        let data = &r["data"];
        let item = data
            .get("comment_id")
            .or_else(|| data.get("post_id"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        let added = matches!(r["type"].as_str(), Some("PostPublished" | "CommentAdded"));
        if added && w.anonymous.iter().any(|a| a == item) {
            let text = r.to_string();
            assert!(
                !text.contains(&w.user.user_id),
                "{what}: the author's user id is next to anonymous content: {text}"
            );
            assert_eq!(r["metadata"].get("actor"), None, "{what}: {text}");
            seen += 1;
        }
    }
    seen
}

/// Every string in a JSON value, with its parts split at `:` and `"` (so that a token or id
/// embedded in a longer value is found too; ids are compared whole, since UUIDv7s made in the
/// same millisecond share their time prefix, which links nothing).
fn strings(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::String(s) => {
            out.insert(s.clone());
            for part in s.split([':', '"']).filter(|p| p.len() >= 8) {
                out.insert(part.to_owned());
            }
        }
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(m) => m.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

/// Two anonymous comments of one user under two posts: their records share nothing but what
/// any two comments may share (type names, a pseudonym that is the same for every first
/// commenter, the `$personal` machinery).
#[track_caller]
fn assert_unlinkable(a: &Value, b: &Value, what: &str) {
    let (mut sa, mut sb) = (BTreeSet::new(), BTreeSet::new());
    for field in ["data", "metadata"] {
        strings(&a[field], &mut sa);
        strings(&b[field], &mut sb);
    }
    let shared: Vec<&String> = sa
        .intersection(&sb)
        .filter(|s| s.len() >= 8 && !s.starts_with("comment by"))
        .collect();
    assert!(
        shared.is_empty(),
        "{what}: two anonymous comments of one user share {shared:?}:\n{a}\n{b}"
    );
}

/// Two anonymous comments of `w` under two different posts, among `records`, are unlinkable.
#[track_caller]
pub(crate) fn assert_comments_unlinkable(records: &[Value], w: &Writer, what: &str) {
    let comments: Vec<&Value> = records
        .iter()
        .filter(|r| {
            r["type"] == "CommentAdded"
                && w.anonymous
                    .iter()
                    .any(|id| r["data"]["comment_id"] == id.as_str())
        })
        .collect();
    assert!(comments.len() >= 2, "{what}: {} comments", comments.len());
    assert_ne!(comments[0]["stream"], comments[1]["stream"]);
    assert_unlinkable(comments[0], comments[1], what);
}

/// The stored log's bytes where a reader of the database finds them: the SQLite file and its
/// write-ahead log, or the PostgreSQL `events` table as text.
async fn log_bytes(app: &TestApp) -> String {
    match &app.database_url {
        Some(url) => {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(url).await.expect("PostgreSQL");
            let rows: Vec<String> = sqlx::query_scalar("SELECT e::text FROM events e")
                .fetch_all(&mut conn)
                .await
                .expect("the events table");
            rows.join("\n")
        }
        None => {
            let mut text = String::new();
            for file in ["events.db", "events.db-wal"] {
                if let Ok(bytes) = std::fs::read(app.data.join(file)) {
                    text.push_str(&String::from_utf8_lossy(&bytes));
                }
            }
            text
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stored_log_and_a_raw_export_keep_personal_data_and_authorship_secret() {
    let app = spawn_app().await;
    let (a, b, _) = two_writers(&app, "scan").await;

    let bytes = log_bytes(&app).await;
    assert!(bytes.contains("comment by"), "the scan reads the log");
    for w in [&a, &b] {
        assert_no_personal_data(&bytes, w, "the stored log");
    }
    let records = stored_records(&app).await;
    for w in [&a, &b] {
        assert_eq!(
            assert_anonymous_records_name_nobody(&records, w, "the stored log"),
            w.anonymous.len()
        );
    }

    let raw = stdout(succeeded(
        &Target::of(&app)
            .treehole(&["events", "export", "--raw"])
            .await,
    ));
    assert!(
        raw.contains("\"$sealed\""),
        "the raw export carries ciphertext"
    );
    let exported: Vec<Value> = raw
        .lines()
        .map(|l| serde_json::from_str(l).expect("an envelope"))
        .collect();
    for w in [&a, &b] {
        assert_no_personal_data(&raw, w, "the raw export");
        assert_anonymous_records_name_nobody(&exported, w, "the raw export");
    }

    // Two anonymous comments of `a` under two different posts share nothing.
    assert_comments_unlinkable(&records, &a, "the stored log");
    app.assert_no_server_errors();
}

pub(crate) async fn unregister(
    app: &TestApp,
    token: &str,
    password: &str,
    code: &str,
) -> crate::helpers::Reply {
    let request = app
        .client
        .delete(app.url("/me"))
        .bearer_auth(token)
        .json(&json!({"password": password, "code": code}));
    app.send(request).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unregistering_forgets_the_user_for_good_and_a_rebuild_agrees() {
    let app = spawn_app().await;
    let (leaver, stayer, _) = two_writers(&app, "gone").await;
    let leaver_id = leaver.user.user_id.clone();
    let named_post = {
        let made = app
            .create_post(
                &leaver.user.token,
                &json!({"body": "signed, by me", "anonymous": false}),
            )
            .await
            .expect(201);
        str_field(&made, "post_id").to_owned()
    };
    let anonymous_comment = leaver.anonymous.last().expect("a comment").clone();
    let head = app.head().await;
    let before = app
        .all_pages(&format!("/posts/{}/comments", stayer.anonymous[0]), head)
        .await;
    let pseudonym = before
        .iter()
        .find(|c| c["comment_id"] == anonymous_comment.as_str())
        .map(|c| c["author_name"].clone());

    // "My data" lists everything, anonymous content included.
    let mine = app
        .get_auth("/me/export", &leaver.user.token)
        .await
        .expect(200);
    assert_eq!(mine["profile"]["email"], leaver.user.email.as_str());
    assert_eq!(mine["profile"]["username"], leaver.user.username.as_str());
    let listed: BTreeSet<&str> = mine["posts"]
        .as_array()
        .expect("posts")
        .iter()
        .chain(mine["comments"].as_array().expect("comments"))
        .filter(|i| i["anonymous"] == true)
        .map(|i| {
            i.get("comment_id")
                .unwrap_or(&i["post_id"])
                .as_str()
                .expect("an id")
        })
        .collect();
    let expected: BTreeSet<&str> = leaver.anonymous.iter().map(String::as_str).collect();
    assert_eq!(listed, expected, "{mine}");
    assert!(!mine["sessions"].as_array().expect("sessions").is_empty());
    // Nobody else's: the other writer's export does not list these.
    let theirs = app
        .get_auth("/me/export", &stayer.user.token)
        .await
        .expect(200);
    let their_items: BTreeSet<String> = theirs["posts"]
        .as_array()
        .expect("posts")
        .iter()
        .map(|p| p["post_id"].to_string())
        .chain(
            theirs["comments"]
                .as_array()
                .expect("comments")
                .iter()
                .map(|c| c["comment_id"].to_string()),
        )
        .collect();
    assert_eq!(their_items.len(), stayer.anonymous.len() + 1, "{theirs}");
    assert!(
        leaver
            .anonymous
            .iter()
            .all(|id| !their_items.contains(&format!("\"{id}\""))),
        "{theirs}"
    );

    // Bad input changes nothing.
    app.request_code(&leaver.user.email).await.expect(202);
    let code = app.code_for(&leaver.user.email);
    let wrong_code = if code == "000000" { "000001" } else { "000000" };
    unregister(&app, &leaver.user.token, "not the password", &code)
        .await
        .expect_problem(403);
    unregister(&app, &leaver.user.token, PASSWORD, wrong_code)
        .await
        .expect_problem(400);
    unregister(&app, &leaver.user.token, PASSWORD, "12ab")
        .await
        .expect_problem(422);
    app.get_auth("/me", &leaver.user.token).await.expect(200);
    app.login(&leaver.user.username, PASSWORD).await;
    // A wrong guess spends the code (as at registration): ask for a fresh one.
    app.request_code(&leaver.user.email).await.expect(202);
    let code = app.code_for(&leaver.user.email);

    let done = unregister(&app, &leaver.user.token, PASSWORD, &code)
        .await
        .expect(200);
    let at = position(&done);

    // Every session ends at once, the login is gone, a second try is a clear 4xx.
    app.get_auth("/me", &leaver.user.token)
        .await
        .expect_problem(401);
    app.login_reply(&leaver.user.username, PASSWORD)
        .await
        .expect_problem(401);
    app.login_reply(&leaver.user.email, PASSWORD)
        .await
        .expect_problem(401);
    unregister(&app, &leaver.user.token, PASSWORD, &code)
        .await
        .expect_problem(401);

    // Named content shows the placeholder; anonymous content keeps its pseudonym.
    let post = app
        .get(&format!("/posts/{named_post}?after={at}"))
        .await
        .expect(200);
    assert_eq!(post["author_name"], projections::DELETED_USER);
    let after = app
        .all_pages(&format!("/posts/{}/comments", stayer.anonymous[0]), at)
        .await;
    let kept = after
        .iter()
        .find(|c| c["comment_id"] == anonymous_comment.as_str())
        .map(|c| c["author_name"].clone());
    assert_eq!(kept, pseudonym);
    assert!(kept.is_some());
    let everything = format!(
        "{}{}",
        app.get(&format!("/posts?after={at}")).await.text,
        app.get(&format!("/search?q=signed&after={at}")).await.text
    );
    assert!(!everything.contains(&leaver.user.username), "{everything}");

    // The name and the address are free again, for anyone.
    let again = app
        .register(&leaver.user.email, &leaver.user.username, PASSWORD)
        .await
        .expect(201);
    assert_ne!(again["user_id"], leaver_id.as_str());

    // With the whole database and the secret: the old user's key is gone, so their sealed
    // values stay sealed and their e-mail address is nowhere in clear.
    let handler = CommandHandler::new(app.event_store());
    let gone = UserId::new(Uuid::parse_str(&leaver_id).expect("an id"));
    let state = handler
        .load::<User>(&gone.stream())
        .await
        .expect("the user stream")
        .state;
    assert!(state.unregistered);
    assert_eq!((state.email.as_str(), state.username.as_str()), ("", ""));
    let stored = app
        .event_store()
        .read_stream(&gone.stream(), 1)
        .await
        .expect("the stream");
    let registered = UserEvent::decode(&stored[0].event_type, stored[0].schema, &stored[0].data)
        .expect("decodes");
    let UserEvent::UserRegistered { email, .. } = registered else {
        panic!("{registered:?}")
    };
    assert_eq!(email.get(), None, "the e-mail address was recovered");
    let bytes = log_bytes(&app).await;
    assert!(!bytes.contains(&leaver.user.email));

    // A rebuild from the log after unregistering gives the read models the live projectors
    // made: an import of the raw export (with the keys and the secret) rebuilt from scratch.
    let files = tempfile::tempdir().expect("a temp dir");
    let original = Target::of(&app);
    let copy = crate::export::copy_of(&original, files.path()).await;
    let (live, rebuilt) = (original.read_models().await, copy.read_models().await);
    let (live_all, rebuilt_all) = (
        crate::helpers::with_search(live.clone(), &original.data),
        crate::helpers::with_search(rebuilt.clone(), &copy.data),
    );
    for projection in projections::all() {
        let name = projection.name();
        let a = live_all.dump(name).await.expect("dump");
        let b = rebuilt_all.dump(name).await.expect("dump");
        assert_eq!(a, b, "{name}: the rebuild after unregistering differs");
        assert!(
            !a.join("\n").contains(&leaver_id) || name == "stats" || name == "tasks",
            "{name} still holds the unregistered user's id"
        );
    }
    rebuilt.close().await;
    live.close().await;
    app.assert_no_server_errors();
}

/// One envelope of a log written before sealing (schema 1), as its raw export holds it.
fn legacy(
    position: u64,
    stream: &str,
    version: u64,
    kind: &str,
    data: Value,
    actor: Option<&str>,
) -> String {
    let mut metadata = json!({});
    if let Some(a) = actor {
        metadata["actor"] = json!(a);
    }
    json!({"position": position, "event_id": Uuid::now_v7(), "stream": stream,
        "version": version, "type": kind, "schema": 1,
        "occurred_at": "2026-11-20T10:00:00.000Z", "data": data, "metadata": metadata})
    .to_string()
}

fn sha256_hex(text: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// The documented migration of a store written before sealing: its raw export, imported into a
/// new store, comes out sealed (no address, name, hash or anonymous author id in clear; the
/// reservations under their keyed names), and the old account still signs in and keeps its
/// pseudonym under the old post.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsealed_log_is_sealed_by_a_copy_and_transform_import() {
    let passwords =
        commands::Passwords::new(api::cli::config::Settings::default().password.policy())
            .expect("a policy");
    let hash = passwords.hash(PASSWORD.to_owned()).await;
    let (ann, bob) = (Uuid::now_v7(), Uuid::now_v7());
    let (post, comment) = (Uuid::now_v7(), Uuid::now_v7());
    let (ann_s, bob_s) = (ann.to_string(), bob.to_string());
    let mut lines = Vec::new();
    let mut p = 0;
    let mut next = || {
        p += 1;
        p
    };
    for (id, name) in [(&ann_s, "legacy_ann"), (&bob_s, "legacy_bob")] {
        let email = format!("{name}@old.campus.edu");
        let owner = json!({ "owner": id });
        lines.push(legacy(
            next(),
            &format!("email-{}", sha256_hex(&email)),
            1,
            "IdentityReserved",
            owner.clone(),
            Some(id),
        ));
        lines.push(legacy(
            next(),
            &format!("username-{}", sha256_hex(name)),
            1,
            "IdentityReserved",
            owner,
            Some(id),
        ));
        lines.push(legacy(
            next(),
            &format!("user-{id}"),
            1,
            "UserRegistered",
            json!({"user_id": id, "email": email, "username": name, "password_hash": hash}),
            Some(id),
        ));
    }
    lines.push(legacy(
        next(),
        &format!("post-{post}"),
        1,
        "PostPublished",
        json!({"post_id": post, "author_id": bob_s, "author_name": "洞主", "anonymous": true,
            "title": null, "body": "an old anonymous post", "tags": []}),
        Some(&bob_s),
    ));
    lines.push(legacy(
        next(),
        &format!("post-{post}"),
        2,
        "CommentAdded",
        json!({"post_id": post, "comment_id": comment, "author_id": ann_s, "author_name": "Alice",
            "anonymous": true, "is_host": false, "body": "an old anonymous comment",
            "reply_to": null}),
        Some(&ann_s),
    ));
    let files = tempfile::tempdir().expect("a temp dir");
    let input = files.path().join("legacy.ndjson");
    std::fs::write(&input, lines.join("\n") + "\n").expect("the legacy export");

    let target = Target::empty(&files.path().join("new")).await;
    let out = target
        .treehole(&["events", "import", input.to_str().expect("UTF-8")])
        .await;
    assert!(stdout(succeeded(&out)).contains("imported 8 events"));
    let raw = stdout(succeeded(
        &target.treehole(&["events", "export", "--raw"]).await,
    ));
    for secret in [
        "legacy_ann@old.campus.edu",
        "legacy_bob@old.campus.edu",
        "legacy_ann",
        "legacy_bob",
        hash.as_str(),
        "legacy-",
    ] {
        assert!(
            !raw.contains(secret),
            "the imported log carries {secret:?}:\n{raw}"
        );
    }
    let records: Vec<Value> = raw
        .lines()
        .map(|l| serde_json::from_str(l).expect("an envelope"))
        .collect();
    for r in &records {
        if matches!(r["type"].as_str(), Some("PostPublished" | "CommentAdded")) {
            let text = r.to_string();
            assert!(!text.contains(&ann_s) && !text.contains(&bob_s), "{text}");
            assert_eq!(r["schema"], 2, "{text}");
        }
        if r["type"] == "IdentityReserved" {
            assert!(
                !r["stream"]
                    .as_str()
                    .expect("a stream")
                    .contains(&sha256_hex("legacy_ann"))
            );
        }
    }

    // The old account signs in through its keyed reservation, and keeps its pseudonym.
    let settings = api::cli::config::Settings {
        data: target.data.clone(),
        database_url: target.database_url().map(Into::into),
        ..api::cli::config::Settings::default()
    };
    let stores = api::cli::startup::Stores::open(&settings)
        .await
        .expect("the stores");
    let handler = CommandHandler::new(stores.events.clone());
    let secret = api::cli::startup::server_secret(&settings).expect("the secret");
    let ctx = commands::CommandContext::new(chrono::Utc::now());
    let policy = commands::sessions::SessionPolicy {
        ttl: chrono::Duration::minutes(5),
        max_per_user: 6,
    };
    let earlier = commands::sessions::NoEarlierSessions;
    commands::sessions::login(
        &handler,
        &passwords,
        &secret,
        &earlier,
        commands::sessions::Login {
            login: "legacy_ann",
            password: PASSWORD,
            device: None,
        },
        policy,
        &ctx,
    )
    .await
    .expect("the old account signs in");
    commands::sessions::login(
        &handler,
        &passwords,
        &secret,
        &earlier,
        commands::sessions::Login {
            login: "legacy_bob@old.campus.edu",
            password: PASSWORD,
            device: None,
        },
        policy,
        &ctx,
    )
    .await
    .expect("by e-mail too");
    let token = stores
        .keys
        .author_token(UserId::new(ann), domain::PostId::new(post))
        .await
        .expect("a token");
    let state = handler
        .load::<domain::post::Post>(&domain::PostId::new(post).stream())
        .await
        .expect("the post")
        .state;
    assert_eq!(state.pseudonym_of(UserId::new(ann), &token), Some("Alice"));
    stores.read_models.close().await;
}
