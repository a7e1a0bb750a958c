//! The forum page (issue 20): served by the binary itself, from files compiled in, under a
//! policy that lets nothing but its own script run.

use serde_json::json;

use crate::helpers::{spawn_app, str_field};

#[tokio::test]
async fn the_forum_page_and_its_assets_are_served_under_a_strict_policy() {
    let app = spawn_app().await;
    let root = format!("{}/", app.address);
    let page = app.send(app.client.get(&root)).await;
    assert_eq!(page.status.as_u16(), 200, "{}", page.everything());
    assert!(page.content_type().starts_with("text/html"));
    let policy = page
        .headers
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(policy.contains("script-src 'self'") && !policy.contains("unsafe-inline"));
    // No inline script or style: everything the page runs is a file of its own.
    assert!(!page.text.contains("<script>") && !page.text.contains("style="));
    assert!(
        page.text
            .contains(r#"<script src="/assets/forum.js" defer></script>"#)
    );
    for (path, kind) in [
        ("/assets/forum.js", "text/javascript"),
        ("/assets/forum.css", "text/css"),
    ] {
        let asset = app
            .send(app.client.get(format!("{}{path}", app.address)))
            .await;
        assert_eq!(asset.status.as_u16(), 200, "{path}");
        assert!(asset.content_type().starts_with(kind), "{path}");
        assert!(!asset.text.is_empty());
    }
    // The scripts speak to the public API only; the forum's uses no admin route.
    let get = |path: &'static str| {
        let app = &app;
        async move {
            app.send(app.client.get(format!("{}{path}", app.address)))
                .await
                .text
        }
    };
    assert!(
        get("/assets/common.js")
            .await
            .contains(r#"const API = "/api/v1";"#)
    );
    assert!(!get("/assets/forum.js").await.contains("/admin/"));
}

#[tokio::test]
async fn the_console_reads_the_log_pseudonymised_and_only_admins_may() {
    let app = spawn_app().await;
    let (admin, author) = (
        app.new_admin("logreader").await,
        app.new_user("loggedauthor").await,
    );
    let post = app
        .create_post(
            &author.token,
            &json!({"body": "in the log", "anonymous": true}),
        )
        .await
        .expect(201);
    let post_id = str_field(&post, "post_id");
    app.get_auth("/admin/events", &author.token)
        .await
        .expect_problem(403);
    let all = app.get_auth("/admin/events?limit=100", &admin.token).await;
    let page = all.expect(200);
    assert!(page["items"].as_array().expect("items").len() > 3);
    let text = all.text.to_lowercase();
    for secret in [
        &author.user_id,
        &author.username,
        &author.email,
        &admin.user_id,
        &admin.email,
    ] {
        assert!(
            !text.contains(&secret.to_lowercase()),
            "{secret} is in the console's log"
        );
    }
    // Filters: by type, by stream, by the request that caused them.
    let published = app
        .get_auth("/admin/events?type=PostPublished", &admin.token)
        .await
        .expect(200);
    let items = published["items"].as_array().expect("items");
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["data"]["post_id"], post_id);
    let stream = items[0]["stream"].as_str().expect("stream");
    let in_stream = app
        .get_auth(&format!("/admin/events?stream={stream}"), &admin.token)
        .await
        .expect(200);
    assert_eq!(in_stream["items"].as_array().expect("items").len(), 1);
    let correlation = items[0]["metadata"]["correlation_id"]
        .as_str()
        .expect("a correlation id");
    let caused = app
        .get_auth(
            &format!("/admin/events?correlation={correlation}"),
            &admin.token,
        )
        .await
        .expect(200);
    assert!(
        caused["items"]
            .as_array()
            .expect("items")
            .iter()
            .all(|e| e["metadata"]["correlation_id"] == correlation)
    );
    // Paging: after the last position there is nothing.
    let head = page["head"].as_u64().expect("head");
    let none = app
        .get_auth(&format!("/admin/events?start_after={head}"), &admin.token)
        .await
        .expect(200);
    assert!(none["items"].as_array().expect("items").is_empty());
    assert!(none["next_start_after"].is_null());
    for bad in [
        "limit=0",
        "until=9223372036854775808",
        "start_after=9223372036854775808",
        "start_after=x",
    ] {
        app.get_auth(&format!("/admin/events?{bad}"), &admin.token)
            .await
            .expect_problem(400);
    }
}
