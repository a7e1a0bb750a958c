//! Personal data in events: in clear in memory, sealed in the log (crypto-shredding).
//!
//! A [`Personal`] value names the data key that protects it ([`KeyRef`]) and holds the value
//! itself while it is known. Serialised by the domain it is an *open* marker,
//! `{"$personal": {"key": ..., "value": ...}}`, which never reaches a store: the sealing store of
//! the write side (`commands::sealed`) replaces each one with a *sealed* value,
//! `{"$sealed": {"key": ..., "ct": ...}}`, before the append, and turns sealed values back into
//! open markers on read while the key exists. A sealed value read without its key (a destroyed
//! key, or a reader without the key store) decodes as a value that is not known: the
//! "deleted user" case, never an error.
//!
//! The key reference is a user id only where the user is public anyway (their own stream, named
//! content). The author of anonymous content is referenced by an [`AuthorToken`], which is
//! unique per post and user and says nothing without the key store.

use std::fmt;

use serde::de::{self, DeserializeOwned};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::ids::UserId;

/// The JSON key of an open personal value.
pub const OPEN: &str = "$personal";
/// The JSON key of a sealed personal value.
pub const SEALED: &str = "$sealed";

/// Which data key protects a value: a user id, or a handle the key store resolves to one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyRef(String);

impl KeyRef {
    /// The key of a user, named openly.
    pub fn user(user: UserId) -> Self {
        Self(user.to_string())
    }

    /// An opaque handle (an author token, a reservation handle).
    pub fn handle(handle: impl Into<String>) -> Self {
        Self(handle.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The user named openly, if this reference is a user id rather than a handle.
    pub fn as_user(&self) -> Option<UserId> {
        uuid::Uuid::parse_str(&self.0).ok().map(UserId::new)
    }
}

impl fmt::Display for KeyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One user's mark on one post: a keyed hash of the post and the user, under the user's own
/// data key, computed by the write side. Equal tokens under one post mean one author; tokens
/// under two posts cannot be compared, and once the user's key is destroyed nobody can compute
/// them again.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AuthorToken(String);

impl AuthorToken {
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The stand-in token of an anonymous item written before tokens existed (schema 1), which
    /// carried the author's id in clear.
    pub fn legacy(user: UserId) -> Self {
        Self(format!("legacy-{user}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn key_ref(&self) -> KeyRef {
        KeyRef::handle(self.0.clone())
    }
}

/// One user's mark on one item for one purpose (a reaction to a post or to a comment, a vote
/// in a post's poll): a keyed hash of purpose, item and user under the user's own data key,
/// computed by the write side, like an [`AuthorToken`] but per item and purpose, so that the
/// log tells neither who reacted or voted nor which marks are one user's; it only lets that
/// user's later acts on the item be told apart from others'. Once the user's key is destroyed
/// nobody can compute it again.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ItemHandle(String);

impl ItemHandle {
    pub fn new(handle: impl Into<String>) -> Self {
        Self(handle.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A personal value and the key that protects it; `value` is `None` when it cannot be read
/// (its key was destroyed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Personal<T> {
    key: KeyRef,
    value: Option<T>,
}

impl<T> Personal<T> {
    pub fn new(key: KeyRef, value: T) -> Self {
        Self {
            key,
            value: Some(value),
        }
    }

    /// A value whose key is gone.
    pub fn shredded(key: KeyRef) -> Self {
        Self { key, value: None }
    }

    pub fn key(&self) -> &KeyRef {
        &self.key
    }

    /// The value, if it can still be read.
    pub fn get(&self) -> Option<&T> {
        self.value.as_ref()
    }

    pub fn into_inner(self) -> Option<T> {
        self.value
    }
}

#[derive(Serialize)]
struct OpenOut<'a, T> {
    key: &'a KeyRef,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<&'a T>,
}

impl<T: Serialize> Serialize for Personal<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(1))?;
        map.serialize_entry(
            OPEN,
            &OpenOut {
                key: &self.key,
                value: self.value.as_ref(),
            },
        )?;
        map.end()
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Personal<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let Value::Object(mut map) = Value::deserialize(d)? else {
            return Err(de::Error::custom("a personal value is an object"));
        };
        let inner = |v: Value| match v {
            Value::Object(m) => Ok(m),
            _ => Err(de::Error::custom("a personal value holds an object")),
        };
        if let Some(open) = map.remove(OPEN) {
            let mut open = inner(open)?;
            let key: KeyRef = serde_json::from_value(open.remove("key").unwrap_or(Value::Null))
                .map_err(de::Error::custom)?;
            let value = match open.remove("value") {
                Some(v) => Some(serde_json::from_value(v).map_err(de::Error::custom)?),
                None => None,
            };
            Ok(Self { key, value })
        } else if let Some(sealed) = map.remove(SEALED) {
            // Read without the key store: the value is not known here.
            let mut sealed = inner(sealed)?;
            let key: KeyRef = serde_json::from_value(sealed.remove("key").unwrap_or(Value::Null))
                .map_err(de::Error::custom)?;
            Ok(Self { key, value: None })
        } else {
            Err(de::Error::custom(format!(
                "a personal value is {{\"{OPEN}\": ...}} or {{\"{SEALED}\": ...}}"
            )))
        }
    }
}

/// Calls `f` on every open or sealed personal value in `data` (depth first), with the object
/// that holds it: `f` gets the tag ([`OPEN`] or [`SEALED`]) and the inner object, and may
/// replace the whole value.
pub fn visit_mut<E>(
    data: &mut Value,
    f: &mut impl FnMut(&str, &mut Value) -> Result<(), E>,
) -> Result<(), E> {
    match data {
        Value::Object(map) => {
            if map.len() == 1
                && let Some(tag) = [OPEN, SEALED].into_iter().find(|t| map.contains_key(*t))
            {
                return f(tag, data);
            }
            for v in map.values_mut() {
                visit_mut(v, f)?;
            }
            Ok(())
        }
        Value::Array(items) => {
            for v in items {
                visit_mut(v, f)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Whether `data` holds a sealed value anywhere.
pub fn has_sealed(data: &Value) -> bool {
    match data {
        Value::Object(map) => {
            (map.len() == 1 && map.contains_key(SEALED)) || map.values().any(has_sealed)
        }
        Value::Array(items) => items.iter().any(has_sealed),
        _ => false,
    }
}

/// Replaces every personal value in `data`, open or sealed, by `{"$sealed": {"key": "..."}}`
/// without its ciphertext or value: what readers without the key store may see (the
/// pseudonymised export).
pub fn strip(data: &mut Value) {
    let _ = visit_mut::<()>(data, &mut |tag, v| {
        let key = v[tag]["key"].clone();
        *v = serde_json::json!({ SEALED: { "key": key } });
        Ok(())
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[test]
    fn open_values_round_trip_and_sealed_ones_decode_unknown() {
        let user = UserId::new(Uuid::from_u128(7));
        let p = Personal::new(KeyRef::user(user), "ann@campus.edu".to_owned());
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json[OPEN]["value"], "ann@campus.edu");
        assert_eq!(serde_json::from_value::<Personal<String>>(json).unwrap(), p);
        let sealed = serde_json::json!({ SEALED: { "key": user.to_string(), "ct": "xyz" } });
        let back: Personal<String> = serde_json::from_value(sealed).unwrap();
        assert_eq!(back.get(), None);
        assert_eq!(back.key().as_user(), Some(user));
        assert!(serde_json::from_value::<Personal<String>>(serde_json::json!("x")).is_err());
    }

    #[test]
    fn strip_removes_values_and_ciphertexts() {
        let mut data = serde_json::json!({
            "a": { OPEN: { "key": "k", "value": "secret" } },
            "b": [{ SEALED: { "key": "h", "ct": "c" } }],
            "c": 1,
        });
        strip(&mut data);
        let text = data.to_string();
        assert!(
            !text.contains("secret") && !text.contains("\"ct\""),
            "{text}"
        );
        assert_eq!(data["c"], 1);
    }
}
