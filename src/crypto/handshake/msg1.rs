//! The stateless message-1 check ([`Msg1Check`]) and the node's replay
//! cache of message-1 ephemerals ([`Msg1ReplayCache`]): what a node runs
//! before it answers or keeps state for a message 1.

use super::*;

/// Checks that a message 1 authenticates under the network's PSK, without
/// building a handshake: the cheap test a node runs before it answers a
/// message 1 at all (a cookie challenge under load), so that non-members
/// still get silence.
///
/// It follows the Noise processing of `-> psk, e` and the payload's
/// `DecryptAndHash` (Noise spec 5.1–5.3, with BLAKE2s and ChaChaPoly) by
/// hand. Everything before the per-message prologue and ephemeral key is
/// computed once per node, so a check costs three BLAKE2s hashes, one HKDF
/// and one 80-byte AEAD open, and no Diffie-Hellman. Tests hold it to snow's
/// answer on genuine and damaged messages.
///
/// It also holds the node's [`Msg1ReplayCache`]: [`admit_fresh_at`](Self::admit_fresh_at)
/// is the check an endpoint runs just before it keeps state for a message 1.
/// The PSK-derived values are zeroised on drop.
pub struct Msg1Check {
    /// `ck` after `MixKeyAndHash(psk)`.
    ck: Zeroizing<[u8; 32]>,
    /// The second HKDF output of `MixKeyAndHash(psk)`, hashed into `h`.
    temp_h: Zeroizing<[u8; 32]>,
    /// Ephemeral keys of message 1s that made state recently.
    replays: Mutex<Msg1ReplayCache>,
    /// Authenticates the cookie challenges this node sends.
    challenge_key: ChallengeKey,
}

/// What an authenticated message 1 says (see [`Msg1Check::open`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Msg1Info {
    /// The initiator's ephemeral public key (the first 32 bytes).
    pub ephemeral: [u8; 32],
    /// The handshake version of the payload.
    pub version: u8,
    /// The initiator's clock, seconds since the Unix epoch.
    pub timestamp: u64,
}

/// Why [`Msg1Check::admit_fresh_at`] refused a message 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Msg1Error {
    /// Not a message 1 of this network (wrong length or PSK).
    #[error("not a message 1 of this network")]
    NotGenuine,
    /// Its timestamp is outside [`MSG1_TIME_WINDOW`] of this node's clock.
    #[error("message 1 is {skew_secs} s away from this node's clock (window ±{} s)", MSG1_TIME_WINDOW.as_secs())]
    Stale {
        /// The message's time minus this node's, in seconds.
        skew_secs: i64,
    },
    /// This node already kept state for a message 1 with that ephemeral key.
    #[error("replayed message 1 (its ephemeral key was seen in the last {} s)", MSG1_REPLAY_RETENTION.as_secs())]
    Replayed,
    /// The replay cache is full of live entries: refused rather than forget
    /// one (see [`Msg1ReplayCache`]).
    #[error("message-1 replay cache full")]
    CacheFull,
}

impl fmt::Debug for Msg1Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Msg1Check(..)")
    }
}

impl Msg1Check {
    /// Precomputes the PSK-dependent part of the check; with an empty replay
    /// cache of [`MSG1_REPLAY_CAPACITY`] entries.
    pub fn new(network: &NetworkKey) -> Self {
        Self::with_replay_capacity(network, MSG1_REPLAY_CAPACITY)
    }

    /// [`new`](Self::new) with a replay cache of `capacity` entries.
    pub fn with_replay_capacity(network: &NetworkKey, capacity: usize) -> Self {
        // ck = h = HASH(name) (H0), then MixKeyAndHash(psk).
        let (ck, temp_h, mut third) = hkdf3(&H0, network.psk());
        third.zeroize();
        Msg1Check {
            ck: Zeroizing::new(ck),
            temp_h: Zeroizing::new(temp_h),
            replays: Mutex::new(Msg1ReplayCache::new(capacity, MSG1_REPLAY_RETENTION)),
            challenge_key: ChallengeKey::new(network),
        }
    }

    /// The key that authenticates this network's cookie challenges.
    pub fn challenge_key(&self) -> &ChallengeKey {
        &self.challenge_key
    }

    /// Whether `msg1` (the Noise part of message 1) authenticates with
    /// `first_header` (its frame header, part of the prologue).
    pub fn verify(&self, first_header: &[u8], msg1: &[u8]) -> bool {
        self.open(first_header, msg1).is_some()
    }

    /// What `msg1` says, if it authenticates with `first_header`: the
    /// ephemeral key and the payload's version and timestamp. The same cost
    /// as [`verify`](Self::verify).
    pub fn open(&self, first_header: &[u8], msg1: &[u8]) -> Option<Msg1Info> {
        open_after(&self.ck, &self.temp_h, &[first_header], msg1)
    }

    /// The check an endpoint runs on a message 1 datagram (frame header and
    /// Noise part) just before it keeps state for it: genuine, its timestamp
    /// within [`MSG1_TIME_WINDOW`] of this node's wall clock `unix_secs`
    /// (seconds since the Unix epoch), and its ephemeral key not seen here
    /// in the last [`MSG1_REPLAY_RETENTION`]; records the key. `now` dates
    /// the cache entries.
    pub fn admit_fresh_at(
        &self,
        datagram: &[u8],
        now: Instant,
        unix_secs: u64,
    ) -> Result<Msg1Info, Msg1Error> {
        if datagram.len() != crate::frame::HEADER_LEN + MSG1_LEN {
            return Err(Msg1Error::NotGenuine);
        }
        let (header, msg1) = datagram.split_at(crate::frame::HEADER_LEN);
        let info = self.open(header, msg1).ok_or(Msg1Error::NotGenuine)?;
        let skew_secs = skew(info.timestamp, unix_secs);
        if skew_secs.unsigned_abs() > MSG1_TIME_WINDOW.as_secs() {
            return Err(Msg1Error::Stale { skew_secs });
        }
        // A panic while the lock was held leaves a usable cache.
        let mut replays = self.replays.lock().unwrap_or_else(|e| e.into_inner());
        replays.insert(&info.ephemeral, now)?;
        Ok(info)
    }

    /// The freshness half of [`admit_fresh_at`](Self::admit_fresh_at) for a
    /// message 1 already authenticated another way (a connect token's): its
    /// timestamp and its ephemeral key against the same replay cache.
    pub(crate) fn admit_checked(
        &self,
        info: &Msg1Info,
        now: Instant,
        unix_secs: u64,
    ) -> Result<(), Msg1Error> {
        let skew_secs = skew(info.timestamp, unix_secs);
        if skew_secs.unsigned_abs() > MSG1_TIME_WINDOW.as_secs() {
            return Err(Msg1Error::Stale { skew_secs });
        }
        let mut replays = self.replays.lock().unwrap_or_else(|e| e.into_inner());
        replays.insert(&info.ephemeral, now)
    }
}

/// Whether `msg1` (a Noise message 1) authenticates under `psk` with the
/// prologue tail `prologue` (the parts after the label, concatenated): what
/// [`Msg1Check::open`] computes, without the precomputation, for a PSK that
/// changes per message (a connect token's client key, `docs/PROTOCOL.md`
/// 14.5).
pub(crate) fn open_msg1(psk: &NetworkKey, prologue: &[&[u8]], msg1: &[u8]) -> Option<Msg1Info> {
    let (ck, temp_h, mut third) = hkdf3(&H0, psk.psk());
    third.zeroize();
    open_after(&Zeroizing::new(ck), &Zeroizing::new(temp_h), prologue, msg1)
}

/// `h` after hashing the protocol name (before the prologue); the same for
/// every handshake. The name is longer than 32 bytes: h = HASH(name).
static H0: std::sync::LazyLock<[u8; 32]> =
    std::sync::LazyLock::new(|| blake2s(&[NOISE_PATTERN.as_bytes()]));

/// The Noise processing of `-> psk, e` and the payload's `DecryptAndHash`
/// from the PSK-dependent values `ck` and `temp_h` on.
fn open_after(
    ck: &Zeroizing<[u8; 32]>,
    temp_h: &Zeroizing<[u8; 32]>,
    prologue: &[&[u8]],
    msg1: &[u8],
) -> Option<Msg1Info> {
    if msg1.len() != MSG1_LEN {
        return None;
    }
    let (re, ciphertext) = msg1.split_at(32);
    // MixHash(prologue); MixHash(temp_h) from the psk token.
    let mut parts: [&[u8]; 4] = [&H0[..], PROLOGUE_LABEL, &[], &[]];
    if prologue.len() > 2 {
        return None;
    }
    for (i, p) in prologue.iter().enumerate() {
        parts[2 + i] = p;
    }
    let h = blake2s(&parts);
    let h = blake2s(&[&h, &temp_h[..]]);
    // The e token: MixHash(re), and with a PSK also MixKey(re).
    let h = blake2s(&[&h, re]);
    let (mut ck, k) = hkdf2(ck, re);
    ck.zeroize();
    let k = Zeroizing::new(k);
    // DecryptAndHash(payload) with n = 0 and ad = h.
    let key = ring::aead::UnboundKey::new(&ring::aead::CHACHA20_POLY1305, &k[..]).ok()?;
    let key = ring::aead::LessSafeKey::new(key);
    let mut buf = [0u8; MSG1_LEN - 32];
    buf.copy_from_slice(ciphertext);
    let plain = key
        .open_in_place(
            ring::aead::Nonce::assume_unique_for_key([0u8; 12]),
            ring::aead::Aad::from(&h),
            &mut buf,
        )
        .ok()?;
    let mut ephemeral = [0u8; 32];
    ephemeral.copy_from_slice(re);
    let mut ts = [0u8; 8];
    ts.copy_from_slice(&plain[TIMESTAMP_AT..TIMESTAMP_AT + 8]);
    Some(Msg1Info {
        ephemeral,
        version: plain[0],
        timestamp: u64::from_be_bytes(ts),
    })
}

/// The ephemeral keys of recent message 1s, to refuse a replayed one.
///
/// Bounded: at most `capacity` keys (16 bytes of each, 16 bytes of time, so
/// about 48 bytes a key with the index), each forgotten `retention` after it
/// was recorded. When full of live keys it refuses new ones
/// ([`Msg1Error::CacheFull`]) rather than forget a live key (which would let
/// that message 1 be replayed): only message 1s that authenticate under the
/// PSK reach it, and the endpoint consults it only after every limit and
/// quota admitted the message 1: each entry costs a pending handshake within
/// its address's quota.
#[derive(Debug)]
pub struct Msg1ReplayCache {
    seen: HashMap<u128, Instant>,
    order: VecDeque<(Instant, u128)>,
    capacity: usize,
    retention: Duration,
}

impl Msg1ReplayCache {
    /// An empty cache of `capacity` keys kept `retention` each.
    pub fn new(capacity: usize, retention: Duration) -> Self {
        Msg1ReplayCache {
            seen: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
            retention,
        }
    }

    /// Records `ephemeral` at `now`; refuses one recorded within the
    /// retention, and any when full of live keys.
    pub fn insert(&mut self, ephemeral: &[u8; 32], now: Instant) -> Result<(), Msg1Error> {
        while let Some(&(at, key)) = self.order.front() {
            if now.saturating_duration_since(at) < self.retention {
                break;
            }
            self.order.pop_front();
            if self.seen.get(&key) == Some(&at) {
                self.seen.remove(&key);
            }
        }
        // Ephemeral keys are random curve points: 128 of their bits are as
        // good a key as all 256.
        let mut half = [0u8; 16];
        half.copy_from_slice(&ephemeral[..16]);
        let key = u128::from_le_bytes(half);
        if self.seen.contains_key(&key) {
            return Err(Msg1Error::Replayed);
        }
        if self.seen.len() >= self.capacity {
            return Err(Msg1Error::CacheFull);
        }
        self.seen.insert(key, now);
        self.order.push_back((now, key));
        Ok(())
    }

    #[cfg(any(test, feature = "internals"))] // used by tests and the `internals` users only
    /// Keys held.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    #[cfg(any(test, feature = "internals"))] // used by tests and the `internals` users only
    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}
