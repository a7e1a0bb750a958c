//! Validated values: *parse, don't validate*. Each type's only constructor is `parse`, so every
//! value inside the program is already valid and nothing downstream checks again.

use serde::{Deserialize, Serialize};

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

/// Trims, then checks length in characters, blankness and control characters. Line breaks and
/// tabs are allowed only where `multiline` is set.
fn text(
    field: &'static str,
    raw: &str,
    max: usize,
    multiline: bool,
) -> Result<String, InvalidValue> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(invalid(field, "must not be empty or only white space"));
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
    Ok(trimmed.to_owned())
}

macro_rules! text_value {
    ($(#[$doc:meta])* $name:ident, $field:literal, $max:expr, $multiline:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
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
    };
}

text_value!(
    /// A post's optional headline.
    PostTitle,
    "title",
    120,
    false
);
text_value!(
    /// A post's text.
    PostBody,
    "body",
    10_000,
    true
);
text_value!(
    /// A comment's text.
    CommentBody,
    "body",
    2_000,
    true
);

/// An e-mail address, trimmed and lower-cased: the normalised form is what must be unique.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let s = raw.trim().to_lowercase();
        let err = |r: &str| Err(invalid("email", r));
        if s.is_empty() || s.len() > 254 {
            return err("must be an e-mail address of at most 254 characters");
        }
        if s.chars().any(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',' | ';' | '"')
        }) {
            return err("must not contain spaces, quotes or separators");
        }
        let Some((local, domain)) = s.split_once('@') else {
            return err("must contain an @");
        };
        let labels_ok = domain.split('.').count() >= 2
            && domain
                .split('.')
                .all(|l| !l.is_empty() && !l.starts_with('-') && !l.ends_with('-'));
        if local.is_empty() || local.len() > 64 || domain.contains('@') || !labels_ok {
            return err("is not a valid address (expected name@domain.tld)");
        }
        Ok(Self(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A public user name: 3 to 32 letters (any script), digits, `_` or `-`. Unique case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Username(String);

impl Username {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let s = raw.trim();
        let n = s.chars().count();
        if !(3..=32).contains(&n) {
            return Err(invalid("username", "must be 3 to 32 characters long"));
        }
        if !s
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
        {
            return Err(invalid(
                "username",
                "may contain only letters, digits, '_' and '-'",
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

/// A topic tag: lower-cased letters, digits, `_` or `-`, 1 to 24 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Tag(String);

impl Tag {
    pub const MAX_PER_POST: usize = 5;

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let s = raw.trim().trim_start_matches('#').to_lowercase();
        let n = s.chars().count();
        if !(1..=24).contains(&n) {
            return Err(invalid("tags", "each tag must be 1 to 24 characters long"));
        }
        if !s
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
        {
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

    proptest! {
        #[test]
        fn parsed_bodies_are_never_blank_or_too_long(s in "\\PC{0,40}") {
            if let Ok(b) = CommentBody::parse(&s) {
                prop_assert!(!b.as_str().trim().is_empty());
                prop_assert_eq!(b.as_str(), b.as_str().trim());
            }
        }

        #[test]
        fn parsed_emails_are_stable_under_reparse(local in "[a-z0-9.]{1,20}", domain in "[a-z]{1,10}\\.[a-z]{2,5}") {
            let e = Email::parse(&format!("{local}@{domain}")).unwrap();
            prop_assert_eq!(Email::parse(e.as_str()).unwrap(), e);
        }
    }
}
