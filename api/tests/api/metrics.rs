//! `/metrics` stays bounded whatever clients send: invented methods share one label, and
//! paths appear only as route templates (or `unmatched`).

use std::collections::BTreeSet;

use reqwest::Method;

use crate::helpers::{TestApp, spawn_app};

async fn metrics(app: &TestApp) -> String {
    let reply = app.get("/metrics").await;
    assert_eq!(reply.status.as_u16(), 200, "{}", reply.text);
    reply.text
}

/// The values of `label` in a Prometheus exposition.
fn values_of(exposition: &str, label: &str) -> BTreeSet<String> {
    let key = format!("{label}=\"");
    exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .flat_map(|line| line.split(key.as_str()).skip(1))
        .filter_map(|rest| rest.split_once('"').map(|(v, _)| v.to_owned()))
        .collect()
}

/// Sends `n` requests with invented methods to a real route and to invented paths, and as
/// many GETs to invented paths.
async fn invent(app: &TestApp, round: &str, n: usize) {
    for i in 0..n {
        let method = Method::from_bytes(format!("FOOBAR{round}{i}").as_bytes()).unwrap();
        let on_route = app.client.request(method.clone(), app.url("/posts"));
        let nowhere = app
            .client
            .request(method, app.url(&format!("/nowhere-{round}-{i}")));
        let get_nowhere = app.client.get(format!("{}/zz-{round}-{i}/x", app.address));
        for request in [on_route, nowhere, get_nowhere] {
            let reply = app.send(request).await;
            assert!(reply.status.is_client_error(), "{}", reply.status);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invented_methods_and_paths_do_not_grow_metrics() {
    let app = spawn_app().await;
    // The first round creates the few label sets such requests may have at all.
    invent(&app, "warm", 3).await;
    let before = metrics(&app).await;
    invent(&app, "load", 500).await;
    let after = metrics(&app).await;

    for marker in ["FOOBAR", "nowhere-", "zz-"] {
        assert!(
            !after.contains(marker),
            "{marker:?} reached a label: {}",
            after
                .lines()
                .find(|l| l.contains(marker))
                .unwrap_or_default()
        );
    }
    let standard = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE", "OTHER",
    ];
    for method in values_of(&after, "method") {
        assert!(
            standard.contains(&method.as_str()),
            "method label {method:?}"
        );
    }
    for route in values_of(&after, "route") {
        assert!(
            route == "unmatched" || route.starts_with("/api/v1"),
            "route label {route:?}"
        );
    }
    // 1 500 requests; other tests of this process may add a few label sets meanwhile, but
    // one label set per request would add more than a megabyte.
    let grown = after.len().saturating_sub(before.len());
    assert!(grown < 200 * 1024, "/metrics grew by {grown} bytes");
    app.assert_no_server_errors();
}
