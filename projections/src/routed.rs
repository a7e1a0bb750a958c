//! One [`ReadModelStore`] over several: each projection's writes go to the store that holds
//! its model (the search projection to the search engine, the others to the SQL read models).

use std::sync::Arc;

use async_trait::async_trait;
use domain::Position;

use crate::{Change, Generation, Promotion, ReadModelError, ReadModelStore};

pub struct Routed {
    default: Arc<dyn ReadModelStore>,
    routes: Vec<(&'static str, Arc<dyn ReadModelStore>)>,
}

impl Routed {
    /// Sends every projection to `default` unless a route names it.
    pub fn new(default: Arc<dyn ReadModelStore>) -> Self {
        Self {
            default,
            routes: Vec::new(),
        }
    }

    pub fn route(mut self, projection: &'static str, store: Arc<dyn ReadModelStore>) -> Self {
        self.routes.push((projection, store));
        self
    }

    fn store(&self, projection: &str) -> &dyn ReadModelStore {
        self.routes
            .iter()
            .find(|(name, _)| *name == projection)
            .map_or(self.default.as_ref(), |(_, s)| s.as_ref())
    }
}

#[async_trait]
impl ReadModelStore for Routed {
    fn pace(&self, projection: &str) -> std::time::Duration {
        self.store(projection).pace(projection)
    }

    fn held(&self, projection: &str) -> Option<std::time::Duration> {
        self.store(projection).held(projection)
    }

    async fn live(&self, projection: &str) -> Result<Option<Generation>, ReadModelError> {
        self.store(projection).live(projection).await
    }

    async fn create_generation(
        &self,
        projection: &str,
        version: u32,
    ) -> Result<Generation, ReadModelError> {
        self.store(projection)
            .create_generation(projection, version)
            .await
    }

    async fn apply(
        &self,
        projection: &str,
        generation: u32,
        changes: &[Change],
        from: Position,
        to: Position,
    ) -> Result<(), ReadModelError> {
        self.store(projection)
            .apply(projection, generation, changes, from, to)
            .await
    }

    async fn promote(
        &self,
        projection: &str,
        generation: u32,
    ) -> Result<Promotion, ReadModelError> {
        self.store(projection).promote(projection, generation).await
    }

    async fn dump(&self, projection: &str) -> Result<Vec<String>, ReadModelError> {
        self.store(projection).dump(projection).await
    }
}
