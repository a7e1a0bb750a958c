//! Configuration in one place: typed, layered (defaults < TOML file < `TREEHOLE_*` environment
//! < command-line flags).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use commands::PasswordPolicy;
use domain::pseudonym::{InvalidScheme, PseudonymScheme};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Address the HTTP server listens on.
    pub listen: SocketAddr,
    /// Directory of the embedded databases, the outbox and the secret key.
    pub data: PathBuf,
    /// `postgres://...`: keep the event log and read models in PostgreSQL instead of `data`.
    #[serde(skip_serializing)]
    pub database_url: Option<String>,
    /// The server key (hex) for verification-code hashes; default: `<data>/secret.key`,
    /// created on first start. Replicas that share a database must share it.
    #[serde(skip_serializing)]
    pub secret: Option<String>,
    /// The key (hex, at least 16 bytes) of the pseudonymous ids in `treehole events export`;
    /// default: derived from the server key, so one deployment's exports join.
    #[serde(skip_serializing)]
    pub export_key: Option<String>,
    /// Where the users' data keys are (crypto-shredding), when not beside this process's log:
    /// a `postgres://` URL, or the path of the embedded `events.db`. For workers that project
    /// from the Kafka topic into read models of their own; they need the `secret` too.
    #[serde(skip_serializing)]
    pub key_store: Option<String>,
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

impl Default for HttpTimeouts {
    fn default() -> Self {
        Self {
            header_timeout_ms: 10_000,
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
    #[serde(skip_serializing)]
    pub meili_key: Option<String>,
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
    #[serde(skip_serializing)]
    pub smtp_password: Option<String>,
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

/// Environment variables and the setting each one sets.
const ENV: &[(&str, &str)] = &[
    ("TREEHOLE_LISTEN", "listen"),
    ("TREEHOLE_DATA", "data"),
    ("TREEHOLE_DATABASE_URL", "database_url"),
    ("TREEHOLE_SECRET", "secret"),
    ("TREEHOLE_EXPORT_KEY", "export_key"),
    ("TREEHOLE_KEY_STORE", "key_store"),
    ("TREEHOLE_RATE_LIMITS", "rate_limits.enabled"),
    (
        "TREEHOLE_RATE_LIMIT_CODES_PER_EMAIL_PER_HOUR",
        "rate_limits.codes_per_email_per_hour",
    ),
    (
        "TREEHOLE_RATE_LIMIT_CODES_PER_IP_PER_HOUR",
        "rate_limits.codes_per_ip_per_hour",
    ),
    (
        "TREEHOLE_RATE_LIMIT_REGISTRATIONS_PER_IP_PER_HOUR",
        "rate_limits.registrations_per_ip_per_hour",
    ),
    (
        "TREEHOLE_RATE_LIMIT_LOGINS_PER_IP_PER_MINUTE",
        "rate_limits.logins_per_ip_per_minute",
    ),
    (
        "TREEHOLE_RATE_LIMIT_REACTIONS_PER_USER_PER_MINUTE",
        "rate_limits.reactions_per_user_per_minute",
    ),
    (
        "TREEHOLE_RATE_LIMIT_VOTES_PER_USER_PER_MINUTE",
        "rate_limits.votes_per_user_per_minute",
    ),
    (
        "TREEHOLE_RATE_LIMIT_FOLLOWS_PER_USER_PER_MINUTE",
        "rate_limits.follows_per_user_per_minute",
    ),
    (
        "TREEHOLE_RATE_LIMIT_STREAMS_PER_USER",
        "rate_limits.streams_per_user",
    ),
    ("TREEHOLE_HOT_COMMENTER", "hot.commenter"),
    ("TREEHOLE_HOT_LIKE", "hot.like"),
    ("TREEHOLE_HOT_DISLIKE", "hot.dislike"),
    ("TREEHOLE_HOT_FOLLOWER", "hot.follower"),
    ("TREEHOLE_HOT_SECONDS_PER_POINT", "hot.seconds_per_point"),
    ("TREEHOLE_HOT_WINDOW", "hot.window"),
    (
        "TREEHOLE_MODERATION_REPORT_WEIGHT",
        "moderation.report_weight",
    ),
    ("TREEHOLE_MODERATION_REMOVE_AT", "moderation.remove_at"),
    ("TREEHOLE_MODERATION_FOLD_AT", "moderation.fold_at"),
    (
        "TREEHOLE_MODERATION_SWEEP_INTERVAL_MS",
        "moderation.sweep_interval_ms",
    ),
    (
        "TREEHOLE_MODERATION_SANCTION_DAYS",
        "moderation.sanction_days",
    ),
    ("TREEHOLE_MAIL_FROM", "mail.from"),
    ("TREEHOLE_SMTP_URL", "mail.smtp_url"),
    ("TREEHOLE_SMTP_USERNAME", "mail.smtp_username"),
    ("TREEHOLE_SMTP_PASSWORD", "mail.smtp_password"),
    ("TREEHOLE_HOST_NAME", "pseudonyms.host_name"),
    ("TREEHOLE_PASSWORD_MEMORY_KIB", "password.memory_kib"),
    ("TREEHOLE_PASSWORD_ITERATIONS", "password.iterations"),
    ("TREEHOLE_SESSION_TTL_HOURS", "session_ttl_hours"),
    ("TREEHOLE_SESSIONS_MAX_PER_USER", "sessions.max_per_user"),
    (
        "TREEHOLE_SESSIONS_SEEN_FLUSH_SECS",
        "sessions.seen_flush_secs",
    ),
    ("TREEHOLE_CONSISTENCY_TIMEOUT_MS", "consistency_timeout_ms"),
    ("TREEHOLE_MAX_BODY_BYTES", "max_body_bytes"),
    ("TREEHOLE_HTTP_HEADER_TIMEOUT_MS", "http.header_timeout_ms"),
    ("TREEHOLE_HTTP_BODY_TIMEOUT_MS", "http.body_timeout_ms"),
    ("TREEHOLE_LOG_FORMAT", "log_format"),
    ("TREEHOLE_PROJECTORS", "projectors"),
    ("TREEHOLE_MIGRATE_ON_START", "migrate_on_start"),
    ("TREEHOLE_KAFKA_BROKERS", "kafka.brokers"),
    ("TREEHOLE_KAFKA_TOPIC", "kafka.topic"),
    ("TREEHOLE_KAFKA_PARTITIONS", "kafka.partitions"),
    ("TREEHOLE_KAFKA_GROUP_PREFIX", "kafka.group_prefix"),
    ("TREEHOLE_KAFKA_RELAY", "kafka.relay"),
    ("TREEHOLE_KAFKA_OPTIONS", "kafka.options"),
    ("TREEHOLE_MEILI_URL", "search.meili_url"),
    ("TREEHOLE_MEILI_KEY", "search.meili_key"),
    ("TREEHOLE_MEILI_INDEX", "search.meili_index"),
    ("TREEHOLE_TASK_MAX_ATTEMPTS", "tasks.max_attempts"),
    ("TREEHOLE_TASK_REAP_INTERVAL_MS", "tasks.reap_interval_ms"),
    (
        "TREEHOLE_WEBHOOKS_ALLOW_INTERNAL",
        "webhooks.allow_internal",
    ),
    ("TREEHOLE_WEBHOOKS_DELIVER", "webhooks.deliver"),
    ("TREEHOLE_WEBHOOK_MAX_ATTEMPTS", "webhooks.max_attempts"),
    ("TREEHOLE_WEBHOOK_BACKOFF_MS", "webhooks.backoff_ms"),
];

/// Builds the settings from an optional TOML file, the environment and flag overrides
/// (`(key path, value)` pairs such as `("listen", "0.0.0.0:8080")`).
pub fn load(
    file: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
    flags: &[(&str, String)],
) -> Result<Settings, ConfigError> {
    let mut table = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.into(),
                source,
            })?;
            text.parse::<toml::Table>()
                .map_err(|e| ConfigError::Invalid(format!("{}: {e}", path.display())))?
        }
        None => toml::Table::new(),
    };
    let mut overrides: BTreeMap<&str, String> = BTreeMap::new();
    for (var, key) in ENV {
        // An empty variable counts as unset, as compose files write `VAR: ${VAR:-}`.
        if let Some(v) = env(var).filter(|v| !v.is_empty()) {
            overrides.insert(key, v);
        }
    }
    for (key, v) in flags {
        overrides.insert(key, v.clone());
    }
    for (key, raw) in overrides {
        set(&mut table, key, value_of(key, &raw));
    }
    let settings: Settings = toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| ConfigError::Invalid(e.to_string()))?;
    settings
        .pseudonyms
        .scheme()
        .map_err(|e| ConfigError::Invalid(e.to_string()))?;
    crate::background::projector::Selection::parse(&settings.projectors)
        .map_err(|e| ConfigError::Invalid(format!("projectors: {e}")))?;
    if settings.sessions.max_per_user == 0 || settings.sessions.seen_flush_secs == 0 {
        return Err(ConfigError::Invalid(
            "sessions: max_per_user and seen_flush_secs must be at least 1".into(),
        ));
    }
    if settings.session_ttl_hours == 0 {
        return Err(ConfigError::Invalid(
            "session_ttl_hours must be at least 1".into(),
        ));
    }
    if settings.http.header_timeout_ms == 0 || settings.http.body_timeout_ms == 0 {
        return Err(ConfigError::Invalid(
            "http: header_timeout_ms and body_timeout_ms must be at least 1".into(),
        ));
    }
    Ok(settings)
}

/// Interprets an environment or flag string as the TOML value the key expects.
fn value_of(key: &str, raw: &str) -> toml::Value {
    if key == "kafka.options" {
        // `k=v,k=v`: librdkafka option names and values (no commas inside values).
        let table = raw
            .split(',')
            .filter(|kv| !kv.trim().is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (
                    k.trim().to_owned(),
                    toml::Value::String(v.trim().to_owned()),
                )
            })
            .collect();
        return toml::Value::Table(table);
    }
    if key == "moderation.sanction_days" {
        // `1,3,7,30`: whole days, in order.
        return toml::Value::Array(
            raw.split(',')
                .filter(|d| !d.trim().is_empty())
                .map(|d| {
                    d.trim()
                        .parse::<i64>()
                        .map_or_else(|_| toml::Value::String(d.to_owned()), toml::Value::Integer)
                })
                .collect(),
        );
    }
    if key == "kafka.brokers"
        || key == "kafka.topic"
        || key == "kafka.group_prefix"
        || key.starts_with("search.")
    {
        return toml::Value::String(raw.to_owned());
    }
    if key == "rate_limits.enabled"
        || key == "migrate_on_start"
        || key == "kafka.relay"
        || key == "webhooks.allow_internal"
        || key == "webhooks.deliver"
    {
        return toml::Value::Boolean(!matches!(
            raw.to_ascii_lowercase().as_str(),
            "off" | "false" | "0" | "no"
        ));
    }
    // Hex keys: one that happens to be all digits is still a string.
    if key == "secret" || key == "export_key" {
        return toml::Value::String(raw.to_owned());
    }
    if let Ok(i) = raw.parse::<i64>() {
        return toml::Value::Integer(i);
    }
    toml::Value::String(raw.to_owned())
}

fn set(table: &mut toml::Table, path: &str, value: toml::Value) {
    match path.split_once('.') {
        None => {
            table.insert(path.to_owned(), value);
        }
        Some((head, rest)) => {
            let entry = table
                .entry(head.to_owned())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if !entry.is_table() {
                *entry = toml::Value::Table(toml::Table::new());
            }
            if let toml::Value::Table(t) = entry {
                set(t, rest, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `TREEHOLE_*` variable the README's configuration table or this file's documentation
    /// promises is read (`TREEHOLE_WEBHOOKS_DELIVER` once was promised and silently ignored).
    #[test]
    fn every_documented_variable_is_read() {
        let readme = include_str!("../../../README.md");
        let table = readme
            .lines()
            .filter(|l| l.starts_with("| `") && !l.starts_with("| `GET") && !l.contains(" /"));
        let here = include_str!("config.rs")
            .lines()
            .filter(|l| l.trim_start().starts_with("///"));
        let mut promised = std::collections::BTreeSet::new();
        for line in table.chain(here) {
            let mut rest = line;
            while let Some(i) = rest.find("TREEHOLE_") {
                let name: String = rest[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                    .collect();
                rest = &rest[i + name.len()..];
                if name != "TREEHOLE_" {
                    promised.insert(name);
                }
            }
        }
        // Read by the command line itself (clap), not by the settings.
        promised.remove("TREEHOLE_CONFIG");
        assert!(promised.len() > 30, "{promised:?}");
        let read: std::collections::BTreeSet<&str> = ENV.iter().map(|(v, _)| *v).collect();
        let missing: Vec<&String> = promised
            .iter()
            .filter(|v| !read.contains(v.as_str()))
            .collect();
        assert!(missing.is_empty(), "documented but never read: {missing:?}");
    }

    #[test]
    fn webhook_deliveries_can_be_paused_from_the_environment() {
        assert!(load(None, &|_| None, &[]).unwrap().webhooks.deliver);
        let env = |k: &str| (k == "TREEHOLE_WEBHOOKS_DELIVER").then(|| "off".to_string());
        assert!(!load(None, &env, &[]).unwrap().webhooks.deliver);
    }

    #[test]
    fn layers_apply_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("treehole.toml");
        std::fs::write(&file, "listen = \"127.0.0.1:9000\"\nsession_ttl_hours = 5\n[rate_limits]\ncodes_per_ip_per_hour = 7\n").unwrap();
        let env = |k: &str| match k {
            "TREEHOLE_LISTEN" => Some("127.0.0.1:9001".to_string()),
            "TREEHOLE_RATE_LIMITS" => Some("off".to_string()),
            _ => None,
        };
        let s = load(Some(&file), &env, &[("listen", "127.0.0.1:9002".into())]).unwrap();
        assert_eq!(s.listen.port(), 9002);
        assert_eq!(s.session_ttl_hours, 5);
        assert_eq!(s.rate_limits.codes_per_ip_per_hour, 7);
        assert!(!s.rate_limits.enabled);
        let s = load(None, &|_| None, &[]).unwrap();
        assert!(s.rate_limits.enabled);
        assert_eq!(s.data, PathBuf::from("data"));
    }

    #[test]
    fn session_settings_layer_like_the_others() {
        let s = load(None, &|_| None, &[]).unwrap();
        assert_eq!(s.session_ttl_hours, 24 * 31);
        assert_eq!(s.sessions.max_per_user, 6);
        assert_eq!(s.sessions.seen_flush_secs, 3600);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.toml");
        std::fs::write(
            &file,
            "session_ttl_hours = 48\n[sessions]\nmax_per_user = 3\nseen_flush_secs = 60\n",
        )
        .unwrap();
        let s = load(Some(&file), &|_| None, &[]).unwrap();
        assert_eq!(
            (
                s.session_ttl_hours,
                s.sessions.max_per_user,
                s.sessions.seen_flush_secs
            ),
            (48, 3, 60)
        );
        let env = |k: &str| match k {
            "TREEHOLE_SESSIONS_MAX_PER_USER" => Some("2".to_string()),
            "TREEHOLE_SESSION_TTL_HOURS" => Some("12".to_string()),
            _ => None,
        };
        let s = load(Some(&file), &env, &[]).unwrap();
        assert_eq!((s.session_ttl_hours, s.sessions.max_per_user), (12, 2));
        assert_eq!(s.sessions.seen_flush_secs, 60, "the file still counts");
        let flag = [("sessions.max_per_user", "9".to_string())];
        assert_eq!(
            load(Some(&file), &env, &flag)
                .unwrap()
                .sessions
                .max_per_user,
            9
        );
        for bad in [
            ("sessions.max_per_user", "0"),
            ("sessions.seen_flush_secs", "0"),
            ("session_ttl_hours", "0"),
        ] {
            assert!(
                load(None, &|_| None, &[(bad.0, bad.1.to_string())]).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn hex_keys_stay_strings_even_when_all_digits() {
        let env = |k: &str| match k {
            "TREEHOLE_EXPORT_KEY" => Some("00112233445566778899".to_string()),
            "TREEHOLE_SECRET" => Some("0123456789".to_string()),
            _ => None,
        };
        let s = load(None, &env, &[]).unwrap();
        assert_eq!(s.export_key.as_deref(), Some("00112233445566778899"));
        assert_eq!(s.secret.as_deref(), Some("0123456789"));
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
        assert!(
            load(None, &|_| None, &[])
                .unwrap()
                .kafka
                .settings()
                .is_none()
        );
    }

    #[test]
    fn http_timeouts_from_file_and_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.toml");
        std::fs::write(
            &file,
            "[http]\nheader_timeout_ms = 2500\nbody_timeout_ms = 7000\n",
        )
        .unwrap();
        let s = load(Some(&file), &|_| None, &[]).unwrap();
        assert_eq!(s.http.header(), std::time::Duration::from_millis(2500));
        assert_eq!(s.http.body(), std::time::Duration::from_millis(7000));
        let env = |k: &str| (k == "TREEHOLE_HTTP_BODY_TIMEOUT_MS").then(|| "900".to_string());
        let s = load(Some(&file), &env, &[]).unwrap();
        assert_eq!(s.http.body_timeout_ms, 900);
        let s = load(None, &|_| None, &[]).unwrap();
        assert_eq!(s.http.header_timeout_ms, 10_000);
        assert_eq!(s.http.body_timeout_ms, 30_000);
        let env = |k: &str| (k == "TREEHOLE_HTTP_HEADER_TIMEOUT_MS").then(|| "0".to_string());
        assert!(load(None, &env, &[]).is_err());
    }

    #[test]
    fn moderation_settings_from_file_and_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.toml");
        std::fs::write(
            &file,
            "[moderation]\nreport_weight = 5\nremove_at = 50\nfold_at = 3\n\
             sanction_days = [2, 4]\nsweep_interval_ms = 100\n",
        )
        .unwrap();
        let s = load(Some(&file), &|_| None, &[]).unwrap();
        let m = &s.moderation;
        assert_eq!(
            (m.report_weight, m.remove_at, m.fold_at, m.sweep_interval_ms),
            (5, 50, 3, 100)
        );
        assert_eq!(m.policy().ladder, [2, 4].map(chrono::Duration::days));
        let env = |k: &str| match k {
            "TREEHOLE_MODERATION_REPORT_WEIGHT" => Some("20".to_string()),
            "TREEHOLE_MODERATION_REMOVE_AT" => Some("60".to_string()),
            "TREEHOLE_MODERATION_FOLD_AT" => Some("4".to_string()),
            "TREEHOLE_MODERATION_SANCTION_DAYS" => Some("1, 2,3".to_string()),
            "TREEHOLE_MODERATION_SWEEP_INTERVAL_MS" => Some("250".to_string()),
            _ => None,
        };
        let m = load(Some(&file), &env, &[]).unwrap().moderation;
        assert_eq!(
            (m.report_weight, m.remove_at, m.fold_at, m.sweep_interval_ms),
            (20, 60, 4, 250)
        );
        assert_eq!(m.sanction_days, [1, 2, 3]);
        let m = load(None, &|_| None, &[]).unwrap().moderation;
        assert_eq!(m.thresholds(), domain::moderation::Thresholds::default());
        assert_eq!(m.policy(), domain::sanction::SanctionPolicy::default());
        let env = |k: &str| (k == "TREEHOLE_MODERATION_SANCTION_DAYS").then(|| "1,x".to_string());
        assert!(load(None, &env, &[]).is_err());
    }

    #[test]
    fn bad_settings_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.toml");
        std::fs::write(&file, "lissten = 1").unwrap();
        assert!(load(Some(&file), &|_| None, &[]).is_err());
        let env = |k: &str| (k == "TREEHOLE_HOST_NAME").then(|| "Alice".to_string());
        assert!(load(None, &env, &[]).is_err());
    }
}
