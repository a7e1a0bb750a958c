//! `treehole events export` and `treehole events import`: the log as a file.
//!
//! Export writes the §2 envelope of each selected event, as NDJSON (one JSON object a line) or
//! CSV, for analysts: pseudonymised ([`domain::export`]) unless `--raw`. Import is for
//! operators: it appends a raw export to an empty store and keeps every event's id, stream,
//! version and position, so projections built on the copy reproduce the original read models
//! (which store positions).
//!
//! Personal values are sealed in the log (`commands::keys`). A raw export carries them as
//! stored, as ciphertext. Import checks every sealed value whose key is in the target's key
//! store and refuses the whole input if one does not authenticate (altered, or moved to another
//! event). An export of a store written before sealing (schema 1 personal fields in clear) is
//! transformed on import: each user gets a data key, personal fields are sealed, anonymous
//! authors get author tokens, and reservation and verification streams get their keyed names.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use commands::{EventStore, ExpectedVersion, Keys, StoreError, StreamWrite};
use domain::export::Pseudonymiser;
use domain::personal::OPEN;
use domain::post::{Author, PostEvent};
use domain::reservation::{self, ReservationEvent};
use domain::session::SessionEvent;
use domain::user::UserEvent;
use domain::verification::VerificationEvent;
use domain::{Envelope, Event, NewEvent, Personal, Position, PostId, StreamId};
use secrecy::ExposeSecret;
use serde_json::Value;

use crate::cli::config::Settings;
use crate::cli::startup::{StartupError, Stores, server_secret};

/// Events read from the store per `read_all` call.
const READ_PAGE: usize = 1_000;
/// Events appended per atomic `append_many` call on import.
const IMPORT_BATCH: usize = 500;
/// The CSV columns: the envelope's fields, `data` and `metadata` as JSON text.
pub const CSV_COLUMNS: [&str; 9] = Envelope::FIELDS;

#[derive(Debug, clap::Subcommand)]
pub enum EventsCommand {
    /// Writes the log, or a selection of it, for analysts: one envelope per event, as NDJSON
    /// or CSV, with user ids pseudonymised and secrets emptied unless --raw.
    Export(ExportArgs),
    /// Appends a raw export (`events export --raw`) to an empty store, keeping every event's
    /// id, stream, version and position. Stop `serve` first; rebuild or start it afterwards.
    Import {
        /// The NDJSON file, or `-` for standard input (held in memory: prefer a file).
        #[arg(default_value = "-")]
        input: String,
    },
    /// Follows the Kafka topic (`--source kafka`), one envelope per line, pseudonymised unless
    /// --raw, like `export`.
    Tail(crate::cli::events_tail::TailArgs),
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Only events after this position.
    #[arg(long, default_value_t = 0)]
    pub after: Position,
    /// Only events up to this position (inclusive).
    #[arg(long)]
    pub until: Option<Position>,
    /// Only events of this stream, named as stored (repeatable).
    #[arg(long = "stream", value_name = "STREAM")]
    pub streams: Vec<String>,
    /// Only events of this type (repeatable, or a comma-separated list).
    #[arg(long = "type", value_name = "TYPE", value_delimiter = ',')]
    pub types: Vec<String>,
    /// Only events that occurred at or after this time (RFC 3339, e.g. 2026-11-23T00:00:00Z).
    #[arg(long, value_parser = parse_time)]
    pub since: Option<DateTime<Utc>>,
    #[arg(long, value_enum, default_value_t = Format::Ndjson)]
    pub format: Format,
    /// Exports the log as stored: real user ids, addresses and secret hashes. For operators
    /// (backups, `events import`), never for analysts.
    #[arg(long)]
    pub raw: bool,
    /// Writes to this file instead of standard output.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON envelope a line.
    Ndjson,
    /// A header line, then one row per event; `data` and `metadata` as JSON text.
    Csv,
}

fn parse_time(raw: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("{e}; expected RFC 3339, e.g. 2026-11-23T10:00:00Z"))
}

#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Startup(#[from] StartupError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    #[error("line {line} is not part of a complete raw export: {reason}")]
    NotRawExport { line: usize, reason: String },
    #[error(
        "the store is not empty (its log ends at position {0}); import only into an empty store"
    )]
    NotEmpty(Position),
    #[error("import failed after position {after}: {reason}")]
    Diverged { after: Position, reason: String },
    #[error(transparent)]
    Keys(#[from] commands::KeyError),
}

fn io_error(what: impl Into<String>) -> impl FnOnce(io::Error) -> EventsError {
    let what = what.into();
    move |source| EventsError::Io { what, source }
}

/// Runs one `treehole events` command; its summary goes to standard error (export) or
/// standard output (import).
pub async fn run(settings: &Settings, command: &EventsCommand) -> Result<(), EventsError> {
    match command {
        EventsCommand::Export(args) => {
            let selection = Selection::parse(args)?;
            let stores = Stores::open(settings).await?;
            let result = export_to(&stores, settings, args, &selection).await;
            stores.read_models.close().await;
            let (summary, destination) = result?;
            eprintln!(
                "exported {} events to {destination}{}",
                summary.written,
                if summary.skipped > 0 {
                    format!("; skipped {} this version cannot decode", summary.skipped)
                } else {
                    String::new()
                }
            );
        }
        EventsCommand::Tail(args) => {
            let read = crate::cli::events_tail::run(settings, args).await?;
            eprintln!("read {read} records");
        }
        EventsCommand::Import { input } => {
            let source = Source::open(input)?;
            let stores = Stores::open(settings).await?;
            let secret = server_secret(settings)?;
            let result = import(stores.events.as_ref(), &stores.keys, &secret, &source).await;
            stores.read_models.close().await;
            let imported = result?;
            println!(
                "imported {} events; rebuild the read models (`treehole rebuild all`) or start `serve`",
                imported.events
            );
        }
    }
    Ok(())
}

async fn export_to(
    stores: &Stores,
    settings: &Settings,
    args: &ExportArgs,
    selection: &Selection,
) -> Result<(ExportSummary, String), EventsError> {
    let pseudonymiser = if args.raw {
        None
    } else {
        Some(Pseudonymiser::new(&export_key(settings)?))
    };
    let (out, destination): (Box<dyn Write>, String) = match &args.output {
        Some(path) => {
            let name = path.display().to_string();
            let file = File::create(path).map_err(io_error(name.clone()))?;
            (Box::new(file), name)
        }
        None => (Box::new(io::stdout().lock()), "standard output".into()),
    };
    let mut sink = Sink::new(args.format, BufWriter::new(out)).map_err(io_error(&destination))?;
    // Raw: the log as stored, ciphertext and all. Pseudonymised: opened, then every personal
    // value replaced by its stand-in.
    let store = if args.raw {
        &stores.raw_events
    } else {
        &stores.events
    };
    let summary = export(store.as_ref(), selection, pseudonymiser.as_ref(), &mut sink).await?;
    sink.finish().map_err(io_error(&destination))?;
    Ok((summary, destination))
}

/// The key of the export's pseudonymous ids: `export_key`, else derived from the server key.
pub fn export_key(settings: &Settings) -> Result<Vec<u8>, EventsError> {
    match &settings.export_key {
        Some(hex_key) => {
            let key = hex::decode(hex_key.expose_secret().trim())
                .map_err(|e| EventsError::Invalid(format!("export_key: not a hex key: {e}")))?;
            if key.len() < 16 {
                return Err(EventsError::Invalid(format!(
                    "export_key: {} bytes is too short to keep pseudonyms unguessable; use at least 16 (32 hex digits)",
                    key.len()
                )));
            }
            Ok(key)
        }
        None => Ok(domain::export::derive_key(&server_secret(settings)?)),
    }
}

/// Which events an export selects: parsed from the arguments, so every selection is valid.
#[derive(Debug, Clone)]
pub struct Selection {
    after: Position,
    until: Option<Position>,
    streams: HashSet<StreamId>,
    types: HashSet<String>,
    since: Option<DateTime<Utc>>,
}

impl Selection {
    pub fn parse(args: &ExportArgs) -> Result<Self, EventsError> {
        if let Some(until) = args.until
            && until < args.after
        {
            return Err(EventsError::Invalid(format!(
                "--until {until} is before --after {}: the range is empty",
                args.after
            )));
        }
        let streams = args
            .streams
            .iter()
            .map(|s| StreamId::parse(s.trim()).map_err(|e| EventsError::Invalid(e.to_string())))
            .collect::<Result<_, _>>()?;
        let known: Vec<&str> = Event::types().collect();
        let types = args
            .types
            .iter()
            .map(|t| t.trim())
            .filter(|t| !t.is_empty())
            .map(|t| {
                if known.contains(&t) {
                    Ok(t.to_owned())
                } else {
                    Err(EventsError::Invalid(format!(
                        "--type {t}: no such event type (known: {})",
                        known.join(", ")
                    )))
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            after: args.after,
            until: args.until,
            streams,
            types,
            since: args.since,
        })
    }

    fn admits(&self, e: &Envelope) -> bool {
        e.position > self.after
            && self.until.is_none_or(|u| e.position <= u)
            && (self.streams.is_empty() || self.streams.contains(&e.stream))
            && (self.types.is_empty() || self.types.contains(&e.event_type))
            && self.since.is_none_or(|t| e.occurred_at >= t)
    }
}

/// Where exported envelopes are written.
pub enum Sink<W: Write> {
    Ndjson(W),
    Csv(Box<csv::Writer<W>>),
}

impl<W: Write> Sink<W> {
    /// A sink of the format; CSV starts with its header line.
    pub fn new(format: Format, out: W) -> io::Result<Self> {
        Ok(match format {
            Format::Ndjson => Self::Ndjson(out),
            Format::Csv => {
                let mut w = csv::Writer::from_writer(out);
                w.write_record(CSV_COLUMNS)?;
                Self::Csv(Box::new(w))
            }
        })
    }

    pub fn write(&mut self, envelope: &Envelope) -> io::Result<()> {
        match self {
            Self::Ndjson(out) => {
                serde_json::to_writer(&mut *out, envelope)?;
                out.write_all(b"\n")
            }
            // The columns come from the envelope's JSON, so both formats carry the same text.
            Self::Csv(w) => {
                let Value::Object(json) = serde_json::to_value(envelope)? else {
                    unreachable!("an envelope serialises to an object")
                };
                let row = CSV_COLUMNS.map(|column| match &json[column] {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                });
                Ok(w.write_record(row)?)
            }
        }
    }

    pub fn finish(self) -> io::Result<()> {
        match self {
            Self::Ndjson(mut out) => out.flush(),
            Self::Csv(mut w) => w.flush(),
        }
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ExportSummary {
    pub written: u64,
    /// Events of a type or schema this version cannot decode, left out of a pseudonymised
    /// export (a raw export carries them).
    pub skipped: u64,
}

/// Writes the selected events of the log as it stands when the export starts, in position
/// order, pseudonymised when a pseudonymiser is given.
pub async fn export<W: Write>(
    store: &dyn EventStore,
    selection: &Selection,
    pseudonymiser: Option<&Pseudonymiser>,
    sink: &mut Sink<W>,
) -> Result<ExportSummary, EventsError> {
    let head = store.head().await?;
    let end = selection.until.map_or(head, |u| u.min(head));
    let mut summary = ExportSummary::default();
    let mut after = selection.after;
    while after < end {
        let page = store.read_all(after, READ_PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.position;
        for envelope in page.iter().filter(|e| e.position <= end) {
            if !selection.admits(envelope) {
                continue;
            }
            let out = match pseudonymiser {
                None => Cow::Borrowed(envelope),
                Some(p) => match p.envelope(envelope) {
                    Ok(e) => Cow::Owned(e),
                    Err(err) => {
                        eprintln!(
                            "warning: skipped the event at position {}: {err}",
                            envelope.position
                        );
                        summary.skipped += 1;
                        continue;
                    }
                },
            };
            sink.write(&out).map_err(io_error("writing the export"))?;
            summary.written += 1;
        }
    }
    Ok(summary)
}

/// An import's input, which is read twice: once to check all of it, once to append.
pub enum Source {
    File(PathBuf),
    Memory(Vec<u8>),
}

impl Source {
    /// `-` is standard input, read into memory; anything else a file.
    pub fn open(input: &str) -> Result<Self, EventsError> {
        if input == "-" {
            let mut bytes = Vec::new();
            io::stdin()
                .read_to_end(&mut bytes)
                .map_err(io_error("standard input"))?;
            Ok(Self::Memory(bytes))
        } else {
            let path = PathBuf::from(input);
            File::open(&path).map_err(io_error(input))?;
            Ok(Self::File(path))
        }
    }

    fn lines(&self) -> Result<Box<dyn Iterator<Item = io::Result<String>> + '_>, EventsError> {
        Ok(match self {
            Self::File(path) => {
                let file = File::open(path).map_err(io_error(path.display().to_string()))?;
                Box::new(BufReader::new(file).lines())
            }
            Self::Memory(bytes) => Box::new(bytes.as_slice().lines()),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportSummary {
    pub events: u64,
}

/// Appends a complete raw export to an empty store. The whole input is checked before the
/// first append (it must be the log from position 1 on, without holes, each event decodable,
/// not pseudonymised, and each sealed value whose key `keys` holds authentic), so a refused
/// input leaves the store empty. Every batch is checked to have landed at the exported
/// positions. `store` must be the sealing store over the target log (see the module docs for
/// the transformation of unsealed exports).
pub async fn import(
    store: &dyn EventStore,
    keys: &Keys,
    secret: &[u8],
    source: &Source,
) -> Result<ImportSummary, EventsError> {
    let head = store.head().await?;
    if head != 0 {
        return Err(EventsError::NotEmpty(head));
    }
    let mut check = RawExport::default();
    for (i, line) in source.lines()?.enumerate() {
        if let Some(envelope) = check.next(i + 1, &line.map_err(io_error("reading the export"))?)? {
            check.verify(i + 1, &envelope, keys, secret).await?;
        }
    }
    let renames = std::mem::take(&mut check.renames);
    let mut check = RawExport::default();
    let mut batch = Vec::with_capacity(IMPORT_BATCH);
    for (i, line) in source.lines()?.enumerate() {
        let line = line.map_err(io_error("reading the export"))?;
        if let Some(envelope) = check.next(i + 1, &line)? {
            batch.push(transform(envelope, &renames, keys).await?);
        }
        if batch.len() == IMPORT_BATCH {
            append_batch(store, &batch).await?;
            batch.clear();
        }
    }
    if !batch.is_empty() {
        append_batch(store, &batch).await?;
    }
    let head = store.head().await?;
    if head != check.last_position {
        return Err(EventsError::Diverged {
            after: check.last_position,
            reason: format!(
                "the store's log ends at position {head}: did something else write to it?"
            ),
        });
    }
    Ok(ImportSummary { events: head })
}

/// An exported event as the current schema stores it. Events of the current schema pass as
/// they are (sealed values stay sealed: their ciphertext is bound to the event id, which import
/// keeps). An event of an unsealed schema is decoded (upcast), given what sealing needs, and
/// encoded again with open personal values, which the sealing store seals on append.
async fn transform(
    mut envelope: Envelope,
    renames: &HashMap<StreamId, StreamId>,
    keys: &Keys,
) -> Result<Envelope, EventsError> {
    if let Some(name) = renames.get(&envelope.stream) {
        envelope.stream = name.clone();
    }
    let event = Event::decode(&envelope).map_err(|e| EventsError::Diverged {
        after: envelope.position - 1,
        reason: e.to_string(),
    })?;
    let (_, schema, _) = event.encode();
    if schema == envelope.schema {
        return Ok(envelope);
    }
    let mut anonymous_act = false;
    let event = match event {
        Event::User(e @ UserEvent::UserRegistered { user_id, .. }) => {
            keys.create(user_id).await?;
            Event::User(e)
        }
        Event::Reservation(ReservationEvent::IdentityReserved { owner }) => match owner.get() {
            Some(user) => {
                let handle = keys.reservation_handle(*user, &envelope.stream).await?;
                Event::Reservation(ReservationEvent::IdentityReserved {
                    owner: Personal::new(handle, *user),
                })
            }
            None => Event::Reservation(ReservationEvent::IdentityReserved { owner }),
        },
        Event::Post(e) => {
            let (e, anonymous) = tokenised(e, keys).await?;
            anonymous_act = anonymous;
            Event::Post(e)
        }
        other => other,
    };
    let (event_type, schema, data) = event.encode();
    envelope.event_type = event_type.to_owned();
    envelope.schema = schema;
    envelope.data = data;
    if anonymous_act {
        // Schema 1 named the actor of anonymous content and of an author's own deletion.
        envelope.metadata.actor = None;
    }
    Ok(envelope)
}

/// A post event of an unsealed schema with real author tokens instead of the legacy ones, and
/// whether the event is an act that must not name its actor.
async fn tokenised(event: PostEvent, keys: &Keys) -> Result<(PostEvent, bool), EventsError> {
    let author = |post: PostId, author: Author| async move {
        match author {
            Author::Anonymous {
                pseudonym, user_id, ..
            } if user_id.get().is_some() => {
                let user = *user_id.get().expect("checked");
                let token = keys.author_token(user, post).await?;
                Ok::<_, EventsError>(Author::Anonymous {
                    user_id: Personal::new(token.key_ref(), user),
                    token,
                    pseudonym,
                })
            }
            other => Ok(other),
        }
    };
    Ok(match event {
        PostEvent::PostPublished {
            post_id,
            author: a,
            anonymous,
            title,
            body,
            tags,
        } => {
            let hidden = a.is_anonymous();
            let e = PostEvent::PostPublished {
                post_id,
                author: author(post_id, a).await?,
                anonymous,
                title,
                body,
                tags,
            };
            (e, hidden)
        }
        PostEvent::CommentAdded {
            post_id,
            comment_id,
            author: a,
            anonymous,
            is_host,
            body,
            reply_to,
            new_commenter,
            addressee,
        } => {
            let hidden = a.is_anonymous();
            let e = PostEvent::CommentAdded {
                post_id,
                comment_id,
                author: author(post_id, a).await?,
                anonymous,
                is_host,
                body,
                reply_to,
                new_commenter,
                addressee,
            };
            (e, hidden)
        }
        e @ (PostEvent::CommentDeleted { by_admin, .. }
        | PostEvent::PostDeleted { by_admin, .. }) => (e, !by_admin),
        // A reaction or a vote never names who reacted or voted; a poll opens with its post.
        e @ (PostEvent::ReactionSet { .. }
        | PostEvent::PollVoted { .. }
        | PostEvent::PollOpened { .. }
        | PostEvent::FollowSet { .. }
        | PostEvent::ItemReported { .. }) => (e, true),
        // A moderator's act names the moderator, as the live command does.
        e @ (PostEvent::ItemFolded { .. }
        | PostEvent::ItemUnfolded { .. }
        | PostEvent::ItemRemoved { .. }
        | PostEvent::ItemRestored { .. }) => (e, false),
    })
}

/// Checks, line by line, that the input is a complete raw export.
#[derive(Debug, Default)]
struct RawExport {
    last_position: Position,
    versions: HashMap<StreamId, u64>,
    /// Unkeyed reservation and verification stream names of an unsealed export, and their
    /// keyed names.
    renames: HashMap<StreamId, StreamId>,
}

impl RawExport {
    /// Checks what needs the keys: every sealed value whose key is here must authenticate. And
    /// learns the keyed stream names of the addresses and usernames an unsealed export registers.
    async fn verify(
        &mut self,
        line: usize,
        envelope: &Envelope,
        keys: &Keys,
        secret: &[u8],
    ) -> Result<(), EventsError> {
        if domain::personal::has_sealed(&envelope.data) {
            let mut opened = envelope.clone();
            keys.open(&mut opened).await.map_err(|e| match e {
                e
                @ (commands::KeyError::Tampered { .. } | commands::KeyError::Malformed { .. }) => {
                    EventsError::NotRawExport {
                        line,
                        reason: e.to_string(),
                    }
                }
                other => EventsError::Keys(other),
            })?;
        }
        if envelope.event_type == "UserRegistered" && envelope.schema == 1 {
            let text = |f: &str| envelope.data[f].as_str().unwrap_or_default().to_owned();
            let (email, username) = (text("email"), text("username"));
            let keyed_email = reservation::login_stream(secret, &email);
            let legacy_email = reservation::legacy_stream(&email);
            let verification = |s: &StreamId| {
                StreamId::parse(format!("verification-{}", s.key())).expect("a hex key is valid")
            };
            self.renames
                .insert(verification(&legacy_email), verification(&keyed_email));
            self.renames.insert(legacy_email, keyed_email);
            self.renames.insert(
                reservation::legacy_stream(&username),
                reservation::login_stream(secret, &username),
            );
        }
        Ok(())
    }

    /// The envelope of one line (`None` for a blank line), or why it cannot be imported.
    fn next(&mut self, line: usize, text: &str) -> Result<Option<Envelope>, EventsError> {
        if text.trim().is_empty() {
            return Ok(None);
        }
        let refuse = |reason: String| EventsError::NotRawExport { line, reason };
        let envelope: Envelope = serde_json::from_str(text)
            .map_err(|e| refuse(format!("not an event envelope: {e}")))?;
        let event = Event::decode(&envelope).map_err(|e| refuse(e.to_string()))?;
        if redacted(&envelope, &event) {
            return Err(refuse(format!(
                "its {} has its secrets emptied, so this is a pseudonymised export; import needs `treehole events export --raw`",
                envelope.event_type
            )));
        }
        if envelope.position != self.last_position + 1 {
            return Err(refuse(format!(
                "position {} follows position {}; import needs the whole log from position 1 (an export without --after, --stream, --type or --since)",
                envelope.position, self.last_position
            )));
        }
        let version = self.versions.entry(envelope.stream.clone()).or_insert(0);
        if envelope.version != *version + 1 {
            return Err(refuse(format!(
                "stream {} goes from version {} to {}",
                envelope.stream, version, envelope.version
            )));
        }
        *version = envelope.version;
        self.last_position = envelope.position;
        Ok(Some(envelope))
    }
}

/// Whether an event has the emptied secrets of the pseudonymised export.
fn redacted(envelope: &Envelope, event: &Event) -> bool {
    match event {
        Event::User(UserEvent::UserRegistered { .. }) => {
            // Emptied (schema 1), or a personal value without its value or ciphertext.
            let hash = &envelope.data["password_hash"];
            hash == "" || hash.get(OPEN).is_some_and(|v| v.get("value").is_none())
        }
        Event::Session(SessionEvent::SessionStarted { token_hash, .. }) => token_hash.is_empty(),
        Event::Verification(VerificationEvent::VerificationCodeIssued { code_hash, .. }) => {
            code_hash.is_empty()
        }
        _ => false,
    }
}

/// Appends consecutive events in one atomic batch: each run of one stream's events is one
/// write, expecting the version before its first event. Fails unless every event landed at its
/// exported position and version.
async fn append_batch(store: &dyn EventStore, batch: &[Envelope]) -> Result<(), EventsError> {
    let runs: Vec<&[Envelope]> = batch.chunk_by(|a, b| a.stream == b.stream).collect();
    let writes = runs
        .iter()
        .map(|run| StreamWrite {
            stream: run[0].stream.clone(),
            expected: ExpectedVersion::from_version(run[0].version - 1),
            events: run.iter().map(new_event).collect(),
        })
        .collect();
    let after = batch[0].position - 1;
    let diverged = |reason: String| EventsError::Diverged { after, reason };
    let committed = store.append_many(writes, None).await?;
    if committed.replayed {
        return Err(diverged("the store already held these event ids".into()));
    }
    if committed.results.len() != runs.len() {
        return Err(diverged(format!(
            "{} stream writes were sent, {} acknowledged",
            runs.len(),
            committed.results.len()
        )));
    }
    for (result, run) in committed.results.iter().zip(&runs) {
        let (first, last) = (&run[0], &run[run.len() - 1]);
        let landed = (
            &result.stream,
            result.first_position,
            result.last_position,
            result.first_version,
            result.last_version,
        );
        let exported = (
            &first.stream,
            first.position,
            last.position,
            first.version,
            last.version,
        );
        if landed != exported {
            return Err(diverged(format!(
                "events exported as (stream, positions, versions) {exported:?} were stored as {landed:?}"
            )));
        }
    }
    Ok(())
}

/// The event to append for an exported envelope: all of it but what the store assigns.
fn new_event(envelope: &Envelope) -> NewEvent {
    let Envelope {
        position: _,
        event_id,
        stream: _,
        version: _,
        event_type,
        schema,
        occurred_at,
        data,
        metadata,
    } = envelope;
    NewEvent {
        typed: Default::default(),
        event_id: *event_id,
        event_type: event_type.clone(),
        schema: *schema,
        occurred_at: *occurred_at,
        data: data.clone(),
        metadata: metadata.clone(),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        export: ExportArgs,
    }

    fn parse(arguments: &[&str]) -> Result<ExportArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("export").chain(arguments.iter().copied()))
            .map(|cli| cli.export)
    }

    fn selection(arguments: &[&str]) -> Result<Selection, EventsError> {
        Selection::parse(&parse(arguments).expect("arguments clap accepts"))
    }

    #[test]
    fn selections_refuse_bad_arguments_clearly() {
        let err = selection(&["--after", "5", "--until", "3"]).unwrap_err();
        assert!(
            err.to_string().contains("--until 3 is before --after 5"),
            "{err}"
        );
        let err = selection(&["--type", "PostPublished,Nope"]).unwrap_err();
        assert!(err.to_string().contains("--type Nope"), "{err}");
        assert!(selection(&["--stream", "nodash"]).is_err());
        let err = parse(&["--since", "yesterday"]).unwrap_err();
        assert!(err.to_string().contains("RFC 3339"), "{err}");
        let s = selection(&[
            "--type",
            "PostPublished,CommentAdded",
            "--type",
            "PostDeleted",
        ])
        .unwrap();
        assert_eq!(s.types.len(), 3);
        assert!(selection(&["--after", "3", "--until", "3"]).is_ok());
    }

    #[test]
    fn csv_rows_quote_json_columns() {
        let envelope = Envelope {
            position: 3,
            event_id: uuid::Uuid::from_u128(3),
            stream: StreamId::parse("post-1").unwrap(),
            version: 1,
            event_type: "PostPublished".into(),
            schema: 1,
            occurred_at: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            data: serde_json::json!({"body": "a, \"quoted\"\nline"}),
            metadata: domain::Metadata::default(),
        };
        let mut out = Vec::new();
        let mut sink = Sink::new(Format::Csv, &mut out).unwrap();
        sink.write(&envelope).unwrap();
        sink.finish().unwrap();
        let mut rows = csv::Reader::from_reader(out.as_slice());
        assert_eq!(rows.headers().unwrap(), CSV_COLUMNS.as_slice());
        let row = rows.records().next().unwrap().unwrap();
        assert_eq!(&row[0], "3");
        assert_eq!(&row[2], "post-1");
        assert_eq!(&row[6], "2023-11-14T22:13:20.000Z");
        let data: Value = serde_json::from_str(&row[7]).unwrap();
        assert_eq!(data, envelope.data);
        assert_eq!(&row[8], "{}");
    }
}
