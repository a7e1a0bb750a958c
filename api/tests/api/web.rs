//! The forum page (issue 20): served by the binary itself, from files compiled in, under a
//! policy that lets nothing but its own script run.

use crate::helpers::spawn_app;

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
    // The script speaks to the public API only.
    let script = app
        .send(app.client.get(format!("{}/assets/forum.js", app.address)))
        .await
        .text;
    assert!(script.contains(r#"const API = "/api/v1";"#));
    assert!(!script.contains("/admin/"), "the forum uses no admin route");
}
