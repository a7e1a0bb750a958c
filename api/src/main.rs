//! The `treehole` binary: parses the command line and runs the subcommand ([`api::cli`]).

use clap::Parser;

/// See the workspace's Cargo.toml: allocation was a fifth of the server's time on glibc's malloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    keep_pages_small();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(api::cli::run(api::cli::Cli::parse()))
}

/// Turns transparent huge pages off for this process and its children, before any thread
/// starts (BENCHMARKS.md, "Transparent huge pages off").
///
/// mimalloc asks the kernel for huge pages (`MADV_HUGEPAGE`) on the memory it maps. In one
/// `bench comments` run the machine then faulted in 238 huge pages (476 MB zeroed, 2 MB in
/// each page fault, on whichever thread touched it) and split 108 of them again as mimalloc
/// gave parts back; with 4 KiB pages `comments`' p99 fell from 28.3 to 24.5 ms (medians of
/// 12 alternated pairs). The kernel's setting stays as it is for every other process.
#[cfg(target_os = "linux")]
fn keep_pages_small() {
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
        // Not fatal: only latency suffers. Logging is not set up yet.
        eprintln!("treehole: could not turn transparent huge pages off for this process: {e}");
    }
}

#[cfg(not(target_os = "linux"))]
fn keep_pages_small() {}
