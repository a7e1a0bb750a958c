//! Opaque list cursors: clients pass back what they were given and never build one.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use domain::Position;
use projections::search::SearchCursor;

use crate::error::ApiError;

fn seal(text: &str) -> String {
    URL_SAFE_NO_PAD.encode(text)
}

fn unseal(cursor: &str) -> Option<String> {
    String::from_utf8(URL_SAFE_NO_PAD.decode(cursor).ok()?).ok()
}

/// A cursor after `position` in a list ordered by position.
pub fn encode(position: Position) -> String {
    seal(&format!("p1:{position}"))
}

pub fn decode(cursor: &str) -> Result<Position, ApiError> {
    unseal(cursor)
        .and_then(|text| text.strip_prefix("p1:")?.parse().ok())
        .ok_or_else(|| ApiError::bad_request("cursor: not a cursor this API returned"))
}

/// A cursor after a search hit, valid only for the query `fingerprint` names.
pub fn encode_search(c: &SearchCursor, fingerprint: &str) -> String {
    seal(&format!(
        "s1:{fingerprint}:{}:{:08x}:{}",
        c.offset,
        c.score.to_bits(),
        c.post_position
    ))
}

pub fn decode_search(cursor: &str, fingerprint: &str) -> Result<SearchCursor, ApiError> {
    let parse = || {
        let text = unseal(cursor)?;
        let parts: Vec<&str> = text.split(':').collect();
        let ["s1", fp, offset, score, position] = parts.as_slice() else {
            return None;
        };
        (*fp == fingerprint).then_some(())?;
        Some(SearchCursor {
            offset: offset.parse().ok()?,
            score: f32::from_bits(u32::from_str_radix(score, 16).ok()?),
            post_position: position.parse().ok()?,
        })
    };
    parse().ok_or_else(|| ApiError::bad_request("cursor: not a cursor of this query"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        assert_eq!(decode(&encode(42)).unwrap(), 42);
        assert!(decode("42").is_err());
        assert!(decode("!!").is_err());
    }

    #[test]
    fn search_cursors_round_trip_and_belong_to_their_query() {
        let c = SearchCursor {
            offset: 40,
            score: 1.25,
            post_position: 77,
        };
        assert_eq!(
            decode_search(&encode_search(&c, "ab12"), "ab12").unwrap(),
            c
        );
        assert!(decode_search(&encode_search(&c, "ab12"), "cd34").is_err());
        assert!(decode_search("garbage", "ab12").is_err());
        assert!(decode_search(&encode(42), "ab12").is_err());
    }
}
