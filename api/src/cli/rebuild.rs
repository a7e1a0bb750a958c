//! `treehole rebuild`: rebuild projections from the log with a progress display.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use infra::source::StoreSource;
use projections::runner::{self, ProjectionError};
use projections::{EventSource, Projection};

use crate::cli::config::Settings;
use crate::cli::startup::Stores;

#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error("no projection is named {name:?} (known: {known})")]
    Unknown { name: String, known: String },
    #[error(transparent)]
    Projection(#[from] ProjectionError),
}

/// Rebuilds the named projections (or `all`) together, in one pass over the log.
pub async fn run(
    stores: &Stores,
    settings: &Settings,
    names: &[String],
) -> Result<(), RebuildError> {
    let all = projections::all();
    let chosen: Vec<Arc<dyn Projection>> = if names.iter().any(|n| n == "all") {
        all
    } else {
        names
            .iter()
            .map(|n| {
                all.iter()
                    .find(|p| p.name() == n)
                    .cloned()
                    .ok_or_else(|| RebuildError::Unknown {
                        name: n.clone(),
                        known: all.iter().map(|p| p.name()).collect::<Vec<_>>().join(", "),
                    })
            })
            .collect::<Result<_, _>>()?
    };
    let source: Arc<dyn EventSource> = Arc::new(StoreSource::new(stores.events.clone()));
    let search = crate::cli::startup::open_search(settings)
        .await
        .map_err(ProjectionError::from)?;
    let store = crate::cli::startup::projection_store(stores.read_models.clone(), search);
    // One pass over the log for all of them: each batch is read once and applied to every
    // new generation.
    let started = Instant::now();
    let bars = MultiProgress::new();
    let displays: Vec<Display> = chosen
        .iter()
        .map(|p| Display::new(p.name(), &bars))
        .collect();
    let built = runner::rebuild_together(&chosen, source, store, None, &|name, pos, target| {
        if let Some(d) = displays.iter().find(|d| d.name == name) {
            d.update(pos, target);
        }
    })
    .await?;
    for display in &displays {
        display.finish();
    }
    let secs = started.elapsed().as_secs_f64();
    for (name, generation) in built {
        tracing::info!(
            projection = name,
            generation = generation.number,
            position = generation.position,
            seconds = secs,
            events_per_second = generation.position as f64 / secs.max(1e-6),
            "rebuilt and swapped in"
        );
    }
    Ok(())
}

/// A progress bar on a terminal; a log line every few seconds otherwise.
struct Display {
    name: &'static str,
    bar: Option<ProgressBar>,
    last_log: std::sync::Mutex<Instant>,
}

impl Display {
    fn new(name: &'static str, bars: &MultiProgress) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(0);
            let style = ProgressStyle::with_template(
                "{prefix:>9} [{bar:40}] {pos}/{len} events ({per_sec}, eta {eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar.set_prefix(name);
            bars.add(bar)
        });
        Self {
            name,
            bar,
            last_log: std::sync::Mutex::new(Instant::now()),
        }
    }

    fn update(&self, position: u64, target: u64) {
        if let Some(bar) = &self.bar {
            bar.set_length(target);
            bar.set_position(position);
            return;
        }
        let mut last = self.last_log.lock().unwrap_or_else(|p| p.into_inner());
        if last.elapsed() >= Duration::from_secs(2) {
            *last = Instant::now();
            tracing::info!(projection = self.name, position, target, "rebuilding");
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}
