//! treehole's adapters: the concrete event stores, read-model stores and mail transports that
//! implement the ports of `commands` and `projections`. Only the `api` crate picks among them.

pub mod event_store;
pub mod kafka;
pub mod keys;
pub mod mail;
pub mod migrations;
pub mod read_model;
pub mod search;
pub mod source;
/// The synthetic forum history of `treehole load` and the benches: not part of the adapters'
/// API, so behind the `synth` feature.
#[cfg(feature = "synth")]
pub mod synth;
pub mod webhook;
