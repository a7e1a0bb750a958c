//! HTTP suites against the real application (one test binary keeps link times low).

mod anonymity;
mod auth;
mod bad_input;
mod bench;
mod crash_safety;
mod export;
mod helpers;
mod hot_post;
mod kafka;
mod limits;
mod rebuild;
mod search;
mod stats;
mod tasks;
mod worker;
