//! `treehole load`: fills an empty store with a synthetic forum history
//! ([`crate::tools::loader`]), with a progress bar.

use super::config::Settings;

/// Loads `events` events and reports the rate.
pub async fn run(settings: Settings, events: u64) -> anyhow::Result<()> {
    let settings = super::init(settings);
    let bar = indicatif::ProgressBar::new(events);
    let loaded = crate::tools::loader::load(&settings, events, |n| bar.set_position(n)).await?;
    bar.finish_and_clear();
    println!(
        "loaded {} events in {:.1} s ({:.0} events/s); the log ends at position {}",
        loaded.events,
        loaded.took.as_secs_f64(),
        loaded.events as f64 / loaded.took.as_secs_f64(),
        loaded.head
    );
    Ok(())
}
