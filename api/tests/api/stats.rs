//! `GET /stats/overview` and `GET /stats/daily` after a scripted day of forum activity (over
//! HTTP) and two scripted days of tasks (through the command handler, at chosen times): the
//! figures equal those the test computes from its own script, before and after a rebuild.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Days, Duration, NaiveDate, NaiveTime, Utc};
use commands::{CommandContext, CommandHandler};
use domain::UserId;
use domain::ids::{TaskId, WorkerId};
use domain::model::{Model, ModelCommand, ModelName, ModelSpec};
use domain::task::{Claimant, ModelRef, Task, TaskCommand, TaskServices};
use domain::values::Actor;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestApp, TestUser, position, spawn_app, spawn_app_with, str_field};

/// What the script did on one day (or, merged, over several), tallied by the test itself.
#[derive(Debug, Clone, Default)]
struct Tally {
    registrations: u64,
    active: BTreeSet<String>,
    posts: u64,
    anonymous_posts: u64,
    comments: u64,
    anonymous_comments: u64,
    /// Tasks published, by model.
    published: BTreeMap<String, u64>,
    /// Tasks that ended: model, final state, wait and run time (ms) if measured.
    finished: Vec<(String, &'static str, Option<i64>, Option<i64>)>,
    webhook_attempts: u64,
    webhooks_delivered: u64,
    webhooks_abandoned: u64,
}

impl Tally {
    fn merged(days: &[&Tally]) -> Tally {
        let mut all = Tally::default();
        for d in days {
            all.registrations += d.registrations;
            all.active.extend(d.active.iter().cloned());
            all.posts += d.posts;
            all.anonymous_posts += d.anonymous_posts;
            all.comments += d.comments;
            all.anonymous_comments += d.anonymous_comments;
            for (model, n) in &d.published {
                *all.published.entry(model.clone()).or_default() += n;
            }
            all.finished.extend(d.finished.iter().cloned());
            all.webhook_attempts += d.webhook_attempts;
            all.webhooks_delivered += d.webhooks_delivered;
            all.webhooks_abandoned += d.webhooks_abandoned;
        }
        all
    }

    /// The answer the API should give for these days.
    fn json(&self) -> Value {
        let models: BTreeSet<&String> = self
            .published
            .keys()
            .chain(self.finished.iter().map(|f| &f.0))
            .collect();
        let mut tasks = self.tasks(None);
        tasks["by_model"] = models
            .into_iter()
            .map(|m| (m.clone(), self.tasks(Some(m))))
            .collect::<serde_json::Map<_, _>>()
            .into();
        let anonymous = self.anonymous_posts + self.anonymous_comments;
        let settled = self.webhooks_delivered + self.webhooks_abandoned;
        json!({
            "registrations": self.registrations,
            "active_users": self.active.len(),
            "posts": self.posts,
            "anonymous_posts": self.anonymous_posts,
            "comments": self.comments,
            "anonymous_comments": self.anonymous_comments,
            "anonymous_share": ratio(anonymous, self.posts + self.comments),
            "tasks": tasks,
            "webhooks": {
                "attempts": self.webhook_attempts,
                "delivered": self.webhooks_delivered,
                "abandoned": self.webhooks_abandoned,
                "success_rate": ratio(self.webhooks_delivered, settled),
            },
        })
    }

    fn tasks(&self, model: Option<&str>) -> Value {
        let of = |m: &str| model.is_none_or(|x| x == m);
        let ended: Vec<_> = self.finished.iter().filter(|f| of(&f.0)).collect();
        let in_state = |s| ended.iter().filter(|f| f.1 == s).count();
        json!({
            "published": self.published.iter().filter(|(m, _)| of(m)).map(|(_, n)| n).sum::<u64>(),
            "succeeded": in_state("succeeded"),
            "failed": in_state("failed"),
            "cancelled": in_state("cancelled"),
            "wait_ms": nearest_ranks(ended.iter().filter_map(|f| f.2).collect()),
            "run_ms": nearest_ranks(ended.iter().filter_map(|f| f.3).collect()),
        })
    }
}

fn ratio(part: u64, whole: u64) -> Value {
    if whole == 0 {
        Value::Null
    } else {
        json!(part as f64 / whole as f64)
    }
}

/// p50 and p95 by the nearest-rank definition: the ceil(p * n / 100)-th smallest sample.
fn nearest_ranks(mut samples: Vec<i64>) -> Value {
    samples.sort_unstable();
    let n = samples.len();
    let rank = |p: usize| samples.get((p * n).div_ceil(100).max(1) - 1).copied();
    json!({"samples": n, "p50": rank(50), "p95": rank(95)})
}

/// One step of the forum script, by the user at an index of [`USERS`].
enum Forum {
    Post {
        by: usize,
        anonymous: bool,
    },
    /// On the post written by the `on`-th `Post` step.
    Comment {
        by: usize,
        on: usize,
        anonymous: bool,
    },
    Login {
        by: usize,
    },
    /// Of the `post`-th post, by its author: the statistics keep counting it.
    DeletePost {
        by: usize,
        post: usize,
    },
}

/// Everyone registers and logs in; ida does nothing else, root becomes the admin.
const USERS: [&str; 6] = ["ann", "ben", "cat", "dan", "ida", "root"];
const ROOT: usize = 5;

const FORUM: &[Forum] = &[
    Forum::Post {
        by: 0,
        anonymous: false,
    },
    Forum::Post {
        by: 0,
        anonymous: true,
    },
    Forum::Post {
        by: 1,
        anonymous: true,
    },
    Forum::Post {
        by: 2,
        anonymous: false,
    },
    Forum::Comment {
        by: 1,
        on: 0,
        anonymous: false,
    },
    Forum::Comment {
        by: 2,
        on: 0,
        anonymous: true,
    },
    Forum::Comment {
        by: 0,
        on: 1,
        anonymous: true,
    },
    Forum::Comment {
        by: 3,
        on: 1,
        anonymous: false,
    },
    Forum::Comment {
        by: 3,
        on: 2,
        anonymous: true,
    },
    Forum::Comment {
        by: ROOT,
        on: 3,
        anonymous: true,
    },
    Forum::Login { by: 0 },
    Forum::DeletePost { by: 1, post: 2 },
];

/// Runs the forum script over HTTP and tallies it. Returns the users and the tally.
async fn forum_day(app: &TestApp) -> (Vec<TestUser>, Tally) {
    let mut tally = Tally::default();
    let mut users = Vec::new();
    for name in USERS {
        let user = app.new_user(name).await;
        tally.registrations += 1;
        tally.active.insert(user.user_id.clone());
        users.push(user);
    }
    let mut posts = Vec::new();
    for step in FORUM {
        match *step {
            Forum::Post { by, anonymous } => {
                let body = json!({"body": format!("post {}", posts.len()), "anonymous": anonymous});
                let created = app.create_post(&users[by].token, &body).await.expect(201);
                posts.push(str_field(&created, "post_id").to_owned());
                tally.posts += 1;
                tally.anonymous_posts += u64::from(anonymous);
                tally.active.insert(users[by].user_id.clone());
            }
            Forum::Comment { by, on, anonymous } => {
                let body = json!({"body": "a comment", "anonymous": anonymous});
                app.comment(&users[by].token, &posts[on], &body)
                    .await
                    .expect(201);
                tally.comments += 1;
                tally.anonymous_comments += u64::from(anonymous);
                tally.active.insert(users[by].user_id.clone());
            }
            Forum::Login { by } => {
                app.login(USERS[by], crate::helpers::PASSWORD).await;
                tally.active.insert(users[by].user_id.clone());
            }
            Forum::DeletePost { by, post } => {
                app.delete(&format!("/posts/{}", posts[post]), &users[by].token)
                    .await
                    .expect(200);
            }
        }
    }
    (users, tally)
}

/// What happens to a task, at milliseconds after the script's anchor.
#[derive(Clone, Copy)]
enum Step {
    Claim,
    Complete,
    Fail { retryable: bool },
    Cancel,
    Webhook { delivered: bool, give_up: bool },
}

struct Scripted {
    model: &'static str,
    /// Index into [`USERS`].
    by: usize,
    published: i64,
    steps: &'static [(i64, Step)],
}

/// Two models; the anchor is 23:59:58 UTC, so what happens from 2000 ms on falls on the next
/// day. A task counts as finished on the day it ended.
const TASKS: &[Scripted] = &[
    Scripted {
        model: "sdxl",
        by: 0,
        published: 0,
        steps: &[(1000, Step::Claim), (4000, Step::Complete)],
    },
    Scripted {
        model: "sdxl",
        by: 0,
        published: 100,
        steps: &[(600, Step::Claim), (1100, Step::Complete)],
    },
    // Retried: the wait ends at the first claim, the run starts at the last.
    Scripted {
        model: "sdxl",
        by: 0,
        published: 200,
        steps: &[
            (2200, Step::Claim),
            (2700, Step::Fail { retryable: true }),
            (3200, Step::Claim),
            (9200, Step::Complete),
        ],
    },
    Scripted {
        model: "sdxl",
        by: 0,
        published: 300,
        steps: &[(400, Step::Claim), (1900, Step::Fail { retryable: false })],
    },
    Scripted {
        model: "sdxl",
        by: 0,
        published: 500,
        steps: &[(700, Step::Cancel)],
    },
    // Still running: published, never finished.
    Scripted {
        model: "sdxl",
        by: 0,
        published: 600,
        steps: &[(5600, Step::Claim)],
    },
    // Cancelled after a failed attempt: it waited, but was not running when it ended.
    Scripted {
        model: "sdxl",
        by: 0,
        published: 700,
        steps: &[
            (800, Step::Claim),
            (1000, Step::Fail { retryable: true }),
            (1500, Step::Cancel),
        ],
    },
    Scripted {
        model: "sdxl",
        by: 2,
        published: 3000,
        steps: &[(3500, Step::Claim), (4000, Step::Complete)],
    },
    Scripted {
        model: "whisper",
        by: 1,
        published: 1000,
        steps: &[
            (1300, Step::Claim),
            (1800, Step::Complete),
            (
                2500,
                Step::Webhook {
                    delivered: false,
                    give_up: false,
                },
            ),
            (
                4500,
                Step::Webhook {
                    delivered: true,
                    give_up: false,
                },
            ),
        ],
    },
    Scripted {
        model: "whisper",
        by: 1,
        published: 1200,
        steps: &[
            (1250, Step::Claim),
            (1990, Step::Fail { retryable: false }),
            (
                3000,
                Step::Webhook {
                    delivered: false,
                    give_up: false,
                },
            ),
            (
                6000,
                Step::Webhook {
                    delivered: false,
                    give_up: true,
                },
            ),
        ],
    },
    Scripted {
        model: "whisper",
        by: 1,
        published: 1500,
        steps: &[
            (1700, Step::Claim),
            (2100, Step::Complete),
            (
                2200,
                Step::Webhook {
                    delivered: true,
                    give_up: false,
                },
            ),
        ],
    },
    Scripted {
        model: "whisper",
        by: 1,
        published: 1600,
        steps: &[
            (1800, Step::Cancel),
            (
                1900,
                Step::Webhook {
                    delivered: false,
                    give_up: true,
                },
            ),
        ],
    },
];

fn actor(user: &TestUser, is_admin: bool) -> Actor {
    Actor {
        user_id: UserId::new(user.user_id.parse().expect("a user id")),
        username: user.username.clone(),
        is_admin,
    }
}

/// Registers the models and runs [`TASKS`] from `anchor` through the command handler (the
/// task routes are not written yet); returns the tallies per day.
async fn task_days(
    app: &TestApp,
    users: &[TestUser],
    anchor: DateTime<Utc>,
) -> BTreeMap<NaiveDate, Tally> {
    let handler = CommandHandler::new(app.event_store());
    let services = TaskServices::default();
    let admin = actor(&users[ROOT], true);
    for name in ["sdxl", "whisper"] {
        let name = ModelName::parse(name).expect("a model name");
        let register = ModelCommand::Register {
            name: name.clone(),
            spec: ModelSpec {
                kind: "test".into(),
                input_schema: json!({"type": "object"}),
                max_concurrent: 4,
            },
            enabled: true,
            by: admin.clone(),
        };
        handler
            .execute::<Model>(&name.stream(), &register, &(), &CommandContext::new(anchor))
            .await
            .expect("a model");
    }
    let mut days: BTreeMap<NaiveDate, Tally> = BTreeMap::new();
    for scripted in TASKS {
        let task_id = TaskId::new(Uuid::now_v7());
        let worker = WorkerId::new(Uuid::now_v7());
        let submitter = actor(&users[scripted.by], false);
        let at = |ms: i64| anchor + Duration::milliseconds(ms);
        let execute = async |command: TaskCommand, ms: i64| {
            let ctx = CommandContext::new(at(ms));
            handler
                .execute::<Task>(&task_id.stream(), &command, &services, &ctx)
                .await
                .expect("the scripted command is accepted");
        };
        let publish = TaskCommand::Publish {
            task_id,
            submitter: submitter.clone(),
            model: ModelRef {
                name: ModelName::parse(scripted.model).expect("a model name"),
                enabled: true,
            },
            input: json!({"prompt": "a cat"}),
            webhook_url: Some("https://hooks.example.edu/done".into()),
            priority: 0,
        };
        execute(publish, scripted.published).await;
        let published = days.entry(at(scripted.published).date_naive()).or_default();
        *published
            .published
            .entry(scripted.model.into())
            .or_default() += 1;
        published.active.insert(users[scripted.by].user_id.clone());

        let (mut first_claim, mut last_claim, mut claims) = (None, None, 0u32);
        for &(ms, step) in scripted.steps {
            let ended = match step {
                Step::Claim => {
                    let lease = Duration::seconds(60);
                    execute(
                        TaskCommand::Claim {
                            worker: Claimant {
                                id: worker,
                                active: true,
                            },
                            lease,
                            at: at(ms),
                        },
                        ms,
                    )
                    .await;
                    first_claim = first_claim.or(Some(ms));
                    last_claim = Some(ms);
                    claims += 1;
                    None
                }
                Step::Complete => {
                    execute(
                        TaskCommand::Complete {
                            worker,
                            result: json!({"ok": true}),
                        },
                        ms,
                    )
                    .await;
                    Some("succeeded")
                }
                Step::Fail { retryable } => {
                    let error = "CUDA out of memory".into();
                    execute(
                        TaskCommand::Fail {
                            worker,
                            error,
                            retryable,
                        },
                        ms,
                    )
                    .await;
                    (!retryable || claims >= services.max_attempts).then_some("failed")
                }
                Step::Cancel => {
                    execute(
                        TaskCommand::Cancel {
                            actor: submitter.clone(),
                        },
                        ms,
                    )
                    .await;
                    Some("cancelled")
                }
                Step::Webhook { delivered, give_up } => {
                    let status = Some(if delivered { 200 } else { 503 });
                    let record = TaskCommand::RecordWebhook {
                        status,
                        error: None,
                        delivered,
                        give_up,
                    };
                    execute(record, ms).await;
                    let day = days.entry(at(ms).date_naive()).or_default();
                    day.webhook_attempts += 1;
                    day.webhooks_delivered += u64::from(delivered);
                    day.webhooks_abandoned += u64::from(!delivered && give_up);
                    None
                }
            };
            if let Some(state) = ended {
                let wait = first_claim.map(|c| c - scripted.published);
                let run = last_claim.filter(|_| state != "cancelled").map(|c| ms - c);
                let day = days.entry(at(ms).date_naive()).or_default();
                day.finished.push((scripted.model.into(), state, wait, run));
            }
        }
    }
    days
}

/// The additive figures of a day's answer (everything but active users).
fn additive(day: &Value) -> Vec<u64> {
    let fields = [
        "registrations",
        "posts",
        "anonymous_posts",
        "comments",
        "anonymous_comments",
    ];
    let tasks = ["published", "succeeded", "failed", "cancelled"];
    fields
        .iter()
        .map(|f| &day[f])
        .chain(tasks.iter().map(|f| &day["tasks"][f]))
        .chain(
            ["attempts", "delivered", "abandoned"]
                .iter()
                .map(|f| &day["webhooks"][f]),
        )
        .map(|v| v.as_u64().unwrap_or_else(|| panic!("a count in {day}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statistics_of_a_scripted_day_equal_the_scripts_own_figures_and_survive_a_rebuild() {
    // The script takes every step of its tasks itself, at times of its choosing in the past
    // (leases included): neither the lease reaper nor the webhook dispatcher may step in.
    let app = spawn_app_with(|s| {
        s.webhooks.deliver = false;
        s.tasks.reap_interval_ms = 24 * 3600 * 1000;
    })
    .await;
    // Forum activity happens today (or, across midnight, tomorrow); the tasks ran on two days
    // before, from 23:59:58 on the first.
    let today = Utc::now().date_naive();
    let (users, forum) = forum_day(&app).await;
    let first = today - Days::new(3);
    let anchor = first
        .and_time(NaiveTime::from_hms_opt(23, 59, 58).expect("a time"))
        .and_utc();
    let task_days = task_days(&app, &users, anchor).await;
    let granted = api::cli::admin::grant(
        &CommandHandler::new(app.event_store()),
        &app.secret(),
        "root",
    )
    .await
    .expect("grant");
    let admin = &users[ROOT].token;
    app.get_auth(&format!("/me?after={granted}"), admin)
        .await
        .expect(200);
    let head = app.head().await;

    // All time: everything the script did.
    let mut all: Vec<&Tally> = task_days.values().collect();
    all.push(&forum);
    let overview = app
        .get(&format!("/stats/overview?after={head}"))
        .await
        .expect(200);
    assert_eq!(overview, Tally::merged(&all).json());
    assert_eq!(overview["active_users"], json!(USERS.len()));

    // The task days, day by day, with an idle day before them.
    let range = format!("from={}&to={}", first - Days::new(1), first + Days::new(1));
    let tasks_daily = app
        .get(&format!("/stats/daily?{range}&after={head}"))
        .await
        .expect(200);
    let empty = Tally::default();
    let expected: Vec<Value> = [first - Days::new(1), first, first + Days::new(1)]
        .into_iter()
        .map(|day| {
            let mut figures = task_days.get(&day).unwrap_or(&empty).json();
            figures["day"] = json!(day);
            figures
        })
        .collect();
    assert_eq!(tasks_daily["days"], json!(expected));
    assert_eq!(task_days.len(), 2, "the script spans two days");

    // The forum day, wherever midnight fell: additive figures sum up; each user counts once
    // a day.
    let window = format!("from={}&to={}", today - Days::new(1), today + Days::new(1));
    let forum_daily = app
        .get(&format!("/stats/daily?{window}&after={head}"))
        .await
        .expect(200);
    let days = forum_daily["days"].as_array().expect("days");
    assert_eq!(days.len(), 3);
    let sums = days.iter().map(additive).fold(vec![0; 12], |acc, d| {
        acc.iter().zip(d).map(|(a, b)| a + b).collect()
    });
    assert_eq!(sums, additive(&Tally::merged(&[&forum]).json()));
    let active: Vec<u64> = days
        .iter()
        .map(|d| d["active_users"].as_u64().expect("a count"))
        .collect();
    let everyone = forum.active.len() as u64;
    assert!(active.iter().all(|a| *a <= everyone), "{active:?}");
    assert!(active.iter().sum::<u64>() >= everyone, "{active:?}");

    // Counts only: no user is named or identified.
    for reply in [&overview, &tasks_daily, &forum_daily] {
        let text = reply.to_string();
        for user in &users {
            assert!(!text.contains(&user.user_id), "{text}");
            assert!(!text.contains(&format!("\"{}\"", user.username)), "{text}");
        }
    }

    // A rebuild reproduces every figure.
    app.rebuild(admin, "stats").await;
    for (path, before) in [
        (format!("/stats/overview?after={head}"), &overview),
        (format!("/stats/daily?{range}&after={head}"), &tasks_daily),
        (format!("/stats/daily?{window}&after={head}"), &forum_daily),
    ] {
        assert_eq!(app.get(&path).await.expect(200), *before, "{path}");
    }
    app.assert_no_server_errors();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statistics_refuse_bad_ranges_and_wait_for_positions() {
    let app = spawn_app().await;
    let user = app.new_user("counted").await;
    let post = app
        .create_post(&user.token, &json!({"body": "hello", "anonymous": true}))
        .await
        .expect(201);
    let today = Utc::now().date_naive();
    let overview = app
        .get(&format!("/stats/overview?after={}", position(&post)))
        .await;
    let figures = overview.expect(200);
    assert_eq!(
        (
            figures["posts"].as_u64(),
            figures["anonymous_share"].as_f64()
        ),
        (Some(1), Some(1.0))
    );
    let shown: u64 = overview.headers["x-projection-position"]
        .to_str()
        .expect("text")
        .parse()
        .expect("a position");
    assert!(shown >= position(&post));

    let year = app
        .get(&format!(
            "/stats/daily?from={}&to={today}",
            today - Days::new(365)
        ))
        .await
        .expect(200);
    assert_eq!(year["days"].as_array().expect("days").len(), 366);

    let head = app.head().await;
    for bad in [
        "/stats/daily".to_owned(),
        "/stats/daily?from=2026-03-01".to_owned(),
        "/stats/daily?to=2026-03-01".to_owned(),
        "/stats/daily?from=2026-13-01&to=2026-13-02".to_owned(),
        "/stats/daily?from=2026-3-1&to=2026-03-02".to_owned(),
        "/stats/daily?from=tomorrow&to=2026-03-02".to_owned(),
        "/stats/daily?from=2026-03-02&to=2026-03-01".to_owned(),
        "/stats/daily?from=2025-01-01&to=2026-01-02".to_owned(),
        "/stats/daily?from=2026-03-01&to=2026-03-02&after=-1".to_owned(),
        format!("/stats/overview?after={}", head + 1000),
    ] {
        app.get(&bad).await.expect_problem(400);
    }
}
