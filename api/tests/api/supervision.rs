//! Background loops are supervised: one that dies turns `/readyz` to 503 with its name, while
//! the process keeps serving.

use std::time::Duration;

use crate::helpers::spawn_app;

async fn readyz_until_unready(app: &crate::helpers::TestApp) -> serde_json::Value {
    for _ in 0..100 {
        let ready = app.get("/readyz").await;
        if ready.status.as_u16() == 503 {
            return ready.json();
        }
        assert_eq!(ready.status.as_u16(), 200, "{}", ready.text);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("/readyz stayed ready")
}

#[tokio::test]
async fn a_killed_webhook_dispatcher_makes_the_process_unready_by_name() {
    let app = spawn_app().await;
    app.get("/readyz").await.expect(200);
    let names = app.loops().names();
    for expected in [
        "projector feed",
        "projector search",
        "notifier",
        "lease reaper",
        "webhook dispatcher",
        "last-seen flush",
        "rate-limit pruner",
        "sanction sweep",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} is not supervised: {names:?}"
        );
    }

    assert!(app.loops().abort("webhook dispatcher"));
    let problem = readyz_until_unready(&app).await;
    let detail = problem["detail"].as_str().expect("a detail");
    assert!(
        detail.contains("webhook dispatcher") && detail.contains("aborted"),
        "{detail}"
    );
    assert_eq!(problem["status"], 503);
    // Only the loop is gone: the process keeps answering.
    app.get("/healthz").await.expect(200);
    app.get("/posts").await.expect(200);
}

#[tokio::test]
async fn a_projector_that_dies_is_named_too() {
    let app = spawn_app().await;
    assert!(app.loops().abort("projector comments"));
    let problem = readyz_until_unready(&app).await;
    let detail = problem["detail"].as_str().expect("a detail");
    assert!(detail.contains("projector comments"), "{detail}");
}
