//! Recently used aggregate states, so a hot stream is not re-read from its first event on every
//! command. Only ever a starting point: the handler reads any events past the cached version
//! before deciding, and the append's expected version remains the guard, so a stale entry
//! (another process appended) costs a short read, never a wrong decision.

use std::any::Any;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use domain::{Aggregate, StreamId};
use lru::LruCache;

use crate::handler::Loaded;

struct Entry {
    version: u64,
    state: Arc<dyn Any + Send + Sync>,
}

pub struct StateCache {
    entries: Mutex<LruCache<StreamId, Entry>>,
}

impl StateCache {
    pub fn new(capacity: usize) -> Self {
        let capacity = NonZeroUsize::new(capacity.max(1)).expect("at least one");
        Self {
            entries: Mutex::new(LruCache::new(capacity)),
        }
    }

    /// A copy of the cached state of `stream`, if it is cached as an `A`.
    pub fn get<A: Aggregate>(&self, stream: &StreamId) -> Option<Loaded<A>> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let entry = entries.get(stream)?;
        let state = entry.state.downcast_ref::<A>()?.clone();
        Some(Loaded {
            state,
            version: entry.version,
        })
    }

    /// Takes the cached state of `stream` out of the cache, if it is cached as an `A`: the
    /// caller owns it without a copy and puts back what it decides from it. Meanwhile the
    /// stream is not cached, so anyone else loads it from the store.
    pub fn take<A: Aggregate>(&self, stream: &StreamId) -> Option<Loaded<A>> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if !entries.peek(stream)?.state.is::<A>() {
            return None;
        }
        let entry = entries.pop(stream)?;
        let state = entry.state.downcast::<A>().ok()?;
        let state = Arc::try_unwrap(state).unwrap_or_else(|shared| (*shared).clone());
        Some(Loaded {
            state,
            version: entry.version,
        })
    }

    /// Remembers `loaded` unless a newer version is already cached.
    pub fn put<A: Aggregate>(&self, stream: &StreamId, loaded: Loaded<A>) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries
            .peek(stream)
            .is_some_and(|e| e.version > loaded.version)
        {
            return;
        }
        let entry = Entry {
            version: loaded.version,
            state: Arc::new(loaded.state),
        };
        entries.put(stream.clone(), entry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::reservation::Reservation;
    use domain::user::User;

    #[test]
    fn keeps_the_newest_version_and_checks_the_type() {
        let cache = StateCache::new(2);
        let s = StreamId::parse("user-1").unwrap();
        cache.put(
            &s,
            Loaded {
                state: User::default(),
                version: 3,
            },
        );
        cache.put(
            &s,
            Loaded {
                state: User::default(),
                version: 2,
            },
        );
        assert_eq!(cache.get::<User>(&s).map(|l| l.version), Some(3));
        assert!(cache.get::<Reservation>(&s).is_none());
        assert!(cache.take::<Reservation>(&s).is_none(), "wrong type");
        assert_eq!(cache.take::<User>(&s).map(|l| l.version), Some(3));
        assert!(cache.get::<User>(&s).is_none(), "taken out");
        cache.put(
            &s,
            Loaded {
                state: User::default(),
                version: 3,
            },
        );
        for i in 0..3 {
            let other = StreamId::parse(format!("user-x{i}")).unwrap();
            cache.put(
                &other,
                Loaded {
                    state: User::default(),
                    version: 1,
                },
            );
        }
        assert!(
            cache.get::<User>(&s).is_none(),
            "evicted as least recently used"
        );
    }
}
