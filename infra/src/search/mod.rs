//! Search engines behind the projections' `SearchIndex` port: the embedded tantivy engine
//! (default) and Meilisearch.

pub mod embedded;
pub mod meili;

pub use embedded::Embedded;
pub use meili::MeiliSearch;

use projections::ReadModelError;
use projections::search::SearchDocument;

/// A search engine holds the `search` projection and nothing else.
fn only_search(projection: &str) -> Result<(), ReadModelError> {
    if projection == projections::search::NAME {
        Ok(())
    } else {
        Err(ReadModelError::UnknownProjection(projection.to_owned()))
    }
}

fn unavailable(message: String) -> ReadModelError {
    ReadModelError::Unavailable(message)
}

/// Documents as dump lines (one JSON object each, ordered by id), for comparing two builds.
fn dump(docs: Vec<SearchDocument>) -> Result<Vec<String>, ReadModelError> {
    docs.iter()
        .map(|d| serde_json::to_string(d).map_err(|e| ReadModelError::Backend(e.to_string())))
        .collect()
}
