//! Slow and idle clients over raw TCP: a head sent a line at a time, a body sent a byte at a
//! time, and a keep-alive connection left idle are all cut off after the configured time,
//! while a client that keeps to it is served as usual.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;

use crate::helpers::{TestApp, spawn_app_with};

const HEADER_TIMEOUT: Duration = Duration::from_millis(600);
const BODY_TIMEOUT: Duration = Duration::from_millis(600);
/// How long past a timeout the server may take to act on it. Without timeouts the
/// connections below stay open as long as the client keeps them (minutes).
const GRACE: Duration = Duration::from_secs(3);

async fn app() -> TestApp {
    spawn_app_with(|s| {
        s.http.header_timeout_ms = HEADER_TIMEOUT.as_millis() as u64;
        s.http.body_timeout_ms = BODY_TIMEOUT.as_millis() as u64;
    })
    .await
}

async fn connect(app: &TestApp) -> TcpStream {
    let addr = app.address.trim_start_matches("http://");
    TcpStream::connect(addr).await.expect("the server accepts")
}

/// Reads until the server closes the connection (or `within` passes) and returns what it
/// sent and when it closed, if it did.
async fn read_until_closed(
    reader: &mut (impl AsyncReadExt + Unpin),
    within: Duration,
) -> (String, Option<Duration>) {
    let started = Instant::now();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = within.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, reader.read(&mut buf)).await {
            Err(_) => return (String::from_utf8_lossy(&seen).into_owned(), None),
            Ok(Ok(0)) | Ok(Err(_)) => {
                return (
                    String::from_utf8_lossy(&seen).into_owned(),
                    Some(started.elapsed()),
                );
            }
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

/// Writes `chunks` one every `every`, until they run out or the server stops reading.
fn trickle(mut writer: OwnedWriteHalf, chunks: Vec<Vec<u8>>, every: Duration) {
    tokio::spawn(async move {
        for chunk in chunks {
            tokio::time::sleep(every).await;
            if writer.write_all(&chunk).await.is_err() {
                return;
            }
        }
    });
}

#[tokio::test]
async fn a_head_sent_a_line_at_a_time_is_cut_off() {
    let app = app().await;
    let (mut reader, mut writer) = connect(&app).await.into_split();
    writer
        .write_all(b"GET /api/v1/healthz HTTP/1.1\r\nHost: treehole\r\n")
        .await
        .unwrap();
    let lines = (0..200)
        .map(|i| format!("X-Slow-{i}: yes\r\n").into_bytes())
        .collect();
    trickle(writer, lines, Duration::from_millis(100));
    let (sent, closed) = read_until_closed(&mut reader, HEADER_TIMEOUT + GRACE).await;
    let closed = closed.expect("the connection of a slow head is closed");
    assert!(closed >= HEADER_TIMEOUT / 2, "closed after {closed:?}");
    assert!(
        sent.is_empty() || sent.starts_with("HTTP/1.1 408"),
        "a slow head gets no answer but 408: {sent:?}"
    );
}

#[tokio::test]
async fn a_silent_connection_and_an_idle_keep_alive_connection_are_closed() {
    let app = app().await;
    let mut silent = connect(&app).await;
    let (sent, closed) = read_until_closed(&mut silent, HEADER_TIMEOUT + GRACE).await;
    assert!(closed.is_some(), "a connection that never sends is closed");
    assert!(sent.is_empty(), "{sent:?}");

    // A client that keeps to the limit is served, twice on one connection; then left idle,
    // the connection is closed.
    let mut idle = connect(&app).await;
    for _ in 0..2 {
        idle.write_all(b"GET /api/v1/healthz HTTP/1.1\r\nHost: treehole\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(GRACE, idle.read(&mut buf))
            .await
            .expect("an answer in time")
            .unwrap();
        let answer = String::from_utf8_lossy(&buf[..n]);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        tokio::time::sleep(HEADER_TIMEOUT / 3).await;
    }
    let (_, closed) = read_until_closed(&mut idle, HEADER_TIMEOUT + GRACE).await;
    assert!(closed.is_some(), "an idle keep-alive connection is closed");
}

#[tokio::test]
async fn a_body_sent_a_byte_at_a_time_is_answered_408_and_the_connection_closed() {
    let app = app().await;
    let head_before = app.head().await;
    let body = br#"{"email": "slow.loris@example.edu"}"#.to_vec();
    let (mut reader, mut writer) = connect(&app).await.into_split();
    writer
        .write_all(
            format!(
                "POST /api/v1/auth/codes HTTP/1.1\r\nHost: treehole\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let started = Instant::now();
    trickle(
        writer,
        body.iter().map(|b| vec![*b]).collect(),
        Duration::from_millis(100),
    );
    let (sent, closed) = read_until_closed(&mut reader, BODY_TIMEOUT + GRACE).await;
    let closed = closed.expect("the connection of a slow body is closed");
    assert!(
        started.elapsed() < Duration::from_millis(100) * body.len() as u32,
        "cut off before the body was complete, after {closed:?}"
    );
    let (head, json) = sent
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no answer: {sent:?}"));
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    let head = head.to_ascii_lowercase();
    assert!(
        head.contains("content-type: application/problem+json"),
        "{head}"
    );
    assert!(head.contains("connection: close"), "{head}");
    let problem: serde_json::Value = serde_json::from_str(json).expect("a JSON problem");
    assert_eq!(problem["status"], 408);
    for field in ["type", "title", "detail"] {
        assert!(problem[field].is_string(), "{problem}");
    }
    assert_eq!(app.head().await, head_before, "nothing was appended");
}
