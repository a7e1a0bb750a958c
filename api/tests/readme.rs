//! The README's curl walkthrough, run verbatim against the real binary on its default address
//! and data directory. A separate, small test binary: it needs nothing of the `api` crate.

#![allow(
    // Test code: unwrapping is how a test fails, and its casts are of its own small numbers.
    clippy::unwrap_used,
    clippy::cast_possible_truncation
)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

/// The shell block between the walkthrough markers, without its fences.
fn walkthrough() -> String {
    let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let text = std::fs::read_to_string(&readme).expect("README.md");
    let start = text
        .find("<!-- walkthrough:start -->")
        .expect("a walkthrough:start marker");
    let end = text
        .find("<!-- walkthrough:end -->")
        .expect("a walkthrough:end marker");
    let block: Vec<&str> = text[start..end]
        .lines()
        .skip(1)
        .filter(|l| !l.trim_start().starts_with("```"))
        .collect();
    assert!(block.len() > 10, "the walkthrough is suspiciously short");
    block.join("\n") + "\n"
}

/// Kills the server however the test ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_readme_walkthrough_runs_verbatim() {
    let script = walkthrough();
    if let Err(e) = std::net::TcpListener::bind("127.0.0.1:8080") {
        panic!(
            "the walkthrough needs 127.0.0.1:8080, which is busy ({e}); stop whatever listens there"
        );
    }
    let cwd = tempfile::tempdir().expect("a temporary directory");
    let mut command = Command::new(env!("CARGO_BIN_EXE_treehole"));
    for (name, _) in std::env::vars() {
        if name.starts_with("TREEHOLE_") {
            command.env_remove(name);
        }
    }
    // The defaults, as a reader would run it: ./data and localhost:8080.
    let mut server = Server(
        command
            .arg("serve")
            .current_dir(cwd.path())
            .env("TREEHOLE_LOG_FORMAT", "text")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the treehole binary starts"),
    );
    // Held open until the end, so the server never writes into a closed pipe.
    let mut out = BufReader::new(server.0.stdout.take().expect("stdout"));
    let mut first = String::new();
    out.read_line(&mut first).expect("a line from treehole");
    assert_eq!(
        first.trim(),
        "treehole listening on http://127.0.0.1:8080",
        "treehole did not start on the default address"
    );

    // `treehole` on the PATH, as the walkthrough's reader has it.
    let bin = Path::new(env!("CARGO_BIN_EXE_treehole"))
        .parent()
        .expect("the binary's directory");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let run = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(cwd.path())
        .env("PATH", path)
        .env("RUST_LOG", "warn")
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "the walkthrough failed ({}):\n{stdout}\n{stderr}",
        run.status
    );

    // curl -s prints no newline, so the answers run together: read them as a JSON stream.
    // `treehole admin grant` prints one line of text, the only thing that is not JSON.
    let grant = stdout
        .find("ann is now an admin (position ")
        .unwrap_or_else(|| panic!("no line from admin grant:\n{stdout}"));
    let end = stdout[grant..]
        .find('\n')
        .map_or(stdout.len(), |e| grant + e + 1);
    let json = format!("{}{}", &stdout[..grant], &stdout[end..]);
    let answers: Vec<Value> = serde_json::Deserializer::from_str(&json)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| {
            panic!("the walkthrough printed something else than JSON ({e}):\n{stdout}")
        });
    let find = |what: &str, test: &dyn Fn(&Value) -> bool| {
        answers
            .iter()
            .find(|a| test(a))
            .unwrap_or_else(|| panic!("no {what} in the walkthrough's output:\n{stdout}"))
            .clone()
    };
    find("code answer", &|a| a["sent"] == true);
    let me = find("/me answer", &|a| {
        a["username"] == "ann" && a["email"] == "ann@campus.edu" && a.get("is_admin").is_some()
    });
    assert!(me["user_id"].is_string());
    let feed = find("feed page", &|a| {
        a["items"].is_array() && a.get("next_cursor").is_some()
    });
    let post = &feed["items"][0];
    assert_eq!(post["author_name"], "洞主", "{feed}");
    assert_eq!(post["title"], "图书馆");
    let comment = find("comment answer", &|a| a["comment_id"].is_string());
    assert_eq!(comment["author_name"], "洞主");
    let listed = find("comment list", &|a| {
        a["items"][0]["comment_id"] == comment["comment_id"]
    });
    assert_eq!(listed["items"][0]["is_host"], true);
    let found = find("search page", &|a| a["hits"].is_array());
    assert_eq!(found["hits"][0]["post_id"], post["post_id"], "{found}");
    assert_eq!(
        found["hits"][0]["snippet"], "三楼<mark>自习室</mark>今晚有空位吗？",
        "{found}"
    );
    let refused = find("401 after logout", &|a| {
        a["type"] == "urn:treehole:problem:unauthorized"
    });
    assert_eq!(refused["status"], 401);
    let task = answers.last().expect("answers");
    assert_eq!(task["status"], "succeeded", "{stdout}");
    assert_eq!(
        task["result"],
        serde_json::json!({"image": "a-cat-in-the-library.png"})
    );
    assert_eq!(task["attempts"], 1);
    assert!(
        task["history"].as_array().is_some_and(|h| h.len() >= 3),
        "{task}"
    );
    drop(out);
}

/// The code block of the README's "Layout" section.
fn layout() -> String {
    let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let text = std::fs::read_to_string(&readme).expect("README.md");
    let section = &text[text.find("\n## Layout\n").expect("a Layout section")..];
    let start = section.find("```").expect("a code block") + 3;
    let end = start + section[start..].find("```").expect("its end");
    section[start..end].to_owned()
}

#[test]
fn the_layout_section_names_every_crate_and_every_module_of_api() {
    let block = layout();
    for krate in ["domain/", "commands/", "projections/", "infra/", "api/"] {
        assert!(block.contains(krate), "the layout omits {krate}");
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for dir in std::fs::read_dir(&src).expect("api/src") {
        let dir = dir.expect("an entry").path();
        if !dir.is_dir() {
            continue;
        }
        let name = dir
            .file_name()
            .expect("a name")
            .to_string_lossy()
            .into_owned();
        assert!(
            block.contains(&format!("src/{name}/")),
            "the layout omits api/src/{name}/"
        );
        for file in std::fs::read_dir(&dir).expect("a folder") {
            let path = file.expect("an entry").path();
            let stem = path
                .file_stem()
                .expect("a name")
                .to_string_lossy()
                .into_owned();
            if stem == "mod" {
                continue;
            }
            let named = block
                .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                .any(|word| word == stem);
            assert!(named, "the layout omits api/src/{name}/{stem}");
        }
    }
}
