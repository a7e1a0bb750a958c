//! The Model aggregate: an AI model tasks can be published to (e.g. a text-to-image workflow).
//!
//! Only admins register, update, disable and enable models. A model's name is its stream key,
//! so registering a name twice is refused by the stream's expected version as well as here.
//! Whether `input_schema` is a valid JSON Schema is checked at the edge, where the schema is
//! compiled; the aggregate keeps it as given.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::aggregate::{Aggregate, DomainEvent};
use crate::ids::{StreamId, UserId};
use crate::values::{Actor, InvalidValue, string_conversions};

/// A model's name: 1 to 64 of `a-z`, `0-9`, `-`, `_`, `.`, starting with a letter or digit.
///
/// Deserialized through [`ModelName::parse`] like every validated value; the rule has not
/// changed since the first model was registered, so every name in the log reads back.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ModelName(String);

impl ModelName {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let s = raw.trim();
        let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c);
        let starts_well = s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit());
        if !(1..=64).contains(&s.len()) || !starts_well || !s.chars().all(ok_char) {
            return Err(InvalidValue {
                field: "model",
                reason: "a model name is 1 to 64 characters of a-z, 0-9, '-', '_' and '.', \
                         starting with a letter or digit"
                    .into(),
            });
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The stream that holds this model's events.
    pub fn stream(&self) -> StreamId {
        StreamId::parse(format!("model-{}", self.0)).expect("model names are valid stream keys")
    }
}

string_conversions!(ModelName);

/// What a model is and accepts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    /// Free-form kind such as `text-to-image`.
    pub kind: String,
    /// The JSON Schema every task input must satisfy: a JSON object. The edge refuses `true` and
    /// `false` (valid schemas, but not what the API promises); events recorded before that may
    /// still hold one, so the field stays a plain [`Value`] and old events decode.
    pub input_schema: Value,
    /// At most this many of its tasks run at once (claims beyond it wait).
    pub max_concurrent: u32,
}

#[derive(Debug, Clone)]
pub enum ModelCommand {
    Register {
        name: ModelName,
        spec: ModelSpec,
        enabled: bool,
        by: Actor,
    },
    Update {
        spec: ModelSpec,
        by: Actor,
    },
    Disable {
        by: Actor,
    },
    Enable {
        by: Actor,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, strum::VariantNames)]
#[serde(tag = "type", content = "data")]
pub enum ModelEvent {
    ModelRegistered {
        name: ModelName,
        spec: ModelSpec,
        enabled: bool,
        by: UserId,
    },
    ModelUpdated {
        name: ModelName,
        spec: ModelSpec,
        by: UserId,
    },
    ModelDisabled {
        name: ModelName,
        by: UserId,
    },
    ModelEnabled {
        name: ModelName,
        by: UserId,
    },
}

impl DomainEvent for ModelEvent {
    fn into_event(self) -> crate::Event {
        crate::Event::Model(self)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    #[error("only admins manage models")]
    NotAdmin,
    #[error("a model with this name exists already")]
    AlreadyExists,
    #[error("no such model")]
    NotFound,
}

/// A model as its events leave it.
#[derive(Debug, Clone, Default)]
pub struct Model {
    pub name: Option<ModelName>,
    pub spec: Option<ModelSpec>,
    pub enabled: bool,
}

impl Model {
    pub fn exists(&self) -> bool {
        self.name.is_some()
    }
}

impl Aggregate for Model {
    type Command = ModelCommand;
    type Event = ModelEvent;
    type Error = ModelError;
    type Services = ();

    fn decide(&self, command: &ModelCommand, _: &()) -> Result<Vec<ModelEvent>, ModelError> {
        let by = match command {
            ModelCommand::Register { by, .. }
            | ModelCommand::Update { by, .. }
            | ModelCommand::Disable { by }
            | ModelCommand::Enable { by } => by,
        };
        if !by.is_admin {
            return Err(ModelError::NotAdmin);
        }
        let by = by.user_id;
        let Some(name) = self.name.clone() else {
            return match command {
                ModelCommand::Register {
                    name,
                    spec,
                    enabled,
                    ..
                } => Ok(vec![ModelEvent::ModelRegistered {
                    name: name.clone(),
                    spec: spec.clone(),
                    enabled: *enabled,
                    by,
                }]),
                _ => Err(ModelError::NotFound),
            };
        };
        Ok(match command {
            ModelCommand::Register { .. } => return Err(ModelError::AlreadyExists),
            ModelCommand::Update { spec, .. } => vec![ModelEvent::ModelUpdated {
                name,
                spec: spec.clone(),
                by,
            }],
            // Disabling a disabled model (or enabling an enabled one) changes nothing.
            ModelCommand::Disable { .. } if self.enabled => {
                vec![ModelEvent::ModelDisabled { name, by }]
            }
            ModelCommand::Enable { .. } if !self.enabled => {
                vec![ModelEvent::ModelEnabled { name, by }]
            }
            ModelCommand::Disable { .. } | ModelCommand::Enable { .. } => vec![],
        })
    }

    fn evolve(&mut self, event: &ModelEvent) {
        match event {
            ModelEvent::ModelRegistered {
                name,
                spec,
                enabled,
                ..
            } => {
                self.name = Some(name.clone());
                self.spec = Some(spec.clone());
                self.enabled = *enabled;
            }
            ModelEvent::ModelUpdated { spec, .. } => self.spec = Some(spec.clone()),
            ModelEvent::ModelDisabled { .. } => self.enabled = false,
            ModelEvent::ModelEnabled { .. } => self.enabled = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::given;
    use serde_json::json;
    use uuid::Uuid;

    fn actor(is_admin: bool) -> Actor {
        Actor {
            user_id: UserId::new(Uuid::from_u128(7)),
            username: "ops".into(),
            is_admin,
        }
    }

    fn spec() -> ModelSpec {
        ModelSpec {
            kind: "text-to-image".into(),
            input_schema: json!({"type": "object", "required": ["prompt"]}),
            max_concurrent: 2,
        }
    }

    fn register(is_admin: bool) -> ModelCommand {
        ModelCommand::Register {
            name: ModelName::parse("sdxl").unwrap(),
            spec: spec(),
            enabled: true,
            by: actor(is_admin),
        }
    }

    fn sdxl() -> ModelName {
        ModelName::parse("sdxl").unwrap()
    }

    fn by() -> UserId {
        actor(true).user_id
    }

    fn registered() -> ModelEvent {
        ModelEvent::ModelRegistered {
            name: sdxl(),
            spec: spec(),
            enabled: true,
            by: by(),
        }
    }

    fn disabled() -> ModelEvent {
        ModelEvent::ModelDisabled {
            name: sdxl(),
            by: by(),
        }
    }

    #[test]
    fn only_admins_register_and_names_are_unique() {
        given::<Model>([])
            .when(&register(false))
            .then_error(ModelError::NotAdmin)
            .when(&register(true))
            .then([registered()]);
        given::<Model>([registered()])
            .when(&register(true))
            .then_error(ModelError::AlreadyExists);
    }

    #[test]
    fn admins_update_a_model_that_exists() {
        let update = |is_admin| ModelCommand::Update {
            spec: ModelSpec {
                max_concurrent: 4,
                ..spec()
            },
            by: actor(is_admin),
        };
        given::<Model>([])
            .when(&update(true))
            .then_error(ModelError::NotFound);
        let g = given::<Model>([registered()])
            .when(&update(false))
            .then_error(ModelError::NotAdmin)
            .when(&update(true))
            .then([ModelEvent::ModelUpdated {
                name: sdxl(),
                spec: ModelSpec {
                    max_concurrent: 4,
                    ..spec()
                },
                by: by(),
            }]);
        assert_eq!(g.state().spec.as_ref().map(|s| s.max_concurrent), Some(4));
    }

    #[test]
    fn disable_and_enable_change_state_once() {
        let disable = ModelCommand::Disable { by: actor(true) };
        let enable = ModelCommand::Enable { by: actor(true) };
        let g = given::<Model>([registered()])
            .when(&enable)
            .then([])
            .when(&disable)
            .then([disabled()]);
        assert!(!g.state().enabled);
        let g = given::<Model>([registered(), disabled()])
            .when(&disable)
            .then([])
            .when(&enable)
            .then([ModelEvent::ModelEnabled {
                name: sdxl(),
                by: by(),
            }]);
        assert!(g.state().enabled);
        given::<Model>([])
            .when(&disable)
            .then_error(ModelError::NotFound);
    }

    #[test]
    fn names_are_parsed() {
        for good in ["sdxl", "comfy-ui_v1.5", "7b"] {
            assert!(ModelName::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "SDXL", "-x", "a b", &"x".repeat(65), "模型"] {
            assert!(ModelName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn deserializing_goes_through_parse() {
        for bad in [
            json!(""),
            json!("SDXL"),
            json!("-x"),
            json!("a b"),
            json!("模型"),
        ] {
            let read: Result<ModelName, _> = serde_json::from_value(bad.clone());
            assert!(read.is_err(), "{bad} deserialized");
        }
        let name: ModelName = serde_json::from_str(r#""comfy-ui_v1.5""#).unwrap();
        assert_eq!(serde_json::to_string(&name).unwrap(), r#""comfy-ui_v1.5""#);
        // An event in the log carries its name as a plain string, as before.
        let by = Uuid::from_u128(7);
        let stored = json!({"name": "sdxl", "by": by});
        let event = ModelEvent::decode("ModelDisabled", 1, &stored).unwrap();
        assert_eq!(event.encode().1, stored);
        let forged = json!({"name": "SDXL", "by": by});
        assert!(ModelEvent::decode("ModelDisabled", 1, &forged).is_err());
    }
}
