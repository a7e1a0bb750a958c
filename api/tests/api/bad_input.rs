//! Malformed and refused requests: every one gets a 4xx problem+json answer and leaves the
//! event log as it was (except a wrong verification code, which is recorded by design).

use domain::Position;
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{PASSWORD, TestApp, assert_problem_shape, position, spawn_app, str_field};

/// One malformed request and the answer it must get.
struct Case {
    name: &'static str,
    method: Method,
    /// Under `/api/v1` unless it starts with `!`, then from the server root.
    path: String,
    token: Option<String>,
    headers: Vec<(&'static str, String)>,
    body: Option<(Option<&'static str>, Vec<u8>)>,
    status: u16,
    /// Events the request appends (only a wrong verification code records one).
    appends: u64,
}

fn case(name: &'static str, method: Method, path: impl Into<String>, status: u16) -> Case {
    Case {
        name,
        method,
        path: path.into(),
        token: None,
        headers: Vec::new(),
        body: None,
        status,
        appends: 0,
    }
}

impl Case {
    fn json(mut self, body: Value) -> Self {
        self.body = Some((Some("application/json"), body.to_string().into_bytes()));
        self
    }

    fn raw(mut self, content_type: Option<&'static str>, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some((content_type, body.into()));
        self
    }

    fn token(mut self, token: &str) -> Self {
        self.token = Some(token.to_owned());
        self
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    fn appends(mut self, n: u64) -> Self {
        self.appends = n;
        self
    }

    async fn send(&self, app: &TestApp) -> crate::helpers::Reply {
        let url = match self.path.strip_prefix('!') {
            Some(root) => format!("{}{root}", app.address),
            None => app.url(&self.path),
        };
        let mut request = app.client.request(self.method.clone(), url);
        if let Some(t) = &self.token {
            request = request.header("authorization", t);
        }
        for (k, v) in &self.headers {
            request = request.header(*k, v);
        }
        if let Some((content_type, body)) = &self.body {
            if let Some(ct) = content_type {
                request = request.header("content-type", *ct);
            }
            request = request.body(body.clone());
        }
        app.send(request).await
    }
}

/// Sends each case and describes those that were not answered as expected: the status, a
/// problem+json body, and the log grown by exactly the case's appends.
async fn failures(app: &TestApp, cases: &[Case]) -> Vec<String> {
    let mut failures = Vec::new();
    for c in cases {
        let before = app.head().await;
        let reply = c.send(app).await;
        let after = app.head().await;
        let body: Option<Value> = serde_json::from_str(&reply.text).ok();
        let shape_ok = reply.content_type() == "application/problem+json"
            && body.as_ref().is_some_and(|b| {
                ["type", "title", "detail"]
                    .iter()
                    .all(|f| b[*f].is_string())
                    && b["status"] == json!(reply.status.as_u16())
            });
        if reply.status.as_u16() != c.status || !shape_ok || after != before + c.appends {
            failures.push(format!(
                "{}: {} {} -> {} ({}) {:?}, log {before} -> {after} (expected {} and +{})",
                c.name,
                reply.method,
                reply.path,
                reply.status,
                reply.content_type(),
                reply.text,
                c.status,
                c.appends
            ));
        } else if let Some(body) = &body {
            assert_problem_shape(&reply, body);
        }
    }
    failures
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn malformed_requests_get_problems_and_change_nothing() {
    let app = spawn_app().await;
    // Everything the cases need exists before the log is measured.
    let owner = app.new_user("bad_owner").await;
    let other = app.new_user("bad_other").await;
    let post = app
        .create_post(
            &owner.token,
            &json!({"body": "a post to aim at", "anonymous": true}),
        )
        .await
        .expect(201);
    let post_id = str_field(&post, "post_id").to_owned();
    let comment = app
        .comment(
            &owner.token,
            &post_id,
            &json!({"body": "a comment to aim at", "anonymous": true}),
        )
        .await
        .expect(201);
    let comment_id = str_field(&comment, "comment_id").to_owned();
    let keyed_post = app
        .client
        .post(app.url("/posts"))
        .bearer_auth(&owner.token)
        .header("idempotency-key", "used-key")
        .json(&json!({"body": "first use of the key", "anonymous": false}));
    app.send(keyed_post).await.expect(201);
    let keyed_comment = app
        .client
        .post(app.url(&format!("/posts/{post_id}/comments")))
        .bearer_auth(&owner.token)
        .header("idempotency-key", "used-comment-key")
        .json(&json!({"body": "first use of the key", "anonymous": true}));
    app.send(keyed_comment).await.expect(201);
    // A comment under another post, and a deleted one: neither can be replied to here.
    let elsewhere = app
        .create_post(
            &other.token,
            &json!({"body": "another post", "anonymous": false}),
        )
        .await
        .expect(201);
    let foreign = app
        .comment(
            &other.token,
            str_field(&elsewhere, "post_id"),
            &json!({"body": "a comment elsewhere", "anonymous": true}),
        )
        .await
        .expect(201);
    let foreign_id = str_field(&foreign, "comment_id").to_owned();
    let doomed = app
        .comment(
            &owner.token,
            &post_id,
            &json!({"body": "soon gone", "anonymous": true}),
        )
        .await
        .expect(201);
    let deleted_id = str_field(&doomed, "comment_id").to_owned();
    app.delete(
        &format!("/posts/{post_id}/comments/{deleted_id}"),
        &owner.token,
    )
    .await
    .expect(200);
    app.request_code("pending@campus.edu").await.expect(202);
    app.request_code("late@campus.edu").await.expect(202);
    let late_code = app.code_for("late@campus.edu");
    // Sessions: the owner's own, another user's, and one of the owner's that has ended.
    let session_of = |token: &str| {
        let (id, _) = token.split_once('.').expect("a session token");
        Uuid::parse_str(id)
            .expect("a session id")
            .hyphenated()
            .to_string()
    };
    let own_session = session_of(&owner.token);
    let others_session = session_of(&other.token);
    let gone = app.login("bad_owner", PASSWORD).await;
    app.delete("/sessions/current", &gone).await.expect(200);
    let gone_session = session_of(&gone);
    let head = app.head().await;

    let own = bearer(&owner.token);
    let posts = "/posts".to_owned();
    let comments = format!("/posts/{post_id}/comments");
    let nobody = Uuid::now_v7().to_string();
    let long = |n: usize| "字".repeat(n);
    let new_post = |ct: Option<&'static str>, body: &str| {
        case("", Method::POST, posts.clone(), 0)
            .token(&own)
            .raw(ct, body.as_bytes().to_vec())
    };
    let named = |c: Case, name: &'static str, status: u16| Case { name, status, ..c };
    let user = |email: &str, username: &str, password: &str, code: &str| json!({"email": email, "username": username, "password": password, "code": code});
    let login_on =
        |device: Value| json!({"login": "bad_owner", "password": PASSWORD, "device": device});
    let end = |id: &str| format!("/me/sessions/{id}");

    let cases =
        vec![
        // Unreadable bodies.
        named(
            new_post(
                Some("application/json"),
                r#"{"body": "x", "anonymous": tru"#,
            ),
            "malformed JSON",
            400,
        ),
        named(
            new_post(
                Some("application/json"),
                r#"{"body": "x", "anonymous": true} trailing"#,
            ),
            "trailing garbage",
            400,
        ),
        named(new_post(Some("application/json"), ""), "empty body", 400),
        named(
            new_post(Some("application/json"), " \n\t "),
            "whitespace-only body",
            400,
        ),
        named(
            case("", Method::POST, posts.clone(), 0).token(&own).raw(
                Some("application/json"),
                b"{\"body\": \"\xff\xfe\", \"anonymous\": true}".to_vec(),
            ),
            "body not UTF-8",
            400,
        ),
        named(
            new_post(None, r#"{"body": "x", "anonymous": true}"#),
            "no content type",
            415,
        ),
        named(
            new_post(Some("text/plain"), r#"{"body": "x", "anonymous": true}"#),
            "text/plain",
            415,
        ),
        named(
            new_post(
                Some("application/x-www-form-urlencoded"),
                "body=x&anonymous=true",
            ),
            "form body",
            415,
        ),
        case("body over max_body_bytes", Method::POST, posts.clone(), 413)
            .token(&own)
            .json(json!({"body": "x".repeat(130 * 1024), "anonymous": true})),
        // Wrong shapes.
        case("unknown field", Method::POST, posts.clone(), 422)
            .token(&own)
            .json(json!({"body": "x", "anonymous": true, "author": "me"})),
        case("wrong type", Method::POST, posts.clone(), 422)
            .token(&own)
            .json(json!({"body": "x", "anonymous": "yes"})),
        case("missing anonymous", Method::POST, posts.clone(), 422)
            .token(&own)
            .json(json!({"body": "x"})),
        case("missing body", Method::POST, posts.clone(), 422)
            .token(&own)
            .json(json!({"anonymous": true})),
        case("null document", Method::POST, posts.clone(), 422)
            .token(&own)
            .json(Value::Null),
        case("array document", Method::POST, posts.clone(), 422)
            .token(&own)
            .json(json!([{"body": "x", "anonymous": true}])),
        case("tags not a list", Method::POST, posts.clone(), 422)
            .token(&own)
            .json(json!({"body": "x", "anonymous": true, "tags": "study"})),
        // Invalid values (domain/src/values.rs).
        case(
            "whitespace-only post body",
            Method::POST,
            posts.clone(),
            422,
        )
        .token(&own)
        .json(json!({"body": " \n\t ", "anonymous": true})),
        case("empty title", Method::POST, posts.clone(), 422)
            .token(&own)
            .json(json!({"title": "", "body": "x", "anonymous": true})),
        case("title over 120 chars", Method::POST, posts.clone(), 422)
            .token(&own)
            .json(json!({"title": long(121), "body": "x", "anonymous": true})),
        case("line break in title", Method::POST, posts.clone(), 422)
            .token(&own)
            .json(json!({"title": "two\nlines", "body": "x", "anonymous": true})),
        case(
            "post body over 10000 chars",
            Method::POST,
            posts.clone(),
            422,
        )
        .token(&own)
        .json(json!({"body": long(10_001), "anonymous": true})),
        case(
            "control character in body",
            Method::POST,
            posts.clone(),
            422,
        )
        .token(&own)
        .json(json!({"body": "bell\u{7}", "anonymous": true})),
        case("six tags", Method::POST, posts.clone(), 422)
            .token(&own)
            .json(json!({"body": "x", "anonymous": true, "tags": ["a", "b", "c", "d", "e", "f"]})),
        case("tag with a space", Method::POST, posts.clone(), 422)
            .token(&own)
            .json(json!({"body": "x", "anonymous": true, "tags": ["no spaces"]})),
        case("tag too long", Method::POST, posts.clone(), 422)
            .token(&own)
            .json(json!({"body": "x", "anonymous": true, "tags": ["t".repeat(25)]})),
        case(
            "comment over 2000 chars",
            Method::POST,
            comments.clone(),
            422,
        )
        .token(&own)
        .json(json!({"body": long(2_001), "anonymous": true})),
        case("empty comment", Method::POST, comments.clone(), 422)
            .token(&own)
            .json(json!({"body": "", "anonymous": false})),
        case("comment unknown field", Method::POST, comments.clone(), 422)
            .token(&own)
            .json(json!({"body": "x", "anonymous": true, "as": "洞主"})),
        case("reply_to not a uuid", Method::POST, comments.clone(), 422)
            .token(&own)
            .json(json!({"body": "x", "anonymous": true, "reply_to": "42"})),
        case(
            "reply_to unknown comment",
            Method::POST,
            comments.clone(),
            422,
        )
        .token(&own)
        .json(json!({"body": "x", "anonymous": true, "reply_to": nobody})),
        case("reply_to a comment of another post", Method::POST, comments.clone(), 422)
            .token(&own)
            .json(json!({"body": "x", "anonymous": true, "reply_to": foreign_id})),
        case("reply_to a deleted comment", Method::POST, comments.clone(), 422)
            .token(&own)
            .json(json!({"body": "x", "anonymous": true, "reply_to": deleted_id})),
        case("delete a deleted comment", Method::DELETE, format!("{comments}/{deleted_id}"), 404)
            .token(&own),
        named(
            new_post(Some("application/json"), r#"{"body": "a", "body": "b", "anonymous": true}"#),
            "duplicate field",
            422,
        ),
        named(
            new_post(Some("application/json"), &format!("{}{}", "[".repeat(300), "]".repeat(300))),
            "nested too deep",
            422,
        ),
        // Bad ids.
        case(
            "comment on a bad post id",
            Method::POST,
            "/posts/not-a-uuid/comments",
            404,
        )
        .token(&own)
        .json(json!({"body": "x", "anonymous": true})),
        case(
            "comment on an unknown post",
            Method::POST,
            format!("/posts/{nobody}/comments"),
            404,
        )
        .token(&own)
        .json(json!({"body": "x", "anonymous": true})),
        case("get a bad post id", Method::GET, "/posts/not-a-uuid", 404),
        case(
            "get an unknown post",
            Method::GET,
            format!("/posts/{nobody}"),
            404,
        ),
        case(
            "comments of a bad post id",
            Method::GET,
            "/posts/1234/comments",
            404,
        ),
        case(
            "comments of an unknown post",
            Method::GET,
            format!("/posts/{nobody}/comments"),
            404,
        ),
        case(
            "delete a bad post id",
            Method::DELETE,
            "/posts/not-a-uuid",
            404,
        )
        .token(&own),
        case(
            "delete an unknown post",
            Method::DELETE,
            format!("/posts/{nobody}"),
            404,
        )
        .token(&own),
        case(
            "delete a bad comment id",
            Method::DELETE,
            format!("{comments}/not-a-uuid"),
            404,
        )
        .token(&own),
        case(
            "delete an unknown comment",
            Method::DELETE,
            format!("{comments}/{nobody}"),
            404,
        )
        .token(&own),
        case(
            "delete someone else's post",
            Method::DELETE,
            format!("/posts/{post_id}"),
            403,
        )
        .token(&bearer(&other.token)),
        case(
            "delete someone else's comment",
            Method::DELETE,
            format!("{comments}/{comment_id}"),
            403,
        )
        .token(&bearer(&other.token)),
        // Accounts.
        case("code: bad e-mail", Method::POST, "/auth/codes", 422)
            .json(json!({"email": "not-an-email"})),
        case("code: two @", Method::POST, "/auth/codes", 422)
            .json(json!({"email": "a@b@campus.edu"})),
        case("code: missing e-mail", Method::POST, "/auth/codes", 422).json(json!({})),
        case("code: unknown field", Method::POST, "/auth/codes", 422)
            .json(json!({"email": "x@campus.edu", "admin": true})),
        case("register: bad e-mail", Method::POST, "/users", 422).json(user(
            "nope",
            "newbie",
            "long enough pw",
            "123456",
        )),
        case("register: short password", Method::POST, "/users", 422).json(user(
            "pending@campus.edu",
            "newbie",
            "short",
            "123456",
        )),
        case("register: bad username", Method::POST, "/users", 422).json(user(
            "pending@campus.edu",
            "new bie",
            "long enough pw",
            "123456",
        )),
        case("register: username reserved for a pseudonym", Method::POST, "/users", 422).json(user(
            "pending@campus.edu",
            "alice",
            "long enough pw",
            "123456",
        )),
        case("register: username reserved, any case", Method::POST, "/users", 422).json(user(
            "pending@campus.edu",
            "ZACH",
            "long enough pw",
            "123456",
        )),
        case("register: short username", Method::POST, "/users", 422).json(user(
            "pending@campus.edu",
            "nb",
            "long enough pw",
            "123456",
        )),
        case("register: five-digit code", Method::POST, "/users", 422).json(user(
            "pending@campus.edu",
            "newbie",
            "long enough pw",
            "12345",
        )),
        case("register: letters as code", Method::POST, "/users", 422).json(user(
            "pending@campus.edu",
            "newbie",
            "long enough pw",
            "abcdef",
        )),
        case("register: no code requested", Method::POST, "/users", 400).json(user(
            "never@campus.edu",
            "newbie",
            "long enough pw",
            "123456",
        )),
        case("register: wrong code", Method::POST, "/users", 400)
            .json(user(
                "pending@campus.edu",
                "newbie",
                "long enough pw",
                if late_code == "000000" {
                    "000001"
                } else {
                    "000000"
                },
            ))
            .appends(1),
        case("register: username taken", Method::POST, "/users", 409).json(user(
            "late@campus.edu",
            "BAD_OWNER",
            "long enough pw",
            &late_code,
        )),
        case("register: missing code", Method::POST, "/users", 422).json(
            json!({"email": "late@campus.edu", "username": "newbie", "password": "long enough pw"}),
        ),
        case("login: missing password", Method::POST, "/sessions", 422)
            .json(json!({"login": "bad_owner"})),
        case("login: wrong password", Method::POST, "/sessions", 401)
            .json(json!({"login": "bad_owner", "password": "not the password"})),
        // Queries.
        case(
            "garbage cursor",
            Method::GET,
            "/posts?cursor=%21%21%21",
            400,
        ),
        case(
            "cursor of a non-number",
            Method::GET,
            "/posts?cursor=cDE6YWJj",
            400,
        ),
        case("limit 0", Method::GET, "/posts?limit=0", 400),
        case("limit 101", Method::GET, "/posts?limit=101", 400),
        case("negative limit", Method::GET, "/posts?limit=-1", 400),
        case("limit not a number", Method::GET, "/posts?limit=ten", 400),
        case("limit beyond u32", Method::GET, "/posts?limit=4294967297", 400),
        case("after beyond u64", Method::GET, "/posts?after=18446744073709551616", 400),
        case("after beyond the head in a header", Method::GET, format!("/posts/{post_id}"), 400)
            .header("x-after-position", (head + 1_000).to_string()),
        case("after not a number", Method::GET, "/posts?after=abc", 400),
        case(
            "negative after",
            Method::GET,
            format!("/posts/{post_id}?after=-1"),
            400,
        ),
        case(
            "after beyond the head",
            Method::GET,
            format!("/posts?after={}", head + 1_000_000),
            400,
        ),
        case(
            "after beyond the head on a post",
            Method::GET,
            format!("/posts/{post_id}?after={}", head + 1_000),
            400,
        ),
        case("X-After-Position garbage", Method::GET, "/posts", 400)
            .header("x-after-position", "soon"),
        case(
            "comments with a garbage cursor",
            Method::GET,
            format!("{comments}?cursor=x"),
            400,
        ),
        case(
            "comments with limit 101",
            Method::GET,
            format!("{comments}?limit=101"),
            400,
        ),
        // Authentication.
        case("me without a token", Method::GET, "/me", 401),
        case("me with a garbage token", Method::GET, "/me", 401).token("Bearer garbage"),
        case("me with basic auth", Method::GET, "/me", 401).token("Basic YmFkX293bmVyOnB3"),
        case("me with an empty bearer", Method::GET, "/me", 401).token("Bearer "),
        case("me with an over-long token", Method::GET, "/me", 401)
            .token(&bearer(&"t".repeat(500))),
        case("post without a token", Method::POST, posts.clone(), 401)
            .json(json!({"body": "x", "anonymous": true})),
        case(
            "post with a garbage token",
            Method::POST,
            posts.clone(),
            401,
        )
        .token("Bearer nope")
        .json(json!({"body": "x", "anonymous": true})),
        case(
            "logout without a token",
            Method::DELETE,
            "/sessions/current",
            401,
        ),
        case(
            "admin status as a user",
            Method::GET,
            "/admin/projections",
            403,
        )
        .token(&own),
        // Idempotency keys.
        case("empty Idempotency-Key", Method::POST, posts.clone(), 400)
            .token(&own)
            .header("idempotency-key", "")
            .json(json!({"body": "x", "anonymous": true})),
        case(
            "over-long Idempotency-Key",
            Method::POST,
            posts.clone(),
            400,
        )
        .token(&own)
        .header("idempotency-key", "k".repeat(201))
        .json(json!({"body": "x", "anonymous": true})),
        case(
            "Idempotency-Key with a space",
            Method::POST,
            posts.clone(),
            400,
        )
        .token(&own)
        .header("idempotency-key", "two words")
        .json(json!({"body": "x", "anonymous": true})),
        case(
            "post key reused, other body",
            Method::POST,
            posts.clone(),
            422,
        )
        .token(&own)
        .header("idempotency-key", "used-key")
        .json(json!({"body": "another body", "anonymous": false})),
        case(
            "comment key reused, other body",
            Method::POST,
            comments.clone(),
            422,
        )
        .token(&own)
        .header("idempotency-key", "used-comment-key")
        .json(json!({"body": "another body", "anonymous": true})),
        // Routing.
        case("unknown route", Method::GET, "/nothing-here", 404),
        case(
            "unknown route outside the API",
            Method::GET,
            "!/index.php",
            404,
        ),
        case("PUT on posts", Method::PUT, posts.clone(), 405)
            .token(&own)
            .json(json!({"body": "x", "anonymous": true})),
        case(
            "DELETE on the post list",
            Method::DELETE,
            posts.clone(),
            405,
        )
        .token(&own),
        case(
            "PATCH a post",
            Method::PATCH,
            format!("/posts/{post_id}"),
            405,
        )
        .token(&own)
        .json(json!({"body": "x"})),
        case("GET sessions", Method::GET, "/sessions", 405),
        // The community layer (issue 18).
        case("react to an unknown post", Method::PUT, format!("/posts/{nobody}/reaction"), 404)
            .token(&own)
            .json(json!({"value": 1})),
        case("react to a malformed post id", Method::PUT, "/posts/nope/reaction", 404)
            .token(&own)
            .json(json!({"value": 1})),
        case("reaction 2", Method::PUT, format!("/posts/{post_id}/reaction"), 422)
            .token(&own)
            .json(json!({"value": 2})),
        case("reaction -2", Method::PUT, format!("/posts/{post_id}/reaction"), 422)
            .token(&own)
            .json(json!({"value": -2})),
        case("reaction as text", Method::PUT, format!("/posts/{post_id}/reaction"), 422)
            .token(&own)
            .json(json!({"value": "1"})),
        case("reaction 0.5", Method::PUT, format!("/posts/{post_id}/reaction"), 422)
            .token(&own)
            .json(json!({"value": 0.5})),
        case("reaction without a value", Method::PUT, format!("/posts/{post_id}/reaction"), 422)
            .token(&own)
            .json(json!({})),
        case("reaction without a token", Method::PUT, format!("/posts/{post_id}/reaction"), 401)
            .json(json!({"value": 1})),
        case(
            "react to an unknown comment",
            Method::PUT,
            format!("/posts/{post_id}/comments/{nobody}/reaction"),
            404,
        )
        .token(&own)
        .json(json!({"value": 1})),
        case("react to an unknown comment by id", Method::PUT, format!("/comments/{nobody}/reaction"), 404)
            .token(&own)
            .json(json!({"value": -1})),
        case("react to a deleted comment", Method::PUT, format!("/posts/{post_id}/comments/{deleted_id}/reaction"), 404)
            .token(&own)
            .json(json!({"value": 1})),
        case("a poll of one option", Method::POST, posts.clone(), 422)
            .token(&own)
            .json(json!({"body": "poll?", "anonymous": true, "poll": {"options": ["只有一个"]}})),
        case("a poll of five options", Method::POST, posts.clone(), 422)
            .token(&own)
            .json(json!({"body": "poll?", "anonymous": true, "poll": {"options": ["a", "b", "c", "d", "e"]}})),
        case("a poll with an option twice", Method::POST, posts.clone(), 422)
            .token(&own)
            .json(json!({"body": "poll?", "anonymous": true, "poll": {"options": ["Yes", "yes"]}})),
        case("a poll option of 31 characters", Method::POST, posts.clone(), 422)
            .token(&own)
            .json(json!({"body": "poll?", "anonymous": true, "poll": {"options": [long(31), "b"]}})),
        case("a vote on a post without a poll", Method::POST, format!("/posts/{post_id}/poll/votes"), 409)
            .token(&own)
            .json(json!({"option": 0})),
        case("a vote on an unknown post", Method::POST, format!("/posts/{nobody}/poll/votes"), 404)
            .token(&own)
            .json(json!({"option": 0})),
        case("a vote for option -1", Method::POST, format!("/posts/{post_id}/poll/votes"), 422)
            .token(&own)
            .json(json!({"option": -1})),
        case("follow with a text", Method::PUT, format!("/posts/{post_id}/follow"), 422)
            .token(&own)
            .json(json!({"following": "yes"})),
        case("follow an unknown post", Method::PUT, format!("/posts/{nobody}/follow"), 404)
            .token(&own)
            .json(json!({"following": true})),
        case("a Last-Event-ID that is not a number", Method::GET, "/me/notifications/stream", 400)
            .token(&own)
            .header("last-event-id", "abc"),
        case("a negative Last-Event-ID", Method::GET, "/me/notifications/stream", 400)
            .token(&own)
            .header("last-event-id", "-5"),
        case("a Last-Event-ID beside another after", Method::GET, "/me/notifications/stream?after=1", 400)
            .token(&own)
            .header("last-event-id", "2"),
        case("mark read beyond the log", Method::POST, "/me/notifications/read", 422)
            .token(&own)
            .json(json!({"up_to": 1_000_000_000u64})),
        case("mark read with a text", Method::POST, "/me/notifications/read", 422)
            .token(&own)
            .json(json!({"up_to": "all"})),
        case("keep an unknown post", Method::PUT, format!("/me/favourites/{nobody}"), 404)
            .token(&own)
            .json(json!({})),
        case("a blank folder", Method::PUT, format!("/me/favourites/{post_id}"), 422)
            .token(&own)
            .json(json!({"folder": "  "})),
        case("notifications of size 0", Method::GET, "/me/notifications?limit=0", 400).token(&own),
        case("the hot list of size 0", Method::GET, "/posts/hot?limit=0", 400),
        // Per-device sessions (issue 19). A non-canonical spelling of the caller's own live
        // session must not end it (every later case would then answer 401).
        case("end a session: not a UUID", Method::DELETE, end("not-a-uuid"), 404).token(&own),
        case("end a session: upper-case UUID", Method::DELETE, end(&own_session.to_uppercase()), 404)
            .token(&own),
        case("end a session: UUID without hyphens", Method::DELETE, end(&own_session.replace('-', "")), 404)
            .token(&own),
        case("end a session: urn:uuid form", Method::DELETE, end(&format!("urn:uuid:{own_session}")), 404)
            .token(&own),
        case("end an unknown session", Method::DELETE, end(&nobody), 404).token(&own),
        case("end someone else's session", Method::DELETE, end(&others_session), 404).token(&own),
        case("end an ended session", Method::DELETE, end(&gone_session), 404).token(&own),
        case("end a session with its ended token", Method::DELETE, end(&gone_session), 401)
            .token(&bearer(&gone)),
        case("end a session without a token", Method::DELETE, end(&own_session), 401),
        case("end a session with a garbage token", Method::DELETE, end(&own_session), 401)
            .token("Bearer nope"),
        case("list sessions without a token", Method::GET, "/me/sessions", 401),
        case("PUT on a session", Method::PUT, end(&own_session), 405).token(&own),
        case("login: device over 60 chars", Method::POST, "/sessions", 422)
            .json(login_on(json!(long(61)))),
        case("login: empty device", Method::POST, "/sessions", 422).json(login_on(json!(""))),
        case("login: invisible device", Method::POST, "/sessions", 422)
            .json(login_on(json!(" \u{200B} "))),
        case("login: device with a control character", Method::POST, "/sessions", 422)
            .json(login_on(json!("bell\u{7}"))),
        case("login: device with a line break", Method::POST, "/sessions", 422)
            .json(login_on(json!("two\nlines"))),
        case("login: device with a bidi override", Method::POST, "/sessions", 422)
            .json(login_on(json!("\u{202E}enohp"))),
        case("login: device a number", Method::POST, "/sessions", 422).json(login_on(json!(42))),
        case("login: device a list", Method::POST, "/sessions", 422)
            .json(login_on(json!(["phone"]))),
    ];
    assert!(cases.len() >= 30);

    let failures = failures(&app, &cases).await;
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    // The one recorded refusal is the wrong guess, and nothing else was written.
    let written = app
        .event_store()
        .read_all(head, 100)
        .await
        .expect("the log");
    let types: Vec<&str> = written.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["VerificationFailed"]);
    app.assert_no_server_errors();
}

/// The answer of the first request with a key, and where the log stood after it.
async fn keyed(app: &TestApp, path: &str, token: &str, key: &str, body: &Value) -> (Value, u16) {
    let request = app
        .client
        .post(app.url(path))
        .bearer_auth(token)
        .header("idempotency-key", key)
        .json(body);
    let reply = app.send(request).await;
    let status = reply.status.as_u16();
    (reply.json(), status)
}

async fn assert_repeat_answers_the_same(
    app: &TestApp,
    path: &str,
    token: &str,
    body: &Value,
    id_field: &str,
) -> Position {
    let (first, status) = keyed(app, path, token, "repeat-me", body).await;
    assert_eq!(status, 201, "{first}");
    let head = app.head().await;
    assert_eq!(head, position(&first));
    for _ in 0..3 {
        let (again, status) = keyed(app, path, token, "repeat-me", body).await;
        assert_eq!(status, 200, "a replay is not a creation: {again}");
        assert_eq!(again[id_field], first[id_field], "{again} vs {first}");
        assert_eq!(again["position"], first["position"]);
        assert_eq!(again["author_name"], first["author_name"]);
        assert_eq!(app.head().await, head, "a replay appended events");
    }
    head
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_repeated_idempotency_key_returns_the_first_answer() {
    let app = spawn_app().await;
    let user = app.new_user("repeat_user").await;
    let other = app.new_user("repeat_other").await;
    let post =
        json!({"title": "again", "body": "sent twice by a flaky network", "anonymous": true});
    assert_repeat_answers_the_same(&app, "/posts", &user.token, &post, "post_id").await;
    let after = app.head().await;
    let feed = app.all_pages("/posts", after).await;
    assert_eq!(feed.len(), 1, "the repeat published a second post");
    let post_id = str_field(&feed[0], "post_id").to_owned();

    // `other` has never used the key: under their account it is a new request.
    let path = format!("/posts/{post_id}/comments");
    let comment = json!({"body": "only once", "anonymous": true});
    let at =
        assert_repeat_answers_the_same(&app, &path, &other.token, &comment, "comment_id").await;
    let listed = app.all_pages(&path, at).await;
    assert_eq!(listed.len(), 1, "the repeat added a second comment");

    // `user` already used the key for the post: another request under it is refused.
    let (refused, status) = keyed(&app, &path, &user.token, "repeat-me", &comment).await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(app.head().await, at);
    app.assert_no_server_errors();
}

/// A client that times out and retries sends its repeat while the first request is still
/// being handled; every copy must still get the one answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_repeats_of_one_idempotency_key_get_one_answer() {
    let app = std::sync::Arc::new(spawn_app().await);
    const COPIES: usize = 12;

    let register = |key: String, body: Value| {
        let app = app.clone();
        async move {
            let request = app
                .client
                .post(app.url("/users"))
                .header("idempotency-key", key)
                .json(&body);
            app.send(request).await
        }
    };
    for n in 0..4 {
        let (email, username) = (format!("twice{n}@campus.edu"), format!("twice{n}"));
        app.request_code(&email).await.expect(202);
        let code = app.code_for(&email);
        let body = json!({"email": email, "username": username, "password": "correct horse battery", "code": code});
        let replies = futures::future::join_all(
            (0..COPIES).map(|_| tokio::spawn(register(format!("register-{n}"), body.clone()))),
        )
        .await;
        let mut user_ids = std::collections::HashSet::new();
        for r in replies {
            let r = r.expect("a task");
            assert!(
                r.status.is_success(),
                "a concurrent repeat of a registration was refused: {} {}",
                r.status,
                r.text
            );
            user_ids.insert(str_field(&r.json(), "user_id").to_owned());
        }
        assert_eq!(user_ids.len(), 1, "one key registered several users");
    }

    let token = app.login("twice0", "correct horse battery").await;
    let post = json!({"body": "sent by an impatient client", "anonymous": true});
    let replies = futures::future::join_all((0..COPIES).map(|_| {
        let (app, token, post) = (app.clone(), token.clone(), post.clone());
        tokio::spawn(async move {
            let request = app
                .client
                .post(app.url("/posts"))
                .bearer_auth(&token)
                .header("idempotency-key", "post-once")
                .json(&post);
            app.send(request).await
        })
    }))
    .await;
    let mut post_ids = std::collections::HashSet::new();
    for r in replies {
        let body = r.expect("a task");
        assert!(body.status.is_success(), "{} {}", body.status, body.text);
        post_ids.insert(str_field(&body.json(), "post_id").to_owned());
    }
    assert_eq!(post_ids.len(), 1, "one key published several posts");
    let feed = app.all_pages("/posts", app.head().await).await;
    assert_eq!(feed.len(), 1);
    app.assert_no_server_errors();
}

/// The OpenAPI document names every route and places each parameter where the route takes
/// it: a path parameter is a `{name}` of its path; everything else is a query or header.
#[tokio::test]
async fn the_openapi_document_places_every_parameter_where_the_route_reads_it() {
    let app = crate::helpers::spawn_app().await;
    let doc = app
        .send(
            app.client
                .get(format!("{}/api/v1/openapi.json", app.address)),
        )
        .await
        .expect(200);
    let paths = doc["paths"].as_object().expect("paths");
    for wanted in [
        "/api/v1/tasks",
        "/api/v1/workers/claim",
        "/api/v1/stats/daily",
        "/api/v1/search",
    ] {
        assert!(paths.contains_key(wanted), "{wanted} is documented");
    }
    let mut checked = 0;
    for (path, operations) in paths {
        for (method, operation) in operations.as_object().expect("operations") {
            for parameter in operation["parameters"].as_array().into_iter().flatten() {
                let (name, place) = (
                    parameter["name"].as_str().expect("a name"),
                    parameter["in"].as_str().expect("a place"),
                );
                let in_path = path.contains(&format!("{{{name}}}"));
                assert_eq!(
                    place == "path",
                    in_path,
                    "{method} {path}: {name} is in {place}"
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 20, "only {checked} parameters");
}

/// Moderation's refusals (issue 19): each a 4xx problem, the log as it was.
#[tokio::test]
async fn malformed_moderation_requests_get_problems_and_change_nothing() {
    let app = spawn_app().await;
    let author = app.new_user("mod_bad_author").await;
    let other = app.new_user("mod_bad_other").await;
    let moderator = app.new_moderator("mod_bad_mod").await;
    let anonymous = |token: String, body: &'static str| {
        let app = &app;
        async move {
            let post = app
                .create_post(&token, &json!({"body": body, "anonymous": true}))
                .await
                .expect(201);
            str_field(&post, "post_id").to_owned()
        }
    };
    let post = anonymous(author.token.clone(), "aim here").await;
    let removed = anonymous(author.token.clone(), "to be removed").await;
    let removed_too = anonymous(author.token.clone(), "to be removed too").await;
    let own = anonymous(moderator.token.clone(), "the moderator's own").await;
    let comment = app
        .comment(
            &author.token,
            &post,
            &json!({"body": "c", "anonymous": true}),
        )
        .await
        .expect(201);
    let comment = str_field(&comment, "comment_id").to_owned();
    for id in [&removed, &removed_too] {
        app.post_json(
            &format!("/moderation/posts/{id}/acts"),
            Some(&moderator.token),
            &json!({"act": "remove", "reason": "spam"}),
        )
        .await
        .expect(200);
    }
    let head = app.head().await;
    let mine = app
        .get_auth(&format!("/me/sanctions?after={head}"), &author.token)
        .await
        .expect(200);
    let appealed = str_field(&mine["items"][1], "sanction_id").to_owned();
    let unappealed = str_field(&mine["items"][0], "sanction_id").to_owned();
    app.post_json(
        &format!("/me/sanctions/{appealed}/appeal"),
        Some(&author.token),
        &json!({}),
    )
    .await
    .expect(201);

    let (a, o, m) = (
        bearer(&author.token),
        bearer(&other.token),
        bearer(&moderator.token),
    );
    let long = "x".repeat(1001);
    let reports = format!("/posts/{post}/reports");
    let acts = format!("/moderation/posts/{post}/acts");
    let unknown = "0190a6d1-0000-7000-8000-00000000beef";
    let cases = vec![
        case("report: unknown reason", Method::POST, &reports, 422)
            .token(&o)
            .json(json!({"reason": "rude"})),
        case("report: reason not a string", Method::POST, &reports, 422)
            .token(&o)
            .json(json!({"reason": 3})),
        case("report: no reason", Method::POST, &reports, 422)
            .token(&o)
            .json(json!({"text": "why"})),
        case("report: text too long", Method::POST, &reports, 422)
            .token(&o)
            .json(json!({"reason": "spam", "text": long})),
        case("report: blank text", Method::POST, &reports, 422)
            .token(&o)
            .json(json!({"reason": "spam", "text": " \u{200b} "})),
        case("report: unknown field", Method::POST, &reports, 422)
            .token(&o)
            .json(json!({"reason": "spam", "weight": 100})),
        case("report: no token", Method::POST, &reports, 401).json(json!({"reason": "spam"})),
        case(
            "report a comment: unknown reason",
            Method::POST,
            format!("/comments/{comment}/reports"),
            422,
        )
        .token(&o)
        .json(json!({"reason": "boring"})),
        case(
            "report: bad post id",
            Method::POST,
            "/posts/not-an-id/reports",
            404,
        )
        .token(&o)
        .json(json!({"reason": "spam"})),
        case(
            "report: unknown post",
            Method::POST,
            format!("/posts/{unknown}/reports"),
            404,
        )
        .token(&o)
        .json(json!({"reason": "spam"})),
        case(
            "report: unknown comment",
            Method::POST,
            format!("/comments/{unknown}/reports"),
            404,
        )
        .token(&o)
        .json(json!({"reason": "spam"})),
        case(
            "report: a removed post",
            Method::POST,
            format!("/posts/{removed}/reports"),
            410,
        )
        .token(&o)
        .json(json!({"reason": "spam"})),
        case("report: while sanctioned", Method::POST, &reports, 403)
            .token(&a)
            .json(json!({"reason": "spam"})),
        case("act: unknown act", Method::POST, &acts, 422)
            .token(&m)
            .json(json!({"act": "ban", "reason": "spam"})),
        case("act: unknown reason", Method::POST, &acts, 422)
            .token(&m)
            .json(json!({"act": "fold", "reason": "ugly"})),
        case("act: note too long", Method::POST, &acts, 422)
            .token(&m)
            .json(json!({"act": "fold", "reason": "spam", "note": "n".repeat(301)})),
        case("act: sanction flag on a fold", Method::POST, &acts, 422)
            .token(&m)
            .json(json!({"act": "fold", "reason": "spam", "sanction": false})),
        case(
            "act: fold own content",
            Method::POST,
            format!("/moderation/posts/{own}/acts"),
            403,
        )
        .token(&m)
        .json(json!({"act": "fold", "reason": "spam"})),
        case(
            "act: sanction the author of own content",
            Method::POST,
            format!("/moderation/posts/{own}/acts"),
            403,
        )
        .token(&m)
        .json(json!({"act": "sanction", "reason": "spam"})),
        case(
            "act: sanction twice for one item",
            Method::POST,
            format!("/moderation/posts/{removed}/acts"),
            409,
        )
        .token(&m)
        .json(json!({"act": "sanction", "reason": "spam"})),
        case("act: not a moderator", Method::POST, &acts, 403)
            .token(&o)
            .json(json!({"act": "fold", "reason": "spam"})),
        case(
            "act: unknown post",
            Method::POST,
            format!("/moderation/posts/{unknown}/acts"),
            404,
        )
        .token(&m)
        .json(json!({"act": "fold", "reason": "spam"})),
        case(
            "act: unknown comment",
            Method::POST,
            format!("/moderation/comments/{unknown}/acts"),
            404,
        )
        .token(&m)
        .json(json!({"act": "fold", "reason": "spam"})),
        case(
            "appeal: twice",
            Method::POST,
            format!("/me/sanctions/{appealed}/appeal"),
            409,
        )
        .token(&a)
        .json(json!({})),
        case(
            "appeal: someone else's sanction",
            Method::POST,
            format!("/me/sanctions/{unappealed}/appeal"),
            404,
        )
        .token(&o)
        .json(json!({})),
        case(
            "appeal: not an id",
            Method::POST,
            "/me/sanctions/42/appeal",
            404,
        )
        .token(&a)
        .json(json!({})),
        case(
            "appeal: an upper-case id",
            Method::POST,
            format!("/me/sanctions/{}/appeal", unappealed.to_uppercase()),
            404,
        )
        .token(&a)
        .json(json!({})),
        case(
            "appeal: unknown sanction",
            Method::POST,
            format!("/me/sanctions/{unknown}/appeal"),
            404,
        )
        .token(&a)
        .json(json!({})),
        case(
            "appeal: text too long",
            Method::POST,
            format!("/me/sanctions/{unappealed}/appeal"),
            422,
        )
        .token(&a)
        .json(json!({"text": "t".repeat(1001)})),
        case(
            "decision: not appealed",
            Method::POST,
            format!("/moderation/sanctions/{unappealed}/decision"),
            409,
        )
        .token(&m)
        .json(json!({"uphold": true})),
        case(
            "decision: not a boolean",
            Method::POST,
            format!("/moderation/sanctions/{appealed}/decision"),
            422,
        )
        .token(&m)
        .json(json!({"uphold": "yes"})),
        case(
            "decision: unknown sanction",
            Method::POST,
            format!("/moderation/sanctions/{unknown}/decision"),
            404,
        )
        .token(&m)
        .json(json!({"uphold": true})),
        case(
            "grant moderator: not an admin",
            Method::PUT,
            format!("/admin/users/{}/moderator", other.user_id),
            403,
        )
        .token(&m)
        .json(json!({"moderator": true})),
        case("log: limit 0", Method::GET, "/moderation/log?limit=0", 400),
        case(
            "log: before past the largest position",
            Method::GET,
            "/moderation/log?before=9223372036854775808",
            400,
        ),
        case(
            "log: before not a number",
            Method::GET,
            "/moderation/log?before=x",
            400,
        ),
        case(
            "queue: limit 101",
            Method::GET,
            "/moderation/queue?limit=101",
            400,
        )
        .token(&m),
    ];
    assert!(cases.len() > 20);
    let failures = failures(&app, &cases).await;
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    app.assert_no_server_errors();
}
