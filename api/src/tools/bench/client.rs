//! The load tool's HTTP client: the API's requests, each timed into a [`Recorder`].

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::BenchError;
use super::report::Recorder;

/// The password of every user the load tool registers.
pub const PASSWORD: &str = "load-tool-password-9";

/// One user the tool registered and logged in.
#[derive(Debug, Clone)]
pub struct User {
    pub username: String,
    pub token: String,
}

/// One request: what [`Client::call`] sends.
pub struct Req<'a> {
    pub method: Method,
    pub path: &'a str,
    pub token: Option<&'a str>,
    pub body: Option<&'a Value>,
}

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    /// `http://host:port/api/v1`.
    api: String,
    /// The server's `<data>/outbox`, where verification codes are read (the server's mail
    /// goes there when no SMTP server is configured).
    outbox: Option<PathBuf>,
    codes: Arc<Mutex<Codes>>,
}

#[derive(Default)]
struct Codes {
    seen: HashSet<PathBuf>,
    by_email: HashMap<String, String>,
}

impl Client {
    pub fn new(url: &str, outbox: Option<PathBuf>, connections: usize) -> Result<Self, BenchError> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(connections.max(1))
            // A clean-clone run lost a hot-post check to a connection the server was closing
            // after a long wait for the projections had left it idle for 10 s.
            .pool_idle_timeout(crate::cli::config::CLIENT_IDLE)
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| BenchError::Setup(format!("HTTP client: {e}")))?;
        Ok(Self {
            http,
            api: format!("{}/api/v1", url.trim_end_matches('/')),
            outbox,
            codes: Arc::default(),
        })
    }

    /// Opens a long-lived GET (a notification stream) as `token`; the answer's body is read by
    /// the caller.
    pub async fn open_stream(
        &self,
        path: &str,
        token: &str,
    ) -> Result<reqwest::Response, BenchError> {
        let response = self
            .http
            .get(format!("{}{path}", self.api))
            .bearer_auth(token)
            .timeout(Duration::from_secs(24 * 3600))
            .send()
            .await
            .map_err(|e| BenchError::Request(format!("stream {path}: {e}")))?;
        if response.status() != StatusCode::OK {
            return Err(BenchError::Request(format!(
                "stream {path}: {}",
                response.status()
            )));
        }
        Ok(response)
    }

    /// Sends one request and records its latency under `op`; an answer other than `expect` is
    /// recorded as an error and returned as one.
    pub async fn call(
        &self,
        rec: &mut Recorder,
        op: &str,
        req: Req<'_>,
        expect: StatusCode,
    ) -> Result<Value, BenchError> {
        let Req {
            method,
            path,
            token,
            body,
        } = req;
        let mut request = self.http.request(method, format!("{}{path}", self.api));
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        if let Some(b) = body {
            request = request.json(b);
        }
        let started = Instant::now();
        let outcome = match request.send().await {
            Ok(response) => {
                let status = response.status();
                let text = response.text().await.unwrap_or_default();
                (status, text)
            }
            Err(e) => {
                rec.record(op, started.elapsed(), false);
                return Err(BenchError::Request(format!("{op}: {e}")));
            }
        };
        let took = started.elapsed();
        let (status, text) = outcome;
        let ok = status == expect;
        rec.record(op, took, ok);
        if !ok {
            return Err(BenchError::Request(format!(
                "{op} {path}: {status} (wanted {expect}): {}",
                text.chars().take(300).collect::<String>()
            )));
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// A GET whose answer is checked for its status and read whole, but not parsed: the
    /// measured loops of the read scenarios, where parsing each page into a JSON value was the
    /// tool's work, on the cores the server is measured on (the baseline's answers are tiny).
    pub async fn read(&self, rec: &mut Recorder, op: &str, path: &str) -> Result<(), BenchError> {
        let started = Instant::now();
        let outcome = match self.http.get(format!("{}{path}", self.api)).send().await {
            Ok(response) => {
                let status = response.status();
                (status, response.bytes().await)
            }
            Err(e) => {
                rec.record(op, started.elapsed(), false);
                return Err(BenchError::Request(format!("{op}: {e}")));
            }
        };
        let took = started.elapsed();
        let ok = outcome.0 == StatusCode::OK && outcome.1.is_ok();
        rec.record(op, took, ok);
        match outcome {
            (StatusCode::OK, Ok(_)) => Ok(()),
            (status, body) => Err(BenchError::Request(format!(
                "{op} {path}: {status} (wanted 200): {}",
                body.map(|b| String::from_utf8_lossy(&b)
                    .chars()
                    .take(300)
                    .collect::<String>())
                    .unwrap_or_else(|e| e.to_string())
            ))),
        }
    }

    pub async fn get(&self, rec: &mut Recorder, op: &str, path: &str) -> Result<Value, BenchError> {
        self.call(
            rec,
            op,
            Req {
                method: Method::GET,
                path,
                token: None,
                body: None,
            },
            StatusCode::OK,
        )
        .await
    }

    /// Asks for a code, reads it from the outbox, registers and logs in.
    pub async fn register(&self, rec: &mut Recorder, username: &str) -> Result<User, BenchError> {
        let email = format!("{username}@bench.campus.edu");
        let body = json!({ "email": email });
        self.call(
            rec,
            "code",
            Req {
                method: Method::POST,
                path: "/auth/codes",
                token: None,
                body: Some(&body),
            },
            StatusCode::ACCEPTED,
        )
        .await?;
        let code = self.code_for(&email)?;
        let body =
            json!({"email": email, "username": username, "password": PASSWORD, "code": code});
        self.call(
            rec,
            "register",
            Req {
                method: Method::POST,
                path: "/users",
                token: None,
                body: Some(&body),
            },
            StatusCode::CREATED,
        )
        .await?;
        self.login(rec, username).await
    }

    pub async fn login(&self, rec: &mut Recorder, username: &str) -> Result<User, BenchError> {
        let body = json!({"login": username, "password": PASSWORD});
        let reply = self
            .call(
                rec,
                "login",
                Req {
                    method: Method::POST,
                    path: "/sessions",
                    token: None,
                    body: Some(&body),
                },
                StatusCode::CREATED,
            )
            .await?;
        let token = reply["token"].as_str().ok_or_else(|| {
            BenchError::Request(format!("login answered without a token: {reply}"))
        })?;
        Ok(User {
            username: username.to_owned(),
            token: token.to_owned(),
        })
    }

    /// Publishes a post; returns its id and the position the command answered with.
    pub async fn post(
        &self,
        rec: &mut Recorder,
        op: &str,
        user: &User,
        body: &str,
        anonymous: bool,
    ) -> Result<(String, u64), BenchError> {
        let post =
            json!({"title": "Load test", "body": body, "anonymous": anonymous, "tags": ["bench"]});
        let reply = self
            .call(
                rec,
                op,
                Req {
                    method: Method::POST,
                    path: "/posts",
                    token: Some(&user.token),
                    body: Some(&post),
                },
                StatusCode::CREATED,
            )
            .await?;
        Ok((field(&reply, "post_id")?, position(&reply)?))
    }

    /// Comments; returns the answer (`comment_id`, `author_name`, `position`).
    pub async fn comment(
        &self,
        rec: &mut Recorder,
        op: &str,
        user: &User,
        post_id: &str,
        body: &str,
        anonymous: bool,
    ) -> Result<Value, BenchError> {
        let comment = json!({"body": body, "anonymous": anonymous});
        self.call(
            rec,
            op,
            Req {
                method: Method::POST,
                path: &format!("/posts/{post_id}/comments"),
                token: Some(&user.token),
                body: Some(&comment),
            },
            StatusCode::CREATED,
        )
        .await
    }

    /// Waits until `path?after=position` answers 200 (the read models have caught up).
    pub async fn wait_visible(
        &self,
        path: &str,
        position: u64,
        limit: Duration,
    ) -> Result<(), BenchError> {
        let deadline = Instant::now() + limit;
        let sep = if path.contains('?') { '&' } else { '?' };
        let url = format!("{}{path}{sep}after={position}", self.api);
        loop {
            let status = self
                .http
                .get(&url)
                .send()
                .await
                .map(|r| r.status())
                .map_err(|e| BenchError::Request(format!("waiting for {position}: {e}")))?;
            if status == StatusCode::OK {
                return Ok(());
            }
            if status != StatusCode::SERVICE_UNAVAILABLE || Instant::now() > deadline {
                return Err(BenchError::Request(format!(
                    "position {position} not visible at {path} ({status}) within {limit:?}"
                )));
            }
        }
    }

    /// Waits until every projector of the server is at the head of the log (each
    /// `treehole_projection_lag_events` gauge of `/metrics` at 0), so that what a scenario
    /// set up before its clock (registrations, posts) is not still being projected while it
    /// measures; returns how long that took.
    pub async fn wait_projections_caught_up(
        &self,
        limit: Duration,
    ) -> Result<Duration, BenchError> {
        let started = Instant::now();
        let url = format!("{}/metrics", self.api);
        loop {
            let text = self
                .http
                .get(&url)
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .map_err(|e| BenchError::Request(format!("/metrics: {e}")))?
                .text()
                .await
                .map_err(|e| BenchError::Request(format!("/metrics: {e}")))?;
            let lags = projection_lags(&text);
            if lags.is_empty() {
                return Err(BenchError::Request(
                    "/metrics shows no treehole_projection_lag_events".into(),
                ));
            }
            if lags.iter().all(|(_, lag)| *lag == 0.0) {
                return Ok(started.elapsed());
            }
            if started.elapsed() > limit {
                return Err(BenchError::Setup(format!(
                    "the projectors did not catch up with the setup within {limit:?}: {lags:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The position the read models behind `path` have reached (`X-Projection-Position`),
    /// asked without waiting.
    pub async fn projection_position(&self, path: &str) -> Result<u64, BenchError> {
        let url = format!("{}{path}", self.api);
        let reply = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| BenchError::Request(format!("{path}: {e}")))?;
        reply
            .headers()
            .get("x-projection-position")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| BenchError::Request(format!("{path}: no X-Projection-Position")))
    }

    /// The code of the verification e-mail to `email`, from the outbox.
    fn code_for(&self, email: &str) -> Result<String, BenchError> {
        let dir = self.outbox.as_ref().ok_or_else(|| {
            BenchError::Setup(
                "registering users needs the server's outbox: pass --data <the server's data \
                 directory> (codes are read from <data>/outbox), or let the tool start the server"
                    .into(),
            )
        })?;
        let mut codes = self.codes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(code) = codes.by_email.remove(email) {
            return Ok(code);
        }
        let entries = std::fs::read_dir(dir)
            .map_err(|e| BenchError::Setup(format!("reading {}: {e}", dir.display())))?;
        for entry in entries.flatten() {
            let path = entry.path();
            if codes.seen.contains(&path) {
                continue;
            }
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            if let Some((to, code)) = parse_mail(&text) {
                codes.seen.insert(path);
                codes.by_email.insert(to, code);
            }
        }
        codes.by_email.remove(email).ok_or_else(|| {
            BenchError::Setup(format!(
                "no verification e-mail to {email} in {}",
                dir.display()
            ))
        })
    }
}

/// Recipient and code of one verification e-mail (lettre's `.eml` files in `<data>/outbox`).
pub fn parse_mail(text: &str) -> Option<(String, String)> {
    let mut to = None;
    let mut code = None;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("To: ") {
            to = Some(v.trim().trim_matches(['<', '>']).to_lowercase());
        }
        if let Some(v) = line.strip_prefix("Subject: Your treehole code: ") {
            let v = v.trim();
            if v.len() == 6 && v.bytes().all(|b| b.is_ascii_digit()) {
                code = Some(v.to_owned());
            }
        }
    }
    Some((to?, code?))
}

pub fn field(v: &Value, name: &str) -> Result<String, BenchError> {
    v[name]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| BenchError::Request(format!("no {name} in {v}")))
}

pub fn position(v: &Value) -> Result<u64, BenchError> {
    v["position"]
        .as_u64()
        .ok_or_else(|| BenchError::Request(format!("no position in {v}")))
}

/// Each projection's `treehole_projection_lag_events` in a Prometheus text page.
fn projection_lags(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("treehole_projection_lag_events{")?;
            let (labels, value) = rest.split_once('}')?;
            Some((labels.to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::projection_lags;

    #[test]
    fn projection_lags_are_read_from_the_metrics_page() {
        let page = "# TYPE treehole_projection_lag_events gauge\n\
                    treehole_projection_lag_events{projection=\"feed\"} 0\n\
                    treehole_projection_lag_events{projection=\"search\"} 17\n\
                    treehole_projection_lag_seconds{projection=\"search\"} 0.2\n";
        assert_eq!(
            projection_lags(page),
            vec![
                ("projection=\"feed\"".to_owned(), 0.0),
                ("projection=\"search\"".to_owned(), 17.0)
            ]
        );
    }
}
