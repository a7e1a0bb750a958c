//! Full-text search over live posts and their comments (ARCHITECTURE.md §7).

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use domain::PostId;
use domain::values::Tag;
use projections::search::text::{excerpt, highlight, snippet};
use projections::search::{Query, QueryError, SearchHit, SearchRequest, Term};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};

use crate::http::cursor::{Cursors, List};
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{After, ApiQuery, projection_headers};
use crate::http::routes::{consistent, page_limit};
use crate::http::state::AppState;

/// Characters of context in a snippet.
const SNIPPET_CHARS: usize = 120;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchParams {
    /// The words to find (Chinese or English, at most 200 characters). Every word must match;
    /// English words match across inflections and, from five letters on, with one typo.
    pub q: Option<String>,
    /// 1 to 50, default 20.
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page of the same query.
    pub cursor: Option<String>,
    /// Only posts with this tag.
    pub tag: Option<String>,
    /// Wait until the index includes this position (read-your-writes).
    pub after: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SearchHitDto {
    #[schema(value_type = String, format = Uuid)]
    pub post_id: PostId,
    pub title: Option<String>,
    /// The title, HTML-escaped, with matching words in `<mark>`.
    pub title_highlighted: Option<String>,
    /// About 120 characters of the body (or of the comment that matched), HTML-escaped, with
    /// matching words in `<mark>`.
    pub snippet: String,
    /// The author as the public post shows it: the host's name when anonymous.
    pub author_name: String,
    pub anonymous: bool,
    pub tags: Vec<String>,
    pub comment_count: usize,
    pub created_at: DateTime<Utc>,
    /// Relevance; comparable only within one query.
    pub score: f32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SearchPage {
    pub hits: Vec<SearchHitDto>,
    /// How many posts match (an estimate on Meilisearch).
    pub total: usize,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Searches live posts by their title, body, tags and comments, best match first.
#[utoipa::path(get, path = "/api/v1/search", tag = "search", params(SearchParams),
    responses((status = 200, body = SearchPage), (status = 400, body = Problem),
        (status = 503, body = Problem)))]
pub async fn search(
    State(state): State<AppState>,
    after: After,
    ApiQuery(params): ApiQuery<SearchParams>,
) -> Result<(HeaderMap, Json<SearchPage>), ApiError> {
    let query = Query::parse(params.q.as_deref().unwrap_or_default()).map_err(query_error)?;
    let limit = page_limit(params.limit, 50)?;
    let tag = params
        .tag
        .as_deref()
        .map(|t| Tag::parse(t).map(|t| t.as_str().to_owned()))
        .transpose()
        .map_err(|e| ApiError::bad_request(format!("tag: {e}")))?;
    let fingerprint = fingerprint(&query, tag.as_deref());
    let cursors = Cursors::new(&state.secret, List::Search(&fingerprint));
    let after_cursor = params
        .cursor
        .as_deref()
        .map(|c| cursors.decode_search(c))
        .transpose()?;
    let position = consistent(&state, after, &[projections::search::NAME]).await?;
    let results = state
        .search
        .search(&SearchRequest {
            query: query.clone(),
            tag,
            limit,
            after: after_cursor,
        })
        .await?;
    let hits = results
        .hits
        .into_iter()
        .map(|h| hit(h, query.terms()))
        .collect();
    Ok((
        projection_headers(position),
        Json(SearchPage {
            hits,
            total: results.total,
            next_cursor: results.next.map(|c| cursors.encode_search(&c)),
        }),
    ))
}

fn query_error(e: QueryError) -> ApiError {
    ApiError::bad_request(format!("q: {e}"))
}

fn hit(h: SearchHit, terms: &[Term]) -> SearchHitDto {
    let (d, comment_count) = (h.document, h.comment_count);
    let excerpt = std::iter::once(d.body.as_str())
        .chain(d.comments.iter().map(|c| c.body.as_str()))
        .find_map(|text| snippet(text, terms, SNIPPET_CHARS))
        // Matched in the title or tags only: the start of the body.
        .unwrap_or_else(|| excerpt(&d.body, SNIPPET_CHARS));
    SearchHitDto {
        post_id: d.id,
        title_highlighted: d.title.as_deref().map(|t| highlight(t, terms)),
        title: d.title,
        snippet: excerpt,
        author_name: d.author_name,
        anonymous: d.anonymous,
        tags: d.tags,
        comment_count,
        created_at: d.created_at,
        score: h.score,
    }
}

/// Ties a cursor to its query, so that a cursor of another query is refused.
fn fingerprint(query: &Query, tag: Option<&str>) -> String {
    let digest = Sha256::digest(format!("{}\u{0}{}", query.text(), tag.unwrap_or("")));
    hex::encode(&digest[..6])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_belongs_to_its_query_and_tag() {
        let q = Query::parse("running").unwrap();
        let fp = fingerprint(&q, None);
        let c = projections::search::SearchCursor {
            offset: 40,
            score: 1.25,
            post_position: 77,
        };
        let other = fingerprint(&q, Some("sport"));
        assert_ne!(fp, other);
        let key = b"a server key";
        let sealed = Cursors::new(key, List::Search(&fp)).encode_search(&c);
        assert!(
            Cursors::new(key, List::Search(&other))
                .decode_search(&sealed)
                .is_err()
        );
    }
}
