//! The Worker aggregate: a credential for a process that claims and runs tasks.
//!
//! Worker credentials are not user sessions: an admin registers a worker for some models and
//! receives its token once; only the token's keyed hash is stored. A revoked worker's token is
//! refused from then on.

use serde::{Deserialize, Serialize};

use crate::aggregate::{Aggregate, DomainEvent};
use crate::ids::{UserId, WorkerId};
use crate::model::ModelName;
use crate::values::Actor;

#[derive(Debug, Clone)]
pub enum WorkerCommand {
    Register {
        worker_id: WorkerId,
        name: String,
        models: Vec<ModelName>,
        token_hash: String,
        by: Actor,
    },
    Revoke {
        by: Actor,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, strum::VariantNames)]
#[serde(tag = "type", content = "data")]
pub enum WorkerEvent {
    WorkerRegistered {
        worker_id: WorkerId,
        name: String,
        models: Vec<ModelName>,
        /// Keyed hash of the token; the token itself is never stored.
        token_hash: String,
        by: UserId,
    },
    WorkerRevoked {
        worker_id: WorkerId,
        by: UserId,
    },
}

impl DomainEvent for WorkerEvent {
    fn into_event(self) -> crate::Event {
        crate::Event::Worker(self)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkerError {
    #[error("only admins manage workers")]
    NotAdmin,
    #[error("the worker exists already")]
    AlreadyExists,
    #[error("no such worker")]
    NotFound,
    #[error("a worker serves 1 to 32 models")]
    BadModels,
}

#[derive(Debug, Clone, Default)]
pub struct Worker {
    pub id: Option<WorkerId>,
    pub revoked: bool,
}

impl Aggregate for Worker {
    type Command = WorkerCommand;
    type Event = WorkerEvent;
    type Error = WorkerError;
    type Services = ();

    fn decide(&self, command: &WorkerCommand, _: &()) -> Result<Vec<WorkerEvent>, WorkerError> {
        match command {
            WorkerCommand::Register {
                worker_id,
                name,
                models,
                token_hash,
                by,
            } => {
                if !by.is_admin {
                    return Err(WorkerError::NotAdmin);
                }
                if self.id.is_some() {
                    return Err(WorkerError::AlreadyExists);
                }
                if models.is_empty() || models.len() > 32 {
                    return Err(WorkerError::BadModels);
                }
                Ok(vec![WorkerEvent::WorkerRegistered {
                    worker_id: *worker_id,
                    name: name.clone(),
                    models: models.clone(),
                    token_hash: token_hash.clone(),
                    by: by.user_id,
                }])
            }
            WorkerCommand::Revoke { by } => {
                if !by.is_admin {
                    return Err(WorkerError::NotAdmin);
                }
                let worker_id = self.id.ok_or(WorkerError::NotFound)?;
                Ok(if self.revoked {
                    vec![]
                } else {
                    vec![WorkerEvent::WorkerRevoked {
                        worker_id,
                        by: by.user_id,
                    }]
                })
            }
        }
    }

    fn evolve(&mut self, event: &WorkerEvent) {
        match event {
            WorkerEvent::WorkerRegistered { worker_id, .. } => self.id = Some(*worker_id),
            WorkerEvent::WorkerRevoked { .. } => self.revoked = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::given;
    use uuid::Uuid;

    fn admin(is_admin: bool) -> Actor {
        Actor {
            user_id: UserId::new(Uuid::from_u128(1)),
            username: "ops".into(),
            is_admin,
        }
    }

    fn register(is_admin: bool, models: usize) -> WorkerCommand {
        WorkerCommand::Register {
            worker_id: WorkerId::new(Uuid::from_u128(9)),
            name: "gpu-1".into(),
            models: (0..models)
                .map(|i| ModelName::parse(&format!("m{i}")).unwrap())
                .collect(),
            token_hash: "h".into(),
            by: admin(is_admin),
        }
    }

    fn registered(models: usize) -> WorkerEvent {
        WorkerEvent::WorkerRegistered {
            worker_id: WorkerId::new(Uuid::from_u128(9)),
            name: "gpu-1".into(),
            models: (0..models)
                .map(|i| ModelName::parse(&format!("m{i}")).unwrap())
                .collect(),
            token_hash: "h".into(),
            by: UserId::new(Uuid::from_u128(1)),
        }
    }

    fn revoked() -> WorkerEvent {
        WorkerEvent::WorkerRevoked {
            worker_id: WorkerId::new(Uuid::from_u128(9)),
            by: UserId::new(Uuid::from_u128(1)),
        }
    }

    #[test]
    fn admins_register_workers_of_1_to_32_models() {
        given::<Worker>([])
            .when(&register(false, 1))
            .then_error(WorkerError::NotAdmin)
            .when(&register(true, 0))
            .then_error(WorkerError::BadModels)
            .when(&register(true, 33))
            .then_error(WorkerError::BadModels)
            .when(&register(true, 2))
            .then([registered(2)]);
        given::<Worker>([registered(2)])
            .when(&register(true, 2))
            .then_error(WorkerError::AlreadyExists);
    }

    #[test]
    fn admins_revoke_workers_once() {
        let revoke = |is_admin| WorkerCommand::Revoke {
            by: admin(is_admin),
        };
        given::<Worker>([])
            .when(&revoke(true))
            .then_error(WorkerError::NotFound);
        let g = given::<Worker>([registered(2)])
            .when(&revoke(false))
            .then_error(WorkerError::NotAdmin)
            .when(&revoke(true))
            .then([revoked()]);
        assert!(g.state().revoked);
        given::<Worker>([registered(2), revoked()])
            .when(&revoke(true))
            .then([]);
    }
}
