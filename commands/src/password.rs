//! Password hashing with argon2id. Hashing is slow on purpose, so it runs on the blocking pool.

use std::sync::Arc;

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
}

impl Passwords {
    pub fn new(policy: PasswordPolicy) -> Result<Self, String> {
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
        })
    }

    /// Hashes a password into a PHC string.
    pub async fn hash(&self, password: String) -> String {
        let argon = self.argon.clone();
        tokio::task::spawn_blocking(move || {
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
        tokio::task::spawn_blocking(move || {
            let ok = PasswordHash::new(&hash)
                .is_ok_and(|h| argon.verify_password(password.as_bytes(), &h).is_ok());
            ok && known
        })
        .await
        .unwrap_or(false)
    }
}
