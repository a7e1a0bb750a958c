//! Accounts: verification codes, uniqueness, sessions and rate limits.

use std::sync::Arc;

use chrono::{Duration, Utc};
use commands::CommandHandler;
use commands::registration::issue_code;
use domain::values::Email;
use serde_json::json;

use crate::helpers::{PASSWORD, spawn_app, spawn_app_with, str_field};

/// A six-digit code that is not `code`.
fn wrong(code: &str, salt: u32) -> String {
    let n: u32 = code.parse().expect("six digits");
    format!("{:06}", (n + 1 + salt) % 1_000_000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_wrong_codes_burn_the_code_until_a_new_one_is_sent() {
    let app = spawn_app().await;
    let email = "guesser@campus.edu";
    app.request_code(email).await.expect(202);
    let code = app.code_for(email);
    for i in 0..5 {
        let kind = app
            .register_with_code(email, "guesser", PASSWORD, &wrong(&code, i))
            .await
            .expect_problem(400);
        assert_eq!(kind, "urn:treehole:problem:verification-failed");
    }
    let burned = app
        .register_with_code(email, "guesser", PASSWORD, &code)
        .await;
    burned.expect_problem(400);
    assert!(
        burned.text.contains("too many"),
        "the right code after five wrong ones: {}",
        burned.text
    );

    app.request_code(email).await.expect(202);
    let fresh = app.code_for(email);
    let registered = app
        .register_with_code(email, "guesser", PASSWORD, &fresh)
        .await
        .expect(201);
    assert_eq!(registered["username"], "guesser");
    // A code works once.
    app.register_with_code(email, "guesser_two", PASSWORD, &fresh)
        .await
        .expect_problem(400);
    app.assert_no_server_errors();
}

/// Thirty guesses at once, the right code last, twenty times over: each guess is judged by the
/// Verification aggregate and a wrong one is recorded under the stream's expected version, so
/// no more than five are ever judged, and every "wrong" answered is a failure in the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_simultaneous_guesses_judge_at_most_five() {
    let app = spawn_app().await;
    let store = app.event_store();
    for round in 0..20 {
        let email = format!("racer{round}@campus.edu");
        app.request_code(&email).await.expect(202);
        let code = app.code_for(&email);
        let guesses = (0..30).map(|i| {
            let guess = if i == 29 {
                code.clone()
            } else {
                wrong(&code, i)
            };
            let (app, email) = (&app, &email);
            async move {
                app.register_with_code(email, &format!("racer{round}"), PASSWORD, &guess)
                    .await
            }
        });
        let replies = futures::future::join_all(guesses).await;
        let created = replies.iter().filter(|r| r.status == 201).count();
        let wrong_answers = replies
            .iter()
            .filter(|r| r.status == 400 && r.text.contains("is wrong"))
            .count();
        for r in &replies {
            assert!(
                r.status == 201 || r.status == 400,
                "round {round}: {} {}",
                r.status,
                r.text
            );
        }
        assert!(created <= 1, "round {round}: {created} accounts");
        let judged = created + wrong_answers;
        assert!(
            (1..=5).contains(&judged),
            "round {round}: {judged} guesses judged ({created} right, {wrong_answers} wrong)"
        );
        let stream = commands::registration::verification_stream(
            &app.secret(),
            &Email::parse(&email).unwrap(),
        );
        let failures = store
            .read_stream(&stream, 1)
            .await
            .expect("the verification stream")
            .iter()
            .filter(|e| e.event_type == "VerificationFailed")
            .count();
        assert_eq!(
            failures, wrong_answers,
            "round {round}: the log and the answers"
        );
    }
    app.assert_no_server_errors();
}

/// Five minutes cannot be waited for; instead the code is issued through the product's own
/// command with a clock six minutes back, as the domain takes time as an argument.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_expired_code_is_refused() {
    let app = spawn_app().await;
    let email = "late.comer@campus.edu";
    let secret_hex =
        std::fs::read_to_string(app.data.join("secret.key")).expect("the server's key");
    let secret = hex::decode(secret_hex.trim()).expect("a hex key");
    let handler = CommandHandler::new(app.event_store());
    let ctx = commands::CommandContext::new(Utc::now() - Duration::minutes(6));
    let (code, _) = issue_code(
        &handler,
        &secret,
        &Email::parse(email).expect("an e-mail"),
        &ctx,
    )
    .await
    .expect("a backdated code");

    let refused = app
        .register_with_code(email, "late_comer", PASSWORD, code.as_str())
        .await;
    refused.expect_problem(400);
    assert!(refused.text.contains("expired"), "{}", refused.text);

    app.register(email, "late_comer", PASSWORD)
        .await
        .expect(201);
    app.assert_no_server_errors();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn e_mail_and_username_are_unique_case_insensitively() {
    let app = spawn_app().await;
    app.new_user("unique_ann").await;

    app.request_code("UNIQUE_ANN@Campus.EDU").await.expect(202);
    let code = app.code_for("unique_ann@campus.edu");
    let head = app.head().await;
    let taken = app
        .register_with_code("Unique_Ann@CAMPUS.edu", "another_ann", PASSWORD, &code)
        .await;
    assert_eq!(taken.expect_problem(409), "urn:treehole:problem:taken");

    app.request_code("bert@campus.edu").await.expect(202);
    let code = app.code_for("bert@campus.edu");
    let head_before = app.head().await;
    assert!(head_before > head);
    for name in ["UNIQUE_ANN", "Unique_Ann", "unique_ann"] {
        let taken = app
            .register_with_code("bert@campus.edu", name, PASSWORD, &code)
            .await;
        assert_eq!(taken.expect_problem(409), "urn:treehole:problem:taken");
    }
    assert_eq!(
        app.head().await,
        head_before,
        "a refused registration wrote"
    );
    // Nothing was half-taken and the code was not used up.
    app.register_with_code("bert@campus.edu", "bert", PASSWORD, &code)
        .await
        .expect(201);
    app.assert_no_server_errors();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn logout_kills_the_token_on_the_very_next_request() {
    let app = spawn_app().await;
    let user = app.new_user("leaver").await;
    for _ in 0..5 {
        let token = app.login("leaver", PASSWORD).await;
        let me = app.get_auth("/me", &token).await.expect(200);
        assert_eq!(me["username"], "leaver");
        assert_eq!(me["email"], "leaver@campus.edu");
        app.delete("/sessions/current", &token).await.expect(200);
        let kind = app.get_auth("/me", &token).await.expect_problem(401);
        assert_eq!(kind, "urn:treehole:problem:unauthorized");
        app.create_post(&token, &json!({"body": "ghost", "anonymous": true}))
            .await
            .expect_problem(401);
        app.delete("/sessions/current", &token)
            .await
            .expect_problem(401);
    }
    // Only that session ended: another login of the same user is untouched.
    app.get_auth("/me", &user.token).await.expect(200);
    let by_email = app.login("Leaver@Campus.edu", PASSWORD).await;
    app.get_auth("/me", &by_email).await.expect(200);
    app.assert_no_server_errors();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wrong_password_and_an_unknown_user_get_the_same_answer() {
    let app = spawn_app().await;
    app.new_user("known_user").await;
    let head = app.head().await;
    let attempts = [
        ("known_user", "not the password"),
        ("unknown_user", "not the password"),
        ("known_user@campus.edu", "not the password"),
        ("nobody@campus.edu", "not the password"),
        ("unknown_user", PASSWORD),
        ("known_user", &"x".repeat(600)),
    ];
    let mut answers = Vec::new();
    for (login, password) in attempts {
        let reply = app.login_reply(login, password).await;
        reply.expect_problem(401);
        answers.push((reply.content_type().to_owned(), reply.text.clone()));
    }
    for a in &answers[1..] {
        assert_eq!(
            a, &answers[0],
            "login failures can be told apart: {answers:?}"
        );
    }
    assert_eq!(app.head().await, head, "a failed login wrote");
    app.assert_no_server_errors();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_sixth_code_request_for_an_e_mail_within_the_hour_is_limited() {
    let app = Arc::new(spawn_app_with(|s| s.rate_limits.enabled = true).await);
    let email = "eager@campus.edu";
    for _ in 0..5 {
        app.request_code(email).await.expect(202);
    }
    let head = app.head().await;
    let limited = app.request_code("Eager@Campus.edu").await;
    assert_eq!(
        limited.expect_problem(429),
        "urn:treehole:problem:rate-limited"
    );
    let retry_after: u64 = limited
        .headers
        .get("retry-after")
        .expect("a Retry-After header")
        .to_str()
        .expect("ASCII")
        .parse()
        .expect("Retry-After in seconds");
    assert!(
        (1..=3600).contains(&retry_after),
        "Retry-After {retry_after}"
    );
    assert_eq!(app.head().await, head, "a limited request wrote");
    // The limit is per e-mail: another address is still served, and the last code sent
    // before the limit still works.
    app.request_code("patient@campus.edu").await.expect(202);
    let code = app.code_for(email);
    let registered = app
        .register_with_code(email, "eager", PASSWORD, &code)
        .await
        .expect(201);
    assert!(!str_field(&registered, "user_id").is_empty());
    app.assert_no_server_errors();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn per_address_limits_cover_codes_registrations_and_logins() {
    let app = spawn_app_with(|s| {
        s.rate_limits.enabled = true;
        s.rate_limits.codes_per_ip_per_hour = 3;
        s.rate_limits.registrations_per_ip_per_hour = 1;
        s.rate_limits.logins_per_ip_per_minute = 2;
    })
    .await;
    // Codes: three addresses from one IP are served, the fourth is limited.
    for i in 0..3 {
        app.request_code(&format!("ip{i}@campus.edu"))
            .await
            .expect(202);
    }
    let limited = app.request_code("ip3@campus.edu").await;
    assert_eq!(
        limited.expect_problem(429),
        "urn:treehole:problem:rate-limited"
    );

    // Registrations: the first is served, the second from the same IP is limited.
    let code = app.code_for("ip0@campus.edu");
    app.register_with_code("ip0@campus.edu", "ipzero", PASSWORD, &code)
        .await
        .expect(201);
    let code = app.code_for("ip1@campus.edu");
    let limited = app
        .register_with_code("ip1@campus.edu", "ipone", PASSWORD, &code)
        .await;
    assert_eq!(
        limited.expect_problem(429),
        "urn:treehole:problem:rate-limited"
    );

    // Logins: two attempts a minute, whether right or wrong.
    app.login_reply("ipzero", "wrong password!")
        .await
        .expect_problem(401);
    app.login_reply("ipzero", PASSWORD).await.expect(201);
    let limited = app.login_reply("ipzero", PASSWORD).await;
    assert_eq!(
        limited.expect_problem(429),
        "urn:treehole:problem:rate-limited"
    );
    app.assert_no_server_errors();
}
