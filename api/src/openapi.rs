//! The OpenAPI document, served at `/api/v1/openapi.json` with Swagger UI at `/api/v1/docs`.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes::{auth, ops, posts, search, stats, tasks, workers};

#[derive(OpenApi)]
#[openapi(
    info(title = "treehole", description = "An event-sourced anonymous campus forum. Every command answers with the `position` of its last event; every query accepts `?after=<position>` to read its own writes and answers with `X-Projection-Position`. Errors are `application/problem+json`."),
    paths(
        auth::request_code, auth::register, auth::login, auth::logout, auth::me,
        posts::create_post, posts::list_posts, posts::get_post, posts::delete_post,
        posts::add_comment, posts::list_comments, posts::delete_comment,
        search::search,
        tasks::register_model, tasks::list_models, tasks::get_model, tasks::update_model,
        tasks::disable_model, tasks::enable_model,
        tasks::publish_task, tasks::list_tasks, tasks::get_task, tasks::cancel_task,
        workers::register_worker, workers::list_workers, workers::revoke_worker,
        workers::claim, workers::heartbeat, workers::complete, workers::fail,
        stats::overview, stats::daily,
        ops::healthz, ops::readyz, ops::projections, ops::rebuild,
    ),
    modifiers(&Bearer),
    tags((name = "auth"), (name = "posts"), (name = "search"),
        (name = "tasks", description = "Models (admins) and the tasks users publish to them; a task's submitter is notified by a webhook signed with HMAC-SHA256 (`X-Treehole-Signature: sha256=<hex of HMAC(key, \"<X-Treehole-Timestamp>.<body>\")>`, key = `webhook_secret` of `GET /me`)."),
        (name = "workers", description = "Worker credentials (admins) and the worker protocol: claim with a lease, heartbeat, complete, fail. Worker routes take `Authorization: Bearer thw_...`."),
        (name = "stats"), (name = "ops"))
)]
pub struct ApiDoc;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "worker",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("a worker token (`thw_...`) from POST /api/v1/workers"))
                    .build(),
            ),
        );
    }
}
