//! The four scenarios, and the baseline load each is compared with.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use domain::pseudonym::PseudonymScheme;
use rand::Rng;
use rand::seq::SliceRandom;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::Barrier;
use tokio::task::JoinSet;

use super::client::{Client, Req, User, field, position};
use super::report::{Compared, Recorder, Report};
use super::server::Server;
use super::{BenchError, Common, Target, Tickets};

/// What a scenario hands back: its report and the first error messages.
pub type Outcome = (Report, Vec<String>);

const COMMENT: &str = "楼主说得对，我也这么觉得。Totally agree, see you at the library tonight!";
const SEARCH_TERMS: &[&str] = &[
    "食堂", "library", "期末", "bike", "爬山", "umbrella", "猫咪", "monitor", "电影", "Wi-Fi",
];

/// The server under load: the one at `--url`, or one the tool started (and stops).
struct Running {
    url: String,
    outbox: Option<PathBuf>,
    server: Option<Server>,
    /// A data directory the tool made, removed at the end.
    scratch: Option<PathBuf>,
}

impl Running {
    async fn open(
        common: &Common,
        target: &Target,
        preload: u64,
    ) -> Result<(Self, Option<(u64, Duration)>), BenchError> {
        if let Some(url) = &common.url {
            let outbox = target.data.as_ref().map(|d| d.join("outbox"));
            return Ok((
                Self {
                    url: url.clone(),
                    outbox,
                    server: None,
                    scratch: None,
                },
                None,
            ));
        }
        let (data, scratch) = match &target.data {
            Some(d) => (d.clone(), None),
            None => {
                let d =
                    std::env::temp_dir().join(format!("treehole-bench-{}", uuid::Uuid::new_v4()));
                (d.clone(), Some(d))
            }
        };
        std::fs::create_dir_all(&data)
            .map_err(|e| BenchError::Setup(format!("{}: {e}", data.display())))?;
        let mut loaded = None;
        if preload > 0 {
            let settings =
                crate::tools::loader::settings_for(&data, target.database_url.as_deref())
                    .map_err(|e| BenchError::Setup(e.to_string()))?;
            let summary = crate::tools::loader::load(&settings, preload, |_| {})
                .await
                .map_err(|e| BenchError::Setup(e.to_string()))?;
            loaded = Some(summary.head);
        }
        let started = Instant::now();
        let server = Server::treehole(&data, target.database_url.as_deref()).await?;
        let running = Self {
            url: server.url.clone(),
            outbox: Some(data.join("outbox")),
            server: Some(server),
            scratch,
        };
        let mut caught_up = None;
        if let Some(head) = loaded {
            // The started server's projectors build every read model from the loaded log.
            let client = Client::new(&running.url, None, 1)?;
            let limit = Duration::from_secs(3600);
            client.wait_visible("/posts?limit=1", head, limit).await?;
            client
                .wait_visible("/search?q=the&limit=1", head, limit)
                .await?;
            client.wait_visible("/stats/overview", head, limit).await?;
            caught_up = Some((head, started.elapsed()));
        }
        Ok((running, caught_up))
    }

    /// The CPU time used so far by the server this tool started (none for `--url`) and by
    /// the tool itself.
    fn cpu_mark(&self) -> CpuMark {
        CpuMark {
            server: self.server.as_ref().and_then(Server::cpu_time),
            tool: super::server::cpu_time("self"),
        }
    }

    async fn close(self) {
        if let Some(s) = self.server {
            s.stop().await;
        }
        if let Some(d) = self.scratch {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// CPU time used so far by the server and by the tool, where the system tells.
#[derive(Clone, Copy)]
struct CpuMark {
    server: Option<Duration>,
    tool: Option<Duration>,
}

/// The CPU time used between two readings of one process, if both were read.
fn used(from: Option<Duration>, to: Option<Duration>) -> Option<Duration> {
    Some(to?.saturating_sub(from?))
}

/// CPU time the server and the tool used over the measured stretches of a scenario.
#[derive(Default)]
struct CpuUse {
    server: Option<Duration>,
    tool: Option<Duration>,
}

impl CpuUse {
    /// Adds what was used between `from` and `to`.
    fn add(&mut self, from: CpuMark, to: CpuMark) {
        let sum = |total: Option<Duration>, more: Option<Duration>| match (total, more) {
            (Some(t), Some(m)) => Some(t + m),
            (None, m) => m,
            (t, None) => t,
        };
        self.server = sum(self.server, used(from.server, to.server));
        self.tool = sum(self.tool, used(from.tool, to.tool));
    }

    /// Notes CPU per operation (`what`, `count` of them in `wall`): the server's, which is
    /// steadier than a rate on a machine whose speed wanders, and the tool's, which shares the
    /// machine with it. Nothing for a server at `--url`, or where the system does not tell.
    fn note(&self, report: &mut Report, what: &str, count: u64, wall: Duration) {
        if let (Some(per), Some(server)) = (micros_per(self.server, count), self.server) {
            report.note(&format!("server CPU per {what}, µs"), per.round());
            report.note(
                "server CPU busy, cores",
                (server.as_secs_f64() / wall.as_secs_f64().max(1e-9) * 100.0).round() / 100.0,
            );
        }
        if let Some(per) = micros_per(self.tool, count) {
            report.note("tool CPU per request, µs", per.round());
        }
    }
}

/// Microseconds of CPU per operation, or `None` when nothing was counted: `/proc` counts in
/// ticks of 10 ms, so a phase too short to show one is too short to tell, not free.
fn micros_per(cpu: Option<Duration>, count: u64) -> Option<f64> {
    let cpu = cpu.filter(|c| !c.is_zero())?;
    Some(cpu.as_secs_f64() * 1e6 / count.max(1) as f64)
}

/// Collects the recorders and first errors of a set of connections.
async fn join(mut set: JoinSet<(Recorder, Vec<String>)>) -> (Recorder, Vec<String>) {
    let mut rec = Recorder::default();
    let mut errors = Vec::new();
    while let Some(done) = set.join_next().await {
        let (r, e) = done.expect("a load task does not panic");
        rec.merge(&r);
        errors.extend(e);
    }
    errors.truncate(10);
    (rec, errors)
}

fn keep(errors: &mut Vec<String>, e: BenchError) {
    if errors.len() < 10 {
        errors.push(e.to_string());
    }
}

/// Registers `n` users `<prefix>0..` over `connections` connections.
async fn register_all(
    client: &Client,
    prefix: &str,
    n: usize,
    connections: usize,
) -> Result<(Vec<User>, Recorder), BenchError> {
    let tickets = Tickets::new(n as u64);
    let users = Arc::new(Mutex::new(BTreeMap::new()));
    let mut set = JoinSet::new();
    for _ in 0..connections.min(n).max(1) {
        let (client, tickets, users, prefix) = (
            client.clone(),
            tickets.clone(),
            users.clone(),
            prefix.to_owned(),
        );
        set.spawn(async move {
            let mut rec = Recorder::default();
            let mut errors = Vec::new();
            while let Some(i) = tickets.take() {
                match client.register(&mut rec, &format!("{prefix}{i}")).await {
                    Ok(u) => {
                        users.lock().expect("users").insert(i, u);
                    }
                    Err(e) => keep(&mut errors, e),
                }
            }
            (rec, errors)
        });
    }
    let (rec, errors) = join(set).await;
    if let Some(e) = errors.first() {
        return Err(BenchError::Setup(format!("registering {n} users: {e}")));
    }
    let users = std::mem::take(&mut *users.lock().expect("users"));
    Ok((users.into_values().collect(), rec))
}

/// A run prefix that keeps usernames unique across runs against one server.
fn prefix(tag: &str) -> String {
    let r: u32 = rand::thread_rng().r#gen();
    format!("{tag}{r:08x}_")
}

/// What the baseline measured: its latencies, the time its requests took (from the first sent
/// to the last answered, not the server's start or stop) and the CPU its server used meanwhile.
struct Baseline {
    rec: Recorder,
    wall: Duration,
    server_cpu: Option<Duration>,
}

/// The baseline: the same number of requests over the same connections to the minimal axum
/// server, GETs or POSTs of `body`.
async fn baseline(
    common: &Common,
    requests: u64,
    post: Option<Value>,
) -> Result<Option<Baseline>, BenchError> {
    if common.no_baseline {
        return Ok(None);
    }
    let log = std::env::temp_dir().join(format!(
        "treehole-bench-baseline-{}.log",
        uuid::Uuid::new_v4()
    ));
    let server = Server::baseline(&log).await?;
    let client = Client::new(&server.url, None, common.connections)?;
    let tickets = Tickets::new(requests);
    let mut set = JoinSet::new();
    let cpu_from = server.cpu_time();
    let started = Instant::now();
    for _ in 0..common.connections.max(1) {
        let (client, tickets, post) = (client.clone(), tickets.clone(), post.clone());
        set.spawn(async move {
            let mut rec = Recorder::default();
            let mut errors = Vec::new();
            while tickets.take().is_some() {
                let r = match &post {
                    Some(body) => client
                        .call(
                            &mut rec,
                            "baseline",
                            Req {
                                method: Method::POST,
                                path: "/baseline",
                                token: None,
                                body: Some(body),
                            },
                            StatusCode::OK,
                        )
                        .await
                        .map(drop),
                    None => client.read(&mut rec, "baseline", "/baseline").await,
                };
                if let Err(e) = r {
                    keep(&mut errors, e);
                }
            }
            (rec, errors)
        });
    }
    let (rec, _) = join(set).await;
    let wall = started.elapsed();
    let server_cpu = used(cpu_from, server.cpu_time());
    server.stop().await;
    let _ = std::fs::remove_file(log);
    Ok(Some(Baseline {
        rec,
        wall,
        server_cpu,
    }))
}

/// Rate and p99 of `ours` beside the baseline's.
fn compare(
    report: &mut Report,
    what: &str,
    ours: &Recorder,
    wall: Duration,
    base: &Option<Baseline>,
) {
    let Some(base) = base else {
        return;
    };
    let o = ours.all().figures(wall);
    let b = base.rec.all().figures(base.wall);
    report.compared.push(Compared::new(
        format!("{what} per s"),
        o.per_sec,
        "req/s",
        "minimal axum handler, per s",
        b.per_sec,
    ));
    report.compared.push(Compared::new(
        format!("{what} p99"),
        o.p99_ms,
        "ms",
        "minimal axum handler, p99",
        b.p99_ms,
    ));
}

/// The server's CPU per operation beside the baseline server's per request, when both are
/// known: a ratio that moves less with the machine's speed than the rates do.
fn compare_cpu(
    report: &mut Report,
    what: &str,
    ours: &CpuUse,
    count: u64,
    base: &Option<Baseline>,
) {
    let Some(base) = base else {
        return;
    };
    let (Some(ours), Some(theirs)) = (
        micros_per(ours.server, count),
        micros_per(base.server_cpu, base.rec.all().count()),
    ) else {
        return;
    };
    report.compared.push(Compared::new(
        format!("server CPU per {what}"),
        ours,
        "µs",
        "minimal axum handler, per request",
        theirs,
    ));
}

/// `commands`: each connection registers and logs in a user, then runs a mix of 75% comments
/// (60% anonymous) on recent posts, 15% posts (half anonymous), 5% logins and 5% new
/// registrations, until `--requests` operations are done.
pub async fn commands(common: &Common, target: &Target) -> Result<Outcome, BenchError> {
    let (running, _) = Running::open(common, target, 0).await?;
    let client = Client::new(&running.url, running.outbox.clone(), common.connections)?;
    let tag = prefix("cmd");
    let posts: Arc<Mutex<Vec<String>>> = Arc::default();
    let tickets = Tickets::new(common.requests);
    let started = Instant::now();
    let mut set = JoinSet::new();
    for c in 0..common.connections.max(1) {
        let (client, tickets, posts, tag) =
            (client.clone(), tickets.clone(), posts.clone(), tag.clone());
        set.spawn(async move {
            let mut rec = Recorder::default();
            let mut errors = Vec::new();
            let mut user = match client.register(&mut rec, &format!("{tag}{c}")).await {
                Ok(u) => u,
                Err(e) => {
                    keep(&mut errors, e);
                    return (rec, errors);
                }
            };
            let mut extra = 0;
            while let Some(n) = tickets.take() {
                let roll = rand::thread_rng().gen_range(0..100);
                let recent = {
                    let p = posts.lock().expect("posts");
                    p.len()
                        .checked_sub(1 + rand::thread_rng().gen_range(0..20.min(p.len().max(1))))
                        .map(|i| p[i].clone())
                };
                let result = match (roll, recent) {
                    (0..75, Some(post)) => {
                        let anonymous = rand::thread_rng().gen_range(0..100) < 60;
                        let op = if anonymous {
                            "comment (anonymous)"
                        } else {
                            "comment (named)"
                        };
                        client
                            .comment(&mut rec, op, &user, &post, COMMENT, anonymous)
                            .await
                            .map(drop)
                    }
                    (0..90, _) => {
                        let anonymous = n % 2 == 0;
                        let op = if anonymous {
                            "post (anonymous)"
                        } else {
                            "post (named)"
                        };
                        match client
                            .post(
                                &mut rec,
                                op,
                                &user,
                                "今天图书馆人好多。The library is packed today.",
                                anonymous,
                            )
                            .await
                        {
                            Ok((id, _)) => {
                                posts.lock().expect("posts").push(id);
                                Ok(())
                            }
                            Err(e) => Err(e),
                        }
                    }
                    (90..95, _) => client
                        .login(&mut rec, &user.username)
                        .await
                        .map(|u| user = u),
                    _ => {
                        extra += 1;
                        client
                            .register(&mut rec, &format!("{tag}{c}x{extra}"))
                            .await
                            .map(|u| user = u)
                    }
                };
                if let Err(e) = result {
                    keep(&mut errors, e);
                }
            }
            (rec, errors)
        });
    }
    let (rec, errors) = join(set).await;
    let wall = started.elapsed();
    let count = rec.all().count();
    running.close().await;
    let mut report = Report::new("commands", common.connections, wall, &rec);
    let base = baseline(
        common,
        count.max(1),
        Some(json!({"body": COMMENT, "anonymous": true})),
    )
    .await?;
    compare(&mut report, "commands", &rec, wall, &base);
    Ok((report, errors))
}

/// The longest a scenario waits for the projectors to catch up with its setup before its
/// clock starts ([`Client::wait_projections_caught_up`]).
const SETTLE: Duration = Duration::from_secs(60);

/// `comments`: the write path alone. One user per connection, each registered and given a post
/// of its own before the clock starts, comments on that post (60% anonymously) until
/// `--requests` comments are done: no argon2 and no shared stream in the loop. The in-process
/// projectors run meanwhile, as in production; the report notes how far behind they were when
/// the last comment was answered, and how long they took to catch up.
pub async fn comments(common: &Common, target: &Target) -> Result<Outcome, BenchError> {
    let (running, _) = Running::open(common, target, 0).await?;
    let connections = common.connections.max(1);
    let client = Client::new(&running.url, running.outbox.clone(), connections)?;
    let (users, _) = register_all(&client, &prefix("com"), connections, connections).await?;
    let mut setup = Recorder::default();
    let mut own = Vec::with_capacity(users.len());
    for user in users {
        let (post, _) = client
            .post(&mut setup, "post", &user, "我的帖子。My own post.", false)
            .await?;
        own.push((user, post));
    }
    let settled = client.wait_projections_caught_up(SETTLE).await?;

    let tickets = Tickets::new(common.requests);
    let last = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let cpu_from = running.cpu_mark();
    let started = Instant::now();
    let mut set = JoinSet::new();
    for (user, post) in own.clone() {
        let (client, tickets, last) = (client.clone(), tickets.clone(), last.clone());
        set.spawn(async move {
            let mut rec = Recorder::default();
            let mut errors = Vec::new();
            while tickets.take().is_some() {
                let anonymous = rand::thread_rng().gen_range(0..100) < 60;
                let op = if anonymous {
                    "comment (anonymous)"
                } else {
                    "comment (named)"
                };
                match client
                    .comment(&mut rec, op, &user, &post, COMMENT, anonymous)
                    .await
                {
                    Ok(answer) => match position(&answer) {
                        Ok(p) => {
                            last.fetch_max(p, std::sync::atomic::Ordering::Relaxed);
                        }
                        Err(e) => keep(&mut errors, e),
                    },
                    Err(e) => keep(&mut errors, e),
                }
            }
            (rec, errors)
        });
    }
    let (rec, errors) = join(set).await;
    let wall = started.elapsed();
    let mut cpu = CpuUse::default();
    cpu.add(cpu_from, running.cpu_mark());
    let last = last.load(std::sync::atomic::Ordering::Relaxed);
    let behind = client.projection_position("/posts?limit=1").await?;
    let catching_up = Instant::now();
    if let Some((_, post)) = own.first() {
        client
            .wait_visible(
                &format!("/posts/{post}/comments?limit=1"),
                last,
                Duration::from_secs(600),
            )
            .await?;
    }
    let caught_up = catching_up.elapsed();
    let count = rec.all().count();
    running.close().await;
    let mut report = Report::new("comments", common.connections, wall, &rec);
    report.note(
        "projectors caught up with the setup before the clock, s",
        settled.as_secs_f64(),
    );
    report.note(
        "projector lag at the end, events",
        last.saturating_sub(behind),
    );
    report.note(
        "projectors caught up after the end, s",
        caught_up.as_secs_f64(),
    );
    cpu.note(&mut report, "comment", count, wall);
    let base = baseline(
        common,
        count.max(1),
        Some(json!({"body": COMMENT, "anonymous": true})),
    )
    .await?;
    compare(&mut report, "comments", &rec, wall, &base);
    compare_cpu(&mut report, "comment", &cpu, count, &base);
    Ok((report, errors))
}

/// `hot-post`: `users` users (registered first, not measured) comment anonymously on one post
/// all at once, then all again. Checks the pseudonym rule on the answers and on the comment
/// pages: one name per user, kept on the second comment, never shared, and the names handed
/// out are the scheme's first ones.
pub async fn hot_post(
    common: &Common,
    target: &Target,
    users: usize,
) -> Result<Outcome, BenchError> {
    let (running, _) = Running::open(common, target, 0).await?;
    let client = Client::new(
        &running.url,
        running.outbox.clone(),
        users.max(common.connections),
    )?;
    let tag = prefix("hot");
    let (users, _) = register_all(&client, &tag, users, common.connections).await?;
    let mut setup = Recorder::default();
    let author = client.register(&mut setup, &format!("{tag}author")).await?;
    let (post_id, _) = client
        .post(
            &mut setup,
            "post",
            &author,
            "大家来签个到！Check in here, everyone.",
            false,
        )
        .await?;
    let settled = client.wait_projections_caught_up(SETTLE).await?;

    let mut rec = Recorder::default();
    let mut names: Vec<BTreeMap<usize, (String, String)>> = Vec::new();
    let mut waves = Vec::new();
    let mut cpu = CpuUse::default();
    for wave in ["first comment", "second comment"] {
        let barrier = Arc::new(Barrier::new(users.len()));
        let mut set = JoinSet::new();
        for (i, user) in users.iter().cloned().enumerate() {
            let (client, barrier, post_id) = (client.clone(), barrier.clone(), post_id.clone());
            set.spawn(async move {
                let mut rec = Recorder::default();
                barrier.wait().await;
                let reply = client
                    .comment(&mut rec, wave, &user, &post_id, COMMENT, true)
                    .await;
                (i, rec, reply)
            });
        }
        let cpu_from = running.cpu_mark();
        let started = Instant::now();
        let mut got = BTreeMap::new();
        let mut errors = Vec::new();
        while let Some(done) = set.join_next().await {
            let (i, r, reply) = done.expect("a commenter does not panic");
            rec.merge(&r);
            match reply.and_then(|v| Ok((field(&v, "author_name")?, field(&v, "comment_id")?))) {
                Ok(pair) => {
                    got.insert(i, pair);
                }
                Err(e) => keep(&mut errors, e),
            }
        }
        waves.push((wave, started.elapsed()));
        cpu.add(cpu_from, running.cpu_mark());
        if let Some(e) = errors.first() {
            running.close().await;
            return Err(BenchError::Request(format!(
                "{wave}: {} failed; the first: {e}",
                errors.len()
            )));
        }
        names.push(got);
    }
    let wall: Duration = waves.iter().map(|(_, d)| *d).sum();

    // The rule, on the commands' answers ...
    let first = &names[0];
    let second = &names[1];
    let distinct: BTreeSet<&String> = first.values().map(|(n, _)| n).collect();
    if distinct.len() != users.len() {
        return Err(BenchError::Broken(format!(
            "{} users got only {} distinct pseudonyms on their first comment",
            users.len(),
            distinct.len()
        )));
    }
    for (i, (name, _)) in first {
        if second[i].0 != *name {
            return Err(BenchError::Broken(format!(
                "user {i} was {name} on the first comment and {} on the second",
                second[i].0
            )));
        }
    }
    let scheme = PseudonymScheme::default();
    let expected: BTreeSet<String> = (0..users.len()).map(|i| scheme.name_at(i)).collect();
    let handed: BTreeSet<String> = distinct.iter().map(|s| (*s).clone()).collect();
    let first_names = handed == expected;
    // ... and on what the read side shows.
    let by_comment: HashMap<String, &String> = first
        .values()
        .chain(second.values())
        .map(|(n, c)| (c.clone(), n))
        .collect();
    let mut seen = 0usize;
    let mut cursor: Option<String> = None;
    // The author's named comment comes after every acknowledged one: once it is visible,
    // they all are.
    let max_position = {
        let mut r = Recorder::default();
        let v = client
            .comment(
                &mut r,
                "probe",
                &author,
                &post_id,
                "最后一条。Last one.",
                false,
            )
            .await?;
        position(&v)?
    };
    let catching_up = Instant::now();
    client
        .wait_visible(
            &format!("/posts/{post_id}/comments?limit=1"),
            max_position,
            Duration::from_secs(600),
        )
        .await?;
    let comments_caught_up = catching_up.elapsed();
    loop {
        let mut path = format!("/posts/{post_id}/comments?limit=100");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let mut r = Recorder::default();
        let page = client.get(&mut r, "comments page", &path).await?;
        for item in page["items"].as_array().into_iter().flatten() {
            let id = item["comment_id"].as_str().unwrap_or_default();
            if let Some(name) = by_comment.get(id) {
                seen += 1;
                if item["author_name"].as_str() != Some(name.as_str()) {
                    return Err(BenchError::Broken(format!(
                        "comment {id} was answered as {name} but is listed as {}",
                        item["author_name"]
                    )));
                }
            }
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    if seen != by_comment.len() {
        return Err(BenchError::Broken(format!(
            "{} comments were acknowledged but {seen} are listed",
            by_comment.len()
        )));
    }
    running.close().await;

    let mut report = Report::new("hot-post", users.len(), wall, &rec);
    report.note(
        "projectors caught up with the setup before the clock, s",
        settled.as_secs_f64(),
    );
    cpu.note(&mut report, "comment", rec.all().count(), wall);
    for (wave, took) in &waves {
        report.note(&format!("{wave} wave, s"), took.as_secs_f64());
        report.note(
            &format!("{wave} wave, comments/s"),
            users.len() as f64 / took.as_secs_f64(),
        );
    }
    report.note(
        "comments page caught up after the waves, s",
        comments_caught_up.as_secs_f64(),
    );
    report.note(
        "pseudonym rule",
        format!(
            "ok: {} users, {} distinct names, each kept on the second comment, {} comments listed with them{}",
            users.len(),
            distinct.len(),
            seen,
            if first_names { ", exactly the scheme's first names" } else { " (not the default scheme's first names: a configured scheme?)" }
        ),
    );
    if !common.no_baseline {
        // The same waves against the minimal handler: all at once, twice.
        let log = std::env::temp_dir().join(format!(
            "treehole-bench-baseline-{}.log",
            uuid::Uuid::new_v4()
        ));
        let server = Server::baseline(&log).await?;
        let base_client = Client::new(&server.url, None, users.len())?;
        let mut base = Recorder::default();
        let mut base_wall = Duration::ZERO;
        let mut base_cpu = Some(Duration::ZERO);
        for _ in 0..2 {
            let barrier = Arc::new(Barrier::new(users.len()));
            let mut set = JoinSet::new();
            for _ in 0..users.len() {
                let (c, barrier) = (base_client.clone(), barrier.clone());
                set.spawn(async move {
                    let mut r = Recorder::default();
                    barrier.wait().await;
                    let body = json!({"body": COMMENT, "anonymous": true});
                    let _ = c
                        .call(
                            &mut r,
                            "baseline",
                            Req {
                                method: Method::POST,
                                path: "/baseline",
                                token: None,
                                body: Some(&body),
                            },
                            StatusCode::OK,
                        )
                        .await;
                    r
                });
            }
            let cpu_from = server.cpu_time();
            let started = Instant::now();
            while let Some(r) = set.join_next().await {
                base.merge(&r.expect("a baseline request does not panic"));
            }
            base_wall += started.elapsed();
            let more = used(cpu_from, server.cpu_time());
            base_cpu = base_cpu.zip(more).map(|(total, more)| total + more);
        }
        server.stop().await;
        let _ = std::fs::remove_file(log);
        let base = Some(Baseline {
            rec: base,
            wall: base_wall,
            server_cpu: base_cpu,
        });
        compare(&mut report, "hot-post comments", &rec, wall, &base);
        compare_cpu(&mut report, "comment", &cpu, rec.all().count(), &base);
    }
    Ok((report, Vec::new()))
}

/// `reads`: on a data set the tool loads first (`--preload-events`, when it starts the server)
/// or the one the server has: 40% feed pages (first and later), 25% post pages, 25% comment
/// pages and 10% searches.
/// What the `reads` scenario reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReadMix {
    /// Feed pages 40%, post pages 25%, comment pages 25%, searches 10%.
    Full,
    /// The same pages without the searches (feed 44%, post 28%, comments 28%).
    Pages,
}

pub async fn reads(
    common: &Common,
    target: &Target,
    preload: u64,
    mix: ReadMix,
) -> Result<Outcome, BenchError> {
    let (running, caught_up) = Running::open(common, target, preload).await?;
    let client = Client::new(&running.url, None, common.connections)?;
    // The pages to read: a few feed pages' cursors and their posts.
    let mut cursors: Vec<Option<String>> = vec![None];
    let mut posts: Vec<String> = Vec::new();
    let mut setup = Recorder::default();
    for _ in 0..20 {
        let mut path = "/posts?limit=50".to_owned();
        if let Some(Some(c)) = cursors.last() {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = client.get(&mut setup, "feed", &path).await?;
        for item in page["items"].as_array().into_iter().flatten() {
            if let Some(id) = item["post_id"].as_str() {
                posts.push(id.to_owned());
            }
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursors.push(Some(c.to_owned())),
            None => break,
        }
    }
    if posts.is_empty() {
        running.close().await;
        return Err(BenchError::Setup(
            "the server has no posts to read: load a data set first (treehole load) or let the tool start the server".into(),
        ));
    }
    let cursors = Arc::new(cursors);
    let posts = Arc::new(posts);
    let tickets = Tickets::new(common.requests);
    let started = Instant::now();
    let mut set = JoinSet::new();
    for _ in 0..common.connections.max(1) {
        let (client, tickets, cursors, posts) = (
            client.clone(),
            tickets.clone(),
            cursors.clone(),
            posts.clone(),
        );
        set.spawn(async move {
            let mut rec = Recorder::default();
            let mut errors = Vec::new();
            while tickets.take().is_some() {
                let (roll, post, cursor, term) = {
                    let mut rng = rand::thread_rng();
                    (
                        match mix {
                            ReadMix::Full => rng.gen_range(0..100),
                            ReadMix::Pages => rng.gen_range(0..90),
                        },
                        posts.choose(&mut rng).cloned().unwrap_or_default(),
                        cursors.choose(&mut rng).cloned().flatten(),
                        *SEARCH_TERMS.choose(&mut rng).unwrap_or(&"the"),
                    )
                };
                let (op, path) = match roll {
                    0..40 => match cursor {
                        Some(c) => ("feed page", format!("/posts?limit=20&cursor={c}")),
                        None => ("feed page", "/posts?limit=20".to_owned()),
                    },
                    40..65 => ("post page", format!("/posts/{post}")),
                    65..90 => ("comments page", format!("/posts/{post}/comments?limit=20")),
                    _ => ("search", format!("/search?q={term}&limit=10")),
                };
                if let Err(e) = client.read(&mut rec, op, &path).await {
                    keep(&mut errors, e);
                }
            }
            (rec, errors)
        });
    }
    let (rec, errors) = join(set).await;
    let wall = started.elapsed();
    running.close().await;
    let mut report = Report::new("reads", common.connections, wall, &rec);
    report.note("posts read from", posts.len());
    report.note(
        "mix",
        match mix {
            ReadMix::Full => "full",
            ReadMix::Pages => "pages",
        },
    );
    if let Some((head, took)) = caught_up {
        report.note("preloaded events", head);
        report.note("projections caught up after start, s", took.as_secs_f64());
        report.note("catch-up rate, events/s", head as f64 / took.as_secs_f64());
    }
    let base = baseline(common, rec.all().count().max(1), None).await?;
    compare(&mut report, "reads", &rec, wall, &base);
    Ok((report, errors))
}

/// `read-your-writes`: each connection has a user and a post of its own; it comments, then
/// reads the post with `?after=<the comment's position>` and checks the comment count. Time
/// to visible is from sending the command to the answer of the read that shows it; the
/// baseline is the same read right after, which needs no waiting.
pub async fn read_your_writes(common: &Common, target: &Target) -> Result<Outcome, BenchError> {
    let (running, _) = Running::open(common, target, 0).await?;
    let client = Client::new(&running.url, running.outbox.clone(), common.connections)?;
    let tag = prefix("ryw");
    let (users, _) =
        register_all(&client, &tag, common.connections.max(1), common.connections).await?;
    let tickets = Tickets::new(common.requests);
    let started = Instant::now();
    let mut set = JoinSet::new();
    for user in users {
        let (client, tickets) = (client.clone(), tickets.clone());
        set.spawn(async move {
            let mut rec = Recorder::default();
            let mut errors = Vec::new();
            let post = match client
                .post(
                    &mut Recorder::default(),
                    "post",
                    &user,
                    "读写一致测试。Read your writes.",
                    true,
                )
                .await
            {
                Ok((id, _)) => id,
                Err(e) => {
                    keep(&mut errors, e);
                    return (rec, errors);
                }
            };
            let mut made = 0i64;
            while tickets.take().is_some() {
                let sent = Instant::now();
                let reply = match client
                    .comment(&mut rec, "comment", &user, &post, COMMENT, made % 2 == 0)
                    .await
                {
                    Ok(v) => v,
                    Err(e) => {
                        keep(&mut errors, e);
                        continue;
                    }
                };
                made += 1;
                let Ok(at) = position(&reply) else { continue };
                let acked = Instant::now();
                let seen = client
                    .get(
                        &mut Recorder::default(),
                        "visible",
                        &format!("/posts/{post}?after={at}"),
                    )
                    .await;
                let visible = Instant::now();
                match seen {
                    Ok(v) if v["comment_count"].as_i64() == Some(made) => {
                        rec.record("time to visible (from send)", visible - sent, true);
                        rec.record("visible after the answer", visible - acked, true);
                    }
                    Ok(v) => {
                        rec.record("time to visible (from send)", visible - sent, false);
                        keep(
                            &mut errors,
                            BenchError::Broken(format!(
                                "after={at} showed {} comments, {made} were acknowledged",
                                v["comment_count"]
                            )),
                        );
                    }
                    Err(e) => {
                        rec.record("time to visible (from send)", visible - sent, false);
                        keep(&mut errors, e);
                    }
                }
                if let Err(e) = client
                    .get(&mut rec, "plain read (baseline)", &format!("/posts/{post}"))
                    .await
                {
                    keep(&mut errors, e);
                }
            }
            (rec, errors)
        });
    }
    let (rec, errors) = join(set).await;
    let wall = started.elapsed();
    running.close().await;
    let mut report = Report::new("read-your-writes", common.connections, wall, &rec);
    let fig = |op: &str| rec.ops.get(op).map(|l| l.figures(wall));
    if let (Some(ttv), Some(visible), Some(plain)) = (
        fig("time to visible (from send)"),
        fig("visible after the answer"),
        fig("plain read (baseline)"),
    ) {
        report.compared.push(Compared::new(
            "time to visible p50",
            ttv.p50_ms,
            "ms",
            "plain read of the post, p50",
            plain.p50_ms,
        ));
        report.compared.push(Compared::new(
            "time to visible p99",
            ttv.p99_ms,
            "ms",
            "plain read of the post, p99",
            plain.p99_ms,
        ));
        report.compared.push(Compared::new(
            "visible after answer p50",
            visible.p50_ms,
            "ms",
            "plain read of the post, p50",
            plain.p50_ms,
        ));
        report.compared.push(Compared::new(
            "visible after answer p99",
            visible.p99_ms,
            "ms",
            "plain read of the post, p99",
            plain.p99_ms,
        ));
    }
    Ok((report, errors))
}

/// When each stream received each notification (sequence number, arrival), per stream.
type Arrivals = Arc<Mutex<Vec<Vec<(u64, Instant)>>>>;

/// `notify`: `listeners` users follow one post and hold `GET /me/notifications/stream` open;
/// `--connections` writers comment on the post (`--requests` comments in all). Each comment's
/// delivery time on a stream is taken from the writer's answer to the event's arrival; the
/// baseline, in the same run, is the time from that answer until a plain read waiting with
/// `?after=` shows the comment.
pub async fn notify(
    common: &Common,
    target: &Target,
    listeners: usize,
) -> Result<Outcome, BenchError> {
    let (running, _) = Running::open(common, target, 0).await?;
    let writers_n = common.connections.max(1);
    let client = Client::new(
        &running.url,
        running.outbox.clone(),
        writers_n + listeners + 1,
    )?;
    let tag = prefix("notify");
    let (mut users, _) =
        register_all(&client, &tag, listeners + writers_n + 1, writers_n.max(16)).await?;
    let author = users
        .pop()
        .ok_or_else(|| BenchError::Setup("no author".into()))?;
    let writers = users.split_off(listeners);
    let (post, _) = client
        .post(
            &mut Recorder::default(),
            "post",
            &author,
            "有人在吗？Anyone up for the library?",
            false,
        )
        .await?;
    // The listeners follow the post, a few at a time.
    let tickets = Tickets::new(listeners as u64);
    let shared = Arc::new(users);
    let mut set = JoinSet::new();
    for _ in 0..16.min(listeners.max(1)) {
        let (client, tickets, users, post) = (
            client.clone(),
            tickets.clone(),
            shared.clone(),
            post.clone(),
        );
        set.spawn(async move {
            let mut errors = Vec::new();
            while let Some(i) = tickets.take() {
                let body = json!({"following": true});
                let req = Req {
                    method: Method::PUT,
                    path: &format!("/posts/{post}/follow"),
                    token: Some(&users[usize::try_from(i).expect("a user's index")].token),
                    body: Some(&body),
                };
                if let Err(e) = client
                    .call(&mut Recorder::default(), "follow", req, StatusCode::OK)
                    .await
                {
                    keep(&mut errors, e);
                }
            }
            (Recorder::default(), errors)
        });
    }
    let (_, errors) = join(set).await;
    if let Some(e) = errors.first() {
        return Err(BenchError::Setup(format!("following: {e}")));
    }
    // Every listener's stream, recording when each notification arrives.
    let arrivals: Arrivals = Arc::new(Mutex::new(vec![Vec::new(); listeners]));
    let mut streams = JoinSet::new();
    for (i, user) in shared.iter().enumerate() {
        let response = client
            .open_stream("/me/notifications/stream", &user.token)
            .await?;
        let arrivals = arrivals.clone();
        streams.spawn(async move {
            let mut response = response;
            let mut buffer = String::new();
            while let Ok(Some(bytes)) = response.chunk().await {
                let now = Instant::now();
                buffer.push_str(&String::from_utf8_lossy(&bytes));
                while let Some(end) = buffer.find('\n') {
                    let line: String = buffer.drain(..=end).collect();
                    if let Some(id) = line.strip_prefix("id:")
                        && let Ok(seq) = id.trim().parse::<u64>()
                    {
                        arrivals.lock().expect("arrivals")[i].push((seq, now));
                    }
                }
            }
        });
    }
    // The measured phase: the writers comment; each answer's time is kept by position.
    let acked: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    let tickets = Tickets::new(common.requests);
    let started = Instant::now();
    let mut set = JoinSet::new();
    for (w, user) in writers.into_iter().enumerate() {
        let (client, tickets, acked, post) =
            (client.clone(), tickets.clone(), acked.clone(), post.clone());
        set.spawn(async move {
            let mut rec = Recorder::default();
            let mut errors = Vec::new();
            let mut n = w;
            while tickets.take().is_some() {
                n += 1;
                let reply = match client
                    .comment(&mut rec, "comment", &user, &post, COMMENT, n % 2 == 0)
                    .await
                {
                    Ok(v) => v,
                    Err(e) => {
                        keep(&mut errors, e);
                        continue;
                    }
                };
                let answered = Instant::now();
                let Ok(at) = position(&reply) else { continue };
                acked.lock().expect("acked").insert(at, answered);
                match client
                    .get(
                        &mut Recorder::default(),
                        "visible",
                        &format!("/posts/{post}?after={at}"),
                    )
                    .await
                {
                    Ok(_) => rec.record(
                        "plain read visible after the answer (baseline)",
                        answered.elapsed(),
                        true,
                    ),
                    Err(e) => keep(&mut errors, e),
                }
            }
            (rec, errors)
        });
    }
    let (mut rec, mut errors) = join(set).await;
    let wall = started.elapsed();
    // Every stream gets every comment but its listener's own (listeners do not comment).
    let expected: BTreeSet<u64> = acked.lock().expect("acked").keys().copied().collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done = arrivals
            .lock()
            .expect("arrivals")
            .iter()
            .all(|a| a.len() >= expected.len());
        if done || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    streams.abort_all();
    let acked = acked.lock().expect("acked").clone();
    let mut missing = 0usize;
    for list in arrivals.lock().expect("arrivals").iter() {
        let got: BTreeSet<u64> = list.iter().map(|(s, _)| *s).collect();
        missing += expected.difference(&got).count();
        for (seq, at) in list {
            if let Some(answered) = acked.get(seq) {
                rec.record(
                    "delivered after the answer",
                    at.saturating_duration_since(*answered),
                    true,
                );
            }
        }
    }
    if missing > 0 {
        keep(
            &mut errors,
            BenchError::Broken(format!(
                "{missing} notifications did not reach their stream within 60 s"
            )),
        );
        rec.record("delivered after the answer", Duration::from_secs(60), false);
    }
    running.close().await;
    let mut report = Report::new("notify", common.connections, wall, &rec);
    let fig = |op: &str| rec.ops.get(op).map(|l| l.figures(wall));
    if let (Some(delivered), Some(plain)) = (
        fig("delivered after the answer"),
        fig("plain read visible after the answer (baseline)"),
    ) {
        report.compared.push(Compared::new(
            format!("delivery to {listeners} streams p50"),
            delivered.p50_ms,
            "ms",
            "plain read visible after the answer, p50",
            plain.p50_ms,
        ));
        report.compared.push(Compared::new(
            format!("delivery to {listeners} streams p99"),
            delivered.p99_ms,
            "ms",
            "plain read visible after the answer, p99",
            plain.p99_ms,
        ));
    }
    Ok((report, errors))
}
