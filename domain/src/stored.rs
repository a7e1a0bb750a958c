//! A page of the log as the store holds it, for readers that pass events on without looking
//! inside them (the Kafka relay): every event's fields are the stored text, kept in one buffer
//! per page, and [`StoredEvent::write_json`] writes the envelope's JSON from them.
//!
//! The JSON is byte for byte what `serde_json` writes for the [`RawEnvelope`] of the same row
//! (the §2 contract's field order, `occurred_at` to the millisecond with a `Z`, data and
//! metadata as stored). To keep it so without decoding, [`StoredEvents::push`] takes the
//! stored event id and time as they are when they are already in the one spelling the
//! envelope writes (which is how the stores write them) and rewrites them otherwise, and
//! checks the stream id as [`StreamId::parse`] does. Data and metadata are the stored JSON
//! text without its surrounding whitespace, not parsed again: the stores write them with
//! `serde_json` from values, and nothing else writes those columns.

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::{Envelope, Position, RawEnvelope, StreamId};

/// A stored field that cannot be passed on as an envelope field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stored event {position} has a bad {field}: {reason}")]
pub struct InvalidStoredEvent {
    pub position: Position,
    pub field: &'static str,
    pub reason: String,
}

/// One event of a [`StoredEvents`] page, its text fields borrowed from the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredEvent<'a> {
    pub position: Position,
    pub event_id: &'a str,
    pub stream: &'a str,
    pub version: u64,
    pub event_type: &'a str,
    pub schema: u32,
    pub occurred_at: &'a str,
    pub data: &'a str,
    pub metadata: &'a str,
}

/// Where one event's text fields end in the page's buffer (they are consecutive, from where
/// the previous event's end).
#[derive(Debug, Clone, Copy)]
struct Entry {
    position: Position,
    version: u64,
    schema: u32,
    start: usize,
    /// Ends of event_id, stream, type, occurred_at, data, metadata.
    ends: [usize; 6],
}

/// Events in position order with their fields as stored: two allocations per page, none per
/// event.
#[derive(Debug, Clone, Default)]
pub struct StoredEvents {
    text: String,
    entries: Vec<Entry>,
}

impl StoredEvents {
    /// An empty page with room for `events` events of `text` bytes of fields in all.
    pub fn with_capacity(events: usize, text: usize) -> Self {
        Self {
            text: String::with_capacity(text),
            entries: Vec::with_capacity(events),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The position of the last event, if any.
    pub fn last_position(&self) -> Option<Position> {
        self.entries.last().map(|e| e.position)
    }

    /// Appends a stored row. The event id and time are copied when they are in the
    /// envelope's spelling and rewritten into it otherwise; data and metadata are copied
    /// without surrounding whitespace. Fails on what a decoding read fails on too: an id or
    /// time that does not parse, a stream id [`StreamId::parse`] refuses, empty data or
    /// metadata.
    pub fn push(&mut self, e: StoredEvent<'_>) -> Result<(), InvalidStoredEvent> {
        let invalid = |field: &'static str, reason: String| InvalidStoredEvent {
            position: e.position,
            field,
            reason,
        };
        if !StreamId::is_valid(e.stream) {
            return Err(invalid(
                "stream",
                format!("invalid stream id: {}", e.stream),
            ));
        }
        let data = json_text(e.data).ok_or_else(|| invalid("data", "no JSON value".into()))?;
        let metadata =
            json_text(e.metadata).ok_or_else(|| invalid("metadata", "no JSON value".into()))?;
        let start = self.text.len();
        let mut ends = [0; 6];
        if is_canonical_uuid(e.event_id) {
            self.text.push_str(e.event_id);
        } else {
            let id =
                Uuid::parse_str(e.event_id).map_err(|err| invalid("event_id", err.to_string()))?;
            self.text
                .push_str(id.hyphenated().encode_lower(&mut Uuid::encode_buffer()));
        }
        ends[0] = self.text.len();
        self.text.push_str(e.stream);
        ends[1] = self.text.len();
        self.text.push_str(e.event_type);
        ends[2] = self.text.len();
        if is_canonical_millis(e.occurred_at) {
            self.text.push_str(e.occurred_at);
        } else {
            let at = DateTime::parse_from_rfc3339(e.occurred_at)
                .map_err(|err| invalid("occurred_at", err.to_string()))?;
            self.text.push_str(
                &at.with_timezone(&Utc)
                    .to_rfc3339_opts(SecondsFormat::Millis, true),
            );
        }
        ends[3] = self.text.len();
        self.text.push_str(data);
        ends[4] = self.text.len();
        self.text.push_str(metadata);
        ends[5] = self.text.len();
        self.entries.push(Entry {
            position: e.position,
            version: e.version,
            schema: e.schema,
            start,
            ends,
        });
        Ok(())
    }

    /// Appends an envelope read some other way (decoded, or with its data and metadata as
    /// stored), as its JSON form has it.
    pub fn push_envelope<D: Serialize, M: Serialize>(&mut self, e: &Envelope<D, M>) {
        let data = serde_json::to_string(&e.data).expect("data serialises");
        let metadata = serde_json::to_string(&e.metadata).expect("metadata serialises");
        let occurred_at = e.occurred_at.to_rfc3339_opts(SecondsFormat::Millis, true);
        let mut id = Uuid::encode_buffer();
        let pushed = self.push(StoredEvent {
            position: e.position,
            event_id: e.event_id.hyphenated().encode_lower(&mut id),
            stream: e.stream.as_str(),
            version: e.version,
            event_type: &e.event_type,
            schema: e.schema,
            occurred_at: &occurred_at,
            data: &data,
            metadata: &metadata,
        });
        pushed.expect("an envelope's own fields are valid stored fields");
    }

    /// The page's events, in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = StoredEvent<'_>> + '_ {
        self.entries.iter().map(|e| {
            let field = |i: usize| {
                let from = if i == 0 { e.start } else { e.ends[i - 1] };
                &self.text[from..e.ends[i]]
            };
            StoredEvent {
                position: e.position,
                event_id: field(0),
                stream: field(1),
                version: e.version,
                event_type: field(2),
                schema: e.schema,
                occurred_at: field(3),
                data: field(4),
                metadata: field(5),
            }
        })
    }
}

impl From<&[RawEnvelope]> for StoredEvents {
    fn from(envelopes: &[RawEnvelope]) -> Self {
        let text = envelopes
            .iter()
            .map(|e| 100 + e.stream.as_str().len() + e.data.get().len() + e.metadata.get().len())
            .sum();
        let mut page = Self::with_capacity(envelopes.len(), text);
        for e in envelopes {
            page.push_envelope(e);
        }
        page
    }
}

impl StoredEvent<'_> {
    /// Appends the envelope's JSON to `out`: what `serde_json::to_vec` writes for the
    /// [`RawEnvelope`] of this row.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.reserve(
            160 + self.event_id.len()
                + self.stream.len()
                + self.event_type.len()
                + self.occurred_at.len()
                + self.data.len()
                + self.metadata.len(),
        );
        out.extend_from_slice(b"{\"position\":");
        push_u64(out, self.position);
        out.extend_from_slice(b",\"event_id\":");
        push_str(out, self.event_id);
        out.extend_from_slice(b",\"stream\":");
        push_str(out, self.stream);
        out.extend_from_slice(b",\"version\":");
        push_u64(out, self.version);
        out.extend_from_slice(b",\"type\":");
        push_str(out, self.event_type);
        out.extend_from_slice(b",\"schema\":");
        push_u64(out, u64::from(self.schema));
        out.extend_from_slice(b",\"occurred_at\":");
        push_str(out, self.occurred_at);
        out.extend_from_slice(b",\"data\":");
        out.extend_from_slice(self.data.as_bytes());
        out.extend_from_slice(b",\"metadata\":");
        out.extend_from_slice(self.metadata.as_bytes());
        out.push(b'}');
    }
}

/// The stored JSON text without the whitespace around it (as `serde_json`'s `RawValue` keeps
/// it); `None` if nothing is left.
fn json_text(stored: &str) -> Option<&str> {
    let text = stored.trim_matches([' ', '\t', '\n', '\r']);
    (!text.is_empty()).then_some(text)
}

/// Whether `s` is an id as the envelope writes it: 36 characters, lower-case hex, hyphenated
/// 8-4-4-4-12.
fn is_canonical_uuid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => matches!(b, b'0'..=b'9' | b'a'..=b'f'),
        })
}

/// Whether `s` is a time as the envelope writes it, `YYYY-MM-DDTHH:MM:SS.mmmZ`, and a valid
/// one (so that parsing and writing it again gives `s`). Leap seconds take the slow path.
fn is_canonical_millis(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 24 {
        return false;
    }
    let shape = b.iter().enumerate().all(|(i, &c)| match i {
        4 | 7 => c == b'-',
        10 => c == b'T',
        13 | 16 => c == b':',
        19 => c == b'.',
        23 => c == b'Z',
        _ => c.is_ascii_digit(),
    });
    if !shape {
        return false;
    }
    let n = |from: usize, to: usize| {
        b[from..to]
            .iter()
            .fold(0u32, |acc, c| acc * 10 + u32::from(c - b'0'))
    };
    let year = i32::try_from(n(0, 4)).unwrap_or(-1);
    NaiveDate::from_ymd_opt(year, n(5, 7), n(8, 10)).is_some()
        && n(11, 13) < 24
        && n(14, 16) < 60
        && n(17, 19) < 60
}

fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// A JSON string as `serde_json` writes it.
fn push_str(out: &mut Vec<u8>, s: &str) {
    if s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        serde_json::to_writer(&mut *out, s).expect("a string serialises");
    } else {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What a decoding read makes of a stored row, serialised as the relay used to.
    fn decoded_json(e: &StoredEvent<'_>) -> Option<Vec<u8>> {
        let envelope = RawEnvelope {
            position: e.position,
            event_id: e.event_id.parse().ok()?,
            stream: StreamId::parse(e.stream.to_owned()).ok()?,
            version: e.version,
            event_type: e.event_type.to_owned(),
            schema: e.schema,
            occurred_at: DateTime::parse_from_rfc3339(e.occurred_at)
                .ok()?
                .with_timezone(&Utc),
            data: serde_json::from_str(e.data).ok()?,
            metadata: serde_json::from_str(e.metadata).ok()?,
        };
        Some(serde_json::to_vec(&envelope).unwrap())
    }

    fn stored_json(e: StoredEvent<'_>) -> Result<Vec<u8>, InvalidStoredEvent> {
        let mut page = StoredEvents::default();
        page.push(e)?;
        let mut out = Vec::new();
        page.iter().next().unwrap().write_json(&mut out);
        Ok(out)
    }

    fn row<'a>(
        event_id: &'a str,
        stream: &'a str,
        event_type: &'a str,
        occurred_at: &'a str,
        data: &'a str,
    ) -> StoredEvent<'a> {
        StoredEvent {
            position: 1042,
            event_id,
            stream,
            version: 7,
            event_type,
            schema: 2,
            occurred_at,
            data,
            metadata: r#"{"correlation_id":"c"}"#,
        }
    }

    #[test]
    fn the_json_is_the_decoded_envelopes_byte_for_byte() {
        let id = "0190a5e2-7c1d-7b3e-9f10-2a4b6c8d0e1f";
        let cases = [
            row(
                id,
                "post-1",
                "CommentAdded",
                "2026-11-23T10:00:00.123Z",
                r#"{"a":1}"#,
            ),
            // Not in the envelope's spelling: rewritten as a decoding read writes them.
            row(
                "0190A5E2-7C1D-7B3E-9F10-2A4B6C8D0E1F",
                "post-1",
                "T",
                "2026-11-23T10:00:00.123456+01:00",
                "null",
            ),
            row(
                "0190a5e27c1d7b3e9f102a4b6c8d0e1f",
                "post-1",
                "T",
                "2026-11-23t10:00:00z",
                " \n{\"a\": [1, 2]}\t ",
            ),
            row(id, "post-1", "T", "2016-12-31T23:59:60.500Z", "{}"),
            row(id, "post-1", "T", "2024-02-29T00:00:00.000Z", "{}"),
            // Strings that need escaping, and some that do not.
            row(
                id,
                r#"post-"quoted"\back"#,
                "Type \"with\" \\ \n\t\u{1} \u{7f} é 图 /",
                "0001-01-01T00:00:00.000Z",
                r#"{"body":"图书馆 \"x\" \u0001"}"#,
            ),
        ];
        for case in cases {
            let expected = decoded_json(&case).expect("a valid row");
            let got = stored_json(case).expect("a valid row");
            assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(&expected),
                "{case:?}"
            );
        }
    }

    #[test]
    fn what_a_decoding_read_refuses_is_refused() {
        let id = "0190a5e2-7c1d-7b3e-9f10-2a4b6c8d0e1f";
        let at = "2026-11-23T10:00:00.123Z";
        for (case, field) in [
            (row("nope", "post-1", "T", at, "{}"), "event_id"),
            (row(id, "post", "T", at, "{}"), "stream"),
            (row(id, "post 1", "T", at, "{}"), "stream"),
            (
                row(id, "post-1", "T", "2026-02-30T10:00:00.123Z", "{}"),
                "occurred_at",
            ),
            (
                row(id, "post-1", "T", "2026-11-23T24:00:00.123Z", "{}"),
                "occurred_at",
            ),
            (row(id, "post-1", "T", "yesterday", "{}"), "occurred_at"),
            (row(id, "post-1", "T", at, " \n"), "data"),
        ] {
            assert!(decoded_json(&case).is_none(), "{case:?}");
            assert_eq!(stored_json(case).unwrap_err().field, field, "{case:?}");
        }
    }

    #[test]
    fn a_page_keeps_its_events_in_order() {
        let id = "0190a5e2-7c1d-7b3e-9f10-2a4b6c8d0e1f";
        let mut page = StoredEvents::with_capacity(2, 0);
        page.push(row(id, "post-1", "A", "2026-11-23T10:00:00.123Z", "{}"))
            .unwrap();
        let mut second = row(id, "user-2", "B", "2026-11-23T10:00:00.124Z", "[1]");
        second.position = 1043;
        page.push(second).unwrap();
        assert_eq!(page.len(), 2);
        assert_eq!(page.last_position(), Some(1043));
        let events: Vec<_> = page.iter().collect();
        assert_eq!(events[0].stream, "post-1");
        assert_eq!(events[0].event_type, "A");
        assert_eq!(events[1], second);
    }

    #[test]
    fn an_envelope_pushed_writes_its_own_json() {
        let envelope = Envelope {
            position: 3,
            event_id: Uuid::now_v7(),
            stream: StreamId::parse("user-\"x\"").unwrap(),
            version: 1,
            event_type: "UserRegistered".into(),
            schema: 1,
            occurred_at: Utc::now(),
            data: serde_json::json!({"email": {"$sealed": "x"}, "n": 1.5}),
            metadata: crate::Metadata::default(),
        };
        let mut page = StoredEvents::default();
        page.push_envelope(&envelope);
        let mut out = Vec::new();
        page.iter().next().unwrap().write_json(&mut out);
        assert_eq!(out, serde_json::to_vec(&envelope).unwrap());
    }

    proptest! {
        #[test]
        fn any_stored_row_writes_what_a_decoding_read_writes(
            position in any::<u64>(),
            version in any::<u64>(),
            schema in any::<u32>(),
            uuid in any::<u128>(),
            upper in any::<bool>(),
            stream in "[ -~]{0,6}-[ -~]{0,6}|[!-,.-~]{1,20}-[!-~]{1,20}",
            event_type in any::<String>(),
            millis in -62_135_596_800_000i64..253_402_300_799_999i64,
            body in any::<String>(),
            pad in "[ \t\r\n]{0,3}",
        ) {
            let id = Uuid::from_u128(uuid).to_string();
            let id = if upper { id.to_uppercase() } else { id };
            let at = DateTime::from_timestamp_millis(millis)
                .unwrap()
                .to_rfc3339_opts(SecondsFormat::Millis, true);
            let data = format!("{pad}{}{pad}", serde_json::json!({"body": body, "n": [1, null]}));
            let e = StoredEvent {
                position,
                event_id: &id,
                stream: &stream,
                version,
                event_type: &event_type,
                schema,
                occurred_at: &at,
                data: &data,
                metadata: "{}",
            };
            // The same JSON, or refused by both (a stream id that does not parse).
            match (decoded_json(&e), stored_json(e)) {
                (Some(expected), Ok(got)) => prop_assert_eq!(got, expected),
                (None, Err(refused)) => prop_assert_eq!(refused.field, "stream"),
                (expected, got) => prop_assert!(false, "{:?} against {:?}", got, expected),
            }
        }
    }
}
