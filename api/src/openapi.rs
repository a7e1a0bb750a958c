//! The OpenAPI document, served at `/api/v1/openapi.json` with Swagger UI at `/api/v1/docs`.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes::{auth, ops, posts, search, stats};

#[derive(OpenApi)]
#[openapi(
    info(title = "treehole", description = "An event-sourced anonymous campus forum. Every command answers with the `position` of its last event; every query accepts `?after=<position>` to read its own writes and answers with `X-Projection-Position`. Errors are `application/problem+json`."),
    paths(
        auth::request_code, auth::register, auth::login, auth::logout, auth::me,
        posts::create_post, posts::list_posts, posts::get_post, posts::delete_post,
        posts::add_comment, posts::list_comments, posts::delete_comment,
        search::search,
        stats::overview, stats::daily,
        ops::healthz, ops::readyz, ops::projections, ops::rebuild,
    ),
    modifiers(&Bearer),
    tags((name = "auth"), (name = "posts"), (name = "search"), (name = "stats"), (name = "ops"))
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
    }
}
