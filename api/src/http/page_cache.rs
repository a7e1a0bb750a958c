//! Public pages (the feed, a post, a post's comments) kept as the JSON bytes they were answered
//! with, for as long as the read models they were read from have not moved.
//!
//! A page read while the named projections stood at a [`Stamp`] (each one's position and live
//! generation, as this process's projectors report them after each commit) is answered again
//! from memory while the stamp is the same: the rows it was read from have not changed since,
//! or have changed only towards a newer position, which the `X-Projection-Position` header
//! allows (an answer includes *at least* that position). Any applied batch or promotion of
//! those projections moves the stamp, and the next request reads SQL again.
//!
//! Only projections this process runs count: a model built by another process (Kafka-fed
//! workers) is observed by polling, and its rows can move before the stamp does, so pages of
//! it are never kept. The pages hold only what every caller gets (no caller-specific field),
//! so a kept page tells nobody anything a fresh read would not.

use std::num::NonZeroUsize;
use std::sync::Mutex;

use axum::body::Bytes;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use domain::Position;
use lru::LruCache;
use projections::runner::ProjectionHub;
use serde::Serialize;

use crate::http::error::ApiError;

/// Pages kept at most; the least recently used go first.
pub const CAPACITY: usize = 1024;
/// Bytes kept at most, all pages together (the least recently used go first).
const BUDGET: usize = 32 * 1024 * 1024;
/// A larger answer is not kept (a page of 100 long posts).
const LARGEST: usize = 256 * 1024;

/// Where the projections a page was read from stood: position and generation of each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp(Vec<(Position, u32)>);

pub struct PageCache {
    /// The projections this process runs (only their pages are kept).
    runs: Vec<&'static str>,
    pages: Mutex<Pages>,
}

/// The kept pages and the bytes they hold.
struct Pages {
    lru: LruCache<String, (Stamp, Bytes)>,
    bytes: usize,
}

impl PageCache {
    /// A cache for the pages of the projections in `runs`.
    pub fn new(runs: Vec<&'static str>, capacity: usize) -> Self {
        Self {
            runs,
            pages: Mutex::new(Pages {
                lru: LruCache::new(NonZeroUsize::new(capacity.max(1)).expect("at least one")),
                bytes: 0,
            }),
        }
    }

    /// The stamp of `names` now, or `None` when one of them is not run here.
    pub fn stamp(&self, hub: &ProjectionHub, names: &[&str]) -> Option<Stamp> {
        names
            .iter()
            .all(|n| self.runs.contains(n))
            .then(|| Stamp(hub.stamp(names)))
    }

    /// What a page handler does first: the page kept under `key` if the projections in
    /// `names` have not moved since it was read (`Err`, the body to answer with), else the
    /// stamp to keep the fresh read under (`Ok`, `None` when these projections are not run here).
    pub fn lookup(
        &self,
        hub: &ProjectionHub,
        names: &[&str],
        key: &str,
    ) -> Result<Option<Stamp>, Bytes> {
        let stamp = self.stamp(hub, names);
        match stamp.as_ref().and_then(|s| self.get(key, s)) {
            Some(body) => Err(body),
            None => Ok(stamp),
        }
    }

    /// The page kept under `key`, if it was read at `stamp`.
    pub fn get(&self, key: &str, stamp: &Stamp) -> Option<Bytes> {
        let mut pages = self.pages.lock().expect("page cache");
        match pages.lru.get(key) {
            Some((kept, body)) if kept == stamp => Some(body.clone()),
            _ => None,
        }
    }

    /// Serialises `page` and keeps it under `key` when there is a `stamp`; the answer either way.
    pub fn answer<T: Serialize>(
        &self,
        key: String,
        stamp: Option<Stamp>,
        position: Position,
        page: &T,
    ) -> Result<Response, ApiError> {
        let body = Bytes::from(
            serde_json::to_vec(page).map_err(|e| ApiError::internal(format!("json: {e}")))?,
        );
        if let Some(stamp) = stamp
            && body.len() <= LARGEST
        {
            let mut pages = self.pages.lock().expect("page cache");
            pages.bytes += body.len();
            let Pages { lru, bytes } = &mut *pages;
            if let Some((_, (_, old))) = lru.push(key, (stamp, body.clone())) {
                *bytes -= old.len();
            }
            while *bytes > BUDGET {
                match lru.pop_lru() {
                    Some((_, (_, old))) => *bytes -= old.len(),
                    None => break,
                }
            }
        }
        Ok(json(position, body))
    }
}

/// A JSON answer with the projection position header, as `Json` and `projection_headers` give.
pub fn json(position: Position, body: Bytes) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (
                header::HeaderName::from_static("x-projection-position"),
                HeaderValue::from(position),
            ),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub() -> ProjectionHub {
        let (_, head) = tokio::sync::watch::channel(0);
        ProjectionHub::new(&projections::all(), head)
    }

    #[test]
    fn only_projections_run_here_have_a_stamp() {
        let hub = hub();
        let cache = PageCache::new(vec!["feed"], 8);
        assert!(cache.stamp(&hub, &["feed"]).is_some());
        assert!(cache.stamp(&hub, &["feed", "comments"]).is_none());
        assert!(PageCache::new(vec![], 8).stamp(&hub, &["feed"]).is_none());
    }

    #[test]
    fn a_page_is_answered_only_at_the_stamp_it_was_read_at() {
        let cache = PageCache::new(vec!["feed"], 8);
        let read_at = Stamp(vec![(7, 1)]);
        cache
            .answer("feed".into(), Some(read_at.clone()), 7, &json_value())
            .expect("answer");
        assert_eq!(
            cache.get("feed", &read_at).as_deref(),
            Some(&b"{\"n\":1}"[..])
        );
        assert_eq!(cache.get("feed", &Stamp(vec![(8, 1)])), None, "moved on");
        assert_eq!(cache.get("feed", &Stamp(vec![(7, 2)])), None, "promoted");
        assert_eq!(cache.get("post", &read_at), None);
        // Without a stamp (a model built elsewhere) nothing is kept.
        let other = PageCache::new(vec![], 8);
        other
            .answer("feed".into(), None, 7, &json_value())
            .expect("answer");
        assert_eq!(other.pages.lock().expect("lock").lru.len(), 0);
    }

    #[test]
    fn kept_bytes_stay_within_the_budget_and_are_counted_exactly() {
        let cache = PageCache::new(vec!["feed"], CAPACITY);
        let page = "x".repeat(200 * 1024);
        let stamp = Stamp(vec![(1, 1)]);
        for n in 0..400 {
            cache
                .answer(format!("page {n}"), Some(stamp.clone()), 1, &page)
                .expect("answer");
        }
        // The same key again replaces its page, and counts once.
        cache
            .answer("page 399".into(), Some(stamp.clone()), 1, &page)
            .expect("answer");
        let pages = cache.pages.lock().expect("lock");
        let held: usize = pages.lru.iter().map(|(_, (_, b))| b.len()).sum();
        assert_eq!(pages.bytes, held);
        assert!(held <= BUDGET, "{held}");
        assert!(pages.lru.len() > 100, "{}", pages.lru.len());
        assert!(pages.lru.contains("page 399") && !pages.lru.contains("page 0"));
    }

    fn json_value() -> serde_json::Value {
        serde_json::json!({"n": 1})
    }
}
