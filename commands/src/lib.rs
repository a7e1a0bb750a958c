//! The application side of treehole's write model (ARCHITECTURE.md §1).
//!
//! It owns the [`EventStore`] port, runs domain decisions against stored streams
//! ([`CommandHandler`]) and holds the use cases that span several streams (registration) or
//! need secrets the domain must not see (password hashes, tokens, code hashes). Logins, like
//! registration, decide on one aggregate and append to several streams at once (sessions).

pub mod batch;
pub mod cache;
pub mod event_store;
pub mod handler;
pub mod keys;
pub mod locks;
pub mod mail;
pub mod password;
pub mod registration;
pub mod sealed;
pub mod sessions;
pub mod subscription;
pub mod unregister;

pub use event_store::{
    AppendResult, Committed, EventStore, ExpectedVersion, IdempotencyKey, StoreError, StreamWrite,
};
pub use handler::{
    CommandContext, CommandError, CommandHandler, LoadError, Outcome, Recorded, RetryPolicy,
};
pub use keys::{KeyDump, KeyError, KeyStore, Keys};
pub use mail::{MailError, Mailer};
pub use password::{PasswordPolicy, Passwords};
pub use sealed::SealedStore;
pub use subscription::Subscription;
