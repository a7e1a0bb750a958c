//! The OpenAPI document, served at `/api/v1/openapi.json` with Swagger UI at `/api/v1/docs`.
//!
//! utoipa derives the paths and schemas from the handlers' annotations. [`document`] then adds
//! what the derive cannot know, so that the document tells client generators and contract
//! testers (schemathesis runs against it in `scripts/test`) the truth:
//!
//! - every error is `application/problem+json` with the [`Problem`](crate::http::error::Problem)
//!   schema, and each operation lists the statuses its extractors can answer (a bearer token:
//!   401; a JSON body: 400, 408, 413, 415, 422; a path id: 404; query parameters: 400; every
//!   operation that reads the store: 503), beside the statuses its annotation names;
//! - an operation that takes an `Idempotency-Key` answers a replay with 200 beside the 201;
//! - the limits the code enforces on request fields and parameters ([`field_limits`],
//!   [`parameter_limits`]), some of them from the server's settings. Each is tested at and
//!   one past its bound, reading the bound from the served document
//!   (`api/tests/api/limits.rs`), so the two cannot drift apart;
//! - a schema that flattens a closed object into another (`NewModel`) is merged into one
//!   object, which a client can satisfy.

use serde_json::{Map, Value, json};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::cli::config::Settings;
use crate::http::routes::{
    auth, inbox, me, moderation, ops, posts, search, sessions, stats, tasks, workers,
};

#[derive(OpenApi)]
#[openapi(
    info(title = "treehole", description = "An event-sourced anonymous campus forum. Every command answers with the `position` of its last event; every query accepts `?after=<position>` to read its own writes and answers with `X-Projection-Position`. Errors are `application/problem+json`. A client's `X-Request-Id` is kept only if it is 1 to 64 visible ASCII characters, else one is generated; the answer carries the one used. Text fields are trimmed before their length is checked, and may not be blank or contain control characters (line breaks and tabs only in bodies)."),
    paths(
        auth::request_code, auth::register, auth::login, auth::logout, auth::me,
        me::unregister, me::export, sessions::list, sessions::end,
        posts::create_post, posts::list_posts, posts::get_post, posts::delete_post,
        posts::add_comment, posts::list_comments, posts::delete_comment,
        posts::react_to_post, posts::react_to_comment_of_post, posts::react_to_comment,
        posts::vote, posts::hot_posts,
        inbox::follow_post, inbox::following, inbox::notifications, inbox::mark_read,
        inbox::stream, inbox::favourites, inbox::favourite, inbox::unfavourite,
        search::search,
        moderation::report_post, moderation::report_comment, moderation::act_on_post,
        moderation::act_on_comment, moderation::log, moderation::queue, moderation::appeals,
        moderation::decide, moderation::my_sanctions, moderation::appeal,
        moderation::set_moderator,
        tasks::register_model, tasks::list_models, tasks::get_model, tasks::update_model,
        tasks::disable_model, tasks::enable_model,
        tasks::publish_task, tasks::list_tasks, tasks::get_task, tasks::cancel_task,
        workers::register_worker, workers::list_workers, workers::revoke_worker,
        workers::claim, workers::heartbeat, workers::complete, workers::fail,
        stats::overview, stats::daily,
        ops::healthz, ops::readyz, ops::projections, ops::rebuild, ops::events,
    ),
    modifiers(&Bearer),
    tags((name = "auth"), (name = "posts"),
        (name = "inbox", description = "Follows and notifications. Authors follow their posts and commenters the posts they comment on; `PUT /posts/{id}/follow` overrides that. A comment notifies the author it answers (`reply`) and the post's followers (`followed`), once per person, never the commenter, naming the commenter only as the comment does."),
        (name = "search"),
        (name = "moderation", description = "Reports weigh 10 each (configurable); 100 in all remove the item and sanction its author, and 2 reports with one reason fold it. Moderators act on content ids and never learn who wrote an item or who reported it. Sanctions climb a ladder (1, 3, 7, 30 days, then permanent), counting the ones not overturned on appeal; a sanctioned user may read but not post, comment, react, vote or report. The moderation log is public and names no user."),
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

/// The document this server serves: the derived one, completed as the module doc says.
pub fn document(settings: &Settings) -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).expect("the OpenAPI document is JSON");
    let schemas = &mut doc["components"]["schemas"];
    merge_closed_all_of(schemas);
    for (schema, property, limits) in field_limits(settings) {
        let target = &mut schemas[schema]["properties"][property];
        assert!(
            target.is_object(),
            "a limit for {schema}.{property}, which is not documented"
        );
        merge(target, limits);
    }
    for (path, operations) in doc["paths"].as_object_mut().into_iter().flatten() {
        for (method, operation) in operations.as_object_mut().into_iter().flatten() {
            limit_parameters(path, operation);
            document_errors(method, path, operation, settings);
            document_replays(operation);
        }
    }
    doc
}

/// Copies every key of `extra` (an object) into `target`.
fn merge(target: &mut Value, extra: Value) {
    if let (Some(target), Value::Object(extra)) = (target.as_object_mut(), extra) {
        target.extend(extra);
    }
}

/// Lengths in characters, after trimming.
fn chars(min: usize, max: usize) -> Value {
    json!({ "minLength": min, "maxLength": max })
}

/// `1 to 64 of a-z, 0-9, '-', '_', '.', starting with a letter or digit` (`ModelName`).
const MODEL_NAME: &str = "^[a-z0-9][a-z0-9._-]{0,63}$";

/// The limits of request fields, by schema and property: what `domain::values`, the domain
/// and the handlers refuse beyond them with 422 (or 400 for the worker protocol's leases).
fn field_limits(s: &Settings) -> Vec<(&'static str, &'static str, Value)> {
    use domain::values::{CommentBody, DeviceLabel, PostBody, PostTitle, Tag};
    let tasks = &s.tasks;
    let lease = json!({ "minimum": 1, "maximum": tasks.max_lease_secs,
        "description": format!("The lease in seconds, 1 to {} (default {}).",
            tasks.max_lease_secs, tasks.default_lease_secs) });
    let model_name = json!({ "type": "string", "pattern": MODEL_NAME, "maxLength": 64 });
    vec![
        (
            "CodeRequest",
            "email",
            json!({ "minLength": 3, "maxLength": 254,
                "description": "An address `name@domain.tld` of at most 254 bytes (64 before the `@`); it is trimmed and lower-cased." }),
        ),
        (
            "RegisterRequest",
            "email",
            json!({ "minLength": 3, "maxLength": 254 }),
        ),
        (
            "RegisterRequest",
            "username",
            json!({ "minLength": 3, "maxLength": 32,
                "description": "3 to 32 letters (any script), digits, `_` or `-`; unique case-insensitively." }),
        ),
        (
            "RegisterRequest",
            "password",
            json!({ "minLength": 8, "maxLength": 128, "pattern": "\\S",
                "description": "8 to 128 characters, not only white space." }),
        ),
        (
            "RegisterRequest",
            "code",
            json!({ "pattern": "^[0-9]{6}$" }),
        ),
        ("LoginRequest", "login", json!({ "maxLength": 254 })),
        ("LoginRequest", "password", json!({ "maxLength": 512 })),
        ("LoginRequest", "device", chars(1, DeviceLabel::MAX_CHARS)),
        ("NewPost", "title", chars(1, PostTitle::MAX_CHARS)),
        ("NewPost", "body", chars(1, PostBody::MAX_CHARS)),
        (
            "NewPost",
            "tags",
            json!({ "maxItems": Tag::MAX_PER_POST,
                "description": format!("At most {} distinct tags of 1 to 24 letters, digits, `_` or `-` (a leading `#` is dropped; lower-cased; duplicates are folded).", Tag::MAX_PER_POST),
                "items": { "type": "string", "minLength": 1, "maxLength": 24 } }),
        ),
        ("NewComment", "body", chars(1, CommentBody::MAX_CHARS)),
        ("ModelBody", "kind", chars(1, 64)),
        (
            "ModelBody",
            "max_concurrent",
            json!({ "minimum": 1, "maximum": 10_000 }),
        ),
        ("NewModel", "kind", chars(1, 64)),
        (
            "NewModel",
            "max_concurrent",
            json!({ "minimum": 1, "maximum": 10_000 }),
        ),
        (
            "NewModel",
            "name",
            json!({ "pattern": MODEL_NAME, "maxLength": 64 }),
        ),
        (
            "NewTask",
            "model",
            json!({ "pattern": MODEL_NAME, "maxLength": 64 }),
        ),
        (
            "NewTask",
            "priority",
            json!({ "minimum": -100, "maximum": 100 }),
        ),
        (
            "NewTask",
            "input",
            json!({ "description": format!("Checked against the model's input schema; at most {} bytes as JSON (413 beyond).", tasks.max_input_bytes) }),
        ),
        ("NewWorker", "name", chars(1, 64)),
        (
            "NewWorker",
            "models",
            json!({ "minItems": 1, "maxItems": 32, "items": model_name.clone() }),
        ),
        // Any of the worker's own models, repeated or none (then nothing is claimed).
        ("ClaimRequest", "models", json!({ "items": model_name })),
        ("ClaimRequest", "lease_secs", lease.clone()),
        (
            "ClaimRequest",
            "wait_secs",
            // `workers::MAX_WAIT_SECS`.
            json!({ "minimum": 0, "maximum": 30 }),
        ),
        ("HeartbeatRequest", "lease_secs", lease),
        ("FailRequest", "error", chars(1, 2000)),
    ]
}

/// The limits of query and header parameters, wherever an operation takes them.
fn limit_parameters(path: &str, operation: &mut Value) {
    let max_limit = if path == "/api/v1/search" { 50 } else { 100 };
    // `get_mut`, not indexing: indexing would add `parameters: null` where there are none.
    let parameters = operation
        .get_mut("parameters")
        .and_then(Value::as_array_mut);
    for parameter in parameters.into_iter().flatten() {
        let limits = match parameter["name"].as_str().unwrap_or_default() {
            "limit" => json!({ "minimum": 1, "maximum": max_limit }),
            "q" => {
                parameter["required"] = json!(true);
                json!({ "minLength": 1, "maxLength": projections::search::Query::MAX_CHARS })
            }
            "Idempotency-Key" => {
                json!({ "type": "string", "minLength": 1, "maxLength": 200, "pattern": "^[!-~]+$" })
            }
            _ => continue,
        };
        merge(&mut parameter["schema"], limits);
    }
}

/// A schema `allOf` object schemas of which one is closed (`additionalProperties: false`)
/// cannot be satisfied: each part forbids the others' properties. Merges such a schema into
/// one closed object with every part's properties (serde's `flatten` does the same).
fn merge_closed_all_of(schemas: &mut Value) {
    let Some(all) = schemas.as_object().cloned() else {
        return;
    };
    let resolve = |part: &Value| -> Value {
        match part["$ref"].as_str() {
            Some(r) => all
                .get(r.trim_start_matches("#/components/schemas/"))
                .cloned()
                .unwrap_or(Value::Null),
            None => part.clone(),
        }
    };
    for (name, schema) in &all {
        let Some(parts) = schema["allOf"].as_array() else {
            continue;
        };
        let parts: Vec<Value> = parts.iter().map(resolve).collect();
        if !parts
            .iter()
            .any(|p| p["additionalProperties"] == json!(false))
        {
            continue;
        }
        let (mut properties, mut required) = (Map::new(), Vec::new());
        for part in &parts {
            properties.extend(part["properties"].as_object().cloned().unwrap_or_default());
            required.extend(part["required"].as_array().cloned().unwrap_or_default());
        }
        let mut merged = json!({ "type": "object", "properties": properties,
            "required": required, "additionalProperties": false });
        if let Some(d) = schema.get("description") {
            merged["description"] = d.clone();
        }
        schemas[name] = merged;
    }
}

/// Why an operation may answer each error status, from what its handler takes.
fn inferred_errors(
    method: &str,
    path: &str,
    operation: &Value,
    s: &Settings,
) -> Vec<(u16, String)> {
    let parameters: Vec<&Value> = operation["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    let in_place = |place: &str| parameters.iter().any(|p| p["in"] == place);
    let mut errors = Vec::new();
    let has_body = operation.get("requestBody").is_some();
    if has_body || in_place("query") || in_place("header") {
        errors.push((400, "malformed JSON; a query parameter or header that is not as documented (`after` past the end of the log, or given twice, or disagreeing between the query and `X-After-Position`, included; a `cursor` that is not this list's own `next_cursor`); in the worker protocol, `lease_secs` or `wait_secs` out of range".to_owned()));
    }
    if operation["security"]
        .as_array()
        .is_some_and(|s| !s.is_empty())
    {
        errors.push((
            401,
            "no token, or one that is invalid, expired, revoked or logged out".to_owned(),
        ));
    }
    if in_place("path") {
        errors.push((
            404,
            "no such item (an id that is not one is not found either)".to_owned(),
        ));
    }
    if has_body {
        errors.push((
            413,
            format!("the body is larger than {} bytes", s.max_body_bytes),
        ));
        errors.push((
            408,
            "the body did not arrive within the server's body timeout (`http.body_timeout_ms`); the connection is closed".to_owned(),
        ));
        errors.push((
            415,
            "the body is not sent as `Content-Type: application/json`".to_owned(),
        ));
        errors.push((
            422,
            "the body does not have the documented shape, or a field breaks a documented rule"
                .to_owned(),
        ));
    }
    if (method, path) != ("get", "/api/v1/healthz") {
        errors.push((503, "the store or the read models are unavailable, too many concurrent changes, or the read models did not reach `after` in time; retry after `Retry-After` seconds".to_owned()));
    }
    errors
}

/// Documents every error answer as problem+json, adding the statuses the operation's
/// extractors can answer to those its annotation names.
fn document_errors(method: &str, path: &str, operation: &mut Value, s: &Settings) {
    let inferred = inferred_errors(method, path, operation, s);
    let responses = &mut operation["responses"];
    for (status, why) in inferred {
        let entry = &mut responses[status.to_string()];
        if entry.is_null() {
            *entry = json!({ "description": why });
        }
    }
    for (status, response) in responses.as_object_mut().into_iter().flatten() {
        if status.starts_with('4') || status.starts_with('5') {
            response["content"] = json!({ "application/problem+json": {
                "schema": { "$ref": "#/components/schemas/Problem" } } });
            if response["description"].as_str().is_none_or(str::is_empty) {
                response["description"] = json!(problem_title(status));
            }
        }
    }
}

/// A generic description of an error status the annotation named without one.
fn problem_title(status: &str) -> &'static str {
    match status {
        "400" => "a bad request",
        "401" => "authentication required",
        "403" => "not allowed for this user (an admin's operation, or someone else's item)",
        "404" => "no such item",
        "408" => "the request body was too slow",
        "409" => "a conflict with the item's current state",
        "410" => "the post was deleted",
        "413" => "too large",
        "422" => "a field breaks a documented rule",
        "429" => "rate-limited; retry after `Retry-After` seconds",
        "503" => "unavailable; retry after `Retry-After` seconds",
        _ => "an error",
    }
}

/// An operation with an `Idempotency-Key` answers a repeated request with the first answer and
/// 200 instead of 201.
fn document_replays(operation: &mut Value) {
    let keyed = operation["parameters"]
        .as_array()
        .is_some_and(|ps| ps.iter().any(|p| p["name"] == "Idempotency-Key"));
    let responses = &mut operation["responses"];
    if keyed && responses["200"].is_null() && !responses["201"].is_null() {
        let mut replay = responses["201"].clone();
        replay["description"] = json!(
            "a replay: the same request with the same `Idempotency-Key` was answered before; this is that answer again"
        );
        responses["200"] = replay;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> Value {
        document(&Settings::default())
    }

    #[test]
    fn every_error_is_problem_json() {
        let doc = doc();
        let mut errors = 0;
        for (path, operations) in doc["paths"].as_object().unwrap() {
            for (method, op) in operations.as_object().unwrap() {
                for (status, response) in op["responses"].as_object().unwrap() {
                    if status.as_str() >= "400" {
                        errors += 1;
                        let content = response["content"].as_object().unwrap();
                        assert_eq!(
                            content.keys().collect::<Vec<_>>(),
                            ["application/problem+json"],
                            "{method} {path} {status}"
                        );
                    }
                }
            }
        }
        assert!(errors > 100, "only {errors} error answers");
    }

    #[test]
    fn operations_without_parameters_list_none() {
        let doc = doc();
        for (path, operations) in doc["paths"].as_object().unwrap() {
            for (method, op) in operations.as_object().unwrap() {
                let parameters = op.get("parameters");
                assert!(
                    parameters.is_none_or(Value::is_array),
                    "{method} {path}: {parameters:?}"
                );
            }
        }
    }

    #[test]
    fn a_flattened_closed_object_becomes_one_object() {
        let doc = doc();
        let model = &doc["components"]["schemas"]["NewModel"];
        assert!(model.get("allOf").is_none(), "{model}");
        assert_eq!(model["additionalProperties"], false);
        let names: Vec<&String> = model["properties"].as_object().unwrap().keys().collect();
        for wanted in ["name", "kind", "input_schema", "max_concurrent", "enabled"] {
            assert!(names.iter().any(|n| *n == wanted), "{wanted} in {names:?}");
        }
        assert_eq!(model["properties"]["max_concurrent"]["maximum"], 10_000);
    }

    #[test]
    fn keyed_operations_document_the_replay() {
        let doc = doc();
        for path in ["/api/v1/users", "/api/v1/posts", "/api/v1/tasks"] {
            let responses = &doc["paths"][path]["post"]["responses"];
            assert!(responses["200"].is_object(), "{path}");
            assert!(responses["201"].is_object(), "{path}");
        }
    }

    #[test]
    fn limits_follow_the_settings() {
        let mut settings = Settings::default();
        settings.tasks.max_lease_secs = 77;
        let doc = document(&settings);
        let claim = &doc["components"]["schemas"]["ClaimRequest"]["properties"];
        assert_eq!(claim["lease_secs"]["maximum"], 77);
    }
}
