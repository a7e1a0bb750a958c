//! treehole's HTTP API, its background loops, its command line and its tools.
//!
//! - [`http`]: the API: routes, extractors, errors, the OpenAPI document, the caches in front
//!   of the read models, the server itself.
//! - [`background`]: the loops a process runs beside its main work (projectors, the notifier,
//!   the lease reaper, the webhook dispatcher, ...) and the supervisor that watches them.
//! - [`cli`]: the `treehole` subcommands, one file each, the configuration and the composition
//!   root ([`cli::startup::Application`] builds the whole product from
//!   [`cli::config::Settings`]).
//! - [`tools`]: the load tool (`treehole bench`), the loader of synthetic histories and the
//!   reference task worker, all clients of the product.

pub mod background;
pub mod cli;
pub mod clock;
pub mod http;
pub mod telemetry;
pub mod tools;
