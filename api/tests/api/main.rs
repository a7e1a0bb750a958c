//! HTTP suites against the real application (one test binary keeps link times low).

#![allow(
    // Test code: unwrapping is how a test fails, and its casts are of its own small numbers.
    clippy::unwrap_used,
    clippy::cast_possible_truncation
)]

mod anonymity;
mod auth;
mod bad_input;
mod bench;
mod crash_safety;
mod export;
mod helpers;
mod hot;
mod hot_post;
mod input_values;
mod kafka;
mod limits;
mod lists;
#[cfg(target_os = "linux")]
mod memory;
mod metrics;
mod moderation;
mod notifications;
mod page_cache;
mod polls;
mod privacy;
mod reactions;
mod rebuild;
mod request_id;
mod revocation;
mod search;
mod search_outage;
mod sessions;
mod stats;
mod supervision;
mod tasks;
#[path = "../../../infra/tests/test_database/mod.rs"]
mod test_database;
mod timeouts;
mod web;
mod worker;
