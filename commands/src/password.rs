//! Password hashing with argon2id. Hashing is slow on purpose, so it runs on the blocking pool,
//! at most two hashes per core at a time.

use std::sync::Arc;

use tokio::sync::Semaphore;

use argon2::password_hash::{
    PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString, rand_core::OsRng,
};
use argon2::{Algorithm, Argon2, Params, Version};

/// argon2id cost parameters. The default is OWASP's recommendation (19 MiB, 2 passes, 1 lane).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordPolicy {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self {
            memory_kib: 19_456,
            iterations: 2,
            parallelism: 1,
        }
    }
}

#[derive(Clone)]
pub struct Passwords {
    argon: Arc<Argon2<'static>>,
    /// A hash of nothing in particular, verified against when the user does not exist, so an
    /// attacker cannot tell unknown users from wrong passwords by timing.
    decoy: Arc<String>,
    /// One permit per hash or verification running. Each takes the policy's memory (19 MiB
    /// by default) and a core for its whole run: without a bound, 64 logins at once held
    /// 1.2 GiB and ran no faster than two at a time on two cores. The permit moves into the
    /// blocking task, so a request given up by its client still holds it until its hash ends.
    running: Arc<Semaphore>,
}

impl Passwords {
    /// At most two hashes per core run at once: one turn per core left a core idle between
    /// two hashes at times (BENCHMARKS.md).
    pub fn new(policy: PasswordPolicy) -> Result<Self, String> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::at_most(policy, 2 * cores)
    }

    /// At most `concurrent` hashes (or verifications) run at once; the others wait their turn.
    fn at_most(policy: PasswordPolicy, concurrent: usize) -> Result<Self, String> {
        let params = Params::new(
            policy.memory_kib,
            policy.iterations,
            policy.parallelism,
            None,
        )
        .map_err(|e| format!("invalid argon2 parameters: {e}"))?;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let decoy = argon
            .hash_password(b"decoy password", &SaltString::generate(&mut OsRng))
            .map_err(|e| e.to_string())?
            .to_string();
        Ok(Self {
            argon: Arc::new(argon),
            decoy: Arc::new(decoy),
            running: Arc::new(Semaphore::new(concurrent.max(1))),
        })
    }

    /// Waits for a turn to hash.
    async fn turn(&self) -> tokio::sync::OwnedSemaphorePermit {
        self.running
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed")
    }

    /// Hashes a password into a PHC string.
    pub async fn hash(&self, password: String) -> String {
        let argon = self.argon.clone();
        let turn = self.turn().await;
        tokio::task::spawn_blocking(move || {
            let _turn = turn;
            argon
                .hash_password(password.as_bytes(), &SaltString::generate(&mut OsRng))
                .expect("argon2 hashing with valid parameters cannot fail")
                .to_string()
        })
        .await
        .expect("the hashing task does not panic")
    }

    /// Checks a password against a stored PHC string (or the decoy when `hash` is `None`).
    pub async fn verify(&self, password: String, hash: Option<String>) -> bool {
        let argon = self.argon.clone();
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.decoy.as_str().to_owned());
        let turn = self.turn().await;
        tokio::task::spawn_blocking(move || {
            let _turn = turn;
            let ok = PasswordHash::new(&hash)
                .is_ok_and(|h| argon.verify_password(password.as_bytes(), &h).is_ok());
            ok && known
        })
        .await
        .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Cheap parameters: the test is about turns, not cost.
    const CHEAP: PasswordPolicy = PasswordPolicy {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };

    #[tokio::test]
    async fn a_hash_waits_for_a_turn_and_gives_it_back() {
        let passwords = Passwords::at_most(CHEAP, 2).expect("valid parameters");
        let held = (passwords.turn().await, passwords.turn().await);
        // Both turns taken: a hash cannot start, however long it is given.
        let waiting = tokio::time::timeout(Duration::from_millis(300), passwords.hash("pw".into()));
        assert!(waiting.await.is_err(), "hashed without a turn");
        drop(held.0);
        let hash = passwords.hash("pw".into()).await;
        assert!(passwords.verify("pw".into(), Some(hash.clone())).await);
        assert!(!passwords.verify("other".into(), Some(hash)).await);
        assert!(
            !passwords.verify("pw".into(), None).await,
            "the decoy verifies nothing"
        );
        drop(held.1);
        assert_eq!(
            passwords.running.available_permits(),
            2,
            "every turn given back"
        );
    }
}
