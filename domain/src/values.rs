//! Validated values: *parse, don't validate*. Each type's only constructor is `parse`, so every
//! value inside the program is already valid and nothing downstream checks again.
//!
//! Text a person will read is held to three rules in every type here:
//! - **Invisible is empty.** Default-ignorable characters (Unicode's Default_Ignorable_Code_Point:
//!   zero-width spaces and joiners, word joiner, soft hyphen, variation selectors, Hangul
//!   fillers, ...) count as nothing, so a text of only them and white space is refused as empty.
//!   Between visible characters they stay: an emoji ZWJ sequence or a Persian ZWNJ is real text.
//! - **No direction overrides.** Bidi embeddings, overrides and isolates (U+202A to U+202E,
//!   U+2066 to U+2069) are refused wherever they appear: they reorder what is shown, so
//!   `"\u{202e}gnp.exe"` would read as `exe.png`. Refused, not stripped: a value is either
//!   what its author sent or an error that says why, never silently something else.
//! - **No control characters**, except line breaks and tabs in multi-line text.
//!
//! Names (usernames, tags) allow only letters, digits, `_` and `-`, which already leaves out
//! every invisible and bidi character; usernames are also held to one script (see
//! [`Username`]). E-mail addresses are ASCII (see [`Email`]).

use icu_properties::CodePointSetData;
use icu_properties::props::DefaultIgnorableCodePoint;
use serde::{Deserialize, Serialize};
use unicode_security::{RestrictionLevel, RestrictionLevelDetection};

use crate::UserId;

/// Why a raw input was rejected; `field` names the offending request field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidValue {
    pub field: &'static str,
    pub reason: String,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> InvalidValue {
    InvalidValue {
        field,
        reason: reason.into(),
    }
}

/// A character that renders as nothing (Default_Ignorable_Code_Point), e.g. U+200B.
fn is_invisible(c: char) -> bool {
    CodePointSetData::new::<DefaultIgnorableCodePoint>().contains(c)
}

/// An explicit bidi embedding, override or isolate (U+202A to U+202E, U+2066 to U+2069).
fn is_bidi_override(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// A character of a name (username, tag): a visible letter or digit, `_` or `-`. Hangul fillers
/// are letters that render as nothing, hence the visibility check.
fn is_name_char(c: char) -> bool {
    (c.is_alphanumeric() && !is_invisible(c)) || c == '_' || c == '-'
}

/// Trims white space, then refuses text with nothing visible, text over `max` characters,
/// control characters (line breaks and tabs are allowed where `multiline` is set) and bidi
/// overrides: the rules of the module doc.
fn text(
    field: &'static str,
    raw: &str,
    max: usize,
    multiline: bool,
) -> Result<String, InvalidValue> {
    let trimmed = raw.trim();
    if trimmed
        .chars()
        .all(|c| c.is_whitespace() || is_invisible(c))
    {
        return Err(invalid(
            field,
            "must not be empty or only white space and invisible characters",
        ));
    }
    let len = trimmed.chars().count();
    if len > max {
        return Err(invalid(
            field,
            format!("is {len} characters long; at most {max} are allowed"),
        ));
    }
    let bad_control = |c: char| c.is_control() && !(multiline && matches!(c, '\n' | '\r' | '\t'));
    if trimmed.chars().any(bad_control) {
        return Err(invalid(field, "contains control characters"));
    }
    if trimmed.chars().any(is_bidi_override) {
        return Err(invalid(
            field,
            "contains a bidi override, embedding or isolate (U+202A to U+202E, U+2066 to U+2069)",
        ));
    }
    Ok(trimmed.to_owned())
}

macro_rules! text_value {
    ($(#[$doc:meta])* $name:ident, $field:literal, $max:expr, $multiline:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub const MAX_CHARS: usize = $max;

            pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
                text($field, raw, $max, $multiline).map(Self)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        string_conversions!($name);
    };
}

/// `TryFrom<String>` through `parse` and `From<Self> for String`, so serde goes through the one
/// validating constructor (with `#[serde(try_from = "String", into = "String")]` on the type).
macro_rules! string_conversions {
    ($name:ident) => {
        impl TryFrom<String> for $name {
            type Error = InvalidValue;
            fn try_from(raw: String) -> Result<Self, InvalidValue> {
                Self::parse(&raw)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }
    };
}
pub(crate) use string_conversions;

text_value!(
    /// A post's optional headline: one line of 1 to 120 visible characters. Invisible-only
    /// text counts as empty and bidi overrides are refused (module doc).
    PostTitle,
    "title",
    120,
    false
);
text_value!(
    /// A post's text: 1 to 10 000 characters, line breaks allowed. Invisible-only text counts
    /// as empty and bidi overrides are refused (module doc).
    PostBody,
    "body",
    10_000,
    true
);
text_value!(
    /// A comment's text: 1 to 2 000 characters, line breaks allowed. Invisible-only text
    /// counts as empty and bidi overrides are refused (module doc).
    CommentBody,
    "body",
    2_000,
    true
);

text_value!(
    /// What a reporter adds to a report's reason code: 1 to 1 000 characters, line breaks
    /// allowed; the module doc's rules.
    ReportText,
    "text",
    1_000,
    true
);
text_value!(
    /// A moderator's public note on an act, shown in the moderation log: one line of 1 to 300
    /// characters.
    ModerationNote,
    "note",
    300,
    false
);
text_value!(
    /// What a sanctioned author says in their appeal: 1 to 1 000 characters, line breaks
    /// allowed.
    AppealText,
    "text",
    1_000,
    true
);
text_value!(
    /// What a user calls one of their devices (`"Ann's phone"`), given at login: one line of 1
    /// to 60 visible characters. Invisible-only text counts as empty and bidi overrides are
    /// refused (module doc).
    DeviceLabel,
    "device",
    60,
    false
);

/// An e-mail address the mailer can deliver to, trimmed and lower-cased: the normalised form
/// is what must be unique.
///
/// Deliberately narrower than RFC 5322, so that every address accepted here is one the SMTP
/// transport and the outbox writer accept too (a property test in `infra/src/mail.rs` checks
/// it against lettre), and none of them points the mailer at an IP address:
/// - ASCII only; an internationalised domain is written in its `xn--` form;
/// - the local part is a dot-atom of RFC 5322 `atext` (letters, digits and
///   ``!#$%&'*+-/=?^_`{|}~``, single dots between them), at most 64 characters: no quoted
///   strings or comments;
/// - the domain is a host name of two or more labels of letters, digits and inner hyphens, each
///   at most 63 characters, the last not all digits: no `[literal]` and no dotted IPv4;
/// - at most 254 characters in all.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

impl Email {
    pub const MAX_CHARS: usize = 254;
    pub const MAX_LOCAL_CHARS: usize = 64;

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let s = raw.trim();
        let err = |r: &str| Err(invalid("email", r));
        if s.is_empty() || s.len() > Self::MAX_CHARS {
            return err("must be an e-mail address of at most 254 characters");
        }
        if !s.is_ascii() {
            return err("must be written in ASCII (an internationalised domain in its xn-- form)");
        }
        let s = s.to_ascii_lowercase();
        let Some((local, domain)) = s.rsplit_once('@') else {
            return err("must contain an @");
        };
        if local.len() > Self::MAX_LOCAL_CHARS || !is_dot_atom(local) {
            return err(
                "the part before the @ must be 1 to 64 letters, digits or !#$%&'*+-/=?^_`{|}~ \
                 with single dots between them",
            );
        }
        if !is_host_name(domain) {
            return err("the part after the @ must be a domain name such as example.org");
        }
        Ok(Self(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

string_conversions!(Email);

/// RFC 5322 `dot-atom-text` in ASCII.
fn is_dot_atom(s: &str) -> bool {
    let atext = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b);
    s.split('.')
        .all(|word| !word.is_empty() && word.bytes().all(atext))
}

/// A DNS host name of two or more LDH labels whose last label is not all digits.
fn is_host_name(s: &str) -> bool {
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let labels: Vec<&str> = s.split('.').collect();
    labels.len() >= 2
        && labels.iter().all(|l| label_ok(l))
        && labels
            .last()
            .is_some_and(|tld| !tld.bytes().all(|b| b.is_ascii_digit()))
}

/// A public user name: 3 to 32 letters, digits, `_` or `-`; unique case-insensitively.
///
/// Letters may come from any script, but a name must not mix scripts so that it passes for
/// another (`bоss` with a Cyrillic `о` beside `boss`): it must meet the *highly restrictive*
/// level of UTS #39 (one script, or Latin with Han and kana, Han and Bopomofo, or Han and
/// Hangul), and every character must be allowed in identifiers by UTS #39's General Security
/// Profile. So `boss`, `Иван`, `小明同学` and `小明_ming` are fine and `bоss` is refused.
/// Whole-script look-alikes (an all-Cyrillic `ѕсоре` beside `scope`) are not caught by this
/// rule. Invisible and bidi characters are not letters, so they are refused too.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Username(String);

impl Username {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let s = raw.trim();
        let n = s.chars().count();
        if !(3..=32).contains(&n) {
            return Err(invalid("username", "must be 3 to 32 characters long"));
        }
        if !s.chars().all(is_name_char) {
            return Err(invalid(
                "username",
                "may contain only letters, digits, '_' and '-'",
            ));
        }
        if !s.check_restriction_level(RestrictionLevel::HighlyRestrictive) {
            return Err(invalid(
                "username",
                "must not mix letters of different scripts (or use letters that only look like \
                 others), so that it cannot pass for another name",
            ));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The form that must be unique: case-folded.
    pub fn normalized(&self) -> String {
        self.0.to_lowercase()
    }
}

string_conversions!(Username);

/// A password as typed, checked for length only (NIST 800-63B: length beats composition rules).
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let n = raw.chars().count();
        if !(8..=128).contains(&n) {
            return Err(invalid("password", "must be 8 to 128 characters long"));
        }
        if raw.trim().is_empty() {
            return Err(invalid("password", "must not be only white space"));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(***)")
    }
}

/// A six-digit e-mail verification code.
#[derive(Clone, PartialEq, Eq)]
pub struct VerificationCode(String);

impl VerificationCode {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let s = raw.trim();
        if s.len() == 6 && s.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(s.to_owned()))
        } else {
            Err(invalid("code", "must be the 6 digits from the e-mail"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for VerificationCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VerificationCode(******)")
    }
}

/// A topic tag: lower-cased letters, digits, `_` or `-`, 1 to 24 characters (so no invisible or
/// bidi characters).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Tag(String);

impl Tag {
    pub const MAX_PER_POST: usize = 5;

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let s = raw.trim().trim_start_matches('#').to_lowercase();
        let n = s.chars().count();
        if !(1..=24).contains(&n) {
            return Err(invalid("tags", "each tag must be 1 to 24 characters long"));
        }
        if !s.chars().all(is_name_char) {
            return Err(invalid(
                "tags",
                "tags may contain only letters, digits, '_' and '-'",
            ));
        }
        Ok(Self(s))
    }

    /// Parses a post's tag list: at most five, duplicates folded, order kept.
    pub fn parse_list(raw: &[String]) -> Result<Vec<Tag>, InvalidValue> {
        let mut tags: Vec<Tag> = Vec::with_capacity(raw.len());
        for r in raw {
            let t = Tag::parse(r)?;
            if !tags.contains(&t) {
                tags.push(t);
            }
        }
        if tags.len() > Self::MAX_PER_POST {
            return Err(invalid(
                "tags",
                format!("at most {} tags are allowed", Self::MAX_PER_POST),
            ));
        }
        Ok(tags)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

string_conversions!(Tag);

/// A poll's options: 2 to 4, each 1 to 30 characters (trimmed), no two alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollOptions(Vec<String>);

impl PollOptions {
    pub const MIN: usize = 2;
    pub const MAX: usize = 4;
    pub const MAX_CHARS: usize = 30;

    pub fn parse(raw: &[String]) -> Result<Self, InvalidValue> {
        if !(Self::MIN..=Self::MAX).contains(&raw.len()) {
            return Err(invalid(
                "poll.options",
                format!(
                    "a poll has {} to {} options, not {}",
                    Self::MIN,
                    Self::MAX,
                    raw.len()
                ),
            ));
        }
        let mut options: Vec<String> = Vec::with_capacity(raw.len());
        for r in raw {
            let option = text("poll.options", r, Self::MAX_CHARS, false)?;
            if options
                .iter()
                .any(|o| o.to_lowercase() == option.to_lowercase())
            {
                return Err(invalid(
                    "poll.options",
                    format!("{option:?} is there twice"),
                ));
            }
            options.push(option);
        }
        Ok(Self(options))
    }

    pub fn as_slice(&self) -> &[String] {
        &self.0
    }
}

/// The name of a folder of favourites: 1 to 30 characters (trimmed), one line.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FolderName(String);

impl FolderName {
    pub const MAX_CHARS: usize = 30;

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        Ok(Self(text("folder", raw, Self::MAX_CHARS, false)?))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The authenticated user a command acts for, as the API resolved it from the session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub user_id: UserId,
    pub username: String,
    pub is_admin: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bodies_are_trimmed_and_bounded() {
        assert_eq!(PostBody::parse("  hi \n").unwrap().as_str(), "hi");
        assert!(PostBody::parse(" \n\t ").is_err());
        assert!(PostBody::parse(&"x".repeat(10_001)).is_err());
        assert!(PostBody::parse(&"字".repeat(10_000)).is_ok());
        assert!(CommentBody::parse("a\u{0}b").is_err());
        assert!(CommentBody::parse("line\nline").is_ok());
        assert!(PostTitle::parse("a\nb").is_err());
    }

    #[test]
    fn device_labels_are_one_trimmed_line_of_at_most_60_characters() {
        assert_eq!(
            DeviceLabel::parse("  Ann's phone ").unwrap().as_str(),
            "Ann's phone"
        );
        assert!(DeviceLabel::parse(&"机".repeat(60)).is_ok());
        assert!(DeviceLabel::parse(&"机".repeat(61)).is_err());
        for bad in [
            "",
            "  ",
            "\u{200B}",
            "two\nlines",
            "tab\there",
            "bell\u{7}",
            "\u{202E}evil",
        ] {
            assert!(DeviceLabel::parse(bad).is_err(), "{bad:?}");
        }
        let read: Result<DeviceLabel, _> = serde_json::from_str("\"\"");
        assert!(read.is_err(), "serde goes through parse");
    }

    #[test]
    fn emails_are_normalised() {
        assert_eq!(
            Email::parse(" Ann@Example.ORG ").unwrap().as_str(),
            "ann@example.org"
        );
        for bad in [
            "",
            "ann",
            "ann@",
            "@x.org",
            "ann@x",
            "a b@x.org",
            "ann@x..org",
            "a@b@c.org",
            "<a@b.org>",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn usernames_allow_any_script() {
        assert!(Username::parse("小明同学").is_ok());
        assert!(Username::parse("ann_b-1").is_ok());
        assert_eq!(Username::parse("Ann").unwrap().normalized(), "ann");
        for bad in ["ab", "a b c", "ann!", &"x".repeat(33)] {
            assert!(Username::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn codes_and_tags() {
        assert!(VerificationCode::parse("012345").is_ok());
        for bad in ["12345", "1234567", "12345a", ""] {
            assert!(VerificationCode::parse(bad).is_err());
        }
        let tags = Tag::parse_list(&["#Study".into(), "study".into(), "食堂".into()]).unwrap();
        assert_eq!(
            tags.iter().map(Tag::as_str).collect::<Vec<_>>(),
            ["study", "食堂"]
        );
        let six: Vec<String> = (0..6).map(|i| format!("t{i}")).collect();
        assert!(Tag::parse_list(&six).is_err());
        assert!(format!("{:?}", Password::parse("secret-pass").unwrap()).contains("***"));
    }

    const BIDI_OVERRIDES: [char; 9] = [
        '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}', '\u{2066}', '\u{2067}',
        '\u{2068}', '\u{2069}',
    ];

    /// Whether a validated type accepts a text.
    type Accepts = fn(&str) -> bool;

    /// Every validated text type, as one function each, so every rule is checked on all of them.
    fn text_parsers() -> [(&'static str, Accepts); 6] {
        [
            ("title", |s| PostTitle::parse(s).is_ok()),
            ("post body", |s| PostBody::parse(s).is_ok()),
            ("comment body", |s| CommentBody::parse(s).is_ok()),
            ("tag", |s| Tag::parse(s).is_ok()),
            ("username", |s| Username::parse(s).is_ok()),
            ("email", |s| Email::parse(s).is_ok()),
        ]
    }

    #[test]
    fn invisible_only_text_is_empty_everywhere() {
        for invisible in [
            "\u{200B}",
            "\u{200B}\u{200C}\u{200D}\u{2060}\u{FEFF}",
            " \u{00AD}\n\u{200B} ",
            "\u{3164}\u{3164}\u{3164}",
            "\u{FE0F}\u{FE0F}\u{FE0F}",
            "\u{E0041}\u{E0042}\u{E0043}",
            "\u{200F}\u{200E}\u{061C}",
        ] {
            for (what, parses) in text_parsers() {
                assert!(!parses(invisible), "{what} accepted {invisible:?}");
            }
        }
        // Between visible characters they are real text: an emoji ZWJ sequence, a Persian ZWNJ.
        assert!(PostBody::parse("\u{1F469}\u{200D}\u{1F4BB} at work").is_ok());
        assert!(
            CommentBody::parse("\u{0645}\u{06CC}\u{200C}\u{062E}\u{0648}\u{0627}\u{0647}\u{0645}")
                .is_ok()
        );
        assert!(PostTitle::parse("\u{05E9}\u{05DC}\u{05D5}\u{05DD} world").is_ok());
    }

    #[test]
    fn bidi_overrides_are_refused_everywhere() {
        for c in BIDI_OVERRIDES {
            for text in [
                format!("{c}gnp.exe"),
                format!("ann{c}bob"),
                format!("hello{c}"),
            ] {
                for (what, parses) in text_parsers() {
                    assert!(!parses(&text), "{what} accepted {text:?}");
                }
            }
        }
        let refused = PostTitle::parse("\u{202E}gnp.exe").unwrap_err();
        assert!(refused.reason.contains("bidi"), "{refused}");
        assert!(Email::parse("a\u{202E}@x.org").is_err());
    }

    #[test]
    fn serde_goes_through_parse() {
        let body: Result<PostBody, _> = serde_json::from_str(r#""\u202egnp.exe""#);
        assert!(body.is_err());
        let name: Result<Username, _> = serde_json::from_str("\"b\u{043E}ss\"");
        assert!(name.is_err());
        let tag: Tag = serde_json::from_str(r##""#Study""##).unwrap();
        assert_eq!(serde_json::to_string(&tag).unwrap(), r#""study""#);
        let email: Email = serde_json::from_str(r#"" Ann@X.org""#).unwrap();
        assert_eq!(email.as_str(), "ann@x.org");
    }

    #[test]
    fn invalid_emails_and_usernames_do_not_deserialize() {
        for bad in ["", "ann", "a@[127.0.0.1]", "a@1.2.3.4", "\"a b\"@x.org"] {
            let read: Result<Email, _> = serde_json::from_value(serde_json::json!(bad));
            assert!(read.is_err(), "{bad:?} deserialized as an e-mail");
        }
        for bad in [
            "ab",
            "ann!",
            "a b c",
            "p\u{0430}ypal",
            "\u{200B}\u{200B}\u{200B}",
        ] {
            let read: Result<Username, _> = serde_json::from_value(serde_json::json!(bad));
            assert!(read.is_err(), "{bad:?} deserialized as a username");
        }
        let name: Username = serde_json::from_str(r#"" Ann ""#).unwrap();
        assert_eq!(name.as_str(), "Ann");
    }

    #[test]
    fn emails_are_only_what_the_mailer_takes() {
        for good in [
            "a.b+c@sub.example.org",
            "o'brien@x.org",
            "x{y}|z~@x.org",
            "ann@xn--bcher-kva.de",
            "a@b.co",
            "a@1x.2y.org",
            "a@x-y.org",
        ] {
            assert!(Email::parse(good).is_ok(), "{good:?} refused");
        }
        let label = "x".repeat(64);
        let local = "x".repeat(65);
        for bad in [
            "a@[127.0.0.1]",
            "a@[ipv6:::1]",
            "a@127.0.0.1",
            "a@1.2.3.4",
            "a\u{202E}@x.org",
            "\u{00E4}@x.org",
            "a@b\u{00FC}cher.de",
            "\u{212A}@x.org",
            ".a@x.org",
            "a.@x.org",
            "a..b@x.org",
            "\"a b\"@x.org",
            "\"a\"@x.org",
            "(c)a@x.org",
            "a@-x.org",
            "a@x-.org",
            "a@x_y.org",
            "a@x.org.",
            &format!("a@{label}.org"),
            &format!("{local}@x.org"),
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(Email::parse(&format!("{}@x.org", "x".repeat(64))).is_ok());
        assert!(Email::parse(&format!("a@{}.org", "x".repeat(63))).is_ok());
    }

    #[test]
    fn usernames_do_not_mix_scripts() {
        for good in [
            "boss",
            "Boss",
            "\u{0418}\u{0432}\u{0430}\u{043D}",
            "\u{5C0F}\u{660E}_ming",
            "ann_b-1",
            "\u{3072}\u{3089}\u{304C}\u{306A}\u{6F22}\u{5B57}",
        ] {
            assert!(Username::parse(good).is_ok(), "{good:?} refused");
        }
        for bad in [
            "b\u{043E}ss",                      // Cyrillic o
            "p\u{0430}ypal",                    // Cyrillic a
            "\u{03B1}lpha_beta",                // Greek alpha, Latin rest
            "\u{FF42}\u{FF4F}\u{FF53}\u{FF53}", // fullwidth boss
        ] {
            assert!(Username::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    proptest! {
        #[test]
        fn parsed_text_has_something_visible_and_no_override(s in "[ a\u{200B}\u{200D}\u{202A}-\u{202E}\u{2066}-\u{2069}\u{FEFF}\n]{0,12}") {
            for text in [
                PostTitle::parse(&s).map(|v| v.0),
                PostBody::parse(&s).map(|v| v.0),
                CommentBody::parse(&s).map(|v| v.0),
            ]
            .into_iter()
            .flatten()
            {
                prop_assert!(text.chars().any(|c| !c.is_whitespace() && !is_invisible(c)));
                prop_assert!(!text.chars().any(is_bidi_override));
            }
        }

        #[test]
        fn parsed_bodies_are_never_blank_or_too_long(s in "\\PC{0,40}") {
            if let Ok(b) = CommentBody::parse(&s) {
                prop_assert!(!b.as_str().trim().is_empty());
                prop_assert_eq!(b.as_str(), b.as_str().trim());
            }
        }

        #[test]
        fn parsed_emails_are_stable_under_reparse(local in "[a-z0-9]{1,10}(\\.[a-z0-9]{1,9})?", domain in "[a-z]{1,10}\\.[a-z]{2,5}") {
            let e = Email::parse(&format!("{local}@{domain}")).unwrap();
            prop_assert_eq!(Email::parse(e.as_str()).unwrap(), e);
        }
    }
}
