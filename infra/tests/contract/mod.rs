//! The `EventStore` contract (ARCHITECTURE.md §3, `commands::event_store`), one `pub async fn`
//! per rule, written against the port only so that every backend runs it unchanged.
//!
//! A backend provides a [`Harness`] and expands [`event_store_contract!`] once:
//!
//! ```ignore
//! mod contract;
//! struct MyHarness { /* a fresh database */ }
//! impl contract::Harness for MyHarness { /* create, open */ }
//! contract::event_store_contract!(MyHarness);
//! ```
//!
//! Positions are only required to increase strictly (not to be gapless), so that a backend whose
//! sequence skips numbers on rollback still passes.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Timelike, Utc};
use commands::{
    AppendResult, Committed, EventStore, ExpectedVersion, IdempotencyKey, StoreError, StreamWrite,
    Subscription,
};
use domain::{Envelope, Metadata, NewEvent, Position, StreamId};
use serde_json::json;
use tokio::sync::Barrier;
use tokio::task::JoinSet;
use uuid::Uuid;

pub type Store = Arc<dyn EventStore>;

/// How the suite reaches a backend. Every test creates its own harness.
pub trait Harness: Sized {
    /// Fresh, empty storage that nothing else uses.
    fn create() -> impl Future<Output = Self>;
    /// Opens the harness's storage: empty the first time, and everything committed before when
    /// opened again after the previous store was dropped.
    fn open(&self) -> impl Future<Output = Store>;
    /// Why the backend cannot be tested here, if it cannot (say, no server is configured): the
    /// suite then passes without running, and says so on stderr.
    fn unavailable() -> Option<String> {
        None
    }
}

/// Says that the running test did not run, where `scripts/test` counts it: a `test-skipped:`
/// line straight to stderr, past the harness's capture (which swallows `eprintln!` of a
/// passing test), so that a test that returned early is not taken for one that passed. The
/// test is named by its thread (libtest names it so; `#[tokio::test]` bodies run on it);
/// `what` says which part of the suite it is.
pub fn skip(what: &str, why: &str) {
    use std::io::Write;
    let thread = std::thread::current();
    let test = thread.name().unwrap_or(what);
    let _ = std::io::stderr().write_all(format!("test-skipped: {test}: {why}\n").as_bytes());
}

/// How long any single contract test may take before it counts as hung.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Expands to one `#[tokio::test]` per contract rule for the given [`Harness`] type.
macro_rules! event_store_contract {
    ($harness:ty) => {
        $crate::contract::event_store_contract!(@each $harness;
            round_trip_keeps_every_field,
            versions_count_up_without_holes,
            read_stream_starts_at_a_version,
            expectations_are_enforced_and_conflicts_write_nothing,
            multi_event_append_is_atomic,
            multi_stream_append_is_all_or_nothing,
            empty_writes_guard_the_batch_but_have_no_result,
            same_stream_twice_in_one_call_applies_in_order,
            invalid_appends_are_refused,
            exact_appends_racing_for_one_version_have_one_winner,
            retrying_appenders_on_one_stream_leave_no_holes,
            appenders_on_distinct_streams_all_succeed,
            reappending_stored_event_ids_replays_the_original,
            partly_stored_event_ids_are_refused,
            concurrent_duplicates_commit_once,
            idempotency_key_replays_and_refuses_reuse,
            find_idempotent_reports_recorded_keys,
            refused_batch_does_not_record_its_key,
            read_all_pages_in_position_order,
            stored_pages_write_the_raw_envelopes_json,
            watch_announces_each_new_head,
            tailing_reader_sees_every_event_once_while_writers_append,
            appends_survive_reopening,
        );
    };
    (@each $harness:ty; $($test:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $test() {
                if let Some(why) = <$harness as $crate::contract::Harness>::unavailable() {
                    $crate::contract::skip(stringify!($test), &why);
                    return;
                }
                let harness = <$harness as $crate::contract::Harness>::create().await;
                tokio::time::timeout(
                    $crate::contract::TEST_TIMEOUT,
                    $crate::contract::$test(&harness),
                )
                .await
                .expect(concat!(stringify!($test), " timed out"));
            }
        )*
    };
}
pub(crate) use event_store_contract;

// ---------------------------------------------------------------------------------------------
// Helpers

fn stream(name: &str) -> StreamId {
    StreamId::parse(format!("test-{name}")).unwrap()
}

/// A plain event; `n` shows up in its data.
fn event(n: u64) -> NewEvent {
    NewEvent {
        typed: Default::default(),
        event_id: Uuid::now_v7(),
        event_type: "Tested".into(),
        schema: 1,
        occurred_at: Utc.timestamp_millis_opt(1_790_000_000_000).unwrap(),
        data: json!({ "n": n }),
        metadata: Metadata::default(),
    }
}

fn events(count: u64) -> Vec<NewEvent> {
    (0..count).map(event).collect()
}

fn write(stream: &StreamId, expected: ExpectedVersion, events: Vec<NewEvent>) -> StreamWrite {
    StreamWrite {
        stream: stream.clone(),
        expected,
        events,
    }
}

fn key(key: &str, fingerprint: &str) -> IdempotencyKey {
    IdempotencyKey {
        key: key.into(),
        fingerprint: fingerprint.into(),
    }
}

fn ids(events: &[NewEvent]) -> Vec<Uuid> {
    events.iter().map(|e| e.event_id).collect()
}

/// The whole log, read in pages as a tailing reader would.
async fn everything(store: &Store) -> Vec<Envelope> {
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let page = store.read_all(after, 500).await.unwrap();
        match page.last() {
            Some(last) => after = last.position,
            None => return all,
        }
        all.extend(page);
    }
}

fn assert_strictly_increasing(envelopes: &[Envelope]) {
    for pair in envelopes.windows(2) {
        assert!(
            pair[0].position < pair[1].position,
            "positions {} then {}",
            pair[0].position,
            pair[1].position
        );
    }
}

/// Versions of a stream are exactly 1..=n.
fn assert_versions_without_holes(envelopes: &[Envelope]) {
    let versions: Vec<u64> = envelopes.iter().map(|e| e.version).collect();
    let expected: Vec<u64> = (1..=envelopes.len() as u64).collect();
    assert_eq!(versions, expected);
}

fn assert_conflict(result: Result<Committed, StoreError>, on: &StreamId, actual: u64) {
    match result {
        Err(StoreError::Conflict {
            stream, actual: a, ..
        }) => {
            assert_eq!(&stream, on, "conflict reported on the wrong stream");
            assert_eq!(a, actual, "conflict reports the wrong current version");
        }
        other => panic!("expected a conflict on {on}, got {other:?}"),
    }
}

/// Nothing changed: same head, same log.
async fn assert_unchanged(store: &Store, before: &[Envelope]) {
    assert_eq!(
        store.head().await.unwrap(),
        before.last().map_or(0, |e| e.position)
    );
    assert_eq!(everything(store).await, before);
}

// ---------------------------------------------------------------------------------------------
// Appending and reading

pub async fn round_trip_keeps_every_field(h: &impl Harness) {
    let store = h.open().await;
    let s = stream("round-trip");
    let at = DateTime::parse_from_rfc3339("2026-11-23T10:00:00.123456789Z")
        .unwrap()
        .with_timezone(&Utc);
    let full = NewEvent {
        typed: Default::default(),
        event_id: Uuid::now_v7(),
        event_type: "CommentAdded".into(),
        schema: 3,
        occurred_at: at,
        data: json!({"body": "树洞 tree hole ✓", "nested": {"list": [1, 2.5, null, true]}}),
        metadata: Metadata {
            correlation_id: Some("corr-1".into()),
            causation_id: Some("cause-1".into()),
            actor: Some("user-1".into()),
        },
    };
    let bare = NewEvent {
        typed: Default::default(),
        event_type: "PostPublished".into(),
        schema: 1,
        data: json!(null),
        metadata: Metadata::default(),
        ..event(0)
    };
    let committed = store
        .append(
            &s,
            ExpectedVersion::NoStream,
            vec![full.clone(), bare.clone()],
        )
        .await
        .unwrap();
    assert!(!committed.replayed);
    assert_eq!(committed.results.len(), 1);
    let r = &committed.results[0];
    assert_eq!((&r.stream, r.first_version, r.last_version), (&s, 1, 2));
    assert!(r.first_position >= 1 && r.first_position < r.last_position);
    assert_eq!(committed.last_position(), r.last_position);

    let read = store.read_stream(&s, 1).await.unwrap();
    assert_eq!(read.len(), 2);
    for (envelope, (sent, version, position)) in read
        .iter()
        .zip([(&full, 1, r.first_position), (&bare, 2, r.last_position)])
    {
        assert_eq!(envelope.position, position);
        assert_eq!(envelope.event_id, sent.event_id);
        assert_eq!(envelope.stream, s);
        assert_eq!(envelope.version, version);
        assert_eq!(envelope.event_type, sent.event_type);
        assert_eq!(envelope.schema, sent.schema);
        assert_eq!(envelope.data, sent.data);
        assert_eq!(envelope.metadata, sent.metadata);
        // Stored with millisecond precision, as the envelope's JSON form has it.
        let millis = sent
            .occurred_at
            .with_nanosecond(sent.occurred_at.nanosecond() / 1_000_000 * 1_000_000)
            .unwrap();
        assert_eq!(envelope.occurred_at, millis);
    }
    assert_eq!(
        read[0].occurred_at,
        DateTime::parse_from_rfc3339("2026-11-23T10:00:00.123Z").unwrap()
    );
    assert_eq!(
        everything(&store).await,
        read,
        "read_all and read_stream disagree"
    );
    assert_eq!(store.head().await.unwrap(), r.last_position);

    // The raw read (data and metadata as stored JSON text) serialises to the same JSON as the
    // decoded one, and reads back as the same envelopes.
    let raw = store.read_all_raw(0, 10).await.unwrap();
    assert_eq!(raw.len(), 2);
    for (raw, decoded) in raw.iter().zip(&read) {
        let as_json: serde_json::Value = serde_json::to_value(raw).unwrap();
        assert_eq!(as_json, serde_json::to_value(decoded).unwrap());
        let back: Envelope = serde_json::from_value(as_json).unwrap();
        assert_eq!(&back, decoded);
    }
    assert!(
        store
            .read_all_raw(r.last_position, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.read_all_raw(r.first_position, 10).await.unwrap()[0].position,
        r.last_position
    );
}

/// `read_all_stored` pages like `read_all_raw`, and each stored event writes byte for byte the
/// JSON that `serde_json` writes for its raw envelope (what the Kafka relay publishes).
pub async fn stored_pages_write_the_raw_envelopes_json(h: &impl Harness) {
    let store = h.open().await;
    assert!(store.read_all_stored(0, 10).await.unwrap().is_empty());
    let odd = NewEvent {
        typed: Default::default(),
        event_type: "Type \"quoted\" \\ \n\u{1} é 图".into(),
        data: json!({"body": "图书馆 \"x\" \u{1}\n", "list": [1.5, null, true], "nested": {"a": {}}}),
        metadata: Metadata {
            correlation_id: Some("c\"1".into()),
            causation_id: Some("d".into()),
            actor: Some("user-1".into()),
        },
        ..event(0)
    };
    let bare = NewEvent {
        typed: Default::default(),
        data: json!(null),
        ..event(1)
    };
    store
        .append(&stream("a\"b\\c"), ExpectedVersion::Any, vec![odd, bare])
        .await
        .unwrap();
    store
        .append(&stream("b"), ExpectedVersion::Any, events(5))
        .await
        .unwrap();
    let raw = store.read_all_raw(0, 100).await.unwrap();
    assert_eq!(raw.len(), 7);
    for (after, limit) in [(0, 100), (0, 3), (raw[2].position, 2), (raw[6].position, 5)] {
        let page = store.read_all_stored(after, limit).await.unwrap();
        let expected: Vec<_> = raw
            .iter()
            .filter(|e| e.position > after)
            .take(limit)
            .collect();
        assert_eq!(page.len(), expected.len(), "after {after}, limit {limit}");
        assert_eq!(page.last_position(), expected.last().map(|e| e.position));
        for (stored, raw) in page.iter().zip(expected) {
            let mut json = Vec::new();
            stored.write_json(&mut json);
            assert_eq!(
                String::from_utf8(json).unwrap(),
                serde_json::to_string(raw).unwrap()
            );
            assert_eq!(stored.stream, raw.stream.as_str());
            assert_eq!(stored.event_type, raw.event_type);
        }
    }
}

pub async fn versions_count_up_without_holes(h: &impl Harness) {
    let store = h.open().await;
    let (a, b) = (stream("a"), stream("b"));
    let mut last = 0;
    for (s, expected, count) in [
        (&a, ExpectedVersion::NoStream, 1),
        (&b, ExpectedVersion::NoStream, 2),
        (&a, ExpectedVersion::Exact(1), 2),
        (&b, ExpectedVersion::Any, 1),
        (&a, ExpectedVersion::Exact(3), 1),
    ] {
        let before = store.read_stream(s, 1).await.unwrap().len() as u64;
        let committed = store.append(s, expected, events(count)).await.unwrap();
        let r = &committed.results[0];
        assert_eq!(
            (r.first_version, r.last_version),
            (before + 1, before + count)
        );
        assert!(
            r.first_position > last,
            "positions must increase across appends"
        );
        last = r.last_position;
    }
    let a_events = store.read_stream(&a, 1).await.unwrap();
    let b_events = store.read_stream(&b, 1).await.unwrap();
    assert_versions_without_holes(&a_events);
    assert_versions_without_holes(&b_events);
    assert_eq!((a_events.len(), b_events.len()), (4, 3));
    let all = everything(&store).await;
    assert_eq!(all.len(), 7);
    assert_strictly_increasing(&all);
    assert_eq!(store.head().await.unwrap(), last);
    assert_eq!(all.last().unwrap().position, last);
}

pub async fn read_stream_starts_at_a_version(h: &impl Harness) {
    let store = h.open().await;
    let s = stream("from");
    store
        .append(&s, ExpectedVersion::NoStream, events(5))
        .await
        .unwrap();
    store
        .append(&stream("other"), ExpectedVersion::NoStream, events(2))
        .await
        .unwrap();
    let versions = |envs: Vec<Envelope>| envs.iter().map(|e| e.version).collect::<Vec<_>>();
    assert_eq!(
        versions(store.read_stream(&s, 0).await.unwrap()),
        [1, 2, 3, 4, 5]
    );
    assert_eq!(
        versions(store.read_stream(&s, 1).await.unwrap()),
        [1, 2, 3, 4, 5]
    );
    assert_eq!(versions(store.read_stream(&s, 4).await.unwrap()), [4, 5]);
    assert!(store.read_stream(&s, 6).await.unwrap().is_empty());
    assert!(
        store
            .read_stream(&stream("missing"), 1)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn expectations_are_enforced_and_conflicts_write_nothing(h: &impl Harness) {
    let store = h.open().await;
    let s = stream("expect");
    let before = everything(&store).await;
    assert_conflict(
        store.append(&s, ExpectedVersion::Exact(1), events(1)).await,
        &s,
        0,
    );
    assert_unchanged(&store, &before).await;

    store
        .append(&s, ExpectedVersion::NoStream, events(1))
        .await
        .unwrap();
    let before = everything(&store).await;
    assert_conflict(
        store.append(&s, ExpectedVersion::NoStream, events(1)).await,
        &s,
        1,
    );
    assert_conflict(
        store.append(&s, ExpectedVersion::Exact(2), events(1)).await,
        &s,
        1,
    );
    assert_unchanged(&store, &before).await;

    store
        .append(&s, ExpectedVersion::Exact(1), events(1))
        .await
        .unwrap();
    let before = everything(&store).await;
    assert_conflict(
        store.append(&s, ExpectedVersion::Exact(1), events(2)).await,
        &s,
        2,
    );
    assert_unchanged(&store, &before).await;
    assert_eq!(store.read_stream(&s, 1).await.unwrap().len(), 2);

    let any = store
        .append(&s, ExpectedVersion::Any, events(1))
        .await
        .unwrap();
    assert_eq!(any.results[0].first_version, 3);
    let fresh = stream("fresh");
    let any_new = store
        .append(&fresh, ExpectedVersion::Any, events(1))
        .await
        .unwrap();
    assert_eq!(any_new.results[0].first_version, 1);
    assert_versions_without_holes(&store.read_stream(&s, 1).await.unwrap());
}

pub async fn multi_event_append_is_atomic(h: &impl Harness) {
    let store = h.open().await;
    let s = stream("atomic");
    store
        .append(&s, ExpectedVersion::NoStream, events(2))
        .await
        .unwrap();
    let before = everything(&store).await;
    let refused = events(5);
    assert_conflict(
        store
            .append(&s, ExpectedVersion::Exact(1), refused.clone())
            .await,
        &s,
        2,
    );
    assert_unchanged(&store, &before).await;
    let stored: HashSet<Uuid> = everything(&store)
        .await
        .iter()
        .map(|e| e.event_id)
        .collect();
    assert!(ids(&refused).iter().all(|id| !stored.contains(id)));

    let accepted = store
        .append(&s, ExpectedVersion::Exact(2), events(5))
        .await
        .unwrap();
    assert_eq!(
        (
            accepted.results[0].first_version,
            accepted.results[0].last_version
        ),
        (3, 7)
    );
    assert_versions_without_holes(&store.read_stream(&s, 1).await.unwrap());
}

pub async fn multi_stream_append_is_all_or_nothing(h: &impl Harness) {
    let store = h.open().await;
    let (a, b, c) = (stream("a"), stream("b"), stream("c"));
    store
        .append(&c, ExpectedVersion::NoStream, events(1))
        .await
        .unwrap();
    let before = everything(&store).await;
    // The failing write comes last, after the others were (tentatively) written.
    let refused = store
        .append_many(
            vec![
                write(&a, ExpectedVersion::NoStream, events(2)),
                write(&c, ExpectedVersion::Exact(1), events(1)),
                write(&b, ExpectedVersion::Exact(3), events(1)),
            ],
            None,
        )
        .await;
    assert_conflict(refused, &b, 0);
    assert_unchanged(&store, &before).await;
    assert!(store.read_stream(&a, 1).await.unwrap().is_empty());
    assert_eq!(store.read_stream(&c, 1).await.unwrap().len(), 1);

    let committed = store
        .append_many(
            vec![
                write(&a, ExpectedVersion::NoStream, events(2)),
                write(&c, ExpectedVersion::Exact(1), events(1)),
                write(&b, ExpectedVersion::NoStream, events(1)),
            ],
            None,
        )
        .await
        .unwrap();
    let streams: Vec<&StreamId> = committed.results.iter().map(|r| &r.stream).collect();
    assert_eq!(streams, [&a, &c, &b], "one result per write, in order");
    let versions: Vec<(u64, u64)> = committed
        .results
        .iter()
        .map(|r| (r.first_version, r.last_version))
        .collect();
    assert_eq!(versions, [(1, 2), (2, 2), (1, 1)]);
    let all = everything(&store).await;
    assert_eq!(all.len(), 5);
    assert_eq!(committed.last_position(), all.last().unwrap().position);
    for r in &committed.results {
        let written: Vec<Position> = all
            .iter()
            .filter(|e| e.stream == r.stream && e.version >= r.first_version)
            .map(|e| e.position)
            .collect();
        assert_eq!(written.first(), Some(&r.first_position));
        assert_eq!(written.last(), Some(&r.last_position));
    }
}

pub async fn empty_writes_guard_the_batch_but_have_no_result(h: &impl Harness) {
    let store = h.open().await;
    let (guard, target) = (stream("guard"), stream("target"));
    store
        .append(&guard, ExpectedVersion::NoStream, events(1))
        .await
        .unwrap();
    let before = everything(&store).await;
    let refused = store
        .append_many(
            vec![
                write(&target, ExpectedVersion::NoStream, events(1)),
                write(&guard, ExpectedVersion::Exact(4), vec![]),
            ],
            None,
        )
        .await;
    assert_conflict(refused, &guard, 1);
    assert_unchanged(&store, &before).await;

    let committed = store
        .append_many(
            vec![
                write(&guard, ExpectedVersion::Exact(1), vec![]),
                write(&target, ExpectedVersion::NoStream, events(1)),
            ],
            None,
        )
        .await
        .unwrap();
    assert_eq!(committed.results.len(), 1);
    assert_eq!(committed.results[0].stream, target);
    assert_eq!(store.read_stream(&guard, 1).await.unwrap().len(), 1);
}

pub async fn same_stream_twice_in_one_call_applies_in_order(h: &impl Harness) {
    let store = h.open().await;
    let s = stream("twice");
    let committed = store
        .append_many(
            vec![
                write(&s, ExpectedVersion::NoStream, events(1)),
                write(&s, ExpectedVersion::Exact(1), events(2)),
            ],
            None,
        )
        .await
        .unwrap();
    let versions: Vec<(u64, u64)> = committed
        .results
        .iter()
        .map(|r| (r.first_version, r.last_version))
        .collect();
    assert_eq!(versions, [(1, 1), (2, 3)]);
    assert_versions_without_holes(&store.read_stream(&s, 1).await.unwrap());

    let before = everything(&store).await;
    let refused = store
        .append_many(
            vec![
                write(&s, ExpectedVersion::Exact(3), events(1)),
                write(&s, ExpectedVersion::Exact(3), events(1)),
            ],
            None,
        )
        .await;
    assert_conflict(refused, &s, 4);
    assert_unchanged(&store, &before).await;
}

pub async fn invalid_appends_are_refused(h: &impl Harness) {
    let store = h.open().await;
    let s = stream("invalid");
    let duplicate = event(1);
    let cases: Vec<(&str, Vec<StreamWrite>)> = vec![
        ("no writes", vec![]),
        (
            "only empty writes",
            vec![write(&s, ExpectedVersion::Any, vec![])],
        ),
        (
            "Exact(0)",
            vec![write(&s, ExpectedVersion::Exact(0), events(1))],
        ),
        (
            "an event id twice in one write",
            vec![write(
                &s,
                ExpectedVersion::Any,
                vec![duplicate.clone(), duplicate.clone()],
            )],
        ),
        (
            "an event id in two writes",
            vec![
                write(&s, ExpectedVersion::Any, vec![duplicate.clone()]),
                write(&stream("other"), ExpectedVersion::Any, vec![duplicate]),
            ],
        ),
    ];
    for (case, writes) in cases {
        match store.append_many(writes, None).await {
            Err(StoreError::Invalid(_)) => {}
            other => panic!("{case}: expected Invalid, got {other:?}"),
        }
    }
    assert_eq!(store.head().await.unwrap(), 0);
    assert!(everything(&store).await.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Concurrency

pub async fn exact_appends_racing_for_one_version_have_one_winner(h: &impl Harness) {
    const TASKS: usize = 32;
    const ROUNDS: u64 = 8;
    let store = h.open().await;
    let s = stream("race");
    let mut winners = Vec::new();
    for round in 0..ROUNDS {
        let start = Arc::new(Barrier::new(TASKS));
        let mut tasks = JoinSet::new();
        for _ in 0..TASKS {
            let (store, s, start) = (Arc::clone(&store), s.clone(), Arc::clone(&start));
            tasks.spawn(async move {
                let e = event(round);
                let id = e.event_id;
                start.wait().await;
                (
                    id,
                    store
                        .append(&s, ExpectedVersion::from_version(round), vec![e])
                        .await,
                )
            });
        }
        let mut won = Vec::new();
        for (id, result) in tasks.join_all().await {
            match result {
                Ok(c) => {
                    assert_eq!(c.results[0].first_version, round + 1);
                    won.push(id);
                }
                Err(e) => assert_conflict(Err(e), &s, round + 1),
            }
        }
        assert_eq!(won.len(), 1, "round {round}: exactly one append may win");
        winners.extend(won);
    }
    let stored = store.read_stream(&s, 1).await.unwrap();
    assert_versions_without_holes(&stored);
    assert_eq!(
        stored.iter().map(|e| e.event_id).collect::<Vec<_>>(),
        winners
    );
    assert_eq!(everything(&store).await.len() as u64, ROUNDS);
}

pub async fn retrying_appenders_on_one_stream_leave_no_holes(h: &impl Harness) {
    const TASKS: usize = 32;
    const EACH: usize = 4;
    let store = h.open().await;
    let s = stream("contended");
    let mut tasks = JoinSet::new();
    for _ in 0..TASKS {
        let (store, s) = (Arc::clone(&store), s.clone());
        tasks.spawn(async move {
            let mut mine = Vec::new();
            while mine.len() < EACH {
                let version = store.read_stream(&s, 1).await.unwrap().len() as u64;
                let e = event(version);
                let id = e.event_id;
                match store
                    .append(&s, ExpectedVersion::from_version(version), vec![e])
                    .await
                {
                    Ok(_) => mine.push(id),
                    Err(StoreError::Conflict { .. }) => tokio::task::yield_now().await,
                    Err(e) => panic!("unexpected error: {e}"),
                }
            }
            mine
        });
    }
    let appended: Vec<Uuid> = tasks.join_all().await.into_iter().flatten().collect();
    let stored = store.read_stream(&s, 1).await.unwrap();
    assert_versions_without_holes(&stored);
    assert_eq!(stored.len(), TASKS * EACH);
    let stored_ids: HashSet<Uuid> = stored.iter().map(|e| e.event_id).collect();
    assert_eq!(stored_ids.len(), stored.len(), "an event was stored twice");
    assert_eq!(stored_ids, appended.into_iter().collect());
}

pub async fn appenders_on_distinct_streams_all_succeed(h: &impl Harness) {
    const TASKS: u64 = 16;
    const APPENDS: u64 = 25;
    let store = h.open().await;
    let start = Arc::new(Barrier::new(TASKS as usize));
    let mut tasks = JoinSet::new();
    for t in 0..TASKS {
        let (store, start) = (Arc::clone(&store), Arc::clone(&start));
        tasks.spawn(async move {
            let s = stream(&format!("distinct{t}"));
            start.wait().await;
            let mut version = 0;
            for i in 0..APPENDS {
                let count = 1 + (i + t) % 2;
                let c = store
                    .append(&s, ExpectedVersion::from_version(version), events(count))
                    .await
                    .unwrap_or_else(|e| panic!("{s}: {e}"));
                assert_eq!(c.results[0].first_version, version + 1);
                version += count;
            }
            (s, version)
        });
    }
    let mut total = 0;
    for (s, version) in tasks.join_all().await {
        let stored = store.read_stream(&s, 1).await.unwrap();
        assert_versions_without_holes(&stored);
        assert_eq!(stored.len() as u64, version);
        total += version;
    }
    let all = everything(&store).await;
    assert_eq!(all.len() as u64, total);
    assert_strictly_increasing(&all);
    assert_eq!(store.head().await.unwrap(), all.last().unwrap().position);
}

// ---------------------------------------------------------------------------------------------
// Idempotency

pub async fn reappending_stored_event_ids_replays_the_original(h: &impl Harness) {
    let store = h.open().await;
    let (a, b) = (stream("a"), stream("b"));
    let batch = events(2);
    let first = store
        .append(&a, ExpectedVersion::NoStream, batch.clone())
        .await
        .unwrap();
    store
        .append(&a, ExpectedVersion::Exact(2), events(1))
        .await
        .unwrap();
    let before = everything(&store).await;

    // The retry of a lost acknowledgement: same ids, an expectation that no longer holds.
    for expected in [
        ExpectedVersion::NoStream,
        ExpectedVersion::Any,
        ExpectedVersion::Exact(3),
    ] {
        let again = store.append(&a, expected, batch.clone()).await.unwrap();
        assert!(again.replayed, "{expected:?}: not flagged as a replay");
        assert_eq!(again.results, first.results, "{expected:?}");
    }
    assert_unchanged(&store, &before).await;

    let (to_a, to_b) = (events(1), events(3));
    let multi = vec![
        write(&a, ExpectedVersion::Exact(3), to_a),
        write(&b, ExpectedVersion::NoStream, to_b),
    ];
    let original = store.append_many(multi.clone(), None).await.unwrap();
    let before = everything(&store).await;
    let again = store.append_many(multi, None).await.unwrap();
    assert!(again.replayed);
    assert_eq!(again.results, original.results);
    assert_unchanged(&store, &before).await;
}

pub async fn partly_stored_event_ids_are_refused(h: &impl Harness) {
    let store = h.open().await;
    let (a, b) = (stream("a"), stream("b"));
    let batch = events(2);
    store
        .append(&a, ExpectedVersion::NoStream, batch.clone())
        .await
        .unwrap();
    let before = everything(&store).await;
    let cases: Vec<(&str, Vec<StreamWrite>)> = vec![
        (
            "a stored id with a new one",
            vec![write(
                &a,
                ExpectedVersion::Any,
                vec![batch[0].clone(), event(9)],
            )],
        ),
        (
            "a new id before a stored one",
            vec![write(
                &a,
                ExpectedVersion::Exact(2),
                vec![event(9), batch[1].clone()],
            )],
        ),
        (
            "stored ids for another stream",
            vec![write(&b, ExpectedVersion::NoStream, batch.clone())],
        ),
        (
            "stored ids in another order",
            vec![write(
                &a,
                ExpectedVersion::Any,
                vec![batch[1].clone(), batch[0].clone()],
            )],
        ),
        (
            "stored ids in another write",
            vec![
                write(&b, ExpectedVersion::NoStream, events(1)),
                write(&a, ExpectedVersion::Any, vec![batch[1].clone()]),
            ],
        ),
    ];
    for (case, writes) in cases {
        match store.append_many(writes, None).await {
            Err(StoreError::EventIdReused) => {}
            other => panic!("{case}: expected EventIdReused, got {other:?}"),
        }
        assert_unchanged(&store, &before).await;
    }
}

pub async fn concurrent_duplicates_commit_once(h: &impl Harness) {
    const TASKS: usize = 16;
    let store = h.open().await;
    let s = stream("dup");
    let batch = events(2);
    let start = Arc::new(Barrier::new(TASKS));
    let mut tasks = JoinSet::new();
    for _ in 0..TASKS {
        let (store, s, batch, start) = (
            Arc::clone(&store),
            s.clone(),
            batch.clone(),
            Arc::clone(&start),
        );
        tasks.spawn(async move {
            start.wait().await;
            store.append(&s, ExpectedVersion::Any, batch).await.unwrap()
        });
    }
    let answers = tasks.join_all().await;
    assert_eq!(answers.iter().filter(|c| !c.replayed).count(), 1);
    assert!(answers.iter().all(|c| c.results == answers[0].results));
    assert_eq!(store.read_stream(&s, 1).await.unwrap().len(), 2);

    // Same key, same request, new event ids each time (as a retried command has).
    let k = stream("keyed");
    let start = Arc::new(Barrier::new(TASKS));
    let mut tasks = JoinSet::new();
    for _ in 0..TASKS {
        let (store, k, start) = (Arc::clone(&store), k.clone(), Arc::clone(&start));
        tasks.spawn(async move {
            start.wait().await;
            store
                .append_many(
                    vec![write(&k, ExpectedVersion::Any, events(1))],
                    Some(key("same", "fp")),
                )
                .await
                .unwrap()
        });
    }
    let answers = tasks.join_all().await;
    assert_eq!(answers.iter().filter(|c| !c.replayed).count(), 1);
    assert!(answers.iter().all(|c| c.results == answers[0].results));
    assert_eq!(store.read_stream(&k, 1).await.unwrap().len(), 1);
}

pub async fn idempotency_key_replays_and_refuses_reuse(h: &impl Harness) {
    let store = h.open().await;
    let (a, b) = (stream("a"), stream("b"));
    let request = |n| {
        vec![
            write(&a, ExpectedVersion::NoStream, events(n)),
            write(&b, ExpectedVersion::NoStream, events(1)),
        ]
    };
    let first = store
        .append_many(request(2), Some(key("k1", "fp1")))
        .await
        .unwrap();
    assert!(!first.replayed);
    let before = everything(&store).await;

    // The same request again, with fresh event ids and an expectation that no longer holds.
    let again = store
        .append_many(request(2), Some(key("k1", "fp1")))
        .await
        .unwrap();
    assert!(again.replayed);
    assert_eq!(again.results, first.results);
    assert_unchanged(&store, &before).await;

    match store.append_many(request(3), Some(key("k1", "fp2"))).await {
        Err(StoreError::IdempotencyKeyReused) => {}
        other => panic!("expected IdempotencyKeyReused, got {other:?}"),
    }
    assert_unchanged(&store, &before).await;

    let other_key = store
        .append_many(
            vec![write(&a, ExpectedVersion::Exact(2), events(1))],
            Some(key("k2", "fp1")),
        )
        .await
        .unwrap();
    assert!(
        !other_key.replayed,
        "keys are distinct even with equal fingerprints"
    );
    assert_eq!(other_key.results[0].first_version, 3);
}

pub async fn find_idempotent_reports_recorded_keys(h: &impl Harness) {
    let store = h.open().await;
    let s = stream("find");
    assert!(
        store
            .find_idempotent(&key("k", "fp"))
            .await
            .unwrap()
            .is_none()
    );
    let committed = store
        .append_many(
            vec![write(&s, ExpectedVersion::NoStream, events(3))],
            Some(key("k", "fp")),
        )
        .await
        .unwrap();
    let found = store
        .find_idempotent(&key("k", "fp"))
        .await
        .unwrap()
        .expect("a recorded key is found");
    assert!(found.replayed);
    assert_eq!(found.results, committed.results);
    match store.find_idempotent(&key("k", "other")).await {
        Err(StoreError::IdempotencyKeyReused) => {}
        other => panic!("expected IdempotencyKeyReused, got {other:?}"),
    }
    assert!(
        store
            .find_idempotent(&key("unknown", "fp"))
            .await
            .unwrap()
            .is_none()
    );
    // Appending without a key records none.
    store
        .append(&s, ExpectedVersion::Exact(3), events(1))
        .await
        .unwrap();
    assert!(store.find_idempotent(&key("", "")).await.unwrap().is_none());
}

pub async fn refused_batch_does_not_record_its_key(h: &impl Harness) {
    let store = h.open().await;
    let s = stream("refused");
    let conflicting = vec![write(&s, ExpectedVersion::Exact(7), events(1))];
    assert_conflict(
        store.append_many(conflicting, Some(key("k", "fp"))).await,
        &s,
        0,
    );
    assert!(
        store
            .find_idempotent(&key("k", "fp"))
            .await
            .unwrap()
            .is_none()
    );
    let retried = store
        .append_many(
            vec![write(&s, ExpectedVersion::NoStream, events(1))],
            Some(key("k", "fp")),
        )
        .await
        .unwrap();
    assert!(!retried.replayed);
    let found = store.find_idempotent(&key("k", "fp")).await.unwrap();
    assert_eq!(found.map(|c| c.results), Some(retried.results));
}

// ---------------------------------------------------------------------------------------------
// Reading the log

pub async fn read_all_pages_in_position_order(h: &impl Harness) {
    let store = h.open().await;
    assert!(store.read_all(0, 10).await.unwrap().is_empty());
    assert_eq!(store.head().await.unwrap(), 0);
    for i in 0..25u64 {
        let s = stream(&format!("page{}", i % 3));
        store
            .append(&s, ExpectedVersion::Any, events(1 + i % 2))
            .await
            .unwrap();
    }
    let all = store.read_all(0, 1000).await.unwrap();
    assert_eq!(all.len(), 37);
    assert_strictly_increasing(&all);

    let mut paged = Vec::new();
    let mut sizes = Vec::new();
    let mut after = 0;
    loop {
        let page = store.read_all(after, 10).await.unwrap();
        sizes.push(page.len());
        let Some(last) = page.last() else { break };
        after = last.position;
        paged.extend(page);
    }
    assert_eq!(sizes, [10, 10, 10, 7, 0]);
    assert_eq!(paged, all);

    let middle = all[16].position;
    let rest = store.read_all(middle, 1000).await.unwrap();
    assert_eq!(rest, all[17..]);
    let head = store.head().await.unwrap();
    assert_eq!(head, all.last().unwrap().position);
    assert!(store.read_all(head, 10).await.unwrap().is_empty());
    assert!(store.read_all(head + 100, 10).await.unwrap().is_empty());
    assert_eq!(store.read_all(0, 1).await.unwrap(), all[..1]);
}

pub async fn watch_announces_each_new_head(h: &impl Harness) {
    let store = h.open().await;
    let mut watch = store.watch();
    assert_eq!(*watch.borrow_and_update(), 0);
    let s = stream("watched");
    for expected in [ExpectedVersion::NoStream, ExpectedVersion::Exact(2)] {
        let committed = store.append(&s, expected, events(2)).await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), watch.changed())
            .await
            .expect("no notification after a commit")
            .expect("the store closed its watch");
        assert_eq!(*watch.borrow_and_update(), committed.last_position());
        assert_eq!(store.head().await.unwrap(), committed.last_position());
    }
    // A refused append announces nothing.
    let _ = store.append(&s, ExpectedVersion::NoStream, events(1)).await;
    assert!(!watch.has_changed().unwrap());
    // A new receiver starts at the current head.
    assert_eq!(*store.watch().borrow(), store.head().await.unwrap());
}

pub async fn tailing_reader_sees_every_event_once_while_writers_append(h: &impl Harness) {
    const WRITERS: u64 = 8;
    const EACH: u64 = 250;
    const TOTAL: usize = (WRITERS * EACH) as usize;
    let store = h.open().await;

    let mut subscription = Subscription::new(Arc::clone(&store), 0, 64);
    let reader = tokio::spawn(async move {
        let mut seen = Vec::with_capacity(TOTAL);
        while seen.len() < TOTAL {
            seen.extend(subscription.next_batch().await.unwrap());
        }
        seen
    });

    let start = Arc::new(Barrier::new(WRITERS as usize));
    let mut writers = JoinSet::new();
    for w in 0..WRITERS {
        let (store, start) = (Arc::clone(&store), Arc::clone(&start));
        writers.spawn(async move {
            let own = stream(&format!("writer{w}"));
            let shared = stream(&format!("shared{}", w % 2));
            let mut version = 0;
            let mut appended: Vec<Uuid> = Vec::new();
            start.wait().await;
            for i in 0.. {
                let left = EACH - appended.len() as u64;
                if left == 0 {
                    break;
                }
                let writes = match i % 4 {
                    0 => vec![write(
                        &own,
                        ExpectedVersion::from_version(version),
                        events(1),
                    )],
                    1 => vec![write(
                        &own,
                        ExpectedVersion::from_version(version),
                        events(left.min(3)),
                    )],
                    2 => vec![write(&shared, ExpectedVersion::Any, events(1))],
                    _ if left >= 2 => vec![
                        write(&own, ExpectedVersion::from_version(version), events(1)),
                        write(&shared, ExpectedVersion::Any, events(1)),
                    ],
                    _ => vec![write(&shared, ExpectedVersion::Any, events(1))],
                };
                for sw in &writes {
                    appended.extend(ids(&sw.events));
                    if sw.stream == own {
                        version += sw.events.len() as u64;
                    }
                }
                store.append_many(writes, None).await.unwrap();
            }
            appended
        });
    }
    let appended: Vec<Uuid> = writers.join_all().await.into_iter().flatten().collect();
    assert_eq!(appended.len(), TOTAL);

    // The reader keeps up while the writers run, so it is done moments after the last write;
    // a lost notification or a skipped event leaves it waiting until this timeout.
    let seen = tokio::time::timeout(Duration::from_secs(10), reader)
        .await
        .expect("the tailing reader did not catch up: a notification or an event was lost")
        .unwrap();
    assert_eq!(seen.len(), TOTAL, "the reader saw extra events");
    assert_strictly_increasing(&seen);
    let seen_ids: HashSet<Uuid> = seen.iter().map(|e| e.event_id).collect();
    assert_eq!(seen_ids.len(), TOTAL, "the reader saw an event twice");
    assert_eq!(seen_ids, appended.iter().copied().collect::<HashSet<_>>());
    assert_eq!(seen, everything(&store).await, "the reader's log differs");
    assert_eq!(store.head().await.unwrap(), seen.last().unwrap().position);

    let mut per_stream: HashMap<&StreamId, Vec<u64>> = HashMap::new();
    for e in &seen {
        per_stream.entry(&e.stream).or_default().push(e.version);
    }
    for (s, versions) in per_stream {
        let expected: Vec<u64> = (1..=versions.len() as u64).collect();
        assert_eq!(
            versions, expected,
            "{s}: versions out of order or with holes"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Durability

pub async fn appends_survive_reopening(h: &impl Harness) {
    let (a, b) = (stream("a"), stream("b"));
    let (before, committed) = {
        let store = h.open().await;
        store
            .append(&a, ExpectedVersion::NoStream, events(3))
            .await
            .unwrap();
        let committed = store
            .append_many(
                vec![
                    write(&b, ExpectedVersion::NoStream, events(2)),
                    write(&a, ExpectedVersion::Exact(3), events(1)),
                ],
                Some(key("k", "fp")),
            )
            .await
            .unwrap();
        (everything(&store).await, committed)
    };
    let head = before.last().unwrap().position;

    let store = h.open().await;
    assert_eq!(everything(&store).await, before);
    assert_eq!(store.head().await.unwrap(), head);
    assert_eq!(
        *store.watch().borrow(),
        head,
        "watch starts at the stored head"
    );
    let found = store.find_idempotent(&key("k", "fp")).await.unwrap();
    assert_eq!(found.map(|c| c.results), Some(committed.results.clone()));

    assert_conflict(
        store.append(&a, ExpectedVersion::Exact(3), events(1)).await,
        &a,
        4,
    );
    let next = store
        .append(&a, ExpectedVersion::Exact(4), events(1))
        .await
        .unwrap();
    let r: &AppendResult = &next.results[0];
    assert_eq!(r.first_version, 5);
    assert!(r.first_position > head, "positions continue after a reopen");
    assert_versions_without_holes(&store.read_stream(&a, 1).await.unwrap());
}
