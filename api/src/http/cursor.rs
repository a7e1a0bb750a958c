//! Opaque list cursors: clients pass back what they were given and never build one.
//!
//! A cursor is sealed and tied to its list: it is `base64url(text ‖ tag)`, where `tag` is the
//! first 16 bytes of an HMAC-SHA256 over the list's name and the text, under a key derived
//! from the server key. A cursor that was truncated, edited or built by a client, or that
//! another list handed out (the feed's, another post's comments', another user's tasks',
//! another search query's), fails the check and is a 400, never a page of something else.
//! Replicas share the server key (`secret`), so a cursor from one works on another; a new
//! server key ends every cursor in flight, which costs a client a restart from page one.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use domain::keyed_hash::{KeyedHash, keyed_hash};
use domain::{Position, PostId, UserId};
use projections::search::SearchCursor;

use crate::http::error::ApiError;

/// Bytes of the tag kept in a cursor (128 bits: not worth guessing).
const TAG_BYTES: usize = 16;

/// The list a cursor pages through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum List<'a> {
    /// `GET /posts`.
    Feed,
    /// `GET /posts/{id}/comments` of this post.
    Comments(PostId),
    /// `GET /tasks` of this user.
    Tasks(UserId),
    /// `GET /search` of the query with this fingerprint (its words and tag).
    Search(&'a str),
    /// `GET /me/following` of this user.
    Following(UserId),
    /// `GET /me/notifications` of this user.
    Notifications(UserId),
    /// `GET /me/favourites` of this user (and folder).
    Favourites(UserId),
}

impl List<'_> {
    fn name(&self) -> String {
        match self {
            List::Feed => "feed".into(),
            List::Comments(post) => format!("comments:{post}"),
            List::Tasks(user) => format!("tasks:{user}"),
            List::Search(fingerprint) => format!("search:{fingerprint}"),
            List::Following(user) => format!("following:{user}"),
            List::Notifications(user) => format!("notifications:{user}"),
            List::Favourites(user) => format!("favourites:{user}"),
        }
    }
}

/// Seals and opens the cursors of one list.
pub struct Cursors {
    mac: KeyedHash,
}

impl Cursors {
    /// The cursors of `list`, under a key derived from the server key `secret` (so that the
    /// key of verification codes and webhooks is never used for anything else directly).
    pub fn new(secret: &[u8], list: List<'_>) -> Self {
        let key = keyed_hash(secret, &[b"treehole list cursors v1"]);
        let mut mac = KeyedHash::new(&key);
        mac.update(list.name().as_bytes()).update(&[0]);
        Self { mac }
    }

    fn seal(&self, text: &str) -> String {
        let mut mac = self.mac.clone();
        mac.update(text.as_bytes());
        let tag = mac.finish();
        let mut sealed = text.as_bytes().to_vec();
        sealed.extend_from_slice(&tag[..TAG_BYTES]);
        URL_SAFE_NO_PAD.encode(sealed)
    }

    /// The text of a cursor this list sealed; `None` for anything else.
    fn open(&self, cursor: &str) -> Option<String> {
        let sealed = URL_SAFE_NO_PAD.decode(cursor).ok()?;
        let split = sealed.len().checked_sub(TAG_BYTES)?;
        let (text, tag) = sealed.split_at(split);
        let mut mac = self.mac.clone();
        mac.update(text);
        if !mac.verify_prefix(tag) {
            return None;
        }
        String::from_utf8(text.to_vec()).ok()
    }

    /// A cursor after `position` in a list ordered by position.
    pub fn encode(&self, position: Position) -> String {
        self.seal(&format!("p1:{position}"))
    }

    pub fn decode(&self, cursor: &str) -> Result<Position, ApiError> {
        self.open(cursor)
            .and_then(|text| text.strip_prefix("p1:")?.parse().ok())
            .ok_or_else(|| ApiError::bad_request("cursor: not a cursor this list returned"))
    }

    /// A cursor after a search hit (use the cursors of [`List::Search`]).
    pub fn encode_search(&self, c: &SearchCursor) -> String {
        self.seal(&format!(
            "s1:{}:{:08x}:{}",
            c.offset,
            c.score.to_bits(),
            c.post_position
        ))
    }

    pub fn decode_search(&self, cursor: &str) -> Result<SearchCursor, ApiError> {
        let parse = || {
            let text = self.open(cursor)?;
            let parts: Vec<&str> = text.split(':').collect();
            let ["s1", offset, score, position] = parts.as_slice() else {
                return None;
            };
            Some(SearchCursor {
                offset: offset.parse().ok()?,
                score: f32::from_bits(u32::from_str_radix(score, 16).ok()?),
                post_position: position.parse().ok()?,
            })
        };
        parse().ok_or_else(|| ApiError::bad_request("cursor: not a cursor of this query"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn post(n: u128) -> PostId {
        PostId::new(Uuid::from_u128(n))
    }

    #[test]
    fn a_cursor_round_trips_on_its_own_list_only() {
        let feed = Cursors::new(KEY, List::Feed);
        assert_eq!(feed.decode(&feed.encode(42)).unwrap(), 42);
        let lists = [
            List::Comments(post(1)),
            List::Comments(post(2)),
            List::Tasks(UserId::new(Uuid::from_u128(1))),
            List::Search("ab12"),
        ];
        for list in lists {
            let other = Cursors::new(KEY, list);
            assert!(other.decode(&feed.encode(42)).is_err(), "{list:?}");
            assert!(feed.decode(&other.encode(42)).is_err(), "{list:?}");
        }
        // Another server key opens nothing of this one's.
        let elsewhere = Cursors::new(b"another key", List::Feed);
        assert!(elsewhere.decode(&feed.encode(42)).is_err());
    }

    #[test]
    fn truncated_edited_and_hand_made_cursors_are_refused() {
        let feed = Cursors::new(KEY, List::Feed);
        let cursor = feed.encode(1234);
        for n in 1..cursor.len() {
            assert!(feed.decode(&cursor[..n]).is_err(), "{n}");
        }
        let mut bytes = URL_SAFE_NO_PAD.decode(&cursor).unwrap();
        bytes[3] ^= 1;
        assert!(feed.decode(&URL_SAFE_NO_PAD.encode(&bytes)).is_err());
        for forged in ["42", "!!", "", &URL_SAFE_NO_PAD.encode("p1:5")] {
            assert!(feed.decode(forged).is_err(), "{forged:?}");
        }
    }

    #[test]
    fn search_cursors_round_trip_and_belong_to_their_query() {
        let c = SearchCursor {
            offset: 40,
            score: 1.25,
            post_position: 77,
        };
        let query = Cursors::new(KEY, List::Search("ab12"));
        assert_eq!(query.decode_search(&query.encode_search(&c)).unwrap(), c);
        let other = Cursors::new(KEY, List::Search("cd34"));
        assert!(other.decode_search(&query.encode_search(&c)).is_err());
        assert!(query.decode_search("garbage").is_err());
        assert!(query.decode_search(&query.encode(42)).is_err());
    }
}
