//! The loops `serve` runs beside the HTTP server for tasks: the lease reaper, which gives the
//! tasks of dead workers back to the queue, and the webhook dispatcher.
//!
//! Both find their work in the `tasks` read model and act through the Task aggregate, which
//! decides again on the task's own stream: a stale row (a heartbeat the model has not seen
//! yet, a webhook another replica just delivered) costs one refused or empty command, never a
//! wrong transition. Several replicas may run them at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use commands::{CommandContext, CommandError};
use domain::TaskId;
use domain::keyed_hash::keyed_hash;
use domain::task::{Task, TaskCommand, TaskError};
use infra::webhook::{WebhookPolicy, deliver};
use projections::tasks::TaskView;
use serde_json::json;
use tokio::sync::Semaphore;

use crate::background::supervisor::{LoopError, Shutdown};
use crate::cli::config::WebhookConfig;
use crate::http::state::AppState;

/// The key a submitter's webhooks are signed with: HMAC-SHA256 of the server key over
/// `webhook:<user id>`. Shown to its owner in `GET /me`; replicas sharing the server key sign
/// alike.
pub fn webhook_key(secret: &[u8], user: domain::UserId) -> Vec<u8> {
    keyed_hash(secret, &[format!("webhook:{user}").as_bytes()]).to_vec()
}

/// Requeues (or fails, after the last attempt) the tasks whose lease ran out, every
/// `interval`, until shutdown.
pub async fn reap_leases(
    state: AppState,
    interval: Duration,
    mut shutdown: Shutdown,
) -> Result<(), LoopError> {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.requested() => return Ok(()),
            _ = tick.tick() => {}
        }
        let now = Utc::now();
        let expired = match state.tasks.expired_leases(now, 500).await {
            Ok(expired) => expired,
            Err(e) => {
                tracing::warn!(error = %e, "cannot look for expired leases");
                continue;
            }
        };
        for task_id in expired {
            let command = TaskCommand::ExpireLease { at: now };
            let done = state
                .handler
                .execute::<Task>(
                    &task_id.stream(),
                    &command,
                    &state.settings.tasks.services(),
                    &CommandContext::new(now),
                )
                .await;
            match done {
                Ok(outcome) if !outcome.events.is_empty() => {
                    tracing::info!(%task_id, "a lease ran out; the attempt is over");
                    metrics::counter!("treehole_task_leases_expired_total").increment(1);
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(%task_id, error = %e, "cannot expire a lease"),
            }
        }
    }
}

/// The wait before delivery attempt `attempt + 1` when `attempt` attempts have failed:
/// `backoff_ms`, doubled per further attempt, at most `max_backoff_ms`.
pub fn backoff(config: &WebhookConfig, attempt: u32) -> Duration {
    if attempt == 0 {
        return Duration::ZERO;
    }
    let factor = 1u64 << (attempt - 1).min(30);
    Duration::from_millis(
        config
            .backoff_ms
            .saturating_mul(factor)
            .min(config.max_backoff_ms),
    )
}

/// When the next attempt of a pending webhook is due.
fn due_at(config: &WebhookConfig, task: &TaskView) -> Option<DateTime<Utc>> {
    let since = task.webhook_last_at.or(task.finished_at)?;
    let wait = chrono::Duration::from_std(backoff(config, task.webhook_attempts)).ok()?;
    Some(since + wait)
}

/// The JSON a receiver gets: the task's final state, the same body on every attempt.
pub fn webhook_body(task: &TaskView) -> Vec<u8> {
    json!({
        "type": "task.finished",
        "task_id": task.task_id,
        "model": task.model,
        "status": task.status,
        "result": task.result,
        "error": task.error,
        "attempts": task.attempts,
        "created_at": task.created_at,
        "finished_at": task.finished_at,
    })
    .to_string()
    .into_bytes()
}

/// At most this many deliveries at once.
const IN_FLIGHT: usize = 16;
/// The shortest wait between two looks, so due retries are batched a little.
const MIN_NAP: Duration = Duration::from_millis(20);

/// Delivers the webhooks of finished tasks, retrying with exponential backoff, and records
/// every attempt on the task's stream. It looks again when the `tasks` model moves (a task
/// finished, an attempt was recorded) or the next retry is due, and at least every `idle`,
/// until shutdown (deliveries under way finish on their own tasks).
pub async fn deliver_webhooks(
    state: AppState,
    idle: Duration,
    mut shutdown: Shutdown,
) -> Result<(), LoopError> {
    let config = state.settings.webhooks.clone();
    let policy = WebhookPolicy {
        allow_internal: config.allow_internal,
    };
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    // Attempts this process has started per task: a task whose row does not show them yet is
    // not started again.
    let started: Arc<std::sync::Mutex<HashMap<TaskId, u32>>> = Arc::default();
    let mut nap = Duration::ZERO;
    loop {
        let seen = state.hub.position(&["tasks"]);
        // Woken early by news; a timeout is just the next look.
        tokio::select! {
            () = shutdown.requested() => return Ok(()),
            _ = state.hub.wait_for(&["tasks"], seen + 1, nap) => {}
        }
        nap = idle;
        let pending = match state.tasks.pending_webhooks(200).await {
            Ok(pending) => pending,
            Err(e) => {
                tracing::warn!(error = %e, "cannot look for pending webhooks");
                continue;
            }
        };
        let now = Utc::now();
        {
            let mut started = started.lock().expect("webhook bookkeeping lock");
            started.retain(|id, n| {
                pending
                    .iter()
                    .any(|t| t.task_id == *id && t.webhook_attempts < *n)
            });
        }
        for task in pending {
            let Some(due) = due_at(&config, &task) else {
                continue;
            };
            if due > now {
                let wait = (due - now).to_std().unwrap_or_default();
                nap = nap.min(wait.max(MIN_NAP));
                continue;
            }
            let attempt = task.webhook_attempts + 1;
            {
                let mut started = started.lock().expect("webhook bookkeeping lock");
                if started.contains_key(&task.task_id) {
                    continue;
                }
                started.insert(task.task_id, attempt);
            }
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return Err("the delivery slots were closed".into());
            };
            let (state, policy, config) = (state.clone(), policy.clone(), config.clone());
            let started = started.clone();
            tokio::spawn(async move {
                if !attempt_delivery(&state, &policy, &config, &task, attempt).await {
                    // Not recorded: let a later round try again.
                    started
                        .lock()
                        .expect("webhook bookkeeping lock")
                        .remove(&task.task_id);
                }
                drop(slot);
            });
        }
    }
}

/// One delivery and its record; false if it could not be recorded.
async fn attempt_delivery(
    state: &AppState,
    policy: &WebhookPolicy,
    config: &WebhookConfig,
    task: &TaskView,
    attempt: u32,
) -> bool {
    let Some(url) = task.webhook_url.as_deref() else {
        return true;
    };
    let key = webhook_key(&state.secret, task.submitter_id);
    let result = deliver(
        policy,
        url,
        &task.task_id.to_string(),
        &key,
        webhook_body(task),
        Utc::now(),
        Duration::from_millis(config.timeout_ms),
    )
    .await;
    metrics::counter!(
        "treehole_webhook_attempts_total",
        "delivered" => result.delivered.to_string()
    )
    .increment(1);
    let command = TaskCommand::RecordWebhook {
        status: result.status,
        error: result.error.clone(),
        delivered: result.delivered,
        give_up: attempt >= config.max_attempts,
    };
    let recorded = state
        .handler
        .execute::<Task>(
            &task.task_id.stream(),
            &command,
            &state.settings.tasks.services(),
            &CommandContext::new(Utc::now()),
        )
        .await;
    match recorded {
        Ok(_) => {
            tracing::info!(
                task_id = %task.task_id, attempt, delivered = result.delivered,
                status = ?result.status, error = ?result.error, "webhook attempt"
            );
            true
        }
        // Another replica finished this webhook meanwhile.
        Err(CommandError::Rejected(TaskError::NoWebhook)) => true,
        Err(e) => {
            tracing::warn!(task_id = %task.task_id, error = %e, "cannot record a webhook attempt");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_ceiling() {
        let config = WebhookConfig {
            backoff_ms: 100,
            max_backoff_ms: 1_000,
            ..WebhookConfig::default()
        };
        let waits: Vec<u64> = (0..7)
            .map(|n| u64::try_from(backoff(&config, n).as_millis()).unwrap())
            .collect();
        assert_eq!(waits, [0, 100, 200, 400, 800, 1000, 1000]);
        assert_eq!(backoff(&config, 200).as_millis(), 1000);
    }

    #[test]
    fn webhook_keys_differ_per_user_and_per_server_key() {
        let (a, b) = (
            domain::UserId::new(uuid::Uuid::from_u128(1)),
            domain::UserId::new(uuid::Uuid::from_u128(2)),
        );
        assert_ne!(webhook_key(b"server", a), webhook_key(b"server", b));
        assert_ne!(webhook_key(b"server", a), webhook_key(b"other", a));
        assert_eq!(webhook_key(b"server", a).len(), 32);
    }
}
