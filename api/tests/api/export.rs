//! `treehole events export` and `treehole events import`, run as the real binary against a test
//! app's store: a raw export imported into an empty store rebuilds the same read models; the
//! analysts' export carries no user id, address or secret, and its filters select exactly; an
//! import into anything but an empty store, or of anything but a complete raw export, is refused
//! without writing.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;

use chrono::{SecondsFormat, Utc};
use commands::{CommandHandler, EventStore, ExpectedVersion};
use domain::post::{Author, PostEvent};
use domain::session::SessionEvent;
use domain::user::UserEvent;
use domain::verification::VerificationEvent;
use domain::{Envelope, Event, Metadata, NewEvent, Position, StreamId};
use infra::event_store::{PostgresEventStore, SqliteEventStore};
use infra::read_model::{PostgresReadModels, ReadModels, SqliteReadModels};
use serde_json::json;

use crate::helpers::{TestApp, postgres_backend, spawn_app, str_field};

/// Where a run of the binary points: a data directory, and a database in PostgreSQL mode.
pub(crate) struct Target {
    pub(crate) data: PathBuf,
    database_url: Option<String>,
}

/// A copy of `original`'s deployment in `dir`: its raw log, its keys and its server secret,
/// imported into an empty store, and every read model rebuilt from that log.
pub(crate) async fn copy_of(original: &Target, dir: &Path) -> Target {
    let raw = dir.join("raw.ndjson");
    let keys = dir.join("keys.ndjson");
    let (raw_arg, keys_arg) = (
        raw.to_str().expect("a UTF-8 path"),
        keys.to_str().expect("a UTF-8 path"),
    );
    succeeded(
        &original
            .treehole(&["events", "export", "--raw", "--output", raw_arg])
            .await,
    );
    succeeded(
        &original
            .treehole(&["keys", "export", "--output", keys_arg])
            .await,
    );
    let copy = Target::empty(&dir.join("copy")).await;
    std::fs::create_dir_all(&copy.data).expect("the copy's data directory");
    std::fs::copy(
        original.data.join("secret.key"),
        copy.data.join("secret.key"),
    )
    .expect("the secret copied");
    succeeded(&copy.treehole(&["keys", "import", keys_arg]).await);
    succeeded(&copy.treehole(&["events", "import", raw_arg]).await);
    succeeded(&copy.treehole(&["rebuild", "all"]).await);
    copy
}

impl Target {
    pub(crate) fn of(app: &TestApp) -> Self {
        Self {
            data: app.data.clone(),
            database_url: app.database_url.clone(),
        }
    }

    /// An empty store of the suite's backend.
    pub(crate) async fn empty(data: &Path) -> Self {
        Self {
            data: data.to_path_buf(),
            database_url: postgres_backend().await,
        }
    }

    /// Runs `treehole <args> --data <data> [--database-url <url>]` to completion.
    pub(crate) async fn treehole(&self, args: &[&str]) -> Output {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_treehole"));
        for (name, _) in std::env::vars() {
            if name.starts_with("TREEHOLE_") {
                command.env_remove(name);
            }
        }
        command
            .args(args)
            .arg("--data")
            .arg(&self.data)
            .env("RUST_LOG", "warn")
            .env("RUST_BACKTRACE", "0")
            .stdin(std::process::Stdio::null());
        if let Some(url) = &self.database_url {
            command.args(["--database-url", url]);
        }
        command.output().await.expect("the binary runs")
    }

    async fn events(&self) -> Arc<dyn EventStore> {
        match &self.database_url {
            Some(url) => Arc::new(PostgresEventStore::connect(url).await.expect("the log")),
            None => Arc::new(
                SqliteEventStore::open(&self.data.join("events.db"))
                    .await
                    .expect("the log"),
            ),
        }
    }

    pub(crate) fn database_url(&self) -> Option<&str> {
        self.database_url.as_deref()
    }

    pub(crate) async fn read_models(&self) -> Arc<dyn ReadModels> {
        match &self.database_url {
            Some(url) => Arc::new(PostgresReadModels::connect(url).await.expect("models")),
            None => Arc::new(
                SqliteReadModels::open(&self.data.join("readmodels.db"))
                    .await
                    .expect("models"),
            ),
        }
    }
}

pub(crate) fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("UTF-8 output")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[track_caller]
pub(crate) fn succeeded(out: &Output) -> &Output {
    assert!(
        out.status.success(),
        "treehole failed ({}): {}",
        out.status,
        stderr(out)
    );
    out
}

#[track_caller]
fn refused<'a>(out: &'a Output, why: &str) -> &'a Output {
    assert!(
        !out.status.success(),
        "treehole succeeded but should have refused ({why}); stdout: {}",
        stdout(out)
    );
    assert!(
        stderr(out).contains(why),
        "the refusal does not say {why:?}: {}",
        stderr(out)
    );
    out
}

/// The envelopes of an NDJSON export.
pub(crate) fn envelopes(ndjson: &str) -> Vec<Envelope> {
    ndjson
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is an envelope"))
        .collect()
}

fn positions(envelopes: &[Envelope]) -> Vec<Position> {
    envelopes.iter().map(|e| e.position).collect()
}

async fn whole_log(store: &dyn EventStore) -> Vec<Envelope> {
    store.read_all(0, 100_000).await.expect("the log")
}

/// A little forum life: named and anonymous posts and comments by three users, an author's
/// and an admin's delete, a deleted post, a logout. Returns the anonymous post's id.
async fn traffic(app: &TestApp) -> String {
    let zhang = app.new_user("zhang_wei").await;
    let li = app.new_user("li_na").await;
    let wang = app.new_user("wang_fang").await;
    let admin = app.new_user("admin_chen").await;
    let granted = api::cli::admin::grant(
        &CommandHandler::new(app.event_store()),
        &app.secret(),
        &admin.username,
    )
    .await
    .expect("grant");
    app.get_auth(&format!("/me?after={granted}"), &admin.token)
        .await
        .expect(200);

    let post = |token: &str, body: &str, anonymous: bool| {
        let body = json!({"title": "t", "body": body, "anonymous": anonymous, "tags": ["life"]});
        let token = token.to_owned();
        async move {
            let reply = app.create_post(&token, &body).await.expect(201);
            str_field(&reply, "post_id").to_owned()
        }
    };
    let comment = |token: &str, post: &str, body: &str, anonymous: bool| {
        let (token, post) = (token.to_owned(), post.to_owned());
        let body = json!({"body": body, "anonymous": anonymous});
        async move {
            let reply = app.comment(&token, &post, &body).await.expect(201);
            str_field(&reply, "comment_id").to_owned()
        }
    };
    let hidden = post(&zhang.token, "the canteen is closed again", true).await;
    let named = post(&li.token, "study group tonight", false).await;
    let doomed = post(&wang.token, "never mind", true).await;
    let li_anon = comment(&li.token, &hidden, "same here", true).await;
    comment(&zhang.token, &hidden, "thanks all", true).await;
    let wang_named = comment(&wang.token, &hidden, "which one", false).await;
    let wang_anon = comment(&wang.token, &named, "count me in", true).await;
    comment(&zhang.token, &named, "me too", false).await;

    // Moderation: reports fold a post, an admin removes an anonymous comment, which
    // sanctions its author, who appeals and is heard.
    for (token, text) in [(&li.token, "spam again"), (&wang.token, "ads")] {
        app.post_json(
            &format!("/posts/{hidden}/reports"),
            Some(token),
            &json!({"reason": "spam", "text": text}),
        )
        .await
        .expect(201);
    }
    app.post_json(
        &format!(
            "/moderation/comments/{wang_anon}/acts?after={}",
            app.head().await
        ),
        Some(&admin.token),
        &json!({"act": "remove", "reason": "abuse", "note": "personal attack"}),
    )
    .await
    .expect(200);
    let sanctions = app
        .get_auth(
            &format!("/me/sanctions?after={}", app.head().await),
            &wang.token,
        )
        .await
        .expect(200);
    let sanction = str_field(&sanctions["items"][0], "sanction_id").to_owned();
    app.post_json(
        &format!("/me/sanctions/{sanction}/appeal"),
        Some(&wang.token),
        &json!({"text": "it was a joke"}),
    )
    .await
    .expect(201);
    app.post_json(
        &format!("/moderation/sanctions/{sanction}/decision"),
        Some(&admin.token),
        &json!({"uphold": false}),
    )
    .await
    .expect(200);

    app.delete(&format!("/posts/{hidden}/comments/{li_anon}"), &li.token)
        .await
        .expect(200);
    app.delete(
        &format!("/posts/{hidden}/comments/{wang_named}"),
        &admin.token,
    )
    .await
    .expect(200);
    app.delete(&format!("/posts/{doomed}"), &wang.token)
        .await
        .expect(200);
    app.delete("/sessions/current", &wang.token)
        .await
        .expect(200);
    crate::helpers::task_traffic(app, &admin.token, &zhang.token).await;

    // Every projection has caught up before anyone compares read models.
    let head = app.head().await;
    app.get(&format!("/posts?after={head}")).await.expect(200);
    app.get(&format!("/posts/{hidden}/comments?after={head}"))
        .await
        .expect(200);
    app.get_auth(&format!("/me?after={head}"), &zhang.token)
        .await
        .expect(200);
    app.assert_no_server_errors();
    hidden
}

/// The private values of a raw log, as stored: user ids, usernames, e-mail addresses,
/// password, token and code hashes, and the digests that name reservation streams.
fn private_values(log: &[Envelope]) -> Vec<String> {
    let mut private = Vec::new();
    for envelope in log {
        match Event::decode(envelope).expect("the test log decodes") {
            Event::User(UserEvent::UserRegistered {
                user_id,
                email,
                username,
                password_hash,
            }) => {
                private.push(user_id.to_string());
                private.extend(
                    [email, username, password_hash]
                        .into_iter()
                        .map(|p| p.into_inner().expect("the log is read with its keys")),
                );
            }
            Event::Session(SessionEvent::SessionStarted { token_hash, .. }) => {
                private.push(token_hash);
            }
            Event::Verification(VerificationEvent::VerificationCodeIssued {
                code_hash, ..
            }) => {
                private.push(code_hash);
            }
            _ => {}
        }
        if matches!(
            envelope.stream.kind(),
            "email" | "username" | "verification"
        ) {
            private.push(envelope.stream.key().to_owned());
        }
    }
    private
}

#[track_caller]
fn assert_carries_none_of(text: &str, private: &[String], what: &str) {
    for value in private {
        assert!(!text.contains(value.as_str()), "{what} carries {value}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raw_export_imported_into_an_empty_store_rebuilds_the_same_read_models() {
    let app = spawn_app().await;
    traffic(&app).await;
    let head = app.head().await;
    let files = tempfile::tempdir().expect("a temp dir");
    let raw = files.path().join("raw.ndjson");
    let raw_arg = raw.to_str().expect("a UTF-8 path");

    let original = Target::of(&app);
    let out = original
        .treehole(&["events", "export", "--raw", "--output", raw_arg])
        .await;
    assert!(stderr(succeeded(&out)).contains(&format!("exported {head} events")));
    let exported = std::fs::read_to_string(&raw).expect("the export");
    assert_eq!(
        positions(&envelopes(&exported)),
        (1..=head).collect::<Vec<_>>()
    );

    // The personal values are sealed: the copy needs the same server secret and the keys.
    let copy = Target::empty(&files.path().join("copy")).await;
    let keys = files.path().join("keys.ndjson");
    let keys_arg = keys.to_str().expect("a UTF-8 path");
    succeeded(
        &original
            .treehole(&["keys", "export", "--output", keys_arg])
            .await,
    );
    std::fs::create_dir_all(&copy.data).expect("the copy's data directory");
    std::fs::copy(
        original.data.join("secret.key"),
        copy.data.join("secret.key"),
    )
    .expect("the secret copied");
    let out = copy.treehole(&["keys", "import", keys_arg]).await;
    assert!(
        stdout(succeeded(&out)).contains("imported"),
        "{}",
        stdout(&out)
    );

    // A ciphertext altered in transit is refused, and nothing is imported.
    let tampered = files.path().join("tampered.ndjson");
    let mut lines: Vec<String> = exported.lines().map(str::to_owned).collect();
    let victim = lines
        .iter()
        .position(|l| l.contains("\"$sealed\"") && l.contains("UserRegistered"))
        .expect("a sealed registration");
    let ct_at = lines[victim].find("\"ct\":\"").expect("a ciphertext") + 6;
    let mut bytes = lines[victim].clone().into_bytes();
    bytes[ct_at + 10] = if bytes[ct_at + 10] == b'A' {
        b'B'
    } else {
        b'A'
    };
    lines[victim] = String::from_utf8(bytes).expect("still UTF-8");
    std::fs::write(&tampered, lines.join("\n") + "\n").expect("the tampered export");
    let out = copy
        .treehole(&["events", "import", tampered.to_str().expect("UTF-8")])
        .await;
    assert!(!out.status.success(), "a tampered export was imported");
    let said = stderr(&out);
    assert!(
        said.contains(&format!("line {}", victim + 1)) && said.contains("does not authenticate"),
        "{said}"
    );
    let empty = copy.treehole(&["events", "export", "--raw"]).await;
    assert_eq!(
        stdout(succeeded(&empty)),
        "",
        "a refused import wrote events"
    );

    let out = copy.treehole(&["events", "import", raw_arg]).await;
    assert!(
        stdout(succeeded(&out)).contains(&format!("imported {head} events")),
        "{}",
        stdout(&out)
    );
    succeeded(&copy.treehole(&["rebuild", "all"]).await);

    // The copy's log is the original, byte for byte: ids, streams, versions, positions, times.
    let again = copy.treehole(&["events", "export", "--raw"]).await;
    assert_eq!(stdout(succeeded(&again)), exported);
    // And the read models built from it are the original's, row for row.
    let (live, rebuilt) = (original.read_models().await, copy.read_models().await);
    let (live_all, rebuilt_all) = (
        crate::helpers::with_search(live.clone(), &original.data),
        crate::helpers::with_search(rebuilt.clone(), &copy.data),
    );
    for projection in projections::all() {
        let name = projection.name();
        let a = live_all.dump(name).await.expect("dump");
        let b = rebuilt_all.dump(name).await.expect("dump");
        assert!(!a.is_empty(), "{name} is empty");
        assert_eq!(a, b, "{name}: the imported copy's model differs");
    }
    rebuilt.close().await;
    live.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_analysts_export_carries_no_user_id_address_or_secret_and_filters_exactly() {
    let app = spawn_app().await;
    let hidden = traffic(&app).await;
    let log = whole_log(app.event_store().as_ref()).await;
    let mut private = private_values(&log);
    let raw_json = serde_json::to_string(&log).expect("JSON");
    for value in &private {
        assert!(
            raw_json.contains(value.as_str()),
            "the raw log lacks {value}"
        );
    }
    assert!(private.len() > 20, "{private:?}");
    // User ids in their other spelling too (hyphenless).
    let simple: Vec<String> = private
        .iter()
        .filter_map(|v| uuid::Uuid::try_parse(v).ok())
        .map(|u| u.simple().to_string())
        .collect();
    assert_eq!(simple.len(), 4);
    private.extend(simple);
    let target = Target::of(&app);

    // NDJSON: every event, pseudonymised, decodable, nothing private.
    let out = target.treehole(&["events", "export"]).await;
    let ndjson = stdout(succeeded(&out));
    assert!(stderr(&out).contains(&format!("exported {} events", log.len())));
    assert_carries_none_of(&ndjson, &private, "the NDJSON export");
    let exported = envelopes(&ndjson);
    assert_eq!(positions(&exported), positions(&log));
    for (e, raw) in exported.iter().zip(&log) {
        assert_eq!((&e.event_type, e.event_id), (&raw.event_type, raw.event_id));
        Event::decode(e).expect("the export decodes");
    }

    // Anonymous content is not linkable to its author's named activity.
    let mut named_ids = HashSet::new();
    for e in &exported {
        if let Ok(Event::User(UserEvent::UserRegistered { user_id, .. })) = Event::decode(e) {
            named_ids.insert(user_id.to_string());
        }
    }
    assert_eq!(named_ids.len(), 4);
    let mut anonymous_seen = 0;
    for e in &exported {
        let author = match Event::decode(e).expect("decodes") {
            Event::Post(PostEvent::PostPublished { author, .. })
            | Event::Post(PostEvent::CommentAdded { author, .. }) => Some(author),
            _ => None,
        };
        match author {
            Some(author @ Author::Named { .. }) => {
                let id = author.user_id().expect("a named author").to_string();
                assert_eq!(e.metadata.actor.as_ref(), Some(&id), "{e:?}");
                assert!(named_ids.contains(&id), "{e:?}");
            }
            Some(author @ Author::Anonymous { .. }) => {
                // No actor, and the stand-in author id joins nothing named.
                assert_eq!(e.metadata.actor, None, "{e:?}");
                let id = author
                    .user_id()
                    .expect("the export stands in a pseudonymous id");
                assert!(!named_ids.contains(&id.to_string()), "{e:?}");
                anonymous_seen += 1;
            }
            None => {}
        }
    }
    assert_eq!(anonymous_seen, 5);

    // CSV: the same events and payloads, quoted so that a CSV reader gets the JSON back.
    let out = target
        .treehole(&["events", "export", "--format", "csv"])
        .await;
    let csv_text = stdout(succeeded(&out));
    assert_carries_none_of(&csv_text, &private, "the CSV export");
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    assert_eq!(
        reader.headers().expect("a header"),
        api::cli::events::CSV_COLUMNS.as_slice()
    );
    let rows: Vec<csv::StringRecord> = reader
        .records()
        .collect::<Result<_, _>>()
        .expect("valid CSV");
    assert_eq!(rows.len(), log.len());
    for (row, e) in rows.iter().zip(&exported) {
        assert_eq!(row[0], e.position.to_string());
        assert_eq!(row[2], *e.stream.as_str());
        assert_eq!(row[4], e.event_type);
        let data: serde_json::Value = serde_json::from_str(&row[7]).expect("JSON data");
        assert_eq!(data, e.data);
        let metadata: Metadata = serde_json::from_str(&row[8]).expect("JSON metadata");
        assert_eq!(metadata, e.metadata);
    }

    // Filters select exactly what they say, on the log as stored.
    let expect = |keep: &dyn Fn(&Envelope) -> bool| -> Vec<Position> {
        log.iter().filter(|e| keep(e)).map(|e| e.position).collect()
    };
    let selected = |args: Vec<String>| {
        let target = &target;
        async move {
            let mut all = vec!["events".to_owned(), "export".to_owned()];
            all.extend(args);
            let all: Vec<&str> = all.iter().map(String::as_str).collect();
            positions(&envelopes(&stdout(succeeded(&target.treehole(&all).await))))
        }
    };
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let by_type = expect(&|e| matches!(e.event_type.as_str(), "CommentAdded" | "CommentDeleted"));
    assert_eq!(by_type.len(), 7);
    assert_eq!(
        selected(args(&["--type", "CommentAdded,CommentDeleted"])).await,
        by_type
    );
    assert_eq!(
        selected(args(&[
            "--type",
            "CommentAdded",
            "--type",
            "CommentDeleted"
        ]))
        .await,
        by_type
    );
    let stream = format!("post-{hidden}");
    let in_stream = expect(&|e| e.stream.as_str() == stream);
    // Its post, three comments and two deletions, two reports and the fold they made.
    assert_eq!(in_stream.len(), 9);
    assert_eq!(selected(args(&["--stream", &stream])).await, in_stream);
    assert_eq!(
        selected(args(&["--after", "5", "--until", "12"])).await,
        (6..=12).collect::<Vec<_>>()
    );
    let middle = log[log.len() / 2].occurred_at;
    let since = middle.to_rfc3339_opts(SecondsFormat::Millis, true);
    let recent = expect(&|e| e.occurred_at >= middle);
    assert!(recent.len() < log.len() && !recent.is_empty());
    assert_eq!(selected(args(&["--since", &since])).await, recent);
    let is_comment_here =
        |e: &Envelope| e.stream.as_str() == stream && e.event_type == "CommentAdded";
    let cut = log
        .iter()
        .find(|e| is_comment_here(e))
        .expect("a comment")
        .position;
    let combined = expect(&|e| is_comment_here(e) && e.position > cut);
    assert_eq!(combined.len(), 2);
    let cut = cut.to_string();
    assert_eq!(
        selected(args(&[
            "--stream",
            &stream,
            "--type",
            "CommentAdded",
            "--after",
            &cut
        ]))
        .await,
        combined
    );

    // Bad arguments are clear errors, and write nothing.
    for (bad, why) in [
        (
            vec!["--after", "9", "--until", "3"],
            "--until 3 is before --after 9",
        ),
        (vec!["--since", "yesterday"], "RFC 3339"),
        (
            vec!["--type", "PostPublished,NoSuchEvent"],
            "--type NoSuchEvent",
        ),
        (vec!["--format", "xml"], "xml"),
    ] {
        let mut all = vec!["events", "export"];
        all.extend(bad);
        let out = target.treehole(&all).await;
        assert!(refused(&out, why).stdout.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_refuses_a_store_that_is_not_empty_and_anything_but_a_complete_raw_export() {
    let app = spawn_app().await;
    let user = app.new_user("zhou_min").await;
    app.create_post(&user.token, &json!({"body": "hello", "anonymous": true}))
        .await
        .expect(201);
    let head = app.head().await;
    let files = tempfile::tempdir().expect("a temp dir");
    let original = Target::of(&app);
    let save = |name: &str, out: &Output| {
        let path = files.path().join(name);
        std::fs::write(&path, &succeeded(out).stdout).expect("written");
        path.to_str().expect("a UTF-8 path").to_owned()
    };
    let raw = save(
        "raw.ndjson",
        &original.treehole(&["events", "export", "--raw"]).await,
    );

    // Not into a store that holds anything: nothing is appended to it.
    let out = original.treehole(&["events", "import", &raw]).await;
    refused(
        &out,
        &format!("not empty (its log ends at position {head})"),
    );
    assert_eq!(app.head().await, head);

    let empty = Target::empty(&files.path().join("empty")).await;
    let pseudonymised = save(
        "pseudonymised.ndjson",
        &original.treehole(&["events", "export"]).await,
    );
    let partial = save(
        "partial.ndjson",
        &original
            .treehole(&["events", "export", "--raw", "--after", "2"])
            .await,
    );
    let one_type = save(
        "users.ndjson",
        &original
            .treehole(&["events", "export", "--raw", "--type", "UserRegistered"])
            .await,
    );
    for (input, why) in [
        (&pseudonymised, "this is a pseudonymised export"),
        (
            &partial,
            "line 1 is not part of a complete raw export: position 3 follows position 0",
        ),
        (&one_type, "follows position 0"),
    ] {
        refused(&empty.treehole(&["events", "import", input]).await, why);
    }

    // An event this version cannot decode: the analysts' export skips it and says so, the raw
    // export keeps it, and an import refuses it before appending anything.
    let future = NewEvent {
        typed: Default::default(),
        event_id: uuid::Uuid::now_v7(),
        event_type: "SomethingFromTheFuture".into(),
        schema: 1,
        occurred_at: Utc::now(),
        data: json!({"whatever": 1}),
        metadata: Metadata::default(),
    };
    app.event_store()
        .append(
            &StreamId::parse("future-1").expect("a stream"),
            ExpectedVersion::NoStream,
            vec![future],
        )
        .await
        .expect("append");
    let out = original.treehole(&["events", "export"]).await;
    assert_eq!(envelopes(&stdout(succeeded(&out))).len() as u64, head);
    let warning = stderr(&out);
    assert!(
        warning.contains("skipped the event at position")
            && warning.contains("SomethingFromTheFuture")
            && warning.contains("skipped 1"),
        "{warning}"
    );
    let with_future = save(
        "future.ndjson",
        &original.treehole(&["events", "export", "--raw"]).await,
    );
    assert_eq!(
        std::fs::read_to_string(&with_future)
            .expect("read")
            .lines()
            .count() as u64,
        head + 1
    );
    let out = empty.treehole(&["events", "import", &with_future]).await;
    refused(&out, &format!("line {} is not part of", head + 1));
    refused(&out, "unknown event type");

    // After every refusal the empty store is still empty; the good export still imports.
    let store = empty.events().await;
    assert_eq!(store.head().await.expect("head"), 0);
    drop(store);
    let out = empty.treehole(&["events", "import", &raw]).await;
    assert!(stdout(succeeded(&out)).contains(&format!("imported {head} events")));
    let copied: BTreeSet<_> = whole_log(empty.events().await.as_ref())
        .await
        .into_iter()
        .map(|e| (e.position, e.event_id, e.stream, e.version))
        .collect();
    let originals: BTreeSet<_> = whole_log(app.event_store().as_ref())
        .await
        .into_iter()
        .filter(|e| e.position <= head)
        .map(|e| (e.position, e.event_id, e.stream, e.version))
        .collect();
    assert_eq!(copied, originals);
}
