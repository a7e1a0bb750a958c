//! A batch decided in memory before anything is written.
//!
//! The writer is the only writer of the file, so it can know, for the streams of a batch, the
//! version each is at and the position the next event gets. A [`Plan`] starts from those
//! (taken from the writer's cache or read in the batch's transaction) and the idempotency keys
//! already recorded for the batch's keys, then takes the requests in order: each is checked
//! against the versions as the requests before it left them, and either refused alone or given
//! its versions and positions. Nothing it decides reaches the writer's cache until the batch's
//! `COMMIT` succeeded, so a rolled-back batch leaves no trace in memory.
//!
//! What memory cannot judge is left to the database: an event id stored before (its unique
//! index refuses the insert) and a refusal made on a cached version (read again before it
//! stands). The plan only notices an event id used twice inside the batch.

use std::collections::{HashMap, HashSet};

use commands::{AppendResult, Committed, IdempotencyKey, StoreError};
use domain::{Position, StreamId};

use super::writer::{EncodedEvent, Request};

/// One row of the batch's multi-row insert.
pub(super) struct Row<'b> {
    pub position: Position,
    pub stream: &'b StreamId,
    pub version: u64,
    pub event: &'b EncodedEvent,
}

/// An idempotency key as stored: its fingerprint and the results of the call that used it.
pub(super) struct RecordedKey {
    pub fingerprint: String,
    pub results: Vec<AppendResult>,
}

/// What the plan says about one request.
pub(super) enum Decision {
    /// Its answer, if the batch commits: appended, replayed by its key, or refused by its key.
    Answer(Result<Committed, StoreError>),
    /// A [`StoreError::Conflict`] as far as the plan knows: the writer checks the version it
    /// believed and whether the events were stored before.
    Conflict(StoreError),
    /// One of its event ids is taken by an earlier request of this batch: only the savepoint
    /// path tells a replay from a reuse.
    Undecidable,
}

pub(super) struct Plan<'b> {
    /// Each stream of the batch at its version after the requests planned so far.
    versions: HashMap<&'b StreamId, u64>,
    /// The last position handed out.
    head: Position,
    /// Keys recorded before this batch, and by its planned requests.
    keys: HashMap<&'b str, RecordedKey>,
    /// Keys this batch records, with their results.
    new_keys: Vec<(&'b IdempotencyKey, Vec<AppendResult>)>,
    event_ids: HashSet<&'b str>,
    rows: Vec<Row<'b>>,
}

impl<'b> Plan<'b> {
    /// `versions` must hold every stream of the batch; `keys` every key it uses that is stored.
    pub(super) fn new(
        versions: HashMap<&'b StreamId, u64>,
        head: Position,
        keys: HashMap<&'b str, RecordedKey>,
    ) -> Self {
        Self {
            versions,
            head,
            keys,
            new_keys: Vec::new(),
            event_ids: HashSet::new(),
            rows: Vec::new(),
        }
    }

    /// Decides `request` after those decided before it; an appended request is added to the
    /// plan at once, a refused one leaves it as it was.
    pub(super) fn decide(&mut self, request: &'b Request) -> Decision {
        if let Some(key) = &request.idempotency
            && let Some(recorded) = self.keys.get(key.key.as_str())
        {
            return Decision::Answer(if recorded.fingerprint == key.fingerprint {
                Ok(Committed {
                    results: recorded.results.clone(),
                    replayed: true,
                })
            } else {
                Err(StoreError::IdempotencyKeyReused)
            });
        }
        let mut ids = request
            .writes
            .iter()
            .flat_map(|w| &w.events)
            .map(|e| e.event_id.as_str());
        if ids.any(|id| self.event_ids.contains(id)) {
            return Decision::Undecidable;
        }
        match self.append(request) {
            Ok(results) => {
                if let Some(key) = &request.idempotency {
                    self.keys.insert(
                        &key.key,
                        RecordedKey {
                            fingerprint: key.fingerprint.clone(),
                            results: results.clone(),
                        },
                    );
                    self.new_keys.push((key, results.clone()));
                }
                Decision::Answer(Ok(Committed {
                    results,
                    replayed: false,
                }))
            }
            Err(conflict @ StoreError::Conflict { .. }) => Decision::Conflict(conflict),
            Err(other) => Decision::Answer(Err(other)),
        }
    }

    /// Checks every write's expectation and appends all of them, or none.
    fn append(&mut self, request: &'b Request) -> Result<Vec<AppendResult>, StoreError> {
        let mut staged: Vec<(&'b StreamId, u64)> = Vec::with_capacity(request.writes.len());
        let mut rows = Vec::new();
        let mut results = Vec::with_capacity(request.writes.len());
        let mut head = self.head;
        for write in &request.writes {
            let current = match staged.iter().rev().find(|(s, _)| *s == &write.stream) {
                Some(&(_, version)) => version,
                None => self.version(&write.stream)?,
            };
            if !write.expected.admits(current) {
                return Err(StoreError::Conflict {
                    stream: write.stream.clone(),
                    expected: write.expected,
                    actual: current,
                });
            }
            if write.events.is_empty() {
                continue;
            }
            let count = write.events.len() as u64;
            for (i, event) in (0..).zip(&write.events) {
                rows.push(Row {
                    position: head + 1 + i,
                    stream: &write.stream,
                    version: current + 1 + i,
                    event,
                });
            }
            results.push(AppendResult {
                stream: write.stream.clone(),
                first_version: current + 1,
                last_version: current + count,
                first_position: head + 1,
                last_position: head + count,
            });
            head += count;
            staged.push((&write.stream, current + count));
        }
        self.versions.extend(staged);
        self.head = head;
        self.event_ids
            .extend(rows.iter().map(|r| r.event.event_id.as_str()));
        self.rows.extend(rows);
        Ok(results)
    }

    fn version(&self, stream: &StreamId) -> Result<u64, StoreError> {
        self.versions.get(stream).copied().ok_or_else(|| {
            StoreError::Backend(format!("the writer did not load the version of {stream}"))
        })
    }

    /// The rows to insert, in position order.
    pub(super) fn rows(&self) -> &[Row<'b>] {
        &self.rows
    }

    /// The keys to record and the results they answer with.
    pub(super) fn new_keys(&self) -> &[(&'b IdempotencyKey, Vec<AppendResult>)] {
        &self.new_keys
    }

    /// Every stream of the batch at the version it has once the batch commits, and the head.
    pub(super) fn into_committed(self) -> (HashMap<&'b StreamId, u64>, Position) {
        (self.versions, self.head)
    }
}

#[cfg(test)]
mod tests {
    use commands::ExpectedVersion;
    use tokio::sync::oneshot;

    use super::*;
    use crate::event_store::sqlite::writer::EncodedWrite;

    fn stream(name: &str) -> StreamId {
        StreamId::parse(format!("test-{name}")).unwrap()
    }

    fn event(id: &str) -> EncodedEvent {
        EncodedEvent {
            event_id: id.to_owned(),
            event_type: "Tested".into(),
            schema: 1,
            occurred_at: "2026-11-23T10:00:00.000Z".into(),
            data: "{}".into(),
            metadata: "{}".into(),
        }
    }

    fn request(writes: Vec<(&StreamId, ExpectedVersion, &[&str])>) -> Request {
        request_keyed(writes, None)
    }

    fn request_keyed(
        writes: Vec<(&StreamId, ExpectedVersion, &[&str])>,
        key: Option<(&str, &str)>,
    ) -> Request {
        Request {
            writes: writes
                .into_iter()
                .map(|(s, expected, ids)| EncodedWrite {
                    stream: s.clone(),
                    expected,
                    events: ids.iter().map(|id| event(id)).collect(),
                })
                .collect(),
            idempotency: key.map(|(key, fingerprint)| IdempotencyKey {
                key: key.into(),
                fingerprint: fingerprint.into(),
            }),
            reply: oneshot::channel().0,
        }
    }

    fn appended(decision: Decision) -> Vec<AppendResult> {
        match decision {
            Decision::Answer(Ok(Committed {
                results,
                replayed: false,
            })) => results,
            Decision::Answer(other) => panic!("expected an append, got {other:?}"),
            Decision::Conflict(e) => panic!("expected an append, got {e:?}"),
            Decision::Undecidable => panic!("expected an append, got undecidable"),
        }
    }

    #[test]
    fn requests_see_the_versions_and_positions_their_predecessors_left() {
        let (a, b) = (stream("a"), stream("b"));
        let first = request(vec![(&a, ExpectedVersion::Exact(3), &["1", "2"])]);
        let second = request(vec![
            (&b, ExpectedVersion::NoStream, &["3"]),
            (&a, ExpectedVersion::Exact(5), &["4"]),
        ]);
        let mut plan = Plan::new(HashMap::from([(&a, 3), (&b, 0)]), 40, HashMap::new());
        let r1 = appended(plan.decide(&first));
        let r2 = appended(plan.decide(&second));
        assert_eq!(
            (
                r1[0].first_version,
                r1[0].last_version,
                r1[0].first_position
            ),
            (4, 5, 41)
        );
        assert_eq!((r2[0].first_version, r2[0].first_position), (1, 43));
        assert_eq!((r2[1].first_version, r2[1].first_position), (6, 44));
        let rows: Vec<_> = plan
            .rows()
            .iter()
            .map(|r| (r.position, r.version, r.event.event_id.as_str()))
            .collect();
        assert_eq!(
            rows,
            [(41, 4, "1"), (42, 5, "2"), (43, 1, "3"), (44, 6, "4")]
        );
        let (versions, head) = plan.into_committed();
        assert_eq!((versions[&a], versions[&b], head), (6, 1, 44));
    }

    #[test]
    fn a_refused_request_leaves_no_trace_in_the_plan() {
        let (a, b) = (stream("a"), stream("b"));
        // Its first write would apply; the second refuses the whole request.
        let refused = request(vec![
            (&a, ExpectedVersion::Exact(1), &["1"]),
            (&b, ExpectedVersion::Exact(9), &["2"]),
        ]);
        let next = request(vec![(&a, ExpectedVersion::Exact(1), &["1"])]);
        let mut plan = Plan::new(HashMap::from([(&a, 1), (&b, 2)]), 7, HashMap::new());
        match plan.decide(&refused) {
            Decision::Conflict(StoreError::Conflict { stream, actual, .. }) => {
                assert_eq!((stream, actual), (b.clone(), 2));
            }
            _ => panic!("expected a conflict"),
        }
        // Same ids and expectation again: not taken, still version 1, still position 8.
        let r = appended(plan.decide(&next));
        assert_eq!((r[0].first_version, r[0].first_position), (2, 8));
        let (versions, head) = plan.into_committed();
        assert_eq!((versions[&a], versions[&b], head), (2, 2, 8));
    }

    #[test]
    fn the_same_stream_twice_in_one_request_applies_in_order() {
        let a = stream("a");
        let both = request(vec![
            (&a, ExpectedVersion::NoStream, &["1"]),
            (&a, ExpectedVersion::Exact(1), &["2"]),
        ]);
        let mut plan = Plan::new(HashMap::from([(&a, 0)]), 0, HashMap::new());
        let r = appended(plan.decide(&both));
        assert_eq!((r[0].first_version, r[1].first_version), (1, 2));
    }

    #[test]
    fn keys_answer_from_the_table_and_from_earlier_requests_of_the_batch() {
        let (a, b) = (stream("a"), stream("b"));
        let stored = vec![AppendResult {
            stream: a.clone(),
            first_version: 1,
            last_version: 1,
            first_position: 1,
            last_position: 1,
        }];
        let keys = HashMap::from([(
            "old",
            RecordedKey {
                fingerprint: "f".into(),
                results: stored.clone(),
            },
        )]);
        let mut plan = Plan::new(HashMap::from([(&a, 1), (&b, 0)]), 1, keys);
        let retry = request_keyed(
            vec![(&a, ExpectedVersion::NoStream, &["x"])],
            Some(("old", "f")),
        );
        match plan.decide(&retry) {
            Decision::Answer(Ok(c)) => assert_eq!((c.results, c.replayed), (stored, true)),
            _ => panic!("expected the stored answer"),
        }
        let reuse = request_keyed(vec![(&b, ExpectedVersion::Any, &["y"])], Some(("old", "g")));
        assert!(matches!(
            plan.decide(&reuse),
            Decision::Answer(Err(StoreError::IdempotencyKeyReused))
        ));
        let new = request_keyed(vec![(&b, ExpectedVersion::Any, &["z"])], Some(("new", "f")));
        let results = appended(plan.decide(&new));
        let again = request_keyed(vec![(&b, ExpectedVersion::Any, &["w"])], Some(("new", "f")));
        match plan.decide(&again) {
            Decision::Answer(Ok(c)) => assert_eq!((&c.results, c.replayed), (&results, true)),
            _ => panic!("expected the batch's own answer"),
        }
        assert_eq!(plan.new_keys().len(), 1);
        assert_eq!(plan.rows().len(), 1);
    }

    #[test]
    fn an_event_id_taken_earlier_in_the_batch_is_left_to_the_database() {
        let a = stream("a");
        let first = request(vec![(&a, ExpectedVersion::Any, &["1", "2"])]);
        let repeat = request(vec![(&a, ExpectedVersion::Any, &["2"])]);
        let mut plan = Plan::new(HashMap::from([(&a, 0)]), 0, HashMap::new());
        appended(plan.decide(&first));
        assert!(matches!(plan.decide(&repeat), Decision::Undecidable));
    }
}
