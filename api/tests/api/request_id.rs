//! `X-Request-Id`: a short, plain id chosen by the client is kept in the metadata of the
//! events its request causes; any other value is replaced by a generated one, which the
//! answer carries and the events store.

use reqwest::header::HeaderValue;
use serde_json::json;

use crate::helpers::{TestApp, spawn_app};

/// Asks for a code with `id` as `X-Request-Id` and returns the id the answer carries and the
/// correlation and causation ids of the events the request appended.
async fn ids_of_a_request(
    app: &TestApp,
    email: &str,
    id: HeaderValue,
) -> (String, Vec<(Option<String>, Option<String>)>) {
    let before = app.head().await;
    let reply = app
        .send(
            app.client
                .post(app.url("/auth/codes"))
                .header("x-request-id", id)
                .json(&json!({ "email": email })),
        )
        .await;
    reply.expect(202);
    let answered = reply
        .headers
        .get("x-request-id")
        .expect("every answer carries a request id")
        .to_str()
        .expect("a request id the server answers with is ASCII")
        .to_owned();
    let events = app
        .event_store()
        .read_all(before, 100)
        .await
        .expect("the log reads");
    assert!(!events.is_empty(), "the request appended events");
    let ids = events
        .into_iter()
        .map(|e| (e.metadata.correlation_id, e.metadata.causation_id))
        .collect();
    (answered, ids)
}

#[tokio::test]
async fn only_short_visible_ascii_request_ids_reach_the_event_log() {
    let app = spawn_app().await;
    let longest = format!("{}{}", "Req-1.2_3:4/5!~".repeat(4), "z".repeat(4));
    assert_eq!(longest.len(), 64);
    for (n, good) in ["trace-7f3a_b.c:d", longest.as_str()]
        .into_iter()
        .enumerate()
    {
        let (answered, ids) = ids_of_a_request(
            &app,
            &format!("kept{n}@example.edu"),
            HeaderValue::from_str(good).unwrap(),
        )
        .await;
        assert_eq!(answered, good);
        for (correlation, causation) in ids {
            assert_eq!(correlation.as_deref(), Some(good));
            assert_eq!(causation.as_deref(), Some(good));
        }
    }

    let huge = "a".repeat(60_000);
    let too_long = "b".repeat(65);
    let bad: [&[u8]; 6] = [
        huge.as_bytes(),
        too_long.as_bytes(),
        b"has spaces in it",
        b"tab\tinside",
        "non-ascii-\u{4e2d}\u{6587}".as_bytes(),
        b" ",
    ];
    for (n, bad) in bad.into_iter().enumerate() {
        let (answered, ids) = ids_of_a_request(
            &app,
            &format!("replaced{n}@example.edu"),
            HeaderValue::from_bytes(bad).unwrap(),
        )
        .await;
        let shown = String::from_utf8_lossy(&bad[..bad.len().min(40)]).into_owned();
        assert_ne!(answered.as_bytes(), bad, "{shown:?} was echoed");
        assert!(
            uuid::Uuid::parse_str(&answered).is_ok(),
            "{shown:?}: the server generates a UUID instead, not {answered:?}"
        );
        for (correlation, causation) in ids {
            assert_eq!(correlation.as_deref(), Some(answered.as_str()), "{shown:?}");
            assert_eq!(causation.as_deref(), Some(answered.as_str()), "{shown:?}");
        }
    }
    app.assert_no_server_errors();
}
