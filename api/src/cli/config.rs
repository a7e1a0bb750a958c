//! Configuration in one place: typed, layered (defaults < TOML file < `TREEHOLE_*` environment
//! < command-line flags) by figment.
//!
//! The keys are the fields of [`Settings`] (`kafka.brokers`), nothing else: the list of them,
//! and the shape of each value, are read off the serialized defaults ([`keys`]). Each key is
//! also an environment variable, `TREEHOLE_` and its path in capitals with `_` for `.`
//! (`TREEHOLE_KAFKA_BROKERS`); a few sections keep an older spelling beside it
//! ([`OLDER_SPELLINGS`]: `TREEHOLE_RATE_LIMIT_*`, `TREEHOLE_MEILI_*`, ...). Other `TREEHOLE_*`
//! variables (`TREEHOLE_CONFIG`, the tests' and the worker's) are not settings and are left
//! alone. A variable or a flag is text: a list is written `1,3,7,30`, a table `k=v,k=v`, and
//! the rest is converted to the field's type when the settings are extracted (`30`, `off`).
//!
//! Secrets (keys, passwords, URLs that may carry a password) are [`SecretString`]s: their
//! `Debug` is `[REDACTED]`, so the settings can be printed whole, and they never serialize.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use commands::PasswordPolicy;
use domain::pseudonym::{InvalidScheme, PseudonymScheme};
use figment::providers::{Format, Serialized, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Address the HTTP server listens on.
    pub listen: SocketAddr,
    /// Directory of the embedded databases, the outbox and the secret key.
    pub data: PathBuf,
    /// `postgres://...`: keep the event log and read models in PostgreSQL instead of `data`.
    #[serde(serialize_with = "unset")]
    pub database_url: Option<SecretString>,
    /// The server key (hex) for verification-code hashes; default: `<data>/secret.key`,
    /// created on first start. Replicas that share a database must share it.
    #[serde(serialize_with = "unset")]
    pub secret: Option<SecretString>,
    /// The key (hex, at least 16 bytes) of the pseudonymous ids in `treehole events export`;
    /// default: derived from the server key, so one deployment's exports join.
    #[serde(serialize_with = "unset")]
    pub export_key: Option<SecretString>,
    /// Where the users' data keys are (crypto-shredding), when not beside this process's log:
    /// a `postgres://` URL, or the path of the embedded `events.db`. For workers that project
    /// from the Kafka topic into read models of their own; they need the `secret` too.
    #[serde(serialize_with = "unset")]
    pub key_store: Option<SecretString>,
    pub rate_limits: RateLimits,
    pub mail: MailSettings,
    pub pseudonyms: PseudonymSettings,
    pub password: PasswordSettings,
    /// How long a login stays valid (`TREEHOLE_SESSION_TTL_HOURS`; default 31 days).
    pub session_ttl_hours: u32,
    pub sessions: SessionSettings,
    /// How long a query with `?after=` waits for the read models at most.
    pub consistency_timeout_ms: u64,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    pub http: HttpTimeouts,
    /// `text` or `json` log lines.
    pub log_format: LogFormat,
    /// Apply pending PostgreSQL migrations when starting (else refuse to start with them
    /// pending, and leave them to `treehole migrate`).
    pub migrate_on_start: bool,
    /// Projections `serve` runs in-process: `all`, `none` (workers run them: `treehole
    /// project`), or a list such as `users,feed`.
    pub projectors: String,
    pub kafka: KafkaConfig,
    pub search: SearchConfig,
    pub tasks: TaskConfig,
    pub webhooks: WebhookConfig,
    /// How `GET /posts/hot` ranks posts (see [`projections::feed::HotFormula`]); applied at
    /// query time, so a change needs no rebuild.
    pub hot: projections::feed::HotFormula,
    pub moderation: ModerationSettings,
}

/// Community weight and the sanction ladder (treehollow v3's defaults).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModerationSettings {
    /// What one report weighs (`TREEHOLE_MODERATION_REPORT_WEIGHT`).
    pub report_weight: u64,
    /// The total weight that removes an item and sanctions its author
    /// (`TREEHOLE_MODERATION_REMOVE_AT`).
    pub remove_at: u64,
    /// Reports with one reason that fold an item (`TREEHOLE_MODERATION_FOLD_AT`).
    pub fold_at: u64,
    /// The ladder of sanction lengths in days; past its end a sanction is permanent
    /// (`TREEHOLE_MODERATION_SANCTION_DAYS=1,3,7,30`).
    pub sanction_days: Vec<u32>,
    /// How often removals whose authors are still due a sanction are looked for: those the
    /// removing request could not sanction (`TREEHOLE_MODERATION_SWEEP_INTERVAL_MS`).
    pub sweep_interval_ms: u64,
}

impl Default for ModerationSettings {
    fn default() -> Self {
        Self {
            report_weight: 10,
            remove_at: 100,
            fold_at: 2,
            sanction_days: vec![1, 3, 7, 30],
            sweep_interval_ms: 10_000,
        }
    }
}

impl ModerationSettings {
    pub fn thresholds(&self) -> domain::moderation::Thresholds {
        domain::moderation::Thresholds {
            weight: self.report_weight.max(1),
            remove_at: self.remove_at.max(1),
            fold_at: self.fold_at.max(1),
        }
    }

    pub fn policy(&self) -> domain::sanction::SanctionPolicy {
        domain::sanction::SanctionPolicy {
            ladder: self
                .sanction_days
                .iter()
                .map(|d| chrono::Duration::days(i64::from(*d)))
                .collect(),
        }
    }
}

/// Per-device sessions: how many one user may hold, and how their last-seen days are recorded.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionSettings {
    /// Live sessions one user may hold at once; a login beyond it ends their oldest
    /// (`TREEHOLE_SESSIONS_MAX_PER_USER`, at least 1).
    pub max_per_user: u32,
    /// How often this process records the days its sessions were seen on
    /// (`TREEHOLE_SESSIONS_SEEN_FLUSH_SECS`, at least 1). The record is made apart from the
    /// requests that saw them, so the log does not place it beside what they wrote; its time
    /// tells when a session was first used on a day only to within this interval, so a longer
    /// one tells less (and `last_seen` lags more).
    pub seen_flush_secs: u64,
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self {
            max_per_user: 6,
            seen_flush_secs: 3600,
        }
    }
}

/// How long a client may take to send a request. Each slow or idle client holds a connection
/// (a socket and a task), so without these a few thousand of them exhaust the server.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpTimeouts {
    /// Time for a request's head (request line and headers), counted from the moment the
    /// connection starts waiting for it: when it opens, or when the previous answer on it has
    /// been sent. So it is also how long an idle keep-alive connection stays open. Past it the
    /// connection is closed without an answer (`TREEHOLE_HTTP_HEADER_TIMEOUT_MS`).
    pub header_timeout_ms: u64,
    /// Time for a request's body, counted from the end of its head; a body still arriving then
    /// is answered 408 and the connection closed (`TREEHOLE_HTTP_BODY_TIMEOUT_MS`).
    pub body_timeout_ms: u64,
}

/// The default of [`HttpTimeouts::header_timeout_ms`]: also how long an idle keep-alive
/// connection stays open.
pub const DEFAULT_HEADER_TIMEOUT_MS: u64 = 10_000;

/// How long the HTTP clients shipped with the product (the load tool, the reference worker)
/// keep a pooled connection idle: half the server's default idle limit, so that a request never
/// goes out on a connection the server is closing for idleness.
pub const CLIENT_IDLE: std::time::Duration =
    std::time::Duration::from_millis(DEFAULT_HEADER_TIMEOUT_MS / 2);

impl Default for HttpTimeouts {
    fn default() -> Self {
        Self {
            header_timeout_ms: DEFAULT_HEADER_TIMEOUT_MS,
            body_timeout_ms: 30_000,
        }
    }
}

impl HttpTimeouts {
    pub fn header(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.header_timeout_ms)
    }

    pub fn body(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.body_timeout_ms)
    }
}

/// Task dispatch: attempts, input size and leases.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TaskConfig {
    /// Claims a task may use before it fails for good (`TREEHOLE_TASK_MAX_ATTEMPTS`).
    pub max_attempts: u32,
    /// Largest task input, as compact JSON.
    pub max_input_bytes: usize,
    /// Lease of a claim when the worker asks for none; workers may ask for 1 s to `max_lease_secs`.
    pub default_lease_secs: u32,
    pub max_lease_secs: u32,
    /// How often `serve` looks for leases that ran out (`TREEHOLE_TASK_REAP_INTERVAL_MS`).
    pub reap_interval_ms: u64,
}

impl TaskConfig {
    /// The limits the Task aggregate decides with.
    pub fn services(&self) -> domain::task::TaskServices {
        domain::task::TaskServices {
            max_attempts: self.max_attempts,
            max_input_bytes: self.max_input_bytes,
        }
    }
}

impl Default for TaskConfig {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            max_input_bytes: 64 * 1024,
            default_lease_secs: 60,
            max_lease_secs: 3600,
            reap_interval_ms: 1000,
        }
    }
}

/// Webhook delivery: retries with exponential backoff, and the SSRF guard.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    /// Whether this `serve` delivers webhooks (`TREEHOLE_WEBHOOKS_DELIVER=off` pauses outgoing
    /// calls; owed webhooks wait in the tasks model until a process delivers again).
    pub deliver: bool,
    /// Let webhooks reach loopback, private and link-local addresses
    /// (`TREEHOLE_WEBHOOKS_ALLOW_INTERNAL`). Off: such URLs are refused at publication and
    /// again at delivery.
    pub allow_internal: bool,
    /// Deliveries tried before a webhook is abandoned.
    pub max_attempts: u32,
    /// Wait before the first retry; each further retry waits twice as long, up to
    /// `max_backoff_ms`.
    pub backoff_ms: u64,
    pub max_backoff_ms: u64,
    /// Per-delivery timeout (connect and response).
    pub timeout_ms: u64,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            deliver: true,
            allow_internal: false,
            max_attempts: 8,
            backoff_ms: 2_000,
            max_backoff_ms: 10 * 60 * 1000,
            timeout_ms: 10_000,
        }
    }
}

/// The search engine: Meilisearch when `meili_url` is set, else the embedded engine in
/// `<data>/search`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SearchConfig {
    /// `TREEHOLE_MEILI_URL`, e.g. `http://meilisearch:7700`.
    pub meili_url: Option<String>,
    /// `TREEHOLE_MEILI_KEY`: the master key or an API key allowed to manage indexes.
    #[serde(serialize_with = "unset")]
    pub meili_key: Option<SecretString>,
    /// `TREEHOLE_MEILI_INDEX`: the live index (a rebuild uses `<index>_build` beside it).
    pub meili_index: String,
}

impl Default for SearchConfig {
    fn default() -> Self {
        Self {
            meili_url: None,
            meili_key: None,
            meili_index: "treehole_posts".into(),
        }
    }
}

/// The Kafka event log (issue: relay, Kafka-fed projectors, analysts' tail). Off unless
/// `brokers` is set.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// `host:port[,host:port]` (`TREEHOLE_KAFKA_BROKERS`, `--kafka-brokers`).
    pub brokers: Option<String>,
    pub topic: String,
    /// Partitions when the relay creates the topic. A Kafka-fed projector needs all of them,
    /// so more than one partition only helps other consumers (analysts); with one, extra
    /// workers of a projection are hot standbys.
    pub partitions: i32,
    pub replication_factor: i32,
    /// Consumer group of a Kafka-fed projector: `<group_prefix><projection>`.
    pub group_prefix: String,
    /// Whether `serve` runs the relay in-process when `brokers` is set (turn off when a
    /// separate `treehole relay` runs).
    pub relay: bool,
    /// librdkafka options passed through (`TREEHOLE_KAFKA_OPTIONS="k=v,k=v"` or a TOML table).
    pub options: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: None,
            topic: "treehole.events".into(),
            partitions: 1,
            replication_factor: 1,
            group_prefix: "treehole.projector.".into(),
            relay: true,
            options: BTreeMap::new(),
        }
    }
}

impl KafkaConfig {
    /// The client settings, if Kafka is configured.
    pub fn settings(&self) -> Option<infra::kafka::KafkaSettings> {
        let brokers = self.brokers.as_ref()?;
        let mut s = infra::kafka::KafkaSettings::new(brokers.clone(), self.topic.clone());
        s.partitions = self.partitions;
        s.replication_factor = self.replication_factor;
        s.group_prefix = self.group_prefix.clone();
        s.options = self.options.clone();
        Some(s)
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".parse().expect("valid address"),
            data: PathBuf::from("data"),
            database_url: None,
            secret: None,
            export_key: None,
            key_store: None,
            rate_limits: RateLimits::default(),
            mail: MailSettings::default(),
            pseudonyms: PseudonymSettings::default(),
            password: PasswordSettings::default(),
            session_ttl_hours: 24 * 31,
            sessions: SessionSettings::default(),
            consistency_timeout_ms: 5_000,
            max_body_bytes: 128 * 1024,
            http: HttpTimeouts::default(),
            log_format: LogFormat::Text,
            projectors: "all".into(),
            migrate_on_start: true,
            kafka: KafkaConfig::default(),
            search: SearchConfig::default(),
            tasks: TaskConfig::default(),
            webhooks: WebhookConfig::default(),
            hot: projections::feed::HotFormula::default(),
            moderation: ModerationSettings::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Every rate limit; `enabled = false` (`TREEHOLE_RATE_LIMITS=off`) turns them all off.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimits {
    pub enabled: bool,
    pub codes_per_email_per_hour: u32,
    pub codes_per_ip_per_hour: u32,
    pub registrations_per_ip_per_hour: u32,
    pub logins_per_ip_per_minute: u32,
    /// Reactions set by one user, to anything, per minute.
    pub reactions_per_user_per_minute: u32,
    /// Poll votes cast by one user, in any polls, per minute.
    pub votes_per_user_per_minute: u32,
    /// Follow and unfollow requests by one user, per minute.
    pub follows_per_user_per_minute: u32,
    /// Notification streams (`GET /me/notifications/stream`) one user may hold open at once,
    /// in this process.
    pub streams_per_user: u32,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            enabled: true,
            codes_per_email_per_hour: 5,
            codes_per_ip_per_hour: 30,
            registrations_per_ip_per_hour: 30,
            logins_per_ip_per_minute: 30,
            reactions_per_user_per_minute: 60,
            votes_per_user_per_minute: 30,
            follows_per_user_per_minute: 30,
            streams_per_user: 5,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MailSettings {
    pub from: String,
    /// lettre SMTP URL (`smtps://host:465`, `smtp://host:587?tls=required`); unset = outbox.
    pub smtp_url: Option<String>,
    pub smtp_username: Option<String>,
    #[serde(serialize_with = "unset")]
    pub smtp_password: Option<SecretString>,
}

impl Default for MailSettings {
    fn default() -> Self {
        Self {
            from: "treehole <no-reply@treehole.local>".into(),
            smtp_url: None,
            smtp_username: None,
            smtp_password: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PseudonymSettings {
    pub host_name: String,
    pub names: Vec<String>,
    pub adjectives: Vec<String>,
}

impl Default for PseudonymSettings {
    fn default() -> Self {
        let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect();
        Self {
            host_name: domain::pseudonym::DEFAULT_HOST_NAME.into(),
            names: words(&domain::pseudonym::DEFAULT_NAMES),
            adjectives: words(&domain::pseudonym::DEFAULT_ADJECTIVES),
        }
    }
}

impl PseudonymSettings {
    pub fn scheme(&self) -> Result<PseudonymScheme, InvalidScheme> {
        PseudonymScheme::new(
            self.host_name.clone(),
            self.names.clone(),
            self.adjectives.clone(),
        )
    }
}

/// argon2id costs; lower them only for tests.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PasswordSettings {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for PasswordSettings {
    fn default() -> Self {
        let p = PasswordPolicy::default();
        Self {
            memory_kib: p.memory_kib,
            iterations: p.iterations,
            parallelism: p.parallelism,
        }
    }
}

impl PasswordSettings {
    pub fn policy(&self) -> PasswordPolicy {
        PasswordPolicy {
            memory_kib: self.memory_kib,
            iterations: self.iterations,
            parallelism: self.parallelism,
        }
    }
}

/// Secrets never leave through serde: they serialize as unset, so the defaults still name
/// their keys (and [`keys`] lists them) while nothing can write their values out.
fn unset<S: serde::Serializer>(_: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_none()
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl From<figment::Error> for ConfigError {
    fn from(e: figment::Error) -> Self {
        Self::Invalid(e.to_string())
    }
}

/// Builds the settings from an optional TOML file, the environment and flag overrides
/// (`(key path, value)` pairs such as `("listen", "0.0.0.0:8080")`).
pub fn load(
    file: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
    flags: &[(&str, String)],
) -> Result<Settings, ConfigError> {
    let mut layers = Figment::from(Serialized::defaults(Settings::default()));
    if let Some(path) = file {
        // figment reads a missing file as an empty one; a file named but absent is a mistake.
        std::fs::File::open(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        layers = layers.merge(Toml::file_exact(path));
    }
    let settings: Settings = layers
        .merge(Layer::environment(env)?)
        .merge(Layer::flags(flags))
        // Lossy: the text of a variable or a flag becomes the number or boolean its field is.
        .extract_lossy()?;
    settings.check()?;
    Ok(settings)
}

impl Settings {
    /// What the types alone do not say.
    fn check(&self) -> Result<(), ConfigError> {
        self.pseudonyms
            .scheme()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        crate::background::projector::Selection::parse(&self.projectors)
            .map_err(|e| ConfigError::Invalid(format!("projectors: {e}")))?;
        if self.sessions.max_per_user == 0 || self.sessions.seen_flush_secs == 0 {
            return Err(ConfigError::Invalid(
                "sessions: max_per_user and seen_flush_secs must be at least 1".into(),
            ));
        }
        if self.session_ttl_hours == 0 {
            return Err(ConfigError::Invalid(
                "session_ttl_hours must be at least 1".into(),
            ));
        }
        if self.http.header_timeout_ms == 0 || self.http.body_timeout_ms == 0 {
            return Err(ConfigError::Invalid(
                "http: header_timeout_ms and body_timeout_ms must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// Every key (`kafka.brokers`) with its default, read off the serialized defaults: a key is a
/// leaf of that tree, and so is an empty table (a map-valued key such as `kafka.options`,
/// whose entries are the user's, not ours).
pub fn keys() -> Vec<(String, Value)> {
    fn walk(path: &str, value: Value, keys: &mut Vec<(String, Value)>) {
        match value {
            Value::Dict(_, dict) if !dict.is_empty() => {
                for (name, value) in dict {
                    let path = if path.is_empty() {
                        name
                    } else {
                        format!("{path}.{name}")
                    };
                    walk(&path, value, keys);
                }
            }
            leaf => keys.push((path.to_owned(), leaf)),
        }
    }
    // Serializing plain data of our own (strings, numbers, lists, maps with string keys)
    // cannot fail.
    let defaults = Value::serialize(Settings::default()).expect("the defaults serialize");
    let mut keys = Vec::new();
    walk("", defaults, &mut keys);
    keys
}

/// Names older than the rule that derives a variable from its key, still read beside the
/// derived one: `(how a derived name starts, how the older name starts instead)`, after the
/// `TREEHOLE_` prefix.
pub const OLDER_SPELLINGS: &[(&str, &str)] = &[
    ("RATE_LIMITS_ENABLED", "RATE_LIMITS"),
    ("RATE_LIMITS_", "RATE_LIMIT_"),
    ("PSEUDONYMS_HOST_NAME", "HOST_NAME"),
    ("MAIL_SMTP_", "SMTP_"),
    ("SEARCH_MEILI_", "MEILI_"),
    ("TASKS_", "TASK_"),
    ("WEBHOOKS_", "WEBHOOK_"),
];

/// An environment variable that sets a key.
#[derive(Debug, Clone)]
pub struct Variable {
    pub name: String,
    pub key: String,
    default: Value,
}

/// Every variable the settings read: each key's derived name, then its older spellings.
pub fn variables() -> Vec<Variable> {
    let mut variables = Vec::new();
    for (key, default) in keys() {
        let derived = key.replace('.', "_").to_ascii_uppercase();
        let older = OLDER_SPELLINGS
            .iter()
            .filter_map(|(new, old)| derived.strip_prefix(new).map(|rest| format!("{old}{rest}")));
        for name in std::iter::once(derived.clone()).chain(older) {
            variables.push(Variable {
                name: format!("TREEHOLE_{name}"),
                key: key.clone(),
                default: default.clone(),
            });
        }
    }
    variables
}

/// Values given as text, by the environment or the command line, as one figment layer whose
/// errors name what the user wrote (`TREEHOLE_SESSIONS_MAX_PER_USER`).
struct Layer {
    name: &'static str,
    values: Vec<Given>,
}

/// One value of a [`Layer`].
struct Given {
    /// What the user wrote to set it: a variable's name, or the key itself.
    by: String,
    key: String,
    value: Value,
}

impl Layer {
    fn environment(env: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut values: Vec<Given> = Vec::new();
        for variable in variables() {
            // An empty variable counts as unset, as compose files write `VAR: ${VAR:-}`.
            let Some(raw) = env(&variable.name).filter(|v| !v.is_empty()) else {
                continue;
            };
            if let Some(other) = values.iter().find(|given| given.key == variable.key) {
                return Err(ConfigError::Invalid(format!(
                    "{} and {} both set {}; keep one",
                    other.by, variable.name, variable.key
                )));
            }
            values.push(Given {
                value: shaped(&variable.default, &raw),
                by: variable.name,
                key: variable.key,
            });
        }
        Ok(Self {
            name: "the environment",
            values,
        })
    }

    fn flags(flags: &[(&str, String)]) -> Self {
        let defaults: BTreeMap<String, Value> = keys().into_iter().collect();
        let values = flags
            .iter()
            .map(|(key, raw)| {
                let value = match defaults.get(*key) {
                    Some(default) => shaped(default, raw),
                    None => raw.as_str().into(),
                };
                Given {
                    by: (*key).to_owned(),
                    key: (*key).to_owned(),
                    value,
                }
            })
            .collect();
        Self {
            name: "the command line",
            values,
        }
    }
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        let setters: BTreeMap<String, String> = self
            .values
            .iter()
            .map(|given| (given.key.clone(), given.by.clone()))
            .collect();
        Metadata::named(self.name).interpolater(move |_, path: &[&str]| {
            let key = path.join(".");
            // The error may be inside the value (a list's element): name what set the value.
            let setter = (1..=path.len())
                .rev()
                .find_map(|n| setters.get(&path[..n].join(".")));
            match setter {
                Some(setter) if *setter != key => format!("{setter} ({key})"),
                _ => key,
            }
        })
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut dict = Dict::new();
        for given in &self.values {
            insert(&mut dict, &given.key, given.value.clone());
        }
        Ok(Profile::Default.collect(dict))
    }
}

/// Puts `value` at `key`, a dotted path, in `dict`. (A nested figment would do it, but its
/// values would carry its tags, and errors would not find this layer's names.)
fn insert(dict: &mut Dict, key: &str, value: Value) {
    match key.split_once('.') {
        None => {
            dict.insert(key.to_owned(), value);
        }
        Some((section, rest)) => {
            let entry = dict
                .entry(section.to_owned())
                .or_insert_with(|| Dict::new().into());
            // Keys are leaves, so a section is never a value.
            if let Value::Dict(_, section) = entry {
                insert(section, rest, value);
            }
        }
    }
}

/// The text of a variable or flag, shaped like the key's default: a list is `a,b,c`, a table
/// `k=v,k=v` (librdkafka's option names and values hold no commas); anything else stays text
/// until extraction converts it to the field's type.
fn shaped(default: &Value, raw: &str) -> Value {
    let items = || {
        raw.split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
    };
    match default {
        Value::Array(..) => items().map(Value::from).collect::<Vec<_>>().into(),
        Value::Dict(..) => items()
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (k.trim().to_owned(), Value::from(v.trim()))
            })
            .collect::<Dict>()
            .into(),
        _ => raw.into(),
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn toml_file(dir: &tempfile::TempDir, text: &str) -> PathBuf {
        let file = dir.path().join("treehole.toml");
        std::fs::write(&file, text).unwrap();
        file
    }

    /// The configuration section of the README: its table's rows.
    fn readme_rows() -> Vec<&'static str> {
        let readme = include_str!("../../../README.md");
        let start = readme
            .find("\n## Configuration\n")
            .expect("a Configuration section");
        let section = &readme[start + 1..];
        let end = section[3..].find("\n## ").map_or(section.len(), |i| i + 3);
        section[..end]
            .lines()
            .filter(|l| l.starts_with("| `"))
            .collect()
    }

    fn variable_names(text: &str) -> Vec<String> {
        let mut names = Vec::new();
        let mut rest = text;
        while let Some(i) = rest.find("TREEHOLE_") {
            let name: String = rest[i..]
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            rest = &rest[i + name.len()..];
            if name != "TREEHOLE_" {
                names.push(name);
            }
        }
        names
    }

    /// Every key the README's table names is a key of the settings, and every `TREEHOLE_*`
    /// variable it or this file's documentation promises is read (`TREEHOLE_WEBHOOKS_DELIVER`
    /// once was promised and silently ignored).
    #[test]
    fn every_documented_key_and_variable_is_read() {
        let keys: Vec<String> = keys().into_iter().map(|(key, _)| key).collect();
        let rows = readme_rows();
        assert!(rows.len() > 40, "{rows:?}");
        for row in &rows {
            let documented = row.split('`').nth(1).expect("a key in backticks");
            assert!(keys.iter().any(|k| k == documented), "no key {documented}");
        }
        let here = include_str!("config.rs")
            .lines()
            .filter(|l| l.trim_start().starts_with("///"));
        let mut promised: std::collections::BTreeSet<String> = rows
            .iter()
            .copied()
            .chain(here)
            .flat_map(variable_names)
            .collect();
        // Read by the command line itself (clap), not by the settings.
        promised.remove("TREEHOLE_CONFIG");
        assert!(promised.len() > 30, "{promised:?}");
        assert!(promised.contains("TREEHOLE_WEBHOOKS_DELIVER"));
        let read: Vec<String> = variables().into_iter().map(|v| v.name).collect();
        let missing: Vec<&String> = promised.iter().filter(|v| !read.contains(v)).collect();
        assert!(missing.is_empty(), "documented but never read: {missing:?}");
    }

    #[test]
    fn the_keys_are_the_fields_and_each_variable_names_one() {
        let keys: Vec<String> = keys().into_iter().map(|(key, _)| key).collect();
        for key in [
            "listen",
            "database_url",
            "secret",
            "mail.smtp_password",
            "search.meili_key",
            "kafka.options",
            "moderation.sanction_days",
            "hot.window",
            "webhooks.deliver",
        ] {
            assert!(keys.iter().any(|k| k == key), "{key} in {keys:?}");
        }
        let mut names = std::collections::BTreeMap::new();
        for v in variables() {
            if let Some(other) = names.insert(v.name.clone(), v.key.clone()) {
                panic!("{} names both {other} and {}", v.name, v.key);
            }
        }
        assert_eq!(
            names["TREEHOLE_KAFKA_REPLICATION_FACTOR"],
            "kafka.replication_factor"
        );
        assert_eq!(names["TREEHOLE_RATE_LIMITS"], "rate_limits.enabled");
        assert_eq!(names["TREEHOLE_MEILI_KEY"], "search.meili_key");
        assert_eq!(names["TREEHOLE_HOST_NAME"], "pseudonyms.host_name");
    }

    /// A value of `key` other than its default `default`, as TOML writes it.
    fn another(key: &str, default: &Value) -> toml::Value {
        use toml::Value as T;
        match key {
            "listen" => return T::String("127.0.0.1:9999".into()),
            "log_format" => return T::String("json".into()),
            "projectors" => return T::String("none".into()),
            _ => {}
        }
        if let Value::Empty(..) = default {
            return T::String(format!("{key} set by a test"));
        }
        match T::try_from(default).unwrap() {
            T::Boolean(b) => T::Boolean(!b),
            T::Integer(i) => T::Integer(i + 1),
            T::String(s) => T::String(format!("{s}-changed")),
            T::Array(items) => T::Array(items[..1].to_vec()),
            T::Table(t) if t.is_empty() => T::Table(
                [("test.option".to_owned(), T::String("1".into()))]
                    .into_iter()
                    .collect(),
            ),
            other => panic!("{key}: no other value of {other:?}"),
        }
    }

    /// `value` as an environment variable or a flag writes it.
    fn as_text(value: &toml::Value) -> String {
        match value {
            toml::Value::String(s) => s.clone(),
            toml::Value::Array(items) => items.iter().map(as_text).collect::<Vec<_>>().join(","),
            toml::Value::Table(t) => t
                .iter()
                .map(|(k, v)| format!("{k}={}", as_text(v)))
                .collect::<Vec<_>>()
                .join(","),
            other => other.to_string(),
        }
    }

    /// A TOML document that sets `key` (a dotted path) to `value`.
    fn toml_setting(key: &str, value: toml::Value) -> String {
        let doc = key.rsplit('.').fold(value, |inner, name| {
            toml::Value::Table([(name.to_owned(), inner)].into_iter().collect())
        });
        toml::to_string(&doc).unwrap()
    }

    /// `settings` holds `value` at `key`, or, for a secret (which never serializes), differs
    /// from the defaults.
    fn assert_holds(settings: &Settings, key: &str, value: &toml::Value, how: &str) {
        let defaults = format!("{:?}", Settings::default());
        assert_ne!(format!("{settings:?}"), defaults, "{how} changed nothing");
        let serialized = Value::serialize(settings).unwrap();
        match serialized.find_ref(key) {
            Some(Value::Empty(..)) => {} // a secret: see `secrets_are_held_and_never_shown`
            Some(found) => assert_eq!(&toml::Value::try_from(found).unwrap(), value, "{how}"),
            None => panic!("{how}: no {key} in the settings"),
        }
    }

    /// Every key is honoured from a TOML file, from each of its environment variables (its
    /// derived name and any older one) and from a flag.
    #[test]
    fn every_key_is_honoured_from_toml_the_environment_and_flags() {
        let dir = tempfile::tempdir().unwrap();
        let variables = variables();
        for (key, default) in keys() {
            let value = another(&key, &default);
            let text = toml_setting(&key, value.clone());
            let file = toml_file(&dir, &text);
            let s = load(Some(&file), &no_env, &[])
                .unwrap_or_else(|e| panic!("{key} from TOML {text:?}: {e}"));
            assert_holds(&s, &key, &value, &format!("TOML {text:?}"));

            let names: Vec<&str> = variables
                .iter()
                .filter(|v| v.key == key)
                .map(|v| v.name.as_str())
                .collect();
            assert!(!names.is_empty(), "no variable for {key}");
            for name in names {
                let raw = as_text(&value);
                let env = |var: &str| (var == name).then(|| raw.clone());
                let s = load(None, &env, &[])
                    .unwrap_or_else(|e| panic!("{key} from {name}={raw:?}: {e}"));
                assert_holds(&s, &key, &value, &format!("{name}={raw:?}"));
            }

            let flag = [(key.as_str(), as_text(&value))];
            let s = load(None, &no_env, &flag).unwrap_or_else(|e| panic!("{key} by flag: {e}"));
            assert_holds(&s, &key, &value, &format!("flag {key}"));
        }
    }

    #[test]
    fn secrets_are_held_and_never_shown() {
        let secrets = [
            ("TREEHOLE_DATABASE_URL", "postgres://u:hunter2@db/treehole"),
            ("TREEHOLE_SECRET", "0123456789"),
            ("TREEHOLE_EXPORT_KEY", "00112233445566778899"),
            ("TREEHOLE_KEY_STORE", "postgres://u:hunter2@keys/treehole"),
            ("TREEHOLE_SMTP_PASSWORD", "hunter2"),
            ("TREEHOLE_MEILI_KEY", "hunter2-meili"),
        ];
        let env = |k: &str| {
            secrets
                .iter()
                .find(|(v, _)| *v == k)
                .map(|(_, s)| s.to_string())
        };
        let s = load(None, &env, &[]).unwrap();
        let held = [
            &s.database_url,
            &s.secret,
            &s.export_key,
            &s.key_store,
            &s.mail.smtp_password,
            &s.search.meili_key,
        ];
        for ((_, given), held) in secrets.iter().zip(held) {
            // Hex keys stay text even when all digits.
            assert_eq!(held.as_ref().map(|h| h.expose_secret()), Some(*given));
        }
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("0123456789"),
            "{shown}"
        );
        let serialized = format!("{:?}", Value::serialize(&s).unwrap());
        assert!(!serialized.contains("hunter2"), "{serialized}");
    }

    #[test]
    fn webhook_deliveries_can_be_paused_from_the_environment() {
        assert!(load(None, &no_env, &[]).unwrap().webhooks.deliver);
        let env = |k: &str| (k == "TREEHOLE_WEBHOOKS_DELIVER").then(|| "off".to_string());
        assert!(!load(None, &env, &[]).unwrap().webhooks.deliver);
    }

    /// Defaults < TOML < environment < flags, key by key: a layer overrides only what it sets.
    #[test]
    fn layers_apply_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = toml_file(
            &dir,
            "listen = \"127.0.0.1:9000\"\nsession_ttl_hours = 5\nmax_body_bytes = 10\n\
             [rate_limits]\ncodes_per_ip_per_hour = 7\n",
        );
        let env = |k: &str| match k {
            "TREEHOLE_LISTEN" => Some("127.0.0.1:9001".to_string()),
            "TREEHOLE_MAX_BODY_BYTES" => Some("20".to_string()),
            "TREEHOLE_RATE_LIMITS" => Some("off".to_string()),
            _ => None,
        };
        let flags = [("listen", "127.0.0.1:9002".to_string())];
        let s = load(Some(&file), &env, &flags).unwrap();
        assert_eq!(s.listen.port(), 9002, "a flag beats the environment");
        assert_eq!(s.max_body_bytes, 20, "the environment beats the file");
        assert_eq!(s.session_ttl_hours, 5, "the file beats the default");
        assert_eq!(s.rate_limits.codes_per_ip_per_hour, 7);
        assert!(!s.rate_limits.enabled);
        assert_eq!(s.consistency_timeout_ms, 5_000, "the default stays");
        let s = load(Some(&file), &env, &[]).unwrap();
        assert_eq!(s.listen.port(), 9001);
        let s = load(Some(&file), &no_env, &[]).unwrap();
        assert_eq!((s.listen.port(), s.max_body_bytes), (9000, 10));
        let s = load(None, &no_env, &[]).unwrap();
        assert!(s.rate_limits.enabled);
        assert_eq!(s.data, PathBuf::from("data"));
        assert_eq!(s.listen.port(), 8080);
    }

    #[test]
    fn an_empty_variable_is_unset_and_two_spellings_at_once_are_refused() {
        let env = |k: &str| (k == "TREEHOLE_LISTEN").then(String::new);
        assert_eq!(load(None, &env, &[]).unwrap().listen.port(), 8080);
        let env = |k: &str| match k {
            "TREEHOLE_TASK_MAX_ATTEMPTS" | "TREEHOLE_TASKS_MAX_ATTEMPTS" => Some("5".to_string()),
            _ => None,
        };
        let e = load(None, &env, &[]).unwrap_err().to_string();
        assert!(
            e.contains("TREEHOLE_TASK_MAX_ATTEMPTS") && e.contains("TREEHOLE_TASKS_MAX_ATTEMPTS"),
            "{e}"
        );
    }

    #[test]
    fn session_settings_are_checked() {
        let s = load(None, &no_env, &[]).unwrap();
        assert_eq!(s.session_ttl_hours, 24 * 31);
        assert_eq!(s.sessions.max_per_user, 6);
        assert_eq!(s.sessions.seen_flush_secs, 3600);
        for bad in [
            ("sessions.max_per_user", "0"),
            ("sessions.seen_flush_secs", "0"),
            ("session_ttl_hours", "0"),
            ("http.header_timeout_ms", "0"),
            ("http.body_timeout_ms", "0"),
        ] {
            assert!(
                load(None, &no_env, &[(bad.0, bad.1.to_string())]).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn kafka_settings_and_pass_through_options() {
        let env = |k: &str| match k {
            "TREEHOLE_KAFKA_BROKERS" => Some("127.0.0.1:9092,127.0.0.1:9093".to_string()),
            "TREEHOLE_KAFKA_OPTIONS" => {
                Some("session.timeout.ms=2000, security.protocol=plaintext".to_string())
            }
            "TREEHOLE_KAFKA_RELAY" => Some("off".to_string()),
            _ => None,
        };
        let s = load(None, &env, &[]).unwrap();
        let kafka = s.kafka.settings().expect("configured");
        assert_eq!(kafka.brokers, "127.0.0.1:9092,127.0.0.1:9093");
        assert_eq!(kafka.topic, "treehole.events");
        assert_eq!(kafka.options["session.timeout.ms"], "2000");
        assert_eq!(kafka.options["security.protocol"], "plaintext");
        assert!(!s.kafka.relay);
        assert!(load(None, &no_env, &[]).unwrap().kafka.settings().is_none());
        let dir = tempfile::tempdir().unwrap();
        let file = toml_file(&dir, "[kafka.options]\n\"session.timeout.ms\" = \"3000\"\n");
        let s = load(Some(&file), &no_env, &[]).unwrap();
        assert_eq!(s.kafka.options["session.timeout.ms"], "3000");
        // The environment's options are added to the file's, and win where both name one.
        let s = load(Some(&file), &env, &[]).unwrap();
        assert_eq!(s.kafka.options["session.timeout.ms"], "2000");
        assert_eq!(s.kafka.options["security.protocol"], "plaintext");
        let file = toml_file(&dir, "[kafka.options]\n\"client.id\" = \"t\"\n");
        let s = load(Some(&file), &env, &[]).unwrap();
        assert_eq!(s.kafka.options.len(), 3, "{:?}", s.kafka.options);
    }

    #[test]
    fn moderation_settings_from_file_and_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = toml_file(&dir, "[moderation]\nsanction_days = [2, 4]\n");
        let m = load(Some(&file), &no_env, &[]).unwrap().moderation;
        assert_eq!(m.policy().ladder, [2, 4].map(chrono::Duration::days));
        let env =
            |k: &str| (k == "TREEHOLE_MODERATION_SANCTION_DAYS").then(|| "1, 2,3,".to_string());
        let m = load(Some(&file), &env, &[]).unwrap().moderation;
        assert_eq!(m.sanction_days, [1, 2, 3]);
        let m = load(None, &no_env, &[]).unwrap().moderation;
        assert_eq!(m.thresholds(), domain::moderation::Thresholds::default());
        assert_eq!(m.policy(), domain::sanction::SanctionPolicy::default());
    }

    fn error(file: Option<&str>, env: &[(&str, &str)], flags: &[(&str, &str)]) -> String {
        let dir = tempfile::tempdir().unwrap();
        let file = file.map(|text| toml_file(&dir, text));
        let env = |k: &str| {
            env.iter()
                .find(|(v, _)| *v == k)
                .map(|(_, s)| s.to_string())
        };
        let flags: Vec<(&str, String)> = flags.iter().map(|(k, v)| (*k, v.to_string())).collect();
        load(file.as_deref(), &env, &flags)
            .expect_err("a bad setting")
            .to_string()
    }

    /// A bad setting is refused with a message that names it, and where it came from.
    #[test]
    fn bad_settings_are_reported_by_name() {
        let e = error(Some("lissten = 1"), &[], &[]);
        assert!(e.contains("lissten") && e.contains("treehole.toml"), "{e}");
        let e = error(Some("[sessions]\nmax_per_users = 1"), &[], &[]);
        assert!(e.contains("max_per_users"), "{e}");
        let e = error(Some("[sessions]\nmax_per_user = \"many\""), &[], &[]);
        assert!(
            e.contains("sessions.max_per_user") && e.contains("treehole.toml"),
            "{e}"
        );
        let e = error(None, &[("TREEHOLE_SESSIONS_MAX_PER_USER", "many")], &[]);
        assert!(e.contains("TREEHOLE_SESSIONS_MAX_PER_USER"), "{e}");
        let e = error(None, &[("TREEHOLE_MODERATION_SANCTION_DAYS", "1,x")], &[]);
        assert!(e.contains("TREEHOLE_MODERATION_SANCTION_DAYS"), "{e}");
        let e = error(None, &[("TREEHOLE_WEBHOOKS_DELIVER", "maybe")], &[]);
        assert!(e.contains("TREEHOLE_WEBHOOKS_DELIVER"), "{e}");
        let e = error(None, &[("TREEHOLE_LOG_FORMAT", "xml")], &[]);
        assert!(e.contains("TREEHOLE_LOG_FORMAT"), "{e}");
        let e = error(None, &[], &[("listen", "nowhere")]);
        assert!(e.contains("listen") && e.contains("command line"), "{e}");
        // Checked after the types: the scheme's own message.
        let e = error(None, &[("TREEHOLE_HOST_NAME", "Alice")], &[]);
        assert!(e.contains("invalid configuration"), "{e}");
        let missing = Path::new("/nonexistent/treehole.toml");
        assert!(matches!(
            load(Some(missing), &no_env, &[]),
            Err(ConfigError::Read { .. })
        ));
    }
}
