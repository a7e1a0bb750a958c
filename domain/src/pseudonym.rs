//! The pseudonym rule of a tree hole.
//!
//! Under one post, the post's author commenting anonymously appears as the host name (default
//! `洞主`). Every other anonymous commenter gets the next unused name of a fixed, ordered scheme,
//! in the order of their first anonymous comment: 26 given names (Alice ... Zach), then 676
//! "Adjective Name" pairs (Angry Alice, Angry Bob, ..., Zealous Zach), then a numbered overflow
//! (Alice 2, Bob 2, ..., Zach 2, Alice 3, ...). The Post aggregate records the name in the event;
//! a user keeps it under that post forever and no two users ever share one.

use serde::{Deserialize, Serialize};

pub const DEFAULT_HOST_NAME: &str = "洞主";

pub const DEFAULT_NAMES: [&str; 26] = [
    "Alice", "Bob", "Carol", "Dave", "Eve", "Francis", "Grace", "Hans", "Isabella", "Jason",
    "Kate", "Louis", "Margaret", "Nathan", "Olivia", "Paul", "Queen", "Richard", "Susan", "Thomas",
    "Uma", "Vivian", "Winnie", "Xander", "Yasmine", "Zach",
];

pub const DEFAULT_ADJECTIVES: [&str; 26] = [
    "Angry", "Brave", "Clever", "Dizzy", "Eager", "Fancy", "Gentle", "Happy", "Icy", "Jolly",
    "Kind", "Lucky", "Merry", "Nimble", "Odd", "Proud", "Quiet", "Rapid", "Sleepy", "Tiny",
    "Upbeat", "Vivid", "Witty", "Xenial", "Young", "Zealous",
];

/// A configured naming scheme. Build it with [`PseudonymScheme::new`], which rejects schemes
/// that could hand two users the same name.
///
/// Shared, not copied: every batch of post commands clones the aggregate's services.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PseudonymScheme {
    host_name: std::sync::Arc<str>,
    names: std::sync::Arc<[String]>,
    adjectives: std::sync::Arc<[String]>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid pseudonym scheme: {0}")]
pub struct InvalidScheme(String);

impl Default for PseudonymScheme {
    fn default() -> Self {
        Self::new(
            DEFAULT_HOST_NAME,
            DEFAULT_NAMES.iter().map(|s| s.to_string()).collect(),
            DEFAULT_ADJECTIVES.iter().map(|s| s.to_string()).collect(),
        )
        .expect("the default scheme is valid")
    }
}

impl PseudonymScheme {
    /// Checks that every generated name is distinct from every other and from the host name:
    /// names and adjectives are non-empty, unique, free of spaces and digits-only words, and no
    /// adjective is also a name.
    pub fn new(
        host_name: impl Into<String>,
        names: Vec<String>,
        adjectives: Vec<String>,
    ) -> Result<Self, InvalidScheme> {
        let host_name = host_name.into();
        if host_name.trim().is_empty() {
            return Err(InvalidScheme("the host name is empty".into()));
        }
        if names.is_empty() {
            return Err(InvalidScheme("the name list is empty".into()));
        }
        let word_ok = |w: &String| {
            !w.is_empty()
                && !w.contains(char::is_whitespace)
                && !w.chars().all(|c| c.is_ascii_digit())
        };
        for list in [&names, &adjectives] {
            if !list.iter().all(word_ok) {
                return Err(InvalidScheme(
                    "names and adjectives must be single words, not numbers".into(),
                ));
            }
            let mut sorted = list.clone();
            sorted.sort();
            sorted.dedup();
            if sorted.len() != list.len() {
                return Err(InvalidScheme("a name or adjective is listed twice".into()));
            }
        }
        if adjectives.iter().any(|a| names.contains(a)) {
            return Err(InvalidScheme(
                "a word is both a name and an adjective".into(),
            ));
        }
        let has = |list: &[String], w: &str| list.iter().any(|x| x == w);
        let collides = has(&names, &host_name)
            || host_name.split_once(' ').is_some_and(|(a, b)| {
                (has(&adjectives, a) && has(&names, b))
                    || (has(&names, a) && b.parse::<usize>().is_ok())
            });
        if collides {
            return Err(InvalidScheme(
                "the host name collides with a generated name".into(),
            ));
        }
        Ok(Self {
            host_name: host_name.into(),
            names: names.into(),
            adjectives: adjectives.into(),
        })
    }

    pub fn host_name(&self) -> &str {
        &self.host_name
    }

    /// Whether a username could be mistaken for a pseudonym or the host name (compared
    /// case-insensitively). Generated names with a space can never be usernames, so only the
    /// single-word names and the host name need reserving.
    pub fn is_reserved(&self, username: &str) -> bool {
        let u = username.to_lowercase();
        u == self.host_name.to_lowercase() || self.names.iter().any(|n| n.to_lowercase() == u)
    }

    /// The name handed to the `index`-th distinct anonymous commenter (0-based) of a post.
    pub fn name_at(&self, index: usize) -> String {
        let n = self.names.len();
        if index < n {
            return self.names[index].clone();
        }
        let paired = self.adjectives.len() * n;
        let i = index - n;
        if i < paired {
            return format!("{} {}", self.adjectives[i / n], self.names[i % n]);
        }
        let k = i - paired;
        format!("{} {}", self.names[k % n], k / n + 2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn the_default_order() {
        let s = PseudonymScheme::default();
        assert_eq!(s.host_name(), "洞主");
        assert_eq!(s.name_at(0), "Alice");
        assert_eq!(s.name_at(25), "Zach");
        assert_eq!(s.name_at(26), "Angry Alice");
        assert_eq!(s.name_at(27), "Angry Bob");
        assert_eq!(s.name_at(26 + 26 * 26 - 1), "Zealous Zach");
        assert_eq!(s.name_at(26 + 26 * 26), "Alice 2");
        assert_eq!(s.name_at(26 + 26 * 26 + 26), "Alice 3");
    }

    #[test]
    fn the_first_five_thousand_names_are_distinct_and_never_the_host() {
        let s = PseudonymScheme::default();
        let names: HashSet<String> = (0..5_000).map(|i| s.name_at(i)).collect();
        assert_eq!(names.len(), 5_000);
        assert!(!names.contains(s.host_name()));
    }

    #[test]
    fn pseudonyms_and_the_host_name_are_reserved_usernames() {
        let s = PseudonymScheme::default();
        for taken in ["Alice", "alice", "ZACH", "洞主"] {
            assert!(s.is_reserved(taken), "{taken}");
        }
        for free in ["Alicia", "Angry", "ann"] {
            assert!(!s.is_reserved(free), "{free}");
        }
    }

    #[test]
    fn schemes_that_could_collide_are_rejected() {
        let w = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(PseudonymScheme::new("洞主", w(&[]), w(&[])).is_err());
        assert!(PseudonymScheme::new("洞主", w(&["A", "A"]), w(&[])).is_err());
        assert!(PseudonymScheme::new("洞主", w(&["A", "B"]), w(&["B"])).is_err());
        assert!(PseudonymScheme::new("A", w(&["A", "B"]), w(&[])).is_err());
        assert!(PseudonymScheme::new("Big A", w(&["A", "B"]), w(&["Big"])).is_err());
        assert!(PseudonymScheme::new("B 3", w(&["A", "B"]), w(&[])).is_err());
        assert!(PseudonymScheme::new("洞主", w(&["A", "7"]), w(&[])).is_err());
        assert!(PseudonymScheme::new("OP", w(&["A", "B"]), w(&["Big"])).is_ok());
    }
}
