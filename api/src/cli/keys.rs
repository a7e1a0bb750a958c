//! `treehole keys export` and `treehole keys import`: the key store as a file, to move a
//! deployment (with `events export --raw` and `events import`) without losing its users'
//! personal data.
//!
//! The data keys stay wrapped under the key-encryption key derived from the server secret, so
//! the file is of no use without that secret, and the target must run with the same secret
//! (`TREEHOLE_SECRET`, or a copy of `<data>/secret.key`). Keep the file like a database backup:
//! it holds the keys of everyone who has not unregistered. A key destroyed after the export is
//! still in the file: delete the file once the move is done.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use commands::KeyError;
use domain::UserId;
use serde::{Deserialize, Serialize};

use crate::cli::config::Settings;
use crate::cli::startup::{StartupError, Stores};

#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Writes every wrapped data key and key handle as NDJSON.
    Export {
        /// The file to write; standard output if not given.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Adds the keys and handles of a `keys export` file to this deployment's key store (keys
    /// it already holds are kept as they are).
    Import {
        /// The NDJSON file written by `keys export`.
        input: PathBuf,
    },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
enum Line {
    Key {
        user_id: UserId,
        /// Base64 of the wrapped key.
        wrapped: String,
    },
    Handle {
        handle: String,
        user_id: UserId,
        subject: String,
    },
    /// A user whose key was destroyed: the target keeps a tombstone too.
    Destroyed { user_id: UserId, destroyed: bool },
}

#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error(transparent)]
    Startup(#[from] StartupError),
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("line {0} is not a key or a key handle of `keys export`: {1}")]
    Line(usize, String),
}

pub async fn run(settings: &Settings, command: &KeysCommand) -> Result<(), KeysError> {
    let stores = Stores::open(settings).await?;
    let result = match command {
        KeysCommand::Export { output } => export(&stores, output.as_ref()).await,
        KeysCommand::Import { input } => import(&stores, input).await,
    };
    stores.read_models.close().await;
    result
}

async fn export(stores: &Stores, output: Option<&PathBuf>) -> Result<(), KeysError> {
    let dump = stores.keys.store().all().await?;
    let mut text = String::new();
    for (user_id, wrapped) in &dump.keys {
        let line = Line::Key {
            user_id: *user_id,
            wrapped: STANDARD.encode(wrapped),
        };
        text.push_str(&serde_json::to_string(&line).expect("a line serialises"));
        text.push('\n');
    }
    for user_id in &dump.destroyed {
        let line = Line::Destroyed {
            user_id: *user_id,
            destroyed: true,
        };
        text.push_str(&serde_json::to_string(&line).expect("a line serialises"));
        text.push('\n');
    }
    for (handle, user_id, subject) in &dump.handles {
        let line = Line::Handle {
            handle: handle.clone(),
            user_id: *user_id,
            subject: subject.clone(),
        };
        text.push_str(&serde_json::to_string(&line).expect("a line serialises"));
        text.push('\n');
    }
    match output {
        Some(path) => {
            std::fs::write(path, text).map_err(|e| KeysError::Io(path.display().to_string(), e))?
        }
        None => std::io::stdout()
            .write_all(text.as_bytes())
            .map_err(|e| KeysError::Io("standard output".into(), e))?,
    }
    eprintln!(
        "exported {} keys, {} key handles and {} destroyed keys",
        dump.keys.len(),
        dump.handles.len(),
        dump.destroyed.len()
    );
    Ok(())
}

async fn import(stores: &Stores, input: &PathBuf) -> Result<(), KeysError> {
    let file =
        std::fs::File::open(input).map_err(|e| KeysError::Io(input.display().to_string(), e))?;
    // Read and check all of it before writing anything.
    let mut lines = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| KeysError::Io(input.display().to_string(), e))?;
        if line.trim().is_empty() {
            continue;
        }
        let parsed: Line =
            serde_json::from_str(&line).map_err(|e| KeysError::Line(i + 1, e.to_string()))?;
        if let Line::Key { wrapped, .. } = &parsed {
            STANDARD
                .decode(wrapped)
                .map_err(|e| KeysError::Line(i + 1, format!("wrapped: {e}")))?;
        }
        lines.push(parsed);
    }
    let (mut keys, mut handles, mut destroyed) = (0, 0, 0);
    let store = stores.keys.store();
    for line in lines {
        match line {
            Line::Key { user_id, wrapped } => {
                let wrapped = STANDARD.decode(wrapped).expect("checked");
                store.put_key(user_id, wrapped).await?;
                keys += 1;
            }
            Line::Handle {
                handle,
                user_id,
                subject,
            } => {
                store.put_handle(&handle, user_id, &subject).await?;
                handles += 1;
            }
            Line::Destroyed { user_id, .. } => {
                store.shred(user_id).await?;
                destroyed += 1;
            }
        }
    }
    println!("imported {keys} keys, {handles} key handles and {destroyed} destroyed keys");
    Ok(())
}
