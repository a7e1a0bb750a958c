//! Clients of the product shipped in the binary: the load tool (`treehole bench`), the loader
//! of synthetic histories (`treehole load`) and the reference task worker (`treehole worker`).

pub mod bench;
pub mod loader;
pub mod worker_client;
