//! Keys, handshake, sealing and replay protection.
//!
//! - [`keys`]: the node identity (from `node_seed`) and the network key (from
//!   `shared_seed`).
//! - [`handshake`]: the Noise handshake that authenticates two nodes of one
//!   network and yields one traffic secret per direction.
//! - [`cookie`]: stateless address validation before a handshake keeps
//!   state.
//! - [`aead`]: sealing and opening of data frames, key update.
//! - [`replay`]: the sliding anti-replay window.

pub mod aead;
pub mod cookie;
pub mod handshake;
pub mod keys;
pub mod replay;

pub use aead::{hardware_aes, AeadPreference, Algorithm, CryptoError, RecvKeys, SendKeys};
pub use cookie::{CookieError, CookieKey};
pub use handshake::{Handshake, HandshakeError, HandshakeOutcome, Msg1Check};
pub use keys::{Identity, NetworkKey, NodeId, SeedError, MIN_SEED_LEN};
pub use replay::{ReplayError, ReplayWindow};
