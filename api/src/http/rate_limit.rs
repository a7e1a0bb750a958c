//! Rate limits (GCRA, keyed). All configurable; `TREEHOLE_RATE_LIMITS=off` disables them.

use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::cli::config::RateLimits;
use crate::http::error::ApiError;

pub struct RateLimiters {
    enabled: bool,
    pub codes_per_email: DefaultKeyedRateLimiter<String>,
    pub codes_per_ip: DefaultKeyedRateLimiter<IpAddr>,
    pub registrations_per_ip: DefaultKeyedRateLimiter<IpAddr>,
    pub logins_per_ip: DefaultKeyedRateLimiter<IpAddr>,
    pub reactions_per_user: DefaultKeyedRateLimiter<domain::UserId>,
    pub votes_per_user: DefaultKeyedRateLimiter<domain::UserId>,
    pub follows_per_user: DefaultKeyedRateLimiter<domain::UserId>,
    /// The most notification streams one user may hold open (not a rate: a cap).
    pub streams_per_user: usize,
}

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n.max(1)).expect("at least one")
}

impl RateLimiters {
    pub fn new(c: &RateLimits) -> Self {
        Self {
            enabled: c.enabled,
            codes_per_email: RateLimiter::keyed(Quota::per_hour(nz(c.codes_per_email_per_hour))),
            codes_per_ip: RateLimiter::keyed(Quota::per_hour(nz(c.codes_per_ip_per_hour))),
            registrations_per_ip: RateLimiter::keyed(Quota::per_hour(nz(
                c.registrations_per_ip_per_hour
            ))),
            logins_per_ip: RateLimiter::keyed(Quota::per_minute(nz(c.logins_per_ip_per_minute))),
            reactions_per_user: RateLimiter::keyed(Quota::per_minute(nz(
                c.reactions_per_user_per_minute
            ))),
            votes_per_user: RateLimiter::keyed(Quota::per_minute(nz(c.votes_per_user_per_minute))),
            follows_per_user: RateLimiter::keyed(Quota::per_minute(nz(
                c.follows_per_user_per_minute
            ))),
            streams_per_user: if c.enabled {
                c.streams_per_user.max(1) as usize
            } else {
                usize::MAX
            },
        }
    }

    /// Takes one unit for `key`, or answers 429 with the time until the next one.
    pub fn check<K: Hash + Eq + Clone>(
        &self,
        limiter: &DefaultKeyedRateLimiter<K>,
        key: &K,
        what: &str,
    ) -> Result<(), ApiError> {
        if !self.enabled {
            return Ok(());
        }
        limiter.check_key(key).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            let secs = u32::try_from(wait.as_secs().max(1)).unwrap_or(u32::MAX);
            ApiError::too_many_requests(format!("too many {what}; try again in {secs} s"), secs)
        })
    }

    /// Forgets keys whose limits have fully recovered, so memory stays bounded.
    pub fn prune(&self) {
        self.codes_per_email.retain_recent();
        self.codes_per_ip.retain_recent();
        self.registrations_per_ip.retain_recent();
        self.logins_per_ip.retain_recent();
        self.reactions_per_user.retain_recent();
        self.votes_per_user.retain_recent();
        self.follows_per_user.retain_recent();
    }
}
