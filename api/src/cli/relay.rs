//! `treehole relay`: publishes the log to the Kafka topic, in position order, and follows it.

use anyhow::Context;

use super::config::Settings;
use super::startup::Stores;

/// Relays until Ctrl-C or SIGTERM (the relay itself retries failures from its checkpoint).
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let settings = super::init(settings);
    let kafka = settings
        .kafka
        .settings()
        .context("no Kafka brokers configured: set TREEHOLE_KAFKA_BROKERS or --kafka-brokers")?;
    let stores = Stores::open(&settings).await?;
    let relay = infra::kafka::Relay::new(kafka, stores.events.clone(), stores.read_models.clone())?;
    tracing::info!(topic = %settings.kafka.topic, "relay running");
    tokio::select! {
        () = relay.run() => {}
        () = super::shutdown_signal() => {}
    }
    stores.read_models.close().await;
    Ok(())
}
