//! Keys, handshake, sealing and replay protection.
//!
//! The public part is what the rest of the API names: the node
//! [`Identity`] (from `node_seed`), the [`NetworkKey`] (from `shared_seed`),
//! [`NodeId`], the negotiated [`Algorithm`] and the [`AeadPreference`] that
//! asks for one, and the errors sessions report ([`SeedError`],
//! [`CryptoError`], [`HandshakeError`], [`ReplayError`]).
//!
//! The machinery behind them is crate-private:
//!
//! - `keys`: identities (HKDF) and network keys (Argon2id, then HKDF) from
//!   seeds; [`seed_strength`] judges a seed.
//! - `handshake`: the Noise handshake that authenticates two nodes of one
//!   network and yields one traffic secret per direction, and the stateless
//!   message-1 check with its freshness check and replay cache.
//! - `cookie`: stateless address validation before a handshake keeps
//!   state (authenticated challenges).
//! - `aead`: sealing and opening of data frames, key update.
//! - `rekey`: the in-session rekey's fresh X25519 ephemerals and key
//!   schedule.
//! - `replay`: the sliding anti-replay window.
//!
//! The cargo feature `internals` makes those modules and their types
//! (`SendKeys`, `RecvKeys`, `Handshake`, `Msg1Check`, `CookieKey`,
//! `ReplayWindow`, …) public for the fuzz targets, the criterion benches and
//! the perf harness. It is unstable: no semver promise covers it.

// Each internal module is `pub` with the `internals` feature and
// `pub(crate)` without it; nothing else changes between the two builds.
#[cfg(feature = "internals")]
pub mod aead;
#[cfg(not(feature = "internals"))]
pub(crate) mod aead;
#[cfg(feature = "internals")]
pub mod cookie;
#[cfg(not(feature = "internals"))]
pub(crate) mod cookie;
#[cfg(feature = "internals")]
pub mod handshake;
#[cfg(not(feature = "internals"))]
pub(crate) mod handshake;
#[cfg(feature = "internals")]
pub mod keys;
#[cfg(not(feature = "internals"))]
pub(crate) mod keys;
#[cfg(feature = "internals")]
pub mod rekey;
#[cfg(not(feature = "internals"))]
pub(crate) mod rekey;
#[cfg(feature = "internals")]
pub mod replay;
#[cfg(not(feature = "internals"))]
pub(crate) mod replay;

pub use aead::{AeadPreference, Algorithm, CryptoError};
pub use handshake::HandshakeError;
pub use keys::{
    seed_strength, Identity, NetworkKey, NodeId, SeedError, SeedStrength, MIN_SEED_LEN,
};
pub use replay::ReplayError;

#[cfg(feature = "internals")]
pub use self::{
    aead::{hardware_aes, RecvKeys, SendKeys},
    cookie::{ChallengeKey, CookieError, CookieKey},
    handshake::{Handshake, HandshakeOutcome, Msg1Check, Msg1Error, Msg1Info, Msg1ReplayCache},
    replay::ReplayWindow,
};
#[cfg(not(feature = "internals"))]
pub(crate) use self::{
    aead::{RecvKeys, SendKeys},
    cookie::CookieKey,
    handshake::{Handshake, HandshakeOutcome, Msg1Check},
};
