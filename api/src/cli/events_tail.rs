//! `treehole events tail --source kafka`: the topic as analysts read it, one §2 envelope per
//! line, pseudonymised unless `--raw`.

use std::io::Write;
use std::time::Duration;

use domain::export::Pseudonymiser;

use crate::cli::config::Settings;
use crate::cli::events::{EventsError, export_key};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TailSource {
    /// The Kafka topic the relay fills.
    Kafka,
}

#[derive(Debug, clap::Args)]
pub struct TailArgs {
    /// Where to read: the Kafka topic (for the store, use `events export`).
    #[arg(long, value_enum, default_value_t = TailSource::Kafka)]
    pub source: TailSource,
    /// Start at the oldest record of the topic instead of only new ones.
    #[arg(long)]
    pub from_beginning: bool,
    /// Exit after this many seconds without a record (default: follow forever).
    #[arg(long, value_name = "SECONDS")]
    pub idle_timeout: Option<f64>,
    /// Exit after this many records.
    #[arg(long)]
    pub max: Option<u64>,
    /// Print the records as stored: real user ids and secret hashes. For operators only.
    #[arg(long)]
    pub raw: bool,
}

/// Prints the topic's records to standard output until told to stop; returns how many.
pub async fn run(settings: &Settings, args: &TailArgs) -> Result<u64, EventsError> {
    let kafka = settings.kafka.settings().ok_or_else(|| {
        EventsError::Invalid(
            "no Kafka brokers configured: set TREEHOLE_KAFKA_BROKERS or --kafka-brokers".into(),
        )
    })?;
    let pseudonymiser = if args.raw {
        None
    } else {
        Some(Pseudonymiser::new(&export_key(settings)?))
    };
    let idle_timeout = match args.idle_timeout {
        Some(s) if !(s.is_finite() && s > 0.0) => {
            return Err(EventsError::Invalid(format!(
                "--idle-timeout must be a positive number of seconds, not {s}"
            )));
        }
        s => s.map(Duration::from_secs_f64),
    };
    let options = infra::kafka::TailOptions {
        from_beginning: args.from_beginning,
        idle_timeout,
        max: args.max,
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut skipped = 0u64;
    let read = infra::kafka::tail(&kafka, &options, |record| {
        let envelope = match &pseudonymiser {
            None => record.envelope,
            Some(p) => match p.envelope(&record.envelope) {
                Ok(e) => e,
                Err(e) => {
                    skipped += 1;
                    tracing::warn!(position = record.envelope.position, error = %e, "skipped: cannot pseudonymise");
                    return Ok(());
                }
            },
        };
        serde_json::to_writer(&mut out, &envelope)?;
        out.write_all(b"\n")?;
        // Followers see each record as it arrives.
        if idle_timeout.is_none() {
            out.flush()?;
        }
        Ok(())
    })
    .await
    .map_err(|e| EventsError::Invalid(e.to_string()))?;
    out.flush().map_err(|source| EventsError::Io {
        what: "standard output".into(),
        source,
    })?;
    if skipped > 0 {
        eprintln!("skipped {skipped} records this version cannot pseudonymise");
    }
    Ok(read)
}
