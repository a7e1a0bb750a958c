//! Statistics per UTC day and in total (ARCHITECTURE.md §7). Public, like the posts they
//! count: they are counts and durations only, never who did what.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use chrono::NaiveDate;
use projections::stats::{DayFigures, Figures, NAME, Percentiles, TaskFigures, WebhookFigures};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::http::error::{ApiError, Problem};
use crate::http::extract::{After, ApiQuery, projection_headers};
use crate::http::routes::consistent;
use crate::http::state::AppState;

/// The longest range `GET /stats/daily` answers, in days (a leap year).
const MAX_DAYS: i64 = 366;

/// The figures of one day or of all time.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatsDto {
    pub registrations: u64,
    /// Users who registered, logged in, posted, commented or published a task, each counted
    /// once.
    pub active_users: u64,
    /// Posts published (deleted ones included), anonymous or not.
    pub posts: u64,
    pub anonymous_posts: u64,
    /// Comments added (deleted ones included), anonymous or not.
    pub comments: u64,
    pub anonymous_comments: u64,
    /// Anonymous posts and comments over all posts and comments; null when there were none.
    pub anonymous_share: Option<f64>,
    pub tasks: TasksDto,
    pub webhooks: WebhooksDto,
}

/// Tasks published in the range, and tasks that reached a final state in it.
#[derive(Debug, Serialize, ToSchema)]
pub struct TasksDto {
    /// Of every model.
    #[serde(flatten)]
    pub all: TaskFiguresDto,
    /// The same figures per model.
    pub by_model: BTreeMap<String, TaskFiguresDto>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TaskFiguresDto {
    pub published: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub cancelled: u64,
    /// From publication to the first claim, over the finished tasks that were ever claimed.
    pub wait_ms: PercentilesDto,
    /// From the last claim to the result, over the tasks that succeeded or failed.
    pub run_ms: PercentilesDto,
}

/// Nearest-rank percentiles, in milliseconds.
#[derive(Debug, Serialize, ToSchema)]
pub struct PercentilesDto {
    pub samples: u64,
    /// Null when there are no samples.
    pub p50: Option<u64>,
    pub p95: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhooksDto {
    /// Delivery attempts, failed or not.
    pub attempts: u64,
    /// Webhooks delivered (each by exactly one successful attempt).
    pub delivered: u64,
    /// Webhooks given up after their last failed attempt.
    pub abandoned: u64,
    /// Delivered over delivered and abandoned; null when neither happened.
    pub success_rate: Option<f64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DayStatsDto {
    /// The UTC day, `YYYY-MM-DD`.
    #[schema(value_type = String, format = Date)]
    pub day: NaiveDate,
    #[serde(flatten)]
    pub figures: StatsDto,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DailyStatsDto {
    #[schema(value_type = String, format = Date)]
    pub from: NaiveDate,
    #[schema(value_type = String, format = Date)]
    pub to: NaiveDate,
    /// Every day from `from` to `to`, days without activity included.
    pub days: Vec<DayStatsDto>,
}

fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

impl From<Percentiles> for PercentilesDto {
    fn from(p: Percentiles) -> Self {
        Self {
            samples: p.samples,
            p50: p.p50,
            p95: p.p95,
        }
    }
}

impl From<TaskFigures> for TaskFiguresDto {
    fn from(t: TaskFigures) -> Self {
        Self {
            published: t.published,
            succeeded: t.succeeded,
            failed: t.failed,
            cancelled: t.cancelled,
            wait_ms: t.wait_ms.into(),
            run_ms: t.run_ms.into(),
        }
    }
}

impl From<WebhookFigures> for WebhooksDto {
    fn from(w: WebhookFigures) -> Self {
        Self {
            attempts: w.attempts,
            delivered: w.delivered,
            abandoned: w.abandoned,
            success_rate: ratio(w.delivered, w.delivered + w.abandoned),
        }
    }
}

impl From<Figures> for StatsDto {
    fn from(f: Figures) -> Self {
        Self {
            registrations: f.registrations,
            active_users: f.active_users,
            posts: f.posts,
            anonymous_posts: f.anonymous_posts,
            comments: f.comments,
            anonymous_comments: f.anonymous_comments,
            anonymous_share: ratio(
                f.anonymous_posts + f.anonymous_comments,
                f.posts + f.comments,
            ),
            tasks: TasksDto {
                all: f.tasks.into(),
                by_model: f
                    .tasks_by_model
                    .into_iter()
                    .map(|(model, t)| (model, t.into()))
                    .collect(),
            },
            webhooks: f.webhooks.into(),
        }
    }
}

impl From<DayFigures> for DayStatsDto {
    fn from(d: DayFigures) -> Self {
        Self {
            day: d.day,
            figures: d.figures.into(),
        }
    }
}

/// The statistics of all time.
#[utoipa::path(get, path = "/api/v1/stats/overview", tag = "stats",
    params(("after" = Option<u64>, Query, description = "wait until the statistics include this position")),
    responses((status = 200, body = StatsDto), (status = 400, body = Problem),
        (status = 503, body = Problem)))]
pub async fn overview(
    State(state): State<AppState>,
    after: After,
) -> Result<(HeaderMap, Json<StatsDto>), ApiError> {
    let position = consistent(&state, after, &[NAME]).await?;
    let figures = state.stats.overview().await?;
    Ok((projection_headers(position), Json(figures.into())))
}

/// `from` and `to` are optional here only so that a missing one gets this API's own 400.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DailyParams {
    /// The first day, `YYYY-MM-DD` (UTC).
    #[param(value_type = String, format = Date, required = true)]
    pub from: Option<String>,
    /// The last day, `YYYY-MM-DD` (UTC); at most 366 days from `from`, counting both.
    #[param(value_type = String, format = Date, required = true)]
    pub to: Option<String>,
    /// Wait until the statistics include this position (read-your-writes).
    pub after: Option<u64>,
}

/// The statistics of each UTC day from `from` to `to`.
#[utoipa::path(get, path = "/api/v1/stats/daily", tag = "stats", params(DailyParams),
    responses((status = 200, body = DailyStatsDto), (status = 400, body = Problem),
        (status = 503, body = Problem)))]
pub async fn daily(
    State(state): State<AppState>,
    after: After,
    ApiQuery(params): ApiQuery<DailyParams>,
) -> Result<(HeaderMap, Json<DailyStatsDto>), ApiError> {
    let from = parse_day("from", params.from.as_deref())?;
    let to = parse_day("to", params.to.as_deref())?;
    if from > to {
        return Err(ApiError::bad_request("from: must not be after to"));
    }
    if (to - from).num_days() + 1 > MAX_DAYS {
        return Err(ApiError::bad_request(format!(
            "to: at most {MAX_DAYS} days from from, counting both"
        )));
    }
    let position = consistent(&state, after, &[NAME]).await?;
    let days = state.stats.daily(from, to).await?;
    Ok((
        projection_headers(position),
        Json(DailyStatsDto {
            from,
            to,
            days: days.into_iter().map(DayStatsDto::from).collect(),
        }),
    ))
}

/// A required `YYYY-MM-DD` date.
fn parse_day(name: &str, raw: Option<&str>) -> Result<NaiveDate, ApiError> {
    let raw = raw.ok_or_else(|| ApiError::bad_request(format!("{name}: a date is required")))?;
    // chrono alone would take `2026-3-1` or a signed year; the contract is ten characters.
    match NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
        Ok(day) if raw.len() == 10 => Ok(day),
        _ => Err(ApiError::bad_request(format!(
            "{name}: not a date YYYY-MM-DD"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_ten_character_dates() {
        assert_eq!(
            parse_day("from", Some("2026-03-01")).unwrap(),
            NaiveDate::from_ymd_opt(2026, 3, 1).unwrap()
        );
        for bad in [
            None,
            Some(""),
            Some("2026-3-1"),
            Some("2026-02-30"),
            Some("01.03.2026"),
        ] {
            assert!(parse_day("from", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ratios_are_null_without_a_whole() {
        let empty: StatsDto = Figures::default().into();
        assert_eq!(empty.anonymous_share, None);
        assert_eq!(empty.webhooks.success_rate, None);
        let some = Figures {
            posts: 3,
            anonymous_posts: 1,
            comments: 1,
            anonymous_comments: 1,
            webhooks: WebhookFigures {
                attempts: 5,
                delivered: 3,
                abandoned: 1,
            },
            ..Figures::default()
        };
        let dto: StatsDto = some.into();
        assert_eq!(dto.anonymous_share, Some(0.5));
        assert_eq!(dto.webhooks.success_rate, Some(0.75));
    }
}
