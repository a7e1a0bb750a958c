//! A synthetic forum history, written through the real event enums: what the data loader
//! (`treehole load`), the rebuild and engine benchmarks and the load tool's pre-loaded data sets
//! are made of.
//!
//! One user action at a time: registrations (with their e-mail and username reservations and a
//! session), logins and logouts, posts in Chinese and English (60% anonymous), comments on the
//! newest posts (70% under the post's pseudonyms, given by the Post aggregate's rule: one name
//! per commenter and post, in the scheme's order, 洞主 for the post's author), a few deletions,
//! and tasks: an admin registers models and a worker, users publish tasks, the worker claims
//! them and most succeed, some fail and are retried, a few are cancelled. The seed is fixed, so
//! every run writes the same history up to fresh ids and timestamps' base.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use commands::{EventStore, ExpectedVersion, StoreError, StreamWrite};
use domain::model::{ModelEvent, ModelName, ModelSpec};
use domain::post::{Author, PostEvent};
use domain::pseudonym::PseudonymScheme;
use domain::reservation::{ReservationEvent, email_stream, username_stream};
use domain::session::SessionEvent;
use domain::task::TaskEvent;
use domain::user::UserEvent;
use domain::values::{Email, Username};
use domain::worker::WorkerEvent;
use domain::{
    AuthorToken, CommentId, DomainEvent, ItemHandle, KeyRef, Metadata, NewEvent, Personal, PostId,
    SessionId, StreamId, TaskId, UserId, WorkerId,
};
use serde_json::json;
use sha2::{Digest, Sha256};
use uuid::Uuid;

pub const SENTENCES: &[&str] = &[
    "今天食堂的麻辣香锅又涨价了。",
    "Does anyone know when the library closes during exam week?",
    "期末周压力好大，想找个人聊聊。",
    "The new bike lanes on campus are great, but nobody respects them.",
    "有没有一起去爬山的？周六早上出发。",
    "I finally passed my driving test after three attempts!",
    "宿舍楼下的猫咪生了小猫，太可爱了。",
    "Looking for a study partner for linear algebra, \"seriously\".",
    "实验室的师兄每天都在加班，我有点担心他。",
    "Lost: a blue umbrella near the east gate, reward offered.",
    "这学期的选修课推荐一下？",
    "Why is the Wi-Fi in building 3 always down on Mondays?",
    "刚看完一部电影，结局让我哭了半小时。",
    "Anyone selling a second-hand monitor? 24 inch, cheap.",
    "树洞说一句：谢谢那个帮我捡起书的人。",
    "It's raining again;\nthe whole quad is a lake.",
];
const TITLES: &[&str] = &[
    "求助",
    "Weekend plans",
    "吐槽一下",
    "Lost and found",
    "深夜树洞",
    "Course review",
    "二手转让",
    "Random thought",
];
const TAGS: &[&str] = &[
    "校园", "study", "生活", "food", "情感", "help", "二手", "movies",
];
const GIVEN_NAMES: &[&str] = &[
    "alice",
    "bob",
    "小明",
    "晓红",
    "chen",
    "wei",
    "李雷",
    "韩梅梅",
    "mike",
    "sarah",
    "zhang",
];
/// An argon2id PHC string of the usual length: registrations carry one, projections drop it.
const PASSWORD_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$\
                             q8Hx0Q2mC7sW3y1f0uJ9kq0bO8XGZ5r6mJv7y8n1yZo";
/// Posts that still get comments: the newest ones, as on a real front page.
const ACTIVE_POSTS: usize = 40;

/// splitmix64: a fixed seed, so every run writes the same history (up to fresh ids).
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next_u64() % n as u64).expect("below n, which is a usize")
    }

    /// Random bits as an index: on a 32-bit target the high half is dropped, which keeps them
    /// random.
    #[allow(clippy::cast_possible_truncation)]
    pub fn index(&mut self) -> usize {
        self.next_u64() as usize
    }

    pub fn percent(&mut self, p: u64) -> bool {
        self.next_u64() % 100 < p
    }

    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

struct Account {
    id: UserId,
    username: String,
}

struct Thread {
    id: PostId,
    author: usize,
    anonymous: bool,
    deleted: bool,
    /// Comment id, author (an account index), deleted.
    /// Id, author, deleted, anonymous.
    comments: Vec<(CommentId, usize, bool, bool)>,
    pseudonyms: HashMap<usize, String>,
    /// Who has commented, and whether anonymously: a first in either mode is a new commenter.
    commenters: std::collections::HashSet<(usize, bool)>,
    /// Standing reactions by (item, account): the handle and the value (the post is `None`).
    reactions: HashMap<(Option<CommentId>, usize), (ItemHandle, i8)>,
    /// Likes and dislikes per item.
    tallies: HashMap<Option<CommentId>, (u64, u64)>,
    /// The poll's counts, if the post has one, and who voted.
    poll: Option<(Vec<u64>, std::collections::HashSet<usize>)>,
}

/// Options of the polls a history opens.
const POLL_OPTIONS: &[&str] = &["食堂", "外卖", "自己做", "不吃了", "yes", "no", "maybe"];

/// A forum's life as events, one user action at a time.
pub struct History {
    rng: Rng,
    clock: DateTime<Utc>,
    scheme: PseudonymScheme,
    accounts: Vec<Account>,
    sessions: Vec<(SessionId, usize)>,
    threads: Vec<Thread>,
    tasks: TaskLife,
    keys: KeyPlan,
}

impl Default for History {
    fn default() -> Self {
        Self::fresh()
    }
}

/// The task side: the models, the one worker and the tasks still queued or running.
#[derive(Default)]
struct TaskLife {
    models: Vec<ModelName>,
    worker: Option<WorkerId>,
    /// Task, submitter (an account index), attempts so far, claimed.
    open: Vec<(TaskId, usize, u32, bool)>,
}

/// Events in the order they happened, each with its stream.
pub type Pending = Vec<(StreamId, NewEvent)>;

/// The server secret synthetic reservation streams are keyed with.
pub const SECRET: &[u8] = b"treehole synthetic history";

/// A stand-in for a key handle the write side would make with the user's data key: synthetic
/// people have no secrets, so an unkeyed hash will do (a real store never holds one).
fn handle(prefix: &str, label: &str) -> String {
    format!(
        "{prefix}{}",
        &hex::encode(Sha256::digest(label.as_bytes()))[..32]
    )
}

/// The users to give data keys and the key handles to record before a synthetic batch is
/// appended through a sealing store.
#[derive(Debug, Default)]
pub struct KeyPlan {
    pub users: Vec<UserId>,
    pub handles: Vec<(String, UserId)>,
}

impl History {
    pub fn new() -> Self {
        Self::default()
    }

    fn fresh() -> Self {
        Self {
            rng: Rng(0x7472_6565_686f_6c65),
            clock: DateTime::from_timestamp(1_735_689_600, 0).expect("a valid time"),
            scheme: PseudonymScheme::default(),
            accounts: Vec::new(),
            sessions: Vec::new(),
            threads: Vec::new(),
            tasks: TaskLife::default(),
            keys: KeyPlan::default(),
        }
    }

    /// The keys and handles the events taken since the last call need (see [`KeyPlan`]).
    pub fn take_keys(&mut self) -> KeyPlan {
        std::mem::take(&mut self.keys)
    }

    fn token(&mut self, post: PostId, user: UserId) -> AuthorToken {
        let t = handle("t", &format!("author:{post}:{user}"));
        self.keys.handles.push((t.clone(), user));
        AuthorToken::new(t)
    }

    fn author(&mut self, post: PostId, account: usize, anonymous: bool, name: String) -> Author {
        let user = self.accounts[account].id;
        if anonymous {
            let token = self.token(post, user);
            Author::Anonymous {
                user_id: Personal::new(token.key_ref(), user),
                token,
                pseudonym: name,
            }
        } else {
            Author::Named {
                user_id: user,
                username: Personal::new(KeyRef::user(user), name),
            }
        }
    }

    /// The next `n` events exactly (the last action may be cut short).
    pub fn take(&mut self, n: usize) -> Pending {
        let mut out = Pending::with_capacity(n + 8);
        while out.len() < n {
            self.act(&mut out);
        }
        out.truncate(n);
        out
    }

    /// Appends exactly `events` events, `batch` per `append_many` call; `progress` hears the
    /// count written so far after each call.
    ///
    /// `keys` gets each new user's data key and each key handle before the events that need
    /// them are appended; pass the keys of the sealing store `store` is (`None` for a store
    /// that seals nothing, where personal values stay in their open form).
    pub async fn write(
        &mut self,
        store: &dyn EventStore,
        keys: Option<&commands::Keys>,
        events: u64,
        batch: usize,
        mut progress: impl FnMut(u64),
    ) -> Result<(), StoreError> {
        let mut written = 0u64;
        while written < events {
            let n = usize::try_from((batch as u64).min(events - written)).expect("at most batch");
            let pending = self.take(n);
            let plan = self.take_keys();
            if let Some(keys) = keys {
                prepare(keys, &plan).await?;
            }
            store.append_many(group(pending), None).await?;
            written += n as u64;
            progress(written);
        }
        Ok(())
    }

    /// One user action: mostly comments, then posts, registrations, logins and deletions.
    fn act(&mut self, out: &mut Pending) {
        self.clock += Duration::milliseconds(1 + self.rng.below(20_000) as i64);
        if self.accounts.len() < 20 {
            return self.register(out);
        }
        match self.rng.below(1000) {
            0..10 => self.register(out),
            10..20 => {
                let account = self.rng.below(self.accounts.len());
                self.log_in(account, out);
            }
            20..25 => self.log_out(out),
            25..65 => self.publish(out),
            65..70 => self.delete_comment(out),
            70 => self.delete_post(out),
            71..91 => self.task_step(out),
            91..131 => self.react(out),
            _ => self.comment(out),
        }
    }

    fn emit<E: DomainEvent>(&self, out: &mut Pending, stream: StreamId, event: E, actor: UserId) {
        self.emit_as(out, stream, event, Some(actor));
    }

    /// Emits with `actor` in the metadata; `None` for anonymous acts, as the API records them.
    fn emit_as<E: DomainEvent>(
        &self,
        out: &mut Pending,
        stream: StreamId,
        event: E,
        actor: Option<UserId>,
    ) {
        let metadata = Metadata {
            actor: actor.map(|a| a.to_string()),
            ..Metadata::default()
        };
        out.push((
            stream,
            NewEvent::from_domain(&event, Uuid::now_v7(), self.clock, metadata),
        ));
    }

    fn register(&mut self, out: &mut Pending) {
        let n = self.accounts.len();
        let id = UserId::new(Uuid::now_v7());
        let username = Username::parse(&format!("{}_{n}", GIVEN_NAMES[n % GIVEN_NAMES.len()]))
            .expect("generated usernames are valid");
        let email =
            Email::parse(&format!("user{n}@example.edu.cn")).expect("generated e-mails are valid");
        let key = KeyRef::user(id);
        let registered = UserEvent::UserRegistered {
            user_id: id,
            email: Personal::new(key.clone(), email.as_str().to_owned()),
            username: Personal::new(key.clone(), username.as_str().to_owned()),
            password_hash: Personal::new(key, PASSWORD_HASH.to_owned()),
        };
        self.keys.users.push(id);
        self.emit(out, id.stream(), registered, id);
        for stream in [
            email_stream(SECRET, &email),
            username_stream(SECRET, &username),
        ] {
            let h = handle("r", &format!("reservation:{stream}:{id}"));
            self.keys.handles.push((h.clone(), id));
            let reserved = ReservationEvent::IdentityReserved {
                owner: Personal::new(KeyRef::handle(h), id),
            };
            self.emit(out, stream, reserved, id);
        }
        if n == 0 {
            self.emit(
                out,
                id.stream(),
                UserEvent::AdminGranted { user_id: id },
                id,
            );
        }
        self.accounts.push(Account {
            id,
            username: username.as_str().to_owned(),
        });
        self.log_in(n, out);
    }

    fn log_in(&mut self, account: usize, out: &mut Pending) {
        let session_id = SessionId::new(Uuid::now_v7());
        let user_id = self.accounts[account].id;
        let token_hash = format!(
            "{:016x}{:016x}{:016x}{:016x}",
            self.rng.next_u64(),
            self.rng.next_u64(),
            self.rng.next_u64(),
            self.rng.next_u64()
        );
        let started = SessionEvent::SessionStarted {
            session_id,
            user_id,
            token_hash,
            expires_at: self.clock + Duration::days(30),
            device: None,
        };
        self.emit(out, session_id.stream(), started, user_id);
        self.sessions.push((session_id, account));
    }

    fn log_out(&mut self, out: &mut Pending) {
        if self.sessions.is_empty() {
            return;
        }
        let (session_id, account) = self
            .sessions
            .swap_remove(self.rng.below(self.sessions.len()));
        let user_id = self.accounts[account].id;
        let ended = SessionEvent::SessionEnded {
            session_id,
            user_id,
        };
        self.emit(out, session_id.stream(), ended, user_id);
    }

    fn body(&mut self, sentences: usize) -> String {
        (0..sentences)
            .map(|_| self.rng.pick(SENTENCES))
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn publish(&mut self, out: &mut Pending) {
        let author = self.rng.below(self.accounts.len());
        let anonymous = self.rng.percent(60);
        let post_id = PostId::new(Uuid::now_v7());
        let sentences = 1 + self.rng.below(5);
        let name = if anonymous {
            self.scheme.host_name().to_owned()
        } else {
            self.accounts[author].username.clone()
        };
        let published = PostEvent::PostPublished {
            post_id,
            author: self.author(post_id, author, anonymous, name),
            anonymous,
            title: self
                .rng
                .percent(50)
                .then(|| self.rng.pick(TITLES).to_owned()),
            body: self.body(sentences),
            tags: (0..self.rng.below(3))
                .map(|_| self.rng.pick(TAGS).to_owned())
                .collect(),
        };
        let actor = (!anonymous).then_some(self.accounts[author].id);
        self.emit_as(out, post_id.stream(), published, actor);
        self.threads.push(Thread {
            id: post_id,
            author,
            anonymous,
            deleted: false,
            comments: Vec::new(),
            pseudonyms: HashMap::new(),
            commenters: std::collections::HashSet::new(),
            reactions: HashMap::new(),
            tallies: HashMap::new(),
            poll: None,
        });
        // One post in ten opens a poll.
        if self.rng.percent(10) {
            let n = 2 + self.rng.below(3);
            let first = self.rng.below(POLL_OPTIONS.len() - n + 1);
            let options: Vec<String> = POLL_OPTIONS[first..first + n]
                .iter()
                .map(|o| (*o).to_owned())
                .collect();
            let t = self.threads.len() - 1;
            self.threads[t].poll = Some((vec![0; n], std::collections::HashSet::new()));
            let opened = PostEvent::PollOpened { post_id, options };
            self.emit_as(out, post_id.stream(), opened, actor);
        }
    }

    /// A reaction to a live post or one of its live comments, or, now and then, a vote in its
    /// poll; both recorded unnamed, under a handle per account and item, as the API does.
    fn react(&mut self, out: &mut Pending) {
        let Some(t) = self.active_thread() else {
            return self.publish(out);
        };
        let account = self.rng.below(self.accounts.len());
        let post_id = self.threads[t].id;
        let wants_vote = self.rng.percent(30);
        let (handle_a, handle_b) = (self.rng.next_u64(), self.rng.next_u64());
        let thread = &mut self.threads[t];
        if wants_vote
            && let Some((counts, voters)) = thread.poll.as_mut()
            && voters.insert(account)
        {
            let option = usize::try_from(handle_a % counts.len() as u64).expect("below the count");
            counts[option] += 1;
            let voted = PostEvent::PollVoted {
                post_id,
                voter: ItemHandle::new(format!("w{handle_a:016x}{handle_b:016x}")),
                option,
                counts: counts.clone(),
            };
            return self.emit_as(out, post_id.stream(), voted, None);
        }
        let live: Vec<CommentId> = thread
            .comments
            .iter()
            .filter(|(_, _, deleted, _)| !deleted)
            .map(|(id, _, _, _)| *id)
            .collect();
        let item = (!live.is_empty() && handle_a % 2 == 0).then(|| {
            live[usize::try_from(handle_b % live.len() as u64).expect("below the length")]
        });
        let value = (handle_a % 3) as i8 - 1;
        let (handle, previous) = thread
            .reactions
            .get(&(item, account))
            .cloned()
            .unwrap_or_else(|| {
                let fresh = ItemHandle::new(format!("v{handle_b:016x}{handle_a:016x}"));
                (fresh, 0)
            });
        if previous == value {
            return;
        }
        let tally = thread.tallies.entry(item).or_default();
        match previous {
            1 => tally.0 -= 1,
            -1 => tally.1 -= 1,
            _ => {}
        }
        match value {
            1 => tally.0 += 1,
            -1 => tally.1 += 1,
            _ => {}
        }
        let (likes, dislikes) = *tally;
        thread
            .reactions
            .insert((item, account), (handle.clone(), value));
        let set = PostEvent::ReactionSet {
            post_id,
            comment_id: item,
            reactor: handle,
            value,
            likes,
            dislikes,
        };
        self.emit_as(out, post_id.stream(), set, None);
    }

    /// A live post among the newest ones, if any.
    fn active_thread(&mut self) -> Option<usize> {
        let first = self.threads.len().saturating_sub(ACTIVE_POSTS);
        let live: Vec<usize> = (first..self.threads.len())
            .filter(|&t| !self.threads[t].deleted)
            .collect();
        (!live.is_empty()).then(|| live[self.rng.below(live.len())])
    }

    fn comment(&mut self, out: &mut Pending) {
        let Some(t) = self.active_thread() else {
            return self.publish(out);
        };
        let author = self.rng.below(self.accounts.len());
        let anonymous = self.rng.percent(70);
        let sentences = 1 + self.rng.below(2);
        let body = self.body(sentences);
        let reply = self.rng.percent(30);
        let pick = self.rng.index();
        let thread = &mut self.threads[t];
        // The host marker and pseudonym rule of the Post aggregate, without its reconfiguration
        // corner cases: only the author of an anonymous post commenting anonymously is the host.
        let is_host = anonymous && thread.anonymous && author == thread.author;
        let author_name = match (anonymous, is_host) {
            (false, _) => self.accounts[author].username.clone(),
            (true, true) => self.scheme.host_name().to_owned(),
            (true, false) => {
                let next = thread.pseudonyms.len();
                let scheme = &self.scheme;
                thread
                    .pseudonyms
                    .entry(author)
                    .or_insert_with(|| scheme.name_at(next))
                    .clone()
            }
        };
        let target = (reply && !thread.comments.is_empty())
            .then(|| thread.comments[pick % thread.comments.len()]);
        let reply_to = target.map(|c| c.0);
        // Whom the comment answers: the replied-to author, else the post's.
        let (to, to_anonymous) = target.map_or((thread.author, thread.anonymous), |c| (c.1, c.3));
        let comment_id = CommentId::new(Uuid::now_v7());
        thread.comments.push((comment_id, author, false, anonymous));
        let new_commenter = thread.commenters.insert((author, anonymous));
        let post_id = thread.id;
        let written_by = self.author(post_id, author, anonymous, author_name);
        // As the Post aggregate has it: an anonymous addressee only, under their token.
        let addressee =
            to_anonymous.then(|| self.author(post_id, to, true, String::new()).sealed_id());
        let added = PostEvent::CommentAdded {
            post_id,
            comment_id,
            author: written_by,
            anonymous,
            is_host,
            body,
            reply_to,
            new_commenter,
            addressee,
        };
        let actor = (!anonymous).then_some(self.accounts[author].id);
        self.emit_as(out, post_id.stream(), added, actor);
    }

    /// Its author, or now and then an admin, deletes a comment of an active post.
    fn delete_comment(&mut self, out: &mut Pending) {
        let Some(t) = self.active_thread() else {
            return;
        };
        let by_admin = self.rng.percent(10);
        let pick = self.rng.index();
        let thread = &mut self.threads[t];
        let live: Vec<usize> = (0..thread.comments.len())
            .filter(|&c| !thread.comments[c].2)
            .collect();
        if live.is_empty() {
            return;
        }
        let comment = &mut thread.comments[live[pick % live.len()]];
        comment.2 = true;
        let deleted_by = by_admin.then_some(self.accounts[0].id);
        let deleted = PostEvent::CommentDeleted {
            post_id: thread.id,
            comment_id: comment.0,
            deleted_by,
            by_admin,
        };
        let stream = thread.id.stream();
        self.emit_as(out, stream, deleted, deleted_by);
    }

    fn delete_post(&mut self, out: &mut Pending) {
        let Some(t) = self.active_thread() else {
            return;
        };
        let thread = &mut self.threads[t];
        thread.deleted = true;
        let deleted = PostEvent::PostDeleted {
            post_id: thread.id,
            deleted_by: None,
            by_admin: false,
        };
        let stream = thread.id.stream();
        self.emit_as(out, stream, deleted, None);
    }

    /// The next step of the task side: set up models and the worker, publish, claim, finish.
    fn task_step(&mut self, out: &mut Pending) {
        let admin = self.accounts[0].id;
        if self.tasks.models.is_empty() {
            for (name, kind) in [
                ("sdxl-turbo", "text-to-image"),
                ("qwen-chat", "text-to-text"),
            ] {
                let name = ModelName::parse(name).expect("a valid model name");
                let spec = ModelSpec {
                    kind: kind.to_owned(),
                    input_schema: json!({"type": "object", "required": ["prompt"],
                        "properties": {"prompt": {"type": "string", "maxLength": 2000}}}),
                    max_concurrent: 8,
                };
                let registered = ModelEvent::ModelRegistered {
                    name: name.clone(),
                    spec,
                    enabled: true,
                    by: admin,
                };
                self.emit(out, name.stream(), registered, admin);
                self.tasks.models.push(name);
            }
            let worker_id = WorkerId::new(Uuid::now_v7());
            let registered = WorkerEvent::WorkerRegistered {
                worker_id,
                name: "gpu-box-1".to_owned(),
                models: self.tasks.models.clone(),
                token_hash: format!("{:016x}{:016x}", self.rng.next_u64(), self.rng.next_u64()),
                by: admin,
            };
            self.emit(out, worker_id.stream(), registered, admin);
            self.tasks.worker = Some(worker_id);
            return;
        }
        let worker_id = self.tasks.worker.expect("registered with the models");
        let open = self.tasks.open.len();
        if open < 5 || self.rng.percent(35) {
            let submitter = self.rng.below(self.accounts.len());
            let task_id = TaskId::new(Uuid::now_v7());
            let model = self.tasks.models[self.rng.below(self.tasks.models.len())].clone();
            let prompt = self.rng.pick(SENTENCES).to_owned();
            let published = TaskEvent::TaskPublished {
                task_id,
                submitter_id: self.accounts[submitter].id,
                model,
                input: json!({"prompt": prompt}),
                webhook_url: None,
                priority: i32::try_from(self.rng.below(3)).expect("below 3"),
                max_attempts: 3,
            };
            self.emit(
                out,
                task_id.stream(),
                published,
                self.accounts[submitter].id,
            );
            self.tasks.open.push((task_id, submitter, 0, false));
            return;
        }
        let i = self.rng.below(open);
        let (task_id, submitter, attempts, claimed) = self.tasks.open[i];
        let submitter_id = self.accounts[submitter].id;
        if !claimed {
            if attempts == 0 && self.rng.percent(4) {
                let cancelled = TaskEvent::TaskCancelled {
                    task_id,
                    by: submitter_id,
                };
                self.emit(out, task_id.stream(), cancelled, submitter_id);
                self.tasks.open.swap_remove(i);
                return;
            }
            let claimed = TaskEvent::TaskClaimed {
                task_id,
                worker_id,
                attempt: attempts + 1,
                lease_until: self.clock + Duration::seconds(60),
            };
            self.emit(out, task_id.stream(), claimed, submitter_id);
            self.tasks.open[i] = (task_id, submitter, attempts + 1, true);
            return;
        }
        if self.rng.percent(85) {
            let succeeded = TaskEvent::TaskSucceeded {
                task_id,
                worker_id,
                attempt: attempts,
                result: json!({"url": format!("https://cdn.example.edu.cn/{task_id}.png")}),
            };
            self.emit(out, task_id.stream(), succeeded, submitter_id);
            self.tasks.open.swap_remove(i);
            return;
        }
        let failed = TaskEvent::TaskAttemptFailed {
            task_id,
            worker_id,
            attempt: attempts,
            error: "CUDA out of memory".to_owned(),
            retryable: true,
            lease_expired: false,
        };
        self.emit(out, task_id.stream(), failed, submitter_id);
        if attempts < 3 {
            let requeued = TaskEvent::TaskRequeued { task_id, attempts };
            self.emit(out, task_id.stream(), requeued, submitter_id);
            self.tasks.open[i] = (task_id, submitter, attempts, false);
        } else {
            let failed = TaskEvent::TaskFailed {
                task_id,
                attempts,
                reason: "gave up after 3 attempts".to_owned(),
            };
            self.emit(out, task_id.stream(), failed, submitter_id);
            self.tasks.open.swap_remove(i);
        }
    }
}

/// One write per stream, in the order streams first appear (so no event lands before one it
/// depends on), for one `append_many` call.
pub fn group(batch: Pending) -> Vec<StreamWrite> {
    let mut writes: Vec<StreamWrite> = Vec::new();
    let mut index: HashMap<StreamId, usize> = HashMap::new();
    for (stream, event) in batch {
        let i = *index.entry(stream.clone()).or_insert_with(|| {
            writes.push(StreamWrite {
                stream,
                expected: ExpectedVersion::Any,
                events: Vec::new(),
            });
            writes.len() - 1
        });
        writes[i].events.push(event);
    }
    writes
}

/// Gives the planned users their data keys and records the planned handles.
pub async fn prepare(keys: &commands::Keys, plan: &KeyPlan) -> Result<(), StoreError> {
    let failed = |e: commands::KeyError| StoreError::Unavailable(e.to_string());
    keys.create_many(&plan.users).await.map_err(failed)?;
    let handles: Vec<(String, UserId, String)> = plan
        .handles
        .iter()
        .map(|(h, u)| (h.clone(), *u, "synthetic".to_owned()))
        .collect();
    keys.store().put_handles(&handles).await.map_err(failed)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    #[test]
    fn a_history_has_every_kind_of_action_and_keeps_the_pseudonym_rule() {
        let events = History::new().take(20_000);
        assert_eq!(events.len(), 20_000);
        let types: BTreeSet<&str> = events.iter().map(|(_, e)| e.event_type.as_str()).collect();
        for wanted in [
            "UserRegistered",
            "SessionStarted",
            "SessionEnded",
            "PostPublished",
            "CommentAdded",
            "CommentDeleted",
            "PostDeleted",
            "ModelRegistered",
            "WorkerRegistered",
            "TaskPublished",
            "TaskClaimed",
            "TaskSucceeded",
            "TaskAttemptFailed",
            "TaskRequeued",
            "ReactionSet",
            "PollOpened",
            "PollVoted",
        ] {
            assert!(types.contains(wanted), "no {wanted} in {types:?}");
        }
        // Per post: one name per anonymous commenter, never one name for two commenters.
        let mut names: BTreeMap<(String, String), String> = BTreeMap::new();
        let mut owners: BTreeMap<(String, String), String> = BTreeMap::new();
        for (stream, event) in &events {
            if event.event_type != "CommentAdded" || event.data["anonymous"] != true {
                continue;
            }
            // Open personal values (this history is not sealed): the token is the author.
            let anonymous = &event.data["author"]["anonymous"];
            let author = anonymous["user_id"]["$personal"]["value"]
                .as_str()
                .expect("an author")
                .to_owned();
            assert!(
                anonymous["token"]
                    .as_str()
                    .is_some_and(|t| !t.contains(&author))
            );
            let name = anonymous["pseudonym"].as_str().expect("a name").to_owned();
            let post = stream.to_string();
            let kept = names
                .entry((post.clone(), author.clone()))
                .or_insert(name.clone());
            assert_eq!(*kept, name, "a commenter changed name under {post}");
            let owner = owners
                .entry((post.clone(), name.clone()))
                .or_insert(author.clone());
            assert_eq!(*owner, author, "{name} names two commenters under {post}");
        }
        assert!(
            names.len() > 1_000,
            "few anonymous commenters: {}",
            names.len()
        );
    }

    #[test]
    fn grouping_keeps_each_stream_s_order_and_every_event() {
        let events = History::new().take(3_000);
        let writes = group(events.clone());
        assert_eq!(
            writes.iter().map(|w| w.events.len()).sum::<usize>(),
            events.len()
        );
        for write in &writes {
            let expected: Vec<_> = events
                .iter()
                .filter(|(s, _)| *s == write.stream)
                .map(|(_, e)| e.event_id)
                .collect();
            let got: Vec<_> = write.events.iter().map(|e| e.event_id).collect();
            assert_eq!(got, expected);
        }
    }
}
