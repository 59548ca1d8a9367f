//! Long-term keys: a node's identity from its `node_seed`, the network key
//! from the `shared_seed`.
//!
//! Both come out of HKDF-SHA256 with a distinct salt per purpose, so the same
//! bytes used as both seeds still give unrelated keys. The identity is an
//! X25519 static key pair; its [`NodeId`] is the SHA-256 of the public key,
//! which is what peers learn of each other after a handshake. The network key
//! is the Noise pre-shared key: only nodes holding the same `shared_seed` can
//! complete a handshake with each other.
//!
//! ## Stretching the shared seed
//!
//! With `XXpsk0`, one captured message 1 lets anyone test guesses of the
//! shared seed offline: a guess costs what the message-1 check costs (about
//! 2 µs). A random 32-byte seed makes that hopeless; a phrase does not. So the
//! shared seed goes through **Argon2id** before HKDF, once per process and
//! seed ([`stretch`]):
//!
//! ```text
//! stretched = Argon2id(password = shared_seed, salt = "stt v2 shared seed stretch",
//!                      m = 64 MiB, t = 3, p = 1, output 32 bytes)   (RFC 9106, version 0x13)
//! psk       = HKDF-SHA256(salt = "stt v1 network psk", ikm = stretched, info = "noise psk")
//! ```
//!
//! The parameters ([`STRETCH_MEMORY_KIB`], [`STRETCH_PASSES`],
//! [`STRETCH_LANES`]) are above OWASP's Argon2id minimum (19 MiB, t = 2,
//! p = 1) and are RFC 9106's second recommended option (64 MiB, t = 3) with
//! one lane (no threads at start). A node pays this once at start; every
//! offline guess pays it too, and needs 64 MiB of memory while it runs, which
//! is what makes GPUs and ASICs little better than a CPU. The salt is fixed
//! (nothing else is shared by all members before a handshake), so one table
//! of stretched phrases serves against every network: a stretched guess is
//! expensive, not impossible. Only a random seed is safe.
//!
//! The stretched key is memoised process-wide (at most [`STRETCH_MEMO_LEN`]
//! seeds, keyed by a SHA-256 of the seed, oldest out first), so that a
//! process that starts many nodes of one network (tests do, by the hundred)
//! computes it once. The memo holds the same secret a live [`NetworkKey`]
//! holds, zeroised when evicted; it never leaves the process.
//!
//! [`seed_strength`] flags seeds that look like text or repeat; the network
//! key logs a warning for them (it does not refuse them).

use std::fmt;
use std::sync::Mutex;

use curve25519_dalek::MontgomeryPoint;
use ring::{digest, hkdf};
use zeroize::Zeroizing;

/// Shortest accepted `node_seed` or `shared_seed`, in bytes (256 bits).
pub const MIN_SEED_LEN: usize = 32;

const IDENTITY_SALT: &[u8] = b"stt v1 node identity";
const NETWORK_SALT: &[u8] = b"stt v1 network psk";
const STRETCH_SALT: &[u8] = b"stt v2 shared seed stretch";

/// Argon2id memory cost of the shared-seed stretch, in KiB (64 MiB).
pub const STRETCH_MEMORY_KIB: u32 = 64 * 1024;
/// Argon2id passes (time cost) of the shared-seed stretch.
pub const STRETCH_PASSES: u32 = 3;
/// Argon2id lanes (parallelism) of the shared-seed stretch.
pub const STRETCH_LANES: u32 = 1;
/// Stretched shared seeds the process keeps (see the module docs).
pub const STRETCH_MEMO_LEN: usize = 16;

/// A seed that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SeedError {
    /// The node seed is shorter than [`MIN_SEED_LEN`].
    #[error("node_seed is {len} bytes; it must be at least {MIN_SEED_LEN} bytes of secret random data (e.g. 32 bytes from a CSPRNG)")]
    NodeSeedTooShort {
        /// Length given.
        len: usize,
    },
    /// The shared seed is shorter than [`MIN_SEED_LEN`].
    #[error("shared_seed is {len} bytes; it must be at least {MIN_SEED_LEN} bytes, the same on every node of the network")]
    SharedSeedTooShort {
        /// Length given.
        len: usize,
    },
    /// Argon2id refused the shared seed (longer than 4 GiB) or could not
    /// get its memory.
    #[error(
        "shared_seed could not be stretched with Argon2id (longer than 4 GiB, or out of memory)"
    )]
    StretchFailed,
}

/// What a seed looks like (see [`seed_strength`]). Only a warning: a seed
/// that looks random may still be known to others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SeedStrength {
    /// No pattern found: what bytes from a CSPRNG look like (hex digits of
    /// such bytes too, at 4 bits a character).
    Random,
    /// Printable text (a phrase, a password, base64): far fewer bits than
    /// its length suggests, and guessable offline from one captured message 1.
    Text,
    /// Few distinct bytes, or a short pattern repeated (`[0u8; 32]`).
    Repetitive,
}

/// Judges a seed: [`SeedStrength::Repetitive`] if it has fewer than 8
/// distinct bytes or is a pattern of at most half its length repeated;
/// [`SeedStrength::Text`] if every byte is printable ASCII or whitespace,
/// unless it is at least `2 * MIN_SEED_LEN` hex digits (a hex-encoded random
/// seed); [`SeedStrength::Random`] otherwise.
pub fn seed_strength(seed: &[u8]) -> SeedStrength {
    let mut seen = [false; 256];
    let mut distinct = 0;
    for &b in seed {
        if !seen[usize::from(b)] {
            seen[usize::from(b)] = true;
            distinct += 1;
        }
    }
    let periodic =
        (1..=seed.len() / 2).any(|p| seed.len() % p == 0 && seed[p..] == seed[..seed.len() - p]);
    if distinct < 8 || periodic {
        return SeedStrength::Repetitive;
    }
    let text = seed
        .iter()
        .all(|&b| b.is_ascii_graphic() || b.is_ascii_whitespace());
    let hex = seed.iter().all(u8::is_ascii_hexdigit);
    if text && !(hex && seed.len() >= 2 * MIN_SEED_LEN) {
        SeedStrength::Text
    } else {
        SeedStrength::Random
    }
}

/// The shared seed stretched with Argon2id (parameters in the module docs),
/// computed now, without the memo: what one offline guess costs (the
/// criterion bench `stretch` times it).
pub fn stretch(shared_seed: &[u8]) -> Result<Zeroizing<[u8; 32]>, SeedError> {
    let params = argon2::Params::new(STRETCH_MEMORY_KIB, STRETCH_PASSES, STRETCH_LANES, Some(32))
        .map_err(|_| SeedError::StretchFailed)?;
    let blocks = params.block_count();
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = Zeroizing::new([0u8; 32]);
    // Our own working memory, so that it is wiped afterwards (the crate's
    // `hash_password_into` frees its blocks without zeroising them).
    let mut memory = Zeroizing::new(vec![argon2::Block::default(); blocks]);
    argon
        .hash_password_into_with_memory(shared_seed, STRETCH_SALT, &mut out[..], &mut memory[..])
        .map_err(|_| SeedError::StretchFailed)?;
    Ok(out)
}

/// Stretched seeds by SHA-256 of the seed, oldest first.
type Memo = Vec<([u8; 32], Zeroizing<[u8; 32]>)>;

static STRETCH_MEMO: Mutex<Memo> = Mutex::new(Vec::new());

/// The memo's key for a seed: SHA-256 of the stretch salt and the seed.
fn memo_tag(shared_seed: &[u8]) -> [u8; 32] {
    let mut tag = [0u8; 32];
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(STRETCH_SALT);
    ctx.update(shared_seed);
    tag.copy_from_slice(ctx.finish().as_ref());
    tag
}

/// Whether the memo holds `shared_seed` (tests).
#[cfg(test)]
fn memoised(shared_seed: &[u8]) -> bool {
    let tag = memo_tag(shared_seed);
    let memo = STRETCH_MEMO.lock().unwrap_or_else(|e| e.into_inner());
    memo.iter().any(|(t, _)| *t == tag)
}

/// [`stretch`], through the process-wide memo. The lock is held while a
/// stretch runs: nodes starting together wait for one computation instead of
/// each allocating 64 MiB.
fn stretch_memoised(shared_seed: &[u8]) -> Result<Zeroizing<[u8; 32]>, SeedError> {
    let tag = memo_tag(shared_seed);
    // A panic elsewhere while the lock was held leaves a valid memo.
    let mut memo = STRETCH_MEMO.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(i) = memo.iter().position(|(t, _)| *t == tag) {
        let entry = memo.remove(i);
        let key = entry.1.clone();
        memo.push(entry);
        return Ok(key);
    }
    let key = stretch(shared_seed)?;
    if memo.len() >= STRETCH_MEMO_LEN {
        memo.remove(0);
    }
    memo.push((tag, key.clone()));
    Ok(key)
}

/// A node's public identity: SHA-256 of its static X25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub [u8; 32]);

impl NodeId {
    /// The node id of a static public key.
    pub fn from_public_key(public: &[u8; 32]) -> Self {
        let d = digest::digest(&digest::SHA256, public);
        let mut id = [0u8; 32];
        id.copy_from_slice(d.as_ref());
        NodeId(id)
    }

    /// The node id as 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The first 8 bytes identify a node well enough in logs.
        write!(f, "NodeId({}…)", &self.to_hex()[..16])
    }
}

/// A node's static key pair, derived from its `node_seed`.
#[derive(Clone)]
pub struct Identity {
    private: Zeroizing<[u8; 32]>,
    public: [u8; 32],
    node_id: NodeId,
}

impl Identity {
    /// Derives the identity from `node_seed` (at least [`MIN_SEED_LEN`] bytes).
    /// The same seed always gives the same identity.
    pub fn from_seed(node_seed: &[u8]) -> Result<Self, SeedError> {
        if node_seed.len() < MIN_SEED_LEN {
            return Err(SeedError::NodeSeedTooShort {
                len: node_seed.len(),
            });
        }
        let private = hkdf_32(IDENTITY_SALT, node_seed, b"x25519 static");
        // X25519 clamps the scalar itself, so any 32 bytes are a valid key.
        let public = MontgomeryPoint::mul_base_clamped(*private).to_bytes();
        Ok(Identity {
            node_id: NodeId::from_public_key(&public),
            private,
            public,
        })
    }

    /// A fresh random identity (a connect-token client's: its node id
    /// means nothing to servers, which know it by its client id).
    pub fn generate() -> Result<Self, ring::error::Unspecified> {
        use ring::rand::SecureRandom;
        let mut seed = Zeroizing::new([0u8; 32]);
        ring::rand::SystemRandom::new().fill(&mut seed[..])?;
        Self::from_seed(&seed[..]).map_err(|_| ring::error::Unspecified)
    }

    /// The static public key.
    pub fn public_key(&self) -> &[u8; 32] {
        &self.public
    }

    /// The node id peers see.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    pub(crate) fn private_key(&self) -> &[u8; 32] {
        &self.private
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

/// The network membership key (Noise PSK), derived from the `shared_seed`.
#[derive(Clone)]
pub struct NetworkKey {
    psk: Zeroizing<[u8; 32]>,
}

impl NetworkKey {
    /// Derives the key from `shared_seed` (at least [`MIN_SEED_LEN`] bytes):
    /// Argon2id, then HKDF (see the module docs). The first call for a seed
    /// in a process takes about a tenth of a second and 64 MiB; later calls
    /// for the same seed come from the memo.
    ///
    /// A seed that looks like text or repeats (see [`seed_strength`]) is
    /// accepted with a warning in the log: generate it instead (`stt seeds`,
    /// or 32 bytes from a CSPRNG).
    pub fn from_seed(shared_seed: &[u8]) -> Result<Self, SeedError> {
        if shared_seed.len() < MIN_SEED_LEN {
            return Err(SeedError::SharedSeedTooShort {
                len: shared_seed.len(),
            });
        }
        match seed_strength(shared_seed) {
            SeedStrength::Random => {}
            weak => tracing::warn!(
                strength = ?weak,
                "shared_seed looks like {}: anyone with one captured handshake can guess it offline; use 32 random bytes (`stt seeds`)",
                if weak == SeedStrength::Text { "text" } else { "a repeated pattern" }
            ),
        }
        let stretched = stretch_memoised(shared_seed)?;
        Ok(NetworkKey {
            psk: hkdf_32(NETWORK_SALT, &stretched[..], b"noise psk"),
        })
    }

    /// The key from an already stretched seed (the output of [`stretch`]):
    /// the second half of [`from_seed`](Self::from_seed), for benches that
    /// time one offline guess in parts.
    #[cfg(any(test, feature = "internals"))]
    pub fn from_stretched(stretched: &[u8; 32]) -> Self {
        NetworkKey {
            psk: hkdf_32(NETWORK_SALT, stretched, b"noise psk"),
        }
    }

    /// A key nobody else holds (a node without a shared seed checks member
    /// message 1s under it, so none authenticates).
    pub(crate) fn random() -> Result<Self, ring::error::Unspecified> {
        use ring::rand::SecureRandom;
        let mut psk = Zeroizing::new([0u8; 32]);
        ring::rand::SystemRandom::new().fill(&mut psk[..])?;
        Ok(NetworkKey { psk })
    }

    /// A connect token's client key used as the Noise PSK
    /// (`docs/PROTOCOL.md` 14.4).
    pub(crate) fn from_client_key(key: &[u8; 32]) -> Self {
        NetworkKey {
            psk: Zeroizing::new(*key),
        }
    }

    pub(crate) fn psk(&self) -> &[u8; 32] {
        &self.psk
    }
}

impl fmt::Debug for NetworkKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NetworkKey(..)")
    }
}

/// Output length for ring's HKDF: 32 bytes.
struct Len32;

impl hkdf::KeyType for Len32 {
    fn len(&self) -> usize {
        32
    }
}

/// HKDF-SHA256(salt, ikm) expanded with `info` to 32 bytes.
pub(crate) fn hkdf_32(salt: &[u8], ikm: &[u8], info: &[u8]) -> Zeroizing<[u8; 32]> {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(ikm);
    expand_32(&prk, info)
}

/// HKDF-Expand of a pseudo-random key to 32 bytes.
pub(crate) fn expand_32(prk: &hkdf::Prk, info: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut out = Zeroizing::new([0u8; 32]);
    let infos = [info];
    // 32 bytes is far below HKDF-SHA256's 255 * 32 output limit, so neither
    // expand nor fill can fail.
    prk.expand(&infos, Len32)
        .and_then(|okm| okm.fill(&mut out[..]))
        .expect("32-byte HKDF output is always within the limit");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_deterministic_and_seed_specific() {
        let a = Identity::from_seed(&[1u8; 32]).unwrap();
        let b = Identity::from_seed(&[1u8; 32]).unwrap();
        let c = Identity::from_seed(&[2u8; 32]).unwrap();
        assert_eq!(a.node_id(), b.node_id());
        assert_eq!(a.public_key(), b.public_key());
        assert_ne!(a.node_id(), c.node_id());
        assert_eq!(a.node_id(), NodeId::from_public_key(a.public_key()));
    }

    #[test]
    fn short_seeds_are_refused_with_a_clear_error() {
        let e = Identity::from_seed(b"short").unwrap_err();
        assert_eq!(e, SeedError::NodeSeedTooShort { len: 5 });
        assert!(e.to_string().contains("at least 32 bytes"));
        // The original STT's example seed is 30 bytes: refused too.
        let e = NetworkKey::from_seed(b"shared_secret_32bytes_minimum!").unwrap_err();
        assert_eq!(e, SeedError::SharedSeedTooShort { len: 30 });
        assert!(NetworkKey::from_seed(&[0u8; 32]).is_ok());
    }

    #[test]
    fn seed_strength_flags_text_and_patterns() {
        assert_eq!(seed_strength(&[0u8; 32]), SeedStrength::Repetitive);
        assert_eq!(seed_strength(&[7u8; 32]), SeedStrength::Repetitive);
        assert_eq!(
            seed_strength(&[1, 2, 3, 4, 5, 6, 7, 8].repeat(4)),
            SeedStrength::Repetitive
        );
        assert_eq!(
            seed_strength(b"correct horse battery staple, our network"),
            SeedStrength::Text
        );
        assert_eq!(
            seed_strength(b"example shared seed: 32 bytes or more"),
            SeedStrength::Text
        );
        // Generated seeds, raw and as hex text.
        let raw: Vec<u8> = (0..32u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        assert_eq!(seed_strength(&raw), SeedStrength::Random);
        let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(seed_strength(hex.as_bytes()), SeedStrength::Random);
        // Half a hex seed is text: 32 hex digits carry only 128 bits.
        assert_eq!(seed_strength(&hex.as_bytes()[..40]), SeedStrength::Text);
    }

    #[test]
    fn network_key_is_the_stretched_seed_and_memoised() {
        let seed = [0x5au8; 33];
        let direct = hkdf_32(NETWORK_SALT, &stretch(&seed).unwrap()[..], b"noise psk");
        let a = NetworkKey::from_seed(&seed).unwrap();
        assert!(memoised(&seed), "the stretched key is in the memo");
        let b = NetworkKey::from_seed(&seed).unwrap();
        assert_eq!(*a.psk(), *direct, "psk = HKDF(Argon2id(seed))");
        assert_eq!(a.psk(), b.psk());
        // Without the stretch, the psk would be plain HKDF of the seed.
        assert_ne!(*a.psk(), *hkdf_32(NETWORK_SALT, &seed, b"noise psk"));
    }

    #[test]
    fn same_bytes_as_both_seeds_give_unrelated_keys() {
        let seed = [9u8; 40];
        let id = Identity::from_seed(&seed).unwrap();
        let net = NetworkKey::from_seed(&seed).unwrap();
        assert_ne!(id.private_key(), net.psk());
    }

    #[test]
    fn public_key_matches_x25519() {
        // Cross-check against snow's own key agreement: a handshake with this
        // identity must present exactly this public key. Done in the handshake
        // tests; here check the RFC 7748 base-point vector.
        let scalar: [u8; 32] = [
            0x77, 0x07, 0x6d, 0x0a, 0x73, 0x18, 0xa5, 0x7d, 0x3c, 0x16, 0xc1, 0x72, 0x51, 0xb2,
            0x66, 0x45, 0xdf, 0x4c, 0x2f, 0x87, 0xeb, 0xc0, 0x99, 0x2a, 0xb1, 0x77, 0xfb, 0xa5,
            0x1d, 0xb9, 0x2c, 0x2a,
        ];
        let public = MontgomeryPoint::mul_base_clamped(scalar).to_bytes();
        assert_eq!(
            public[..4],
            [0x85, 0x20, 0xf0, 0x09],
            "RFC 7748 section 6.1 Alice's public key"
        );
    }
}
