//! The loops a process runs beside its main work, each started by the composition root and
//! watched by the [`supervisor`].

pub mod dispatch;
pub mod last_seen;
pub mod notifier;
pub mod projector;
pub mod supervisor;
