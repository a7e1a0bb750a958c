//! A revoked worker gets no task: neither a claim already waiting when the admin revokes it,
//! nor claims sent right after the revocation, nor a claim whose append races the revocation
//! (issue 14, defect 1).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;
use commands::handler::to_new_event;
use commands::{
    CommandContext, CommandError, CommandHandler, Committed, EventStore, ExpectedVersion,
    IdempotencyKey, StoreError, StreamWrite,
};
use domain::task::{Claimant, Task, TaskCommand, TaskError, TaskEvent, TaskServices};
use domain::worker::{Worker, WorkerEvent};
use domain::{Envelope, Event, Position, RawEnvelope, StreamId, TaskId, UserId, WorkerId};
use serde_json::json;
use tokio::sync::watch;

use crate::helpers::spawn_app;
use crate::tasks::{admin, events, publish, register_model, register_worker};

/// Tries of the race; each uses a fresh worker.
const TRIES: usize = 50;
/// Claims fired at once right after each revocation.
const IMMEDIATE: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revoked_worker_gets_no_task_from_a_waiting_claim_nor_from_claims_right_after() {
    let app = Arc::new(spawn_app().await);
    let admin = admin(&app, "ops_revoker").await;
    let submitter = app.new_user("qian_li").await;
    register_model(&app, &admin, "sdxl").await;

    let mut answers: HashMap<u16, usize> = HashMap::new();
    for _ in 0..TRIES {
        let (worker_id, token) = register_worker(&app, &admin, &["sdxl"]).await;
        // A long poll that is already waiting (past authentication) when the revocation lands.
        let waiting = {
            let (app, token) = (app.clone(), token.clone());
            tokio::spawn(async move {
                app.post_json("/workers/claim", Some(&token), &json!({"wait_secs": 5}))
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        app.delete(&format!("/workers/{worker_id}"), &admin.token)
            .await
            .expect(200);
        // Work appears after the revocation, and the worker asks for it at once.
        let task_id = publish(
            &app,
            &submitter,
            &json!({"model": "sdxl", "input": {"prompt": "private input"}}),
        )
        .await;
        let immediate: Vec<_> = (0..IMMEDIATE)
            .map(|_| {
                let (app, token) = (app.clone(), token.clone());
                tokio::spawn(async move {
                    app.post_json("/workers/claim", Some(&token), &json!({}))
                        .await
                })
            })
            .collect();
        let mut replies = vec![waiting.await.expect("the waiting claim")];
        for claim in immediate {
            replies.push(claim.await.expect("a claim"));
        }
        for reply in &replies {
            *answers.entry(reply.status.as_u16()).or_default() += 1;
            assert!(
                !reply.text.contains("private input"),
                "a revoked worker saw a task's input: {}",
                reply.text
            );
        }
        // Nobody holds the task: its submitter can still cancel it while it is queued.
        let cancelled = app
            .post_json(
                &format!("/tasks/{task_id}/cancel"),
                Some(&submitter.token),
                &json!({}),
            )
            .await;
        assert_eq!(
            cancelled.status.as_u16(),
            200,
            "the task published after the revocation was taken: {}",
            cancelled.text
        );
    }

    // The log agrees: no claim by any worker after its revocation.
    let mut revoked_at = HashMap::new();
    let mut late_claims = Vec::new();
    for envelope in events(&app).await {
        match Event::decode(&envelope).expect("a known event") {
            Event::Worker(WorkerEvent::WorkerRevoked { worker_id, .. }) => {
                revoked_at.insert(worker_id, envelope.position);
            }
            Event::Task(TaskEvent::TaskClaimed { worker_id, .. })
                if revoked_at.contains_key(&worker_id) =>
            {
                late_claims.push(envelope.position);
            }
            _ => {}
        }
    }
    assert_eq!(revoked_at.len(), TRIES);
    assert!(
        late_claims.is_empty(),
        "{} claims after revocation, at positions {late_claims:?}; answers: {answers:?}",
        late_claims.len()
    );
    assert_eq!(
        answers.get(&401).copied().unwrap_or(0),
        TRIES * (IMMEDIATE + 1),
        "every claim of a revoked worker is refused as unauthorised: {answers:?}"
    );
    // Every refusal is a problem, never a server error.
    app.assert_no_server_errors();
}

#[tokio::test]
async fn a_waiting_claim_wakes_at_the_revocation_and_is_refused_without_waiting_for_work() {
    let app = Arc::new(spawn_app().await);
    let admin = admin(&app, "ops_waker").await;
    register_model(&app, &admin, "sdxl").await;
    let (worker_id, token) = register_worker(&app, &admin, &["sdxl"]).await;
    let waiting = {
        let (app, token) = (app.clone(), token.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let reply = app
                .post_json("/workers/claim", Some(&token), &json!({"wait_secs": 20}))
                .await;
            (reply, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.delete(&format!("/workers/{worker_id}"), &admin.token)
        .await
        .expect(200);
    let (reply, waited) = waiting.await.expect("the waiting claim");
    reply.expect_problem(401);
    assert!(
        waited < Duration::from_secs(5),
        "the claim waited {waited:?} after the revocation"
    );
}

/// The log of record, with a revocation committed at the worst moment: right before the first
/// append that writes to `task`, when a claim has read its worker's stream and decided.
struct RevokedInBetween {
    inner: Arc<dyn EventStore>,
    task: StreamId,
    revocation: Mutex<Option<StreamWrite>>,
}

#[async_trait]
impl EventStore for RevokedInBetween {
    async fn append_many(
        &self,
        writes: Vec<StreamWrite>,
        idempotency: Option<IdempotencyKey>,
    ) -> Result<Committed, StoreError> {
        if writes
            .iter()
            .any(|w| w.stream == self.task && !w.events.is_empty())
        {
            let revocation = self.revocation.lock().expect("not poisoned").take();
            if let Some(revocation) = revocation {
                self.inner.append_many(vec![revocation], None).await?;
            }
        }
        self.inner.append_many(writes, idempotency).await
    }

    async fn find_idempotent(&self, key: &IdempotencyKey) -> Result<Option<Committed>, StoreError> {
        self.inner.find_idempotent(key).await
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from_version: u64,
    ) -> Result<Vec<Envelope>, StoreError> {
        self.inner.read_stream(stream, from_version).await
    }

    async fn read_all(&self, after: Position, limit: usize) -> Result<Vec<Envelope>, StoreError> {
        self.inner.read_all(after, limit).await
    }

    async fn read_all_raw(
        &self,
        after: Position,
        limit: usize,
    ) -> Result<Vec<RawEnvelope>, StoreError> {
        self.inner.read_all_raw(after, limit).await
    }

    async fn head(&self) -> Result<Position, StoreError> {
        self.inner.head().await
    }

    fn watch(&self) -> watch::Receiver<Position> {
        self.inner.watch()
    }
}

#[tokio::test]
async fn a_claim_whose_append_races_the_revocation_is_decided_again_and_refused() {
    let app = spawn_app().await;
    let admin = admin(&app, "ops_racer").await;
    let submitter = app.new_user("sun_yue").await;
    register_model(&app, &admin, "sdxl").await;
    let (worker_id, _) = register_worker(&app, &admin, &["sdxl"]).await;
    let worker_id = WorkerId::new(worker_id.parse().expect("a worker id"));
    let task = publish(
        &app,
        &submitter,
        &json!({"model": "sdxl", "input": {"prompt": "private input"}}),
    )
    .await;
    let task_id = TaskId::new(task.parse().expect("a task id"));
    let admin_id = UserId::new(admin.user_id.parse().expect("a user id"));

    let ctx = CommandContext::new(Utc::now());
    let revoked = WorkerEvent::WorkerRevoked {
        worker_id,
        by: admin_id,
    };
    let store = RevokedInBetween {
        inner: app.event_store(),
        task: task_id.stream(),
        revocation: Mutex::new(Some(StreamWrite {
            stream: worker_id.stream(),
            expected: ExpectedVersion::Exact(1),
            events: vec![to_new_event(&revoked, &ctx)],
        })),
    };
    let handler = CommandHandler::new(Arc::new(store));
    let claim = |worker: &Worker| TaskCommand::Claim {
        worker: Claimant::of(worker_id, worker),
        lease: chrono::Duration::seconds(30),
        at: ctx.at,
    };
    let outcome = handler
        .execute_guarded::<Task, Worker>(
            &task_id.stream(),
            &worker_id.stream(),
            claim,
            &TaskServices::default(),
            &ctx,
        )
        .await;
    assert!(
        matches!(
            outcome,
            Err(CommandError::Rejected(TaskError::WorkerRevoked))
        ),
        "{outcome:?}"
    );
    // The revocation is in the log, and the task is still queued for another worker.
    let worker_events = app
        .event_store()
        .read_stream(&worker_id.stream(), 1)
        .await
        .expect("the worker's stream");
    assert_eq!(worker_events.len(), 2);
    let task_events = app
        .event_store()
        .read_stream(&task_id.stream(), 1)
        .await
        .expect("the task's stream");
    assert_eq!(
        task_events.len(),
        1,
        "only its publication: {task_events:?}"
    );
}
