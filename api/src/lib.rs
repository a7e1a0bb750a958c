//! treehole's HTTP API and composition root.
//!
//! [`startup::Application`] builds the whole product from [`config::Settings`]; the `treehole`
//! binary (`main.rs`) parses the command line and runs it.

pub mod admin;
pub mod bench;
pub mod clock;
pub mod config;
pub mod cursor;
pub mod dispatch;
pub mod error;
pub mod events;
pub mod extract;
pub mod keys;
pub mod last_seen;
pub mod load;
pub mod metrics;
pub mod notifier;
pub mod openapi;
pub mod page_cache;
pub mod projector;
pub mod rate_limit;
pub mod rebuild;
pub mod request_id;
pub mod routes;
pub mod server;
pub mod session_cache;
pub mod startup;
pub mod state;
pub mod supervisor;
pub mod tail;
pub mod telemetry;
pub mod worker;
