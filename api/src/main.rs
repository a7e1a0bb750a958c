//! The `treehole` binary: parses the command line and runs the subcommand ([`api::cli`]).

use clap::Parser;

/// See the workspace's Cargo.toml: allocation was a fifth of the server's time on glibc's malloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    api::cli::run(api::cli::Cli::parse()).await
}
