//! Mail transports.
