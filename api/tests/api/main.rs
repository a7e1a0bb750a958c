//! HTTP suites against the real application (one test binary keeps link times low).

mod anonymity;
mod auth;
mod bad_input;
mod bench;
mod crash_safety;
mod export;
mod helpers;
mod hot_post;
mod input_values;
mod kafka;
mod limits;
mod lists;
mod metrics;
mod page_cache;
mod privacy;
mod reactions;
mod rebuild;
mod request_id;
mod revocation;
mod search;
mod search_outage;
mod sessions;
mod stats;
mod tasks;
mod timeouts;
mod worker;
