//! SQLite read models.
