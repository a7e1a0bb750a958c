//! Crypto-shredding: per-user data keys, sealed personal values, author tokens.
//!
//! Every user has a random 256-bit data key. It is stored only in the [`KeyStore`] (a table
//! beside the log), wrapped with XChaCha20-Poly1305 under a key-encryption key derived from the
//! server secret, and never in an event. Personal values in events ([`domain::Personal`]) are
//! sealed with their owner's data key, with the event id and the key reference bound as
//! associated data, so a ciphertext cannot be moved to another event. Destroying the data key
//! (unregistering) makes every value sealed with it unreadable for good, for everyone: readers of
//! the topic, of exports, and an operator holding the database and the secret.
//!
//! A value names its key by a [`KeyRef`]: the user id where the user is public anyway, or an
//! opaque handle (an author token, a reservation handle) that only the key store resolves to a
//! user, and only until that user's key is destroyed.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use domain::keyed_hash::keyed_hash;
use domain::personal::{OPEN, SEALED, visit_mut};
use domain::{
    AuthorToken, CommentId, Envelope, ItemHandle, KeyRef, NewEvent, PostId, StreamId, UserId,
};
use lru::LruCache;
use rand::RngCore;
use serde_json::Value;
use uuid::Uuid;

/// What the key-encryption key is derived under from the server secret.
const KEK_LABEL: &[u8] = b"treehole data keys v1";
const NONCE_LEN: usize = 24;
/// The authentication tag XChaCha20-Poly1305 appends.
const TAG_LEN: usize = 16;
/// The bytes of a user id as sealed plaintext: a JSON string of a hyphenated UUID.
const SEALED_USER_ID: usize = 38;

/// Where wrapped data keys and key handles live: beside the log, never in it. Implemented in
/// `infra` (a table in the SQLite file, or in the PostgreSQL database).
#[async_trait]
pub trait KeyStore: Send + Sync + 'static {
    /// Stores `wrapped` as the user's key unless they have one; returns the stored key.
    /// [`KeyError::Destroyed`] if their key was destroyed: a tombstone stays in its place.
    async fn put_key(&self, user: UserId, wrapped: Vec<u8>) -> Result<Vec<u8>, KeyError>;
    /// The user's wrapped key, if it exists (not destroyed, not never made).
    async fn get_key(&self, user: UserId) -> Result<Option<Vec<u8>>, KeyError>;
    /// Records that `handle` names `user`'s key (idempotent); `subject` is what the handle is
    /// about (the post of an author token, the stream of a reservation handle).
    async fn put_handle(&self, handle: &str, user: UserId, subject: &str) -> Result<(), KeyError>;
    /// The subjects of the user's handles whose names start with `prefix` (`t`: the posts the
    /// user has an author token for), while their key exists.
    async fn subjects(&self, user: UserId, prefix: &str) -> Result<Vec<String>, KeyError>;
    /// The user a handle names, while their key exists.
    async fn resolve(&self, handle: &str) -> Result<Option<UserId>, KeyError>;
    /// Destroys the user's key and handles, as far as the backend can erase bytes (see the
    /// implementations), and leaves a tombstone, so that no key is made for them again.
    async fn shred(&self, user: UserId) -> Result<(), KeyError>;
    /// Every key (still wrapped) and every handle: what `treehole keys export` copies.
    async fn all(&self) -> Result<KeyDump, KeyError>;

    /// Any one live key, to check at start-up that the server secret unwraps this store's keys.
    async fn sample(&self) -> Result<Option<(UserId, Vec<u8>)>, KeyError> {
        Ok(self.all().await?.keys.into_iter().next())
    }

    /// The users of those `handles` whose key exists: one round trip for a batch of events.
    async fn resolve_many(&self, handles: &[String]) -> Result<Vec<(String, UserId)>, KeyError> {
        let mut out = Vec::new();
        for h in handles {
            if let Some(u) = self.resolve(h).await? {
                out.push((h.clone(), u));
            }
        }
        Ok(out)
    }

    /// Stores many keys at once (each as [`Self::put_key`] would, without its answer): bulk
    /// loads.
    async fn put_keys(&self, keys: &[(UserId, Vec<u8>)]) -> Result<(), KeyError> {
        for (u, k) in keys {
            self.put_key(*u, k.clone()).await?;
        }
        Ok(())
    }

    /// Records many handles at once (handle, user, subject): bulk loads.
    async fn put_handles(&self, handles: &[(String, UserId, String)]) -> Result<(), KeyError> {
        for (h, u, s) in handles {
            self.put_handle(h, *u, s).await?;
        }
        Ok(())
    }

    /// The wrapped keys of those `users` that have one.
    async fn get_keys(&self, users: &[UserId]) -> Result<Vec<(UserId, Vec<u8>)>, KeyError> {
        let mut out = Vec::new();
        for u in users {
            if let Some(k) = self.get_key(*u).await? {
                out.push((*u, k));
            }
        }
        Ok(out)
    }
}

/// The whole content of a key store; keys stay wrapped under the key-encryption key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyDump {
    pub keys: Vec<(UserId, Vec<u8>)>,
    /// Handle, user, subject.
    pub handles: Vec<(String, UserId, String)>,
    /// Users whose key was destroyed (tombstones).
    pub destroyed: Vec<UserId>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key store failure: {0}")]
    Backend(String),
    /// A ciphertext whose key exists failed to authenticate: it was altered or moved.
    #[error("a sealed value in event {event_id} does not authenticate (altered or moved)")]
    Tampered { event_id: Uuid },
    #[error("a sealed value in event {event_id} is malformed: {reason}")]
    Malformed { event_id: Uuid, reason: String },
    /// A value was to be sealed with a key that does not exist.
    #[error("no data key for {0}")]
    NoKey(String),
    /// The server secret does not unwrap the key store's keys.
    #[error(
        "the server secret does not unwrap the stored data keys: every process of one deployment needs the same secret (TREEHOLE_SECRET or data/secret.key)"
    )]
    WrongSecret,
    /// The user's key was destroyed (they unregistered): none is ever made again.
    #[error("the data key of {0} was destroyed")]
    Destroyed(UserId),
}

/// One user's data key, unwrapped, in memory only.
struct DataKey {
    cipher: XChaCha20Poly1305,
    mac_key: [u8; 32],
}

/// Seals and opens personal values, and makes author tokens, with keys from a [`KeyStore`].
pub struct Keys {
    store: Arc<dyn KeyStore>,
    kek: XChaCha20Poly1305,
    keys: Mutex<LruCache<UserId, Arc<DataKey>>>,
    handles: Mutex<LruCache<String, UserId>>,
    /// Key references (user ids and handles) found without a key while reading events. A value
    /// is sealed only with a key that exists, and a handle is stored before the event that uses
    /// it, so a reference an event names and the store cannot resolve was destroyed, for good.
    dead: Mutex<LruCache<String, ()>>,
    /// New handles waiting to be stored, each with whom to tell.
    new_handles: Mutex<Vec<(NewHandle, HandleStored)>>,
    /// Held by the caller storing the waiting handles.
    storing: tokio::sync::Mutex<()>,
}

/// A handle to record: (handle, user, subject).
type NewHandle = (String, UserId, String);

/// Tells a caller whether its handle was stored.
type HandleStored = tokio::sync::oneshot::Sender<Result<(), String>>;

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys { .. }")
    }
}

impl Keys {
    pub fn new(store: Arc<dyn KeyStore>, server_secret: &[u8]) -> Self {
        let kek = XChaCha20Poly1305::new_from_slice(&keyed_hash(server_secret, &[KEK_LABEL]))
            .expect("a 32-byte key");
        let capacity = NonZeroUsize::new(100_000).expect("non-zero");
        Self {
            store,
            kek,
            keys: Mutex::new(LruCache::new(capacity)),
            handles: Mutex::new(LruCache::new(capacity)),
            dead: Mutex::new(LruCache::new(capacity)),
            new_handles: Mutex::new(Vec::new()),
            storing: tokio::sync::Mutex::new(()),
        }
    }

    pub fn store(&self) -> &Arc<dyn KeyStore> {
        &self.store
    }

    /// Fails unless this process's server secret unwraps the store's keys (one is tried): a
    /// replica started with another secret would read every sealed value as unknown.
    pub async fn check_secret(&self) -> Result<(), KeyError> {
        match self.store.sample().await? {
            Some((user, wrapped)) => self
                .unwrap(user, &wrapped)
                .map(|_| ())
                .map_err(|_| KeyError::WrongSecret),
            None => Ok(()),
        }
    }

    /// Makes fresh keys for many new users in one write (bulk loads; users that have a key
    /// keep it).
    pub async fn create_many(&self, users: &[UserId]) -> Result<(), KeyError> {
        let wrapped: Vec<(UserId, Vec<u8>)> = users
            .iter()
            .map(|u| {
                let mut raw = [0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut raw);
                (*u, self.wrap(*u, &raw))
            })
            .collect();
        self.store.put_keys(&wrapped).await
    }

    /// Makes the user's data key if they have none (registration; users registered before
    /// keys existed get one on first need).
    pub async fn create(&self, user: UserId) -> Result<(), KeyError> {
        self.key_or_create(user).await.map(|_| ())
    }

    async fn key_or_create(&self, user: UserId) -> Result<Arc<DataKey>, KeyError> {
        if let Some(k) = self.key(user).await? {
            return Ok(k);
        }
        let mut raw = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut raw);
        let wrapped = self.wrap(user, &raw);
        let stored = self.store.put_key(user, wrapped).await?;
        let key = Arc::new(self.unwrap(user, &stored)?);
        self.dead.lock().expect("lock").pop(&user.to_string());
        self.keys.lock().expect("lock").put(user, key.clone());
        Ok(key)
    }

    async fn key(&self, user: UserId) -> Result<Option<Arc<DataKey>>, KeyError> {
        if let Some(k) = self.keys.lock().expect("lock").get(&user) {
            return Ok(Some(k.clone()));
        }
        let Some(wrapped) = self.store.get_key(user).await? else {
            return Ok(None);
        };
        let key = Arc::new(self.unwrap(user, &wrapped)?);
        self.keys.lock().expect("lock").put(user, key.clone());
        Ok(Some(key))
    }

    fn wrap(&self, user: UserId, raw: &[u8; 32]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let aad = user.to_string();
        let ct = self
            .kek
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: raw,
                    aad: aad.as_bytes(),
                },
            )
            .expect("encryption of 32 bytes cannot fail");
        [nonce.as_slice(), &ct].concat()
    }

    fn unwrap(&self, user: UserId, wrapped: &[u8]) -> Result<DataKey, KeyError> {
        let aad = user.to_string();
        let bad = || KeyError::Backend(format!("the data key of {user} does not unwrap"));
        if wrapped.len() <= NONCE_LEN {
            return Err(bad());
        }
        let (nonce, ct) = wrapped.split_at(NONCE_LEN);
        let raw = self
            .kek
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| bad())?;
        let cipher = XChaCha20Poly1305::new_from_slice(&raw).map_err(|_| bad())?;
        // A separate key for tokens, so that no MAC output is ever related to the cipher key.
        Ok(DataKey {
            cipher,
            mac_key: keyed_hash(&raw, &[b"treehole author tokens v1"]),
        })
    }

    fn mac(key: &DataKey, label: &str) -> String {
        hex::encode(&keyed_hash(&key.mac_key, &[label.as_bytes()])[..16])
    }

    /// The user's author token for a post, recorded as a handle of their key. The user's key
    /// is made if they have none (users registered before keys existed).
    pub async fn author_token(&self, user: UserId, post: PostId) -> Result<AuthorToken, KeyError> {
        let key = self.key_or_create(user).await?;
        let token = format!("t{}", Self::mac(&key, &format!("author:{post}:{user}")));
        self.remember(&token, user, &post.to_string()).await?;
        Ok(AuthorToken::new(token))
    }

    /// The user's handle for their reaction to one item: the post (`comment` `None`) or one of
    /// its comments. Unlike an author token it is not recorded: nothing is sealed under it and
    /// nobody needs to resolve it; only its owner can make it again, and nobody once their key
    /// is destroyed. One per item, so two reactions of one user cannot be linked.
    pub async fn reaction_handle(
        &self,
        user: UserId,
        post: PostId,
        comment: Option<CommentId>,
    ) -> Result<ItemHandle, KeyError> {
        let key = self.key_or_create(user).await?;
        let item = comment.map_or_else(|| format!("post:{post}"), |c| format!("comment:{c}"));
        Ok(ItemHandle::new(format!(
            "v{}",
            Self::mac(&key, &format!("reaction:{item}:{user}"))
        )))
    }

    /// The user's handle for their vote in a post's poll; like [`Self::reaction_handle`], under
    /// a label of its own, so a vote and a reaction of one user cannot be linked.
    pub async fn vote_handle(&self, user: UserId, post: PostId) -> Result<ItemHandle, KeyError> {
        let key = self.key_or_create(user).await?;
        Ok(ItemHandle::new(format!(
            "w{}",
            Self::mac(&key, &format!("vote:{post}:{user}"))
        )))
    }

    /// The user's follow handle for a post: what their explicit follow choices seal their id
    /// under. Recorded, like an author token, so that the inbox can open it; one per post, so
    /// that two follows of one user cannot be linked, and under a label of its own, so that a
    /// follow is not tied to the user's anonymous items under the post.
    pub async fn follow_handle(&self, user: UserId, post: PostId) -> Result<KeyRef, KeyError> {
        let key = self.key_or_create(user).await?;
        let handle = format!("f{}", Self::mac(&key, &format!("follow:{post}:{user}")));
        self.remember(&handle, user, &post.to_string()).await?;
        Ok(KeyRef::handle(handle))
    }

    /// The user's report handle for one item: one report per user and item, and what the
    /// report's text is sealed under. Recorded, so the text dies with the user's key; one per
    /// item, so that two reports of one user cannot be linked.
    pub async fn report_handle(
        &self,
        user: UserId,
        post: PostId,
        comment: Option<CommentId>,
    ) -> Result<KeyRef, KeyError> {
        let key = self.key_or_create(user).await?;
        let item = comment.map_or_else(|| format!("post:{post}"), |c| format!("comment:{c}"));
        let handle = format!("m{}", Self::mac(&key, &format!("report:{item}:{user}")));
        self.remember(&handle, user, &post.to_string()).await?;
        Ok(KeyRef::handle(handle))
    }

    /// The handle a sanction's subject and terms are sealed under: one per sanction, so that
    /// the ledger does not group one user's sanctions.
    pub async fn sanction_handle(
        &self,
        user: UserId,
        sanction: domain::SanctionId,
    ) -> Result<KeyRef, KeyError> {
        let key = self.key_or_create(user).await?;
        let handle = format!(
            "s{}",
            Self::mac(&key, &format!("sanction:{sanction}:{user}"))
        );
        self.remember(&handle, user, &sanction.to_string()).await?;
        Ok(KeyRef::handle(handle))
    }

    /// The handle a reservation stream's owner is sealed under.
    pub async fn reservation_handle(
        &self,
        user: UserId,
        stream: &StreamId,
    ) -> Result<KeyRef, KeyError> {
        let key = self.key_or_create(user).await?;
        let handle = format!("r{}", Self::mac(&key, &format!("reservation:{stream}")));
        self.remember(&handle, user, stream.as_str()).await?;
        Ok(KeyRef::handle(handle))
    }

    async fn remember(&self, handle: &str, user: UserId, subject: &str) -> Result<(), KeyError> {
        if self.handles.lock().expect("lock").get(handle) == Some(&user) {
            return Ok(());
        }
        self.store_handle((handle.to_owned(), user, subject.to_owned()))
            .await?;
        self.handles
            .lock()
            .expect("lock")
            .put(handle.to_owned(), user);
        Ok(())
    }

    /// Stores a new handle together with those other callers are waiting to store: one write
    /// (one transaction, one fsync) for all of them, as the log's group commit does. A thousand
    /// users commenting on one post for the first time at once need a thousand handles, and
    /// one write each made them queue behind each other's fsync.
    ///
    /// Whoever gets the turn stores everything waiting and answers each caller before giving
    /// the turn up; a caller whose handle was stored while it waited finds its answer ready.
    async fn store_handle(&self, new: NewHandle) -> Result<(), KeyError> {
        let (tell, mut told) = tokio::sync::oneshot::channel();
        self.new_handles.lock().expect("lock").push((new, tell));
        let _turn = self.storing.lock().await;
        if let Ok(answer) = told.try_recv() {
            return answer.map_err(KeyError::Backend);
        }
        let waiting = std::mem::take(&mut *self.new_handles.lock().expect("lock"));
        let (rows, tells): (Vec<NewHandle>, Vec<_>) = waiting.into_iter().unzip();
        let stored = self
            .store
            .put_handles(&rows)
            .await
            .map_err(|e| e.to_string());
        for tell in tells {
            let _ = tell.send(stored.clone());
        }
        told.await
            .map_err(|_| KeyError::Backend("a handle's write was dropped".into()))?
            .map_err(KeyError::Backend)
    }

    /// The user a key reference names, if their key still exists.
    async fn owner(&self, key: &KeyRef) -> Result<Option<UserId>, KeyError> {
        if let Some(user) = key.as_user() {
            return Ok(Some(user));
        }
        if let Some(u) = self.handles.lock().expect("lock").get(key.as_str()) {
            return Ok(Some(*u));
        }
        if self.dead.lock().expect("lock").contains(key.as_str()) {
            return Ok(None);
        }
        let user = self.store.resolve(key.as_str()).await?;
        match user {
            Some(u) => {
                self.handles
                    .lock()
                    .expect("lock")
                    .put(key.as_str().to_owned(), u);
            }
            None => {
                self.dead
                    .lock()
                    .expect("lock")
                    .put(key.as_str().to_owned(), ());
            }
        }
        Ok(user)
    }

    /// The key of a value read from the log (see `dead`).
    async fn key_of(&self, key: &KeyRef) -> Result<Option<Arc<DataKey>>, KeyError> {
        let Some(user) = self.owner(key).await? else {
            return Ok(None);
        };
        if self.dead.lock().expect("lock").contains(&user.to_string()) {
            return Ok(None);
        }
        let found = self.key(user).await?;
        if found.is_none() {
            self.dead.lock().expect("lock").put(user.to_string(), ());
        }
        Ok(found)
    }

    /// Looks up, in two round trips at most, every key the sealed values of `envelopes` need
    /// that this process does not hold yet: a batch of a rebuild costs two queries, not one
    /// per anonymous item.
    pub async fn prefetch(&self, envelopes: &[Envelope]) -> Result<(), KeyError> {
        self.prefetch_data(envelopes.iter().map(|e| &e.data)).await
    }

    /// [`Self::prefetch`] for the payloads of events about to be sealed or just read.
    pub async fn prefetch_data<'a>(
        &self,
        data: impl Iterator<Item = &'a Value>,
    ) -> Result<(), KeyError> {
        let mut refs = std::collections::BTreeSet::new();
        for d in data {
            collect_refs(d, &mut refs);
        }
        if refs.is_empty() {
            return Ok(());
        }
        let mut handles = Vec::new();
        let mut users = std::collections::BTreeSet::new();
        {
            let mut known = self.handles.lock().expect("lock");
            let dead = self.dead.lock().expect("lock");
            for r in refs {
                if dead.contains(&r) {
                    continue;
                }
                match KeyRef::handle(r.clone()).as_user() {
                    Some(u) => {
                        users.insert(u);
                    }
                    None => match known.get(&r) {
                        Some(u) => {
                            users.insert(*u);
                        }
                        None => handles.push(r),
                    },
                }
            }
        }
        if !handles.is_empty() {
            let found = self.store.resolve_many(&handles).await?;
            let mut known = self.handles.lock().expect("lock");
            let mut dead = self.dead.lock().expect("lock");
            let resolved: std::collections::HashMap<&str, UserId> =
                found.iter().map(|(h, u)| (h.as_str(), *u)).collect();
            for h in &handles {
                match resolved.get(h.as_str()) {
                    Some(u) => {
                        known.put(h.clone(), *u);
                        users.insert(*u);
                    }
                    None => {
                        dead.put(h.clone(), ());
                    }
                }
            }
        }
        let wanted: Vec<UserId> = {
            let keys = self.keys.lock().expect("lock");
            let dead = self.dead.lock().expect("lock");
            users
                .into_iter()
                .filter(|u| !keys.contains(u) && !dead.contains(&u.to_string()))
                .collect()
        };
        if wanted.is_empty() {
            return Ok(());
        }
        let found = self.store.get_keys(&wanted).await?;
        let mut unwrapped = Vec::with_capacity(found.len());
        for (u, wrapped) in &found {
            unwrapped.push((*u, Arc::new(self.unwrap(*u, wrapped)?)));
        }
        let mut keys = self.keys.lock().expect("lock");
        let mut dead = self.dead.lock().expect("lock");
        for u in &wanted {
            if !found.iter().any(|(f, _)| f == u) {
                dead.put(u.to_string(), ());
            }
        }
        for (u, k) in unwrapped {
            keys.put(u, k);
        }
        Ok(())
    }

    /// The posts the user has an author token for (every post they published, commented on or
    /// deleted from since tokens exist), while their key exists.
    pub async fn posts_of(&self, user: UserId) -> Result<Vec<PostId>, KeyError> {
        Ok(self
            .store
            .subjects(user, "t")
            .await?
            .iter()
            .filter_map(|s| Uuid::parse_str(s).ok().map(PostId::new))
            .collect())
    }

    /// Destroys the user's key (and forgets it here).
    pub async fn shred(&self, user: UserId) -> Result<(), KeyError> {
        self.forget(user);
        self.store.shred(user).await?;
        self.forget(user);
        self.dead.lock().expect("lock").put(user.to_string(), ());
        Ok(())
    }

    /// Drops the user's key and handles from this process's memory.
    pub fn forget(&self, user: UserId) {
        self.keys.lock().expect("lock").pop(&user);
        let mut handles = self.handles.lock().expect("lock");
        let theirs: Vec<String> = handles
            .iter()
            .filter(|(_, u)| **u == user)
            .map(|(h, _)| h.clone())
            .collect();
        for h in theirs {
            handles.pop(&h);
        }
    }

    fn aad(event_id: Uuid, key: &KeyRef) -> Vec<u8> {
        [event_id.as_bytes().as_slice(), key.as_str().as_bytes()].concat()
    }

    /// Replaces every open personal value in the event's data by its sealed form.
    pub async fn seal(&self, event: &mut NewEvent) -> Result<(), KeyError> {
        let mut wanted = Vec::new();
        let _ = visit_mut::<()>(&mut event.data, &mut |tag, v| {
            if tag == OPEN {
                wanted.push(key_ref(&v[OPEN]));
            }
            Ok(())
        });
        if wanted.is_empty() {
            return Ok(());
        }
        let mut keys = Vec::with_capacity(wanted.len());
        for k in wanted {
            let k = k.ok_or_else(|| KeyError::NoKey("a value without a key".into()))?;
            let key = self.key_of(&k).await?;
            // A user's own key must exist to seal under it; a handle whose user has left is
            // sealed as noise (see below).
            if key.is_none() && k.as_user().is_some() {
                return Err(KeyError::NoKey(k.to_string()));
            }
            keys.push((k, key));
        }
        let event_id = event.event_id;
        let mut keys = keys.into_iter();
        visit_mut(&mut event.data, &mut |tag, v| {
            if tag != OPEN {
                return Ok(());
            }
            let (k, key) = keys.next().expect("one key per open value");
            let plain = serde_json::to_vec(&v[OPEN].get("value").cloned().unwrap_or(Value::Null))
                .expect("JSON serialises");
            // A CSPRNG in user space (ChaCha, reseeded from the OS): 192-bit random nonces
            // without a system call per value.
            let mut nonce = [0u8; NONCE_LEN];
            rand::thread_rng().fill_bytes(&mut nonce);
            let Some(key) = key else {
                // The value names a handle whose user left (a reply's addressee, the author of
                // the comment answered): random bytes as long as a sealed user id stand in its
                // place, which nobody can tell from a ciphertext, so that the log does not say
                // when an anonymous author left. It reads as unknown, like any value whose key
                // is gone.
                let len = if v[OPEN].get("value").is_some() {
                    plain.len()
                } else {
                    SEALED_USER_ID
                };
                let mut noise = vec![0u8; len + TAG_LEN];
                rand::thread_rng().fill_bytes(&mut noise);
                let ct = URL_SAFE_NO_PAD.encode([nonce.as_slice(), &noise].concat());
                *v = serde_json::json!({ SEALED: { "key": k, "ct": ct } });
                return Ok(());
            };
            let ct = key
                .cipher
                .encrypt(
                    XNonce::from_slice(&nonce),
                    Payload {
                        msg: &plain,
                        aad: &Self::aad(event_id, &k),
                    },
                )
                .map_err(|_| KeyError::Backend("encryption failed".into()))?;
            let ct = URL_SAFE_NO_PAD.encode([nonce.as_slice(), &ct].concat());
            *v = serde_json::json!({ SEALED: { "key": k, "ct": ct } });
            Ok(())
        })
    }

    /// Replaces every sealed value in the envelope's data by its open form where its key
    /// exists; a value whose key is gone stays sealed (it decodes as unknown). A value whose
    /// key exists but which does not authenticate is an error.
    pub async fn open(&self, envelope: &mut Envelope) -> Result<(), KeyError> {
        if envelope.event_type == "UserUnregistered"
            && let Some(user) = envelope.data["user_id"]
                .as_str()
                .and_then(|u| Uuid::parse_str(u).ok())
        {
            // The first reader past an unregistration makes sure its key is gone (the command
            // destroys it after its commit; this covers a crash in between).
            let user = UserId::new(user);
            self.forget(user);
            if self.store.get_key(user).await?.is_some() {
                self.shred(user).await?;
            }
        }
        let mut wanted = Vec::new();
        let _ = visit_mut::<()>(&mut envelope.data, &mut |tag, v| {
            if tag == SEALED {
                wanted.push(key_ref(&v[SEALED]));
            }
            Ok(())
        });
        if wanted.is_empty() {
            return Ok(());
        }
        let event_id = envelope.event_id;
        let mut keys = Vec::with_capacity(wanted.len());
        for k in wanted {
            let key = match &k {
                Some(k) => self.key_of(k).await?,
                None => None,
            };
            keys.push(key);
        }
        let mut keys = keys.into_iter();
        visit_mut(&mut envelope.data, &mut |tag, v| {
            if tag != SEALED {
                return Ok(());
            }
            let Some(key) = keys.next().expect("one entry per sealed value") else {
                return Ok(());
            };
            let malformed = |reason: &str| KeyError::Malformed {
                event_id,
                reason: reason.to_owned(),
            };
            let k = key_ref(&v[SEALED]).ok_or_else(|| malformed("no key"))?;
            let ct = v[SEALED]["ct"]
                .as_str()
                .ok_or_else(|| malformed("no ciphertext"))?;
            let bytes = URL_SAFE_NO_PAD
                .decode(ct)
                .map_err(|_| malformed("the ciphertext is not base64url"))?;
            if bytes.len() <= NONCE_LEN {
                return Err(malformed("the ciphertext is too short"));
            }
            let (nonce, ct) = bytes.split_at(NONCE_LEN);
            let plain = key
                .cipher
                .decrypt(
                    XNonce::from_slice(nonce),
                    Payload {
                        msg: ct,
                        aad: &Self::aad(event_id, &k),
                    },
                )
                .map_err(|_| KeyError::Tampered { event_id })?;
            let value: Value = serde_json::from_slice(&plain)
                .map_err(|_| malformed("the plaintext is not JSON"))?;
            *v = serde_json::json!({ OPEN: { "key": k, "value": value } });
            Ok(())
        })
    }
}

/// The key references of every personal value, open or sealed, in `data`.
fn collect_refs(data: &Value, out: &mut std::collections::BTreeSet<String>) {
    match data {
        Value::Object(map) => {
            if map.len() == 1
                && let Some(k) = map
                    .get(SEALED)
                    .or_else(|| map.get(OPEN))
                    .and_then(|s| s["key"].as_str())
            {
                out.insert(k.to_owned());
                return;
            }
            for v in map.values() {
                collect_refs(v, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

fn key_ref(inner: &Value) -> Option<KeyRef> {
    inner["key"].as_str().map(KeyRef::handle)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use chrono::Utc;
    use domain::user::UserEvent;
    use domain::{DomainEvent, Metadata, Personal};

    use super::*;

    /// The key store as a map: the real ones are tested in `infra`.
    #[derive(Default)]
    struct MapStore {
        keys: Mutex<HashMap<UserId, Vec<u8>>>,
        handles: Mutex<HashMap<String, (UserId, String)>>,
    }

    #[async_trait]
    impl KeyStore for MapStore {
        async fn put_key(&self, user: UserId, wrapped: Vec<u8>) -> Result<Vec<u8>, KeyError> {
            let stored = self
                .keys
                .lock()
                .unwrap()
                .entry(user)
                .or_insert(wrapped)
                .clone();
            if stored.is_empty() {
                return Err(KeyError::Destroyed(user));
            }
            Ok(stored)
        }
        async fn get_key(&self, user: UserId) -> Result<Option<Vec<u8>>, KeyError> {
            Ok(self
                .keys
                .lock()
                .unwrap()
                .get(&user)
                .filter(|k| !k.is_empty())
                .cloned())
        }
        async fn put_handle(
            &self,
            handle: &str,
            user: UserId,
            subject: &str,
        ) -> Result<(), KeyError> {
            self.handles
                .lock()
                .unwrap()
                .insert(handle.into(), (user, subject.into()));
            Ok(())
        }
        async fn subjects(&self, user: UserId, prefix: &str) -> Result<Vec<String>, KeyError> {
            Ok(self
                .handles
                .lock()
                .unwrap()
                .iter()
                .filter(|(h, (u, _))| *u == user && h.starts_with(prefix))
                .map(|(_, (_, s))| s.clone())
                .collect())
        }
        async fn resolve(&self, handle: &str) -> Result<Option<UserId>, KeyError> {
            Ok(self.handles.lock().unwrap().get(handle).map(|(u, _)| *u))
        }
        async fn shred(&self, user: UserId) -> Result<(), KeyError> {
            self.keys.lock().unwrap().insert(user, Vec::new());
            self.handles.lock().unwrap().retain(|_, (u, _)| *u != user);
            Ok(())
        }
        async fn all(&self) -> Result<KeyDump, KeyError> {
            let keys = self.keys.lock().unwrap().clone();
            Ok(KeyDump {
                destroyed: keys
                    .iter()
                    .filter(|(_, k)| k.is_empty())
                    .map(|(u, _)| *u)
                    .collect(),
                keys: keys
                    .iter()
                    .filter(|(_, k)| !k.is_empty())
                    .map(|(u, k)| (*u, k.clone()))
                    .collect(),
                handles: self
                    .handles
                    .lock()
                    .unwrap()
                    .iter()
                    .map(|(h, (u, s))| (h.clone(), *u, s.clone()))
                    .collect(),
            })
        }
    }

    fn registered(user: UserId) -> NewEvent {
        let k = KeyRef::user(user);
        let e = UserEvent::UserRegistered {
            user_id: user,
            email: Personal::new(k.clone(), "ann@campus.edu".into()),
            username: Personal::new(k.clone(), "ann".into()),
            password_hash: Personal::new(k, "$argon2id$secret".into()),
        };
        NewEvent::from_domain(&e, Uuid::now_v7(), Utc::now(), Metadata::default())
    }

    fn stored(e: &NewEvent) -> Envelope {
        Envelope {
            position: 1,
            event_id: e.event_id,
            stream: StreamId::parse("user-x").unwrap(),
            version: 1,
            event_type: e.event_type.clone(),
            schema: e.schema,
            occurred_at: e.occurred_at,
            data: e.data.clone(),
            metadata: Metadata::default(),
        }
    }

    /// A `CommentAdded` answering an anonymous author (under their token), as the Post
    /// aggregate makes it, with or without their id known.
    fn reply_to(token: &AuthorToken, addressee: Option<UserId>, author: UserId) -> NewEvent {
        let post_id = PostId::new(Uuid::from_u128(1));
        let addressee = match addressee {
            Some(u) => Personal::new(token.key_ref(), u),
            None => Personal::shredded(token.key_ref()),
        };
        let e = domain::post::PostEvent::CommentAdded {
            post_id,
            comment_id: CommentId::new(Uuid::now_v7()),
            author: domain::post::Author::named(author, "bob"),
            anonymous: false,
            is_host: false,
            body: "re".into(),
            reply_to: None,
            new_commenter: true,
            addressee: Some(addressee),
        };
        NewEvent::from_domain(&e, Uuid::now_v7(), Utc::now(), Metadata::default())
    }

    #[tokio::test]
    async fn a_value_under_the_handle_of_a_user_who_left_is_sealed_as_noise_of_the_same_length() {
        let keys = Keys::new(Arc::new(MapStore::default()), b"secret");
        let (gone, replier) = (UserId::new(Uuid::now_v7()), UserId::new(Uuid::now_v7()));
        keys.create(replier).await.unwrap();
        let token = keys
            .author_token(gone, PostId::new(Uuid::from_u128(1)))
            .await
            .unwrap();
        let ct_len = |e: &NewEvent| {
            e.data["addressee"][SEALED]["ct"]
                .as_str()
                .expect("sealed")
                .len()
        };
        let mut live = reply_to(&token, Some(gone), replier);
        keys.seal(&mut live).await.unwrap();
        keys.shred(gone).await.unwrap();
        // Known (a cached state) or not, the value is sealed, as long as a real one.
        for known in [Some(gone), None] {
            let mut after = reply_to(&token, known, replier);
            keys.seal(&mut after).await.unwrap();
            assert_eq!(ct_len(&after), ct_len(&live));
            assert!(!after.data.to_string().contains(&gone.to_string()));
            let mut env = stored(&after);
            keys.open(&mut env).await.unwrap();
            assert!(
                env.data["addressee"].get(SEALED).is_some(),
                "it stays sealed"
            );
        }
        // A user's own key is still needed for values named by their id.
        let mut named = registered(gone);
        assert!(matches!(
            keys.seal(&mut named).await,
            Err(KeyError::NoKey(_))
        ));
    }

    #[tokio::test]
    async fn sealed_values_open_with_their_key_only_and_not_after_shredding() {
        let keys = Keys::new(Arc::new(MapStore::default()), b"secret");
        let user = UserId::new(Uuid::now_v7());
        keys.create(user).await.unwrap();
        let mut event = registered(user);
        keys.seal(&mut event).await.unwrap();
        let text = event.data.to_string();
        assert!(!text.contains("ann") && !text.contains("argon2"), "{text}");

        let mut env = stored(&event);
        keys.open(&mut env).await.unwrap();
        let decoded = UserEvent::decode(&env.event_type, env.schema, &env.data).unwrap();
        let UserEvent::UserRegistered { email, .. } = decoded else {
            panic!()
        };
        assert_eq!(email.get().map(String::as_str), Some("ann@campus.edu"));

        // Moved to another event: refused.
        let mut moved = stored(&event);
        moved.event_id = Uuid::now_v7();
        assert!(matches!(
            keys.open(&mut moved).await,
            Err(KeyError::Tampered { .. })
        ));
        // Altered: refused.
        let mut altered = stored(&event);
        let ct = altered.data["email"][SEALED]["ct"]
            .as_str()
            .unwrap()
            .to_owned();
        let flipped = if ct.ends_with('A') { "B" } else { "A" };
        altered.data["email"][SEALED]["ct"] = format!("{}{flipped}", &ct[..ct.len() - 1]).into();
        assert!(keys.open(&mut altered).await.is_err());

        // Another server secret cannot unwrap the stored key.
        let other = Keys::new(keys.store().clone(), b"another secret");
        assert!(other.open(&mut stored(&event)).await.is_err());

        keys.shred(user).await.unwrap();
        let mut env = stored(&event);
        keys.open(&mut env).await.unwrap();
        let decoded = UserEvent::decode(&env.event_type, env.schema, &env.data).unwrap();
        let UserEvent::UserRegistered { email, .. } = decoded else {
            panic!()
        };
        assert_eq!(email.get(), None);
    }

    #[tokio::test]
    async fn reaction_handles_are_stable_per_item_differ_across_items_and_die_with_the_key() {
        let store = Arc::new(MapStore::default());
        let keys = Keys::new(store.clone(), b"secret");
        let (a, b) = (UserId::new(Uuid::now_v7()), UserId::new(Uuid::now_v7()));
        let p = PostId::new(Uuid::now_v7());
        let c = CommentId::new(Uuid::now_v7());
        let on_post = keys.reaction_handle(a, p, None).await.unwrap();
        assert_eq!(on_post, keys.reaction_handle(a, p, None).await.unwrap());
        assert_ne!(on_post, keys.reaction_handle(a, p, Some(c)).await.unwrap());
        assert_ne!(on_post, keys.reaction_handle(b, p, None).await.unwrap());
        assert_ne!(
            on_post.as_str(),
            keys.author_token(a, p).await.unwrap().as_str()
        );
        assert!(!on_post.as_str().contains(&a.to_string()));
        keys.shred(a).await.unwrap();
        assert!(keys.reaction_handle(a, p, None).await.is_err());
    }

    #[tokio::test]
    async fn author_tokens_are_stable_per_post_and_differ_across_posts_and_users() {
        let keys = Keys::new(Arc::new(MapStore::default()), b"secret");
        let (a, b) = (UserId::new(Uuid::now_v7()), UserId::new(Uuid::now_v7()));
        let (p, q) = (PostId::new(Uuid::now_v7()), PostId::new(Uuid::now_v7()));
        let t = keys.author_token(a, p).await.unwrap();
        assert_eq!(t, keys.author_token(a, p).await.unwrap());
        assert_ne!(t, keys.author_token(a, q).await.unwrap());
        assert_ne!(t, keys.author_token(b, p).await.unwrap());
        assert!(!t.as_str().contains(&a.to_string()));
        assert_eq!(keys.owner(&t.key_ref()).await.unwrap(), Some(a));
        let mut posts = keys.posts_of(a).await.unwrap();
        posts.sort();
        let mut both = vec![p, q];
        both.sort();
        assert_eq!(posts, both);
        keys.shred(a).await.unwrap();
        assert!(keys.posts_of(a).await.unwrap().is_empty());
        // No key is ever made again for a user who left.
        assert!(matches!(
            keys.author_token(a, p).await,
            Err(KeyError::Destroyed(u)) if u == a
        ));
        assert_eq!(keys.owner(&t.key_ref()).await.unwrap(), None);
    }
}
